"""insert_new stores exactly what Django's own bulk_create stores, on every database.

On PostgreSQL it streams rows by COPY with ids taken from the sequence first; these tests
compare its rows, read back, with bulk_create's for the same objects, including values that
need Django's conversion.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from django.db.models import Model

from accounts.models import MailAccount
from mailweb.bulk_insert import insert_new
from mailweb.models import Attachment, Conversation, Message
from tests.mailweb.factories import inbox_folder

pytestmark = pytest.mark.django_db

M = TypeVar("M", bound=Model)

UNCOMPARED = {"id", "created_at", "conversation", "message"}


def _stored(model: type[Model], pk: int) -> dict[str, Any]:
    row = model._default_manager.filter(pk=pk).values().get()
    return {key: value for key, value in row.items() if key not in UNCOMPARED}


def _both_ways(model: type[M], make: Callable[[], M]) -> tuple[M, M]:
    """The same object inserted by insert_new and by bulk_create."""
    ours, django = make(), make()
    insert_new(model, [ours])
    model._default_manager.bulk_create([django])
    assert ours.pk is not None and not ours._state.adding
    return ours, django


def _conversation(mailbox: MailAccount, **fields: Any) -> Conversation:
    return Conversation.objects.create(mailbox=mailbox, subject="Thread", **fields)


def test_message_with_every_kind_of_value(mailbox: MailAccount) -> None:
    folder = inbox_folder(mailbox)
    conversation = _conversation(mailbox)

    def make() -> Message:
        return Message(
            mailbox=mailbox,
            folder=folder,
            conversation=conversation,
            uidvalidity=2**40,
            uid=None,  # unique per folder when set
            message_id="<a@example.org>",
            references=["<r1@example.org>", "<ünï@example.org>"],
            subject="Ünïcode, tabs\tand\nnew lines, back\\slash",
            from_name="Zoë",
            from_address="zoe@example.org",
            to=[["Ann", "ann@example.org"]],
            cc=[],
            reply_to=[["", "r@example.org"]],
            addresses_text="Zoë zoe@example.org Ann ann@example.org",
            date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            received_at=datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
            size=12345,
            is_seen=True,
            is_flagged=False,
            modseq=None,
            text_body="Body\r\nwith {braces} and 'quotes' and \"double\"",
            html_body="<p>Body</p>",
            raw_sha256="ab" * 32,
            direction=Message.Direction.OUTGOING,  # an enum member, not a plain str
        )

    ours, django = _both_ways(Message, make)
    stored = _stored(Message, ours.pk)
    assert stored == _stored(Message, django.pk)
    assert stored["conversation_id"] == conversation.pk
    assert stored["direction"] == "out"
    assert stored["modseq"] is None and stored["uid"] is None
    assert stored["uidvalidity"] == 2**40
    assert stored["references"] == ["<r1@example.org>", "<ünï@example.org>"]


def test_values_of_another_type_are_converted_as_django_does(mailbox: MailAccount) -> None:
    conversation = _conversation(mailbox)

    def make() -> Message:
        return Message(
            mailbox_id=str(mailbox.pk),  # type: ignore[misc]
            folder=None,
            conversation=conversation,
            uid="42",
            size=12.0,
            is_seen=1,
            subject=7,
            date=None,
            received_at=datetime(2026, 1, 2, tzinfo=UTC),
        )

    ours, django = _both_ways(Message, make)
    stored = _stored(Message, ours.pk)
    assert stored == _stored(Message, django.pk)
    assert (stored["uid"], stored["size"], stored["is_seen"], stored["subject"]) == (
        42,
        12,
        True,
        "7",
    )
    assert stored["folder_id"] is None and stored["date"] is None


def test_a_related_object_saved_after_assignment_gives_its_id(mailbox: MailAccount) -> None:
    conversation = Conversation(mailbox=mailbox, subject="Saved later")
    message = Message(mailbox=mailbox, conversation=conversation, subject="Hi")
    insert_new(Conversation, [conversation])
    insert_new(Message, [message])
    assert Message.objects.get(pk=message.pk).conversation_id == conversation.pk


def test_conversations_and_attachments(mailbox: MailAccount) -> None:
    def conversation() -> Conversation:
        return Conversation(
            mailbox=mailbox,
            subject="Hello",
            normalized_subject="hello",
            status=Conversation.Status.PENDING,
            message_count=3,
            has_attachments=True,
            last_message_at=datetime(2026, 5, 1, tzinfo=UTC),
            last_activity_at=datetime(2026, 5, 2, tzinfo=UTC),
        )

    ours, django = _both_ways(Conversation, conversation)
    assert _stored(Conversation, ours.pk) == _stored(Conversation, django.pk)
    assert Conversation.objects.get(pk=ours.pk).created_at is not None  # auto_now_add

    message = Message.objects.create(mailbox=mailbox, conversation=ours, subject="Files")

    def attachment() -> Attachment:
        return Attachment(
            message=message,
            filename="report.pdf",
            content_type="application/pdf",
            size=100,
            is_inline=False,
            sha256="cd" * 32,
        )

    ours_attachment, django_attachment = _both_ways(Attachment, attachment)
    assert _stored(Attachment, ours_attachment.pk) == _stored(Attachment, django_attachment.pk)
    assert Attachment.objects.get(pk=ours_attachment.pk).message_id == message.pk


def test_many_rows_get_distinct_ids_in_order(mailbox: MailAccount) -> None:
    conversations = [Conversation(mailbox=mailbox, subject=f"#{n}") for n in range(300)]
    insert_new(Conversation, conversations)
    ids = [c.pk for c in conversations]
    assert len(set(ids)) == 300
    stored = dict(Conversation.objects.filter(pk__in=ids).values_list("pk", "subject"))
    assert [stored[pk] for pk in ids] == [f"#{n}" for n in range(300)]
