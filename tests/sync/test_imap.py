"""The IMAP layer: connecting (TLS, XOAUTH2, passwords), capabilities, folders, UID sets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import MailAccount
from sync.errors import ERROR, RECONNECT, TRANSIENT, classify
from sync.imap import ImapLoginRejected, ImapUnavailable, imap_session, open_imap
from sync.imap.fetch import compress_uids, parse_uid_set, search_uids, uid_fetch
from sync.imap.folders import list_server_folders, role_from_name, wanted_folders
from sync.imap.refusals import busy_backoff
from sync.imap.session import prepare_session, select
from tests.fakes.dovecot import DovecotServer
from tests.fakes.idp import FakeIdentityProvider
from tests.sync.conftest import ImapAccount
from tests.sync.mail import message


def test_uid_sets_round_trip() -> None:
    assert compress_uids([9, 1, 2, 3, 7, 10, 3]) == "1:3,7,9:10"
    assert compress_uids([5]) == "5"
    assert parse_uid_set("1:3,7,10:9") == [1, 2, 3, 7, 9, 10]
    with pytest.raises(ValueError):
        compress_uids([])


def test_roles_from_names_and_defaults() -> None:
    assert role_from_name("Sent Items", "/") == "sent"
    assert role_from_name("INBOX.Trash", ".") == "trash"
    assert role_from_name("Junk Email", "/") == "junk"
    assert role_from_name("Projects/Archive", "/") is None  # nested: not the Archive
    assert role_from_name("inbox", "/") == "inbox"
    assert wanted_folders([]) == ({"inbox", "sent", "archive"}, set())
    assert wanted_folders(["Inbox", "Customers/VIP"]) == ({"inbox"}, {"customers/vip"})


@pytest.mark.dovecot
def test_capabilities_and_folders_on_both_servers(
    imap_account: Callable[..., ImapAccount],
    dovecot: DovecotServer,
    dovecot_exchange_like: DovecotServer,
) -> None:
    # Password logins: both servers at once (Microsoft mailboxes share one IMAP host setting).
    full = imap_account(dovecot, password=True)
    exchange = imap_account(dovecot_exchange_like, password=True)
    with imap_session(full.mailbox) as client:
        caps = prepare_session(client)
        assert caps.condstore and caps.qresync and caps.special_use
        assert caps.idle and caps.move and caps.uidplus
        assert select(client, "INBOX").highestmodseq is not None
        roles = {f.name: f.role for f in list_server_folders(client, caps)}
        assert roles["Sent"] == "sent" and roles["Trash"] == "trash"
    with imap_session(exchange.mailbox) as client:
        caps = prepare_session(client)
        assert not (caps.condstore or caps.qresync or caps.special_use)
        assert caps.idle and caps.move and caps.uidplus
        assert select(client, "INBOX").highestmodseq is None
        roles = {f.name: f.role for f in list_server_folders(client, caps)}
        assert roles["Sent Items"] == "sent" and roles["Deleted Items"] == "trash"
        assert roles["Junk Email"] == "junk" and roles["Outbox"] == "other"


@pytest.mark.dovecot
def test_search_and_fetch_quirks(imap_account: Callable[..., ImapAccount]) -> None:
    account = imap_account()
    uids = [account.append(message(f"M{n}")) for n in range(3)]
    with imap_session(account.mailbox) as client:
        prepare_session(client)
        status = select(client, "INBOX")
        # "UID n:*" matches the last message even when n is beyond it: filtered out.
        assert search_uids(client, uids[-1] + 5) == []
        assert search_uids(client, uids[1]) == uids[1:]
        everything = uid_fetch(client, "1:*", ["FLAGS", "RFC822.SIZE"])
        assert sorted(everything.messages) == uids
        assert all(m.size and m.size > 100 for m in everything.messages.values())
        modseq = status.highestmodseq
    account.server.expunge(account.address, "INBOX", uids[0])
    with imap_session(account.mailbox) as client:
        prepare_session(client)
        select(client, "INBOX")
        changes = uid_fetch(client, "1:*", ["FLAGS"], [f"CHANGEDSINCE {modseq}", "VANISHED"])
        assert changes.vanished == [uids[0]]


@pytest.mark.dovecot
def test_login_failures_are_classified(
    imap_account: Callable[..., ImapAccount], idp: FakeIdentityProvider, admin_user: Any
) -> None:
    from accounts import vault
    from sync.imap.connection import OUTLOOK_RESOURCE

    oauth = imap_account()
    # A token for somebody else: XOAUTH2 names the mailbox's own address, so Dovecot refuses.
    vault.store_oauth_tokens(
        oauth.mailbox,
        "unused",
        access_token=idp.mint_access_token("someone-else@contoso.example"),
        resource=OUTLOOK_RESOURCE,
        expires_at=9_999_999_999,
    )
    with pytest.raises(ImapLoginRejected) as rejected:
        open_imap(oauth.mailbox)
    assert rejected.value.oauth
    failure = classify(rejected.value)
    assert failure.kind == ERROR and "IMAP is enabled" in failure.message
    assert "Bearer" not in failure.message

    password = imap_account(password=True)
    vault.store_password(password.mailbox, "wrong")
    with pytest.raises(ImapLoginRejected) as wrong:
        open_imap(password.mailbox)
    failure = classify(wrong.value)
    assert failure.kind == RECONNECT
    assert "[AUTHENTICATIONFAILED] Authentication failed." in failure.message
    assert "b'" not in failure.message
    failure.record(password.mailbox.pk)
    assert password.refresh().status == MailAccount.Status.NEEDS_RECONNECT


@pytest.mark.dovecot
def test_tls_is_verified(
    imap_account: Callable[..., ImapAccount], monkeypatch: pytest.MonkeyPatch
) -> None:
    account = imap_account()
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(ImapUnavailable, match="certificate") as untrusted:
        open_imap(account.mailbox)
    # Retrying cannot fix a certificate: the mailbox shows the error at once.
    failure = classify(untrusted.value)
    assert failure.kind == ERROR and "Check the mailbox's server settings" in failure.message
    failure.record(account.mailbox.pk)
    assert account.refresh().status == MailAccount.Status.ERROR
    assert classify(ImapUnavailable("x")).kind == TRANSIENT


@pytest.mark.dovecot
def test_starttls_password_mailbox(
    imap_account: Callable[..., ImapAccount], dovecot: DovecotServer
) -> None:
    account = imap_account(password=True)
    assert dovecot.plain_port is not None
    MailAccount.objects.filter(pk=account.mailbox.pk).update(
        imap_port=dovecot.plain_port, imap_security="starttls"
    )
    with imap_session(account.refresh()) as client:
        assert client._starttls_done
        assert select(client, "INBOX").exists == 0


@pytest.mark.dovecot
def test_the_wrong_encryption_mode_for_the_port_is_named(
    imap_account: Callable[..., ImapAccount], dovecot: DovecotServer
) -> None:
    account = imap_account(password=True)
    mailbox = MailAccount.objects.filter(pk=account.mailbox.pk)
    mailbox.update(imap_port=dovecot.port, imap_security="starttls")  # the implicit-TLS port
    with pytest.raises(ImapUnavailable, match=r"timed out .*set the encryption to TLS") as slow:
        open_imap(account.refresh(), timeout=1)
    assert classify(slow.value).kind == TRANSIENT  # a timeout may also be the network
    mailbox.update(imap_port=dovecot.plain_port, imap_security="ssl")
    with pytest.raises(
        ImapUnavailable, match=r"does not speak TLS on this port.*STARTTLS"
    ) as plain:
        open_imap(account.refresh())
    assert classify(plain.value).kind == ERROR  # the same answer on every retry


@pytest.mark.parametrize(
    ("answer", "wait"),
    [
        ("NO Request is throttled. Suggested Backoff Time: 299910 milliseconds", 299.91),
        (
            "command: FETCH => BAD Request is throttled. "
            "Suggested Backoff Time: 89117 milliseconds",
            89.117,
        ),
        ("NO [UNAVAILABLE] Mailbox is temporarily locked", 60.0),
        ("NO Server Unavailable. 15", 60.0),
        ("NO [INUSE] Mailbox in use", 60.0),
        ("FETCH failed: Internal error occurred. Refer to server log for more information.", None),
        ("NO [CORRUPTION] Message is damaged", None),
    ],
)
def test_busy_answers_are_told_from_refused_messages(answer: str, wait: float | None) -> None:
    assert busy_backoff(answer) == wait
