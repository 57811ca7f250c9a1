"""Reads that several views share; every one is scoped to what the user may see."""

import base64
import binascii
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import MailAccount, User
from accounts.selectors import AnyUser, visible_mailboxes
from mailweb.models import (
    Activity,
    Attachment,
    Conversation,
    ConversationRead,
    Folder,
    Label,
    Message,
    Note,
    Notification,
    OutgoingMessage,
    UnfetchableMessage,
)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
STATUSES = [choice.value for choice in Conversation.Status]


def visible_conversations(user: AnyUser) -> QuerySet[Conversation]:
    return Conversation.objects.filter(mailbox__in=visible_mailboxes(user))


def visible_conversation_or_none(user: AnyUser, pk: int) -> Conversation | None:
    return visible_conversations(user).select_related("mailbox", "assignee").filter(pk=pk).first()


# --- Inbox list --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxFilter:
    """What the list shows: parsed from and rendered back to the query string.

    ``assignee`` is "me", "unassigned", "any" or a user id (as a string); ``status`` one of
    the conversation statuses or "all".
    """

    mailbox: int | None = None
    status: str = Conversation.Status.OPEN
    assignee: str = "any"
    label: int | None = None

    @classmethod
    def from_query(cls, query: QueryDict) -> "InboxFilter":
        status = query.get("status", Conversation.Status.OPEN)
        if status not in [*STATUSES, "all"]:
            status = Conversation.Status.OPEN
        assignee = query.get("assignee", "any")
        if assignee not in {"me", "unassigned", "any"} and not assignee.isdigit():
            assignee = "any"
        return cls(
            mailbox=_int_or_none(query.get("mailbox")),
            status=status,
            assignee=assignee,
            label=_int_or_none(query.get("label")),
        )

    def with_(self, **changes: Any) -> "InboxFilter":
        return replace(self, **changes)

    def query(self, **changes: Any) -> str:
        """The query string for this filter (only non-default values), optionally changed."""
        target = replace(self, **changes) if changes else self
        parts: dict[str, str] = {}
        if target.mailbox:
            parts["mailbox"] = str(target.mailbox)
        if target.status != Conversation.Status.OPEN:
            parts["status"] = target.status
        if target.assignee != "any":
            parts["assignee"] = target.assignee
        if target.label:
            parts["label"] = str(target.label)
        params = QueryDict(mutable=True)
        params.update(parts)
        return params.urlencode()


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def apply_filter(
    queryset: QuerySet[Conversation], user: AnyUser, filters: InboxFilter
) -> QuerySet[Conversation]:
    if filters.mailbox:
        queryset = queryset.filter(mailbox_id=filters.mailbox)
    if filters.status != "all":
        queryset = queryset.filter(status=filters.status)
    if filters.assignee == "me":
        queryset = queryset.filter(assignee_id=user.pk)
    elif filters.assignee == "unassigned":
        queryset = queryset.filter(assignee__isnull=True)
    elif filters.assignee.isdigit():
        queryset = queryset.filter(assignee_id=int(filters.assignee))
    if filters.label:
        queryset = queryset.filter(labels__id=filters.label)
    return queryset


