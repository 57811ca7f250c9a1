"""Tokens never reach logs, exception messages, pages, the admin site or a database dump."""

import logging
import os
import subprocess
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from accounts import vault
from accounts.microsoft import OUTLOOK_RESOURCE
from accounts.models import MailAccount, User
from tests.accounts.entra_setup import Entra


def _secrets(mailbox: MailAccount) -> list[str]:
    document = vault.read_credentials(MailAccount.objects.get(pk=mailbox.pk))
    tokens = [document["refresh_token"]]
    tokens += [entry["token"] for entry in document.get("access_tokens", {}).values()]
    return tokens


def _fragments(secrets: list[str]) -> list[str]:
    """Each secret whole and as slices, so a truncated copy is caught too."""
    out = []
    for secret in secrets:
        out += [secret, secret[:40], secret[-40:], secret[len(secret) // 2 : len(secret) // 2 + 40]]
    return out


def test_full_lifecycle_logs_no_token(
    client: Client, admin_user: User, entra: Entra, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.force_login(admin_user)
    email = entra.new_user("logs")
    entra.idp.set_access_token_lifetime(60)
    start = client.post("/mailboxes/connect/microsoft/", {"method": "microsoft_imap"})
    reply = entra.authorize(start, email)
    seen = [reply["code"]]
    assert client.get("/oauth/microsoft/callback/", reply).status_code == 302
    mailbox = MailAccount.objects.get(address=email)
    seen += _secrets(mailbox)
    seen.append(vault.get_access_token(mailbox, OUTLOOK_RESOURCE))  # a refresh
    seen += _secrets(mailbox)
    entra.idp.inject(500)
    entra.idp.inject(429, retry_after=30)
    with pytest.raises(vault.TokenUnavailable) as transient:
        vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    entra.idp.reset()
    entra.idp.set_access_token_lifetime(60)
    entra.idp.revoke(email)
    vault.clear_backoff(mailbox)
    with pytest.raises(vault.NeedsReconnect) as revoked:
        vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    logged = "\n".join(
        [caplog.text]
        + [str(r.args) for r in caplog.records]
        + [r.exc_text or "" for r in caplog.records]
    )
    assert "refreshed the https://outlook.office.com access token" in logged  # logging works
    assert "needs reconnect" in logged
    raised = f"{transient.value!s} {revoked.value!s} {revoked.value!r}"
    for fragment in _fragments(seen):
        assert fragment not in logged
        assert fragment not in raised


def test_pages_and_admin_show_no_token(client: Client, admin_user: User, entra: Entra) -> None:
    client.force_login(admin_user)
    email = entra.new_user("pages")
    entra.connect(client, email)
    mailbox = MailAccount.objects.get(address=email)
    secrets = _fragments(_secrets(mailbox))
    pages = [
        "/mailboxes/",
        f"/mailboxes/{mailbox.pk}/reconnect/",
        f"/mailboxes/{mailbox.pk}/disconnect/",
        f"/admin/accounts/mailaccount/{mailbox.pk}/change/",
        "/admin/accounts/mailaccount/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        for fragment in secrets:
            assert fragment not in body, url
    change = client.get(f"/admin/accounts/mailaccount/{mailbox.pk}/change/").content.decode()
    assert 'name="credentials"' not in change
    assert "token" not in repr(mailbox).lower() and "1.AUEA" not in repr(mailbox)


@pytest.mark.django_db(transaction=True)
def test_database_dump_holds_no_token(client: Client, entra: Entra) -> None:
    admin = User.objects.create_superuser(email="dump-admin@example.com", password="x" * 12)
    client.force_login(admin)
    email = entra.new_user("dump")
    entra.idp.set_access_token_lifetime(60)
    entra.connect(client, email)
    mailbox = MailAccount.objects.get(address=email)
    vault.get_access_token(mailbox, OUTLOOK_RESOURCE)  # a rotated refresh token too
    secrets = _secrets(mailbox)
    db: dict[str, Any] = django_settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("pg_dump needs PostgreSQL")
    env = {**os.environ, "PGPASSWORD": str(db.get("PASSWORD") or "")}
    dump = subprocess.run(
        [
            "pg_dump",
            "--no-owner",
            "-h",
            str(db["HOST"] or "127.0.0.1"),
            "-p",
            str(db["PORT"] or 5432),
            "-U",
            str(db["USER"]),
            str(db["NAME"]),
        ],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    assert email in dump  # the dump really holds the mailbox row
    for fragment in _fragments(secrets):
        assert fragment not in dump
