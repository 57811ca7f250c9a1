"""manage.py mailboxes: the state of every mailbox for admins and scripts."""

import json
from datetime import timedelta
from io import StringIO

from django.core.management import call_command
from django.utils import timezone

from accounts import actions
from accounts.models import MailAccount
from mailweb.models import Conversation, Folder, Message, UnfetchableMessage


def _setup() -> MailAccount:
    mailbox, _ = actions.connect_microsoft_mailbox(
        "ops@contoso.example",
        method=MailAccount.Method.MICROSOFT_IMAP,
        tenant_id="t",
        refresh_token="refresh-secret-xyz",
        access_token="access-secret-xyz",
        resource="https://outlook.office.com",
        expires_at=(timezone.now() + timedelta(minutes=50)).timestamp(),
    )
    mailbox.last_sync_at = timezone.now() - timedelta(minutes=2)
    mailbox.save()
    inbox = Folder.objects.create(
        mailbox=mailbox,
        name="Inbox",
        role="inbox",
        sync_enabled=True,
        server_count=12_000,
        synced_count=2,
    )
    Folder.objects.create(mailbox=mailbox, name="Junk Email", sync_enabled=False)
    UnfetchableMessage.objects.create(
        folder=inbox,
        uidvalidity=1,
        uid=3,
        error="Internal error occurred.",
        next_attempt_at=timezone.now(),
    )
    conversation = Conversation.objects.create(mailbox=mailbox)
    for uid in (1, 2):
        Message.objects.create(mailbox=mailbox, folder=inbox, conversation=conversation, uid=uid)
    MailAccount.objects.create(
        address="broken@contoso.example",
        method=MailAccount.Method.GRAPH,
        status=MailAccount.Status.NEEDS_RECONNECT,
        status_reason="revoked",
        last_error="Microsoft revoked Mailweb's access. (AADSTS50173)",
    )
    return mailbox


def test_text_output(db: None) -> None:
    _setup()
    out = StringIO()
    call_command("mailboxes", stdout=out)
    text = out.getvalue()
    assert "ops@contoso.example" in text and "microsoft_imap" in text
    assert "status:        active" in text
    assert "min ago" in text and "(in 50 min)" in text
    assert "folder Inbox: 2 messages" in text and "Junk Email" not in text
    assert "progress:      2/12,000 messages" in text  # grouped for reading; --json is plain
    assert "not fetched:   1 message the server would not send (Internal error" in text
    assert "broken@contoso.example" in text and "needs_reconnect [revoked]" in text
    assert "AADSTS50173" in text and "last sync:     never" in text
    assert "secret" not in text


def test_a_sync_that_just_finished_reads_just_now(db: None) -> None:
    mailbox = _setup()
    mailbox.last_sync_at = timezone.now() - timedelta(milliseconds=300)
    mailbox.save()
    out = StringIO()
    call_command("mailboxes", stdout=out)
    assert "(just now)" in out.getvalue() and "(in 0s)" not in out.getvalue()


def test_json_output(db: None) -> None:
    mailbox = _setup()
    out = StringIO()
    call_command("mailboxes", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert [m["address"] for m in data["mailboxes"]] == [
        "broken@contoso.example",
        "ops@contoso.example",
    ]
    ops = data["mailboxes"][1]
    assert ops["id"] == mailbox.pk and ops["method"] == "microsoft_imap"
    assert ops["status"] == "active" and ops["last_error"] == ""
    assert ops["last_sync_at"].startswith(str(timezone.now().year))
    assert ops["access_token_expires_at"]
    assert ops["folders"] == [{"name": "Inbox", "role": "inbox", "messages": 2}]
    assert ops["progress"] == {
        "synced": 2,
        "total": 12000,
        "eta_seconds": None,
        "unfetchable": 1,
        "unfetchable_reason": "Internal error occurred.",
    }
    assert data["mailboxes"][0]["access_token_expires_at"] is None
    assert "secret" not in out.getvalue()


def test_no_mailboxes(db: None) -> None:
    out = StringIO()
    call_command("mailboxes", stdout=out)
    assert "No mailboxes" in out.getvalue()
    out = StringIO()
    call_command("mailboxes", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"mailboxes": []}
