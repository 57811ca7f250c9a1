"""Ingestion: batches thread exactly like one-by-one ingestion, and the store's edge cases."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import Q

from accounts.models import MailAccount
from mailweb.blobs import get_blob
from mailweb.models import Conversation, Folder, Message, Note, OutgoingMessage
from sync.errors import ERROR, TRANSIENT, classify
from sync.ingest import (
    IncomingMessage,
    ProviderKey,
    ServerState,
    ingest_batch,
    ingest_message,
)
from sync.mime import parse_message
from sync.store import remove_messages
from sync.threads import find_conversation
from tests.sync.mail import BASE_TIME, MALFORMED, message, new_id, thread

pytestmark = pytest.mark.django_db


def make_mailbox(address: str) -> tuple[MailAccount, Folder, Folder]:
    mailbox = MailAccount.objects.create(address=address, method="imap_password")
    inbox = Folder.objects.create(mailbox=mailbox, name="INBOX", role="inbox", uidvalidity=1)
    sent = Folder.objects.create(mailbox=mailbox, name="Sent", role="sent", uidvalidity=1)
    return mailbox, inbox, sent


def item(raw: bytes, folder: Folder, uid: int, **state: Any) -> IncomingMessage:
    return IncomingMessage(
        raw=raw,
        key=ProviderKey(folder=folder, uidvalidity=1, uid=uid),
        state=ServerState(**state),
    )


def shape(mailbox: MailAccount) -> set[tuple[Any, ...]]:
    """Conversations as (message ids, subject, count, snippet, last_message_at)."""
    out = set()
    for conversation in Conversation.objects.filter(mailbox=mailbox):
        ids = frozenset(conversation.messages.values_list("message_id", flat=True))
        out.add(
            (
                ids,
                conversation.subject,
                conversation.message_count,
                conversation.snippet,
                conversation.last_message_at,
                conversation.has_attachments,
            )
        )
    return out


def corpus() -> list[bytes]:
    """Newest first, as an initial sync sees it: replies before the messages they answer."""
    first = thread(4, "Refund for order 9")
    second = thread(3, "Login trouble", start=BASE_TIME + timedelta(days=2))
    attachment = message(
        "Invoice attached", message_id=new_id(), attachment=b"%PDF-1.4 fake", date=BASE_TIME
    )
    ordered = [*first, *second, attachment]
    return list(reversed(ordered))


def test_a_batch_threads_like_one_message_at_a_time() -> None:
    batch_box, batch_inbox, _ = make_mailbox("batch@example.com")
    single_box, single_inbox, _ = make_mailbox("single@example.com")
    raws = corpus()

    results = ingest_batch(
        batch_box, [item(raw, batch_inbox, uid) for uid, raw in enumerate(raws, 1)]
    )
    assert [created for _, created in results] == [True] * len(raws)
    for uid, raw in enumerate(raws, 1):
        ingest_message(single_box, raw, ProviderKey(folder=single_inbox, uidvalidity=1, uid=uid))

    assert shape(batch_box) == shape(single_box)
    subjects = sorted(c[1] for c in shape(batch_box))
    # Named after the oldest message, although a reply was stored first.
    assert subjects == ["Invoice attached", "Login trouble", "Refund for order 9"]
    login = Conversation.objects.get(mailbox=batch_box, subject="Login trouble")
    assert login.message_count == 3

    # Later, a reply whose client dropped the headers joins by subject (same participant).
    headerless = message(
        "Re: Login trouble",
        sender="Alice <alice@example.net>",
        date=BASE_TIME + timedelta(days=2, hours=9),
    )
    for box, folder in ((batch_box, batch_inbox), (single_box, single_inbox)):
        ingest_batch(box, [item(headerless, folder, 100)])
    assert shape(batch_box) == shape(single_box)
    login.refresh_from_db()
    assert login.message_count == 4


def test_replays_and_repeats_are_not_stored_twice() -> None:
    mailbox, inbox, _ = make_mailbox("replay@example.com")
    raw = message("Once")
    first, created = ingest_message(mailbox, raw, ProviderKey(folder=inbox, uidvalidity=1, uid=7))
    assert created
    again = ingest_batch(mailbox, [item(raw, inbox, 7), item(message("Two"), inbox, 8)] * 2)
    assert [c for _, c in again] == [False, True, False, False]
    assert again[0][0].pk == again[2][0].pk == first.pk
    assert again[1][0].pk == again[3][0].pk
    assert Message.objects.filter(mailbox=mailbox).count() == 2


def test_subject_fallback_is_guarded() -> None:
    mailbox, inbox, _ = make_mailbox("subjects@example.com")
    ingest_message(mailbox, message("Hello"), ProviderKey(folder=inbox, uidvalidity=1, uid=1))
    # Same subject and sender, not a reply: a new conversation (also when the case differs).
    ingest_message(mailbox, message("Hello"), ProviderKey(folder=inbox, uidvalidity=1, uid=4))
    ingest_message(mailbox, message("hello"), ProviderKey(folder=inbox, uidvalidity=1, uid=2))
    assert Conversation.objects.filter(mailbox=mailbox).count() == 3
    ingest_message(mailbox, message("Invoice 42"), ProviderKey(folder=inbox, uidvalidity=1, uid=3))
    stranger = parse_message(message("Re: Invoice 42", sender="Eve <eve@evil.example>"))
    assert find_conversation(mailbox, stranger, BASE_TIME) is None
    known = parse_message(message("Re: Invoice 42"))
    assert find_conversation(mailbox, known, BASE_TIME) is not None
    too_late = BASE_TIME + timedelta(days=90)
    assert find_conversation(mailbox, known, too_late) is None


def test_copies_do_not_reopen_but_new_replies_do() -> None:
    mailbox, inbox, sent = make_mailbox("reopen@example.com")
    root_id = new_id()
    root = message("Broken widget", message_id=root_id)
    stored, _ = ingest_message(mailbox, root, ProviderKey(folder=inbox, uidvalidity=1, uid=1))
    Conversation.objects.filter(pk=stored.conversation_id).update(status="closed")
    archive = Folder.objects.create(mailbox=mailbox, name="Archive", role="archive")
    ingest_message(mailbox, root, ProviderKey(folder=archive, uidvalidity=1, uid=1), reopen=True)
    conversation = Conversation.objects.get(pk=stored.conversation_id)
    assert conversation.status == "closed" and conversation.message_count == 2
    # Our own reply (Sent folder) does not reopen either.
    ours = message(
        "Re: Broken widget",
        sender="Support <reopen@example.com>",
        in_reply_to=root_id,
        date=BASE_TIME + timedelta(hours=1),
    )
    ours_row, _ = ingest_message(
        mailbox, ours, ProviderKey(folder=sent, uidvalidity=1, uid=1), reopen=True
    )
    assert ours_row.direction == Message.Direction.OUTGOING
    conversation.refresh_from_db()
    assert conversation.status == "closed"
    # Snoozed, and worked on later than the next reply arrived (a note moved its activity).
    later = BASE_TIME + timedelta(days=3)
    Conversation.objects.filter(pk=conversation.pk).update(
        status="snoozed", snoozed_until=later, last_activity_at=later
    )
    theirs = message("Re: Broken widget", in_reply_to=root_id, date=BASE_TIME + timedelta(hours=2))
    ingest_message(mailbox, theirs, ProviderKey(folder=inbox, uidvalidity=1, uid=2), reopen=True)
    conversation.refresh_from_db()
    assert conversation.status == "open" and conversation.message_count == 4
    assert conversation.snoozed_until is None
    assert conversation.last_activity_at == later  # never moved backwards
    assert conversation.last_message_at == BASE_TIME + timedelta(hours=2)
    assert conversation.subject == "Broken widget"


def test_removed_message_rejoins_a_kept_conversation(admin_user: Any) -> None:
    mailbox, inbox, _ = make_mailbox("tomb@example.com")
    raw = message("Where is it?", message_id=new_id())
    stored, _ = ingest_message(mailbox, raw, ProviderKey(folder=inbox, uidvalidity=1, uid=1))
    Note.objects.create(conversation=stored.conversation, author=admin_user, body="call back")
    assert remove_messages(mailbox, Q(pk=stored.pk)) == 1
    conversation = Conversation.objects.get(pk=stored.conversation_id)
    assert conversation.message_count == 0  # kept: the team wrote a note

    back, created = ingest_message(mailbox, raw, ProviderKey(folder=inbox, uidvalidity=1, uid=9))
    assert created and back.conversation_id == conversation.pk

    lonely = message("Nobody cares", message_id=new_id())
    row, _ = ingest_message(mailbox, lonely, ProviderKey(folder=inbox, uidvalidity=1, uid=10))
    remove_messages(mailbox, Q(pk=row.pk))
    assert not Conversation.objects.filter(pk=row.conversation_id).exists()


def test_server_copy_of_our_sent_reply_takes_over_the_keyless_row() -> None:
    """A sent reply is stored at once without a key; the copy the server files in Sent (as
    Exchange does) becomes that same row, so the conversation does not count it twice."""
    mailbox, inbox, sent = make_mailbox("desk@example.com")
    original, reply = thread(2)
    ingest_message(mailbox, original, ProviderKey(folder=inbox, uidvalidity=1, uid=1))
    ours, created = ingest_message(mailbox, reply, ProviderKey(), ServerState(seen=True))
    assert created and ours.folder is None
    [(copy, created)] = ingest_batch(mailbox, [item(reply, sent, 7, seen=True, flagged=True)])
    assert not created and copy.pk == ours.pk
    ours.refresh_from_db()
    assert (ours.folder, ours.uidvalidity, ours.uid, ours.is_flagged) == (sent, 1, 7, True)
    assert Message.objects.filter(mailbox=mailbox).count() == 2
    assert Conversation.objects.get(mailbox=mailbox).message_count == 2
    # Replaying the server copy finds it under its key now.
    again, created = ingest_message(mailbox, reply, ProviderKey(folder=sent, uidvalidity=1, uid=7))
    assert not created and again.pk == ours.pk


def test_outgoing_and_parse_errors() -> None:
    mailbox, inbox, _ = make_mailbox("out@example.com")
    OutgoingMessage.objects.create(mailbox=mailbox, message_id="sent-by-us@example.com", to=[])
    ours = message("Our reply", message_id="<sent-by-us@example.com>", sender="x@example.org")
    row, _ = ingest_message(mailbox, ours, ProviderKey(folder=inbox, uidvalidity=1, uid=1))
    assert row.direction == Message.Direction.OUTGOING
    broken, _ = ingest_message(mailbox, MALFORMED, ProviderKey(folder=inbox, uidvalidity=1, uid=2))
    assert broken.parse_error and broken.conversation.message_count == 1
    assert broken.raw_sha256 and broken.size == len(MALFORMED)


def _unpredictable(length: int, low: int, high: int, seed: int) -> str:
    """Characters PostgreSQL cannot compress: an index entry is as long as they are."""
    rng = random.Random(seed)
    return "".join(chr(rng.randint(low, high)) for _ in range(length))


def _raw_utf8(subject: str, message_id: str, in_reply_to: str = "") -> bytes:
    """8-bit UTF-8 headers, as RFC 6532 mail (and much spam) carries them, unencoded."""
    lines = [
        "From: Alice <alice@example.net>",
        "To: support@example.com",
        f"Subject: {subject}",
        f"Message-ID: <{message_id}>",
        *([f"In-Reply-To: <{in_reply_to}>"] if in_reply_to else []),
        "Date: Tue, 5 Mar 2024 10:15:00 +0000",
        "",
        "Body.",
    ]
    return "\r\n".join(lines).encode()


def test_long_non_ascii_headers_fit_the_indexes() -> None:
    """Subjects and ids of four-byte characters used to pass the character limits and
    overflow PostgreSQL's B-tree entries (2,704 bytes): the whole batch failed, on every
    retry, so the mailbox stopped syncing at that message."""
    mailbox, inbox, _ = make_mailbox("wide@example.com")
    subject = _unpredictable(1200, 0x20000, 0x2A6DF, 1)  # CJK extension B, 4 bytes each
    message_id = _unpredictable(1200, 0x4E00, 0x9FFF, 2) + "@example.cn"
    raws = [message("Before"), _raw_utf8(subject, message_id), message("After")]
    results = ingest_batch(mailbox, [item(raw, inbox, uid) for uid, raw in enumerate(raws, 1)])
    assert [created for _, created in results] == [True, True, True]
    wide = results[1][0]
    assert not wide.parse_error
    assert wide.subject == subject[:998]
    assert message_id.startswith(wide.message_id)  # decoded, not U+FFFD
    assert len(wide.message_id.encode()) <= 998
    conversation = wide.conversation
    assert len(conversation.normalized_subject.encode()) <= 2000
    # A reply without References still finds it by the (cut) normalized subject.
    reply = _raw_utf8("Re: " + subject, "reply@example.net").replace(
        b"From: Alice <alice@example.net>", b"From: support@example.com"
    )
    [(stored_reply, _)] = ingest_batch(mailbox, [item(reply, inbox, 4)])
    assert stored_reply.conversation_id == conversation.pk


def test_eight_bit_message_ids_are_decoded_not_blurred() -> None:
    """Ids of the same shape but different non-ASCII characters once read as the same
    string of U+FFFD, threading unrelated mail together."""
    mailbox, inbox, _ = make_mailbox("eai@example.com")
    first = _raw_utf8("Bestellung", "bücher-1@example.de")
    second = _raw_utf8("Anfrage", "bächer-1@example.de")
    reply = _raw_utf8("Antwort", "reply-2@example.de", in_reply_to="bücher-1@example.de")
    stored = ingest_batch(
        mailbox, [item(r, inbox, uid) for uid, r in enumerate([first, second, reply], 1)]
    )
    (one, _), (two, _), (three, _) = stored
    assert (one.message_id, two.message_id) == ("bücher-1@example.de", "bächer-1@example.de")
    assert one.conversation_id != two.conversation_id
    assert three.conversation_id == one.conversation_id


def test_a_row_the_database_refuses_is_stored_cut_down() -> None:
    """Defence in depth for limits the parser does not foresee: here an extra index on the
    subject (rolled back with the test) makes PostgreSQL refuse one message's row. That
    message is stored with short headers and its text, saying why; the rest of the batch,
    and the batches after it, are stored as usual."""
    mailbox, inbox, _ = make_mailbox("refused@example.com")
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX test_subject_idx ON mailweb_message (subject)")
    subject = _unpredictable(990, 0x20000, 0x2A6DF, 3)
    poison = _raw_utf8(subject, "poison@example.net")
    raws = [message("First"), poison, message("Third")]
    results = ingest_batch(mailbox, [item(raw, inbox, uid) for uid, raw in enumerate(raws, 1)])
    assert [created for _, created in results] == [True, True, True]
    first, refused, third = (row for row, _ in results)
    assert (first.subject, third.subject) == ("First", "Third")
    assert not first.parse_error and not third.parse_error
    assert "the database refused the message as parsed (index row size" in refused.parse_error
    assert subject.startswith(refused.subject) and len(refused.subject.encode()) <= 200
    assert refused.text_body.strip() == "Body." and refused.from_address == "alice@example.net"
    assert get_blob(refused.raw_sha256) == poison  # the original stays whole
    # A replay finds every row under its key; the next batch goes on as usual.
    again = ingest_batch(mailbox, [item(raw, inbox, uid) for uid, raw in enumerate(raws, 1)])
    assert [created for _, created in again] == [False, False, False]
    [(later, created)] = ingest_batch(mailbox, [item(message("Later"), inbox, 4)])
    assert created and not later.parse_error
    assert Message.objects.filter(mailbox=mailbox).count() == 4


def test_a_refused_value_that_escapes_is_an_error_not_an_outage() -> None:
    """Should even the cut-down row be refused, the mailbox shows PostgreSQL's reason, not
    "database unavailable" (which is retried quietly, for ever)."""
    with pytest.raises(DatabaseError) as refused, transaction.atomic(), connection.cursor() as c:
        c.execute("SELECT 'not a number'::integer")
    failure = classify(refused.value)
    assert failure.kind == ERROR
    assert failure.message.endswith('invalid input syntax for type integer: "not a number"')
    lost = OperationalError("server closed the connection unexpectedly")  # no SQLSTATE
    assert classify(lost).kind == TRANSIENT
