"""Building test messages: plain, threaded, non-ASCII, with attachments, or malformed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

BASE_TIME = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def message(
    subject: str = "Hello",
    *,
    sender: str = "Alice Example <alice@example.net>",
    to: str = "support@example.com",
    body: str = "Hello there.\n",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    date: datetime | None = None,
    attachment: bytes | None = None,
    html: str | None = None,
) -> bytes:
    """A well-formed message as bytes (CRLF line endings, as IMAP servers store them)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or BASE_TIME)
    msg["Message-ID"] = message_id or make_msgid(domain="example.net")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    msg.set_content(body)
    if html:
        msg.add_alternative(html, subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="report.pdf")
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def new_id() -> str:
    return f"<{uuid.uuid4().hex}@example.net>"


def thread(count: int, subject: str = "Order 1234", start: datetime | None = None) -> list[bytes]:
    """``count`` messages replying to each other, one hour apart."""
    ids = [new_id() for _ in range(count)]
    start = start or BASE_TIME
    out = []
    for index, message_id in enumerate(ids):
        out.append(
            message(
                subject if index == 0 else f"Re: {subject}",
                sender="Alice <alice@example.net>"
                if index % 2 == 0
                else "Support <support@example.com>",
                message_id=message_id,
                in_reply_to=ids[index - 1] if index else None,
                references=ids[:index] or None,
                date=start + timedelta(hours=index),
                body=f"Message {index} of the thread.\n",
            )
        )
    return out


MALFORMED = (
    b"From: =?utf-8?B?broken\r\n"
    b"Subject: =?x-unknown?Q?caf=E9?= \xff\xfe raw bytes\r\n"
    b"Date: not a date\r\n"
    b'Content-Type: multipart/mixed; boundary="never-closed"\r\n'
    b"\r\n"
    b"--never-closed\r\n"
    b"Content-Type: text/plain; charset=bogus-charset\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"!!!! not base64 at all ~~~~\r\n"
)
