"""Management commands: syncnow, addmailbox, import_mbox, idle --check."""

from __future__ import annotations

import mailbox as stdlib_mailbox
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import vault
from accounts.models import MailAccount
from mailweb.actions import record_heartbeat
from mailweb.blobs import get_blob
from mailweb.models import Conversation, Message
from tests.fakes.fixtures import PasswordAccount
from tests.sync.conftest import ImapAccount
from tests.sync.mail import message, new_id, thread

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


@pytest.mark.dovecot
def test_syncnow(imap_account: Callable[..., ImapAccount]) -> None:
    account = imap_account()
    account.append(message("One"))
    account.append(message("Two"))
    output = run("syncnow", account.address.upper())
    assert f"{account.address}: 2 new" in output
    assert Message.objects.filter(mailbox=account.mailbox).count() == 2
    assert "0 new" in run("syncnow")
    with pytest.raises(CommandError, match="no mailbox"):
        run("syncnow", "nobody@example.com")


@pytest.mark.dovecot
def test_syncnow_reports_failures(imap_account: Callable[..., ImapAccount]) -> None:
    account = imap_account(password=True)
    vault.store_password(account.mailbox, "wrong password")
    with pytest.raises(CommandError, match="sync failed"):
        run("syncnow", account.address)
    assert account.refresh().status == MailAccount.Status.NEEDS_RECONNECT


def addmailbox(address: str, account: PasswordAccount, secret: Path, *extra: str) -> list[str]:
    """``addmailbox`` for ``account``'s servers (IMAP over TLS) with the password in ``secret``."""
    return [
        "addmailbox",
        address,
        "--imap-host",
        f"127.0.0.1:{account.dovecot.port}",
        "--imap-security",
        "ssl",
        "--username",
        account.username,
        "--password-file",
        str(secret),
        *extra,
    ]


@pytest.mark.dovecot
def test_addmailbox_checks_the_settings_then_syncs(
    password_account: PasswordAccount, tmp_path: Path
) -> None:
    account = password_account
    account.dovecot.append(account.username, "INBOX", message("Hello script"))
    secret = tmp_path / "password"
    secret.write_text(account.password + "\n")
    command = addmailbox(account.username, account, secret, "--smtp-host", account.smtp.host)
    output = run(*command)
    attempts = account.smtp.state.auth_attempts
    assert [(user, ok) for _, user, ok in attempts] == [(account.username, True)]
    assert f"Added {account.username}" in output
    mailbox = MailAccount.objects.get(address=account.username)
    assert (mailbox.method, mailbox.imap_port, mailbox.smtp_port) == (
        "imap_password",
        account.dovecot.port,
        account.smtp.port,
    )
    assert mailbox.username == account.username
    assert vault.get_password(mailbox) == account.password
    assert "1 new" in run("syncnow", account.username)

    # With the SMTP server gone, the check says so and saves nothing, unless told not to.
    account.smtp.stop()
    other = addmailbox("other@example.com", account, secret, "--smtp-host", account.smtp.host)
    with pytest.raises(CommandError, match=r"nothing was saved:\n  SMTP server: Cannot connect"):
        run(*other)
    assert not MailAccount.objects.filter(address="other@example.com").exists()
    assert "Added other@example.com" in run(*other, "--no-check")

    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(CommandError, match="empty"):
        run("addmailbox", "x@example.com", "--imap-host", "h", "--password-file", str(empty))


