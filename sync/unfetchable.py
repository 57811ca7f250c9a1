"""Messages the server lists but will not send, set aside so the rest of the folder syncs.

A message the server cannot read (a damaged or unreadable file on Dovecot) or convert (some
Exchange items) makes it refuse the whole FETCH of its batch. Retried as it was, the batch
failed on every pass and nothing after it ever synced. The engine now fetches such a batch one
message at a time and records each refused UID here, in the transaction that moves the cursor
past it; every pass asks again for the records that are due, with a growing interval, until
the message arrives (and is stored like any other) or is no longer on the server.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone

from mailweb.models import Folder, UnfetchableMessage

__all__ = ["due", "forget_arrived", "record", "server_words"]

FIRST_RETRY = timedelta(minutes=15)
LONGEST_RETRY = timedelta(days=1)
#: A pass asks again for at most this many set-aside messages per folder.
RETRIES_PER_PASS = 50


def server_words(exc: BaseException) -> str:
    """What the server said, without imaplib's "command: FETCH =>" or b'...' wrapping."""
    text = str(exc.args[0] if exc.args else exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text.removeprefix("command: FETCH => ").removeprefix("FETCH failed: ")[:500]


def record(folder: Folder, refused: dict[int, str]) -> None:
    """Note refused UIDs (inside the caller's transaction); a known one waits longer next time."""
    now = timezone.now()
    known = {
        row.uid: row
        for row in UnfetchableMessage.objects.filter(
            folder=folder, uidvalidity=_validity(folder), uid__in=list(refused)
        )
    }
    for uid, error in refused.items():
        row = known.get(uid)
        if row is None:
            UnfetchableMessage.objects.create(
                folder=folder,
                uidvalidity=_validity(folder),
                uid=uid,
                error=error,
                next_attempt_at=now + FIRST_RETRY,
            )
            continue
        wait = min(FIRST_RETRY * 2 ** min(row.attempts, 10), LONGEST_RETRY)  # no overflow
        UnfetchableMessage.objects.filter(pk=row.pk).update(
            error=error, attempts=F("attempts") + 1, next_attempt_at=now + wait
        )


def due(folder: Folder) -> list[int]:
    """UIDs to ask for again in this pass (one query: it runs on every pass of every folder).

    Due records of an earlier UIDVALIDITY are dropped: those UIDs name nothing any more.
    """
    rows = list(
        UnfetchableMessage.objects.filter(folder=folder, next_attempt_at__lte=timezone.now())
        .order_by("uid")
        .values_list("pk", "uidvalidity", "uid")[:RETRIES_PER_PASS]
    )
    stale = [pk for pk, validity, _ in rows if validity != folder.uidvalidity]
    if stale:
        UnfetchableMessage.objects.filter(pk__in=stale).delete()
    return [uid for _, validity, uid in rows if validity == folder.uidvalidity]


def forget_arrived(folder: Folder, asked: list[int], asked_at: datetime) -> None:
    """Drop the records of UIDs asked for again at ``asked_at`` that the server did not
    refuse (``record`` moved those on): they are stored now, or gone from the server."""
    UnfetchableMessage.objects.filter(
        folder=folder, uidvalidity=_validity(folder), uid__in=asked, next_attempt_at__lte=asked_at
    ).delete()


def _validity(folder: Folder) -> int:
    """The folder's UIDVALIDITY; records exist only for folders the sync has opened."""
    if folder.uidvalidity is None:
        raise ValueError(f"folder {folder.pk} has no UIDVALIDITY yet")
    return folder.uidvalidity
