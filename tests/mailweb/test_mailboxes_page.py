"""The Mailboxes page: state, progress, access, adding IMAP mailboxes, disconnecting."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts import actions, vault
from accounts.models import MailAccount, MailboxAccess, User
from mailweb.models import Conversation, Folder, Message, UnfetchableMessage
from mailweb.views.mailboxes import format_duration
from tests.fakes.dovecot import DovecotServer
from tests.fakes.fixtures import PasswordAccount


@pytest.fixture
def admin_client(client: Client, admin_user: User) -> Client:
    client.force_login(admin_user)
    return client


def _inbox_in_first_sync(
    mailbox: MailAccount, *, on_server: int, synced: int, seconds: int
) -> None:
    """An INBOX whose initial sync started ``seconds`` ago and has stored ``synced`` messages."""
    Folder.objects.create(
        mailbox=mailbox,
        name="INBOX",
        sync_enabled=True,
        server_count=on_server,
        synced_count=synced,
        initial_sync_started_at=timezone.now() - timedelta(seconds=seconds),
    )


def test_lists_mailboxes_with_state_and_progress(
    admin_client: Client, member_with_access: User, mailbox: MailAccount
) -> None:
    mailbox.last_sync_at = timezone.now() - timedelta(minutes=3)
    mailbox.save()
    _inbox_in_first_sync(mailbox, on_server=400, synced=100, seconds=60)
    broken = MailAccount.objects.create(
        address="sales@contoso.example",
        method=MailAccount.Method.MICROSOFT_IMAP,
        is_shared=True,
        delegate_address="ada@contoso.example",
        status=MailAccount.Status.NEEDS_RECONNECT,
        last_error="Microsoft revoked Mailweb's access to this mailbox. (AADSTS50173)",
    )
    html = admin_client.get("/mailboxes/").content.decode()
    assert "support@example.com" in html and "IMAP with password" in html
    assert "3\xa0minutes ago" in html
    assert '<progress max="400" value="100"' in html
    assert "100 of 400 messages" in html and "about 3 minutes left" in html
    assert member_with_access.email in html  # who has access
    assert "sales@contoso.example" in html and "shared mailbox" in html
    assert "reached as ada@contoso.example" in html
    assert "Needs reconnect" in html and "AADSTS50173" in html
    assert f'href="/mailboxes/{broken.pk}/reconnect/"' in html
    assert f'href="/mailboxes/{mailbox.pk}/disconnect/"' in html
    assert "css/mailboxes.css" in html


def test_large_counts_are_grouped_and_a_fresh_sync_reads_just_now(
    admin_client: Client, mailbox: MailAccount
) -> None:
    mailbox.last_sync_at = timezone.now() - timedelta(seconds=20)
    mailbox.save()
    _inbox_in_first_sync(mailbox, on_server=24_500, synced=11_250, seconds=95)
    html = admin_client.get("/mailboxes/").content.decode()
    assert "11,250 of 24,500 messages" in html
    assert '<progress max="24500" value="11250"' in html  # the bar keeps plain numbers
    assert "just now" in html and "0\xa0minutes" not in html


def test_messages_the_server_would_not_send_are_shown(
    admin_client: Client, mailbox: MailAccount
) -> None:
    Folder.objects.create(
        mailbox=mailbox, name="INBOX", sync_enabled=True, server_count=10, synced_count=9,
        uidvalidity=7, initial_sync_done_at=timezone.now(),
    )  # fmt: skip
    UnfetchableMessage.objects.create(
        folder=Folder.objects.get(mailbox=mailbox),
        uidvalidity=7,
        uid=4,
        error="Internal error occurred. <Refer to server log>",
        next_attempt_at=timezone.now() + timedelta(minutes=15),
    )
    html = admin_client.get("/mailboxes/").content.decode()
    assert "9 of 10 messages · up to date" in html
    assert "the server would not send 1 message (Internal error occurred. &lt;Refer" in html
    assert "Mailweb asks for it again on later syncs" in html


def test_empty_and_unconfigured_states(admin_client: Client, settings: Any) -> None:
    settings.MICROSOFT_CLIENT_ID = ""
    html = admin_client.get("/mailboxes/").content.decode()
    assert "No mailboxes yet" in html
    assert "MICROSOFT_CLIENT_ID" in html


def test_grant_and_revoke_access(admin_client: Client, mailbox: MailAccount, member: User) -> None:
    html = admin_client.get("/mailboxes/").content.decode()
    assert f'<option value="{member.pk}">' in html
    response = admin_client.post(f"/mailboxes/{mailbox.pk}/access/", {"user": member.pk})
    assert response.status_code == 302
    assert MailboxAccess.objects.filter(mailbox=mailbox, user=member).exists()
    assert f'<option value="{member.pk}">' not in admin_client.get("/mailboxes/").content.decode()
    response = admin_client.post(f"/mailboxes/{mailbox.pk}/access/{member.pk}/revoke/")
    assert response.status_code == 302
    assert not MailboxAccess.objects.filter(mailbox=mailbox, user=member).exists()


def test_grant_rejects_admins_and_unknown_users(
    admin_client: Client, mailbox: MailAccount, admin_user: User
) -> None:
    admin_client.post(f"/mailboxes/{mailbox.pk}/access/", {"user": admin_user.pk})
    admin_client.post(f"/mailboxes/{mailbox.pk}/access/", {"user": 999999})
    assert not MailboxAccess.objects.exists()


@pytest.fixture
def server_user(password_account: PasswordAccount) -> dict[str, Any]:
    """The form's fields for a user both servers know; the username is left to default."""
    return {**password_account.settings(), "address": password_account.username, "username": ""}


