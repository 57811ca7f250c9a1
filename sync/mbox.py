"""Importing an mbox file or a Maildir into a mailbox, through the same ingestion as sync.

For migrating history or loading demo data. Imported messages belong to no server folder, so
they are keyed by the SHA-256 of their bytes: importing the same file twice adds nothing the
second time. Read/flagged/answered state comes from the mbox ``Status``/``X-Status`` headers or
the Maildir flags.
"""

from __future__ import annotations

import hashlib
import mailbox as stdlib_mailbox
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from accounts.models import MailAccount
from mailweb.models import Message
from sync.ingest import IncomingMessage, ProviderKey, ServerState, prepare_batch, store_batch

BATCH = 200

__all__ = ["ImportReport", "import_path"]


@dataclass
class ImportReport:
    seen: int = 0
    imported: int = 0
    skipped: int = 0


def _messages(path: Path) -> Iterator[tuple[bytes, ServerState]]:
    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise ValueError(f"{path} is a directory but not a Maildir (no cur/ or new/)")
        maildir = stdlib_mailbox.Maildir(str(path), factory=None, create=False)
        for key in sorted(maildir.keys()):
            flags = maildir.get_message(key).get_flags()
            state = ServerState(
                seen="S" in flags, flagged="F" in flags, answered="R" in flags, draft="D" in flags
            )
            yield maildir.get_bytes(key), state
        return
    box = stdlib_mailbox.mbox(str(path), factory=None, create=False)
    for key in box.iterkeys():
        headers = box.get_message(key)
        status = str(headers.get("Status", "")) + str(headers.get("X-Status", ""))
        state = ServerState(
            seen="R" in status, flagged="F" in status, answered="A" in status, draft="T" in status
        )
        yield _without_status(box.get_bytes(key)), state


def _without_status(raw: bytes) -> bytes:
    """Drop the mbox-only Status/X-Status headers (they are mbox bookkeeping, not mail)."""
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        return raw
    lines = [
        line
        for line in head.split(b"\n")
        if not line.lower().startswith((b"status:", b"x-status:"))
    ]
    return b"\n".join(lines) + sep + body


def import_path(
    mailbox: MailAccount, path: Path, *, progress: Callable[[ImportReport], None] | None = None
) -> ImportReport:
    report = ImportReport()
    batch: list[tuple[bytes, ServerState]] = []
    for raw, state in _messages(path):
        report.seen += 1
        batch.append((_crlf(raw), state))
        if len(batch) >= BATCH:
            _flush(mailbox, batch, report)
            batch = []
            if progress:
                progress(report)
    if batch:
        _flush(mailbox, batch, report)
        if progress:
            progress(report)
    return report


def _crlf(raw: bytes) -> bytes:
    """Files on disk use LF; IMAP and the blob store hold messages with CRLF."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _flush(
    mailbox: MailAccount, batch: list[tuple[bytes, ServerState]], report: ImportReport
) -> None:
    digests = [hashlib.sha256(raw).hexdigest() for raw, _ in batch]
    known = set(
        Message.objects.filter(
            mailbox=mailbox, folder__isnull=True, raw_sha256__in=digests
        ).values_list("raw_sha256", flat=True)
    )
    items = []
    for (raw, state), digest in zip(batch, digests, strict=True):
        if digest in known:
            report.skipped += 1
            continue
        known.add(digest)
        items.append(IncomingMessage(raw=raw, key=ProviderKey(), state=state))
    if not items:
        return
    prepared = prepare_batch(mailbox, items)
    with transaction.atomic():
        results = store_batch(prepared, reopen=False)
    report.imported += sum(1 for _, created in results if created)
