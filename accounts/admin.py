"""Django admin for people and mailboxes. Credentials are never shown or editable here."""

from typing import ClassVar

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import AdminAlert, MailAccount, MailboxAccess, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "name", "role", "is_active", "last_login")
    list_filter = ("role", "is_active")
    search_fields = ("email", "name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name", "role", "is_active", "microsoft_oid")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {"classes": ("wide",), "fields": ("email", "name", "role", "password1", "password2")},
        ),
    )
    filter_horizontal = ()


class MailboxAccessInline(admin.TabularInline):
    model = MailboxAccess
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(MailAccount)
class MailAccountAdmin(admin.ModelAdmin):
    list_display = ("address", "method", "status", "last_sync_at", "is_shared")
    list_filter = ("method", "status", "is_shared")
    search_fields = ("address", "display_name")
    readonly_fields = (
        "status_reason",
        "connected_at",
        "connected_by",
        "status_changed_at",
        "last_sync_started_at",
        "last_sync_at",
        "access_token_expires_at",
    )
    exclude = ("credentials",)
    inlines: ClassVar[list[type[admin.options.InlineModelAdmin]]] = [MailboxAccessInline]


@admin.register(AdminAlert)
class AdminAlertAdmin(admin.ModelAdmin):
    list_display = ("kind", "mailbox", "created_at", "resolved_at")
    list_filter = ("kind",)
