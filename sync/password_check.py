"""Checking a password mailbox's server settings before they are saved.

The Add IMAP mailbox page and ``manage.py addmailbox`` sign in to the IMAP server, and to the
SMTP server when one is given, with the settings as entered, then sign out. A mistyped host,
port, encryption mode or password is then reported beside the field it concerns while the
person is still at the form, instead of as a mailbox that fails to sync minutes later (a wrong
password would even leave it "needs reconnect"). Nothing is stored and nothing is sent.

The two sign-ins run side by side and the whole check ends after two ``timeout``s (20 s, within
gunicorn's 30 s), since the page waits for it inside a web request.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from accounts.models import IMAP_TLS_PORT, SMTP_TLS_PORT, security_for_port
from sync import smtp
from sync.imap import connection as imap

CHECK_TIMEOUT = 10.0
#: The whole check ends after this many timeouts, whatever the servers do.
DEADLINE_FACTOR = 2

__all__ = ["CHECK_TIMEOUT", "check_password_mailbox"]


def check_password_mailbox(
    *,
    imap_host: str,
    imap_port: int,
    username: str,
    password: str,
    imap_security: str | None = None,
    smtp_host: str = "",
    smtp_port: int = 587,
    smtp_security: str | None = None,
    timeout: float = CHECK_TIMEOUT,
) -> dict[str, str]:
    """What is wrong with these settings, keyed by the form field it concerns; {} if nothing.

    The keys are ``imap_host`` (the IMAP server could not be reached or spoke no TLS),
    ``password`` (the IMAP server refused the login) and ``smtp_host`` (anything about the SMTP
    server, its login included: the IMAP server having accepted the same credentials, a refusal
    there usually means authenticated SMTP is off for the account).
    """
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mailbox-check")
    checks = {
        "imap_host": pool.submit(
            _check_imap,
            imap_host,
            imap_port,
            security_for_port(imap_security, imap_port, IMAP_TLS_PORT),
            username,
            password,
            timeout,
        )
    }
    if smtp_host:
        checks["smtp_host"] = pool.submit(
            _check_smtp,
            smtp_host,
            smtp_port,
            security_for_port(smtp_security, smtp_port, SMTP_TLS_PORT),
            username,
            password,
            timeout,
        )
    # The timeout bounds each network wait, not their sum (nor the resolver's), and a server
    # that answers a byte at a time never lets one expire: the page stops waiting regardless.
    limit = timeout * DEADLINE_FACTOR
    deadline = time.monotonic() + limit
    problems: dict[str, str] = {}
    try:
        for field, check in checks.items():
            try:
                problems.update(check.result(timeout=max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                problems[field] = f"The server gave no complete answer within {limit:.0f} s."
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a stuck check finishes unwatched
    return problems


def _check_imap(
    host: str, port: int, security: str, username: str, password: str, timeout: float
) -> dict[str, str]:
    try:
        imap.check_password_login(host, port, security, username, password, timeout=timeout)
    except imap.ImapLoginRejected as exc:
        return {"imap_host" if exc.temporary else "password": _sentence(exc)}
    except imap.ImapError as exc:
        return {"imap_host": _sentence(exc)}
    return {}


def _check_smtp(
    host: str, port: int, security: str, username: str, password: str, timeout: float
) -> dict[str, str]:
    try:
        smtp.check_password_login(host, port, security, username, password, timeout=timeout)
    except smtp.SendError as exc:
        return {"smtp_host": _sentence(exc)}
    return {}


def _sentence(exc: Exception) -> str:
    """The error as a sentence of its own: the clients' messages are also written to be
    embedded in others (the sync's "last error"), so IMAP's start in lower case."""
    text = str(exc).strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."
