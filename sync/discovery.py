"""Keeping the mailbox's ``Folder`` rows in step with the server and with its configuration.

LIST runs on the first sync, then at most every ``RELIST_SECONDS`` or when a folder could not
be selected (renamed or deleted on the server); which folders are synced is re-applied on every
pass, so a change to ``folders_to_sync`` takes effect on the next sync.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from imapclient import IMAPClient

from accounts.models import MailAccount
from mailweb.models import Folder
from sync.imap.folders import ListedFolder, list_server_folders, wanted_folders
from sync.imap.session import Capabilities
from sync.models import MailboxSyncState
from sync.store import remove_folder, remove_messages

log = logging.getLogger(__name__)

RELIST_SECONDS = 900
# Inbox first: its newest mail is what people look at first.
ROLE_ORDER: dict[str, int] = {
    str(Folder.Role.INBOX): 0,
    str(Folder.Role.SENT): 1,
    str(Folder.Role.ARCHIVE): 2,
}

__all__ = ["RELIST_SECONDS", "folders_to_sync", "refresh_folders"]


class FolderListingError(Exception):
    """LIST returned something no real server would (no INBOX): nothing was changed."""


def refresh_folders(
    mailbox: MailAccount, client: IMAPClient, capabilities: Capabilities, *, force: bool = False
) -> list[Folder]:
    """The folders to sync, listing the server first when due (or ``force``)."""
    state, _ = MailboxSyncState.objects.get_or_create(mailbox=mailbox)
    due = state.folders_listed_at is None or timezone.now() - state.folders_listed_at > timedelta(
        seconds=RELIST_SECONDS
    )
    if force or due or not Folder.objects.filter(mailbox=mailbox).exists():
        listed = list_server_folders(client, capabilities)
        if not any(folder.role == Folder.Role.INBOX for folder in listed):
            raise FolderListingError(f"the server listed no INBOX for {mailbox.address}")
        _apply_listing(mailbox, listed)
        MailboxSyncState.objects.filter(mailbox=mailbox).update(
            folders_listed_at=timezone.now(), capabilities=capabilities.summary()
        )
    return folders_to_sync(mailbox)


@transaction.atomic
def _apply_listing(mailbox: MailAccount, listed: list[ListedFolder]) -> None:
    existing = {folder.name: folder for folder in Folder.objects.filter(mailbox=mailbox)}
    names = {folder.name for folder in listed}
    for gone in set(existing) - names:
        folder = existing[gone]
        removed = remove_folder(folder)
        log.info("folder %r of mailbox %s is gone (%d messages removed)", gone, mailbox.pk, removed)
    for entry in listed:
        row = existing.get(entry.name)
        if row is None:
            Folder.objects.create(mailbox=mailbox, name=entry.name, role=entry.role)
        elif row.role != entry.role:
            Folder.objects.filter(pk=row.pk).update(role=entry.role)


def folders_to_sync(mailbox: MailAccount) -> list[Folder]:
    """Apply ``folders_to_sync`` to the known folders; returns the synced ones, Inbox first."""
    roles, names = wanted_folders(mailbox.folders_to_sync)
    folders = list(Folder.objects.filter(mailbox=mailbox))
    for folder in folders:
        wanted = folder.role in roles or folder.name.lower() in names
        if wanted and not folder.sync_enabled:
            Folder.objects.filter(pk=folder.pk).update(sync_enabled=True)
            folder.sync_enabled = True
        elif not wanted and folder.sync_enabled:
            _stop_syncing(folder)
    synced = [folder for folder in folders if folder.sync_enabled]
    return sorted(synced, key=lambda f: (ROLE_ORDER.get(f.role, 9), f.name))


@transaction.atomic
def _stop_syncing(folder: Folder) -> None:
    """A folder no longer synced: its messages would go stale, so they leave the store."""
    from django.db.models import Q

    removed = remove_messages(folder.mailbox, Q(folder=folder))
    Folder.objects.filter(pk=folder.pk).update(
        sync_enabled=False,
        uidvalidity=None,
        uidnext=None,
        highestmodseq=None,
        lowest_synced_uid=None,
        synced_count=0,
        server_count=0,
        initial_sync_started_at=None,
        initial_sync_done_at=None,
        last_flags_sweep_at=None,
    )
    folder.sync_enabled = False
    log.info("stopped syncing folder %s (%d messages removed)", folder, removed)
