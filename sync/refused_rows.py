"""A row PostgreSQL will not take: telling it from other database errors, and cutting it down.

The parser keeps every field inside the columns' limits, but mail is hostile and PostgreSQL has
limits of its own (an index entry over a third of a page, a byte sequence it rejects). A refused
message must not fail its batch on every pass, so ``sync.ingest`` stores it cut down instead:
the raw bytes stay whole in their blob and can be parsed again.
"""

from __future__ import annotations

import dataclasses

from django.db import DatabaseError, DataError

from sync.incoming import PreparedMessage, addresses_text
from sync.mime import ParsedMessage
from sync.mime_text import fit_bytes

# SQLSTATE classes of a value PostgreSQL will not take: data exceptions (22) and program
# limits (54, such as an index entry over a third of a page). The row's fault, not the server's.
_REFUSED_VALUE_CLASSES = ("22", "54")


def refused_value(exc: DatabaseError) -> str | None:
    """PostgreSQL's reason when ``exc`` says a value cannot be stored, else None.

    Only the primary message: psycopg's full text can carry a DETAIL with the value itself,
    which is message content and must not reach logs or the Mailboxes page.
    """
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or ""
    if not isinstance(exc, DataError) and sqlstate[:2] not in _REFUSED_VALUE_CLASSES:
        return None
    diag = getattr(cause, "diag", None)
    return getattr(diag, "message_primary", None) or type(exc).__name__


def cut_down(prepared: PreparedMessage, refusal: str) -> PreparedMessage:
    """``prepared`` reduced to short headers and the plain text: the raw bytes stay whole in
    their blob (and can be parsed again), the row shows what it can and says why."""
    parsed = prepared.parsed
    reason = f"Shown cut down: the database refused the message as parsed ({refusal})."
    bare = ParsedMessage(
        subject=fit_bytes(parsed.subject, 200),
        from_name=fit_bytes(parsed.from_name, 200),
        from_address=fit_bytes(parsed.from_address, 200),
        date=parsed.date,
        text=parsed.text[:100_000],
        snippet=fit_bytes(parsed.snippet, 200),
        headers_error=parsed.headers_error,
        parse_error="; ".join(p for p in (parsed.parse_error, reason) if p),
    )
    return dataclasses.replace(
        prepared,
        parsed=bare,
        attachment_blobs=[],
        participants={bare.from_address} - {""},
        addresses_text=addresses_text(bare),
    )
