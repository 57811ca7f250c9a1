"""The Celery task that sends an outbox row (see ``sync.outbox`` for the steps).

Safe to run twice: the row is claimed under a lock and a sent row is never submitted again.
Transient failures retry with exponential backoff and jitter up to MAX_ATTEMPTS; after that,
or on a permanent failure, the row is marked failed with the reason and people see a retry
button. Views enqueue it on commit with the row's id only.
"""

from __future__ import annotations

import random

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from mailweb.models import OutgoingMessage
from sync import outbox, smtp

MAX_ATTEMPTS = 8
BASE_DELAY = 15.0  # seconds; doubles each attempt
MAX_DELAY = 30 * 60.0


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped, with full jitter,
    and never shorter than what the server asked for."""
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** max(0, attempt)))
    delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
    return max(delay, retry_after or 0.0)


@shared_task(
    bind=True,
    name="sync.send_outgoing",
    acks_late=True,
    soft_time_limit=150,
    time_limit=180,
    max_retries=MAX_ATTEMPTS,
    ignore_result=True,
)
def send_outgoing(self: object, outgoing_id: int) -> str:
    task = self  # celery.Task; typed loosely so the module stays importable without stubs
    try:
        outcome = outbox.deliver(outgoing_id)
    except smtp.TransientSendError as exc:
        retries = task.request.retries  # type: ignore[attr-defined]
        if retries >= MAX_ATTEMPTS:
            outbox.mark_failed(outgoing_id, f"{exc} (gave up after {retries + 1} attempts)")
            return "failed"
        _requeue(outgoing_id)
        raise task.retry(  # type: ignore[attr-defined]
            countdown=backoff(retries, exc.retry_after), exc=exc
        ) from None
    except SoftTimeLimitExceeded:
        _requeue(outgoing_id)
        raise task.retry(countdown=backoff(task.request.retries)) from None  # type: ignore[attr-defined]
    return outcome.status


def _requeue(outgoing_id: int) -> None:
    """Back to queued between attempts, so the page shows "Queued" rather than "Sending"."""
    OutgoingMessage.objects.filter(pk=outgoing_id, status=OutgoingMessage.Status.SENDING).update(
        status=OutgoingMessage.Status.QUEUED
    )
