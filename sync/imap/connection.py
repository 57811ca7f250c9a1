"""Opening an authenticated IMAP session for a mailbox.

``open_imap(mailbox)`` is the one way Mailweb talks IMAP: the sync engine, the IDLE watcher and
the sender (APPENDing replies to the Sent folder) all use it. TLS is always verified, against
``SSL_CERT_FILE`` when set (a custom CA) or the system store. Microsoft mailboxes log in with
XOAUTH2 (user = the mailbox's own address, which for a shared mailbox is the shared address, and
the delegate's access token from the vault); plain IMAP mailboxes log in with the password the
vault keeps.

Errors are translated into three kinds so callers can react without knowing imaplib:

* ``accounts.vault.NeedsReconnect`` / ``TokenUnavailable`` come straight from the vault, which
  alone decides whether a grant is dead (and marks the mailbox);
* ``ImapLoginRejected``: the server refused credentials the vault believed good (IMAP disabled
  for the mailbox, a wrong password, a token the server rejects);
* ``ImapUnavailable``: the network or the server failed (retry with backoff).
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Iterator

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from accounts import vault
from accounts.endpoints import microsoft_imap_address
from accounts.models import IMAP_METHODS, MailAccount
from sync.connect_errors import describe, is_configuration_error, security_hint

log = logging.getLogger(__name__)

#: The resource whose access tokens Exchange Online accepts for IMAP and SMTP.
OUTLOOK_RESOURCE = "https://outlook.office.com"
DEFAULT_TIMEOUT = 60.0
#: How long a pass may reuse the access token it read (a minute short of its least lifetime).
_TOKEN_REUSE_SECONDS = vault.MIN_REMAINING_SECONDS - 60

__all__ = [
    "IMAP_METHODS",
    "OUTLOOK_RESOURCE",
    "ImapError",
    "ImapLoginRejected",
    "ImapUnavailable",
    "check_password_login",
    "imap_endpoint",
    "imap_session",
    "open_imap",
    "tls_context",
]


class ImapError(Exception):
    """Base class of the errors ``open_imap`` raises besides the vault's own."""


class ImapUnavailable(ImapError):
    """The server could not be reached or dropped the connection: retry later.

    ``configuration`` is set when retrying cannot help until someone changes a setting (a host
    name that does not exist, a certificate the system does not trust, TLS on a plain port).
    """

    def __init__(self, message: str, *, configuration: bool = False) -> None:
        super().__init__(message)
        self.configuration = configuration


class ImapLoginRejected(ImapError):
    """The server refused the credentials (IMAP disabled, wrong password, token rejected).

    ``temporary`` is set when the server said so (``[UNAVAILABLE]``: its authentication
    backend is down), which is worth a retry rather than a person's attention.
    """

    def __init__(self, message: str, *, oauth: bool, temporary: bool = False) -> None:
        super().__init__(message)
        self.oauth = oauth
        self.temporary = temporary


#: What a dropped connection or a misbehaving server looks like from imapclient and imaplib.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # socket errors, timeouts, TLS errors (ssl.SSLError is an OSError)
    imaplib.IMAP4.abort,
    IMAPClient.AbortError,
)


