"""Writes the sync engine makes besides ingestion: flag changes, removals, folder rows.

Callers hold the mailbox's lease and wrap these in the transaction that also moves the folder
cursor, so a crash leaves either both or neither.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import timedelta

from django.db.models import Count, Exists, Max, OuterRef, Q
from django.utils import timezone

from accounts.models import MailAccount
from mailweb.models import Activity, Conversation, Folder, Message, Note, OutgoingMessage
from sync.models import RemovedMessage

__all__ = [
    "FlagState",
    "apply_flags",
    "prune_removed",
    "refresh_conversations",
    "remove_folder",
    "remove_messages",
]

#: (seen, flagged, answered, draft)
FlagState = tuple[bool, bool, bool, bool]


def apply_flags(
    folder: Folder,
    uidvalidity: int,
    changes: Mapping[int, FlagState],
    modseqs: Mapping[int, int | None] | None = None,
) -> int:
    """Set the flags the server reported for UIDs of ``folder``; returns rows changed.

    Only rows whose flags differ are written, grouped so that a sweep over 10,000 messages with
    three changes costs one SELECT and up to three UPDATEs.
    """
    if not changes:
        return 0
    modseqs = modseqs or {}
    groups: dict[FlagState, list[int]] = defaultdict(list)
    rows = Message.objects.filter(
        folder=folder, uidvalidity=uidvalidity, uid__in=list(changes)
    ).values_list("id", "uid", "is_seen", "is_flagged", "is_answered", "is_draft")
    for pk, uid, *current in rows:
        if uid is None:
            continue
        wanted = changes[uid]
        if tuple(current) != wanted:
            groups[wanted].append(pk)
    changed = 0
    for (seen, flagged, answered, draft), pks in groups.items():
        changed += Message.objects.filter(pk__in=pks).update(
            is_seen=seen, is_flagged=flagged, is_answered=answered, is_draft=draft
        )
    with_modseq = {uid: m for uid, m in modseqs.items() if m is not None}
    if with_modseq and changed:
        # MODSEQ is informational (the folder cursor is what matters); keep it for changed rows.
        for uid, modseq in with_modseq.items():
            Message.objects.filter(folder=folder, uidvalidity=uidvalidity, uid=uid).exclude(
                modseq=modseq
            ).update(modseq=modseq)
    return changed


def remove_messages(mailbox: MailAccount, messages: Iterable[Message] | Q) -> int:
    """Delete messages that left the server's synced folders; returns how many.

    Each Message-ID is remembered with its conversation (``RemovedMessage``) so that the same
    message showing up again in a synced folder (moved back from Trash, or moved between
    folders across two passes) rejoins its conversation. Conversations left empty are deleted
    unless the team worked on them (notes, assignment, labels, replies, activity), which is
    kept and shown as an empty conversation.
    """
    query = messages if isinstance(messages, Q) else Q(pk__in=[m.pk for m in messages])
    rows = list(
        Message.objects.filter(query, mailbox=mailbox).values_list(
            "id", "message_id", "conversation_id"
        )
    )
    if not rows:
        return 0
    now = timezone.now()
    RemovedMessage.objects.bulk_create(
        RemovedMessage(
            mailbox=mailbox, message_id=message_id, conversation_id=conversation_id, removed_at=now
        )
        for _, message_id, conversation_id in rows
        if message_id
    )
    ids = [pk for pk, _, _ in rows]
    for start in range(0, len(ids), 2000):
        Message.objects.filter(pk__in=ids[start : start + 2000]).delete()
    refresh_conversations({conversation_id for _, _, conversation_id in rows})
    return len(ids)


def refresh_conversations(conversation_ids: Iterable[int]) -> None:
    """Recompute the list fields of conversations after messages left them."""
    ids = sorted(set(conversation_ids))
    if not ids:
        return
    stats = {
        row["conversation_id"]: row
        for row in Message.objects.filter(conversation_id__in=ids)
        .values("conversation_id")
        .annotate(
            count=Count("id"),
            newest=Max("received_at"),
            with_files=Count("id", filter=Q(has_attachments=True)),
        )
    }
    empty = [pk for pk in ids if pk not in stats]
    if empty:
        _delete_untouched(empty)
    for pk, row in stats.items():
        newest = (
            Message.objects.filter(conversation_id=pk)
            .order_by("-received_at", "-id")
            .values("snippet", "from_name", "from_address")
            .first()
        )
        assert newest is not None
        Conversation.objects.filter(pk=pk).update(
            message_count=row["count"],
            last_message_at=row["newest"],
            has_attachments=row["with_files"] > 0,
            snippet=newest["snippet"],
            last_sender=(newest["from_name"] or newest["from_address"])[:300],
        )


def _delete_untouched(conversation_ids: list[int]) -> None:
    """Delete empty conversations nobody worked on; empty the counters of the others."""
    worked_on = Conversation.objects.filter(pk__in=conversation_ids).filter(
        Q(assignee__isnull=False)
        | ~Q(status=Conversation.Status.OPEN)
        | Exists(Note.objects.filter(conversation=OuterRef("pk")))
        | Exists(Activity.objects.filter(conversation=OuterRef("pk")))
        | Exists(OutgoingMessage.objects.filter(conversation=OuterRef("pk")))
        | Exists(Conversation.labels.through.objects.filter(conversation=OuterRef("pk")))
    )
    keep = set(worked_on.values_list("pk", flat=True))
    Conversation.objects.filter(pk__in=keep).update(
        message_count=0, has_attachments=False, last_message_at=None
    )
    Conversation.objects.filter(pk__in=[pk for pk in conversation_ids if pk not in keep]).delete()


def remove_folder(folder: Folder) -> int:
    """The folder is gone from the server (or no longer synced): drop its messages and row."""
    removed = remove_messages(folder.mailbox, Q(folder=folder))
    folder.delete()
    return removed


def prune_removed(older_than_days: int = 90) -> int:
    """Forget removal records older than ``older_than_days`` (called by the sweep)."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = RemovedMessage.objects.filter(removed_at__lt=cutoff).delete()
    return deleted
