"""A real Celery worker killed with SIGKILL in the middle of an initial sync loses nothing and
duplicates nothing: after a restarted worker finishes, the store matches the server exactly and
is threaded exactly like a sync that was never interrupted."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db.models import Count, Sum

from mailweb.blobs import has_blob
from mailweb.models import Conversation, Folder, Message
from sync.engine import run_sync
from sync.tasks import sync_mailbox
from tests.conftest import Worker, wait_for
from tests.sync.conftest import ImapAccount
from tests.sync.mail import BASE_TIME, message, new_id, thread

pytestmark = pytest.mark.dovecot


def corpus() -> tuple[list[bytes], list[bytes]]:
    """About 420 messages in the Inbox (threads and singles) and replies in Sent."""
    inbox: list[bytes] = []
    sent: list[bytes] = []
    for index in range(60):
        start = BASE_TIME + timedelta(hours=index * 7)
        messages = thread(5, f"Case {index}", start=start)
        inbox.extend(messages[:4])
        sent.append(messages[4])
    for index in range(180):
        inbox.append(
            message(
                f"Newsletter {index}",
                message_id=new_id(),
                date=BASE_TIME + timedelta(minutes=37 * index),
                body=("Lorem ipsum dolor sit amet. " * 40 + "\n") * (1 + index % 5),
            )
        )
    return inbox, sent


def conversation_partition(account: ImapAccount) -> set[frozenset[str]]:
    """The conversations as sets of Message-IDs (independent of database ids)."""
    groups: dict[int, set[str]] = {}
    for conversation_id, message_id in Message.objects.filter(mailbox=account.mailbox).values_list(
        "conversation_id", "message_id"
    ):
        groups.setdefault(conversation_id, set()).add(message_id)
    return {frozenset(group) for group in groups.values()}


def diagnose(account: ImapAccount) -> str:
    from django.db import connection

    from sync.models import MailboxSyncState

    mailbox = account.refresh()
    state = MailboxSyncState.objects.filter(mailbox=mailbox).values().first()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid, granted, objid FROM pg_locks WHERE locktype = 'advisory'")
        locks = cursor.fetchall()
    return f"status={mailbox.status} error={mailbox.last_error!r} state={state} locks={locks}"


def synced(account: ImapAccount) -> int:
    total = Folder.objects.filter(mailbox=account.mailbox).aggregate(n=Sum("synced_count"))["n"]
    return int(total or 0)


def test_sigkill_during_initial_sync_loses_and_duplicates_nothing(
    imap_account: Callable[..., ImapAccount],
    worker_factory: Callable[..., Worker],
    tmp_path: Path,
    settings: Any,
) -> None:
    inbox_raws, sent_raws = corpus()
    account = imap_account()
    sent = account.folder_name("\\Sent")
    account.append_many(inbox_raws)
    account.append_many(sent_raws, folder=sent)
    total = len(inbox_raws) + len(sent_raws)
    env = {
        "MAILWEB_BLOB_DIR": str(tmp_path / "worker-blobs"),
        "MAILWEB_SYNC_BATCH_SIZE": "15",
        "WORKER_LOG_LEVEL": "INFO",
    }
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "mailweb.storage.AtomicFileSystemStorage",
            "OPTIONS": {"location": tmp_path / "worker-blobs"},
        },
    }

    kills = []
    for threshold in (20, 140, 300, 430):
        worker = worker_factory(env)
        sync_mailbox.delay(account.mailbox.pk)  # what the sweep would do after a crash
        reached = wait_for(lambda t=threshold: synced(account) >= t, timeout=120, interval=0.005)
        assert reached, f"the sync never reached {threshold} messages: {diagnose(account)}"
        worker.kill()
        kills.append(synced(account))
    # The kills landed inside the initial sync (the last one may come after its final commit).
    assert kills[2] < total, kills
    print(f"killed at {kills} of {total} messages")

    worker_factory(env)
    sync_mailbox.delay(account.mailbox.pk)

    def finished() -> bool:
        folders = Folder.objects.filter(mailbox=account.mailbox, sync_enabled=True)
        return not folders.filter(initial_sync_done_at__isnull=True).exists() and (
            Message.objects.filter(mailbox=account.mailbox).count() == total
        )

    assert wait_for(finished, timeout=180, interval=0.1), (
        f"sync did not finish: {synced(account)}/{total} after kills at {kills}"
    )
    time.sleep(0.5)  # let the final pass write its status

    # Exactly the server's messages: no loss, no duplicates.
    assert account.stored_uids() == account.server_uids()
    assert account.stored_uids(sent) == account.server_uids(sent)
    messages = Message.objects.filter(mailbox=account.mailbox)
    assert messages.count() == total
    duplicates = messages.values("message_id").annotate(n=Count("id")).filter(n__gt=1)
    assert not duplicates.exists()
    assert all(has_blob(sha) for sha in messages.values_list("raw_sha256", flat=True))
    # Counters and cursors agree with the rows.
    for row in Folder.objects.filter(mailbox=account.mailbox, sync_enabled=True):
        assert row.synced_count == row.messages.count(), row
        assert row.lowest_synced_uid == 1 and row.initial_sync_done_at is not None
    for conversation in Conversation.objects.filter(mailbox=account.mailbox):
        assert conversation.message_count == conversation.messages.count()

    # Threaded exactly like an uninterrupted sync of the same mail.
    reference = imap_account()
    reference.append_many(inbox_raws)
    reference.append_many(sent_raws, folder=reference.folder_name("\\Sent"))
    assert run_sync(reference.mailbox.pk).failure is None
    assert conversation_partition(account) == conversation_partition(reference)
    assert len(conversation_partition(account)) == 60 + 180
