"""Fetching a remote image on a reader's behalf, so the sender learns nothing about the reader.

The browser never talks to the sender's server: it asks ours, with a signed URL that names the
message the image belongs to. We send no cookies, no referrer and a generic User-Agent; refuse
private, loopback, link-local and other special addresses (checked after DNS resolution, and
the connection is made to the checked address, so DNS rebinding cannot swap it); follow a few
redirects, re-checking each hop; accept only raster image types whose bytes look like what they
claim; and stop reading past a size limit.
"""

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from django.conf import settings
from django.core import signing

SALT = "mailweb.image-proxy"
MAX_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 3
TIMEOUT = 6.0
USER_AGENT = "Mozilla/5.0 (compatible; MailwebImageProxy/1.0)"
# Raster types only: SVG can carry script and is refused.
MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
    "image/bmp": (b"BM",),
    "image/x-icon": (b"\x00\x00\x01\x00",),
    "image/vnd.microsoft.icon": (b"\x00\x00\x01\x00",),
    "image/avif": (b"\x00\x00\x00",),
}


class ProxyError(Exception):
    """The image cannot be fetched safely; the message is for logs, never the sender's."""


@dataclass(frozen=True)
class Image:
    content_type: str
    data: bytes


def sign(message_id: int, url: str) -> str:
    return signing.dumps({"m": message_id, "u": url}, salt=SALT, compress=True)


def unsign(token: str) -> tuple[int, str]:
    """(message id, url) from a token made by ``sign``; raises ProxyError when tampered."""
    try:
        value = signing.loads(token, salt=SALT)
    except signing.BadSignature as exc:
        raise ProxyError("bad signature") from exc
    return int(value["m"]), str(value["u"])


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks tests may open up (a local server as the "remote" host); empty in production."""
    return [
        ipaddress.ip_network(net)
        for net in getattr(settings, "MAILWEB_IMAGE_PROXY_ALLOWED_NETWORKS", [])
    ]


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _allowed_networks()):
        return True
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def resolve_public(host: str, port: int) -> str:
    """The first address of ``host``; every address it resolves to must be public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ProxyError(f"cannot resolve {host!r}") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise ProxyError(f"{host!r} has no address")
    for address in addresses:
        if not is_public(address):
            raise ProxyError(f"{host!r} resolves to a non-public address")
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def fetch(url: str) -> Image:
    """GET ``url`` under the rules above; raises ProxyError for anything unsafe or broken."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ProxyError("only http and https URLs are fetched")
        if parts.username or parts.password:
            raise ProxyError("URLs with credentials are refused")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = resolve_public(parts.hostname, port)
        connection_class = (
            _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
        )
        connection = connection_class(parts.hostname, port, address, TIMEOUT)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection.request(
                "GET",
                path,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "image/avif,image/webp,image/png,image/jpeg,image/gif,image/*;q=0.8",
                    "Accept-Encoding": "identity",
                },
            )
            response = connection.getresponse()
            if response.status in {301, 302, 303, 307, 308}:
                location = response.getheader("Location")
                if not location:
                    raise ProxyError("redirect without a location")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise ProxyError(f"remote answered {response.status}")
            content_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
            content_type = content_type.lower()
            if content_type not in MAGIC:
                raise ProxyError(f"refused content type {content_type!r}")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_BYTES:
                raise ProxyError("image too large")
            data = response.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise ProxyError("image too large")
            if not data.startswith(MAGIC[content_type]):
                raise ProxyError("content does not match its type")
            return Image(content_type=content_type, data=data)
        except (OSError, http.client.HTTPException) as exc:
            raise ProxyError(f"fetch failed: {exc.__class__.__name__}") from exc
        finally:
            connection.close()
    raise ProxyError("too many redirects")
