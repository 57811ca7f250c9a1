"""The Celery application shared by web (to enqueue), worker and beat.

Configuration comes from Django settings (``CELERY_*``); tasks are discovered in each app's
``tasks.py``. The beat schedule is built here because it depends on settings.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailweb.settings")

app = Celery("mailweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule_periodic_tasks(sender: Celery, **_: object) -> None:
    """Beat entries; each one expires so a backlog never replays stale runs."""
    from django.conf import settings

    heartbeat = settings.MAILWEB_HEARTBEAT_SECONDS
    sender.add_periodic_task(
        heartbeat, sender.signature("mailweb.heartbeat", expires=heartbeat), name="worker heartbeat"
    )
    sweep = settings.MAILWEB_SYNC_SWEEP_SECONDS
    sender.add_periodic_task(
        sweep, sender.signature("sync.sweep", expires=sweep), name="sync sweep"
    )
    sender.add_periodic_task(
        60.0,
        sender.signature("mailweb.wake_snoozed", expires=60),
        name="reopen snoozed conversations",
    )