def tls_context() -> ssl.SSLContext:
    """A verifying client context; ``SSL_CERT_FILE`` (if set) is the trusted CA bundle."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def imap_endpoint(mailbox: MailAccount) -> tuple[str, int, str]:
    """``(host, port, security)`` for the mailbox; security is ``"ssl"`` or ``"starttls"``."""
    if mailbox.method == MailAccount.Method.MICROSOFT_IMAP:
        host, port = microsoft_imap_address()
        return host, port, "ssl"
    if mailbox.method == MailAccount.Method.IMAP_PASSWORD:
        if not mailbox.imap_host:
            raise ImapError(f"{mailbox.address} has no IMAP host configured")
        return mailbox.imap_host, mailbox.imap_port or 993, mailbox.imap_security or "ssl"
    raise ImapError(f"{mailbox.address} does not use IMAP (method {mailbox.method})")


def _stop_protocol_trace(client: IMAPClient) -> None:
    """Switch off the imaplib trace that imapclient turns on for its DEBUG logger.

    At that trace level imaplib formats the repr() of every response it reads, whole message
    bodies included, before the logger decides whether to keep the line: every fetched byte
    twice, in the fetching thread, with the interpreter lock held (4 % of all the CPU time of
    an initial sync, in a system-wide profile), and at DEBUG message bodies would reach the
    logs, which they must never do. imapclient's own logger still logs the commands.
    """
    client._imap.debug = 0


def open_imap(mailbox: MailAccount, *, timeout: float = DEFAULT_TIMEOUT) -> IMAPClient:
    """An IMAPClient logged in to ``mailbox`` over verified TLS; the caller logs out.

    Raises ``vault.NeedsReconnect`` / ``vault.TokenUnavailable`` (credentials),
    ``ImapLoginRejected`` (the server said no) or ``ImapUnavailable`` (network, server).
    Datetimes from the client are timezone-aware (``normalise_times`` off).
    """
    return session_opener(mailbox, timeout=timeout)()


def session_opener(
    mailbox: MailAccount, *, timeout: float = DEFAULT_TIMEOUT
) -> Callable[[], IMAPClient]:
    """A function that opens ``open_imap``'s connection, and another one later if need be.

    The credentials are read now, on the calling thread: the sync's fetching thread, which
    reconnects after a server drops it, never touches the database. An access token read now
    is valid for at least ``vault.MIN_REMAINING_SECONDS``; past a safe share of that, opening
    again raises ``ImapUnavailable`` (the next pass reads a fresh token).
    """
    host, port, security = imap_endpoint(mailbox)
    # Credentials first: no point connecting when the grant is gone, and a vault refresh must
    # not happen while a server connection idles towards its timeout.
    secret = _secret(mailbox)
    read_at = time.monotonic()

    def open_session() -> IMAPClient:
        if mailbox.uses_oauth and time.monotonic() - read_at > _TOKEN_REUSE_SECONDS:
            raise ImapUnavailable("the connection dropped late in the pass; the next pass resumes")
        return _connect_and_login(
            host,
            port,
            security,
            timeout=timeout,
            login=lambda client: _login(client, mailbox, secret),
            login_name=mailbox.login_name,
            oauth=mailbox.uses_oauth,
        )

    return open_session


def check_password_login(
    host: str, port: int, security: str, username: str, password: str, *, timeout: float
) -> None:
    """Sign in with these settings and out again, storing nothing.

    Adding a mailbox checks its settings this way first, so a typing error shows beside the
    field at once instead of as a failed sync minutes later. Raises what ``open_imap`` raises.
    """
    client = _connect_and_login(
        host,
        port,
        security,
        timeout=timeout,
        login=lambda client: client.login(username, password),
        login_name=username,
        oauth=False,
    )
    _close(client)


def _connect_and_login(
    host: str,
    port: int,
    security: str,
    *,
    timeout: float,
    login: Callable[[IMAPClient], object],
    login_name: str,
    oauth: bool,
) -> IMAPClient:
    context = tls_context()
    try:
        client = IMAPClient(host, port, ssl=security == "ssl", ssl_context=context, timeout=timeout)
    except CONNECTION_ERRORS as exc:
        raise ImapUnavailable(
            f"cannot connect to {host}:{port}: {describe(exc)}{security_hint(exc, security)}",
            configuration=is_configuration_error(exc),
        ) from None
    client.normalise_times = False
    _stop_protocol_trace(client)
    try:
        if security == "starttls":
            client.starttls(context)
        login(client)
    except LoginError as exc:
        _close(client)
        if isinstance(exc.__context__, imaplib.IMAP4.abort):
            # imapclient turns every imaplib error during the login into a LoginError, a
            # connection that broke halfway included: that is the network, not a refusal, and
            # must not send a person to re-enter a password that is fine.
            raise ImapUnavailable(
                f"connection to {host}:{port} failed during the login: {_server_text(exc)}"
            ) from None
        text = _server_text(exc)
        raise ImapLoginRejected(
            f"{host} rejected the login for {login_name}: {text}",
            oauth=oauth,
            temporary="[UNAVAILABLE]" in text.upper(),
        ) from None
    except CONNECTION_ERRORS as exc:
        _close(client)
        raise ImapUnavailable(
            f"connection to {host}:{port} failed: {describe(exc)}",
            configuration=is_configuration_error(exc),
        ) from None
    except IMAPClientError as exc:
        _close(client)
        raise ImapUnavailable(f"{host} answered unexpectedly: {_server_text(exc)}") from None
    except BaseException:
        _close(client)
        raise
    return client


@contextlib.contextmanager
def imap_session(mailbox: MailAccount, *, timeout: float = DEFAULT_TIMEOUT) -> Iterator[IMAPClient]:
    """``open_imap`` as a context manager that always logs out (or drops) the connection."""
    client = open_imap(mailbox, timeout=timeout)
    try:
        yield client
    finally:
        close_quietly(client)


def close_quietly(client: IMAPClient) -> None:
    """LOGOUT, or just drop the socket when the connection is already broken."""
    _close(client)


def _secret(mailbox: MailAccount) -> str:
    if mailbox.uses_oauth:
        return vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    return vault.get_password(mailbox)


def _login(client: IMAPClient, mailbox: MailAccount, secret: str) -> None:
    if mailbox.uses_oauth:
        # For a shared mailbox the user is the shared address; the token is the delegate's.
        client.oauth2_login(mailbox.address, secret)
    else:
        client.login(mailbox.login_name, secret)


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:
        with contextlib.suppress(Exception):
            client.shutdown()


def _server_text(exc: BaseException) -> str:
    """The server's words, without anything that could echo a credential.

    imaplib puts the server's bytes into its errors as they are, so they read "b'...'".
    """
    text = str(exc)
    quoted = re.fullmatch(r"b(['\"])(.*)\1", text, re.DOTALL)
    if quoted:
        text = quoted.group(2)
    for marker in ("auth=Bearer", "Bearer "):
        if marker in text:
            return "authentication failed"
    return text[:300]
