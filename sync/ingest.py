"""Turning raw RFC 5322 bytes into stored messages, attachments and conversations.

Every provider (IMAP, Graph, mbox import, our own sent mail) goes through ``ingest_message`` so a
message is parsed, stored and threaded the same way whatever its origin. The raw bytes are stored
first, so a message whose parsing fails is still kept whole and listed with its parse error.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.models import MailAccount
from mailweb.blobs import put_blob
from mailweb.models import Attachment, Conversation, Folder, Message, OutgoingMessage
from sync.mime import ParsedMessage, normalize_subject, parse_message

# A subject-only match joins a conversation only when it is this recent and shares a participant.
SUBJECT_FALLBACK_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class ProviderKey:
    """Where a message lives on the server: IMAP (folder, uidvalidity, uid) or a Graph id."""

    folder: Folder | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    graph_id: str = ""


@dataclass(frozen=True)
class ServerState:
    """Per-copy state reported by the server."""

    seen: bool = False
    flagged: bool = False
    answered: bool = False
    draft: bool = False
    received_at: datetime | None = None
    modseq: int | None = None


def ingest_message(
    mailbox: MailAccount,
    raw: bytes,
    key: ProviderKey,
    state: ServerState | None = None,
    *,
    reopen: bool = False,
) -> tuple[Message, bool]:
    """Store ``raw`` under ``key`` and thread it; returns (message, created).

    Idempotent: the provider key is unique in the database, so a replay returns the existing
    row. ``reopen`` moves a closed, pending or snoozed conversation back to open when new
    incoming mail arrives (incremental sync), but not while importing history.
    """
    state = state or ServerState()
    raw_sha256 = put_blob(raw)
    parsed = parse_message(raw)
    attachment_blobs = [
        (attachment, put_blob(attachment.payload)) for attachment in parsed.attachments
    ]
    existing = _existing(mailbox, key)
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            message = _create(mailbox, raw, raw_sha256, parsed, key, state, reopen=reopen)
            Attachment.objects.bulk_create(
                Attachment(
                    message=message,
                    filename=attachment.filename[:500],
                    content_type=attachment.content_type[:255] or "application/octet-stream",
                    size=attachment.size,
                    content_id=attachment.content_id[:500],
                    is_inline=attachment.is_inline,
                    sha256=digest,
                )
                for attachment, digest in attachment_blobs
            )
    except IntegrityError:
        # Another writer stored the same provider key first (should not happen under the lease).
        again = _existing(mailbox, key)
        if again is None:
            raise
        return again, False
    return message, True


def _existing(mailbox: MailAccount, key: ProviderKey) -> Message | None:
    if key.uid is not None and key.folder is not None:
        return Message.objects.filter(
            folder=key.folder, uidvalidity=key.uidvalidity, uid=key.uid
        ).first()
    if key.graph_id:
        return Message.objects.filter(mailbox=mailbox, graph_id=key.graph_id).first()
    return None


def _create(
    mailbox: MailAccount,
    raw: bytes,
    raw_sha256: str,
    parsed: ParsedMessage,
    key: ProviderKey,
    state: ServerState,
    *,
    reopen: bool,
) -> Message:
    received_at = state.received_at or parsed.date or timezone.now()
    outgoing = _is_outgoing(mailbox, parsed, key.folder)
    conversation = find_conversation(mailbox, parsed, received_at) or Conversation.objects.create(
        mailbox=mailbox,
        subject=parsed.subject[:998],
        normalized_subject=normalize_subject(parsed.subject)[:998],
        last_activity_at=received_at,
        last_message_at=received_at,
    )
    message = Message.objects.create(
        mailbox=mailbox,
        folder=key.folder,
        conversation=conversation,
        uidvalidity=key.uidvalidity,
        uid=key.uid,
        graph_id=key.graph_id,
        message_id=parsed.message_id[:998],
        in_reply_to=parsed.in_reply_to[:998],
        references=parsed.references,
        subject=parsed.subject[:998],
        from_name=parsed.from_name[:300],
        from_address=parsed.from_address[:320],
        to=[list(pair) for pair in parsed.to],
        cc=[list(pair) for pair in parsed.cc],
        bcc=[list(pair) for pair in parsed.bcc],
        reply_to=[list(pair) for pair in parsed.reply_to],
        addresses_text=_addresses_text(parsed),
        date=parsed.date,
        received_at=received_at,
        size=len(raw),
        is_seen=state.seen,
        is_flagged=state.flagged,
        is_answered=state.answered,
        is_draft=state.draft,
        modseq=state.modseq,
        snippet=parsed.snippet[:300],
        text_body=parsed.text,
        html_body=parsed.sanitized_html,
        has_attachments=parsed.has_attachments,
        raw_sha256=raw_sha256,
        parse_error=parsed.parse_error,
        direction=Message.Direction.OUTGOING if outgoing else Message.Direction.INCOMING,
    )
    _touch_conversation(conversation, message, reopen=reopen and not outgoing)
    return message


def find_conversation(
    mailbox: MailAccount, parsed: ParsedMessage, received_at: datetime
) -> Conversation | None:
    """The conversation of this message: by Message-ID, In-Reply-To/References, then subject.

    Order matters: the same Message-ID in another folder (a move, or our own sent copy) is the
    strongest signal; a parent it names comes next; a child that arrived earlier and names it
    after that; a subject match last, and only when guarded (see ``_subject_match``).
    """
    messages = Message.objects.filter(mailbox=mailbox)
    if parsed.message_id:
        same = messages.filter(message_id=parsed.message_id).values("conversation_id").first()
        if same:
            return Conversation.objects.get(pk=same["conversation_id"])
    parents = [ref for ref in [parsed.in_reply_to, *reversed(parsed.references)] if ref]
    if parents:
        parent = (
            messages.filter(message_id__in=parents)
            .order_by("-received_at")
            .values("conversation_id")
            .first()
        )
        if parent:
            return Conversation.objects.get(pk=parent["conversation_id"])
    if parsed.message_id:
        child = messages.filter(in_reply_to=parsed.message_id).values("conversation_id").first()
        if child:
            return Conversation.objects.get(pk=child["conversation_id"])
    return _subject_match(mailbox, parsed, received_at)


def _subject_match(
    mailbox: MailAccount, parsed: ParsedMessage, received_at: datetime
) -> Conversation | None:
    """Join by subject only a reply ("Re: ...") to a recent conversation sharing a participant.

    Clients that drop References (some mobile and web mailers) would otherwise split threads;
    the guards keep unrelated "Invoice" or "Hello" mails apart.
    """
    normalized = normalize_subject(parsed.subject)
    if not normalized or normalized == parsed.subject.strip() or len(normalized) < 4:
        return None
    participants = {parsed.from_address, *(address for _, address in parsed.to + parsed.cc)} - {""}
    if not participants:
        return None
    window = Q(last_activity_at__gte=received_at - SUBJECT_FALLBACK_WINDOW) & Q(
        last_activity_at__lte=received_at + SUBJECT_FALLBACK_WINDOW
    )
    candidates = Conversation.objects.filter(window, mailbox=mailbox, normalized_subject=normalized)
    for conversation in candidates.order_by("-last_activity_at")[:5]:
        shared = Q(from_address__in=participants)
        if parsed.from_address:
            shared |= Q(addresses_text__icontains=parsed.from_address)
        if conversation.messages.filter(shared).exists():
            return conversation
    return None


def _touch_conversation(conversation: Conversation, message: Message, *, reopen: bool) -> None:
    """Update the denormalised list fields in one UPDATE (safe against concurrent increments)."""
    updates: dict[str, object] = {
        "message_count": F("message_count") + 1,
        "last_activity_at": Greatest(F("last_activity_at"), message.received_at),
        "last_message_at": Greatest(F("last_message_at"), message.received_at),
    }
    newest = (
        conversation.last_message_at is None or message.received_at >= conversation.last_message_at
    )
    if newest or conversation.message_count == 0:
        updates["snippet"] = message.snippet
        updates["last_sender"] = (message.from_name or message.from_address)[:300]
    if message.has_attachments:
        updates["has_attachments"] = True
    if reopen and newest and conversation.status != Conversation.Status.OPEN:
        updates["status"] = Conversation.Status.OPEN
        updates["snoozed_until"] = None
    Conversation.objects.filter(pk=conversation.pk).update(**updates)


def _is_outgoing(mailbox: MailAccount, parsed: ParsedMessage, folder: Folder | None) -> bool:
    if folder is not None and folder.role == Folder.Role.SENT:
        return True
    if parsed.message_id and OutgoingMessage.objects.filter(message_id=parsed.message_id).exists():
        return True
    return parsed.from_address == mailbox.address.lower()


def _addresses_text(parsed: ParsedMessage) -> str:
    pairs = [(parsed.from_name, parsed.from_address), *parsed.to, *parsed.cc, *parsed.reply_to]
    return " ".join(f"{name} {address}".strip() for name, address in pairs)[:10000]
