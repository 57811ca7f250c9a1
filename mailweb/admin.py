"""Django admin for the mail store, for inspection and repairs."""

from django.contrib import admin

from mailweb import models


@admin.register(models.Folder)
class FolderAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "mailbox",
        "role",
        "sync_enabled",
        "uidvalidity",
        "uidnext",
        "synced_count",
        "last_synced_at",
    )
    list_filter = ("role", "sync_enabled")


@admin.register(models.Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("subject", "mailbox", "status", "assignee", "message_count", "last_activity_at")
    list_filter = ("status", "mailbox")
    search_fields = ("subject",)
    raw_id_fields = ("assignee",)


@admin.register(models.Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("subject", "from_address", "mailbox", "folder", "uid", "date", "parse_error")
    list_filter = ("mailbox", "direction")
    search_fields = ("subject", "from_address", "message_id")
    raw_id_fields = ("conversation", "folder")


@admin.register(models.Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ("filename", "content_type", "size", "message")
    raw_id_fields = ("message",)


@admin.register(models.Note)
class NoteAdmin(admin.ModelAdmin):
    list_display = ("conversation", "author", "created_at")
    raw_id_fields = ("conversation",)


@admin.register(models.Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ("name", "color")


@admin.register(models.Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = ("conversation", "actor", "kind", "created_at")
    raw_id_fields = ("conversation",)


@admin.register(models.OutgoingMessage)
class OutgoingMessageAdmin(admin.ModelAdmin):
    list_display = ("subject", "mailbox", "status", "attempts", "created_at", "sent_at")
    list_filter = ("status",)
    raw_id_fields = ("conversation",)


admin.site.register(models.Notification)
admin.site.register(models.ConversationRead)
admin.site.register(models.Heartbeat)
admin.site.site_header = "Mailweb administration"
