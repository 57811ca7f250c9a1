"""Health checks behind ``/healthz``: database, broker and worker heartbeat.

Each check answers ``(ok, detail)`` and never raises, so one broken dependency is reported
instead of turning the health endpoint itself into a 500.
"""

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from mailweb.celery import app as celery_app
from mailweb.models import Heartbeat


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return False, f"unreachable: {type(exc).__name__}"
    return True, connection.vendor


def check_broker() -> tuple[bool, str]:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            transport = conn.transport_cls
    except Exception as exc:
        return False, f"unreachable: {type(exc).__name__}"
    return True, str(transport)


def check_worker() -> tuple[bool, str]:
    try:
        beat = Heartbeat.objects.filter(name="worker").first()
    except Exception as exc:
        return False, f"unknown: {type(exc).__name__}"
    if beat is None:
        return False, "no heartbeat yet"
    age = timezone.now() - beat.at
    stale = timedelta(seconds=settings.MAILWEB_HEARTBEAT_STALE_SECONDS)
    seconds = int(age.total_seconds())
    if age > stale:
        return False, f"stale: last heartbeat {seconds}s ago"
    return True, f"last heartbeat {seconds}s ago"


def health_report() -> tuple[bool, dict[str, dict[str, object]]]:
    checks = {"database": check_database(), "broker": check_broker(), "worker": check_worker()}
    report: dict[str, dict[str, object]] = {
        name: {"ok": ok, "detail": detail} for name, (ok, detail) in checks.items()
    }
    return all(ok for ok, _ in checks.values()), report
