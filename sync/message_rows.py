"""Writing a threaded batch: new conversations, message rows (by COPY), attachments, and the
conversations the batch added to.

Called inside the transaction that also moves the folder's cursor (``sync.ingest``).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.utils import timezone

from accounts.models import MailAccount
from mailweb.bulk_insert import insert_new
from mailweb.models import Attachment, Conversation, Folder, Message, OutgoingMessage
from sync.incoming import PreparedMessage
from sync.mime import normalize_subject
from sync.threads import Thread, ThreadIndex


def store_rows(
    mailbox: MailAccount, prepared: Sequence[PreparedMessage], *, reopen: bool
) -> list[tuple[Message, bool]]:
    """Thread ``prepared`` in order and insert it; returns (row, True) for each, in order."""
    index = ThreadIndex(mailbox, prepared)
    outgoing_ids = _outgoing_message_ids(prepared)
    own_address = mailbox.address.lower()
    placed: list[tuple[PreparedMessage, Thread, bool]] = []
    for message in prepared:
        # A copy of a message the mailbox already has (moved or copied between folders, or
        # restored from Trash) is not new mail: it must not reopen a closed conversation.
        copy = index.is_copy(message)
        thread = index.find(message) or index.start_thread(message)
        outgoing = _is_outgoing(message, outgoing_ids, own_address)
        index.add(message, thread, reopen=reopen and not outgoing and not copy)
        placed.append((message, thread, outgoing))

    new_conversations = []
    for thread in index.new_threads:
        conversation = thread.conversation
        conversation.message_count = thread.count
        conversation.last_message_at = thread.last_message_at
        conversation.last_activity_at = thread.last_activity_at or timezone.now()
        conversation.snippet = thread.snippet or ""
        conversation.last_sender = thread.last_sender or ""
        conversation.has_attachments = thread.has_attachments
        if thread.subject is not None:
            conversation.subject = thread.subject[:998]
            conversation.normalized_subject = normalize_subject(thread.subject)
        new_conversations.append(conversation)
    Conversation.objects.bulk_create(new_conversations)

    messages = [_message_row(mailbox, m, thread, outgoing) for m, thread, outgoing in placed]
    insert_new(Message, messages)
    Attachment.objects.bulk_create(
        Attachment(
            message=row,
            filename=attachment.filename[:500],
            content_type=attachment.content_type[:255] or "application/octet-stream",
            size=attachment.size,
            content_id=attachment.content_id[:500],
            is_inline=attachment.is_inline,
            sha256=digest,
        )
        for row, (message, _, _) in zip(messages, placed, strict=True)
        for attachment, digest in zip(
            message.parsed.attachments, message.attachment_blobs, strict=True
        )
    )
    _update_stored_conversations([thread for thread in index.threads.values() if thread.members])
    return [(row, True) for row in messages]


def _message_row(
    mailbox: MailAccount, message: PreparedMessage, thread: Thread, outgoing: bool
) -> Message:
    parsed, key, state = message.parsed, message.item.key, message.item.state
    problems = "; ".join(p for p in (parsed.headers_error, parsed.parse_error) if p)
    return Message(
        mailbox=mailbox,
        folder=key.folder,
        conversation=thread.conversation,
        uidvalidity=key.uidvalidity,
        uid=key.uid,
        graph_id=key.graph_id,
        message_id=message.message_id,
        in_reply_to=parsed.in_reply_to[:998],
        references=parsed.references,
        subject=parsed.subject[:998],
        from_name=parsed.from_name[:300],
        from_address=parsed.from_address[:320],
        to=[list(pair) for pair in parsed.to],
        cc=[list(pair) for pair in parsed.cc],
        bcc=[list(pair) for pair in parsed.bcc],
        reply_to=[list(pair) for pair in parsed.reply_to],
        addresses_text=message.addresses_text,
        date=parsed.date,
        received_at=message.received_at,
        size=len(message.item.raw),
        is_seen=state.seen,
        is_flagged=state.flagged,
        is_answered=state.answered,
        is_draft=state.draft,
        modseq=state.modseq,
        snippet=parsed.snippet[:300],
        text_body=parsed.text,
        html_body=parsed.sanitized_html,
        has_attachments=parsed.has_attachments,
        raw_sha256=message.raw_sha256,
        parse_error=problems,
        direction=Message.Direction.OUTGOING if outgoing else Message.Direction.INCOMING,
    )


def _update_stored_conversations(threads: Sequence[Thread]) -> None:
    """Update every stored conversation the batch touched, in one round trip.

    The values are relative (counts added, times only moved forward, other fields replaced
    only when the batch has something newer), so concurrent team actions and increments
    between the read and this write are kept. Plain SQL: the ORM's expression machinery cost
    more than the statements themselves here.
    """
    if not threads:
        return
    params = []
    for thread in threads:
        received = connection.ops.adapt_datetimefield_value(
            max(member.received_at for member in thread.members)
        )
        has_snippet = thread.snippet is not None
        renamed = thread.subject is not None
        subject = thread.subject or ""
        params.append(
            [
                len(thread.members),
                *(received,) * 4,
                thread.snippet if has_snippet else None,
                (thread.last_sender or "") if has_snippet else None,
                thread.has_attachments,
                thread.reopened,
                Conversation.Status.OPEN.value,
                thread.reopened,
                subject[:998] if renamed else None,
                normalize_subject(subject) if renamed else None,
                thread.conversation.pk,
            ]
        )
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    sql = f"""
        UPDATE {Conversation._meta.db_table} SET
            message_count = message_count + %s,
            last_activity_at = {greatest}(COALESCE(last_activity_at, %s), %s),
            last_message_at = {greatest}(COALESCE(last_message_at, %s), %s),
            snippet = COALESCE(%s, snippet),
            last_sender = COALESCE(%s, last_sender),
            has_attachments = (has_attachments OR %s),
            status = CASE WHEN %s THEN %s ELSE status END,
            snoozed_until = CASE WHEN %s THEN NULL ELSE snoozed_until END,
            subject = COALESCE(%s, subject),
            normalized_subject = COALESCE(%s, normalized_subject)
        WHERE id = %s
    """  # noqa: S608 - the table name is ours, every value a parameter
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _outgoing_message_ids(prepared: Sequence[PreparedMessage]) -> set[str]:
    ids = {p.message_id for p in prepared if p.message_id}
    if not ids:
        return set()
    return set(
        OutgoingMessage.objects.filter(message_id__in=ids).values_list("message_id", flat=True)
    )


def _is_outgoing(message: PreparedMessage, outgoing_ids: set[str], own_address: str) -> bool:
    folder = message.item.key.folder
    if folder is not None and folder.role == Folder.Role.SENT:
        return True
    if message.message_id and message.message_id in outgoing_ids:
        return True
    return message.parsed.from_address == own_address
