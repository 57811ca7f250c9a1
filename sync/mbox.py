"""Importing an mbox file or a Maildir into a mailbox, through the same ingestion as sync.

For migrating history or loading demo data. Imported messages belong to no server folder, so
they are keyed by the SHA-256 of their bytes: importing the same file twice adds nothing the
second time. Read/flagged/answered state comes from the mbox ``Status``/``X-Status`` headers or
the Maildir flags.
"""

from __future__ import annotations

import hashlib
import mailbox as stdlib_mailbox
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from accounts.models import MailAccount
from mailweb.models import Message
from sync.ingest import IncomingMessage, ProviderKey, ServerState, prepare_batch, store_batch

BATCH = 200
# mbox bookkeeping headers carrying the read/flagged/answered/draft state.
_MBOX_STATUS = re.compile(rb"^(?:X-)?Status:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)

__all__ = ["ImportReport", "import_path"]


@dataclass
class ImportReport:
    seen: int = 0
    imported: int = 0
    skipped: int = 0


def _messages(path: Path) -> Iterator[tuple[bytes, ServerState]]:
    """Each message's bytes and state, read without parsing it (ingestion parses it once).

    The standard library's ``get_message`` parses a whole message only to hand over its flags,
    which doubled the cost of an import (0.52 ms per message, against 0.64 for ingestion's own
    parse of the same corpus).
    """
    if path.is_dir():
        yield from _maildir_messages(path)
        return
    box = stdlib_mailbox.mbox(str(path), factory=None, create=False)
    for key in box.iterkeys():
        raw, status = _split_status(box.get_bytes(key))
        state = ServerState(
            seen="R" in status, flagged="F" in status, answered="A" in status, draft="T" in status
        )
        yield raw, state


def _maildir_messages(path: Path) -> Iterator[tuple[bytes, ServerState]]:
    """A Maildir's messages in the order of their unique names, flags from the file names."""
    folders = [path / "cur", path / "new"]
    if not any(folder.is_dir() for folder in folders):
        raise ValueError(f"{path} is a directory but not a Maildir (no cur/ or new/)")
    files = sorted(
        (entry.name.split(":", 1)[0], entry.name, entry.path)
        for folder in folders
        if folder.is_dir()
        for entry in os.scandir(folder)
        if entry.is_file() and not entry.name.startswith(".")
    )
    for _, name, file_path in files:
        info = name.split(":", 1)[1] if ":" in name else ""
        flags = info[2:] if info.startswith("2,") else ""
        state = ServerState(
            seen="S" in flags, flagged="F" in flags, answered="R" in flags, draft="D" in flags
        )
        yield Path(file_path).read_bytes(), state


def _split_status(raw: bytes) -> tuple[bytes, str]:
    """The message without its mbox-only Status/X-Status headers, and their letters."""
    head, sep, body = raw.partition(b"\n\n")
    status = b"".join(_MBOX_STATUS.findall(head)).decode("ascii", "replace")
    if not sep:
        return raw, status
    lines = [
        line
        for line in head.split(b"\n")
        if not line.lower().startswith((b"status:", b"x-status:"))
    ]
    return b"\n".join(lines) + sep + body, status


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
