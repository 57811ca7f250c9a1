"""Recognising a server that asks the client to slow down, and for how long.

Exchange Online throttles busy IMAP clients by refusing commands: "NO Request is throttled.
Suggested Backoff Time: 299910 milliseconds", or BAD with the same words followed by a BYE.
Other servers say "[UNAVAILABLE]" or "[INUSE]" (RFC 5530) or "Server Unavailable". Such an
answer is about the server, not about the message asked for: the sync stops the pass and waits
(as long as the server suggests), instead of setting messages aside as unfetchable.
"""

from __future__ import annotations

import re

__all__ = ["busy_backoff"]

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
