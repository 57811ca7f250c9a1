"""/healthz reports database, broker and worker; 503 until a worker has reported in."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from mailweb.models import Heartbeat
from tests.conftest import wait_for

pytestmark = pytest.mark.smoke


def test_unhealthy_without_worker_heartbeat(client: Client, db: None) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["worker"] == {"ok": False, "detail": "no heartbeat yet"}


def test_healthy_with_fresh_heartbeat(client: Client, db: None) -> None:
    Heartbeat.objects.create(name="worker", at=timezone.now())
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "ok"
    assert response["Cache-Control"].startswith("max-age=0")


def test_container_checks_are_answered_whatever_the_host(
    client: Client, db: None, settings: object
) -> None:
    """Docker asks http://127.0.0.1:8000/healthz; a deployment allows only its own host name."""
    settings.ALLOWED_HOSTS = ["mail.example.com"]  # type: ignore[attr-defined]
    settings.SECURE_SSL_REDIRECT = True  # type: ignore[attr-defined]
    Heartbeat.objects.create(name="worker", at=timezone.now())
    response = client.get("/healthz", HTTP_HOST="127.0.0.1:8000")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"
    assert client.post("/healthz", HTTP_HOST="127.0.0.1:8000").status_code == 405
    # Every other path is still host-validated and redirected to HTTPS.
    assert client.get("/login/", HTTP_HOST="127.0.0.1:8000").status_code == 400
    assert client.get("/login/", HTTP_HOST="mail.example.com").status_code == 301


def test_stale_heartbeat_is_unhealthy(client: Client, db: None) -> None:
    Heartbeat.objects.create(name="worker", at=timezone.now() - timedelta(minutes=10))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"]["detail"].startswith("stale")


def test_broken_broker_is_reported(client: Client, db: None, settings: object) -> None:
    from mailweb.celery import app

    Heartbeat.objects.create(name="worker", at=timezone.now())
    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/healthz")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False


@pytest.mark.django_db(transaction=True)
def test_real_worker_heartbeat_makes_health_green(client: Client, celery_worker: object) -> None:
    """A real worker process reports in on start-up, and then /healthz is 200."""
    assert wait_for(lambda: Heartbeat.objects.filter(name="worker").exists(), timeout=30)
    assert client.get("/healthz").status_code == 200
