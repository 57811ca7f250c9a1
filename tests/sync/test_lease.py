"""One sync per mailbox: the lease, and requests that arrive during a running sync."""

from __future__ import annotations

import socket
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import MailAccount
from sync import engine
from sync.engine import run_sync
from sync.folder_sync import PassStats
from sync.lease import (
    LeaseBusy,
    LeaseLost,
    RowLease,
    mailbox_lease,
    request_sync,
    requests_seen,
)
from sync.models import MailboxSyncState

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def box() -> MailAccount:
    return MailAccount.objects.create(
        address="lease@example.com", method="imap_password", imap_host="127.0.0.1"
    )


def test_a_second_sync_finds_the_lease_taken_and_leaves_a_request(box: MailAccount) -> None:
    with mailbox_lease(box.pk):
        before = requests_seen(box.pk)
        report = run_sync(box.pk)
        assert report.busy and report.passes == 0
        assert requests_seen(box.pk) == before + 1
        with pytest.raises(LeaseBusy), mailbox_lease(box.pk):
            pass
    with mailbox_lease(box.pk):  # released
        pass


def test_requests_during_a_pass_trigger_another_pass(
    box: MailAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def fake_pass(mailbox: MailAccount, lease: Any, **_: Any) -> tuple[PassStats, bool, bool]:
        calls.append(mailbox.pk)
        if len(calls) == 1:
            request_sync(mailbox.pk)  # a push arrives while this pass runs
        return PassStats(new=1), True, True

    monkeypatch.setattr(engine, "sync_pass", fake_pass)
    report = run_sync(box.pk)
    assert calls == [box.pk, box.pk] and report.passes == 2 and report.new == 2


def test_held_mailboxes_are_skipped(box: MailAccount) -> None:
    MailAccount.objects.filter(pk=box.pk).update(status=MailAccount.Status.NEEDS_RECONNECT)
    assert "reconnect" in run_sync(box.pk).skipped
    graph = MailAccount.objects.create(address="graph@example.com", method="graph")
    assert "not an IMAP mailbox" in run_sync(graph.pk).skipped


def test_row_lease_expiry_and_dead_holders(box: MailAccount) -> None:
    lease = RowLease.acquire(box.pk)
    with pytest.raises(LeaseBusy):
        RowLease.acquire(box.pk)
    lease.check()  # renews

    # Expired: anyone may take it; the old holder learns it lost the lease.
    MailboxSyncState.objects.filter(mailbox=box).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    second = RowLease.acquire(box.pk)
    with pytest.raises(LeaseLost):
        lease.check()
    second.release()

    # Held by a process of this host that no longer exists: taken over at once.
    finished = subprocess.run(["true"], check=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    del finished
    MailboxSyncState.objects.filter(mailbox=box).update(
        lease_holder=f"{socket.gethostname()}:{dead.pid}:abcd",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    third = RowLease.acquire(box.pk)
    third.release()
    # Held by a live process elsewhere: busy.
    MailboxSyncState.objects.filter(mailbox=box).update(
        lease_holder="another-host:1:abcd",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    with pytest.raises(LeaseBusy):
        RowLease.acquire(box.pk)
