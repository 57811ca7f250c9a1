"""The mail store: folders, messages, attachments, conversations and the team's work on them.

Raw RFC 5322 bytes live in blob storage keyed by SHA-256 (``mailweb.blobs``); everything here is
derived from them and can be rebuilt. Provider keys are unique in the database so that sync can
upsert instead of "check then insert".
"""

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import MailAccount


class Folder(models.Model):
    """A server folder and its sync cursor (IMAP UIDVALIDITY/UIDNEXT/MODSEQ, Graph deltaLink)."""

    class Role(models.TextChoices):
        INBOX = "inbox", "Inbox"
        SENT = "sent", "Sent"
        ARCHIVE = "archive", "Archive"
        TRASH = "trash", "Trash"
        JUNK = "junk", "Junk"
        DRAFTS = "drafts", "Drafts"
        OTHER = "other", "Other"

    mailbox = models.ForeignKey(MailAccount, on_delete=models.CASCADE, related_name="folders")
    name = models.CharField(max_length=500, help_text="Server path (IMAP) or display name (Graph).")
    remote_id = models.CharField(max_length=500, blank=True, help_text="Graph folder id.")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.OTHER)
    sync_enabled = models.BooleanField(default=False)

    uidvalidity = models.BigIntegerField(null=True, blank=True)
    uidnext = models.BigIntegerField(null=True, blank=True)
    highestmodseq = models.BigIntegerField(null=True, blank=True)
    lowest_synced_uid = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Initial sync goes newest first; everything from here up is stored.",
    )
    delta_link = models.TextField(blank=True)

    server_count = models.PositiveIntegerField(
        default=0, help_text="Messages on the server at last look."
    )
    synced_count = models.PositiveIntegerField(default=0)
    initial_sync_started_at = models.DateTimeField(null=True, blank=True)
    initial_sync_done_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_flags_sweep_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("mailbox", "name")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["mailbox", "name"], name="folder_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.mailbox.address}/{self.name}"


class UnfetchableMessage(models.Model):
    """A UID whose FETCH the server refused (an unreadable file, an item it cannot convert).

    Written in the same transaction as the batch whose cursor move skipped it, so it is
    either fetched later or still on record: never silently lost.
    """

    folder = models.ForeignKey(Folder, on_delete=models.CASCADE, related_name="unfetchable")
    uidvalidity = models.BigIntegerField()
    uid = models.BigIntegerField()
    error = models.CharField(max_length=500)
    attempts = models.PositiveIntegerField(default=1)
    first_failed_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField()

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["folder", "uidvalidity", "uid"], name="unfetchable_unique_uid"
            )
        ]

    def __str__(self) -> str:
        return f"UID {self.uid} of folder {self.folder_id}"


