"""Syncing one IMAP folder: new mail, flag changes, expunges and the newest-first backfill.

The cursor on ``Folder`` means: every message with ``lowest_synced_uid <= uid < uidnext`` under
``uidvalidity`` is stored, was expunged, or is recorded as one the server would not send
(``sync.unfetchable``, retried by later passes); ``highestmodseq`` is the MODSEQ up to which flag
changes (and, with QRESYNC, expunges) are applied. Each batch of messages is written in the same
transaction as the cursor move that covers it, so a worker killed at any instant resumes exactly
where the last commit left it: nothing is fetched twice into the store (the database refuses a
second row for a UID anyway) and nothing is skipped.

A pass runs in phases across all folders (see ``sync.engine``): new mail and flags everywhere
first, then expunges, then the backfill. Ingesting new copies before deleting vanished ones is
what keeps a message moved between two synced folders in its conversation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from imapclient import IMAPClient

from accounts.models import MailAccount
from mailweb.models import Folder, Message, UnfetchableMessage
from sync import unfetchable
from sync.fetch_ahead import FetchAhead
from sync.imap.connection import ImapUnavailable, close_quietly
from sync.imap.fetch import (
    FetchedMessage,
    compress_uids,
    search_uids,
    state_from_flags,
    uid_chunks,
    uid_fetch,
)
from sync.imap.refusals import IMAP_ERRORS, connection_dropped, refuses_the_messages
from sync.imap.session import Capabilities, FolderStatus, select
from sync.ingest import IncomingMessage, ProviderKey, ServerState, prepare_batch, store_batch
from sync.lease import Lease
from sync.parse_pool import ParseJob, parse_many
from sync.parse_work import ParseOutcome
from sync.store import apply_flags, remove_messages

log = logging.getLogger(__name__)

#: The first batch of a folder is small so the newest conversations show within seconds.
FIRST_BATCH = 50
#: A FETCH of whole messages never asks for more than this many bytes (memory stays bounded).
BATCH_BYTES = 16 * 1024 * 1024
#: Sizes are looked up for this many UIDs at a time to plan byte-bounded batches.
SIZE_WINDOW = 2000
#: Batches hold at most this many messages where the server would not tell their sizes.
UNSIZED_BATCH = 10
#: Without CONDSTORE, every pass re-reads the flags of this many newest messages; all messages
#: are re-read every MAILWEB_SYNC_FLAGS_SWEEP_SECONDS.
RECENT_FLAGS_WINDOW = 500
#: Why a message the server still has, but left out of its FETCH answer, was set aside.
LEFT_OUT = "the server sent nothing for it when asked"
#: Flags sweeps and SEARCH comparisons ask for at most this many UIDs per command.
UID_CHUNK = 5000
#: Batches queued between the fetching thread and the commits. With the one being fetched and
#: the one being committed, at most PIPELINE_DEPTH + 2 batches (x BATCH_BYTES) are in memory.
PIPELINE_DEPTH = 2


_Fetched = tuple[
    list[FetchedMessage], dict[int, str], dict[str, Any], ParseJob | list[ParseOutcome]
]


def batch_size() -> int:
    return max(1, int(getattr(settings, "MAILWEB_SYNC_BATCH_SIZE", 200)))


def flags_sweep_interval() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "MAILWEB_SYNC_FLAGS_SWEEP_SECONDS", 600)))


@dataclass
class PassStats:
    new: int = 0
    flags: int = 0
    removed: int = 0
    batches: int = 0


@dataclass
class Progress:
    """Reported after every committed batch (``manage.py syncnow`` draws its bar from it)."""

    folder: str
    synced: int
    total: int


@dataclass
class PassContext:
    mailbox: MailAccount
    client: IMAPClient
    capabilities: Capabilities
    lease: Lease
    deadline: float | None = None  # time.monotonic() value; None = no limit
    progress: Callable[[Progress], None] | None = None
    stats: PassStats = field(default_factory=PassStats)
    selected: str | None = None
    #: Opens another session like ``client`` (logged in, CONDSTORE/QRESYNC enabled).
    open_session: Callable[[], IMAPClient] | None = None

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def reconnect(self) -> None:
        """Replace the connection (the server may have dropped it); nothing is selected."""
        if self.open_session is None:
            raise RuntimeError("this pass cannot reconnect")
        close_quietly(self.client)
        self.client = self.open_session()
        self.selected = None


class FolderSync:
    """The work on one folder within one pass (one IMAP connection)."""

    def __init__(self, ctx: PassContext, folder: Folder) -> None:
        self.ctx = ctx
        self.folder = folder
        self.status: FolderStatus | None = None
        self.vanished: list[int] | None = None  # QRESYNC: applied in the expunge phase
        self.pending_modseq: int | None = None
        self.check_expunges = False
        self.server_uids: list[int] | None = None

    # -- selecting --------------------------------------------------------------------------

    @property
    def client(self) -> IMAPClient:
        return self.ctx.client

    def _select(self) -> FolderStatus:
        self.status = select(self.client, self.folder.name)
        self.ctx.selected = self.folder.name
        return self.status

    def _ensure_selected(self) -> FolderStatus:
        if self.ctx.selected != self.folder.name or self.status is None:
            return self._select()
        return self.status

    # -- phase 1: new mail, flags, UIDVALIDITY ---------------------------------------------

    def sync_new(self) -> None:
        status = self._select()
        folder = self.folder
        if folder.uidvalidity is None:
            self._start(status)
        elif status.uidvalidity != folder.uidvalidity:
            from sync.reconcile import reconcile_uidvalidity

            reconcile_uidvalidity(self, status)
        else:
            self._fetch_new(status)
            self._changes(status)
            self._retry_unfetchable()
        if folder.initial_sync_done_at is None:
            self.backfill(max_batches=1)

    def _start(self, status: FolderStatus) -> None:
        """First sight of the folder (or of a new UIDVALIDITY with nothing stored)."""
        uidnext = status.uidnext or self._uidnext_fallback()
        now = timezone.now()
        done = status.exists == 0
        self._save_cursor(
            uidvalidity=status.uidvalidity,
            uidnext=uidnext,
            lowest_synced_uid=1 if done else uidnext,
            highestmodseq=status.highestmodseq if self.ctx.capabilities.condstore else None,
            server_count=status.exists,
            synced_count=0,
            initial_sync_started_at=now,
            initial_sync_done_at=now if done else None,
            last_flags_sweep_at=now,
        )

    def _uidnext_fallback(self) -> int:
        uids = search_uids(self.client, 1)
        return (uids[-1] + 1) if uids else 1

    def _fetch_new(self, status: FolderStatus) -> None:
        folder = self.folder
        assert folder.uidnext is not None
        if status.uidnext is not None and status.uidnext <= folder.uidnext:
            if folder.server_count != status.exists:
                self._save_cursor(server_count=status.exists)
            return
        uids = search_uids(self.client, folder.uidnext)
        self._ingest(
            ((batch, {"uidnext": max(batch) + 1}) for batch in self._batches(uids)),
            reopen=True,
        )
        final = max([status.uidnext or 0, folder.uidnext, *(uid + 1 for uid in uids[-1:])])
        self._save_cursor(uidnext=final, server_count=status.exists)

    def _changes(self, status: FolderStatus) -> None:
        """Flag changes (CHANGEDSINCE or a sweep) and whether expunges need looking for."""
        folder, capabilities = self.folder, self.ctx.capabilities
        if (
            capabilities.condstore
            and status.highestmodseq
            and folder.highestmodseq
            and status.highestmodseq >= folder.highestmodseq  # else: the server lost its count
        ):
            if status.highestmodseq == folder.highestmodseq:
                # Nothing changed since the last pass; with QRESYNC that includes expunges.
                self.check_expunges = not capabilities.qresync and self._count_differs(status)
                return
            modifiers = [f"CHANGEDSINCE {folder.highestmodseq}"]
            if capabilities.qresync:
                modifiers.append("VANISHED")
            result = uid_fetch(self.client, "1:*", ["FLAGS"], modifiers)
            changes = {uid: state_from_flags(m.flags) for uid, m in result.messages.items()}
            modseqs = {uid: m.modseq for uid, m in result.messages.items()}
            with transaction.atomic():
                self.ctx.lease.check()
                changed = apply_flags(folder, folder.uidvalidity or 0, changes, modseqs)
                if not capabilities.qresync:
                    self._save_cursor(highestmodseq=status.highestmodseq)
            self.ctx.stats.flags += changed
            if capabilities.qresync:
                self.vanished = result.vanished
                self.pending_modseq = status.highestmodseq
            else:
                self.check_expunges = self._count_differs(status)
            return
        self._sweep_flags(status)
        self.check_expunges = self._count_differs(status)

    def _sweep_flags(self, status: FolderStatus) -> None:
        """Re-read FLAGS: the newest messages every pass, all of them periodically."""
        folder = self.folder
        now = timezone.now()
        full = (
            folder.last_flags_sweep_at is None
            or now - folder.last_flags_sweep_at >= flags_sweep_interval()
            or bool(
                status.highestmodseq
                and folder.highestmodseq
                and status.highestmodseq < folder.highestmodseq
            )
        )
        stored = Message.objects.filter(folder=folder, uidvalidity=folder.uidvalidity)
        ordered = stored.exclude(uid__isnull=True)
        if full:
            found = ordered.order_by("uid").values_list("uid", flat=True)
        else:
            found = ordered.order_by("-uid").values_list("uid", flat=True)[:RECENT_FLAGS_WINDOW]
        uids = sorted(uid for uid in found if uid is not None)
        changes: dict[int, tuple[bool, bool, bool, bool]] = {}
        for chunk in uid_chunks(uids, UID_CHUNK):
            result = uid_fetch(self.client, f"{chunk[0]}:{chunk[-1]}", ["FLAGS"])
            for uid, message in result.messages.items():
                changes[uid] = state_from_flags(message.flags)
        with transaction.atomic():
            self.ctx.lease.check()
            changed = apply_flags(folder, folder.uidvalidity or 0, changes)
            extra: dict[str, Any] = {}
            # Start (or restart) CHANGEDSINCE from here; after a full sweep only when the
            # server's MODSEQ went backwards, so no change in between is skipped.
            if (
                status.highestmodseq
                and self.ctx.capabilities.condstore
                and (folder.highestmodseq is None or full)
            ):
                extra["highestmodseq"] = status.highestmodseq
            if full:
                self._save_cursor(last_flags_sweep_at=now, **extra)
            elif extra:
                self._save_cursor(**extra)
        self.ctx.stats.flags += changed

    def _count_differs(self, status: FolderStatus) -> bool:
        """Could something have been expunged? Exact once the initial sync is done: every
        message below the SELECT's UIDNEXT is stored or set aside as unfetchable, so equal
        counts mean equal sets."""
        folder = self.folder
        if folder.initial_sync_done_at is None or status.uidnext is None:
            return True
        below = {"folder": folder, "uidvalidity": folder.uidvalidity, "uid__lt": status.uidnext}
        stored = Message.objects.filter(**below).count()
        return stored + UnfetchableMessage.objects.filter(**below).count() != status.exists

    # -- phase 2: expunges ------------------------------------------------------------------

    def apply_expunges(self) -> None:
        folder = self.folder
        if folder.uidvalidity is None:
            return
        if self.vanished is not None:
            gone = [uid for uid in self.vanished if folder.uidnext and uid < folder.uidnext]
            with transaction.atomic():
                self.ctx.lease.check()
                removed = self._remove(gone)
                self._save_cursor(highestmodseq=self.pending_modseq)
            self.vanished = None
            self.ctx.stats.removed += removed
            return
        if not self.check_expunges:
            return
        status = self._ensure_selected()
        server = search_uids(self.client, 1)
        self.server_uids = server
        present = set(server)
        low = folder.lowest_synced_uid or folder.uidnext or 1
        covered = {
            "folder": folder,
            "uidvalidity": folder.uidvalidity,
            "uid__gte": low,
            "uid__lt": folder.uidnext,
        }
        stored = set(Message.objects.filter(**covered).values_list("uid", flat=True))
        gone = [uid for uid in stored if uid is not None and uid not in present]
        if gone:
            with transaction.atomic():
                self.ctx.lease.check()
                removed = self._remove(gone)
                self._save_cursor(server_count=status.exists)
            self.ctx.stats.removed += removed
        set_aside = set(UnfetchableMessage.objects.filter(**covered).values_list("uid", flat=True))
        self._fill_gaps(
            [
                uid
                for uid in server
                if low <= uid < (folder.uidnext or 0) and uid not in stored and uid not in set_aside
            ]
        )
        self.check_expunges = False

    def _fill_gaps(self, missing: list[int]) -> None:
        """Fetch what the server has inside the cursor's range but the store has not.

        There should be none: the cursor covers only messages stored, expunged or set aside.
        But a gap (a server that once left a message out of an answer without a word, a
        database restored from an older backup) would otherwise stay for good, and the counts
        would differ, and the server's UIDs be compared, on every pass.
        """
        if not missing:
            return
        log.warning(
            "mailbox %s: %d messages in folder %s are on the server but not stored; fetching them",
            self.ctx.mailbox.pk,
            len(missing),
            self.folder.pk,
        )
        self._ingest(((batch, {}) for batch in self._batches(missing)), reopen=False)

    def _remove(self, uids: Sequence[int]) -> int:
        if not uids:
            return 0
        folder = self.folder
        removed = 0
        for chunk in uid_chunks(list(uids), UID_CHUNK):
            query = Q(folder=folder, uidvalidity=folder.uidvalidity, uid__in=chunk)
            removed += remove_messages(self.ctx.mailbox, query)
        if removed:
            Folder.objects.filter(pk=folder.pk).update(synced_count=F("synced_count") - removed)
            folder.synced_count = max(0, folder.synced_count - removed)
        return removed

    # -- phase 3: backfill ------------------------------------------------------------------

    def backfill(self, *, max_batches: int | None = None) -> bool:
        """Fetch older messages newest first; returns True when the folder is complete."""
        folder = self.folder
        if folder.initial_sync_done_at is not None:
            return True
        if folder.uidvalidity is None:
            return False
        # No time check here: every pass moves each folder on by at least one batch (the
        # ingest loop stops after it when time is up), so follow-up tasks always progress.
        self._ensure_selected()
        lowest = folder.lowest_synced_uid or folder.uidnext or 1
        if self.server_uids is not None:
            candidates = [uid for uid in self.server_uids if uid < lowest]
        else:
            candidates = search_uids(self.client, 1, lowest - 1)
        present = set(
            Message.objects.filter(
                folder=folder, uidvalidity=folder.uidvalidity, uid__lt=lowest
            ).values_list("uid", flat=True)
        )
        todo = sorted((uid for uid in candidates if uid not in present), reverse=True)
        if not todo:
            self._finish_initial()
            return True
        first = folder.synced_count == 0

        def planned() -> Iterator[tuple[list[int], dict[str, Any]]]:
            remaining = len(todo)
            for batch in self._batches(todo, first_count=FIRST_BATCH if first else None):
                remaining -= len(batch)
                if remaining == 0:
                    yield batch, {"lowest_synced_uid": 1, "initial_sync_done_at": timezone.now()}
                else:
                    yield batch, {"lowest_synced_uid": min(batch)}

        self._ingest(planned(), reopen=False, max_batches=max_batches)
        return folder.initial_sync_done_at is not None

    def _finish_initial(self) -> None:
        self._save_cursor(lowest_synced_uid=1, initial_sync_done_at=timezone.now())

    # -- fetching and committing ------------------------------------------------------------

    def _batches(
        self, uids: Sequence[int], *, first_count: int | None = None
    ) -> Iterator[list[int]]:
        """Split ``uids`` (in the order given) into batches bounded by count and bytes."""
        limit = batch_size()
        if len(uids) <= min(limit, first_count or limit, 20):
            if uids:
                yield list(uids)
            return
        count_limit = min(first_count, limit) if first_count else limit
        current: list[int] = []
        current_bytes = 0
        for window in uid_chunks(list(uids), SIZE_WINDOW):
            sizes = self._sizes(window)
            for uid in window:
                # A UID missing here was expunged since the search; it stays in the batch (the
                # FETCH simply returns nothing for it) so the cursor still moves past it.
                size = sizes.get(uid, 0) if sizes is not None else 0
                most = count_limit if sizes is not None else min(count_limit, UNSIZED_BATCH)
                if current and (len(current) >= most or current_bytes + size > BATCH_BYTES):
                    yield current
                    current, current_bytes = [], 0
                    count_limit = limit
                current.append(uid)
                current_bytes += size
        if current:
            yield current

    def _sizes(self, window: Sequence[int]) -> dict[int, int] | None:
        """Each UID's RFC822.SIZE, or None when the server refuses to say.

        Dovecot reads a message to learn its size when its file name does not carry it, so an
        unreadable message fails this FETCH as it fails the FETCH of its body.
        """
        try:
            fetched = uid_fetch(self.client, compress_uids(window), ["RFC822.SIZE"]).messages
        except IMAP_ERRORS as exc:
            if not refuses_the_messages(exc):
                raise
            log.warning(
                "mailbox %s: sizes of %d messages in folder %s refused (%s); small batches",
                self.ctx.mailbox.pk,
                len(window),
                self.folder.pk,
                unfetchable.server_words(exc),
            )
            self._forget_selection_if_dropped(exc)
            self._back_in_folder()
            return None
        return {uid: message.size or 0 for uid, message in fetched.items()}

    def _retry_unfetchable(self) -> None:
        """Ask again for messages the server would not send before (see ``sync.unfetchable``)."""
        folder = self.folder
        assert folder.uidvalidity is not None
        uids = unfetchable.due(folder)
        if not uids:
            return
        asked_at = timezone.now()
        self._ingest(iter([(uids, {})]), reopen=False)
        unfetchable.forget_arrived(folder, uids, asked_at)

    def _fetch_bodies(self, uids: Sequence[int]) -> tuple[list[FetchedMessage], dict[int, str]]:
        """The messages, in the order asked for, and the server's refusal of any it would not
        send (UID -> its words). UIDs in neither were expunged meanwhile."""
        refused: dict[int, str] = {}
        try:
            messages = self._fetch_whole(uids)
        except IMAP_ERRORS as exc:
            if not refuses_the_messages(exc):
                raise  # the network: the pass fails and the next one resumes here
            # One message the server cannot read or convert fails the whole FETCH (Dovecot
            # answers NO and closes the connection; Exchange answers NO or BAD). One by one
            # (on a fresh connection where it was closed), the others arrive and only that
            # one is set aside.
            log.warning(
                "mailbox %s: FETCH of %d messages in folder %s refused (%s); one at a time",
                self.ctx.mailbox.pk,
                len(uids),
                self.folder.pk,
                unfetchable.server_words(exc),
            )
            self._forget_selection_if_dropped(exc)
            messages, refused = self._fetch_one_by_one(uids)
        refused.update(self._left_out(uids, messages, refused))
        return messages, refused

    def _fetch_one_by_one(self, uids: Sequence[int]) -> tuple[list[FetchedMessage], dict[int, str]]:
        messages: list[FetchedMessage] = []
        refused: dict[int, str] = {}
        for uid in uids:
            self._back_in_folder()
            try:
                messages.extend(self._fetch_whole([uid]))
            except IMAP_ERRORS as exc:
                if not refuses_the_messages(exc):
                    raise
                refused[uid] = unfetchable.server_words(exc)
                self._forget_selection_if_dropped(exc)
        self._back_in_folder()  # what follows in the pass needs a working connection
        return messages, refused

    def _left_out(
        self, uids: Sequence[int], messages: list[FetchedMessage], refused: dict[int, str]
    ) -> dict[int, str]:
        """The UIDs a FETCH answer left out although the server still has them.

        Only a message expunged meanwhile may be missing from the answer; one that is still
        there (a server that could not read it and said nothing) is set aside like a refused
        one, and asked for again later, instead of being passed over for good.
        """
        missing = set(uids) - {message.uid for message in messages} - set(refused)
        if not missing:
            return {}
        present = self.client.search(["UID", compress_uids(sorted(missing))])
        return {uid: LEFT_OUT for uid in present if uid in missing}

    def _forget_selection_if_dropped(self, exc: BaseException) -> None:
        """After a refusal with BYE (Dovecot's way), the next command needs a new connection;
        after a plain NO or BAD (Exchange's), the same one goes on."""
        if connection_dropped(exc):
            self.ctx.selected = None

    def _back_in_folder(self) -> None:
        """After a refusal that closed the connection: a fresh one with this folder selected,
        under the same UIDVALIDITY or the pass fails. Otherwise nothing to do."""
        if self.ctx.selected == self.folder.name:
            return
        self.ctx.reconnect()
        status = select(self.client, self.folder.name)
        self.ctx.selected = self.folder.name
        if status.uidvalidity != self.folder.uidvalidity:
            raise ImapUnavailable(f"the UIDVALIDITY of folder {self.folder.name!r} changed")

    def _fetch_whole(self, uids: Sequence[int]) -> list[FetchedMessage]:
        items = ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]
        if self.ctx.capabilities.condstore:
            items.append("MODSEQ")
        result = uid_fetch(self.client, compress_uids(uids), items)
        # In the order asked for (newest first during the backfill, oldest first for new mail).
        return [
            result.messages[uid]
            for uid in uids
            if uid in result.messages and result.messages[uid].body is not None
        ]

    def _ingest(
        self,
        planned: Iterator[tuple[list[int], dict[str, Any]]],
        *,
        reopen: bool,
        max_batches: int | None = None,
    ) -> int:
        """Fetch, parse and commit batches in order, the three overlapping.

        Batches are fetched on a thread of their own (``sync.fetch_ahead``) and parsed in the
        parse pool while this thread commits the ones before them; commits, and so cursor
        moves, happen strictly in order here. Stops early after ``max_batches`` or when the
        pass is out of time; returns the number of batches committed.
        """

        def fetched() -> Iterator[_Fetched]:
            for batch, cursor in planned:
                messages, refused = self._fetch_bodies(batch)
                job = parse_many([message.body or b"" for message in messages])
                yield messages, refused, cursor, job

        def enough(produced: int) -> bool:
            return (max_batches is not None and produced >= max_batches) or self.ctx.out_of_time()

        committed = 0
        ahead = FetchAhead(fetched, depth=PIPELINE_DEPTH, stop_after=enough, name="imap-fetch")
        with ahead:
            for messages, refused, cursor, job in ahead:
                self._commit(messages, refused, cursor, job, reopen=reopen)
                committed += 1
        return committed

    def _commit(
        self,
        fetched: list[FetchedMessage],
        refused: dict[int, str],
        cursor: dict[str, Any],
        job: ParseJob | list[ParseOutcome],
        *,
        reopen: bool,
    ) -> None:
        """Store a batch, note what the server refused, and move the cursor over it, in one
        transaction."""
        folder = self.folder
        parsed = job.result() if isinstance(job, ParseJob) else job
        items = [
            IncomingMessage(
                raw=message.body or b"",
                key=ProviderKey(folder=folder, uidvalidity=folder.uidvalidity, uid=message.uid),
                state=_server_state(message),
            )
            for message in fetched
        ]
        prepared = prepare_batch(self.ctx.mailbox, items, parsed)
        with transaction.atomic():
            _commit_without_waiting_for_disk()
            self.ctx.lease.check()
            results = store_batch(prepared, reopen=reopen)
            if refused:
                unfetchable.record(folder, refused)
            created = sum(1 for _, was_created in results if was_created)
            self._save_cursor(synced_delta=created, **cursor)
        self.ctx.stats.new += created
        self.ctx.stats.batches += 1
        if self.ctx.progress is not None:
            total = max(folder.server_count, folder.synced_count)
            self.ctx.progress(Progress(folder.name, folder.synced_count, total))

    def _save_cursor(self, *, synced_delta: int = 0, **fields: Any) -> None:
        """Update the folder row (inside the caller's transaction) and this copy of it."""
        folder = self.folder
        updates: dict[str, Any] = dict(fields)
        updates["last_synced_at"] = timezone.now()
        if synced_delta:
            updates["synced_count"] = F("synced_count") + synced_delta
        Folder.objects.filter(pk=folder.pk).update(**updates)
        for name, value in fields.items():
            setattr(folder, name, value)
        folder.last_synced_at = updates["last_synced_at"]
        if synced_delta:
            folder.synced_count += synced_delta


def _commit_without_waiting_for_disk() -> None:
    """Let this transaction's commit return before PostgreSQL has flushed it to disk.

    A batch commit otherwise waits for a WAL flush, on the path of every batch of an initial
    sync. Nothing is lost by not waiting: should PostgreSQL crash in the next fraction of a
    second, the batch's rows and the cursor move that covers them are lost together (the
    database stays consistent, see PostgreSQL's "Asynchronous Commit"), and the next pass
    fetches the same messages again from the server, which still has them. The blobs the rows
    name are durable before the commit either way.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _server_state(message: FetchedMessage) -> ServerState:
    seen, flagged, answered, draft = state_from_flags(message.flags)
    return ServerState(
        seen=seen,
        flagged=flagged,
        answered=answered,
        draft=draft,
        received_at=message.internaldate,
        modseq=message.modseq,
    )
