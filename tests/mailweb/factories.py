"""Mail for tests: real MIME built with the email package and stored through sync.ingest, so
views see exactly what a synced message looks like."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from django.utils import timezone

from accounts.models import MailAccount
from mailweb.models import Conversation, Folder, Message
from sync.ingest import ProviderKey, ServerState, ingest_message

_uids = itertools.count(1)

# A 1x1 transparent PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def inbox_folder(mailbox: MailAccount) -> Folder:
    folder, _ = Folder.objects.get_or_create(
        mailbox=mailbox,
        name="INBOX",
        defaults={"role": Folder.Role.INBOX, "sync_enabled": True, "uidvalidity": 1},
    )
    return folder


def build(
    *,
    subject: str = "Hello",
    sender: str = "Customer <customer@example.org>",
    to: str = "support@example.com",
    cc: str = "",
    text: str | None = "Hello there",
    html: str | None = None,
    message_id: str | None = None,
    in_reply_to: str = "",
    date: datetime | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    inline: Sequence[tuple[str, str, bytes]] = (),  # (content id, type, bytes)
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = format_datetime(date or timezone.now())
    message["Message-ID"] = message_id or make_msgid(domain="example.org")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    if text is not None:
        message.set_content(text)
    if html is not None:
        if text is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    for cid, content_type, data in inline:
        maintype, subtype = content_type.split("/")
        html_part = message.get_body(("html",))
        assert html_part is not None
        html_part.add_related(data, maintype=maintype, subtype=subtype, cid=f"<{cid}>")
    for filename, content_type, data in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message


def deliver(mailbox: MailAccount, message: EmailMessage | None = None, **kwargs: Any) -> Message:
    """Store one message in the mailbox's INBOX as the IMAP sync would."""
    message = message or build(**kwargs)
    folder = inbox_folder(mailbox)
    stored, _ = ingest_message(
        mailbox,
        message.as_bytes(),
        ProviderKey(folder=folder, uidvalidity=1, uid=next(_uids)),
        ServerState(received_at=kwargs.get("date") or timezone.now()),
    )
    return stored


def conversation_with(mailbox: MailAccount, count: int = 1, **kwargs: Any) -> Conversation:
    """A thread of ``count`` messages (replies chained by In-Reply-To), oldest first."""
    start = timezone.now() - timedelta(hours=count)
    kwargs.setdefault("date", start)
    first = deliver(mailbox, **kwargs)
    previous = first
    for index in range(1, count):
        previous = deliver(
            mailbox,
            subject=f"Re: {kwargs.get('subject', 'Hello')}",
            in_reply_to=previous.message_id,
            text=f"Reply number {index}",
            date=start + timedelta(minutes=index),
        )
    return first.conversation