class Label(models.Model):
    """A team-wide tag for conversations."""

    name = models.CharField(max_length=60, unique=True)
    color = models.CharField(max_length=7, default="#6b7280")

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class Conversation(models.Model):
    """A thread of messages in one mailbox, and the team's state for it."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Pending"
        SNOOZED = "snoozed", "Snoozed"
        CLOSED = "closed", "Closed"

    mailbox = models.ForeignKey(MailAccount, on_delete=models.CASCADE, related_name="conversations")
    subject = models.CharField(max_length=998, blank=True)
    normalized_subject = models.CharField(max_length=998, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned",
    )
    snoozed_until = models.DateTimeField(null=True, blank=True)
    labels = models.ManyToManyField(Label, blank=True, related_name="conversations")

    # Denormalised for the inbox list, so a page is one query without joins to messages.
    last_activity_at = models.DateTimeField(default=timezone.now)
    last_message_at = models.DateTimeField(null=True, blank=True)
    message_count = models.PositiveIntegerField(default=0)
    has_attachments = models.BooleanField(default=False)
    snippet = models.CharField(max_length=300, blank=True)
    last_sender = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-last_activity_at", "-id")
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["-last_activity_at", "-id"], name="conv_activity_idx"),
            models.Index(
                fields=["mailbox", "status", "-last_activity_at", "-id"],
                name="conv_mailbox_status_idx",
            ),
            models.Index(
                fields=["assignee", "status", "-last_activity_at", "-id"],
                name="conv_assignee_status_idx",
            ),
            models.Index(fields=["status", "-last_activity_at", "-id"], name="conv_status_idx"),
            models.Index(fields=["mailbox", "normalized_subject"], name="conv_subject_idx"),
            models.Index(
                fields=["snoozed_until"], name="conv_snoozed_idx", condition=Q(status="snoozed")
            ),
        ]

    def __str__(self) -> str:
        return self.subject or "(no subject)"


class Message(models.Model):
    """One message as stored on the server, parsed for display and search.

    ``raw_sha256`` names the original bytes in blob storage; a message whose parsing failed keeps
    ``parse_error`` and whatever could be read, and is still listed.
    """

    class Direction(models.TextChoices):
        INCOMING = "in", "Incoming"
        OUTGOING = "out", "Outgoing"

    # No single-column indexes on the foreign keys: the composite indexes in Meta start with
    # each of them and serve the same lookups, and every index costs each inserted message.
    mailbox = models.ForeignKey(
        MailAccount, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    folder = models.ForeignKey(
        Folder,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="messages",
        db_index=False,
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False
    )

    # Provider keys: IMAP (folder, uidvalidity, uid); Graph (mailbox, graph_id).
    uidvalidity = models.BigIntegerField(null=True, blank=True)
    uid = models.BigIntegerField(null=True, blank=True)
    graph_id = models.CharField(max_length=300, blank=True)

    message_id = models.CharField(max_length=998, blank=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    from_name = models.CharField(max_length=300, blank=True)
    from_address = models.CharField(max_length=320, blank=True)
    to = models.JSONField(default=list, blank=True, help_text="[[name, address], ...]")
    cc = models.JSONField(default=list, blank=True)
    bcc = models.JSONField(default=list, blank=True)
    reply_to = models.JSONField(default=list, blank=True)
    addresses_text = models.TextField(blank=True, help_text="Every address and name, for search.")
    date = models.DateTimeField(null=True, blank=True, help_text="The Date header.")
    received_at = models.DateTimeField(
        default=timezone.now, help_text="INTERNALDATE or when stored."
    )
    size = models.PositiveIntegerField(default=0)

    is_seen = models.BooleanField(default=False)
    is_flagged = models.BooleanField(default=False)
    is_answered = models.BooleanField(default=False)
    is_draft = models.BooleanField(default=False)
    modseq = models.BigIntegerField(null=True, blank=True)

    snippet = models.CharField(max_length=300, blank=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True, help_text="Sanitized at ingest.")
    has_attachments = models.BooleanField(default=False)
    raw_sha256 = models.CharField(max_length=64, blank=True)
    parse_error = models.TextField(blank=True)
    direction = models.CharField(
        max_length=3, choices=Direction.choices, default=Direction.INCOMING
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("received_at", "id")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["folder", "uidvalidity", "uid"],
                name="message_unique_imap_uid",
                condition=Q(uid__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["mailbox", "graph_id"],
                name="message_unique_graph_id",
                condition=~Q(graph_id=""),
            ),
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["mailbox", "message_id"], name="message_msgid_idx"),
            models.Index(fields=["mailbox", "in_reply_to"], name="message_inreplyto_idx"),
            models.Index(fields=["conversation", "received_at"], name="message_conv_idx"),
            models.Index(fields=["folder", "uid"], name="message_folder_uid_idx"),
            models.Index(fields=["raw_sha256"], name="message_raw_idx"),
            # Search ranks the newest matches of a common word without reading all of them.
            models.Index(fields=["-received_at"], name="message_received_idx"),
        ]

    def __str__(self) -> str:
        return self.subject or "(no subject)"


class Attachment(models.Model):
    """A part of a message that is a file; its bytes are a content-addressed blob."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=500, blank=True)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    size = models.PositiveIntegerField(default=0)
    content_id = models.CharField(max_length=500, blank=True)
    is_inline = models.BooleanField(default=False)
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return self.filename or "(unnamed)"


class Note(models.Model):
    """An internal note on a conversation; never sent to the customer."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="notes"
    )
    body = models.TextField()
    mentions = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="mentioned_in"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return self.body[:60]


class Activity(models.Model):
    """The conversation timeline: who did what, when (assign, status, label, note, reply)."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="activities"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    kind = models.CharField(max_length=30)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("created_at", "id")
        verbose_name_plural = "activities"
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["conversation", "created_at"], name="activity_conv_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.conversation_id}"


class ConversationRead(models.Model):
    """When a user last read a conversation: unread means newer mail arrived since."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reads"
    )
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="reads")
    read_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["user", "conversation"], name="conversationread_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.conversation_id}"


class Notification(models.Model):
    """An in-app notification (an @mention, an assignment)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, null=True, blank=True)
    kind = models.CharField(max_length=30)
    text = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["user", "read_at"], name="notification_unread_idx"),
        ]

    def __str__(self) -> str:
        return self.text


class OutgoingMessage(models.Model):
    """The outbox: a reply is saved here with its Message-ID before any attempt to send it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    mailbox = models.ForeignKey(MailAccount, on_delete=models.CASCADE, related_name="outbox")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, null=True, related_name="outbox"
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    message_id = models.CharField(max_length=998, unique=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.JSONField(default=list, blank=True)
    to = models.JSONField(default=list)
    cc = models.JSONField(default=list, blank=True)
    bcc = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    body_text = models.TextField()
    raw_sha256 = models.CharField(
        max_length=64, blank=True, help_text="The exact MIME that was sent."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    appended_to_sent = models.BooleanField(default=False)
    forwarded_message = models.ForeignKey(
        "Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="For a forward: the message whose attachments go along.",
    )

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.subject} ({self.status})"


class Heartbeat(models.Model):
    """Last sign of life from a background process (worker, beat), read by /healthz."""

    name = models.CharField(max_length=40, primary_key=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"
