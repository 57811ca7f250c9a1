"""Sending what people wrote: the outbox row becomes MIME, goes out over SMTP, and comes back.

The row (``OutgoingMessage``) was saved with its Message-ID before anything else happened
(``mailweb.actions.queue_reply``). ``deliver`` is safe to call any number of times:

1. Claim: lock the row; a sent row skips straight to the follow-up steps. The exact MIME is
   built once and stored as a blob (``raw_sha256``), so every attempt sends the same bytes
   (same Message-ID, same Date) and recipients' clients collapse a rare duplicate.
2. Submit over SMTP (``sync.smtp``); transient failures are retried by the task with backoff,
   permanent ones mark the row failed with a reason people can read and a retry button.
3. Follow up: copy it into the Sent folder with IMAP APPEND unless the server files sent mail
   itself (Exchange does), then ingest the exact bytes into the conversation as outgoing mail
   (under the APPENDUID key when there is one, so the sync engine later recognises its copy).
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.endpoints import microsoft_smtp_address
from accounts.models import MailAccount
from mailweb.blobs import get_blob, has_blob, put_blob
from mailweb.models import Folder, Message, OutgoingMessage
from sync import smtp
from sync.ingest import ProviderKey, ServerState, ingest_message

logger = logging.getLogger(__name__)

LOCK_SECONDS = 200  # longer than the task's hard time limit
_NOT_COPIED = "Sent, but not copied to the Sent folder: "
MICROSOFT_SMTP_DOMAINS = (".office365.com", ".outlook.com", ".office365.us", ".partner.outlook.cn")


@dataclass(frozen=True)
class Outcome:
    status: str
    detail: str = ""


def build_mime(outgoing: OutgoingMessage) -> bytes:
    """The message as it goes on the wire (CRLF line ends, RFC 2047/2231 where needed)."""
    mailbox = outgoing.mailbox
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((mailbox.display_name, mailbox.address))
    if outgoing.to:
        message["To"] = ", ".join(formataddr((n, a)) for n, a in outgoing.to)
    if outgoing.cc:
        message["Cc"] = ", ".join(formataddr((n, a)) for n, a in outgoing.cc)
    message["Subject"] = outgoing.subject
    message["Date"] = format_datetime(timezone.now())
    message["Message-ID"] = _bracket(outgoing.message_id)
    if outgoing.in_reply_to:
        message["In-Reply-To"] = _bracket(outgoing.in_reply_to)
    if outgoing.references:
        message["References"] = " ".join(_bracket(ref) for ref in outgoing.references)
    message["MIME-Version"] = "1.0"
    message["User-Agent"] = "Mailweb"
    message.set_content(outgoing.body_text.replace("\r\n", "\n"))
    forwarded = outgoing.forwarded_message
    if forwarded is not None:
        for attachment in forwarded.attachments.all():
            if not has_blob(attachment.sha256):
                continue
            maintype, _, subtype = (
                attachment.content_type
                or mimetypes.guess_type(attachment.filename)[0]
                or "application/octet-stream"
            ).partition("/")
            message.add_attachment(
                get_blob(attachment.sha256),
                maintype=maintype or "application",
                subtype=subtype or "octet-stream",
                filename=attachment.filename or f"attachment-{attachment.pk}",
            )
    return message.as_bytes(policy=SMTP)


def _bracket(message_id: str) -> str:
    """Ids are stored bare (as sync.mime parses them); headers carry them in angle brackets."""
    return f"<{message_id.strip().strip('<>')}>"


def recipients(outgoing: OutgoingMessage) -> list[str]:
    seen: dict[str, None] = {}
    for _, address in [*outgoing.to, *outgoing.cc, *outgoing.bcc]:
        seen.setdefault(address, None)
    return list(seen)


def _claim(outgoing_id: int) -> OutgoingMessage | None:
    """Lock the row, mark it sending and make sure its MIME exists; None if already sent or
    failed for good (a retry button re-queues failed rows explicitly)."""
    with transaction.atomic():
        row = (
            OutgoingMessage.objects.select_for_update(of=("self",))
            .select_related("mailbox", "forwarded_message")
            .filter(pk=outgoing_id)
            .first()
        )
        if row is None or row.status in {
            OutgoingMessage.Status.SENT,
            OutgoingMessage.Status.FAILED,
        }:
            return None
        if not row.raw_sha256 or not has_blob(row.raw_sha256):
            row.raw_sha256 = put_blob(build_mime(row))
        row.status = OutgoingMessage.Status.SENDING
        row.attempts += 1
        row.save(update_fields=["raw_sha256", "status", "attempts"])
        return row


def deliver(outgoing_id: int) -> Outcome:
    """One attempt; raises ``smtp.TransientSendError`` for the task to retry later.

    A short cache lock keeps two workers (a redelivered task, a double click on "Retry") from
    submitting the same row at the same time.
    """
    lock = f"mailweb:outbox-lock:{outgoing_id}"
    if not cache.add(lock, 1, timeout=LOCK_SECONDS):
        raise smtp.TransientSendError("Another attempt to send this message is in progress.")
    try:
        return _deliver(outgoing_id)
    finally:
        cache.delete(lock)


def _deliver(outgoing_id: int) -> Outcome:
    row = _claim(outgoing_id)
    if row is None:
        existing = OutgoingMessage.objects.filter(pk=outgoing_id).first()
        if existing is not None and existing.status == OutgoingMessage.Status.SENT:
            follow_up(existing)
            return Outcome("sent", "already sent")
        return Outcome(existing.status if existing else "missing")
    raw = get_blob(row.raw_sha256)
    try:
        refused = smtp.submit(row.mailbox, row.mailbox.address, recipients(row), raw)
    except smtp.PermanentSendError as exc:
        mark_failed(row.pk, str(exc))
        return Outcome("failed", str(exc))
    except smtp.TransientSendError as exc:
        OutgoingMessage.objects.filter(pk=row.pk).update(last_error=str(exc)[:2000])
        raise
    note = "; ".join(f"{a} refused: {r}" for a, r in refused.items())
    OutgoingMessage.objects.filter(pk=row.pk).update(
        status=OutgoingMessage.Status.SENT, sent_at=timezone.now(), last_error=note[:2000]
    )
    row.refresh_from_db()
    follow_up(row)
    return Outcome("sent", note)


def mark_failed(outgoing_id: int, reason: str) -> None:
    OutgoingMessage.objects.filter(pk=outgoing_id).exclude(
        status=OutgoingMessage.Status.SENT
    ).update(status=OutgoingMessage.Status.FAILED, last_error=reason[:2000])
    from mailweb import live

    live.bump_changes()


def follow_up(row: OutgoingMessage) -> None:
    """Sent-folder copy and the conversation entry; each step is skipped once done.

    A Sent copy that fails (a connection cut during APPEND, a server that is down) raises
    ``smtp.TransientSendError`` once the reply is in its conversation, so the task tries the
    copy again later; the mail itself is never sent again (``_deliver`` skips a sent row).
    """
    raw = get_blob(row.raw_sha256)
    key = ProviderKey()
    not_copied = ""
    if not row.appended_to_sent and not server_files_sent(row.mailbox):
        try:
            key = append_to_sent(row.mailbox, raw, row.message_id)
            OutgoingMessage.objects.filter(pk=row.pk).update(appended_to_sent=True)
            OutgoingMessage.objects.filter(pk=row.pk, last_error__startswith=_NOT_COPIED).update(
                last_error=""
            )
        except Exception as exc:  # the mail is sent; a missing Sent copy must not resend it
            logger.warning("could not copy outgoing %s to Sent: %s", row.pk, type(exc).__name__)
            not_copied = f"{_NOT_COPIED}{exc}"[:2000]
            OutgoingMessage.objects.filter(pk=row.pk).update(last_error=not_copied)
    if not Message.objects.filter(mailbox=row.mailbox, message_id=row.message_id).exists():
        ingest_message(
            row.mailbox, raw, key, ServerState(seen=True, received_at=row.sent_at or timezone.now())
        )
    from mailweb import live

    live.bump_changes()
    if not_copied:
        raise smtp.TransientSendError(not_copied)


def server_files_sent(mailbox: MailAccount) -> bool:
    """Whether the SMTP server itself saves a copy in Sent (Exchange Online does)."""
    configured = getattr(settings, "MAILWEB_SMTP_FILES_SENT", None)
    if configured is not None:
        return bool(configured)
    if not mailbox.uses_oauth:
        return False
    host, _ = microsoft_smtp_address()
    return host.lower().endswith(MICROSOFT_SMTP_DOMAINS)


def append_to_sent(mailbox: MailAccount, raw: bytes, message_id: str) -> ProviderKey:
    """APPEND ``raw`` to the Sent folder unless a copy with this Message-ID is there already.

    Returns the provider key of the copy when the server reports it (UIDPLUS) and the folder
    is one the store knows, so ingesting under that key matches what the sync will find.
    """
    from imapclient import SEEN

    from sync.imap.connection import imap_session

    folder = Folder.objects.filter(mailbox=mailbox, role=Folder.Role.SENT).first()
    with imap_session(mailbox) as client:
        name = folder.name if folder else client.find_special_folder(b"\\Sent")
        if not name:
            name = "Sent"
            if not client.folder_exists(name):
                client.create_folder(name)
        status = client.select_folder(name)
        if client.search(["HEADER", "Message-ID", message_id]):
            return ProviderKey()
        response = client.append(name, raw, flags=(SEEN,), msg_time=timezone.now())
    uidvalidity = status.get(b"UIDVALIDITY")
    text = response.decode(errors="replace") if isinstance(response, bytes) else str(response)
    parts = text.split("APPENDUID", 1)
    if folder is None or len(parts) < 2:
        return ProviderKey()
    numbers = parts[1].strip(" ]").split()
    if len(numbers) < 2 or not numbers[1].rstrip("]").isdigit():
        return ProviderKey()
    appended_validity, uid = int(numbers[0]), int(numbers[1].rstrip("]"))
    if folder.uidvalidity != appended_validity or uidvalidity != appended_validity:
        return ProviderKey()
    return ProviderKey(folder=folder, uidvalidity=appended_validity, uid=uid)
