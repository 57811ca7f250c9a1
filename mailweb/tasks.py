"""Housekeeping tasks that belong to the web side of the store."""

from celery import shared_task
from celery.signals import worker_ready

from mailweb.actions import record_heartbeat, wake_snoozed


@shared_task(name="mailweb.heartbeat", ignore_result=True, soft_time_limit=20, time_limit=30)
def heartbeat() -> None:
    """Proves that beat schedules, the broker delivers and a worker runs tasks (see /healthz)."""
    record_heartbeat("worker")


@shared_task(name="mailweb.wake_snoozed", ignore_result=True, soft_time_limit=50, time_limit=60)
def wake_snoozed_conversations() -> int:
    """Reopen conversations whose snooze ran out (beat runs it every minute; safe to overlap:
    rows are claimed with SKIP LOCKED)."""
    return wake_snoozed()


@worker_ready.connect
def _on_worker_ready(**_: object) -> None:
    """A fresh worker reports in at once instead of waiting for the first beat tick."""
    record_heartbeat("worker")
