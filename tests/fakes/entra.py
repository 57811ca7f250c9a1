"""Microsoft Entra v2 rules and token shapes, shared by the fake identity provider.

Kept apart from the HTTP plumbing in :mod:`tests.fakes.idp` so the rules that Mailweb must cope
with (one resource per token, AADSTS error bodies, claim names and sizes) read in one place.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "GRAPH",
    "OIDC_SCOPES",
    "OUTLOOK",
    "EntraError",
    "FakeClient",
    "FakeUser",
    "ScopeRequest",
    "Signer",
    "TokenRequest",
    "b64url_json",
    "entra_error_body",
    "parse_scopes",
]

GRAPH = "https://graph.microsoft.com"
OUTLOOK = "https://outlook.office.com"
#: Scopes that ask for sign-in artefacts rather than a resource's permission.
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
#: Hosts Entra treats as resource identifiers; anything else with a scheme is a resource too.
_RESOURCE_ALIASES = {"https://outlook.office365.com": OUTLOOK}


@dataclass
class FakeUser:
    """A person who can sign in; ``oid`` and ``tid`` are stable GUIDs like Entra's."""

    email: str
    name: str
    oid: str
    tid: str


@dataclass
class FakeClient:
    """An app registration: a confidential web client with one secret."""

    client_id: str
    secret: str
    redirect_uris: list[str]
    name: str = "Mailweb"
    secret_expired: bool = False


@dataclass
class TokenRequest:
    """One call to the token endpoint, for tests that count or inspect requests."""

    grant_type: str
    tenant: str
    scopes: tuple[str, ...]
    client_id: str | None
    time: float
    status: int = 0
    error: str | None = None


