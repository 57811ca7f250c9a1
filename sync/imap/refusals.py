"""What an IMAP error from the server means for the sync: the server is busy, the connection
is gone, or the server will not hand over the messages asked for.

imaplib raises the same few exceptions for all three. A tagged NO or BAD is an
``IMAPClientError``; a BYE, and a connection that broke, are both an abort, the latter saying
"socket error". Exchange Online throttles busy clients by refusing commands ("NO Request is
throttled. Suggested Backoff Time: 299910 milliseconds", or BAD with the same words followed by
a BYE); other servers say "[UNAVAILABLE]" or "[INUSE]" (RFC 5530) or "Server Unavailable".
Such an answer is about the server, not about the message asked for: the sync stops and waits
as long as the server suggests, instead of setting messages aside (``sync.unfetchable``).

Exchange also accepts a token for a mailbox the token's account may not open, then answers
every command with "BAD User is authenticated but not connected." (then BYE). For a shared
mailbox that nearly always means the connecting account lacks Full Access: no retry helps.
"""

from __future__ import annotations

import imaplib
import re

from imapclient.exceptions import IMAPClientError

__all__ = [
    "IMAP_ERRORS",
    "busy_backoff",
    "connection_dropped",
    "mailbox_not_opened",
    "refuses_the_messages",
]

#: What imaplib and imapclient raise for an answer that a command failed, or a lost connection.
IMAP_ERRORS = (IMAPClientError, imaplib.IMAP4.error)

_SUGGESTED = re.compile(r"Suggested Backoff Time:\s*(\d+)\s*milliseconds", re.IGNORECASE)
_BUSY = re.compile(
    r"throttl|\[UNAVAILABLE\]|\[INUSE\]|Server Unavailable|Suggested Backoff", re.IGNORECASE
)
#: The wait when a busy server does not say how long (Exchange usually asks for five minutes).
DEFAULT_BACKOFF_SECONDS = 60.0


def busy_backoff(text: str) -> float | None:
    """Seconds to wait when ``text`` (a server's answer) says it is busy, else None."""
    if not _BUSY.search(text):
        return None
    suggested = _SUGGESTED.search(text)
    return int(suggested[1]) / 1000 if suggested else DEFAULT_BACKOFF_SECONDS


def refuses_the_messages(exc: BaseException) -> bool:
    """Whether ``exc`` (one of ``IMAP_ERRORS``) is the server refusing what was asked for,
    rather than a connection that broke or a server asking everyone to wait."""
    text = str(exc)
    return "socket error" not in text and busy_backoff(text) is None


def connection_dropped(exc: BaseException) -> bool:
    """Whether the connection is gone after ``exc``: a BYE (Dovecot's way after refusing a
    message) or a broken socket. After a plain NO or BAD (Exchange's way) it goes on."""
    return isinstance(exc, imaplib.IMAP4.abort)


def mailbox_not_opened(text: str) -> bool:
    """Whether ``text`` is Exchange's "signed in, but that mailbox is not yours to open"."""
    return "authenticated but not connected" in text.lower()
