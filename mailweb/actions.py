"""Writes to the mail store that views, tasks and commands share.

Every change a person makes to a conversation goes through here, inside one transaction, and
leaves an ``Activity`` row (the timeline) so the team can see who did what and when. Callers
check visibility first (views use ``mailweb.selectors``); these functions check the rules that
belong to the data (an assignee must be able to see the mailbox, a snooze needs a future time).
"""

import re
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from mailweb import live
from mailweb.models import (
    Activity,
    Conversation,
    ConversationRead,
    Heartbeat,
    Label,
    Message,
    Note,
    Notification,
    OutgoingMessage,
)


class ActionError(ValueError):
    """A request that breaks a rule; the message is shown to the person."""


@transaction.atomic
def record_heartbeat(name: str) -> None:
    """Note that the background process ``name`` is alive now."""
    Heartbeat.objects.update_or_create(name=name, defaults={"at": timezone.now()})


def _log(conversation: Conversation, actor: User | None, kind: str, **data: object) -> Activity:
    transaction.on_commit(live.bump_changes)
    return Activity.objects.create(conversation=conversation, actor=actor, kind=kind, data=data)


def _can_work_in(person: User, conversation: Conversation) -> bool:
    from accounts.selectors import visible_mailboxes

    return visible_mailboxes(person).filter(pk=conversation.mailbox_id).exists()


@transaction.atomic
def assign(conversation: Conversation, assignee: User | None, *, actor: User) -> None:
    """Assign to ``assignee`` (None unassigns); the new assignee is notified unless it is the
    actor."""
    locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if assignee is not None and (not assignee.is_active or not _can_work_in(assignee, locked)):
        raise ActionError(f"{assignee.display_name} cannot see this mailbox.")
    if locked.assignee_id == (assignee.pk if assignee else None):
        return
    previous = locked.assignee
    locked.assignee = assignee
    locked.save(update_fields=["assignee"])
    conversation.assignee = assignee
    _log(
        locked,
        actor,
        "assign" if assignee else "unassign",
        to=assignee.display_name if assignee else "",
        to_id=assignee.pk if assignee else None,
        previous=previous.display_name if previous else "",
    )
    if assignee is not None and assignee.pk != actor.pk:
        Notification.objects.create(
            user=assignee,
            conversation=locked,
            kind="assigned",
            text=f"{actor.display_name} assigned you “{_short(locked.subject)}”",
        )


@transaction.atomic
def set_status(
    conversation: Conversation,
    status: str,
    *,
    actor: User,
    snooze_until: datetime | None = None,
) -> None:
    if status not in Conversation.Status.values:
        raise ActionError("Unknown status.")
    if status == Conversation.Status.SNOOZED:
        if snooze_until is None or snooze_until <= timezone.now():
            raise ActionError("Choose a time in the future to snooze until.")
    else:
        snooze_until = None
    locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if locked.status == status and locked.snoozed_until == snooze_until:
        return
    previous = locked.status
    locked.status = status
    locked.snoozed_until = snooze_until
    locked.save(update_fields=["status", "snoozed_until"])
    conversation.status, conversation.snoozed_until = status, snooze_until
    _log(
        locked,
        actor,
        "status",
        status=status,
        previous=previous,
        until=snooze_until.isoformat() if snooze_until else "",
    )


@transaction.atomic
def wake_snoozed(now: datetime | None = None) -> int:
    """Reopen every conversation whose snooze has run out; returns how many."""
    now = now or timezone.now()
    due = list(
        Conversation.objects.select_for_update(skip_locked=True).filter(
            status=Conversation.Status.SNOOZED, snoozed_until__lte=now
        )[:500]
    )
    for conversation in due:
        conversation.status = Conversation.Status.OPEN
        conversation.snoozed_until = None
        conversation.last_activity_at = max(conversation.last_activity_at, now)
        conversation.save(update_fields=["status", "snoozed_until", "last_activity_at"])
        _log(conversation, None, "status", status="open", previous="snoozed", reason="snooze ended")
        if conversation.assignee_id:
            Notification.objects.create(
                user_id=conversation.assignee_id,
                conversation=conversation,
                kind="snooze",
                text=f"Snooze ended: “{_short(conversation.subject)}”",
            )
    return len(due)


@transaction.atomic
def set_labels(conversation: Conversation, labels: Iterable[Label], *, actor: User) -> None:
    wanted = {label.pk: label for label in labels}
    current = {label.pk: label for label in conversation.labels.all()}
    added = [wanted[pk] for pk in wanted.keys() - current.keys()]
    removed = [current[pk] for pk in current.keys() - wanted.keys()]
    if added:
        conversation.labels.add(*added)
        _log(conversation, actor, "label", added=sorted(label.name for label in added))
    if removed:
        conversation.labels.remove(*removed)
        _log(conversation, actor, "unlabel", removed=sorted(label.name for label in removed))


@transaction.atomic
def create_label(name: str, color: str = "#6b7280") -> Label:
    name = " ".join(name.split())[:60]
    if not name:
        raise ActionError("A label needs a name.")
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
        color = "#6b7280"
    label, _ = Label.objects.get_or_create(
        name__iexact=name, defaults={"name": name, "color": color}
    )
    return label


