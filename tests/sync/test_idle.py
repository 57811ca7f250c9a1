"""Push with IMAP IDLE: the watcher, the supervisor, and mail reaching the database in seconds
through ``manage.py idle`` and a real Celery worker."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from accounts import vault
from accounts.actions import add_password_mailbox
from accounts.models import AdminAlert, MailAccount
from mailweb.models import Message
from sync.idle import IdleSupervisor, IdleWatcher, is_change
from tests.conftest import ROOT, Worker, wait_for, worker_environment
from tests.fakes.dovecot import DovecotServer
from tests.fakes.idp import FakeIdentityProvider
from tests.fakes.imap_proxy import ImapProxy
from tests.sync.conftest import ImapAccount
from tests.sync.mail import message, new_id

pytestmark = [pytest.mark.dovecot, pytest.mark.django_db(transaction=True)]


def test_which_responses_mean_a_change() -> None:
    assert is_change((3, b"EXISTS"))
    assert is_change((2, b"EXPUNGE"))
    assert is_change((1, b"FETCH", (b"FLAGS", (b"\\Seen",))))
    assert not is_change((0, b"RECENT"))
    assert not is_change((b"OK", b"Still here"))
    assert not is_change(b"garbage")


@pytest.fixture
def private_server(tmp_path: Path, idp: FakeIdentityProvider) -> Iterator[DovecotServer]:
    """A Dovecot of this test's own: restarting it disturbs nobody else."""
    with DovecotServer(tmp_path / "dovecot", idp, users=[("idle@example.com", "idle-pass")]) as s:
        yield s


@pytest.fixture
def private_mailbox(private_server: DovecotServer, trust_test_ca: Path) -> MailAccount:
    return add_password_mailbox(
        "idle@example.com",
        imap_host="127.0.0.1",
        imap_port=private_server.port,
        imap_security="ssl",
        username="idle@example.com",
        password="idle-pass",
    )


class Notices:
    def __init__(self) -> None:
        self.items: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    def __call__(self, mailbox_id: int) -> None:
        with self.lock:
            self.items.append((time.monotonic(), mailbox_id))

    def count(self) -> int:
        with self.lock:
            return len(self.items)


def test_watcher_reports_changes_renews_idle_and_reconnects(
    private_server: DovecotServer, private_mailbox: MailAccount
) -> None:
    notices = Notices()
    watcher = IdleWatcher(private_mailbox.pk, notices, renew_seconds=1.5)
    watcher.start()
    try:
        assert watcher.connected.wait(20)
        assert wait_for(lambda: notices.count() >= 1, timeout=10)  # catch-up on connect
        time.sleep(1.2)  # past the debounce window

        before = notices.count()
        uid = private_server.append("idle@example.com", "INBOX", message("Pushed"))
        assert wait_for(lambda: notices.count() > before, timeout=15), "no notice for EXISTS"
        time.sleep(1.2)
        before = notices.count()
        private_server.set_flags("idle@example.com", "INBOX", uid, [b"\\Seen"])
        assert wait_for(lambda: notices.count() > before, timeout=15), "no notice for FETCH"
        time.sleep(1.2)
        before = notices.count()
        private_server.expunge("idle@example.com", "INBOX", uid)
        assert wait_for(lambda: notices.count() > before, timeout=15), "no notice for EXPUNGE"

        assert wait_for(lambda: watcher.idle_commands >= 3, timeout=15), "IDLE not re-issued"

        private_server.restart()  # drops the connection, as a server restart would
        assert wait_for(lambda: watcher.sessions >= 2 and watcher.connected.is_set(), timeout=30)
        before = notices.count()
        private_server.append("idle@example.com", "INBOX", message("After the restart"))
        assert wait_for(lambda: notices.count() > before, timeout=15)
    finally:
        watcher.stop()
        watcher.join(10)
    assert not watcher.is_alive()


def test_a_refused_password_stops_the_watcher_and_asks_for_a_reconnect(
    private_mailbox: MailAccount,
) -> None:
    """Retrying a password the server refuses only gets the account locked: one try, then the
    mailbox needs reconnecting (and an admin is told), as when the sync is refused."""
    vault.store_password(private_mailbox, "changed on the server")
    watcher = IdleWatcher(private_mailbox.pk, Notices())
    watcher.start()
    watcher.join(30)
    assert not watcher.is_alive()
    assert watcher.gave_up.startswith("needs reconnect:") and watcher.sessions == 0
    private_mailbox.refresh_from_db()
    assert private_mailbox.status == MailAccount.Status.NEEDS_RECONNECT
    assert AdminAlert.objects.filter(mailbox=private_mailbox, resolved_at__isnull=True).exists()


