"""Celery tasks: retries, the sweep, lifecycle signals, and failing mailboxes in isolation."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from accounts import signals, vault
from accounts.models import MailAccount
from mailweb.models import Message
from sync import tasks
from sync.imap.connection import OUTLOOK_RESOURCE
from sync.models import MailboxSyncState
from sync.tasks import retry_delay, sweep, sync_mailbox
from tests.conftest import Worker, wait_for
from tests.fakes.idp import FakeIdentityProvider
from tests.sync.conftest import ImapAccount
from tests.sync.mail import message


def test_retry_delay_backs_off_with_jitter_and_honours_retry_after() -> None:
    for retries in range(10):
        ceiling = min(tasks.RETRY_MAX_SECONDS, tasks.RETRY_BASE_SECONDS * 2**retries)
        delays = {retry_delay(retries) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jitter
    assert retry_delay(0, retry_after=120) >= 120


@pytest.mark.django_db
def test_sweep_enqueues_syncable_imap_mailboxes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(sync_mailbox, "apply_async", lambda args, **kw: sent.append((args, kw)))
    make = MailAccount.objects.create
    good = make(address="a@example.com", method="imap_password")
    failing = make(address="b@example.com", method="microsoft_imap", status="error")
    make(address="c@example.com", method="imap_password", status="needs_reconnect")
    make(address="d@example.com", method="imap_password", status="disabled")
    make(address="e@example.com", method="graph")
    hopeless = make(address="f@example.com", method="imap_password", status="error")
    MailboxSyncState.objects.create(mailbox=hopeless, failures=9)

    assert sweep() == 2
    assert sorted(args[0] for args, _ in sent) == sorted([good.pk, failing.pk])
    assert all(kw["expires"] > 0 for _, kw in sent)


@pytest.mark.django_db(transaction=True)
def test_connecting_a_mailbox_enqueues_its_first_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    queued: list[int] = []
    monkeypatch.setattr(sync_mailbox, "delay", queued.append)
    with transaction.atomic():
        box = MailAccount.objects.create(address="new@example.com", method="imap_password")
        signals.mailbox_connected.send(sender=MailAccount, mailbox_id=box.pk)
        assert queued == []  # not before the transaction commits
    assert queued == [box.pk]
    graph = MailAccount.objects.create(address="g@example.com", method="graph")
    signals.mailbox_connected.send(sender=MailAccount, mailbox_id=graph.pk)
    assert queued == [box.pk]


@pytest.mark.dovecot
def test_one_failing_mailbox_never_blocks_the_others(
    imap_account: Callable[..., ImapAccount],
    worker_factory: Callable[..., Worker],
    idp: FakeIdentityProvider,
    tmp_path: Path,
) -> None:
    broken = imap_account()
    vault.store_oauth_tokens(
        broken.mailbox,
        "unused",
        access_token=idp.mint_access_token("not-this-mailbox@contoso.example"),
        resource=OUTLOOK_RESOURCE,
        expires_at=9_999_999_999,
    )
    healthy = [imap_account(), imap_account(password=True)]
    for account in healthy:
        account.append(message(f"For {account.address}"))
    worker_factory({"MAILWEB_BLOB_DIR": str(tmp_path / "blobs")})
    assert sweep() == 3

    for account in healthy:
        assert wait_for(
            lambda a=account: Message.objects.filter(mailbox=a.mailbox).count() == 1, timeout=60
        )
        assert wait_for(lambda a=account: a.refresh().status == "active", timeout=30)
    assert wait_for(lambda: broken.refresh().status == "error", timeout=30)
    assert "rejected the login" in broken.mailbox.last_error


@pytest.mark.dovecot
def test_transient_failures_are_retried_and_recorded(
    imap_account: Callable[..., ImapAccount],
    worker_factory: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    account = imap_account(password=True)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once closed
    MailAccount.objects.filter(pk=account.mailbox.pk).update(imap_port=port)
    worker_factory({"MAILWEB_BLOB_DIR": str(tmp_path / "blobs")})
    sync_mailbox.delay(account.mailbox.pk)

    def failures() -> int:
        state = MailboxSyncState.objects.filter(mailbox=account.mailbox).first()
        return state.failures if state else 0

    assert wait_for(lambda: failures() >= 2, timeout=60), "the task was not retried"
    mailbox = account.refresh()
    assert "cannot connect" in mailbox.last_error
    assert mailbox.status in ("active", "syncing", "error")
