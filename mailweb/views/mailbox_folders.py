"""Mailboxes → Folders (admins): which folders of an IMAP mailbox are synced.

The choice is stored in the mailbox's ``folders_to_sync``: the role of a well-known folder
(Sent, Archive...), which survives a rename or a localised name, else the folder's name. It
takes effect on the next sync pass, enqueued at once; the sync is the only writer of a
mailbox's folders (one writer per mailbox, DESIGN.md), so this page never changes them itself.

The Inbox is always synced: push and the newest-first initial sync start from it. A folder
that stops being synced has its messages removed from Mailweb (they stay on the server), so a
choice that drops folders holding messages must be confirmed, with their names and counts.
"""

from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.decorators import admin_required
from accounts.models import MailAccount
from mailweb.models import Folder, Message

#: The well-known roles, in the order the choice lists them (Folder.Role's order).
_ROLE_ORDER = [str(role) for role in Folder.Role if role != Folder.Role.OTHER]
_KNOWN_ROLES = set(_ROLE_ORDER)


def _label(folder: Folder, stored: int) -> str:
    role = f" ({folder.get_role_display()})" if folder.role in _KNOWN_ROLES else ""
    count = f" · {stored:,} message{'s' if stored != 1 else ''} in Mailweb" if stored else ""
    return f"{folder.name}{role}{count}"


class FolderChoiceForm(forms.Form):
    folders = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple, required=False, label="Also sync"
    )
    confirm_removal = forms.BooleanField(
        required=False, label="Remove the messages of the folders I stop syncing from Mailweb"
    )

    def __init__(
        self, *args: Any, folders: list[Folder], stored: dict[int, int], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.stored = stored
        self.optional = [folder for folder in folders if folder.role != Folder.Role.INBOX]
        self.inboxes = [folder for folder in folders if folder.role == Folder.Role.INBOX]
        field = self.fields["folders"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(str(f.pk), _label(f, stored.get(f.pk, 0))) for f in self.optional]
        field.initial = [str(folder.pk) for folder in self.optional if folder.sync_enabled]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        chosen = set(data.get("folders") or [])
        self.chosen = [folder for folder in self.optional if str(folder.pk) in chosen]
        dropped = [
            folder
            for folder in self.optional
            if folder.sync_enabled and str(folder.pk) not in chosen and self.stored.get(folder.pk)
        ]
        if dropped and not data.get("confirm_removal"):
            names = ", ".join(f"{f.name} ({self.stored[f.pk]:,})" for f in dropped)
            self.add_error(
                "confirm_removal",
                f"Stopping {names} removes those messages from Mailweb; they stay on the server. "
                "Tick the box to go ahead.",
            )
        return data

    def folders_to_sync(self) -> list[str]:
        """For ``MailAccount.folders_to_sync``: roles in Folder.Role's order, then names."""
        entries = {f.role if f.role in _KNOWN_ROLES else f.name for f in self.chosen}
        entries.add(str(Folder.Role.INBOX))
        roles = [role for role in _ROLE_ORDER if role in entries]
        return roles + sorted(entries - _KNOWN_ROLES)


@never_cache
@admin_required
@require_http_methods(["GET", "POST"])
def mailbox_folders(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = get_object_or_404(MailAccount, pk=pk)
    if not mailbox.uses_imap:
        raise Http404("only IMAP mailboxes have folders to choose")
    folders = list(Folder.objects.filter(mailbox=mailbox).order_by("name"))
    stored = dict(
        Message.objects.filter(mailbox=mailbox, folder__isnull=False)
        .values_list("folder")
        .annotate(count=Count("id"))
        .values_list("folder", "count")
    )
    form = FolderChoiceForm(request.POST or None, folders=folders, stored=stored)
    if request.method == "POST" and form.is_valid():
        from sync.tasks import enqueue_sync

        mailbox.folders_to_sync = form.folders_to_sync()
        mailbox.save(update_fields=["folders_to_sync"])
        enqueue_sync(mailbox.pk)
        messages.success(
            request, f"Saved the folders of {mailbox.address}; a sync starts now to apply them."
        )
        return redirect("mailboxes")
    return render(
        request,
        "mailweb/mailboxes_folders.html",
        {"mailbox": mailbox, "form": form, "inboxes": form.inboxes, "has_folders": bool(folders)},
    )
