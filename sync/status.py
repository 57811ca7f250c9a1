"""Recording how a mailbox's sync is doing on ``MailAccount`` (status, last_error, times).

Only the vault marks a mailbox "needs reconnect" (it alone classifies token failures); these
functions never overwrite that state or "disabled", so a sync finishing after a revocation
cannot make the mailbox look healthy again. Every write is a single conditional UPDATE, so a
failing mailbox's bookkeeping never blocks another's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import F, QuerySet
from django.utils import timezone

from accounts.models import MailAccount
from sync.models import MailboxSyncState

Status = MailAccount.Status
#: States a sync must leave alone: a person has to act first.
HELD_STATES = (Status.NEEDS_RECONNECT, Status.DISABLED)
TRANSIENT_FAILURES_SHOWN = 3

__all__ = [
    "HELD_STATES",
    "is_syncable",
    "paused_until",
    "record_failure",
    "record_started",
    "record_success",
]


def is_syncable(mailbox: MailAccount) -> bool:
    return mailbox.status not in HELD_STATES


def _live(mailbox_id: int) -> QuerySet[MailAccount]:
    return MailAccount.objects.filter(pk=mailbox_id).exclude(status__in=HELD_STATES)


def record_started(mailbox: MailAccount, *, initial: bool) -> None:
    """A pass began; an unfinished initial sync (or a previous error) shows as "syncing"."""
    now = timezone.now()
    updates: dict[str, object] = {"last_sync_started_at": now}
    if initial or mailbox.status == Status.ERROR:
        updates["status"] = Status.SYNCING
        if mailbox.status != Status.SYNCING:
            updates["status_changed_at"] = now
    _live(mailbox.pk).update(**updates)


def record_success(mailbox: MailAccount, *, complete: bool) -> None:
    """A pass finished; ``complete`` means every synced folder's initial sync is done."""
    now = timezone.now()
    status = Status.ACTIVE if complete else Status.SYNCING
    live = _live(mailbox.pk)
    live.exclude(status=status).update(status=status, status_changed_at=now)
    live.update(last_sync_at=now, last_error="")
    MailboxSyncState.objects.filter(mailbox_id=mailbox.pk).update(
        failures=0, updated_at=now, paused_until=None
    )


def paused_until(mailbox_id: int) -> datetime | None:
    """When the mailbox may be synced again, if a server asked to wait (a second's slack, so
    the retry scheduled for exactly then is not turned away)."""
    return (
        MailboxSyncState.objects.filter(
            mailbox_id=mailbox_id, paused_until__gt=timezone.now() + timedelta(seconds=1)
        )
        .values_list("paused_until", flat=True)
        .first()
    )


def record_failure(
    mailbox_id: int, message: str, *, transient: bool = False, retry_after: float | None = None
) -> int:
    """A pass failed with ``message`` (already safe to show); returns consecutive failures.

    A ``transient`` failure (network, server busy) is retried soon, so the mailbox shows
    "error" only once it has failed ``TRANSIENT_FAILURES_SHOWN`` times in a row; the message is
    recorded either way. ``retry_after`` (a throttling server's, or the token endpoint's) pauses
    every sync of the mailbox for that long, not only the retry (see ``paused_until``).
    """
    now = timezone.now()
    MailboxSyncState.objects.get_or_create(mailbox_id=mailbox_id)
    MailboxSyncState.objects.filter(mailbox_id=mailbox_id).update(
        failures=F("failures") + 1,
        updated_at=now,
        paused_until=now + timedelta(seconds=retry_after) if retry_after else None,
    )
    failures = int(
        MailboxSyncState.objects.filter(mailbox_id=mailbox_id)
        .values_list("failures", flat=True)
        .first()
        or 0
    )
    live = _live(mailbox_id)
    if not transient or failures >= TRANSIENT_FAILURES_SHOWN:
        live.exclude(status=Status.ERROR).update(status=Status.ERROR, status_changed_at=now)
    live.update(last_error=message[:2000])
    return failures
