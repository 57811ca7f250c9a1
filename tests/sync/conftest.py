"""Fixtures for the sync tests: mailboxes on the Dovecot stand-ins, and a real Celery worker.

``imap_account`` creates a fresh user on a Dovecot (the normal one or the Exchange-like one)
and a Mailweb mailbox for it: Microsoft IMAP with a cached access token minted by the identity
provider (so no refresh is needed), or a password mailbox added through
``accounts.actions.add_password_mailbox``. Mailweb reaches Dovecot over verified TLS with the
test CA (``SSL_CERT_FILE``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from accounts import vault
from accounts.models import MailAccount
from mailweb.models import Folder, Message
from sync.imap.connection import OUTLOOK_RESOURCE
from tests.fakes.dovecot import DovecotServer
from tests.fakes.idp import FakeIdentityProvider


@dataclass
class ImapAccount:
    """A Dovecot user and the Mailweb mailbox that syncs it."""

    server: DovecotServer
    address: str
    mailbox: MailAccount

    def append(self, raw: bytes, folder: str = "INBOX", flags: tuple[bytes, ...] = ()) -> int:
        """APPEND with INTERNALDATE = the Date header, as a delivery would have set it."""
        return self.server.append(self.address, folder, raw, flags=flags, msg_time=_date(raw))

    def append_many(self, raws: list[bytes], folder: str = "INBOX") -> None:
        """APPEND many messages over one connection (MULTIAPPEND, 100 at a time, if offered)."""
        with self.server.admin(self.address) as imap:
            if not imap.has_capability("MULTIAPPEND"):  # the Exchange-like server
                for raw in raws:
                    imap.append(folder, raw, msg_time=_date(raw))
                return
            for start in range(0, len(raws), 100):
                chunk = raws[start : start + 100]
                imap.multiappend(
                    folder,
                    [{"msg": raw, "date": _date(raw)} if _date(raw) else raw for raw in chunk],
                )

    def folder_name(self, special_use: str) -> str:
        return self.server.folder_name(special_use)

    def server_uids(self, folder: str = "INBOX") -> list[int]:
        return self.server.uids(self.address, folder)

    def stored_uids(self, folder: str = "INBOX") -> list[int]:
        row = Folder.objects.get(mailbox=self.mailbox, name=folder)
        uids = Message.objects.filter(folder=row, uidvalidity=row.uidvalidity).values_list(
            "uid", flat=True
        )
        return sorted(uid for uid in uids if uid is not None)

    def refresh(self) -> MailAccount:
        self.mailbox.refresh_from_db()
        return self.mailbox


def _date(raw: bytes) -> datetime | None:
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"date:"):
            try:
                return parsedate_to_datetime(line[5:].decode().strip())
            except (TypeError, ValueError):
                return None
    return None


@pytest.fixture
def imap_env(monkeypatch: pytest.MonkeyPatch, trust_test_ca: Path) -> Path:
    """Environment shared with worker subprocesses: trust the test CA."""
    return trust_test_ca


@pytest.fixture
def imap_account(
    db: None,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    imap_env: Path,
    idp: FakeIdentityProvider,
    dovecot: DovecotServer,
) -> Callable[..., ImapAccount]:
    """A factory: ``imap_account(server=None, password=False)`` -> ImapAccount."""

    def make(server: DovecotServer | None = None, *, password: bool = False) -> ImapAccount:
        server = server or dovecot
        address = f"box-{uuid.uuid4().hex[:10]}@contoso.example"
        if password:
            from accounts.actions import add_password_mailbox

            secret = "pw-" + uuid.uuid4().hex
            server.add_password_user(address, secret)
            mailbox = add_password_mailbox(
                address,
                imap_host="127.0.0.1",
                imap_port=server.port,
                imap_security="ssl",
                username=address,
                password=secret,
            )
        else:
            idp.add_user(address)
            host = f"127.0.0.1:{server.port}"
            settings.MICROSOFT_IMAP_HOST = host
            monkeypatch.setenv("MICROSOFT_IMAP_HOST", host)
            mailbox = MailAccount.objects.create(
                address=address, method=MailAccount.Method.MICROSOFT_IMAP
            )
            vault.store_oauth_tokens(
                mailbox,
                "refresh-token-not-used",
                access_token=idp.mint_access_token(address, lifetime=4 * 3600),
                resource=OUTLOOK_RESOURCE,
                expires_at=time.time() + 4 * 3600,
            )
        with server.admin(address):
            pass  # creates the Maildir and the auto folders
        return ImapAccount(server=server, address=address, mailbox=mailbox)

    return make
