"""Mailweb configured against the Entra stand-in, and a browser that signs in there.

``entra`` registers a fresh app (client id, secret, redirect URI ``MAILWEB_BASE_URL`` +
``/oauth/microsoft/callback/``) at the session's identity provider and points the settings at
it, so every test has its own consent and grants. ``Entra.sign_in`` plays the browser: it
follows Mailweb's redirect to the stand-in's authorize endpoint with ``requests`` (trusting the
test CA) and brings the redirect back to Mailweb's callback through the Django test client.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from django.core.cache import cache
from django.test import Client

from tests.fakes.idp import FakeClient, FakeIdentityProvider

CALLBACK = "/oauth/microsoft/callback/"


@dataclass
class Entra:
    idp: FakeIdentityProvider
    app: FakeClient
    ca_path: Path
    settings: Any

    def new_user(self, prefix: str = "user", *, tid: str | None = None) -> str:
        email = f"{prefix}-{uuid.uuid4().hex[:8]}@contoso.example"
        self.idp.add_user(email, tid=tid)
        return email

    def authorize(self, start: Any, login: str | None = None) -> dict[str, str]:
        """Follow Mailweb's redirect to Microsoft; return the query Microsoft sends back."""
        assert start.status_code == 302, getattr(start, "content", b"")[:500]
        auth_uri = start["Location"]
        assert auth_uri.startswith(self.idp.authority_host + "/"), auth_uri
        if login:
            self.idp.next_login = login
        reply = requests.get(auth_uri, allow_redirects=False, verify=str(self.ca_path))
        assert reply.status_code == 302, reply.text
        back = urlsplit(reply.headers["Location"])
        assert f"{back.scheme}://{back.netloc}{back.path}" == (
            self.settings.MAILWEB_BASE_URL + CALLBACK
        )
        return dict(parse_qsl(back.query))

    def sign_in(self, client: Client, start: Any, login: str | None = None) -> Any:
        """The whole round trip: Mailweb → Microsoft → Mailweb's callback."""
        return client.get(CALLBACK, self.authorize(start, login))

    def connect(
        self,
        client: Client,
        login: str,
        *,
        method: str = "microsoft_imap",
        shared_address: str = "",
    ) -> Any:
        start = client.post(
            "/mailboxes/connect/microsoft/",
            {"method": method, "shared_address": shared_address},
        )
        return self.sign_in(client, start, login)

    def refresh_requests(self) -> list[Any]:
        return [r for r in self.idp.token_requests if r.grant_type == "refresh_token"]


@pytest.fixture
def entra(settings: Any, fresh_idp: FakeIdentityProvider, trust_test_ca: Path) -> Iterator[Entra]:
    app = fresh_idp.register_client(
        redirect_uris=[settings.MAILWEB_BASE_URL + CALLBACK], name="Mailweb"
    )
    settings.MICROSOFT_CLIENT_ID = app.client_id
    settings.MICROSOFT_CLIENT_SECRET = app.secret
    settings.MICROSOFT_AUTHORITY_HOST = fresh_idp.authority_host
    settings.MICROSOFT_TENANT = "organizations"
    settings.MAILWEB_TOKEN_RETRY_BASE_DELAY = 0.05
    settings.MAILWEB_TOKEN_RETRY_BUDGET = 1.0
    cache.clear()
    yield Entra(fresh_idp, app, trust_test_ca, settings)
    cache.clear()
