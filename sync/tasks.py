"""Celery tasks of the sync engine. They take ids, are safe to run twice, and stay thin.

``sync_mailbox`` runs the engine under the mailbox's lease (a second copy finds the lease taken,
records its request and returns; the holder runs another pass for it). Transient failures are
retried with exponential backoff and jitter, honouring the vault's ``retry_after``; a long
initial sync stops before the soft time limit and enqueues its own continuation. ``sweep`` is
the safety net beat runs every ``MAILWEB_SYNC_SWEEP_SECONDS``: it enqueues a sync of every
IMAP mailbox, so mail a push missed arrives anyway. Views and other apps start syncs only
through ``enqueue_sync``.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import MailAccount
from sync.engine import run_sync
from sync.imap.connection import IMAP_METHODS
from sync.models import MailboxSyncState
from sync.status import HELD_STATES
from sync.store import prune_removed

log = logging.getLogger(__name__)

MAX_RETRIES = 8
RETRY_BASE_SECONDS = 5
RETRY_MAX_SECONDS = 600
#: Stop starting new batches this long before the soft time limit.
TIME_LIMIT_MARGIN = 60

__all__ = ["enqueue_sync", "retry_delay", "sweep", "sync_mailbox"]


def retry_delay(retries: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter; at least ``retry_after`` when the vault said so."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2**retries)
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto
    if retry_after:
        delay = max(delay, float(retry_after) + random.uniform(0, 2))  # noqa: S311
    return delay


def _soft_limit() -> int:
    return int(settings.CELERY_TASK_SOFT_TIME_LIMIT)


@shared_task(
    bind=True,
    name="sync.sync_mailbox",
    acks_late=True,
    ignore_result=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def sync_mailbox(self: Task, mailbox_id: int) -> dict[str, Any]:
    """Sync one mailbox (new mail, flags, expunges, backfill). Safe to run twice."""
    budget = max(30, _soft_limit() - TIME_LIMIT_MARGIN)
    report = run_sync(int(mailbox_id), budget_seconds=budget)
    failure = report.failure
    if failure is not None and failure.transient:
        if self.request.retries >= MAX_RETRIES:
            failure.record(mailbox_id, final=True)
            log.warning("mailbox %s: giving up after %d retries", mailbox_id, MAX_RETRIES)
        else:
            delay = retry_delay(self.request.retries, failure.retry_after)
            log.info("mailbox %s: %s; retrying in %.0fs", mailbox_id, failure.message, delay)
            raise self.retry(countdown=delay)
    elif report.more:
        # The initial sync continues in a fresh task (each stays within its time limits).
        sync_mailbox.apply_async((mailbox_id,), countdown=1)
    return {
        "mailbox": mailbox_id,
        "busy": report.busy,
        "skipped": report.skipped,
        "new": report.new,
        "flags": report.flags,
        "removed": report.removed,
        "complete": report.complete,
        "failure": failure.kind if failure else "",
    }


def enqueue_sync(mailbox_id: int, **options: Any) -> None:
    """Enqueue a sync of the mailbox once the current transaction commits."""
    transaction.on_commit(lambda: sync_mailbox.apply_async((mailbox_id,), **options))


def _sweep_due(state: MailboxSyncState | None) -> bool:
    """A mailbox that keeps failing is swept less often: 5 min, 10, 20 ... up to 6 hours."""
    if state is None or state.failures <= 3:
        return True
    pause = min(timedelta(hours=6), timedelta(minutes=5) * 2 ** (state.failures - 3))
    return timezone.now() - state.updated_at >= pause


@shared_task(name="sync.sweep", ignore_result=True, soft_time_limit=120, time_limit=150)
def sweep() -> int:
    """Enqueue a sync of every IMAP mailbox that may sync; returns how many were enqueued."""
    mailboxes = MailAccount.objects.filter(method__in=IMAP_METHODS).exclude(status__in=HELD_STATES)
    states = {state.mailbox_id: state for state in MailboxSyncState.objects.all()}
    expires = int(settings.MAILWEB_SYNC_SWEEP_SECONDS)
    enqueued = 0
    for mailbox_id in mailboxes.values_list("pk", flat=True):
        if not _sweep_due(states.get(mailbox_id)):
            continue
        try:
            sync_mailbox.apply_async((mailbox_id,), expires=expires)
            enqueued += 1
        except Exception:  # one mailbox's failure never stops the others
            log.exception("could not enqueue the sync of mailbox %s", mailbox_id)
    try:
        prune_removed()
    except Exception:
        log.exception("could not prune removal records")
    return enqueued
