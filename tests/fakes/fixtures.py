"""pytest fixtures for the outside-service stand-ins; ``tests/conftest.py`` imports them.

Session-scoped because a CA, an RSA key and a Dovecot start cost tens of milliseconds each and
the stand-ins are shared safely: tests use their own addresses, clients and mailboxes. Nothing
here changes the process environment; ``trust_test_ca`` does so per test through monkeypatch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.ca import TestCA
from tests.fakes.dovecot import DOVECOT_BINARY, DovecotServer
from tests.fakes.idp import FakeIdentityProvider
from tests.fakes.smtp import FakeSMTPServer

__all__ = [
    "PasswordAccount",
    "dovecot",
    "dovecot_exchange_like",
    "fresh_idp",
    "idp",
    "password_account",
    "test_ca",
    "trust_test_ca",
]


def _require_dovecot() -> None:
    if not Path(DOVECOT_BINARY).exists():
        pytest.skip(
            f"{DOVECOT_BINARY} not found: install Dovecot (apt-get install dovecot-imapd) "
            "to run the IMAP tests"
        )


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A throwaway CA; its ``ca_path`` is what clients must trust."""
    return TestCA(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture(scope="session")
def idp(test_ca: TestCA) -> Iterator[FakeIdentityProvider]:
    """The Entra stand-in, serving HTTPS for the whole session (authority ``/organizations``)."""
    with FakeIdentityProvider(test_ca) as provider:
        yield provider


@pytest.fixture
def fresh_idp(idp: FakeIdentityProvider) -> Iterator[FakeIdentityProvider]:
    """The session IdP with per-test state (injections, request logs, ...) cleared around it."""
    idp.reset()
    yield idp
    idp.reset()


@pytest.fixture
def trust_test_ca(monkeypatch: pytest.MonkeyPatch, test_ca: TestCA) -> Path:
    """Point requests (msal) and ssl-based clients at the test CA for one test."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(test_ca.ca_path))
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_path))
    return test_ca.ca_path


@pytest.fixture(scope="session")
def dovecot(
    tmp_path_factory: pytest.TempPathFactory, idp: FakeIdentityProvider
) -> Iterator[DovecotServer]:
    """A Dovecot with the full capability list and SPECIAL-USE folders (Sent, Trash, ...)."""
    _require_dovecot()
    with DovecotServer(tmp_path_factory.mktemp("dovecot"), idp) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_exchange_like(
    tmp_path_factory: pytest.TempPathFactory, idp: FakeIdentityProvider
) -> Iterator[DovecotServer]:
    """A Dovecot that looks like Exchange Online: Exchange capabilities and folder names."""
    _require_dovecot()
    with DovecotServer(
        tmp_path_factory.mktemp("dovecot-exchange"),
        idp,
        hide_capabilities=True,
        exchange_names=True,
    ) as server:
        yield server


@dataclass
class PasswordAccount:
    """A user that the real Dovecot and an SMTP stand-in both know, with the same password."""

    username: str
    password: str
    dovecot: DovecotServer
    smtp: FakeSMTPServer

    def settings(self) -> dict[str, Any]:
        """The server settings that work for it: IMAP over TLS, SMTP with STARTTLS."""
        return {
            "imap_host": "127.0.0.1",
            "imap_port": self.dovecot.port,
            "imap_security": "ssl",
            "username": self.username,
            "password": self.password,
            "smtp_host": "127.0.0.1",
            "smtp_port": self.smtp.port,
            "smtp_security": "starttls",
        }


@pytest.fixture
def password_account(
    dovecot: DovecotServer, test_ca: TestCA, trust_test_ca: Path
) -> Iterator[PasswordAccount]:
    """A new ``PasswordAccount``, with an SMTP stand-in of its own for the test."""
    username = f"user-{uuid.uuid4().hex[:8]}@example.net"
    password = "pass " + uuid.uuid4().hex
    dovecot.add_password_user(username, password)
    with FakeSMTPServer(test_ca) as smtp:
        smtp.add_password_user(username, password)
        yield PasswordAccount(username, password, dovecot, smtp)