@pytest.mark.dovecot
def test_add_imap_mailbox_form(admin_client: Client, server_user: dict[str, Any]) -> None:
    address, password = server_user["address"], server_user["password"]
    page = admin_client.get(f"/mailboxes/add-imap/?address={address}")
    assert page.status_code == 200 and f'value="{address}"'.encode() in page.content
    assert b"Save without signing in first" not in page.content  # offered only after a failure
    response = admin_client.post("/mailboxes/add-imap/", server_user, follow=True)
    assert response.redirect_chain[-1][0] == "/mailboxes/"
    assert f"Added {address}. Signed in successfully;" in response.content.decode()
    mailbox = MailAccount.objects.get(address=address)
    assert mailbox.username == address and mailbox.imap_host == "127.0.0.1"
    assert vault.get_password(mailbox) == password
    assert password.encode() not in admin_client.get("/mailboxes/").content


@pytest.mark.dovecot
def test_settings_that_do_not_work_are_shown_and_not_saved(
    admin_client: Client, server_user: dict[str, Any], dovecot: DovecotServer
) -> None:
    wrong = {**server_user, "password": "not-the-password"}
    response = admin_client.post("/mailboxes/add-imap/", wrong)
    html = response.content.decode()
    assert response.status_code == 200 and "These settings did not work" in html
    assert "rejected the login for " + server_user["address"] in html
    assert "not-the-password" not in html  # the password is never sent back
    assert "Save without signing in first" in html
    plain_port = {**server_user, "imap_port": dovecot.plain_port}  # TLS asked of a plain port
    html = admin_client.post("/mailboxes/add-imap/", plain_port).content.decode()
    assert "does not speak TLS on this port" in html
    assert not MailAccount.objects.exists()
    # The server may only be down for now: the settings can be saved anyway.
    response = admin_client.post(
        "/mailboxes/add-imap/", {**plain_port, "save_unchecked": "on"}, follow=True
    )
    html = response.content.decode()
    assert f"Added {server_user['address']}. Its settings were not checked;" in html
    assert MailAccount.objects.get().imap_port == dovecot.plain_port


@pytest.mark.dovecot
def test_change_password_starts_from_the_saved_settings(
    admin_client: Client, password_account: PasswordAccount
) -> None:
    """A new password must not mean typing every setting again, nor losing one left empty."""
    saved = password_account.settings()
    mailbox = actions.add_password_mailbox(
        "Team+Support@example.net", display_name="Team", **{**saved, "password": "old"}
    )
    MailAccount.objects.filter(pk=mailbox.pk).update(status=MailAccount.Status.NEEDS_RECONNECT)
    card = admin_client.get("/mailboxes/").content.decode()
    assert 'class="button-primary" href="/mailboxes/add-imap/?address=Team%2BSupport%40' in card
    assert ">Sign-in settings</a>" in card
    reconnect = admin_client.get(f"/mailboxes/{mailbox.pk}/reconnect/")
    page = admin_client.get(reconnect["Location"])
    html = page.content.decode()
    assert "Sign-in settings of Team+Support@example.net" in html
    address_input = re.search(r'<input[^>]*name="address"[^>]*>', html)
    assert address_input and "readonly" in address_input.group(0), address_input
    form = page.context["form"]
    expected = {**saved, "address": mailbox.address, "display_name": "Team"}
    del expected["password"]
    assert {name: form[name].value() for name in expected} == expected
    assert form["password"].value() is None  # never shown again
    # What the browser posts back: the saved values, and the new password typed in.
    posted = {name: form[name].value() for name in form.fields if name != "save_unchecked"}
    response = admin_client.post("/mailboxes/add-imap/", {**posted, "password": saved["password"]})
    assert response.status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.ACTIVE
    assert (mailbox.smtp_host, mailbox.smtp_port) == ("127.0.0.1", password_account.smtp.port)
    assert mailbox.username == password_account.username
    assert vault.get_password(mailbox) == saved["password"]


