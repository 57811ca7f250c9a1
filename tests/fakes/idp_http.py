"""HTTP plumbing for the fake identity provider: routing, TLS, and Entra's response shapes.

Uses the standard library's ``ThreadingHTTPServer`` so the stand-in needs no extra
dependency. TLS is negotiated in each connection's own thread (not in the accept loop), so a
client that connects and stalls cannot block other requests.
"""

from __future__ import annotations

import base64
import html
import json
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from tests.fakes.entra import EntraError, TokenRequest, entra_error_body

if TYPE_CHECKING:
    from tests.fakes.idp import FakeIdentityProvider

__all__ = ["serve"]

_ROUTES = [
    (re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration$"), "discovery"),
    (re.compile(r"^/(?P<tenant>[^/]+)/discovery/v2\.0/keys$"), "keys"),
    (re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/authorize$"), "authorize"),
    (re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$"), "token"),
]


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, idp: FakeIdentityProvider, context: ssl.SSLContext, listen: str) -> None:
        super().__init__((listen, 0), _Handler)
        self.idp = idp
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # A client that does not trust the CA: its problem, not a server error.
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _TLSServer
    timeout = 10
    server_version = "FakeEntra/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests inspect ``idp.token_requests`` instead of reading access logs."""

    def _route(self) -> tuple[str, str, dict[str, str]] | None:
        parts = urlsplit(self.path)
        for pattern, name in _ROUTES:
            match = pattern.match(parts.path)
            if match:
                return name, unquote_plus(match["tenant"]), dict(parse_qsl(parts.query))
        return None

    def _json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store, no-cache")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, err: EntraError) -> None:
        headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else {}
        self._json(err.status, entra_error_body(err), headers)

    def do_GET(self) -> None:
        route = self._route()
        idp = self.server.idp
        if route is None or route[0] == "token":
            self._json(404, {"error": "not_found", "path": self.path})
            return
        name, tenant, query = route
        try:
            with idp.lock:
                if name == "discovery":
                    self._json(200, idp.openid_configuration(tenant))
                elif name == "keys":
                    self._json(200, idp.jwks(tenant))
                else:
                    redirect_uri, reply = idp.authorize(tenant, query)
                    self._reply_to_client(redirect_uri, reply, query.get("response_mode"))
        except EntraError as err:
            self._error(err)  # Entra shows an error page and does not redirect.

    def _reply_to_client(self, redirect_uri: str, reply: dict[str, str], mode: str | None) -> None:
        """Send the authorize result the way ``response_mode`` asks (query by default)."""
        if mode == "form_post":
            fields = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in reply.items()
            )
            page = (
                "<html><body onload='document.forms[0].submit()'>"
                f'<form method="post" action="{html.escape(redirect_uri)}">{fields}</form>'
                "</body></html>"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        sep = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
        self.send_response(302)
        self.send_header("Location", f"{redirect_uri}{sep}{urlencode(reply)}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        route = self._route()
        if route is None or route[0] != "token":
            self._json(404, {"error": "not_found", "path": self.path})
            return
        _, tenant, _ = route
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        basic = _basic_credentials(self.headers.get("Authorization"))
        idp = self.server.idp
        record = TokenRequest(
            grant_type=form.get("grant_type", ""),
            tenant=tenant,
            scopes=tuple(form.get("scope", "").split()),
            client_id=basic[0] if basic else form.get("client_id"),
            time=time.time(),
        )
        with idp.lock:
            idp.token_requests.append(record)
            injection = idp.take_injection()
            try:
                if injection is not None:
                    raise injection.error
                body = idp.token(tenant, form, basic)
            except EntraError as err:
                record.status, record.error = err.status, err.error
                self._error(err)
                return
        record.status = 200
        self._json(200, body)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """Client id and secret from ``Authorization: Basic``, form-decoded as RFC 6749 says."""
    if not header or not header.lower().startswith("basic "):
        return None
    decoded = base64.b64decode(header[6:]).decode()
    client_id, _, secret = decoded.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


def serve(
    idp: FakeIdentityProvider, context: ssl.SSLContext, listen: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """Start serving on a free port of ``listen`` in a daemon thread and return the server."""
    server = _TLSServer(idp, context, listen)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="fake-idp", daemon=True
    )
    thread.start()
    return server