@pytest.mark.dovecot
def test_addmailbox_refuses_a_password_the_server_refuses(
    password_account: PasswordAccount, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("wrong\n")
    expected = f"login: .*rejected the login for {password_account.username}"
    with pytest.raises(CommandError, match=expected):
        run(*addmailbox("typo@example.com", password_account, secret))
    assert not MailAccount.objects.exists()


@pytest.mark.dovecot
def test_addmailbox_again_keeps_what_it_is_not_told(
    password_account: PasswordAccount, tmp_path: Path
) -> None:
    """Rotating a password is --imap-host and --password-file; the rest stays as saved."""
    account = password_account
    secret = tmp_path / "password"
    secret.write_text(account.password)
    address = "rotate@example.com"
    run(*addmailbox(address, account, secret, "--smtp-host", account.smtp.host))
    # Dovecot's TLS port is not 993, so a mode left out would fall back to STARTTLS (a timeout).
    rotate = ["addmailbox", address, "--imap-host", f"127.0.0.1:{account.dovecot.port}"]
    assert f"Added {address}" in run(*rotate, "--password-file", str(secret))
    mailbox = MailAccount.objects.get(address=address)
    assert (mailbox.username, mailbox.imap_security) == (account.username, "ssl")
    assert (mailbox.smtp_host, mailbox.smtp_port) == ("127.0.0.1", account.smtp.port)
    # Said explicitly, it changes: '' removes the SMTP server.
    run(*rotate, "--imap-security", "ssl", "--password-file", str(secret), "--smtp-host", "")
    assert MailAccount.objects.get(address=address).smtp_host == ""


def test_import_mbox_and_maildir(tmp_path: Path) -> None:
    box = MailAccount.objects.create(address="import@example.com", method="imap_password")
    path = tmp_path / "archive.mbox"
    mbox = stdlib_mailbox.mbox(str(path))
    conversation = thread(3, "Imported thread")
    for index, raw in enumerate(conversation):
        entry = stdlib_mailbox.mboxMessage(raw.replace(b"\r\n", b"\n"))
        if index == 0:
            entry.set_flags("RO")
        if index == 1:
            entry.set_flags("AF")  # answered and flagged: written as X-Status
        mbox.add(entry)
    mbox.flush()
    output = run("import_mbox", str(path), "--mailbox", "import@example.com")
    assert "3 messages read: 3 imported, 0 already present" in output
    assert Conversation.objects.get(mailbox=box).message_count == 3
    first = Message.objects.get(mailbox=box, subject="Imported thread")
    assert first.is_seen and first.folder is None
    second = Message.objects.get(
        mailbox=box, subject="Re: Imported thread", in_reply_to__in=[first.message_id]
    )
    assert (second.is_seen, second.is_flagged, second.is_answered) == (False, True, True)
    assert b"\r\nStatus:" not in get_blob(first.raw_sha256)  # mbox bookkeeping dropped
    again = run("import_mbox", str(path), "--mailbox", "import@example.com")
    assert "0 imported, 3 already present" in again

    maildir = stdlib_mailbox.Maildir(str(tmp_path / "Maildir"))
    flagged = stdlib_mailbox.MaildirMessage(message("Flagged one", message_id=new_id()))
    flagged.set_flags("FS")
    flagged.set_subdir("cur")
    maildir.add(flagged)
    maildir.add(stdlib_mailbox.MaildirMessage(message("Unread one", message_id=new_id())))
    output = run("import_mbox", str(tmp_path / "Maildir"), "--mailbox", "import@example.com")
    assert "2 imported" in output
    row = Message.objects.get(mailbox=box, subject="Flagged one")
    assert row.is_flagged and row.is_seen
    unread = Message.objects.get(mailbox=box, subject="Unread one")  # in new/, without flags
    assert not (unread.is_seen or unread.is_flagged)

    with pytest.raises(CommandError, match="no mailbox"):
        run("import_mbox", str(path), "--mailbox", "missing@example.com")
    with pytest.raises(CommandError, match="not a Maildir"):
        run("import_mbox", str(tmp_path), "--mailbox", "import@example.com")


def test_idle_health_check() -> None:
    with pytest.raises(CommandError, match="no recent heartbeat"):
        run("idle", "--check")
    record_heartbeat("idle")
    assert "idle: ok" in run("idle", "--check")


def test_progress_bar_draws_counts_rate_and_eta() -> None:
    from sync.folder_sync import Progress
    from sync.management.commands.syncnow import _Bar

    out = StringIO()

    class Out:
        def write(self, text: str, ending: str = "\n") -> None:
            out.write(text + ending)

        def flush(self) -> None:
            pass

    bar = _Bar(Out(), "box@example.com")
    bar.update(Progress("INBOX", 1_000, 24_500))
    bar.first = (bar.first[0] - 100.0, 1_000) if bar.first else None  # 100 seconds ago
    bar.update(Progress("INBOX", 12_250, 24_500))
    bar.finish()
    text = out.getvalue()
    assert "box@example.com INBOX" in text and "12,250/24,500" in text
    # 11,250 messages in 100 s: 112 msg/s, and 12,250 to go take 1:49.
    assert "112 msg/s ETA 1:49" in text and "#" * 15 in text


def test_time_left_reads_like_a_clock() -> None:
    from sync.management.commands.syncnow import _clock

    assert [_clock(s) for s in (0.4, 45, 725, 3723)] == ["0:00", "0:45", "12:05", "1:02:03"]
