"""The work a parse process does for one message: parse it and, where it can, store its blobs.

With the local blob storage, the parse processes write the raw message and its attachments
themselves (``mailweb.blobs.store_local_blob``): hashing and writing hundreds of files per batch
would otherwise fall on the worker process, whose threads share one interpreter lock with the
IMAP fetching. Attachment payloads then need not travel back to the worker either. The worker
makes the blobs durable before it commits the rows that name them (``sync.ingest``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mailweb.blobs import store_local_blob
from sync.mime import ParsedMessage, parse_message

__all__ = ["ParseOutcome", "parse_and_store"]


@dataclass(frozen=True)
class ParseOutcome:
    """``parse_message``'s result, and the raw bytes' blob when it is already stored.

    A stored attachment has its ``sha256`` set and an empty ``payload``.
    """

    parsed: ParsedMessage
    raw_sha256: str = ""


def parse_and_store(raw: bytes, blob_root: str | None) -> ParseOutcome:
    """Parse ``raw``; with a local ``blob_root``, also store it and its attachments there.

    The outcome leaves out the unsanitized HTML (``parsed.html`` is ""): the store keeps only the
    sanitized HTML, and the original would cross the process boundary for nothing.
    """
    parsed = parse_message(raw)
    if blob_root is None:
        return ParseOutcome(dataclasses.replace(parsed, html=""))
    attachments = [
        dataclasses.replace(
            attachment, sha256=store_local_blob(blob_root, attachment.payload), payload=b""
        )
        for attachment in parsed.attachments
    ]
    return ParseOutcome(
        dataclasses.replace(parsed, html="", attachments=attachments),
        raw_sha256=store_local_blob(blob_root, raw),
    )
