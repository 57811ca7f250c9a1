"""The IMAP sync engine: one pass over a mailbox's synced folders, under its lease.

``run_sync(mailbox_id)`` is what tasks and commands call. It records the request, takes the
mailbox's lease (returning at once when another worker holds it: that worker will see the
request and run another pass), then runs passes until no request arrived during the last one.

A pass opens one IMAP connection (and another when the server drops it after refusing to send
a message, see ``sync.unfetchable``) and works in three phases over the folders (Inbox first):

1. new mail above each folder's UIDNEXT, flag changes (CHANGEDSINCE with CONDSTORE, else a
   sweep), UIDVALIDITY checks, and the first small batch of a folder still in its initial sync
   (so the newest conversations of every folder show within seconds);
2. expunges (VANISHED with QRESYNC, else a UID SEARCH comparison when counts differ) — after
   phase 1 everywhere, so a message moved between synced folders is ingested in its new folder
   (joining its conversation) before its old copy is deleted;
3. the backfill of older messages, newest first, until done or the time budget is spent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import DatabaseError, connection
from django.db.models import Count
from django.utils import timezone
from imapclient import IMAPClient

from accounts.models import MailAccount
from mailweb.models import Folder, Message
from sync import status
from sync.discovery import refresh_folders
from sync.errors import Failure, classify
from sync.folder_sync import FolderSync, PassContext, PassStats, Progress
from sync.imap.connection import IMAP_METHODS, close_quietly, session_opener
from sync.imap.session import Capabilities, FolderUnavailable, prepare_session
from sync.lease import Lease, LeaseBusy, mailbox_lease, request_sync, requests_seen
from sync.parse_pool import warm_parse_pool

log = logging.getLogger(__name__)

#: Passes one ``run_sync`` call makes at most when requests keep arriving (then it returns
#: with ``more`` set and the task enqueues a follow-up).
MAX_PASSES = 5

__all__ = ["SyncReport", "run_sync", "sync_pass"]


@dataclass
class SyncReport:
    """What a ``run_sync`` call did."""

    mailbox_id: int
    busy: bool = False  # another worker holds the lease (it will pick up our request)
    skipped: str = ""  # why nothing ran (not an IMAP mailbox, needs reconnect, ...)
    passes: int = 0
    new: int = 0
    flags: int = 0
    removed: int = 0
    complete: bool = False  # every synced folder finished its initial sync
    more: bool = False  # work left (backfill, or requests kept coming): enqueue a follow-up
    failure: Failure | None = None

    def add(self, stats: PassStats) -> None:
        self.passes += 1
        self.new += stats.new
        self.flags += stats.flags
        self.removed += stats.removed


def run_sync(
    mailbox_id: int,
    *,
    budget_seconds: float | None = None,
    progress: Callable[[Progress], None] | None = None,
    raise_errors: bool = False,
) -> SyncReport:
    """Sync the mailbox now, or leave the work to the worker already syncing it.

    Failures are classified and recorded on the mailbox (``sync.errors``); the report carries
    the failure, and ``raise_errors`` re-raises it after recording.
    """
    report = SyncReport(mailbox_id=mailbox_id)
    mailbox = MailAccount.objects.filter(pk=mailbox_id).first()
    reason = _skip_reason(mailbox)
    if reason:
        report.skipped = reason
        return report
    deadline = time.monotonic() + budget_seconds if budget_seconds else None
    request_sync(mailbox_id)
    for attempt in range(MAX_PASSES):
        try:
            with mailbox_lease(mailbox_id) as lease:
                seen = requests_seen(mailbox_id)
                mailbox = MailAccount.objects.get(pk=mailbox_id)
                reason = _skip_reason(mailbox)
                if reason:
                    report.skipped = reason
                    return report
                stats, complete, finished = sync_pass(
                    mailbox, lease, deadline=deadline, progress=progress
                )
        except LeaseBusy:
            report.busy = attempt == 0
            return report
        except Exception as exc:
            _drop_broken_database_connection()
            failure = classify(exc)
            try:
                if not MailAccount.objects.filter(pk=mailbox_id).exists():
                    report.skipped = "mailbox was deleted during the sync"
                    return report
                failure.record(mailbox_id)
            except DatabaseError as unrecorded:
                # The database is still away: the failure is returned (the task retries it)
                # even though it could not be written down.
                log.warning(
                    "mailbox %s: %s; not recorded (%s)",
                    mailbox_id,
                    failure.message,
                    type(unrecorded).__name__,
                )
            report.failure = failure
            if raise_errors:
                raise
            return report
        report.add(stats)
        report.complete = complete
        if not finished:
            report.more = True
            return report
        if requests_seen(mailbox_id) <= seen:
            return report
    report.more = True
    return report


def _drop_broken_database_connection() -> None:
    """Close this thread's database connection if the server ended it (a restart, a failover).

    Django does not reconnect a connection that broke in use: every later query, recording the
    failure included, would fail the same way until something closed it. Closed, the next query
    connects again.
    """
    if connection.connection is not None and not connection.is_usable():
        connection.close()


def _skip_reason(mailbox: MailAccount | None) -> str:
    if mailbox is None:
        return "mailbox no longer exists"
    if mailbox.method not in IMAP_METHODS:
        return f"not an IMAP mailbox ({mailbox.method})"
    if not status.is_syncable(mailbox):
        return f"mailbox is {mailbox.get_status_display().lower()}"
    if paused := status.paused_until(mailbox.pk):
        # Pushes and the sweep would otherwise ask a throttling server again at once.
        return f"the server asked to wait until {timezone.localtime(paused):%H:%M:%S}"
    return ""


def sync_pass(
    mailbox: MailAccount,
    lease: Lease,
    *,
    deadline: float | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> tuple[PassStats, bool, bool]:
    """One pass; returns (stats, every folder's initial sync complete, pass finished in time)."""
    initial = not Folder.objects.filter(mailbox=mailbox, sync_enabled=True).exists() or (
        Folder.objects.filter(
            mailbox=mailbox, sync_enabled=True, initial_sync_done_at__isnull=True
        ).exists()
    )
    status.record_started(mailbox, initial=initial)
    if initial:
        warm_parse_pool()  # the parse processes start while the session is set up
    open_session = session_opener(mailbox)
    client = open_session()
    ctx: PassContext | None = None
    try:
        capabilities = prepare_session(client)
        folders = refresh_folders(mailbox, client, capabilities)
        ctx = PassContext(
            mailbox=mailbox,
            client=client,
            capabilities=capabilities,
            lease=lease,
            deadline=deadline,
            progress=progress,
            open_session=lambda: _prepared(open_session()),
        )
        finished = _run_phases(mailbox, ctx, capabilities, folders)
    finally:
        close_quietly(client)
        if ctx is not None and ctx.client is not client:  # reconnected during the pass
            close_quietly(ctx.client)
    _recount(mailbox)
    complete = not Folder.objects.filter(
        mailbox=mailbox, sync_enabled=True, initial_sync_done_at__isnull=True
    ).exists()
    status.record_success(mailbox, complete=complete)
    log.info(
        "mailbox %s synced: %d new, %d flag changes, %d removed%s",
        mailbox.pk,
        ctx.stats.new,
        ctx.stats.flags,
        ctx.stats.removed,
        "" if complete else " (initial sync continues)",
    )
    return ctx.stats, complete, finished


def _run_phases(
    mailbox: MailAccount,
    ctx: PassContext,
    capabilities: Capabilities,
    folders: list[Folder],
) -> bool:
    """The three phases over ``folders``; returns False when the pass ran out of time."""
    syncers = [FolderSync(ctx, folder) for folder in folders]
    unavailable = []
    for syncer in syncers:
        try:
            syncer.sync_new()
        except FolderUnavailable as exc:
            log.info("mailbox %s: %s; listing folders again", mailbox.pk, exc)
            unavailable.append(syncer)
    if unavailable:
        # Renamed or deleted on the server: a fresh LIST drops or re-adds it.
        ctx.selected = None
        refresh_folders(mailbox, ctx.client, capabilities, force=True)
        syncers = [s for s in syncers if s not in unavailable]
    for syncer in syncers:
        syncer.apply_expunges()
    # all() stops at the first folder out of time: the task enqueues a follow-up.
    return all(syncer.backfill() for syncer in syncers)


def _prepared(client: IMAPClient) -> IMAPClient:
    """Another session of the pass, with CONDSTORE/QRESYNC enabled as in the first."""
    try:
        prepare_session(client)
    except BaseException:
        close_quietly(client)
        raise
    return client


def _recount(mailbox: MailAccount) -> None:
    """Make ``synced_count`` exact (it is maintained incrementally between passes)."""
    for folder in Folder.objects.filter(mailbox=mailbox, sync_enabled=True):
        if folder.uidvalidity is None:
            continue
        count = Message.objects.filter(folder=folder, uidvalidity=folder.uidvalidity).aggregate(
            n=Count("id")
        )["n"]
        if count != folder.synced_count:
            Folder.objects.filter(pk=folder.pk).update(synced_count=count)
