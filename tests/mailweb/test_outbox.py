"""Replying: the outbox row first, then SMTP (XOAUTH2 or password) from a retrying task, then the
sent copy in the conversation and in the Sent folder."""

from __future__ import annotations

import email
import email.policy
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts import vault
from accounts.models import MailAccount, MailboxAccess, User
from mailweb.models import Conversation, Message, OutgoingMessage
from sync import outbox, outbox_tasks, smtp
from tests.conftest import wait_for
from tests.fakes.ca import TestCA
from tests.fakes.idp import FakeIdentityProvider
from tests.fakes.imap_proxy import ImapProxy
from tests.fakes.smtp import FakeSMTPServer
from tests.mailweb.factories import conversation_with, deliver

OUTLOOK = "https://outlook.office.com"
SCOPES = [f"{OUTLOOK}/IMAP.AccessAsUser.All", f"{OUTLOOK}/SMTP.Send"]


@pytest.fixture
def smtp_server(test_ca: TestCA, idp: FakeIdentityProvider) -> Iterator[FakeSMTPServer]:
    with FakeSMTPServer(test_ca, idp) as server:
        yield server


def oauth_mailbox(idp: FakeIdentityProvider, **fields: Any) -> MailAccount:
    address = f"team-{uuid.uuid4().hex[:8]}@example.com"
    idp.add_user(address)
    mailbox = MailAccount.objects.create(
        address=address,
        display_name="Team Support",
        method=MailAccount.Method.MICROSOFT_IMAP,
        signature="Team Support\nexample.com",
        **fields,
    )
    vault.store_oauth_tokens(
        mailbox,
        "refresh-token-not-used",
        access_token=idp.mint_access_token(address, SCOPES),
        resource=OUTLOOK,
        expires_at=time.time() + 3600,
    )
    return mailbox


@pytest.fixture
def ms_mailbox(
    db: None,
    idp: FakeIdentityProvider,
    smtp_server: FakeSMTPServer,
    settings: Any,
    trust_test_ca: Path,
) -> MailAccount:
    settings.MICROSOFT_SMTP_HOST = smtp_server.host
    settings.MAILWEB_SMTP_FILES_SENT = True
    return oauth_mailbox(idp)


@pytest.fixture
def writer(ms_mailbox: MailAccount) -> User:
    person = User.objects.create_user(
        email="wendy@example.com", password="correct horse battery", name="Wendy Writer"
    )
    MailboxAccess.objects.create(user=person, mailbox=ms_mailbox)
    return person


