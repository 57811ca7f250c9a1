"""Which conversation a message joins: by Message-ID, parents, children, then a guarded subject.

A batch is threaded in memory against a handful of bulk lookups (``ThreadIndex``), in order,
with the same result as threading its messages one by one; ``Thread`` collects what the batch
does to each conversation so ``sync.message_rows`` can write it in one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Min, Q

from accounts.models import MailAccount
from mailweb.models import Conversation, Message
from sync.incoming import (
    IncomingMessage,
    PreparedMessage,
    ProviderKey,
    addresses_text,
    participants_of,
)
from sync.mime import ParsedMessage, normalize_subject
from sync.models import RemovedMessage

# A subject-only match joins a conversation only when it is this recent and shares a participant.
SUBJECT_FALLBACK_WINDOW = timedelta(days=30)


@dataclass
class Thread:
    """A conversation as this batch sees it: the stored row (or a new one) plus batch members."""

    conversation: Conversation
    is_new: bool
    members: list[PreparedMessage] = field(default_factory=list)
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
    def existing(cls, conversation: Conversation) -> Thread:
        return cls(
            conversation=conversation,
            is_new=False,
            count=conversation.message_count,
            last_message_at=conversation.last_message_at,
            last_activity_at=conversation.last_activity_at,
            first_at=getattr(conversation, "first_message_at", None),
        )

    def touch(self, message: PreparedMessage, *, reopen: bool) -> None:
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


class ThreadIndex:
    """Bulk lookups for a batch, then sequential threading decisions in memory."""

    def __init__(self, mailbox: MailAccount, prepared: Sequence[PreparedMessage]) -> None:
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
        self.threads: dict[int, Thread] = {
            conversation.pk: Thread.existing(conversation)
            for conversation in Conversation.objects.filter(pk__in=conversation_ids).annotate(
                first_message_at=Min("messages__received_at")
            )
        }
        self.new_threads: list[Thread] = []
        # Batch members, for lookups by later members of the same batch.
        self.batch_by_id: dict[str, list[tuple[datetime, int, Thread]]] = {}
        self.batch_children: dict[str, list[tuple[datetime, int, Thread]]] = {}
        self._sequence = 0

    def is_copy(self, message: PreparedMessage) -> bool:
        """The mailbox holds (or recently held) a message with the same Message-ID."""
        key = message.message_id
        return bool(key) and bool(
            self.by_id.get(key) or self.batch_by_id.get(key) or key in self.removed
        )

    def _stored(self, conversation_id: int) -> Thread | None:
        return self.threads.get(conversation_id)

    def find(self, message: PreparedMessage) -> Thread | None:
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
        in_batch: dict[str, list[tuple[datetime, int, Thread]]],
        keys: Sequence[str],
    ) -> list[tuple[datetime, int, Thread]]:
        """(received_at, tie-breaker, thread) of stored and batch messages under ``keys``."""
        found: list[tuple[datetime, int, Thread]] = []
        for key in keys:
            for received_at, pk, conversation_id in stored.get(key, []):
                if thread := self._stored(conversation_id):
                    found.append((received_at, pk, thread))
            found.extend(in_batch.get(key, []))
        return found

    def _subject_match(self, message: PreparedMessage) -> Thread | None:
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
        candidates: dict[int, tuple[datetime, Thread]] = {}
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
                known = Thread.existing(conversation)
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
    def _shares_participant(thread: Thread, participants: set[str], sender: str) -> bool:
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

    def start_thread(self, message: PreparedMessage) -> Thread:
        subject = message.parsed.subject
        conversation = Conversation(
            mailbox=self.mailbox,
            subject=subject[:998],
            normalized_subject=normalize_subject(subject),
            last_activity_at=message.received_at,
            last_message_at=message.received_at,
            message_count=0,
        )
        thread = Thread(conversation=conversation, is_new=True)
        self.new_threads.append(thread)
        return thread

    def add(self, message: PreparedMessage, thread: Thread, *, reopen: bool) -> None:
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


def find_conversation(
    mailbox: MailAccount, parsed: ParsedMessage, received_at: datetime
) -> Conversation | None:
    """The stored conversation ``parsed`` would join, or None (a new one would be started).

    Order: the same Message-ID in another folder (a move, or our own sent copy) or recently
    removed from one; a parent it names (the most recent); a child that arrived earlier and
    names it; a subject match last, only for a message without In-Reply-To/References and
    only when guarded (a reply, sharing a participant, within a month).
    """
    message = PreparedMessage(
        item=IncomingMessage(raw=b"", key=ProviderKey()),
        raw_sha256="",
        parsed=parsed,
        attachment_blobs=[],
        received_at=received_at,
        participants=participants_of(parsed),
        addresses_text=addresses_text(parsed),
    )
    thread = ThreadIndex(mailbox, [message]).find(message)
    return thread.conversation if thread is not None and not thread.is_new else None
