"""Mailbox actions: password mailboxes, disconnect, access grants, lifecycle signals."""

from typing import Any

import pytest
from django.core import mail

from accounts import actions, vault
from accounts.models import AdminAlert, MailAccount, MailboxAccess, User
from accounts.signals import mailbox_connected, mailbox_disconnected
from mailweb.models import Conversation, Folder, Message


@pytest.fixture
def signals_seen() -> Any:
    seen: list[tuple[str, dict]] = []

    def on_connected(**kwargs: Any) -> None:
        seen.append(("connected", {k: v for k, v in kwargs.items() if k != "signal"}))

    def on_disconnected(**kwargs: Any) -> None:
        seen.append(("disconnected", {k: v for k, v in kwargs.items() if k != "signal"}))

    mailbox_connected.connect(on_connected)
    mailbox_disconnected.connect(on_disconnected)
    yield seen
    mailbox_connected.disconnect(on_connected)
    mailbox_disconnected.disconnect(on_disconnected)


def _oauth_mailbox(address: str = "ops@contoso.example") -> MailAccount:
    mailbox, _ = actions.connect_microsoft_mailbox(
        address,
        method=MailAccount.Method.MICROSOFT_IMAP,
        tenant_id="t-1",
        refresh_token="rt-secret-value",
        access_token="at-secret-value",
        resource="https://outlook.office.com",
        expires_at=4102444800,
    )
    return mailbox