@pytest.fixture
def eager_send(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Run the send task inline (with its retries) when a view enqueues it."""
    sent: list[int] = []

    def delay(outgoing_id: int) -> None:
        sent.append(outgoing_id)
        outbox_tasks.send_outgoing.apply(args=[outgoing_id])

    monkeypatch.setattr(outbox_tasks.send_outgoing, "delay", delay)
    monkeypatch.setattr(outbox_tasks, "backoff", lambda attempt, retry_after=None: 0)
    return sent


def queued_reply(
    mailbox: MailAccount, message_id: str, *, subject: str, body: str
) -> OutgoingMessage:
    """A reply to x@example.org, queued in a new conversation of ``mailbox``."""
    return OutgoingMessage.objects.create(
        mailbox=mailbox,
        conversation=conversation_with(mailbox, 1),
        message_id=message_id,
        to=[["", "x@example.org"]],
        subject=subject,
        body_text=body,
    )


def _reply(
    client: Client, conversation: Conversation, capture: Any, **fields: str
) -> OutgoingMessage:
    newest = conversation.messages.order_by("-received_at").first()
    assert newest is not None
    data = {
        "mode": "reply",
        "message": str(newest.pk),
        "to": newest.from_address,
        "cc": "",
        "bcc": "",
        "subject": f"Re: {conversation.subject}",
        "body": "Thanks, we are on it.\n\n-- \nTeam Support",
        **fields,
    }
    with capture(execute=True):
        client.post(f"/c/{conversation.pk}/send", data)
    return OutgoingMessage.objects.latest("id")


@pytest.mark.django_db
def test_reply_is_saved_with_threading_headers_before_sending(
    client: Client,
    writer: User,
    ms_mailbox: MailAccount,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    queued: list[int] = []
    monkeypatch.setattr(outbox_tasks.send_outgoing, "delay", queued.append)
    conversation = conversation_with(ms_mailbox, 2, subject="Broken login")
    client.force_login(writer)
    outgoing = _reply(client, conversation, django_capture_on_commit_callbacks)
    newest = conversation.messages.order_by("-received_at").first()
    assert newest is not None
    assert queued == [outgoing.pk]
    assert outgoing.status == OutgoingMessage.Status.QUEUED
    assert outgoing.message_id.endswith("@example.com") and "<" not in outgoing.message_id
    assert outgoing.in_reply_to == newest.message_id
    assert outgoing.references[-1] == newest.message_id
    assert outgoing.references[0] == conversation.messages.order_by("received_at")[0].message_id
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert "Queued…" in page
    assert "Wendy Writer replied to" in page


@pytest.mark.django_db
def test_bad_recipient_keeps_the_draft(
    client: Client, writer: User, ms_mailbox: MailAccount, django_capture_on_commit_callbacks: Any
) -> None:
    conversation = conversation_with(ms_mailbox, 1)
    client.force_login(writer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/c/{conversation.pk}/send",
            {"mode": "reply", "to": "not an address", "subject": "Re", "body": "My careful text"},
        )
    body = response.content.decode()
    assert "is not an email address" in body
    assert "My careful text" in body
    assert not OutgoingMessage.objects.exists()


@pytest.mark.django_db
def test_sent_over_smtp_with_xoauth2_and_shown_in_the_conversation(
    client: Client,
    writer: User,
    ms_mailbox: MailAccount,
    smtp_server: FakeSMTPServer,
    eager_send: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    conversation = conversation_with(ms_mailbox, 1, subject="Where is my parcel")
    client.force_login(writer)
    outgoing = _reply(
        client,
        conversation,
        django_capture_on_commit_callbacks,
        cc="Boss <boss@example.org>",
        bcc="audit@example.org",
    )
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingMessage.Status.SENT, outgoing.last_error
    assert outgoing.attempts == 1 and outgoing.sent_at is not None
    assert [a[:2] for a in smtp_server.state.auth_attempts] == [("XOAUTH2", ms_mailbox.address)]
    assert smtp_server.state.auth_attempts[0][2] is True
    assert smtp_server.state.initial_response_lines == []  # response sent on its own line
    (received,) = smtp_server.messages
    assert received.mail_from == ms_mailbox.address
    assert sorted(received.rcpt_tos) == [
        "audit@example.org",
        "boss@example.org",
        "customer@example.org",
    ]
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["Message-ID"] == f"<{outgoing.message_id}>"
    assert parsed["In-Reply-To"] == f"<{outgoing.in_reply_to}>"
    assert parsed["From"] == f"Team Support <{ms_mailbox.address}>"
    assert parsed["Bcc"] is None
    assert "Thanks, we are on it." in parsed.get_content()
    # The exact bytes that were sent are the ones stored, and they joined the conversation.
    stored = Message.objects.get(message_id=outgoing.message_id)
    assert stored.conversation_id == conversation.pk
    assert stored.direction == Message.Direction.OUTGOING
    from mailweb.blobs import get_blob

    assert get_blob(stored.raw_sha256) == received.data
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert page.count(f'id="message-{stored.pk}"') == 1
    assert "Queued…" not in page and "Sending…" not in page
    # Running the task again sends nothing more.
    assert outbox.deliver(outgoing.pk).status == "sent"
    assert len(smtp_server.messages) == 1
    assert Message.objects.filter(message_id=outgoing.message_id).count() == 1


@pytest.mark.django_db
def test_forward_carries_the_attachments(
    client: Client,
    writer: User,
    ms_mailbox: MailAccount,
    smtp_server: FakeSMTPServer,
    eager_send: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    original = deliver(
        ms_mailbox, subject="Contract", attachments=[("contract.pdf", "application/pdf", b"%PDF-7")]
    )
    client.force_login(writer)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"/c/{original.conversation_id}/send",
            {
                "mode": "forward",
                "message": str(original.pk),
                "to": "legal@example.org",
                "subject": "Fwd: Contract",
                "body": "Please review.",
            },
        )
    (received,) = smtp_server.messages
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    names = [part.get_filename() for part in parsed.iter_attachments()]
    assert names == ["contract.pdf"]
    assert parsed["In-Reply-To"] is None
    stored = Message.objects.get(message_id=parsed["Message-ID"].strip("<>"))
    assert stored.conversation_id == original.conversation_id


@pytest.mark.django_db
def test_transient_failure_is_retried(
    client: Client,
    writer: User,
    ms_mailbox: MailAccount,
    smtp_server: FakeSMTPServer,
    eager_send: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    smtp_server.fail_next("451 4.3.0 Mail server temporarily rejected message", count=2)
    conversation = conversation_with(ms_mailbox, 1)
    client.force_login(writer)
    outgoing = _reply(client, conversation, django_capture_on_commit_callbacks)
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingMessage.Status.SENT
    assert outgoing.attempts == 3
    assert len(smtp_server.messages) == 1
    # Every attempt sent the same bytes.
    assert email.message_from_bytes(smtp_server.messages[0].data)["Message-ID"] == (
        f"<{outgoing.message_id}>"
    )


@pytest.mark.django_db
def test_permanent_failure_shows_the_reason_and_retry_works(
    client: Client,
    writer: User,
    ms_mailbox: MailAccount,
    smtp_server: FakeSMTPServer,
    eager_send: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    smtp_server.fail_next("554 5.6.0 Message rejected as spam")
    conversation = conversation_with(ms_mailbox, 1)
    client.force_login(writer)
    outgoing = _reply(client, conversation, django_capture_on_commit_callbacks)
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingMessage.Status.FAILED
    assert "554" in outgoing.last_error and "spam" in outgoing.last_error
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert "Sending failed: The SMTP server answered 554" in page
    assert f'action="/outbox/{outgoing.pk}/retry"' in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/outbox/{outgoing.pk}/retry")
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingMessage.Status.SENT
    assert len(smtp_server.messages) == 1
    assert "retried sending a reply" in client.get(f"/c/{conversation.pk}/").content.decode()


@pytest.mark.django_db
def test_expired_token_is_a_clear_failure(
    idp: FakeIdentityProvider, ms_mailbox: MailAccount, smtp_server: FakeSMTPServer
) -> None:
    # A token Exchange would refuse (wrong signing key) but that the vault still considers valid.
    from cryptography.hazmat.primitives.asymmetric import rsa

    forged = idp.mint_access_token(
        ms_mailbox.address,
        SCOPES,
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    vault.store_oauth_tokens(
        ms_mailbox, "rt", access_token=forged, resource=OUTLOOK, expires_at=time.time() + 3600
    )
    outgoing = queued_reply(ms_mailbox, "forged-token@example.com", subject="Hi", body="Hi")
    assert outbox.deliver(outgoing.pk).status == "failed"
    outgoing.refresh_from_db()
    assert "refused the credentials (535)" in outgoing.last_error
    assert smtp_server.state.auth_attempts[-1][2] is False
    assert "eyJ" not in outgoing.last_error  # never a token in an error


@pytest.mark.django_db
def test_password_mailbox_uses_smtp_login(
    smtp_server: FakeSMTPServer, trust_test_ca: Path, settings: Any
) -> None:
    settings.MAILWEB_SMTP_FILES_SENT = True
    mailbox = MailAccount.objects.create(
        address="plain@example.net",
        method=MailAccount.Method.IMAP_PASSWORD,
        imap_host="127.0.0.1",
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        username="plain@example.net",
    )
    vault.store_password(mailbox, "s3cret pass")
    smtp_server.add_password_user("plain@example.net", "s3cret pass")
    outgoing = queued_reply(mailbox, "plain-1@example.net", subject="Hi", body="Hello")
    assert outbox.deliver(outgoing.pk).status == "sent"
    assert smtp_server.state.auth_attempts[-1][1:] == ("plain@example.net", True)


@pytest.mark.django_db
def test_untrusted_certificate_is_refused(
    idp: FakeIdentityProvider, smtp_server: FakeSMTPServer, settings: Any, monkeypatch: Any
) -> None:
    settings.MICROSOFT_SMTP_HOST = smtp_server.host
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    mailbox = oauth_mailbox(idp)
    with pytest.raises(smtp.PermanentSendError, match="not trusted"):
        smtp.submit(mailbox, mailbox.address, ["x@example.org"], b"Subject: x\r\n\r\nx\r\n")
    assert smtp_server.messages == []


@pytest.mark.dovecot
@pytest.mark.django_db
def test_copy_is_appended_to_the_sent_folder(
    dovecot: Any,
    idp: FakeIdentityProvider,
    smtp_server: FakeSMTPServer,
    settings: Any,
    trust_test_ca: Path,
) -> None:
    settings.MICROSOFT_SMTP_HOST = smtp_server.host
    settings.MICROSOFT_IMAP_HOST = f"127.0.0.1:{dovecot.port}"
    mailbox = oauth_mailbox(idp)
    outgoing = queued_reply(
        mailbox, f"{uuid.uuid4().hex}@example.com", subject="Filed", body="Into Sent"
    )
    assert outbox.deliver(outgoing.pk).status == "sent"
    outgoing.refresh_from_db()
    assert outgoing.appended_to_sent, outgoing.last_error
    sent = dovecot.folder_name("\\Sent")
    with dovecot.admin(mailbox.address) as imap:
        imap.select_folder(sent)
        uids = imap.search(["HEADER", "Message-ID", outgoing.message_id])
        assert len(uids) == 1
        raw = imap.fetch(uids, ["BODY.PEEK[]", "FLAGS"])[uids[0]]
        assert b"\\Seen" in raw[b"FLAGS"]
        assert raw[b"BODY[]"] == smtp_server.messages[0].data
    # Idempotent: a second follow-up does not file a second copy.
    outbox.follow_up(outgoing)
    assert len(dovecot.uids(mailbox.address, sent)) == 1


@pytest.mark.dovecot
@pytest.mark.django_db
def test_a_sent_copy_cut_off_is_filed_by_a_later_attempt_without_sending_again(
    dovecot: Any,
    idp: FakeIdentityProvider,
    smtp_server: FakeSMTPServer,
    settings: Any,
    trust_test_ca: Path,
    test_ca: TestCA,
) -> None:
    """The connection breaks during the APPEND to Sent: the reply is sent and shown in its
    conversation at once, and the attempt reports a transient failure so the task files the
    copy later; that attempt files it once and sends nothing."""
    proxy = ImapProxy(test_ca, dovecot.port, pattern=rb"^\S+ APPEND ")
    settings.MICROSOFT_SMTP_HOST = smtp_server.host
    settings.MICROSOFT_IMAP_HOST = f"127.0.0.1:{proxy.port}"
    try:
        mailbox = oauth_mailbox(idp)
        outgoing = queued_reply(
            mailbox, f"{uuid.uuid4().hex}@example.com", subject="Cut", body="Into Sent, later"
        )
        with pytest.raises(smtp.TransientSendError, match="not copied to the Sent folder"):
            outbox.deliver(outgoing.pk)
        outgoing.refresh_from_db()
        assert outgoing.status == OutgoingMessage.Status.SENT and not outgoing.appended_to_sent
        assert Message.objects.filter(message_id=outgoing.message_id).count() == 1
        assert len(smtp_server.messages) == 1

        proxy.refusing = False
        assert outbox.deliver(outgoing.pk).status == "sent"
        outgoing.refresh_from_db()
        assert outgoing.appended_to_sent and outgoing.last_error == ""
    finally:
        proxy.close()
    assert len(smtp_server.messages) == 1  # sent once
    assert len(dovecot.uids(mailbox.address, dovecot.folder_name("\\Sent"))) == 1
    assert Message.objects.filter(message_id=outgoing.message_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_real_worker_sends_the_reply(
    idp: FakeIdentityProvider,
    smtp_server: FakeSMTPServer,
    trust_test_ca: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    request: pytest.FixtureRequest,
) -> None:
    # The worker is a separate process: it reads these from its environment.
    monkeypatch.setenv("MICROSOFT_SMTP_HOST", smtp_server.host)
    settings.MICROSOFT_SMTP_HOST = smtp_server.host
    request.getfixturevalue("celery_worker")
    mailbox = oauth_mailbox(idp)
    person = User.objects.create_user(email="rita@example.com", password="x" * 12, name="Rita")
    MailboxAccess.objects.create(user=person, mailbox=mailbox)
    conversation = conversation_with(mailbox, 1, subject="Worker test")
    client = Client()
    client.force_login(person)
    newest = conversation.messages.get()
    client.post(
        f"/c/{conversation.pk}/send",
        {
            "mode": "reply",
            "message": newest.pk,
            "to": newest.from_address,
            "subject": "Re: Worker test",
            "body": "From the worker",
        },
    )
    outgoing = OutgoingMessage.objects.get()
    assert wait_for(lambda: OutgoingMessage.objects.get(pk=outgoing.pk).status == "sent", 30)
    assert len(smtp_server.messages) == 1
    assert wait_for(lambda: Message.objects.filter(message_id=outgoing.message_id).exists(), 10)