def test_a_connection_cut_during_the_login_is_retried_not_taken_for_a_refusal(
    private_server: DovecotServer, private_mailbox: MailAccount
) -> None:
    """A network blip in the middle of LOGIN is no refused password: the watcher must neither
    give up nor mark the mailbox, but log in again and watch."""
    proxy = ImapProxy(private_server.ca, private_server.port, pattern=rb"^\S+ LOGIN ")
    MailAccount.objects.filter(pk=private_mailbox.pk).update(imap_port=proxy.port)
    watcher = IdleWatcher(private_mailbox.pk, Notices())
    watcher.start()
    try:
        assert wait_for(lambda: proxy.refused == 1, timeout=20)
        proxy.refusing = False
        assert watcher.connected.wait(20), watcher.gave_up
        assert watcher.is_alive() and watcher.gave_up == ""
    finally:
        watcher.stop()
        watcher.join(15)
        proxy.close()
    private_mailbox.refresh_from_db()
    assert private_mailbox.status != MailAccount.Status.NEEDS_RECONNECT
    assert not AdminAlert.objects.filter(mailbox=private_mailbox).exists()


def test_a_throttled_server_is_left_alone_as_long_as_it_asks(
    private_server: DovecotServer, private_mailbox: MailAccount
) -> None:
    """Exchange Online throttles busy clients ("Request is throttled. Suggested Backoff Time:
    N milliseconds"); reconnecting after a second, then two, only prolongs it."""
    proxy = ImapProxy(
        private_server.ca,
        private_server.port,
        pattern=rb"^\S+ (SELECT|EXAMINE) ",
        answer=b"NO Request is throttled. Suggested Backoff Time: 300000 milliseconds",
    )
    MailAccount.objects.filter(pk=private_mailbox.pk).update(imap_port=proxy.port)
    watcher = IdleWatcher(private_mailbox.pk, Notices())
    watcher.start()
    try:
        assert wait_for(lambda: proxy.refused == 1, timeout=20)
        time.sleep(3)  # without the server's wait: another try after 0.5-1 s, then 1-2 s
        assert proxy.refused == 1 and watcher.is_alive() and watcher.sessions == 0
    finally:
        watcher.stop()
        watcher.join(15)
        proxy.close()
    assert not watcher.is_alive()


def test_supervisor_follows_the_mailbox_list(
    private_server: DovecotServer, private_mailbox: MailAccount
) -> None:
    enqueued: list[int] = []
    supervisor = IdleSupervisor(enqueued.append, refresh_seconds=0.2)
    runner = threading.Thread(target=supervisor.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: private_mailbox.pk in supervisor.watchers, timeout=10)
        assert wait_for(lambda: private_mailbox.pk in enqueued, timeout=20)
        MailAccount.objects.filter(pk=private_mailbox.pk).update(status="needs_reconnect")
        assert wait_for(lambda: private_mailbox.pk not in supervisor.watchers, timeout=10)
        MailAccount.objects.filter(pk=private_mailbox.pk).update(status="active")
        assert wait_for(lambda: private_mailbox.pk in supervisor.watchers, timeout=10)
    finally:
        supervisor.stop()
        runner.join(15)
    assert not runner.is_alive()


def test_pushed_mail_is_in_the_database_within_seconds(
    imap_account: Callable[..., ImapAccount],
    worker_factory: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    account = imap_account()
    env = {**worker_environment(), "MAILWEB_BLOB_DIR": str(tmp_path / "blobs")}
    worker_factory({"MAILWEB_BLOB_DIR": str(tmp_path / "blobs")})
    idle = subprocess.Popen(
        [sys.executable, "manage.py", "idle", "--refresh", "0.5"], cwd=ROOT, env=env
    )
    try:
        # The connect-time catch-up runs the (empty) initial sync first.
        assert wait_for(lambda: account.refresh().last_sync_at is not None, timeout=60)
        latencies = []
        for index in range(5):
            message_id = new_id()
            started = time.monotonic()
            account.append(message(f"Push {index}", message_id=message_id))
            arrived = wait_for(
                lambda m=message_id: Message.objects.filter(
                    mailbox=account.mailbox, message_id=m.strip("<>")
                ).exists(),
                timeout=30,
                interval=0.02,
            )
            assert arrived, f"message {index} did not arrive"
            latencies.append(time.monotonic() - started)
            time.sleep(1.1)  # past the watcher's debounce window
        print(
            f"IDLE push latency: median {statistics.median(latencies):.2f}s, "
            f"max {max(latencies):.2f}s over {len(latencies)} messages"
        )
    finally:
        idle.terminate()
        idle.wait(timeout=30)
    assert idle.returncode == 0
