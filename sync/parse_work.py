"""The work a parse process does for one message: parse it and, where it can, store its blobs.

With the local blob storage, the parse processes write the raw message and its attachments
themselves (``mailweb.blobs.store_local_blob``): hashing and writing hundreds of files per batch
would otherwise fall on the worker process, whose threads share one interpreter lock with the
IMAP fetching. Attachment payloads then need not travel back to the worker either. The worker
makes the blobs durable before it commits the rows that name them (``sync.ingest``), unless
the parse pool has done so already on a thread of its own (``ParseOutcome.blobs_durable``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from mailweb.blobs import blob_name, store_local_blob
from sync.mime import ParsedMessage, parse_message

__all__ = ["ParseOutcome", "parse_and_store", "stored_blob_paths"]


@dataclass(frozen=True)
class ParseOutcome:
    """``parse_message``'s result, and the raw bytes' blob when it is already stored.

    A stored attachment has its ``sha256`` set and an empty ``payload``. ``blobs_durable`` says
    the stored blobs have been synced to disk since (``sync.parse_pool`` does that for a whole
    job before handing it over); otherwise whoever commits rows naming them must sync them.
    """

    parsed: ParsedMessage
    raw_sha256: str = ""
    blobs_durable: bool = False


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


def stored_blob_paths(outcome: ParseOutcome, blob_root: str) -> list[str]:
    """The files ``parse_and_store`` wrote for ``outcome`` under ``blob_root``."""
    if not outcome.raw_sha256:
        return []
    digests = [outcome.raw_sha256, *(a.sha256 for a in outcome.parsed.attachments if a.sha256)]
    return [os.path.join(blob_root, blob_name(digest)) for digest in digests]
