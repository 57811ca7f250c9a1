"""Turning raw RFC 5322 bytes into stored messages, attachments and conversations.

Every provider (IMAP, Graph, mbox import, our own sent mail) goes through ``ingest_batch`` (or
its one-message form ``ingest_message``) so a message is parsed, stored and threaded the same
way whatever its origin. The raw bytes are stored first, so a message whose parsing fails is
still kept whole and listed with its parse error.

A batch is prepared outside any transaction (blobs written and made durable, messages parsed),
then threaded (``sync.threads``) and written (``sync.message_rows``) in one transaction, with
the same result as ingesting its messages one by one in order (the sync engine depends on that:
it commits a batch and its folder cursor in one transaction). A row PostgreSQL refuses is
stored cut down (``sync.refused_rows``) rather than failing its batch on every pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from accounts.models import MailAccount
from mailweb.blobs import blob_written_elsewhere, durable_blobs, put_blob
from mailweb.models import Message
from sync.incoming import (
    IncomingMessage,
    PreparedMessage,
    ProviderKey,
    ServerState,
    addresses_text,
    participants_of,
)
from sync.message_rows import store_rows
from sync.parse_work import ParseOutcome, parse_and_store
from sync.refused_rows import cut_down, refused_value

log = logging.getLogger(__name__)

__all__ = [
    "IncomingMessage",
    "PreparedBatch",
    "ProviderKey",
    "ServerState",
    "ingest_batch",
    "ingest_message",
    "prepare_batch",
    "store_batch",
]


def ingest_message(
    mailbox: MailAccount,
    raw: bytes,
    key: ProviderKey,
    state: ServerState | None = None,
    *,
    reopen: bool = False,
) -> tuple[Message, bool]:
    """Store ``raw`` under ``key`` and thread it; returns (message, created).

    Idempotent: the provider key is unique in the database, so a replay returns the existing
    row. ``reopen`` moves a closed, pending or snoozed conversation back to open when new
    incoming mail arrives (incremental sync), but not while importing history.
    """
    item = IncomingMessage(raw=raw, key=key, state=state or ServerState())
    return ingest_batch(mailbox, [item], reopen=reopen)[0]


def ingest_batch(
    mailbox: MailAccount, items: Sequence[IncomingMessage], *, reopen: bool = False
) -> list[tuple[Message, bool]]:
    """Store and thread ``items`` in order; returns (message, created) for each, in order.

    Items whose provider key is already stored, or repeated within the batch, come back with
    ``created=False``. The rows are written in one transaction (a savepoint when the caller
    has one open).
    """
    return store_batch(prepare_batch(mailbox, items), reopen=reopen)


@dataclass
class PreparedBatch:
    """A batch whose blobs are written and messages parsed, ready for ``store_batch``."""

    mailbox: MailAccount
    results: list[tuple[Message, bool] | None]
    pending: list[int]
    prepared: list[PreparedMessage]
    repeats: dict[int, int]

    @property
    def new_count(self) -> int:
        return len(self.prepared)


def prepare_batch(
    mailbox: MailAccount,
    items: Sequence[IncomingMessage],
    parsed: Sequence[ParseOutcome] | None = None,
) -> PreparedBatch:
    """The slow, transaction-free half of ingestion: skip stored keys, write blobs, parse.

    ``parsed`` may hold the parse of every item, computed elsewhere (the sync engine parses in
    a process pool, whose processes may have stored the blobs already). Blobs are written, and
    made durable, before any row refers to them, outside the transaction: a crash leaves at
    worst an unreferenced blob, never a row pointing at missing bytes.
    """
    if parsed is not None and len(parsed) != len(items):
        raise ValueError("parsed must have one entry per item")
    results: list[tuple[Message, bool] | None] = [None] * len(items)
    existing = _existing(mailbox, [item.key for item in items])
    first_of: dict[tuple[object, ...], int] = {}
    repeats: dict[int, int] = {}
    pending: list[int] = []
    for index, item in enumerate(items):
        identity = item.key.identity()
        if identity is not None and identity in existing:
            results[index] = (existing[identity], False)
        elif identity is not None and identity in first_of:
            repeats[index] = first_of[identity]
        else:
            if identity is not None:
                first_of[identity] = index
            pending.append(index)
    with durable_blobs():  # one sync for the batch's blobs, before any row names them
        prepared = [
            _prepare(mailbox, items[index], parsed[index] if parsed is not None else None)
            for index in pending
        ]
    return PreparedBatch(mailbox, results, pending, prepared, repeats)


def store_batch(batch: PreparedBatch, *, reopen: bool = False) -> list[tuple[Message, bool]]:
    """The quick half: thread and insert the prepared messages in one transaction."""
    mailbox, results = batch.mailbox, list(batch.results)
    if batch.prepared:
        try:
            with transaction.atomic():
                stored = _adopt_or_store(mailbox, batch.prepared, reopen=reopen)
        except DatabaseError as exc:
            if not isinstance(exc, IntegrityError) and refused_value(exc) is None:
                raise
            # Another writer stored one of these provider keys first (not under the lease), or
            # a value in one row is past a limit the parser did not foresee: one by one, each
            # returning the row that won, the refused message alone stored cut down, and the
            # others (and every later batch) going on as usual.
            stored = [_store_one_again(mailbox, p, reopen=reopen) for p in batch.prepared]
        for index, result in zip(batch.pending, stored, strict=True):
            results[index] = result
    for index, original in batch.repeats.items():
        first = results[original]
        assert first is not None
        results[index] = (first[0], False)
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def _adopt_or_store(
    mailbox: MailAccount, prepared: Sequence[PreparedMessage], *, reopen: bool
) -> list[tuple[Message, bool]]:
    """Store ``prepared``, except copies that take over a keyless row (see ``_adopt_keyless``)."""
    adopted = _adopt_keyless(mailbox, prepared)
    remaining = [message for message in prepared if id(message) not in adopted]
    new_rows = iter(store_rows(mailbox, remaining, reopen=reopen) if remaining else [])
    return [
        (adopted[id(message)], False) if id(message) in adopted else next(new_rows)
        for message in prepared
    ]


def _adopt_keyless(mailbox: MailAccount, prepared: Sequence[PreparedMessage]) -> dict[int, Message]:
    """Give server keys to rows stored without one, instead of storing the copy a second time.

    A reply we send is stored at once without a server key (``sync.outbox``), so it shows in its
    conversation before any sync; when the sync later finds the copy the server filed in Sent
    (Exchange does so itself), that copy becomes the same row. Returns ``id(prepared)`` -> row.
    """
    wanted = {
        message.message_id: message
        for message in prepared
        if message.message_id and message.item.key.identity() is not None
    }
    if not wanted:
        return {}
    keyless = Message.objects.select_for_update().filter(
        mailbox=mailbox,
        message_id__in=list(wanted),
        folder__isnull=True,
        uid__isnull=True,
        graph_id="",
    )
    adopted: dict[int, Message] = {}
    for row in keyless:
        message = wanted.pop(row.message_id, None)
        if message is None:
            continue
        key, state = message.item.key, message.item.state
        row.folder, row.uidvalidity, row.uid, row.graph_id = (
            key.folder,
            key.uidvalidity,
            key.uid,
            key.graph_id,
        )
        row.is_seen, row.is_flagged, row.is_answered = state.seen, state.flagged, state.answered
        row.is_draft, row.modseq = state.draft, state.modseq
        row.save(
            update_fields=[
                "folder",
                "uidvalidity",
                "uid",
                "graph_id",
                "is_seen",
                "is_flagged",
                "is_answered",
                "is_draft",
                "modseq",
            ]
        )
        adopted[id(message)] = row
    return adopted


def _store_one_again(
    mailbox: MailAccount, prepared: PreparedMessage, *, reopen: bool
) -> tuple[Message, bool]:
    identity = prepared.item.key.identity()
    again = _existing(mailbox, [prepared.item.key])
    if identity is not None and identity in again:
        return again[identity], False
    try:
        with transaction.atomic():
            return store_rows(mailbox, [prepared], reopen=reopen)[0]
    except DatabaseError as exc:
        refusal = refused_value(exc)
        if refusal is None:
            raise
        sqlstate = getattr(exc.__cause__, "sqlstate", None) or type(exc).__name__
        log.warning(
            "message %s of mailbox %s refused by the database (%s); storing it cut down",
            prepared.item.key.uid or prepared.raw_sha256[:12],
            mailbox.pk,
            sqlstate,
        )
    with transaction.atomic():
        return store_rows(mailbox, [cut_down(prepared, refusal)], reopen=reopen)[0]


def _prepare(
    mailbox: MailAccount, item: IncomingMessage, outcome: ParseOutcome | None = None
) -> PreparedMessage:
    if outcome is None:
        outcome = parse_and_store(item.raw, None)
    parsed = outcome.parsed
    raw_sha256 = _blob(outcome.raw_sha256, item.raw)
    attachment_blobs = [_blob(a.sha256, a.payload) for a in parsed.attachments]
    received_at = item.state.received_at or parsed.date or timezone.now()
    return PreparedMessage(
        item=item,
        raw_sha256=raw_sha256,
        parsed=parsed,
        attachment_blobs=attachment_blobs,
        received_at=received_at,
        participants=participants_of(parsed),
        addresses_text=addresses_text(parsed),
    )


def _blob(stored_sha256: str, data: bytes) -> str:
    """The blob of ``data``: stored now, or by a parse process (then synced with the batch)."""
    if not stored_sha256:
        return put_blob(data)
    blob_written_elsewhere(stored_sha256)
    return stored_sha256


def _existing(
    mailbox: MailAccount, keys: Sequence[ProviderKey]
) -> dict[tuple[object, ...], Message]:
    """The stored rows of ``keys``, by ``ProviderKey.identity()``."""
    found: dict[tuple[object, ...], Message] = {}
    imap: dict[tuple[int, int | None], list[int]] = {}
    graph_ids: list[str] = []
    for key in keys:
        if key.uid is not None and key.folder is not None:
            imap.setdefault((key.folder.pk, key.uidvalidity), []).append(key.uid)
        elif key.graph_id:
            graph_ids.append(key.graph_id)
    for (folder_id, uidvalidity), uids in imap.items():
        rows = Message.objects.filter(folder_id=folder_id, uidvalidity=uidvalidity, uid__in=uids)
        for message in rows:
            found[("imap", folder_id, uidvalidity, message.uid)] = message
    if graph_ids:
        for message in Message.objects.filter(mailbox=mailbox, graph_id__in=graph_ids):
            found[("graph", message.graph_id)] = message
    return found