MENTION = re.compile(r"(?<![\w.])@([\w.+-]+(?:@[\w-]+(?:\.[\w-]+)+)?)")


def find_mentions(body: str, candidates: Iterable[User]) -> list[User]:
    """People named in ``body`` as @email, @local-part or @first-name (case-insensitive)."""
    tokens = {token.lower().rstrip(".") for token in MENTION.findall(body)}
    found: dict[int, User] = {}
    for person in candidates:
        email = person.email.lower()
        names = {email, email.split("@")[0]}
        if person.name:
            names.add(person.name.split()[0].lower())
            names.add(person.name.replace(" ", "").lower())
        if tokens & names:
            found[person.pk] = person
    return list(found.values())


@transaction.atomic
def add_note(conversation: Conversation, body: str, *, author: User) -> Note:
    """An internal note; people @mentioned who can see the mailbox get a notification."""
    body = body.strip()
    if not body:
        raise ActionError("A note cannot be empty.")
    from mailweb.selectors import teammates

    note = Note.objects.create(conversation=conversation, author=author, body=body[:20000])
    mentioned = [
        person
        for person in find_mentions(body, teammates(author, conversation.mailbox))
        if person.pk != author.pk
    ]
    if mentioned:
        note.mentions.set(mentioned)
        Notification.objects.bulk_create(
            Notification(
                user=person,
                conversation=conversation,
                kind="mention",
                text=f"{author.display_name} mentioned you on “{_short(conversation.subject)}”",
            )
            for person in mentioned
        )
    Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=timezone.now())
    transaction.on_commit(live.bump_changes)
    return note


@transaction.atomic
def mark_read(conversation: Conversation, user: User) -> None:
    """The person has seen the conversation as it is now (and its notifications)."""
    now = timezone.now()
    ConversationRead.objects.update_or_create(
        user=user, conversation=conversation, defaults={"read_at": now}
    )
    Notification.objects.filter(user=user, conversation=conversation, read_at__isnull=True).update(
        read_at=now
    )


@transaction.atomic
def mark_unread(conversation: Conversation, user: User) -> None:
    ConversationRead.objects.filter(user=user, conversation=conversation).delete()


@transaction.atomic
def mark_notifications_read(user: User, ids: Iterable[int] | None = None) -> int:
    unread = Notification.objects.filter(user=user, read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=list(ids))
    return unread.update(read_at=timezone.now())


# --- Replying ----------------------------------------------------------------------------------


def new_message_id(address: str) -> str:
    domain = address.rsplit("@", 1)[-1] or "mailweb.invalid"
    return f"{uuid.uuid4().hex}@{domain}"  # stored without <>, like Message.message_id


@transaction.atomic
def queue_reply(
    conversation: Conversation,
    *,
    author: User,
    to: list[tuple[str, str]],
    cc: list[tuple[str, str]],
    bcc: list[tuple[str, str]],
    subject: str,
    body: str,
    reply_to: Message | None = None,
    forward_of: Message | None = None,
) -> OutgoingMessage:
    """Save a reply (or forward) in the outbox with its Message-ID; sending happens later.

    The caller enqueues ``sync.outbox_tasks.send_outgoing`` on commit. Threading headers come
    from the message replied to (or the newest in the conversation).
    """
    if not to and not cc and not bcc:
        raise ActionError("Add at least one recipient.")
    if not body.strip():
        raise ActionError("The message is empty.")
    parent = reply_to or forward_of
    if parent is None:
        parent = conversation.messages.order_by("-received_at", "-id").first()
    in_reply_to, references = "", []
    if parent is not None and parent.message_id:
        # A forward names its original in References only: it stays in this conversation
        # here, but the new recipient's client does not take it for a reply.
        references = [*[r for r in (parent.references or []) if r], parent.message_id][-20:]
        in_reply_to = parent.message_id if forward_of is None else ""
    outgoing = OutgoingMessage.objects.create(
        mailbox=conversation.mailbox,
        conversation=conversation,
        author=author,
        message_id=new_message_id(conversation.mailbox.address),
        in_reply_to=in_reply_to,
        references=references,
        to=[list(pair) for pair in to],
        cc=[list(pair) for pair in cc],
        bcc=[list(pair) for pair in bcc],
        subject=subject[:998],
        body_text=body,
        forwarded_message=forward_of,
    )
    _log(
        conversation,
        author,
        "forward" if forward_of else "reply",
        outgoing_id=outgoing.pk,
        to=", ".join(address for _, address in to),
    )
    Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=timezone.now())
    return outgoing


@transaction.atomic
def retry_outgoing(outgoing: OutgoingMessage, *, actor: User) -> bool:
    """Put a failed message back in the queue; returns False when it is not failed."""
    updated = OutgoingMessage.objects.filter(
        pk=outgoing.pk, status=OutgoingMessage.Status.FAILED
    ).update(status=OutgoingMessage.Status.QUEUED, last_error="")
    if updated and outgoing.conversation is not None:
        _log(outgoing.conversation, actor, "retry", outgoing_id=outgoing.pk)
    return bool(updated)


def _short(text: str, length: int = 60) -> str:
    text = text or "(no subject)"
    return text if len(text) <= length else text[: length - 1] + "…"
