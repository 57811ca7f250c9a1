"""Turning raw RFC 5322 bytes into stored messages, attachments and conversations.

Every provider (IMAP, Graph, mbox import, our own sent mail) goes through ``ingest_batch`` (or
its one-message form ``ingest_message``) so a message is parsed, stored and threaded the same
way whatever its origin. The raw bytes are stored first, so a message whose parsing fails is
still kept whole and listed with its parse error.

A batch is threaded in memory against a handful of bulk lookups and written with bulk inserts;
the result is the same as ingesting its messages one by one in order (the sync engine depends
on that: it commits a batch and its folder cursor in one transaction).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from accounts.models import MailAccount
from mailweb.blobs import blob_written_elsewhere, durable_blobs, put_blob
from mailweb.bulk_insert import insert_new
from mailweb.models import Attachment, Conversation, Folder, Message, OutgoingMessage
from sync.mime import ParsedMessage, normalize_subject
from sync.mime_text import fit_bytes
from sync.models import RemovedMessage
from sync.parse_work import ParseOutcome, parse_and_store

log = logging.getLogger(__name__)

# SQLSTATE classes of a value PostgreSQL will not take: data exceptions (22) and program
# limits (54, such as an index entry over a third of a page). The row's fault, not the server's.
_REFUSED_VALUE_CLASSES = ("22", "54")

# A subject-only match joins a conversation only when it is this recent and shares a participant.
SUBJECT_FALLBACK_WINDOW = timedelta(days=30)

__all__ = [
    "IncomingMessage",
    "PreparedBatch",
    "ProviderKey",
    "ServerState",
    "find_conversation",
    "ingest_batch",
    "ingest_message",
    "prepare_batch",
    "refused_value",
    "store_batch",
]


@dataclass(frozen=True)
class ProviderKey:
    """Where a message lives on the server: IMAP (folder, uidvalidity, uid) or a Graph id."""

    folder: Folder | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    graph_id: str = ""

    def identity(self) -> tuple[object, ...] | None:
        if self.uid is not None and self.folder is not None:
            return ("imap", self.folder.pk, self.uidvalidity, self.uid)
        if self.graph_id:
            return ("graph", self.graph_id)
        return None


@dataclass(frozen=True)
class ServerState:
    """Per-copy state reported by the server."""

    seen: bool = False
    flagged: bool = False
    answered: bool = False
    draft: bool = False
    received_at: datetime | None = None
    modseq: int | None = None


@dataclass(frozen=True)
class IncomingMessage:
    raw: bytes
    key: ProviderKey
    state: ServerState = field(default_factory=ServerState)


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
    prepared: list[_Prepared]
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
    mailbox: MailAccount, prepared: Sequence[_Prepared], *, reopen: bool
) -> list[tuple[Message, bool]]:
    """Store ``prepared``, except copies that take over a keyless row (see ``_adopt_keyless``)."""
    adopted = _adopt_keyless(mailbox, prepared)
    remaining = [message for message in prepared if id(message) not in adopted]
    new_rows = iter(_store(mailbox, remaining, reopen=reopen) if remaining else [])
    return [
        (adopted[id(message)], False) if id(message) in adopted else next(new_rows)
        for message in prepared
    ]


def _adopt_keyless(mailbox: MailAccount, prepared: Sequence[_Prepared]) -> dict[int, Message]:
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
    mailbox: MailAccount, prepared: _Prepared, *, reopen: bool
) -> tuple[Message, bool]:
    identity = prepared.item.key.identity()
    again = _existing(mailbox, [prepared.item.key])
    if identity is not None and identity in again:
        return again[identity], False
    try:
        with transaction.atomic():
            return _store(mailbox, [prepared], reopen=reopen)[0]
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
        return _store(mailbox, [_cut_down(prepared, refusal)], reopen=reopen)[0]


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


def _cut_down(prepared: _Prepared, refusal: str) -> _Prepared:
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
        addresses_text=_addresses_text(bare),
    )


# --- preparation (blobs, parsing) ------------------------------------------------------------


@dataclass
class _Prepared:
    item: IncomingMessage
    raw_sha256: str
    parsed: ParsedMessage
    attachment_blobs: list[str]
    received_at: datetime
    participants: set[str]
    addresses_text: str

    @property
    def message_id(self) -> str:
        return self.parsed.message_id[:998]


def _prepare(
    mailbox: MailAccount, item: IncomingMessage, outcome: ParseOutcome | None = None
) -> _Prepared:
    if outcome is None:
        outcome = parse_and_store(item.raw, None)
    parsed = outcome.parsed
    raw_sha256 = _blob(outcome.raw_sha256, item.raw)
    attachment_blobs = [_blob(a.sha256, a.payload) for a in parsed.attachments]
    received_at = item.state.received_at or parsed.date or timezone.now()
    participants = {parsed.from_address, *(address for _, address in parsed.to + parsed.cc)}
    return _Prepared(
        item=item,
        raw_sha256=raw_sha256,
        parsed=parsed,
        attachment_blobs=attachment_blobs,
        received_at=received_at,
        participants=participants - {""},
        addresses_text=_addresses_text(parsed),
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
    found: dict[tuple[object, ...], Message] = {}
    imap: dict[tuple[int, int | None], list[int]] = {}
    graph_ids: list[str] = []
    folders: dict[int, Folder] = {}
    for key in keys:
        if key.uid is not None and key.folder is not None:
            imap.setdefault((key.folder.pk, key.uidvalidity), []).append(key.uid)
            folders[key.folder.pk] = key.folder
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


# --- threading -------------------------------------------------------------------------------


@dataclass
class _Thread:
    """A conversation as this batch sees it: the stored row (or a new one) plus batch members."""

    conversation: Conversation
    is_new: bool
    members: list[_Prepared] = field(default_factory=list)
    # Running aggregates, applied to the row at the end of the batch.
    count: int = 0
    last_message_at: datetime | None = None
    last_activity_at: datetime | None = None
    snippet: str | None = None
    last_sender: str | None = None
    has_attachments: bool = False
    reopened: bool = False
    # The oldest message's time: its subject names the conversation. History is synced newest
    # first, so a conversation is often started by a reply ("Re: ...") and renamed later.
    first_at: datetime | None = None
    first_date: datetime | None = None
    subject: str | None = None

    @classmethod
    def existing(cls, conversation: Conversation) -> _Thread:
        return cls(
            conversation=conversation,
            is_new=False,
            count=conversation.message_count,
            last_message_at=conversation.last_message_at,
            last_activity_at=conversation.last_activity_at,
            first_at=getattr(conversation, "first_message_at", None),
        )

    def touch(self, message: _Prepared, *, reopen: bool) -> None:
        """What ``message`` does to the list fields (the sequential rules, in memory)."""
        received = message.received_at
        newest = self.last_message_at is None or received >= self.last_message_at
        if newest or self.count == 0:
            self.snippet = message.parsed.snippet[:300]
            self.last_sender = (message.parsed.from_name or message.parsed.from_address)[:300]
        self.count += 1
        self.last_message_at = max(filter(None, [self.last_message_at, received]))
        self.last_activity_at = max(filter(None, [self.last_activity_at, received]))
        if message.parsed.has_attachments:
            self.has_attachments = True
        if reopen and newest and self.conversation.status != Conversation.Status.OPEN:
            self.reopened = True
        # Ties on the server's arrival time (an import, a bulk copy) fall back to the Date header.
        key = (received, message.parsed.date or received)
        if self.first_at is None or key < (self.first_at, self.first_date or self.first_at):
            self.first_at, self.first_date = key
            if self.count > 1 or not self.is_new:
                self.subject = message.parsed.subject
        self.members.append(message)


class _ThreadIndex:
    """Bulk lookups for a batch, then sequential threading decisions in memory."""

    def __init__(self, mailbox: MailAccount, prepared: Sequence[_Prepared]) -> None:
        self.mailbox = mailbox
        own_ids = {p.message_id for p in prepared if p.message_id}
        parent_ids = {
            ref for p in prepared for ref in [p.parsed.in_reply_to, *p.parsed.references] if ref
        }
        wanted = own_ids | parent_ids
        # message_id -> (received_at, id, conversation_id) of stored messages with that id,
        # and in_reply_to -> the same for stored children that arrived before their parent
        self.by_id = _stored_by(mailbox, "message_id", wanted)
        self.children = _stored_by(mailbox, "in_reply_to", own_ids)
        self.removed: dict[str, int] = {}
        removed_rows = (
            RemovedMessage.objects.filter(mailbox=mailbox, message_id__in=own_ids)
            .order_by("removed_at")
            .values_list("message_id", "conversation_id")
            if own_ids
            else []
        )
        for message_id, conversation_id in removed_rows:
            self.removed[message_id] = conversation_id  # the latest removal wins
        conversation_ids = {c for rows_ in self.by_id.values() for *_, c in rows_}
        conversation_ids |= {c for rows_ in self.children.values() for *_, c in rows_}
        conversation_ids |= set(self.removed.values())
        self.threads: dict[int, _Thread] = {
            conversation.pk: _Thread.existing(conversation)
            for conversation in Conversation.objects.filter(pk__in=conversation_ids).annotate(
                first_message_at=Min("messages__received_at")
            )
        }
        self.new_threads: list[_Thread] = []
        # Batch members, for lookups by later members of the same batch.
        self.batch_by_id: dict[str, list[tuple[datetime, int, _Thread]]] = {}
        self.batch_children: dict[str, list[tuple[datetime, int, _Thread]]] = {}
        self._sequence = 0

    def is_copy(self, message: _Prepared) -> bool:
        """The mailbox holds (or recently held) a message with the same Message-ID."""
        key = message.message_id
        return bool(key) and bool(
            self.by_id.get(key) or self.batch_by_id.get(key) or key in self.removed
        )

    def _stored(self, conversation_id: int) -> _Thread | None:
        return self.threads.get(conversation_id)

    def find(self, message: _Prepared) -> _Thread | None:
        """Same order as ``find_conversation``: own Message-ID, parents, children, subject."""
        parsed = message.parsed
        if message.message_id:
            same = self._candidates(self.by_id, self.batch_by_id, [message.message_id])
            if same:
                return min(same, key=lambda entry: entry[:2])[2]
            removed = self.removed.get(message.message_id)
            if removed and (thread := self._stored(removed)):
                return thread
        parents = [ref for ref in [parsed.in_reply_to, *reversed(parsed.references)] if ref]
        found = self._candidates(self.by_id, self.batch_by_id, parents)
        if found:
            return max(found, key=lambda entry: entry[0])[2]
        if message.message_id:
            children = self._candidates(self.children, self.batch_children, [message.message_id])
            if children:
                return min(children, key=lambda entry: entry[:2])[2]
        if parents:
            # It names its thread, which is just not here (yet): history is synced newest
            # first, so the parent usually arrives later and finds this one as its child.
            return None
        return self._subject_match(message)

    def _candidates(
        self,
        stored: dict[str, list[tuple[datetime, int, int]]],
        in_batch: dict[str, list[tuple[datetime, int, _Thread]]],
        keys: Sequence[str],
    ) -> list[tuple[datetime, int, _Thread]]:
        """(received_at, tie-breaker, thread) of stored and batch messages under ``keys``."""
        found: list[tuple[datetime, int, _Thread]] = []
        for key in keys:
            for received_at, pk, conversation_id in stored.get(key, []):
                if thread := self._stored(conversation_id):
                    found.append((received_at, pk, thread))
            found.extend(in_batch.get(key, []))
        return found

    def _subject_match(self, message: _Prepared) -> _Thread | None:
        """Join by subject only a reply ("Re: ...") without In-Reply-To/References to a recent
        conversation sharing a participant.

        Clients that drop References (some mobile and web mailers) would otherwise split
        threads; the guards keep unrelated "Invoice" or "Hello" mails apart.
        """
        parsed = message.parsed
        normalized = normalize_subject(parsed.subject)
        plain = " ".join(parsed.subject.split())
        # Not a reply (no prefix was stripped), whether or not normalize_subject folds case.
        if not normalized or normalized.casefold() == plain.casefold() or len(normalized) < 4:
            return None
        if not message.participants:
            return None
        received = message.received_at
        low, high = received - SUBJECT_FALLBACK_WINDOW, received + SUBJECT_FALLBACK_WINDOW
        candidates: dict[int, tuple[datetime, _Thread]] = {}
        for thread in [*self.threads.values(), *self.new_threads]:
            activity = thread.last_activity_at or thread.conversation.last_activity_at
            if thread.conversation.normalized_subject == normalized and low <= activity <= high:
                candidates[id(thread)] = (activity, thread)
        stored = (
            Conversation.objects.filter(
                mailbox=self.mailbox,
                normalized_subject=normalized,
                last_activity_at__gte=low,
                last_activity_at__lte=high,
            )
            .annotate(first_message_at=Min("messages__received_at"))
            .order_by("-last_activity_at")[:5]
        )
        for conversation in stored:
            known = self.threads.get(conversation.pk)
            if known is None:
                known = _Thread.existing(conversation)
                self.threads[conversation.pk] = known
            activity = known.last_activity_at or conversation.last_activity_at
            thread = known
            candidates.setdefault(id(thread), (activity, thread))
        ordered = sorted(candidates.values(), key=lambda entry: entry[0], reverse=True)[:5]
        sender = parsed.from_address.lower()
        for _, thread in ordered:
            if self._shares_participant(thread, message.participants, sender):
                return thread
        return None

    @staticmethod
    def _shares_participant(thread: _Thread, participants: set[str], sender: str) -> bool:
        for member in thread.members:
            if member.parsed.from_address in participants:
                return True
            if sender and sender in member.addresses_text.lower():
                return True
        if thread.is_new:
            return False
        shared = Q(from_address__in=participants)
        if sender:
            shared |= Q(addresses_text__icontains=sender)
        return thread.conversation.messages.filter(shared).exists()

    def start_thread(self, message: _Prepared) -> _Thread:
        subject = message.parsed.subject
        conversation = Conversation(
            mailbox=self.mailbox,
            subject=subject[:998],
            normalized_subject=normalize_subject(subject),
            last_activity_at=message.received_at,
            last_message_at=message.received_at,
            message_count=0,
        )
        thread = _Thread(conversation=conversation, is_new=True)
        self.new_threads.append(thread)
        return thread

    def add(self, message: _Prepared, thread: _Thread, *, reopen: bool) -> None:
        thread.touch(message, reopen=reopen)
        self._sequence += 1
        # Batch members sort after stored rows with the same time, as if inserted later.
        entry = (message.received_at, (1 << 62) + self._sequence, thread)
        if message.message_id:
            self.batch_by_id.setdefault(message.message_id, []).append(entry)
        if message.parsed.in_reply_to:
            self.batch_children.setdefault(message.parsed.in_reply_to[:998], []).append(entry)


def _stored_by(
    mailbox: MailAccount, field: str, values: set[str]
) -> dict[str, list[tuple[datetime, int, int]]]:
    """Stored messages whose ``field`` is one of ``values``, grouped by that value."""
    grouped: dict[str, list[tuple[datetime, int, int]]] = {}
    if not values:
        return grouped
    rows = Message.objects.filter(mailbox=mailbox, **{f"{field}__in": values}).values_list(
        field, "received_at", "id", "conversation_id"
    )
    for value, received_at, pk, conversation_id in rows:
        grouped.setdefault(value, []).append((received_at, pk, conversation_id))
    return grouped


# --- writing -----------------------------------------------------------------------------------


def _store(
    mailbox: MailAccount, prepared: Sequence[_Prepared], *, reopen: bool
) -> list[tuple[Message, bool]]:
    index = _ThreadIndex(mailbox, prepared)
    outgoing_ids = _outgoing_message_ids(prepared)
    own_address = mailbox.address.lower()
    placed: list[tuple[_Prepared, _Thread, bool]] = []
    for message in prepared:
        # A copy of a message the mailbox already has (moved or copied between folders, or
        # restored from Trash) is not new mail: it must not reopen a closed conversation.
        copy = index.is_copy(message)
        thread = index.find(message) or index.start_thread(message)
        outgoing = _is_outgoing(message, outgoing_ids, own_address)
        index.add(message, thread, reopen=reopen and not outgoing and not copy)
        placed.append((message, thread, outgoing))

    new_conversations = []
    for thread in index.new_threads:
        conversation = thread.conversation
        conversation.message_count = thread.count
        conversation.last_message_at = thread.last_message_at
        conversation.last_activity_at = thread.last_activity_at or timezone.now()
        conversation.snippet = thread.snippet or ""
        conversation.last_sender = thread.last_sender or ""
        conversation.has_attachments = thread.has_attachments
        if thread.subject is not None:
            conversation.subject = thread.subject[:998]
            conversation.normalized_subject = normalize_subject(thread.subject)
        new_conversations.append(conversation)
    Conversation.objects.bulk_create(new_conversations)

    messages = [_message_row(mailbox, m, thread, outgoing) for m, thread, outgoing in placed]
    insert_new(Message, messages)
    Attachment.objects.bulk_create(
        Attachment(
            message=row,
            filename=attachment.filename[:500],
            content_type=attachment.content_type[:255] or "application/octet-stream",
            size=attachment.size,
            content_id=attachment.content_id[:500],
            is_inline=attachment.is_inline,
            sha256=digest,
        )
        for row, (message, _, _) in zip(messages, placed, strict=True)
        for attachment, digest in zip(
            message.parsed.attachments, message.attachment_blobs, strict=True
        )
    )
    _update_stored_conversations([thread for thread in index.threads.values() if thread.members])
    return [(row, True) for row in messages]


def _message_row(
    mailbox: MailAccount, message: _Prepared, thread: _Thread, outgoing: bool
) -> Message:
    parsed, key, state = message.parsed, message.item.key, message.item.state
    problems = "; ".join(p for p in (parsed.headers_error, parsed.parse_error) if p)
    return Message(
        mailbox=mailbox,
        folder=key.folder,
        conversation=thread.conversation,
        uidvalidity=key.uidvalidity,
        uid=key.uid,
        graph_id=key.graph_id,
        message_id=message.message_id,
        in_reply_to=parsed.in_reply_to[:998],
        references=parsed.references,
        subject=parsed.subject[:998],
        from_name=parsed.from_name[:300],
        from_address=parsed.from_address[:320],
        to=[list(pair) for pair in parsed.to],
        cc=[list(pair) for pair in parsed.cc],
        bcc=[list(pair) for pair in parsed.bcc],
        reply_to=[list(pair) for pair in parsed.reply_to],
        addresses_text=message.addresses_text,
        date=parsed.date,
        received_at=message.received_at,
        size=len(message.item.raw),
        is_seen=state.seen,
        is_flagged=state.flagged,
        is_answered=state.answered,
        is_draft=state.draft,
        modseq=state.modseq,
        snippet=parsed.snippet[:300],
        text_body=parsed.text,
        html_body=parsed.sanitized_html,
        has_attachments=parsed.has_attachments,
        raw_sha256=message.raw_sha256,
        parse_error=problems,
        direction=Message.Direction.OUTGOING if outgoing else Message.Direction.INCOMING,
    )


def _update_stored_conversations(threads: Sequence[_Thread]) -> None:
    """Update every stored conversation the batch touched, in one round trip.

    The values are relative (counts added, times only moved forward, other fields replaced
    only when the batch has something newer), so concurrent team actions and increments
    between the read and this write are kept. Plain SQL: the ORM's expression machinery cost
    more than the statements themselves here.
    """
    if not threads:
        return
    params = []
    for thread in threads:
        received = connection.ops.adapt_datetimefield_value(
            max(member.received_at for member in thread.members)
        )
        has_snippet = thread.snippet is not None
        renamed = thread.subject is not None
        subject = thread.subject or ""
        params.append(
            [
                len(thread.members),
                *(received,) * 4,
                thread.snippet if has_snippet else None,
                (thread.last_sender or "") if has_snippet else None,
                thread.has_attachments,
                thread.reopened,
                Conversation.Status.OPEN.value,
                thread.reopened,
                subject[:998] if renamed else None,
                normalize_subject(subject) if renamed else None,
                thread.conversation.pk,
            ]
        )
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    sql = f"""
        UPDATE {Conversation._meta.db_table} SET
            message_count = message_count + %s,
            last_activity_at = {greatest}(COALESCE(last_activity_at, %s), %s),
            last_message_at = {greatest}(COALESCE(last_message_at, %s), %s),
            snippet = COALESCE(%s, snippet),
            last_sender = COALESCE(%s, last_sender),
            has_attachments = (has_attachments OR %s),
            status = CASE WHEN %s THEN %s ELSE status END,
            snoozed_until = CASE WHEN %s THEN NULL ELSE snoozed_until END,
            subject = COALESCE(%s, subject),
            normalized_subject = COALESCE(%s, normalized_subject)
        WHERE id = %s
    """  # noqa: S608 - the table name is ours, every value a parameter
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _outgoing_message_ids(prepared: Sequence[_Prepared]) -> set[str]:
    ids = {p.message_id for p in prepared if p.message_id}
    if not ids:
        return set()
    return set(
        OutgoingMessage.objects.filter(message_id__in=ids).values_list("message_id", flat=True)
    )


def _is_outgoing(message: _Prepared, outgoing_ids: set[str], own_address: str) -> bool:
    folder = message.item.key.folder
    if folder is not None and folder.role == Folder.Role.SENT:
        return True
    if message.message_id and message.message_id in outgoing_ids:
        return True
    return message.parsed.from_address == own_address


def _addresses_text(parsed: ParsedMessage) -> str:
    pairs = [(parsed.from_name, parsed.from_address), *parsed.to, *parsed.cc, *parsed.reply_to]
    return " ".join(f"{name} {address}".strip() for name, address in pairs)[:10000]


def find_conversation(
    mailbox: MailAccount, parsed: ParsedMessage, received_at: datetime
) -> Conversation | None:
    """The stored conversation ``parsed`` would join, or None (a new one would be started).

    Order: the same Message-ID in another folder (a move, or our own sent copy) or recently
    removed from one; a parent it names (the most recent); a child that arrived earlier and
    names it; a subject match last, only for a message without In-Reply-To/References and
    only when guarded (a reply, sharing a participant, within a month).
    """
    message = _Prepared(
        item=IncomingMessage(raw=b"", key=ProviderKey()),
        raw_sha256="",
        parsed=parsed,
        attachment_blobs=[],
        received_at=received_at,
        participants={parsed.from_address, *(a for _, a in parsed.to + parsed.cc)} - {""},
        addresses_text=_addresses_text(parsed),
    )
    thread = _ThreadIndex(mailbox, [message]).find(message)
    return thread.conversation if thread is not None and not thread.is_new else None