def encode_cursor(conversation: Conversation) -> str:
    raw = f"{conversation.last_activity_at.isoformat()}|{conversation.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, pk = raw.partition("|")
        when = parse_datetime(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if when is None or not pk.isdigit():
        return None
    return when, int(pk)


def with_unread(queryset: QuerySet[Conversation], user: AnyUser) -> QuerySet[Conversation]:
    """Annotate ``is_unread``: mail arrived after this user last read the conversation."""
    read = ConversationRead.objects.filter(
        user_id=user.pk or 0, conversation=OuterRef("pk"), read_at__gte=OuterRef("last_message_at")
    )
    return queryset.annotate(
        is_unread=~Exists(read) & Q(last_message_at__isnull=False),
    )


# What a list row shows (``list_rows``), and no more: building 50 conversations with every
# column of their mailbox and assignee was most of the selector's time.
LIST_FIELDS = (
    "id",
    "subject",
    "status",
    "last_activity_at",
    "last_message_at",
    "message_count",
    "has_attachments",
    "snippet",
    "last_sender",
    "mailbox__id",
    "mailbox__address",
    "mailbox__display_name",
    "assignee__id",
    "assignee__name",
    "assignee__email",
)


@dataclass
class InboxPage:
    conversations: list[Conversation]
    next_cursor: str | None
    filters: InboxFilter


def inbox_page(
    user: AnyUser, filters: InboxFilter, cursor: str | None = None, size: int = PAGE_SIZE
) -> InboxPage:
    """One page of the list, newest activity first, keyset-paginated on (last_activity_at, id).

    Two queries whatever the page size: the page itself (with mailbox, assignee and unread
    state; only the columns a row shows, ``LIST_FIELDS``) and the labels of the conversations
    on it.
    """
    size = max(1, min(size, MAX_PAGE_SIZE))
    queryset = apply_filter(visible_conversations(user), user, filters)
    position = decode_cursor(cursor)
    if position is not None:
        when, pk = position
        queryset = queryset.filter(last_activity_at__lte=when).filter(
            Q(last_activity_at__lt=when) | Q(id__lt=pk)
        )
    queryset = (
        with_unread(queryset, user)
        .select_related("mailbox", "assignee")
        .only(*LIST_FIELDS)
        .prefetch_related(Prefetch("labels", queryset=Label.objects.order_by("name")))
        .order_by("-last_activity_at", "-id")
    )
    rows: list[Conversation] = list(queryset[: size + 1])
    next_cursor = encode_cursor(rows[size - 1]) if len(rows) > size else None
    return InboxPage(conversations=rows[:size], next_cursor=next_cursor, filters=filters)


@dataclass
class SidebarCounts:
    statuses: dict[str, int] = field(default_factory=dict)
    mine: int = 0
    unassigned: int = 0
    mailboxes: list[tuple[MailAccount, int]] = field(default_factory=list)
    labels: list[tuple[Label, int]] = field(default_factory=list)
    teammates: list[User] = field(default_factory=list)


SIDEBAR_CACHE_SECONDS = 15
COUNTED_STATUSES = [
    Conversation.Status.OPEN,
    Conversation.Status.PENDING,
    Conversation.Status.SNOOZED,
]  # Closed grows forever; counting it would read most of the table on every page.


def sidebar_counts(user: AnyUser, filters: InboxFilter) -> SidebarCounts:
    """Counts for the sidebar (cached briefly; any team action refreshes them at once).

    Status counts respect the chosen mailbox; the other counts are of open conversations (what
    a team works through), within the chosen mailbox when one is chosen.
    """
    from django.core.cache import cache

    from mailweb.live import change_counter

    key = f"mailweb:sidebar:{user.pk}:{filters.mailbox}:{change_counter()}"
    counts: SidebarCounts | None = cache.get(key)
    if counts is None:
        counts = _sidebar_counts(user, filters)
        cache.set(key, counts, SIDEBAR_CACHE_SECONDS)
    return counts


def _sidebar_counts(user: AnyUser, filters: InboxFilter) -> SidebarCounts:
    """Six queries, each reading one index range: no query touches closed conversations."""
    base = visible_conversations(user)
    if filters.mailbox:
        base = base.filter(mailbox_id=filters.mailbox)
    by_status = dict(
        base.filter(status__in=COUNTED_STATUSES)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    open_ones = base.filter(status=Conversation.Status.OPEN)
    mine = open_ones.filter(assignee_id=user.pk or 0).count()
    unassigned = open_ones.filter(assignee__isnull=True).count()
    open_in_mailbox = (
        Conversation.objects.filter(mailbox=OuterRef("pk"), status=Conversation.Status.OPEN)
        .order_by()
        .values("mailbox")
        .annotate(n=Count("id"))
        .values("n")
    )
    mailboxes = list(
        visible_mailboxes(user)
        .annotate(open_count=Coalesce(Subquery(open_in_mailbox), 0))
        .order_by("address")
    )
    # From the (small) label links to their conversations, grouped once for all labels.
    through = Conversation.labels.through.objects.filter(conversation__in=open_ones)
    per_label = dict(
        through.order_by().values_list("label_id").annotate(n=Count("conversation_id"))
    )
    labels = list(Label.objects.order_by("name"))
    return SidebarCounts(
        statuses={status: by_status.get(status, 0) for status in COUNTED_STATUSES},
        mine=mine,
        unassigned=unassigned,
        mailboxes=[(mailbox, mailbox.open_count) for mailbox in mailboxes],
        labels=[(label, per_label.get(label.pk, 0)) for label in labels],
        teammates=list(teammates(user)),
    )


def teammates(user: AnyUser, mailbox: MailAccount | None = None) -> QuerySet[User]:
    """Active people who can work in ``mailbox`` (or in any mailbox ``user`` sees)."""
    people = User.objects.filter(is_active=True)
    if mailbox is not None:
        return people.filter(
            Q(role=User.Role.ADMIN) | Q(is_superuser=True) | Q(mailbox_access__mailbox=mailbox)
        ).distinct()
    if isinstance(user, User) and user.is_admin:
        return people
    return people.filter(
        Q(role=User.Role.ADMIN)
        | Q(is_superuser=True)
        | Q(mailbox_access__mailbox__in=visible_mailboxes(user))
    ).distinct()


def can_work_in(person: User, mailbox: MailAccount) -> bool:
    return visible_mailboxes(person).filter(pk=mailbox.pk).exists()


def inbox_version(user: AnyUser, filters: InboxFilter) -> str:
    """A cheap fingerprint of the list: changes when a conversation moves or changes state."""
    from mailweb.live import change_counter

    # The newest row in the list's own order (an index scan stopping at one row), not MAX(),
    # which PostgreSQL answers by reading every matching conversation.
    newest = (
        apply_filter(visible_conversations(user), user, filters)
        .order_by("-last_activity_at")
        .values_list("last_activity_at", flat=True)
        .first()
    )
    return f"{change_counter()}-{newest.timestamp() if newest else 0}"


# --- One conversation --------------------------------------------------------------------------


@dataclass
class Thread:
    conversation: Conversation
    messages: list[Message]
    entries: list[tuple[str, Any]]
    outbox: list[OutgoingMessage]


def conversation_thread(conversation: Conversation) -> Thread:
    """Messages oldest first (one row per Message-ID: a sent copy synced back is not shown
    twice), with notes and activities merged into one timeline."""
    messages = list(
        conversation.messages.select_related("folder")
        .prefetch_related(Prefetch("attachments", queryset=Attachment.objects.order_by("id")))
        .order_by("received_at", "id")
        .defer("references")
    )
    seen: set[str] = set()
    unique: list[Message] = []
    for message in messages:
        if message.message_id and message.message_id in seen:
            continue
        seen.add(message.message_id)
        unique.append(message)
    notes = list(
        Note.objects.filter(conversation=conversation)
        .select_related("author")
        .prefetch_related("mentions")
    )
    activities = list(
        Activity.objects.filter(conversation=conversation)
        .exclude(kind__in=["note", "read"])
        .select_related("actor")
    )
    entries: list[tuple[datetime, int, str, Any]] = [
        (m.received_at, 0, "message", m) for m in unique
    ]
    entries += [(n.created_at, 1, "note", n) for n in notes]
    entries += [(a.created_at, 2, "activity", a) for a in activities]
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    sent_ids = {m.message_id for m in unique}
    outbox = [
        item
        for item in OutgoingMessage.objects.filter(conversation=conversation)
        .select_related("author")
        .order_by("created_at")
        if item.status != OutgoingMessage.Status.SENT or item.message_id not in sent_ids
    ]
    return Thread(
        conversation=conversation,
        messages=unique,
        entries=[(kind, obj) for _, _, kind, obj in entries],
        outbox=outbox,
    )


def visible_message_or_none(user: AnyUser, pk: int) -> Message | None:
    return (
        Message.objects.filter(pk=pk, mailbox__in=visible_mailboxes(user))
        .select_related("conversation", "mailbox")
        .first()
    )


def visible_attachment_or_none(user: AnyUser, pk: int) -> Attachment | None:
    return (
        Attachment.objects.filter(pk=pk, message__mailbox__in=visible_mailboxes(user))
        .select_related("message")
        .first()
    )


def unread_notification_count(user: AnyUser) -> int:
    if not user.is_authenticated:
        return 0
    return Notification.objects.filter(user_id=user.pk, read_at__isnull=True).count()


def notifications_for(user: AnyUser, limit: int = 100) -> list[Notification]:
    """The user's notifications, only for conversations they can still see."""
    visible = visible_conversations(user)
    return list(
        Notification.objects.filter(user_id=user.pk or 0)
        .filter(Q(conversation__isnull=True) | Q(conversation__in=visible))
        .select_related("conversation")[:limit]
    )


@dataclass(frozen=True)
class SyncProgress:
    """How far a mailbox's initial sync has come (Mailboxes page, ``manage.py mailboxes``)."""

    synced: int
    total: int
    eta_seconds: int | None
    #: Messages the server listed but would not send (``UnfetchableMessage``), and its words.
    unfetchable: int = 0
    unfetchable_reason: str = ""

    @property
    def done(self) -> bool:
        return self.synced + self.unfetchable >= self.total


def mailbox_progress(mailbox: MailAccount) -> SyncProgress:
    """Synced / total over the synced folders, with an ETA from the rate so far."""
    folders = list(Folder.objects.filter(mailbox=mailbox, sync_enabled=True))
    synced = sum(folder.synced_count for folder in folders)
    total = sum(max(folder.server_count, folder.synced_count) for folder in folders)
    started = [
        f.initial_sync_started_at
        for f in folders
        if f.initial_sync_started_at and not f.initial_sync_done_at
    ]
    eta = None
    if started and 0 < synced < total:
        elapsed = (timezone.now() - min(started)).total_seconds()
        rate = synced / elapsed if elapsed > 0 else 0
        eta = int((total - synced) / rate) if rate > 0 else None
    refused = UnfetchableMessage.objects.filter(folder__in=folders).order_by("-next_attempt_at")
    count = refused.count()
    reason = refused.values_list("error", flat=True).first() if count else ""
    return SyncProgress(
        synced=synced,
        total=total,
        eta_seconds=eta,
        unfetchable=count,
        unfetchable_reason=reason or "",
    )
