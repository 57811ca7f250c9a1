"""Reads that several views share; every one is scoped to what the user may see."""

from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import MailAccount
from accounts.selectors import AnyUser, visible_mailboxes
from mailweb.models import Conversation, Folder


def visible_conversations(user: AnyUser) -> QuerySet[Conversation]:
    return Conversation.objects.filter(mailbox__in=visible_mailboxes(user))


@dataclass(frozen=True)
class SyncProgress:
    """How far a mailbox's initial sync has come (Mailboxes page, ``manage.py mailboxes``)."""

    synced: int
    total: int
    eta_seconds: int | None

    @property
    def done(self) -> bool:
        return self.synced >= self.total


def mailbox_progress(mailbox: MailAccount) -> SyncProgress:
    """Synced / total over the synced folders, with an ETA from the rate so far."""
    folders = list(Folder.objects.filter(mailbox=mailbox, sync_enabled=True))
    synced = sum(folder.synced_count for folder in folders)
    total = sum(max(folder.server_count, folder.synced_count) for folder in folders)
    started = [
        f.initial_sync_started_at
        for f in folders
        if f.initial_sync_started_at and not f.initial_sync_done_at
    ]
    eta = None
    if started and 0 < synced < total:
        elapsed = (timezone.now() - min(started)).total_seconds()
        rate = synced / elapsed if elapsed > 0 else 0
        eta = int((total - synced) / rate) if rate > 0 else None
    return SyncProgress(synced=synced, total=total, eta_seconds=eta)