class EntraError(Exception):
    """A token or authorize failure, carrying what Entra would put on the wire."""

    def __init__(
        self,
        error: str,
        code: int,
        message: str,
        *,
        status: int = 400,
        suberror: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{error}: AADSTS{code}: {message}")
        self.error = error
        self.code = code
        self.message = message
        self.status = status
        self.suberror = suberror
        self.retry_after = retry_after

    @property
    def description(self) -> str:
        """The ``error_description`` text: ``AADSTS<code>: <message>`` plus Entra's trailer."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return (
            f"AADSTS{self.code}: {self.message} Trace ID: {uuid.uuid4()} "
            f"Correlation ID: {uuid.uuid4()} Timestamp: {stamp}"
        )


def entra_error_body(err: EntraError) -> dict[str, Any]:
    """The JSON body Entra returns with a failed token request."""
    body: dict[str, Any] = {
        "error": err.error,
        "error_description": err.description,
        "error_codes": [err.code],
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
        "error_uri": f"https://login.microsoftonline.com/error?code={err.code}",
    }
    if err.suberror:
        body["suberror"] = err.suberror
    return body


def b64url_json(value: dict[str, Any]) -> str:
    """Base64url (unpadded) of compact JSON, as used by ``client_info``."""
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class ScopeRequest:
    """A scope string split the way Entra reads it.

    ``resource`` is the audience of the access token; ``names`` are the permission names that
    end up in ``scp``; ``full`` keeps the wire spelling (used for consent bookkeeping).
    """

    resource: str
    names: tuple[str, ...]
    full: tuple[str, ...]
    oidc: frozenset[str] = field(default_factory=frozenset)

    @property
    def wants_refresh_token(self) -> bool:
        return "offline_access" in self.oidc

    @property
    def wants_id_token(self) -> bool:
        return "openid" in self.oidc


def _split_one(scope: str) -> tuple[str, str]:
    """Return (resource, permission) for one resource scope."""
    if "://" in scope:
        resource, _, name = scope.rpartition("/")
        resource = _RESOURCE_ALIASES.get(resource.rstrip("/"), resource.rstrip("/"))
        return resource, name
    return GRAPH, scope  # Short names ("Mail.ReadWrite", "User.Read") mean Microsoft Graph.


def parse_scopes(scope: str | Iterable[str]) -> ScopeRequest:
    """Split a scope list into one resource's permissions, as Entra's token endpoint does.

    Raises ``EntraError(invalid_scope, 28000)`` when the scopes name two resources: Entra issues
    each access token for exactly one audience, and rejects the request rather than guessing.
    With only OIDC scopes, Entra issues a Graph token for ``User.Read``.
    """
    items = scope.split() if isinstance(scope, str) else list(scope)
    oidc = frozenset(s for s in items if s in OIDC_SCOPES)
    by_resource: dict[str, list[tuple[str, str]]] = {}
    for item in items:
        if item in OIDC_SCOPES:
            continue
        resource, name = _split_one(item)
        by_resource.setdefault(resource, []).append((name, item))
    if len(by_resource) > 1:
        raise EntraError(
            "invalid_scope",
            28000,
            "Provided value for the input parameter scope is not valid because it contains "
            f"more than one resource. Scope {' '.join(items)} is not valid.",
        )
    if not by_resource:
        return ScopeRequest(GRAPH, ("User.Read",), (f"{GRAPH}/User.Read",), oidc)
    ((resource, pairs),) = by_resource.items()
    names = tuple(name for name, _ in pairs)
    full = tuple(f"{resource}/{name}" for name in names)
    return ScopeRequest(resource, names, full, oidc)


def _filler(n: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(n)).rstrip(b"=").decode()


class Signer:
    """An RS256 signing key with a ``kid``, published as a JWKS and trusted by Dovecot."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # Hex keeps the kid safe as a file name in Dovecot's fs dict (no '/', '.', '%').
        self.kid = hashlib.sha256(der).hexdigest()[:20]
        self.public_key_pem = (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def jwks(self, issuer: str) -> dict[str, Any]:
        """The ``keys`` document, shaped like Entra's (with ``x5t`` = ``kid`` here)."""
        jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(
            self._key.public_key(), as_dict=True
        )
        jwk.update({"kid": self.kid, "x5t": self.kid, "use": "sig", "issuer": issuer})
        return {"keys": [jwk]}

    def sign(self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None) -> str:
        """Sign ``claims`` as an RS256 JWT carrying this signer's ``kid``."""
        return jwt.encode(
            claims,
            key or self._key,
            algorithm="RS256",
            headers={"typ": "JWT", "kid": self.kid, "x5t": self.kid},
        )


def access_token_claims(
    *,
    issuer: str,
    user: FakeUser,
    client_id: str,
    app_name: str,
    scopes: ScopeRequest,
    lifetime: int,
) -> dict[str, Any]:
    """Claims of an Entra v1-format access token, as Exchange Online and Graph receive them.

    Like Entra's v1 tokens they name the app in ``appid`` and carry no ``azp``, so Dovecot
    looks the key up under ``keys/default/``.

    ``iat``/``nbf`` are back-dated 5 s because Dovecot rejects a token "issued in the future"
    by even one second of clock skew. Filler claims (``aio``, ``uti``, ``rh``, ...) make the
    token about as long as a real one (~1.5-2 kB), which matters for XOAUTH2 line lengths and
    database column sizes.
    """
    now = int(time.time())
    return {
        "aud": scopes.resource,
        "iss": issuer,
        "iat": now - 5,
        "nbf": now - 5,
        "exp": now + lifetime,
        "acct": 0,
        "acr": "1",
        "aio": _filler(180),
        "amr": ["pwd", "mfa"],
        "app_displayname": app_name,
        "appid": client_id,
        "appidacr": "1",
        "email": user.email,
        "family_name": user.name.split()[-1],
        "given_name": user.name.split()[0],
        "idtyp": "user",
        "ipaddr": "127.0.0.1",
        "name": user.name,
        "oid": user.oid,
        "preferred_username": user.email,
        "puid": secrets.token_hex(8).upper(),
        "rh": f"1.{_filler(90)}.",
        "scp": " ".join(scopes.names),
        "sid": str(uuid.uuid4()),
        "sub": _filler(32),
        "tid": user.tid,
        "unique_name": user.email,
        "upn": user.email,
        "uti": _filler(16),
        "ver": "1.0",
        "wids": ["b79fbf4d-3ef9-4689-8143-76b194e85509"],
        "xms_tcdt": now - 86400 * 400,
    }


def id_token_claims(
    *, issuer: str, user: FakeUser, client_id: str, nonce: str | None, lifetime: int = 3600
) -> dict[str, Any]:
    """Claims of a v2 ID token; ``sub`` is pairwise (per app), ``oid`` is stable per user."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": client_id,
        "iss": issuer,
        "iat": now - 5,
        "nbf": now - 5,
        "exp": now + lifetime,
        "name": user.name,
        "oid": user.oid,
        "preferred_username": user.email,
        "email": user.email,
        "rh": f"1.{_filler(90)}.",
        "sub": hashlib.sha256(f"{user.oid}:{client_id}".encode()).hexdigest()[:43],
        "tid": user.tid,
        "uti": _filler(16),
        "ver": "2.0",
    }
    if nonce:
        claims["nonce"] = nonce
    return claims


def new_refresh_token() -> str:
    """An opaque refresh token about as long as Entra's (they run to 1-2 kB)."""
    return "1.AUEA" + _filler(900)
