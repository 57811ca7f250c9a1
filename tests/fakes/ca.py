"""A throwaway certificate authority for the test stand-ins.

Mailweb always verifies TLS (DESIGN.md, principle 8), and msal refuses ``http://`` authorities,
so every local stand-in (identity provider, Dovecot's IMAPS, an SMTP server) serves a real
certificate chain. This module makes a fresh CA per test session and issues leaf certificates
for ``localhost`` and ``127.0.0.1``; clients trust it through ``REQUESTS_CA_BUNDLE`` /
``SSL_CERT_FILE`` or an explicit ``ssl.SSLContext``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["IssuedCert", "TestCA"]

# EC keys are generated in microseconds, unlike RSA, which keeps session start-up fast.
_CURVE = ec.SECP256R1()


@dataclass(frozen=True)
class IssuedCert:
    """Paths of a server certificate (leaf only) and its unencrypted private key."""

    cert_path: Path
    key_path: Path
    #: Leaf followed by the CA certificate, for servers that want the chain in one file.
    chain_path: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Mailweb tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class TestCA:
    """A self-signed root CA written to ``directory/ca.pem``.

    The CA key never leaves memory; only issued leaf keys are written, because servers such as
    Dovecot read them from disk.
    """

    __test__ = False  # Not a pytest test class despite the name.

    def __init__(self, directory: str | Path, *, common_name: str = "Mailweb Test CA") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(_CURVE)
        now = dt.datetime.now(dt.UTC)
        self._name = _name(common_name)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca_path = self.directory / "ca.pem"
        self.ca_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        self._issued: dict[str, IssuedCert] = {}

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate in PEM form."""
        return self.ca_path.read_bytes()

    def issue_server_cert(
        self,
        name: str = "server",
        hostnames: tuple[str, ...] = ("localhost",),
        ips: tuple[str, ...] = ("127.0.0.1", "::1"),
    ) -> IssuedCert:
        """Issue (once per ``name``) a server certificate with the given DNS and IP SANs.

        Python's ``ssl`` matches an IP literal only against an IP SAN, so ``127.0.0.1`` must be
        an ``IPAddress`` entry, not a DNS name.
        """
        if name in self._issued:
            return self._issued[name]
        key = ec.generate_private_key(_CURVE)
        now = dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hostnames[0] if hostnames else ips[0]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=29))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        issued = IssuedCert(
            cert_path=self.directory / f"{name}.crt",
            key_path=self.directory / f"{name}.key",
            chain_path=self.directory / f"{name}-chain.pem",
        )
        issued.cert_path.write_bytes(cert_pem)
        issued.key_path.write_bytes(_pem_key(key))
        issued.key_path.chmod(0o600)
        issued.chain_path.write_bytes(cert_pem + self.ca_pem)
        self._issued[name] = issued
        return issued

    def server_context(self, name: str = "server") -> ssl.SSLContext:
        """A server-side ``SSLContext`` loaded with the certificate issued under ``name``."""
        issued = self.issue_server_cert(name)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(issued.chain_path, issued.key_path)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client-side ``SSLContext`` that trusts only this CA (hostname checks stay on)."""
        return ssl.create_default_context(cafile=str(self.ca_path))
