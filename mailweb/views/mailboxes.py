"""The Mailboxes page (admins): every mailbox with its connection state and sync progress,
and the actions on it: add an IMAP mailbox, disconnect, grant or revoke a member's access.

Connecting and reconnecting with Microsoft live in ``accounts.views.microsoft``; this page lives
in mailweb because it shows sync progress from the mail store.
"""

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import actions, microsoft
from accounts.decorators import admin_required
from accounts.forms import AddImapMailboxForm, DisconnectForm, GrantAccessForm
from accounts.models import MailAccount, MailboxAccess, User
from mailweb.models import Conversation, Message
from mailweb.selectors import SyncProgress, mailbox_progress


@dataclass
class MailboxRow:
    mailbox: MailAccount
    progress: SyncProgress
    grants: list[MailboxAccess]
    grant_form: GrantAccessForm

    @property
    def percent(self) -> int:
        if not self.progress.total:
            return 0
        return min(100, int(100 * self.progress.synced / self.progress.total))

    @property
    def eta(self) -> str:
        return format_duration(self.progress.eta_seconds)

    @property
    def needs_attention(self) -> bool:
        return self.mailbox.status in (
            MailAccount.Status.NEEDS_RECONNECT,
            MailAccount.Status.ERROR,
        )


def format_duration(seconds: int | None) -> str:
    """ "about 3 minutes" style; empty when unknown."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "less than a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours = round(seconds / 3600, 1)
    return f"about {hours:g} hour{'s' if hours != 1 else ''}"


@never_cache
@admin_required
def mailbox_list(request: HttpRequest) -> HttpResponse:
    grants = MailboxAccess.objects.select_related("user").order_by("user__email")
    mailboxes = MailAccount.objects.prefetch_related(Prefetch("access", queryset=grants))
    rows = [
        MailboxRow(
            mailbox=mailbox,
            progress=mailbox_progress(mailbox),
            grants=list(mailbox.access.all()),
            grant_form=GrantAccessForm(mailbox=mailbox, auto_id=f"id_grant_{mailbox.pk}_%s"),
        )
        for mailbox in mailboxes
    ]
    rows.sort(key=lambda row: (not row.needs_attention, row.mailbox.address.lower()))
    return render(
        request,
        "mailweb/mailboxes.html",
        {
            "rows": rows,
            "microsoft_configured": microsoft.is_configured(),
            "missing_settings": microsoft.missing_settings(),
            "has_members": User.objects.filter(is_active=True, role=User.Role.MEMBER).exists(),
        },
    )


@never_cache
@admin_required
@require_http_methods(["GET", "POST"])
def add_imap(request: HttpRequest) -> HttpResponse:
    """Add a mailbox on any IMAP server with a password, once its settings have worked.

    The servers are asked first (``sync.password_check``), so a wrong host, port, encryption
    mode or password shows beside its field. When they cannot be reached right now, the form
    offers to save the settings anyway, and the sync keeps retrying.
    """
    existing = actions.saved_password_mailbox(
        request.POST.get("address") or request.GET.get("address", "")
    )
    initial = _saved_settings(existing) if existing else {"address": request.GET.get("address", "")}
    form = AddImapMailboxForm(request.POST or None, initial=initial)
    if existing:  # these are its settings: another address would add a second mailbox
        form.fields["address"].widget.attrs["readonly"] = True
    check_failed = False
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        settings = {
            "imap_host": data["imap_host"],
            "imap_port": data["imap_port"],
            "username": data["username"],
            "password": data["password"],
            "smtp_host": data["smtp_host"],
            "smtp_port": data["smtp_port"],
            "imap_security": data["imap_security"] or None,
            "smtp_security": data["smtp_security"] or None,
        }
        conflict = actions.password_mailbox_conflict(data["address"])
        if conflict:
            form.add_error("address", conflict)
        elif not data["save_unchecked"]:
            check_failed = _report_problems(form, settings)
        if form.is_valid():
            try:
                mailbox = actions.add_password_mailbox(
                    data["address"], display_name=data["display_name"], **settings
                )
            except actions.MailboxConflict as exc:
                form.add_error("address", str(exc))
            else:
                outcome = (
                    "Its settings were not checked; the sync will try them shortly."
                    if data["save_unchecked"]
                    else "Signed in successfully; it will start syncing shortly."
                )
                messages.success(request, f"Added {mailbox.address}. {outcome}")
                return redirect("mailboxes")
    return render(
        request,
        "mailweb/mailboxes_add_imap.html",
        {"form": form, "check_failed": check_failed, "existing": existing},
    )


def _saved_settings(mailbox: MailAccount) -> dict[str, Any]:
    """The form's starting values for a mailbox that has them: a new password (the Mailboxes
    page's "Sign-in settings") must not mean typing every server setting again, and a field
    left empty would otherwise replace the saved value."""
    same_login = mailbox.username.lower() == mailbox.address.lower()
    return {
        "address": mailbox.address,
        "display_name": mailbox.display_name,
        "imap_host": mailbox.imap_host,
        "imap_port": mailbox.imap_port,
        "imap_security": mailbox.imap_security,
        "username": "" if same_login else mailbox.username,
        "smtp_host": mailbox.smtp_host,
        "smtp_port": mailbox.smtp_port,
        "smtp_security": mailbox.smtp_security,
    }


def _report_problems(form: AddImapMailboxForm, settings: dict[str, Any]) -> bool:
    """Sign in with ``settings``; add what went wrong to the form's fields. True if anything did."""
    from sync.password_check import check_password_mailbox  # sync's public check

    problems = check_password_mailbox(**settings)
    for field, problem in problems.items():
        form.add_error(field, problem)
    return bool(problems)


@never_cache
@admin_required
@require_http_methods(["GET", "POST"])
def disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm, then forget the credentials and keep or delete the synced mail."""
    mailbox = get_object_or_404(MailAccount, pk=pk)
    form = DisconnectForm(request.POST or None, mailbox=mailbox)
    if request.method == "POST" and form.is_valid():
        address = mailbox.address
        actions.disconnect_mailbox(mailbox, delete_mail=form.delete_mail)
        if form.delete_mail:
            messages.success(request, f"Disconnected {address} and deleted its mail.")
        else:
            messages.success(
                request, f"Disconnected {address}. Its mail stays readable; reconnect to resume."
            )
        return redirect("mailboxes")
    counts = {
        "messages": Message.objects.filter(mailbox=mailbox).count(),
        "conversations": Conversation.objects.filter(mailbox=mailbox).count(),
    }
    return render(
        request,
        "mailweb/mailboxes_disconnect.html",
        {"mailbox": mailbox, "form": form, "counts": counts},
    )


@admin_required
@require_POST
def grant_access(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = get_object_or_404(MailAccount, pk=pk)
    form = GrantAccessForm(request.POST, mailbox=mailbox)
    if form.is_valid():
        user = form.cleaned_data["user"]
        actions.grant_mailbox_access(mailbox, user)
        messages.success(request, f"{user.email} can now work in {mailbox.address}.")
    else:
        messages.error(request, "Choose a team member who does not have access yet.")
    return redirect("mailboxes")


@admin_required
@require_POST
def revoke_access(request: HttpRequest, pk: int, user_id: int) -> HttpResponse:
    mailbox = get_object_or_404(MailAccount, pk=pk)
    user = get_object_or_404(User, pk=user_id)
    if actions.revoke_mailbox_access(mailbox, user):
        messages.success(request, f"{user.email} no longer has access to {mailbox.address}.")
    return redirect("mailboxes")
