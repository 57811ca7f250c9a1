"""Shared fixtures: users, mailboxes, a real Celery worker, and the outside-service stand-ins.

Tests run against real PostgreSQL and Redis (script/test provides them); the smoke subset also
runs on the SQLite default. Stand-ins for Microsoft and IMAP live in tests/fakes/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from accounts.models import MailAccount, MailboxAccess, User
from tests.fakes.fixtures import *  # noqa: F403  (identity provider, Dovecot, test CA)

ROOT = Path(__file__).resolve().parent.parent

#: What production settings refuse to start without (test values).
PRODUCTION_SECRETS = {
    "SECRET_KEY": "x" * 50,
    "MAILWEB_TOKEN_KEYS": "ZmRlYnVnZmRlYnVnZmRlYnVnZmRlYnVnZmRlYnVnMTI=",
    "ALLOWED_HOSTS": "mail.example.com",
}


def outside_environment(**extra: str) -> dict[str, str]:
    """This process's environment without the test runner's switches and services, plus
    ``extra``: for a subprocess that must configure itself as a deployment would."""
    runner = ("MAILWEB_", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(runner)}
    env.pop("PYTEST_CURRENT_TEST", None)
    return {**env, **extra}


DurableCalls = list[tuple[str, list[str]]]


@pytest.fixture
def durable_calls(monkeypatch: pytest.MonkeyPatch) -> DurableCalls:
    """Record ``mailweb.storage.make_durable(root, paths)`` calls instead of syncing.

    Durability cannot be observed without pulling the plug; the files are still written.
    """
    from mailweb import storage

    calls: DurableCalls = []
    monkeypatch.setattr(
        storage, "make_durable", lambda root, paths: calls.append((root, list(paths)))
    )
    return calls


@pytest.fixture(autouse=True)
def _blob_dir(tmp_path: Path, settings: Any) -> None:
    """Each test stores blobs in its own directory."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "mailweb.storage.AtomicFileSystemStorage",
            "OPTIONS": {"location": tmp_path / "blobs"},
        },
    }


@pytest.fixture(autouse=True)
def _own_cache_namespace(settings: Any) -> None:
    """Rate limits, presence and cached counts live in the cache: each test gets its own key
    prefix, so it starts without them (and nothing is flushed: the Celery broker may share
    the Redis database)."""
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"},
    }


@pytest.fixture
def admin_user(db: None) -> User:
    return User.objects.create_superuser(
        email="admin@example.com", password="correct horse battery", name="Ada Admin"
    )


@pytest.fixture
def member(db: None) -> User:
    return User.objects.create_user(
        email="member@example.com", password="correct horse battery", name="Mo Member"
    )


@pytest.fixture
def mailbox(db: None) -> MailAccount:
    return MailAccount.objects.create(
        address="support@example.com",
        method=MailAccount.Method.IMAP_PASSWORD,
        imap_host="127.0.0.1",
    )


@pytest.fixture
def member_with_access(member: User, mailbox: MailAccount) -> User:
    MailboxAccess.objects.create(user=member, mailbox=mailbox)
    return member


def worker_environment() -> dict[str, str]:
    """The environment a subprocess needs to share this test session's database and broker."""
    db: dict[str, Any] = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailweb.settings",
        "MAILWEB_TESTING": "true",
        "DEBUG": "true",
    }
    if db["ENGINE"].endswith("postgresql"):
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        env["DATABASE_URL"] = (
            f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    env["REDIS_URL"] = (
        settings.CELERY_BROKER_URL if settings.CELERY_BROKER_URL.startswith("redis") else ""
    )
    return env


@pytest.fixture
def celery_worker(worker_factory: Callable[..., Worker]) -> Worker:
    """One real Celery worker process on the test database and broker, stopped after the test."""
    return worker_factory()


def _purge_broker() -> None:
    from mailweb.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")


def wait_for(predicate: object, timeout: float = 20.0, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout`` passes; tests assert on the result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False


class Worker:
    """A real ``celery worker`` subprocess on the test database and broker."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        env = {**worker_environment(), **self.extra_env}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "mailweb",
                "worker",
                "--pool=solo",
                f"--loglevel={self.extra_env.get('WORKER_LOG_LEVEL', 'WARNING')}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acknowledgement, no rollback beyond what the DB does."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def worker_factory(transactional_db: None) -> Iterator[Callable[..., Worker]]:
    """Start real Celery workers (stopped after the test): ``worker_factory(extra_env)``."""
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("the Celery worker tests need REDIS_URL")
    _purge_broker()

    workers: list[Worker] = []

    def start(extra_env: dict[str, str] | None = None) -> Worker:
        worker = Worker(extra_env).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    _purge_broker()
