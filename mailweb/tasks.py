"""Housekeeping tasks that belong to the web side of the store."""

from celery import shared_task
from celery.signals import worker_ready

from mailweb.actions import record_heartbeat


@shared_task(name="mailweb.heartbeat", ignore_result=True, soft_time_limit=20, time_limit=30)
def heartbeat() -> None:
    """Proves that beat schedules, the broker delivers and a worker runs tasks (see /healthz)."""
    record_heartbeat("worker")


@worker_ready.connect
def _on_worker_ready(**_: object) -> None:
    """A fresh worker reports in at once instead of waiting for the first beat tick."""
    record_heartbeat("worker")
