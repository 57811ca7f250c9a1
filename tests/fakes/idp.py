"""An HTTPS stand-in for Microsoft Entra ID (v2 endpoints), good enough for msal.

Mailweb's "Connect Microsoft" flow and token vault talk to Entra through msal, which insists on
an ``https://`` authority and fetches the tenant's OpenID configuration. This server answers
those requests on 127.0.0.1 with a certificate from :class:`tests.fakes.ca.TestCA`, and
reproduces the Entra behaviour the vault must handle: single-use codes with PKCE, rotating
refresh tokens that stay valid until revoked, one resource per access token, AADSTS error
bodies, throttling with ``Retry-After``. The HTTP plumbing lives in
:mod:`tests.fakes.idp_http`; the protocol rules here.
"""

from __future__ import annotations

import html
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes import entra
from tests.fakes.ca import TestCA
from tests.fakes.entra import EntraError, FakeClient, FakeUser, TokenRequest
from tests.fakes.idp_http import serve
from tests.fakes.idp_protocol import EntraProtocol, Injection, Pending, full_scope_names

__all__ = ["FakeClient", "FakeIdentityProvider", "FakeUser", "TokenRequest"]

DEFAULT_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"


class FakeIdentityProvider(EntraProtocol):
    """Entra-shaped authorize/token/discovery endpoints on a free 127.0.0.1 port.

    ``tenant`` is the authority segment the app is expected to use (``.authority``);
    every tenant segment is served, so tests can also check which one the app called.
    """

    def __init__(
        self,
        ca: TestCA,
        tenant: str = "organizations",
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        access_token_lifetime: int = 3600,
        host: str = "127.0.0.1",
        listen: str = "127.0.0.1",
    ) -> None:
        self.ca = ca
        #: The name in the authority and the issuer; another name (with ``listen="0.0.0.0"``)
        #: lets containers reach it through the host (tests/compose).
        self.host = host
        self.listen = listen
        self.tenant = tenant
        self.tenant_id = tenant_id
        self.access_token_lifetime = access_token_lifetime
        self._default_lifetime = access_token_lifetime
        self.signer = entra.Signer()
        #: Email of the person who signs in at the next authorize (consumed once used).
        self.next_login: str | None = None
        self.token_requests: list[TokenRequest] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.users: dict[str, FakeUser] = {}
        self.clients: dict[str, FakeClient] = {}
        self._codes = {}
        self._grants = {}
        self._consent = {}
        self._admin_consent = {}
        self._pending = Pending()
        self._client_listeners: list[Callable[[FakeClient], None]] = []
        self.lock = threading.RLock()
        self._server: Any = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeIdentityProvider:
        """Serve HTTPS from a daemon thread; returns self for one-line set-up."""
        cert_name = "idp"
        if self.host != "127.0.0.1":
            cert_name = f"idp-{self.host}"  # the CA caches certificates by name
            self.ca.issue_server_cert(cert_name, hostnames=("localhost", self.host))
        self._server = serve(self, self.ca.server_context(cert_name), self.listen)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        """Stop serving; state (users, grants) is kept, so ``start()`` may be called again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeIdentityProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------

    @property
    def authority_host(self) -> str:
        """Scheme, host and port, like ``https://login.microsoftonline.com`` (the IdP is here)."""
        return f"https://{self.host}:{self.port}"

    @property
    def authority(self) -> str:
        """What to pass as msal's ``authority``: host plus the configured tenant segment."""
        return f"{self.authority_host}/{self.tenant}"

    def issuer(self, tenant_id: str | None = None) -> str:
        """The ``iss`` of tokens for users of ``tenant_id`` (default: the home tenant)."""
        return f"{self.authority_host}/{tenant_id or self.tenant_id}/v2.0"

    def issuers(self) -> list[str]:
        """Issuers of every tenant known so far (the home tenant plus users' tenants)."""
        tids = dict.fromkeys([self.tenant_id, *(u.tid for u in self.users.values())])
        return [self.issuer(t) for t in tids]

    @property
    def public_key_pem(self) -> str:
        """The RS256 verification key, for Dovecot's local validation and for tests."""
        return self.signer.public_key_pem

    @property
    def kid(self) -> str:
        """The ``kid`` header of every token signed here (Dovecot's key file name)."""
        return self.signer.kid

    # -- configuration ---------------------------------------------------------------------

    def add_user(
        self, email: str, *, name: str | None = None, oid: str | None = None, tid: str | None = None
    ) -> FakeUser:
        """Add a person who can sign in; the first one added is the default at authorize."""
        local = email.split("@")[0]
        user = FakeUser(
            email=email,
            name=name or local.replace(".", " ").title() + " Tester",
            oid=oid or str(uuid.uuid4()),
            tid=tid or self.tenant_id,
        )
        with self.lock:
            self.users[email.lower()] = user
        return user

    def register_client(
        self,
        client_id: str | None = None,
        secret: str | None = None,
        redirect_uris: Iterable[str] = (),
        *,
        name: str = "Mailweb",
    ) -> FakeClient:
        """Register an app (ids and secret generated when not given), as in the Entra portal."""
        client = FakeClient(
            client_id=client_id or str(uuid.uuid4()),
            secret=secret or secrets.token_urlsafe(30),
            redirect_uris=list(redirect_uris),
            name=name,
        )
        with self.lock:
            self.clients[client.client_id] = client
            listeners = list(self._client_listeners)
        for listener in listeners:
            listener(client)
        return client

    def add_client_listener(self, callback: Callable[[FakeClient], None]) -> None:
        """Call ``callback`` for every client registered from now on (Dovecot's key files)."""
        with self.lock:
            self._client_listeners.append(callback)

    def expire_client_secret(self, client_id: str) -> None:
        """Make the client's secret fail with AADSTS7000222 (an admin must add a new one)."""
        self.clients[client_id].secret_expired = True

    def admin_consent(self, client_id: str, scopes: Iterable[str]) -> None:
        """Grant tenant-wide consent, so refreshes may ask for these scopes for any user."""
        full = set(full_scope_names(scopes))
        with self.lock:
            self._admin_consent.setdefault(client_id, set()).update(full)

    def fail_next_authorize(self, error: str, description: str) -> None:
        """Make the next authorize redirect back with ``error`` instead of a code."""
        with self.lock:
            self._pending.authorize_errors.append((error, description))

    def inject(
        self,
        status: int = 429,
        *,
        retry_after: int | None = None,
        count: int = 1,
        error: str | None = None,
        description: str | None = None,
        code: int | None = None,
    ) -> None:
        """Fail the next ``count`` token requests with ``status`` (before any other check)."""
        if error is None:
            error = "temporarily_unavailable" if status in (429, 503) else "server_error"
        if code is None:
            code = 90033 if error == "temporarily_unavailable" else 50000
        message = description or (
            "A transient error has occurred. Please try again."
            if error == "temporarily_unavailable"
            else "There was an error issuing a token or an issue with our sign-in service."
        )
        err = EntraError(error, code, message, status=status, retry_after=retry_after)
        with self.lock:
            self._pending.injections.append(Injection(status, count, retry_after, err))

    def revoke(self, email: str) -> None:
        """Revoke every refresh token of the user (admin "revoke sessions", password reset)."""
        with self.lock:
            for grant in self._grants.values():
                if grant.user.email.lower() == email.lower():
                    grant.revoked = True

    def expire_refresh_tokens(self, email: str) -> None:
        """Make the user's refresh tokens fail as if 90 days inactive (AADSTS700082)."""
        with self.lock:
            for grant in self._grants.values():
                if grant.user.email.lower() == email.lower():
                    grant.expired = True

    def reset(self) -> None:
        """Forget per-test state (pending failures, ``next_login``, request logs, lifetime).

        Users, clients, consent and issued tokens stay: a session-wide IdP keeps them, and
        tests use their own addresses and clients.
        """
        with self.lock:
            self._pending = Pending()
            self.next_login = None
            self.token_requests.clear()
            self.authorize_requests.clear()
            self.access_token_lifetime = self._default_lifetime

    def set_access_token_lifetime(self, seconds: int) -> None:
        """Lifetime of access tokens issued from now on (``expires_in`` and ``exp``)."""
        self.access_token_lifetime = seconds

    def active_refresh_tokens(self, email: str) -> int:
        """How many of the user's refresh tokens would still work."""
        with self.lock:
            return sum(
                1
                for g in self._grants.values()
                if g.user.email.lower() == email.lower() and not (g.revoked or g.expired)
            )

    def complete_authorize(self, auth_uri: str) -> dict[str, str]:
        """Play the browser: open ``auth_uri`` and return what reaches the redirect URI.

        Handles the 302 (query or fragment) and ``response_mode=form_post`` pages, so a test
        can pass the result straight to ``acquire_token_by_auth_code_flow`` or to the app's
        callback view. Raises ``RuntimeError`` when Entra would show an error page instead.
        """
        response = requests.get(auth_uri, allow_redirects=False, verify=str(self.ca.ca_path))
        if response.status_code == 302:
            location = urlsplit(response.headers["Location"])
            return dict(parse_qsl(location.fragment or location.query))
        if response.status_code == 200:
            fields = re.findall(r'name="([^"]*)" value="([^"]*)"', response.text)
            return {html.unescape(k): html.unescape(v) for k, v in fields}
        raise RuntimeError(f"authorize failed: {response.status_code} {response.text}")

    def mint_access_token(
        self,
        email: str,
        scopes: Iterable[str] | str = (f"{entra.OUTLOOK}/IMAP.AccessAsUser.All",),
        lifetime: int | None = None,
        *,
        client_id: str | None = None,
        issuer: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """An access token as the token endpoint would issue it, without the OAuth dance.

        ``lifetime`` may be negative for an expired token; ``issuer`` and ``key`` let a test
        forge a token Dovecot must reject; ``extra_claims`` overrides claims (``None`` values
        remove them), e.g. ``{"azp": client_id}`` for a v2-style token.
        """
        user = self.users.get(email.lower()) or self.add_user(email)
        request = entra.parse_scopes(scopes)
        claims = entra.access_token_claims(
            issuer=issuer or self.issuer(user.tid),
            user=user,
            client_id=client_id or next(iter(self.clients), str(uuid.uuid4())),
            app_name="Mailweb",
            scopes=request,
            lifetime=self.access_token_lifetime if lifetime is None else lifetime,
        )
        for name, value in (extra_claims or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return self.signer.sign(claims, key=key)
