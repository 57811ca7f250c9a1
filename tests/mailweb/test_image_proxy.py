"""The image proxy: fetches for the reader, sends nothing about them, refuses internal hosts."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client

from accounts.models import MailAccount
from mailweb import image_proxy
from tests.mailweb.factories import PNG, deliver

pytestmark = pytest.mark.django_db


class _Remote(BaseHTTPRequestHandler):
    hits: list[dict[str, str]] = []
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:
        type(self).hits.append(
            {"path": self.path, **{k.lower(): v for k, v in self.headers.items()}}
        )
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def remote(settings: Any) -> Iterator[str]:
    """A local HTTP server standing in for a sender's image host (loopback allowed for it)."""
    _Remote.hits = []
    _Remote.routes = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Remote)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.MAILWEB_IMAGE_PROXY_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _proxy_url(mailbox: MailAccount, url: str) -> str:
    message = deliver(mailbox, html=f'<img src="{url}">', text="x")
    return f"/img?t={image_proxy.sign(message.pk, url)}"


def test_fetches_images_without_cookies_or_referrer(
    member_client: Client, mailbox: MailAccount, remote: str
) -> None:
    _Remote.routes["/logo.png"] = (200, {"Content-Type": "image/png"}, PNG)
    response = member_client.get(
        _proxy_url(mailbox, f"{remote}/logo.png"), HTTP_REFERER="http://testserver/c/1/"
    )
    assert response.status_code == 200
    assert response.content == PNG
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    hit = _Remote.hits[-1]
    assert "cookie" not in hit and "referer" not in hit
    assert "Mailweb" in hit["user-agent"]


def test_refuses_non_images_svg_and_lies(
    member_client: Client, mailbox: MailAccount, remote: str
) -> None:
    _Remote.routes["/page"] = (200, {"Content-Type": "text/html"}, b"<script>x</script>")
    _Remote.routes["/x.svg"] = (200, {"Content-Type": "image/svg+xml"}, b"<svg/>")
    _Remote.routes["/fake.png"] = (200, {"Content-Type": "image/png"}, b"<html>not png</html>")
    for path in ("/page", "/x.svg", "/fake.png"):
        response = member_client.get(_proxy_url(mailbox, remote + path))
        assert response.status_code == 404, path
        assert b"<" not in response.content


def test_size_limit(
    member_client: Client, mailbox: MailAccount, remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image_proxy, "MAX_BYTES", 1000)
    _Remote.routes["/big.png"] = (200, {"Content-Type": "image/png"}, PNG + b"\0" * 2000)
    assert member_client.get(_proxy_url(mailbox, f"{remote}/big.png")).status_code == 404


def test_redirects_are_followed_and_rechecked(
    member_client: Client, mailbox: MailAccount, remote: str, settings: Any
) -> None:
    _Remote.routes["/hop"] = (302, {"Location": "/logo.png"}, b"")
    _Remote.routes["/logo.png"] = (200, {"Content-Type": "image/png"}, PNG)
    assert member_client.get(_proxy_url(mailbox, f"{remote}/hop")).content == PNG
    _Remote.routes["/inside"] = (302, {"Location": "http://10.0.0.5/admin.png"}, b"")
    assert member_client.get(_proxy_url(mailbox, f"{remote}/inside")).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://localhost/x.png",
        "http://10.1.2.3/x.png",
        "http://192.168.1.1/x.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x.png",
        "http://[::ffff:127.0.0.1]/x.png",
        "http://0.0.0.0/x.png",
        "ftp://example.org/x.png",
        "http://user:pw@example.org/x.png",
    ],
)
def test_refuses_internal_and_odd_urls(url: str) -> None:
    with pytest.raises(image_proxy.ProxyError):
        image_proxy.fetch(url)


def test_refuses_names_that_resolve_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.8.7", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(image_proxy.ProxyError, match="non-public"):
        image_proxy.fetch("http://images.innocent.example/x.png")


def test_tampered_or_foreign_tokens(
    member_client: Client, mailbox: MailAccount, hidden_mailbox: MailAccount
) -> None:
    url = _proxy_url(mailbox, "https://images.example.org/a.png")
    assert member_client.get(url[:-3] + "abc").status_code == 400
    hidden = deliver(hidden_mailbox, html='<img src="https://x.example/a.png">', text="x")
    token = image_proxy.sign(hidden.pk, "https://x.example/a.png")
    assert member_client.get(f"/img?t={token}").status_code == 404