def test_add_password_mailbox(
    db: None, signals_seen: list, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        mailbox = actions.add_password_mailbox(
            "Info@Example.org",
            imap_host="imap.example.org",
            imap_port=993,
            username="info",
            password="hunter2-long",
            smtp_host="smtp.example.org",
            display_name="Info desk",
        )
    assert mailbox.method == MailAccount.Method.IMAP_PASSWORD
    assert (mailbox.imap_security, mailbox.smtp_security, mailbox.smtp_port) == (
        "ssl",
        "starttls",
        587,
    )
    assert vault.get_password(mailbox) == "hunter2-long"
    assert b"hunter2" not in bytes(MailAccount.objects.get().credentials)
    assert signals_seen == [("connected", {"sender": MailAccount, "mailbox_id": mailbox.pk})]

    again = actions.add_password_mailbox(
        "info@example.org",
        imap_host="imap.example.org",
        imap_port=143,
        username="info",
        password="new-password-1",
    )
    assert again.pk == mailbox.pk and MailAccount.objects.count() == 1
    assert again.imap_security == "starttls" and vault.get_password(again) == "new-password-1"


def test_password_mailbox_does_not_take_over_a_microsoft_one(db: None) -> None:
    _oauth_mailbox("shared@contoso.example")
    with pytest.raises(actions.MailboxConflict, match="connected with Microsoft"):
        actions.add_password_mailbox(
            "SHARED@contoso.example", imap_host="h", imap_port=993, username="u", password="p"
        )


def test_disconnect_keeps_mail_and_forgets_credentials(
    db: None, signals_seen: list, django_capture_on_commit_callbacks: Any
) -> None:
    mailbox = _oauth_mailbox()
    folder = Folder.objects.create(mailbox=mailbox, name="INBOX", sync_enabled=True)
    conversation = Conversation.objects.create(mailbox=mailbox, subject="Hi")
    Message.objects.create(mailbox=mailbox, folder=folder, conversation=conversation, uid=1)
    AdminAlert.objects.create(mailbox=mailbox, kind="needs_reconnect", message="x")
    with django_capture_on_commit_callbacks(execute=True):
        actions.disconnect_mailbox(mailbox, delete_mail=False)
    mailbox.refresh_from_db()
    assert bytes(mailbox.credentials) == b"" and mailbox.access_token_expires_at is None
    assert mailbox.status == MailAccount.Status.DISABLED
    assert Message.objects.filter(mailbox=mailbox).count() == 1
    assert not AdminAlert.objects.filter(resolved_at__isnull=True).exists()
    assert signals_seen[-1] == (
        "disconnected",
        {"sender": MailAccount, "mailbox_id": mailbox.pk, "deleted": False},
    )
    with pytest.raises(vault.NeedsReconnect):
        vault.get_access_token(mailbox, "https://outlook.office.com")


def test_disconnect_can_delete_everything(
    db: None, member: User, signals_seen: list, django_capture_on_commit_callbacks: Any
) -> None:
    mailbox = _oauth_mailbox()
    conversation = Conversation.objects.create(mailbox=mailbox, subject="Hi")
    Message.objects.create(mailbox=mailbox, conversation=conversation)
    actions.grant_mailbox_access(mailbox, member)
    pk = mailbox.pk
    with django_capture_on_commit_callbacks(execute=True):
        actions.disconnect_mailbox(mailbox, delete_mail=True)
    assert not MailAccount.objects.filter(pk=pk).exists()
    assert not Message.objects.exists() and not MailboxAccess.objects.exists()
    assert signals_seen[-1] == (
        "disconnected",
        {"sender": MailAccount, "mailbox_id": pk, "deleted": True},
    )


def test_grant_and_revoke_access(db: None, member: User) -> None:
    mailbox = _oauth_mailbox()
    assert actions.grant_mailbox_access(mailbox, member)
    assert not actions.grant_mailbox_access(mailbox, member)  # idempotent
    assert MailboxAccess.objects.filter(mailbox=mailbox, user=member).count() == 1
    assert actions.revoke_mailbox_access(mailbox, member)
    assert not actions.revoke_mailbox_access(mailbox, member)


def test_mark_needs_reconnect_is_once_per_incident(
    db: None, admin_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    User.objects.create_user(email="inactive-admin@example.com", role="admin", is_active=False)
    mailbox = _oauth_mailbox()
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.mark_needs_reconnect(mailbox, "Gone.", code="AADSTS50173")
        assert not actions.mark_needs_reconnect(mailbox, "Gone again.")
    assert AdminAlert.objects.count() == 1
    (message,) = mail.outbox
    assert message.to == ["admin@example.com"]
    assert "Gone. (AADSTS50173)" in message.body
    # A reconnect closes the incident; the next failure is a new one.
    _oauth_mailbox()
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.mark_needs_reconnect(mailbox, "Gone a second time.")
    assert AdminAlert.objects.filter(resolved_at__isnull=True).count() == 1
    assert len(mail.outbox) == 2


def test_reconnect_replaces_every_stored_secret(db: None) -> None:
    mailbox = _oauth_mailbox()
    actions.connect_microsoft_mailbox(
        mailbox.address,
        method=MailAccount.Method.MICROSOFT_IMAP,
        tenant_id="t-2",
        refresh_token="rt-new",
    )
    mailbox.refresh_from_db()
    assert vault.read_credentials(mailbox) == {"refresh_token": "rt-new"}
    assert mailbox.tenant_id == "t-2" and mailbox.access_token_expires_at is None


def test_password_mailbox_alert_asks_for_the_password(
    db: None, admin_user: User, mailbox: MailAccount, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        actions.mark_needs_reconnect(
            mailbox, "The server rejected the password.", status_reason="password_rejected"
        )
    (message,) = mail.outbox
    assert "Enter its password again here" in message.body
    assert f"/mailboxes/{mailbox.pk}/reconnect/" in message.body
    mailbox.refresh_from_db()
    assert mailbox.status_reason == "password_rejected"
    # Entering the password again (the reconnect page leads to this form) closes the incident.
    actions.add_password_mailbox(
        mailbox.address, imap_host="127.0.0.1", imap_port=993, username="u", password="new-pw"
    )
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.ACTIVE
    assert not AdminAlert.objects.filter(resolved_at__isnull=True).exists()