def test_add_imap_mailbox_with_an_explicit_encryption_mode(admin_client: Client) -> None:
    """Implicit TLS on a port other than 993, and STARTTLS on 465, as some hosts need."""
    form = {
        "address": "tls@example.org",
        "imap_host": "imap.example.org",
        "imap_port": 10993,
        "password": "s3cret-password",
        "smtp_port": 587,
        "save_unchecked": "on",  # no such server: this test is about what is stored
    }
    admin_client.post("/mailboxes/add-imap/", form)
    assert MailAccount.objects.get(address="tls@example.org").imap_security == "starttls"
    response = admin_client.post(
        "/mailboxes/add-imap/",
        {**form, "imap_security": "ssl", "smtp_port": 465, "smtp_security": "starttls"},
    )
    assert response.status_code == 302
    mailbox = MailAccount.objects.get(address="tls@example.org")
    assert (mailbox.imap_security, mailbox.smtp_security) == ("ssl", "starttls")
    bad = admin_client.post("/mailboxes/add-imap/", {**form, "imap_security": "plain"})
    assert bad.status_code == 200 and b"Select a valid choice" in bad.content


def test_add_imap_rejects_bad_input_and_microsoft_addresses(admin_client: Client) -> None:
    actions.connect_microsoft_mailbox(
        "ms@contoso.example", method="microsoft_imap", tenant_id="t", refresh_token="r"
    )
    response = admin_client.post(
        "/mailboxes/add-imap/",
        {
            "address": "MS@contoso.example",
            "imap_host": "imap.example.org",
            "imap_port": 993,
            "password": "pw",
            "smtp_port": 587,
        },
    )
    assert response.status_code == 200 and b"connected with Microsoft" in response.content
    assert b"did not work" not in response.content  # refused before signing in anywhere
    bad = admin_client.post(
        "/mailboxes/add-imap/",
        {"address": "x@y.org", "imap_host": "bad host/", "imap_port": 70000, "password": "p"},
    )
    assert bad.status_code == 200 and b"Enter a host name" in bad.content
    assert MailAccount.objects.count() == 1


def test_disconnect_confirmation_keeps_mail(admin_client: Client, mailbox: MailAccount) -> None:
    vault.store_password(mailbox, "pw-to-forget")
    conversation = Conversation.objects.create(mailbox=mailbox, subject="Hello")
    Message.objects.create(mailbox=mailbox, conversation=conversation)
    page = admin_client.get(f"/mailboxes/{mailbox.pk}/disconnect/")
    assert page.status_code == 200
    assert b"1 message in 1 conversation" in page.content
    response = admin_client.post(f"/mailboxes/{mailbox.pk}/disconnect/", {"mail": "keep"})
    assert response.status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.DISABLED and bytes(mailbox.credentials) == b""
    assert Message.objects.filter(mailbox=mailbox).exists()
    assert b"Disabled" in admin_client.get("/mailboxes/").content


def test_disconnect_and_delete_needs_the_address_typed(
    admin_client: Client, mailbox: MailAccount
) -> None:
    conversation = Conversation.objects.create(mailbox=mailbox, subject="Hello")
    Message.objects.create(mailbox=mailbox, conversation=conversation)
    refused = admin_client.post(f"/mailboxes/{mailbox.pk}/disconnect/", {"mail": "delete"})
    assert refused.status_code == 200 and b"Type the address exactly" in refused.content
    assert MailAccount.objects.filter(pk=mailbox.pk).exists()
    response = admin_client.post(
        f"/mailboxes/{mailbox.pk}/disconnect/",
        {"mail": "delete", "confirm_address": "SUPPORT@example.com"},
    )
    assert response.status_code == 302
    assert not MailAccount.objects.filter(pk=mailbox.pk).exists()
    assert not Message.objects.exists()


def test_reconnect_of_a_password_mailbox_goes_to_the_password_form(
    admin_client: Client, mailbox: MailAccount
) -> None:
    response = admin_client.get(f"/mailboxes/{mailbox.pk}/reconnect/")
    assert response.status_code == 302
    assert response["Location"] == "/mailboxes/add-imap/?address=support%40example.com"


def test_unknown_mailbox_is_404(admin_client: Client, db: None) -> None:
    assert admin_client.get("/mailboxes/999999/disconnect/").status_code == 404
    assert admin_client.get("/mailboxes/999999/reconnect/").status_code == 404


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (20, "less than a minute"), (60, "about 1 minute"), (5400, "about 1.5 hours")],
)
def test_format_duration(seconds: int | None, text: str) -> None:
    assert format_duration(seconds) == text
