"""Mailboxes → Folders: admins choose what an IMAP mailbox syncs besides its Inbox.

Dropping a folder that holds mail removes that mail from Mailweb, so it must be confirmed; the
choice itself is applied by the next sync pass, which the page enqueues.
"""

import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import MailAccount
from mailweb.models import Folder, Message
from sync import tasks
from sync.discovery import folders_to_sync
from sync.ingest import ProviderKey, ServerState, ingest_message
from tests.mailweb.factories import build

pytestmark = pytest.mark.django_db


@pytest.fixture
def folders(mailbox: MailAccount) -> dict[str, Folder]:
    roles = {"INBOX": "inbox", "Sent": "sent", "Archive": "archive", "Junk": "junk"}
    made = {
        name: Folder.objects.create(
            mailbox=mailbox, name=name, role=role, sync_enabled=role != "junk"
        )
        for name, role in roles.items()
    }
    made["Projects/2026"] = Folder.objects.create(mailbox=mailbox, name="Projects/2026")
    for uid in (1, 2):
        ingest_message(
            mailbox,
            build(subject=f"Archived {uid}").as_bytes(),
            ProviderKey(folder=made["Archive"], uidvalidity=1, uid=uid),
            ServerState(received_at=timezone.now()),
        )
    return made


def test_the_page_shows_the_folders_and_what_is_synced(
    admin_client: Client, mailbox: MailAccount, folders: dict[str, Folder]
) -> None:
    text = admin_client.get(f"/mailboxes/{mailbox.pk}/folders/").content.decode()
    assert 'INBOX <span class="muted">(Inbox, always synced)</span>' in text
    assert "Archive (Archive) · 2 messages in Mailweb" in text
    assert "Projects/2026" in text
    checked = re.findall(r'<input type="checkbox" name="folders" value="(\d+)"[^>]*checked', text)
    assert {int(pk) for pk in checked} == {folders["Sent"].pk, folders["Archive"].pk}
    assert f"/mailboxes/{mailbox.pk}/folders/" in admin_client.get("/mailboxes/").content.decode()


def test_dropping_a_folder_with_mail_is_confirmed_then_the_next_sync_applies_the_choice(
    admin_client: Client,
    mailbox: MailAccount,
    folders: dict[str, Folder],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    queued: list[Any] = []
    monkeypatch.setattr(tasks.sync_mailbox, "apply_async", lambda args, **_: queued.append(args))
    url = f"/mailboxes/{mailbox.pk}/folders/"
    choice = {"folders": [str(folders["Sent"].pk), str(folders["Projects/2026"].pk)]}

    unconfirmed = admin_client.post(url, choice)
    assert unconfirmed.status_code == 200
    assert (
        "Stopping Archive (2) removes those messages from Mailweb" in unconfirmed.content.decode()
    )
    assert MailAccount.objects.get(pk=mailbox.pk).folders_to_sync == []

    with django_capture_on_commit_callbacks(execute=True):
        saved = admin_client.post(url, {**choice, "confirm_removal": "on"})
    assert saved.status_code == 302
    mailbox.refresh_from_db()
    # Roles for the well-known folders (they survive renames), names for the others.
    assert mailbox.folders_to_sync == ["inbox", "sent", "Projects/2026"]
    assert queued == [(mailbox.pk,)]

    # What the enqueued pass does first with the choice:
    assert [f.name for f in folders_to_sync(mailbox)] == ["INBOX", "Sent", "Projects/2026"]
    assert not Message.objects.filter(folder=folders["Archive"]).exists()


def test_adding_a_folder_needs_no_confirmation_and_the_inbox_cannot_be_dropped(
    admin_client: Client,
    mailbox: MailAccount,
    folders: dict[str, Folder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks.sync_mailbox, "apply_async", lambda *_, **__: None)
    url = f"/mailboxes/{mailbox.pk}/folders/"
    keep = [str(folders[name].pk) for name in ("Sent", "Archive", "Junk")]
    # The Inbox is not a choice: a forged value for it is refused by the form.
    refused = admin_client.post(url, {"folders": [*keep, str(folders["INBOX"].pk)]})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert admin_client.post(url, {"folders": keep}).status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.folders_to_sync == ["inbox", "sent", "archive", "junk"]


def test_before_the_first_sync_there_is_nothing_to_choose(
    admin_client: Client, mailbox: MailAccount
) -> None:
    page = admin_client.get(f"/mailboxes/{mailbox.pk}/folders/").content.decode()
    assert "lists this mailbox's folders on its first sync" in page
    assert 'name="folders"' not in page


def test_mailboxes_without_imap_have_no_folders_page(admin_client: Client) -> None:
    graph = MailAccount.objects.create(address="g@example.com", method=MailAccount.Method.GRAPH)
    assert admin_client.get(f"/mailboxes/{graph.pk}/folders/").status_code == 404
