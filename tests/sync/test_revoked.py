"""A grant revoked in the middle of an initial sync: the vault's refresh classifies it, the
mailbox ends up "needs reconnect" with what was synced kept consistent, and after a reconnect
the sync finishes where it stopped."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from accounts import vault
from accounts.models import AdminAlert, MailAccount, User
from mailweb.models import Folder, Message
from sync.engine import run_sync
from sync.errors import RECONNECT, TRANSIENT
from sync.folder_sync import FolderSync
from sync.imap.connection import OUTLOOK_RESOURCE
from tests.accounts.entra_setup import Entra, entra  # noqa: F401  (fixture)
from tests.fakes.dovecot import DovecotServer
from tests.sync.mail import message, new_id

pytestmark = [pytest.mark.dovecot, pytest.mark.django_db]


def uids(mailbox: MailAccount) -> list[int]:
    found = Message.objects.filter(mailbox=mailbox).values_list("uid", flat=True)
    return sorted(uid for uid in found if uid is not None)


def test_revoked_grant_mid_sync_needs_reconnect(
    client: Client,
    admin_user: User,
    entra: Entra,  # noqa: F811
    dovecot: DovecotServer,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.MICROSOFT_IMAP_HOST = f"127.0.0.1:{dovecot.port}"
    settings.MAILWEB_SYNC_BATCH_SIZE = 5
    client.force_login(admin_user)
    email = entra.new_user("revoked")
    with dovecot.admin(email):
        pass
    for index in range(30):
        dovecot.append(email, "INBOX", message(f"History {index}", message_id=new_id()))
    assert entra.connect(client, email).status_code == 302
    mailbox = MailAccount.objects.get(address=email)

    commits = {"n": 0}
    original = FolderSync._commit

    def commit_then_revoke(self: FolderSync, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        commits["n"] += 1
        if commits["n"] == 2:
            # Time passes: the access token is about to expire, the user's sessions are revoked
            # by an admin, and the server drops the connection (as Exchange does).
            refresh = vault.read_credentials(mailbox)["refresh_token"]
            vault.store_oauth_tokens(
                mailbox,
                refresh,
                access_token=entra.idp.mint_access_token(email, lifetime=60),
                resource=OUTLOOK_RESOURCE,
                expires_at=time.time() + 60,
            )
            entra.idp.revoke(email)
            self.ctx.client.shutdown()

    monkeypatch.setattr(FolderSync, "_commit", commit_then_revoke)
    first = run_sync(mailbox.pk)
    assert first.failure is not None and first.failure.kind == TRANSIENT  # the dropped connection
    stored = uids(mailbox)
    # Whole batches only: the two committed before the drop, plus any the fetching thread had
    # read before it (they are whole and are committed in order).
    assert 10 <= len(stored) < 30 and len(stored) % 5 == 0
    inbox = Folder.objects.get(mailbox=mailbox, name="INBOX")
    assert inbox.lowest_synced_uid == min(stored)
    assert stored == list(range(min(stored), 31))  # exactly the newest ones, no gap
    before_reconnect = len(stored)

    retry = run_sync(mailbox.pk)  # what the task's retry does
    assert retry.failure is not None and retry.failure.kind == RECONNECT
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.NEEDS_RECONNECT
    assert AdminAlert.objects.filter(mailbox=mailbox, resolved_at__isnull=True).exists()
    assert "reconnect" in run_sync(mailbox.pk).skipped
    assert Message.objects.filter(mailbox=mailbox).count() == before_reconnect

    # A person reconnects: the sync resumes from its cursor and completes.
    assert entra.connect(client, email).status_code == 302
    done = run_sync(mailbox.pk)
    assert done.failure is None and done.complete and done.new == 30 - before_reconnect
    assert uids(mailbox) == list(range(1, 31))
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.ACTIVE
