"""Reactions to mailbox lifecycle signals sent by ``accounts``.

A connected (or reconnected) IMAP mailbox gets its initial or catch-up sync enqueued once the
surrounding transaction commits; ``manage.py idle`` notices new and removed mailboxes by itself.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from accounts.models import MailAccount
from sync.imap.connection import IMAP_METHODS
from sync.models import MailboxSyncState

log = logging.getLogger(__name__)


def on_mailbox_connected(sender: Any = None, *, mailbox_id: int, **_: Any) -> None:
    method = MailAccount.objects.filter(pk=mailbox_id).values_list("method", flat=True).first()
    if method not in IMAP_METHODS:
        return
    # A reconnect starts with a clean slate: no failure backoff from the broken period.
    MailboxSyncState.objects.filter(mailbox_id=mailbox_id).update(failures=0)

    def enqueue() -> None:
        from sync.tasks import sync_mailbox

        sync_mailbox.delay(mailbox_id)

    transaction.on_commit(enqueue)


def on_mailbox_disconnected(sender: Any = None, *, mailbox_id: int, **_: Any) -> None:
    # Nothing to stop: syncs check the mailbox's status before every pass, the IDLE watcher
    # drops mailboxes that are no longer active, and credentials are already gone.
    log.info("mailbox %s disconnected; its sync stops", mailbox_id)
