"""Submitting a message over SMTP: XOAUTH2 for Microsoft mailboxes, a password otherwise.

TLS is always verified (STARTTLS on 587, or implicit TLS on 465) with the same context as IMAP,
so ``SSL_CERT_FILE`` names a custom CA. Errors come out as two kinds the outbox task branches
on: ``TransientSendError`` (try again later: network, 4xx, a token that could not be had right
now) and ``PermanentSendError`` (a person must act: 5xx, refused credentials, a mailbox that
needs reconnecting). Neither message ever contains a credential.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator

from django.conf import settings

from accounts import vault
from accounts.endpoints import microsoft_smtp_address
from accounts.models import MailAccount
from sync.connect_errors import describe, is_configuration_error, security_hint
from sync.imap.connection import tls_context

OUTLOOK_RESOURCE = "https://outlook.office.com"
TIMEOUT = 60.0

__all__ = [
    "PermanentSendError",
    "SendError",
    "TransientSendError",
    "check_password_login",
    "smtp_endpoint",
    "submit",
    "xoauth2_string",
]


class SendError(Exception):
    """Base class; the message is shown to people next to the failed reply."""


class TransientSendError(SendError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSendError(SendError):
    pass


def smtp_endpoint(mailbox: MailAccount) -> tuple[str, int, str]:
    """``(host, port, security)``; security is ``"starttls"`` or ``"ssl"``."""
    if mailbox.uses_oauth:
        host, port = microsoft_smtp_address()
        return host, port, "ssl" if port == 465 else "starttls"
    if not mailbox.smtp_host:
        raise PermanentSendError(f"{mailbox.address} has no SMTP server configured.")
    return mailbox.smtp_host, mailbox.smtp_port or 587, mailbox.smtp_security or "starttls"


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial client response (before base64, which smtplib adds)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def _xoauth2_responder(user: str, token: str) -> Callable[..., str]:
    """smtplib calls this once per 334 challenge: first the credentials, then (after the
    server answered with an error challenge) an empty line, as the protocol requires."""
    calls = {"n": 0}

    def respond(challenge: bytes | None = None) -> str:
        calls["n"] += 1
        return xoauth2_string(user, token) if calls["n"] == 1 else ""

    return respond


def _connect(
    host: str, port: int, security: str, context: ssl.SSLContext, timeout: float
) -> smtplib.SMTP:
    local = socket.getfqdn() if not settings.DEBUG else "localhost"
    if security == "ssl":
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=context, local_hostname=local)
    client = smtplib.SMTP(host, port, timeout=timeout, local_hostname=local)
    client.ehlo()
    if not client.has_extn("starttls"):
        client.close()
        raise PermanentSendError(f"{host} does not offer STARTTLS; Mailweb never sends in clear.")
    client.starttls(context=context)
    client.ehlo()
    return client


def _authenticate(client: smtplib.SMTP, mailbox: MailAccount) -> None:
    try:
        if mailbox.uses_oauth:
            token = vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
            # The response goes on its own line (no SASL-IR): Dovecot-like peers reject long
            # initial responses, and Exchange accepts both forms.
            client.auth(
                "XOAUTH2", _xoauth2_responder(mailbox.address, token), initial_response_ok=False
            )
        else:
            client.login(mailbox.login_name, vault.get_password(mailbox))
    except vault.NeedsReconnect as exc:
        raise PermanentSendError(f"The mailbox must be reconnected: {exc}") from None
    except vault.TokenUnavailable as exc:
        raise TransientSendError(f"No access token right now: {exc}", exc.retry_after) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise PermanentSendError(
            f"The SMTP server refused the credentials ({exc.smtp_code}). Check that "
            "authenticated SMTP is enabled for this mailbox."
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise PermanentSendError("The SMTP server does not support this sign-in method.") from None


def submit(mailbox: MailAccount, sender: str, recipients: list[str], raw: bytes) -> dict[str, str]:
    """Send ``raw`` to ``recipients``; returns refusals of individual recipients (address ->
    reason) when others were accepted. Raises TransientSendError / PermanentSendError."""
    host, port, security = smtp_endpoint(mailbox)
    with _session(host, port, security, timeout=TIMEOUT) as client:
        _authenticate(client, mailbox)
        refused = client.sendmail(sender, recipients, raw)
    return {
        address: f"{code} {reason.decode(errors='replace')}"
        for address, (code, reason) in refused.items()
    }


def check_password_login(
    host: str, port: int, security: str, username: str, password: str, *, timeout: float
) -> None:
    """Sign in to the SMTP server and out again, sending and storing nothing.

    The twin of ``sync.imap.connection.check_password_login``, for the same form: a wrong SMTP
    setting would otherwise show only when the first reply fails. Raises SendError.
    """
    with _session(host, port, security, timeout=timeout) as client:
        try:
            client.login(username, password)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentSendError(
                f"{host} rejected the login for {username} ({exc.smtp_code})."
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise PermanentSendError(f"{host} does not offer password sign-in.") from None


@contextlib.contextmanager
def _session(host: str, port: int, security: str, *, timeout: float) -> Iterator[smtplib.SMTP]:
    """A connected SMTP session over verified TLS whose failures come out as SendErrors."""
    try:
        client = _connect(host, port, security, tls_context(), timeout)
    except (smtplib.SMTPException, OSError) as exc:
        raise _connection_failure(host, port, security, exc) from None
    try:
        yield client
    except smtplib.SMTPRecipientsRefused as exc:
        reasons = "; ".join(
            f"{address}: {code} {reason.decode(errors='replace')}"
            for address, (code, reason) in exc.recipients.items()
        )
        if all(400 <= code < 500 for code, _ in exc.recipients.values()):
            raise TransientSendError(f"Recipients deferred: {reasons}") from None
        raise PermanentSendError(f"Every recipient was refused: {reasons}") from None
    except smtplib.SMTPResponseException as exc:
        raise _answer_failure(exc) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientSendError(
            f"The connection to {host}:{port} failed: {describe(exc)}."
        ) from None
    finally:
        try:
            client.quit()
        except Exception:
            client.close()


def _connection_failure(host: str, port: int, security: str, exc: BaseException) -> SendError:
    """Why the session could not start, naming the setting to change where one is at fault."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return _answer_failure(exc)  # a refusing greeting, STARTTLS unavailable right now
    # smtplib reports a greeting that never came as a disconnection; the cause says why.
    cause = exc.__context__ if isinstance(exc.__context__, OSError) else exc
    message = f"Cannot connect to {host}:{port}: {describe(cause)}{security_hint(cause, security)}."
    if is_configuration_error(cause):
        return PermanentSendError(message)
    return TransientSendError(message)


def _answer_failure(exc: smtplib.SMTPResponseException) -> SendError:
    text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
    message = f"The SMTP server answered {exc.smtp_code} {text}".strip()
    if 400 <= exc.smtp_code < 500:
        return TransientSendError(message)
    return PermanentSendError(message)
