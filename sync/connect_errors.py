"""Saying why a connection to a mail server failed, for IMAP and SMTP alike.

Both protocols fail the same ways on the way in (no such host, a certificate that does not
verify, the wrong encryption mode for the port), and people fix them the same way: in the
mailbox's settings. The wording here is shown on the Mailboxes page and the Add IMAP mailbox
form, so it names the setting to change rather than the exception.
"""

from __future__ import annotations

import socket
import ssl

__all__ = ["describe", "is_configuration_error", "security_hint"]

#: getaddrinfo's answers for a name that does not exist (not for a resolver that is down).
_UNKNOWN_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, socket.gaierror) and exc.errno in _UNKNOWN_HOST:
        return "no such host"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port, or a firewall refuses it)"
    return f"{type(exc).__name__}: {exc}"[:300]


def security_hint(exc: BaseException, security: str) -> str:
    """What to change when the failure looks like the wrong encryption mode for the port.

    A STARTTLS client on a port that expects TLS from the first byte waits for a greeting the
    server never sends, until it times out; a TLS client on a plain port gets an answer that is
    not TLS. Both are easy settings to get wrong, and "timed out" alone sends people looking at
    firewalls.
    """
    if security == "starttls" and isinstance(exc, socket.timeout | TimeoutError):
        return " (if this port expects TLS from the first byte, set the encryption to TLS)"
    if security == "ssl" and _not_tls(exc):
        return " (the server does not speak TLS on this port: if it offers STARTTLS, set that)"
    return ""


def is_configuration_error(exc: BaseException) -> bool:
    """Whether retrying cannot help until someone changes a setting.

    An unknown host name, a certificate that does not verify and an answer that is not TLS
    stay the same on every retry; a refused or timed-out connection may be a server restarting.
    """
    if isinstance(exc, socket.gaierror):
        return exc.errno in _UNKNOWN_HOST
    return isinstance(exc, ssl.SSLCertVerificationError) or _not_tls(exc)


def _not_tls(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError) and exc.reason == "WRONG_VERSION_NUMBER"
