"""State the sync engine keeps besides the store's folder cursors.

``MailboxSyncState`` holds the per-mailbox lease on databases without advisory locks (SQLite)
and the request counter that lets a push arriving during a running sync trigger another pass
instead of being lost. ``RemovedMessage`` remembers which conversation a message belonged to
after it left every synced folder, so a message moved to Trash and restored, or moved between
folders across two passes, returns to its conversation (with its notes and assignment).
"""

from typing import ClassVar

from django.db import models
from django.utils import timezone

from accounts.models import MailAccount
from mailweb.models import Conversation


class MailboxSyncState(models.Model):
    mailbox = models.OneToOneField(
        MailAccount, on_delete=models.CASCADE, primary_key=True, related_name="sync_state"
    )
    requests = models.PositiveBigIntegerField(
        default=0,
        help_text="Bumped by every request to sync; a pass that started before the "
        "latest bump runs again.",
    )
    lease_holder = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    folders_listed_at = models.DateTimeField(null=True, blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    failures = models.PositiveIntegerField(
        default=0, help_text="Consecutive failed passes (reset by a good one)."
    )
    paused_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The server (or the token endpoint) asked for no requests before then.",
    )
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"sync state of mailbox {self.mailbox_id}"


class RemovedMessage(models.Model):
    """A Message-ID that left the synced folders, and the conversation it belonged to."""

    mailbox = models.ForeignKey(MailAccount, on_delete=models.CASCADE, related_name="+")
    message_id = models.CharField(max_length=998)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    removed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["mailbox", "message_id"], name="removedmessage_msgid_idx"),
            models.Index(fields=["removed_at"], name="removedmessage_age_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} (conversation {self.conversation_id})"
