"""Checking a password mailbox's settings before saving them: against the real Dovecot and the
SMTP submission stand-in, with the mistakes people make when typing them in."""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import pytest

from sync.connect_errors import is_configuration_error
from sync.password_check import check_password_mailbox
from tests.fakes.ca import TestCA
from tests.fakes.dovecot import DovecotServer, free_port
from tests.fakes.fixtures import PasswordAccount
from tests.fakes.smtp import FakeSMTPServer

pytestmark = pytest.mark.dovecot


@pytest.fixture
def account(password_account: PasswordAccount) -> dict[str, Any]:
    return password_account.settings()


def test_settings_that_work_have_no_problems(
    account: dict[str, Any], password_account: PasswordAccount
) -> None:
    smtp_server = password_account.smtp
    assert check_password_mailbox(**account) == {}
    assert smtp_server.state.auth_attempts[-1][1:] == (account["username"], True)
    assert smtp_server.messages == []  # a check sends nothing
    assert check_password_mailbox(**{**account, "smtp_host": ""}) == {}  # SMTP is optional


def test_a_wrong_password_is_reported_on_the_password(account: dict[str, Any]) -> None:
    problems = check_password_mailbox(**{**account, "password": "not the password"})
    assert set(problems) == {"password", "smtp_host"}
    assert "rejected the login for " + account["username"] in problems["password"]
    assert "rejected the login" in problems["smtp_host"]
    assert "not the password" not in str(problems)


def test_the_wrong_encryption_mode_names_the_setting(
    account: dict[str, Any], dovecot: DovecotServer
) -> None:
    """TLS on ports that start in plain text (Dovecot's plain port, SMTP submission)."""
    problems = check_password_mailbox(
        **{**account, "imap_port": dovecot.plain_port, "smtp_security": "ssl"}
    )
    assert set(problems) == {"imap_host", "smtp_host"}
    for problem in problems.values():
        assert "does not speak TLS on this port" in problem and "STARTTLS" in problem


def test_starttls_on_an_implicit_tls_port_names_the_setting(
    account: dict[str, Any], test_ca: TestCA
) -> None:
    """The client waits for a greeting the server never sends (it waits for TLS)."""
    with FakeSMTPServer(test_ca, implicit_tls=True) as implicit:
        implicit.add_password_user(account["username"], account["password"])
        on_implicit = {**account, "smtp_port": implicit.port}
        assert check_password_mailbox(**{**on_implicit, "smtp_security": "ssl"}) == {}
        slow = check_password_mailbox(**{**on_implicit, "imap_security": "starttls"}, timeout=1)
    assert set(slow) == {"imap_host", "smtp_host"}
    for problem in slow.values():
        assert "timed out (if this port expects TLS from the first byte" in problem


def test_unreachable_and_untrusted_servers(
    account: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    nobody = free_port()
    problems = check_password_mailbox(**{**account, "imap_port": nobody, "smtp_port": nobody})
    assert problems["imap_host"].startswith("Cannot connect to 127.0.0.1:")  # a sentence
    assert problems["imap_host"].endswith(".") and "connection refused" in problems["imap_host"]
    assert "connection refused" in problems["smtp_host"]
    monkeypatch.delenv("SSL_CERT_FILE")
    untrusted = check_password_mailbox(**account)
    assert "TLS certificate not trusted" in untrusted["imap_host"]
    assert "TLS certificate not trusted" in untrusted["smtp_host"]


@pytest.mark.parametrize(
    ("exc", "configuration"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), True),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), False),
        (ConnectionRefusedError(111, "Connection refused"), False),
        (TimeoutError("timed out"), False),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), True),
    ],
)
def test_which_failures_a_setting_causes(exc: BaseException, configuration: bool) -> None:
    """A typo in a host name is a setting; a resolver or server that is down is not."""
    assert is_configuration_error(exc) is configuration


def test_a_server_that_never_finishes_its_greeting_does_not_hold_the_page() -> None:
    """One byte every 0.2 s keeps every read under a 1 s timeout, forever: the check still ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            while not stop.wait(0.2):
                connection.sendall(b"*")

    threading.Thread(target=trickle, daemon=True).start()
    try:
        problems = check_password_mailbox(
            imap_host="127.0.0.1",
            imap_port=listener.getsockname()[1],
            imap_security="starttls",
            username="someone",
            password="secret",
            timeout=1,
        )
    finally:
        stop.set()
        listener.close()
    # Returning at all is the point (without the deadline this waits forever).
    assert problems == {"imap_host": "The server gave no complete answer within 2 s."}
