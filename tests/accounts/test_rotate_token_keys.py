"""manage.py rotate_token_keys: re-encrypt under the newest key, idempotently."""

from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from accounts import actions, crypto, vault
from accounts.models import MailAccount


def _run() -> str:
    out = StringIO()
    call_command("rotate_token_keys", stdout=out, stderr=StringIO())
    return out.getvalue()


def test_rotation_with_two_keys(db: None, settings: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MAILWEB_TOKEN_KEYS = [old]
    microsoft, _ = actions.connect_microsoft_mailbox(
        "a@contoso.example",
        method=MailAccount.Method.MICROSOFT_IMAP,
        tenant_id="t",
        refresh_token="refresh-secret",
    )
    password = actions.add_password_mailbox(
        "b@example.org", imap_host="imap", imap_port=993, username="b", password="pw-secret"
    )
    MailAccount.objects.create(address="c@example.org", method="imap_password")  # no secrets

    settings.MAILWEB_TOKEN_KEYS = [new, old]
    assert "Re-encrypted 2 mailboxes; 0 already under the newest key; 0 unreadable." in _run()
    assert "Re-encrypted 0 mailboxes; 2 already under the newest key" in _run()  # idempotent

    settings.MAILWEB_TOKEN_KEYS = [new]  # the old key can go now
    microsoft.refresh_from_db()
    password.refresh_from_db()
    assert vault.read_credentials(microsoft)["refresh_token"] == "refresh-secret"
    assert vault.get_password(password) == "pw-secret"
    assert crypto.is_current(bytes(microsoft.credentials))


def test_unreadable_credentials_are_reported(db: None, settings: Any) -> None:
    settings.MAILWEB_TOKEN_KEYS = [Fernet.generate_key().decode()]
    actions.add_password_mailbox(
        "lost@example.org", imap_host="imap", imap_port=993, username="l", password="pw"
    )
    settings.MAILWEB_TOKEN_KEYS = [Fernet.generate_key().decode()]
    err = StringIO()
    with pytest.raises(CommandError, match="1 mailbox"):
        call_command("rotate_token_keys", stdout=StringIO(), stderr=err)
    assert "lost@example.org" in err.getvalue()
