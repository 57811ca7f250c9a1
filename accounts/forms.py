"""Forms of the Mailboxes pages (connect, add IMAP, access, disconnect)."""

from typing import Any

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from accounts.models import SECURITY_MODES, MailAccount, User


class ConnectMicrosoftForm(forms.Form):
    """What to connect: the sync method and, optionally, a shared mailbox to reach."""

    method = forms.ChoiceField(
        choices=[
            (
                MailAccount.Method.MICROSOFT_IMAP,
                "IMAP and SMTP with OAuth 2.0 (recommended)",
            ),
            (
                MailAccount.Method.GRAPH,
                "Microsoft Graph — coming: mail syncs once Mailweb's Graph engine ships; until "
                "then the mailbox stays connected and authorised",
            ),
        ],
        initial=MailAccount.Method.MICROSOFT_IMAP,
        widget=forms.RadioSelect,
        label="Sync method",
    )
    shared_address = forms.EmailField(
        required=False,
        label="Shared mailbox (optional)",
        help_text="Leave empty to connect the mailbox of the account you sign in with. For a "
        "shared mailbox, enter its address and sign in with an account that has Full Access "
        "to it.",
    )

    def clean_shared_address(self) -> str:
        return str(self.cleaned_data.get("shared_address") or "").strip().lower()


PORT = [MinValueValidator(1), MaxValueValidator(65535)]


class AddImapMailboxForm(forms.Form):
    """A mailbox on any IMAP server that signs in with a password."""

    address = forms.EmailField(label="Email address")
    display_name = forms.CharField(max_length=200, required=False, label="Display name")
    imap_host = forms.CharField(max_length=255, label="IMAP server")
    imap_port = forms.IntegerField(initial=993, validators=PORT, label="IMAP port")
    imap_security = forms.ChoiceField(
        choices=[("", "By port: TLS on 993, else STARTTLS"), *SECURITY_MODES],
        required=False,
        label="IMAP encryption",
    )
    username = forms.CharField(
        max_length=255, required=False, help_text="Leave empty to use the email address."
    )
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False), strip=False, max_length=1000
    )
    smtp_host = forms.CharField(
        max_length=255, required=False, label="SMTP server", help_text="For sending replies."
    )
    smtp_port = forms.IntegerField(initial=587, validators=PORT, label="SMTP port")
    smtp_security = forms.ChoiceField(
        choices=[("", "By port: TLS on 465, else STARTTLS"), *SECURITY_MODES],
        required=False,
        label="SMTP encryption",
    )
    save_unchecked = forms.BooleanField(
        required=False,
        label="Save without signing in first",
        help_text="The sync keeps trying, and the Mailboxes page shows what fails.",
    )

    def clean_imap_host(self) -> str:
        return _host(self.cleaned_data["imap_host"])

    def clean_smtp_host(self) -> str:
        value = self.cleaned_data.get("smtp_host") or ""
        return _host(value) if value else ""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("address") and not data.get("username"):
            data["username"] = data["address"]
        return data


def _host(value: str) -> str:
    value = value.strip()
    if not value or any(c.isspace() for c in value) or "/" in value:
        raise forms.ValidationError("Enter a host name such as imap.example.com.")
    return value


class GrantAccessForm(forms.Form):
    """Give a team member access to a mailbox."""

    user = forms.ModelChoiceField(queryset=User.objects.none(), label="Team member")

    def __init__(self, *args: Any, mailbox: MailAccount, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["user"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = (
            User.objects.filter(is_active=True, role=User.Role.MEMBER, is_superuser=False)
            .exclude(mailbox_access__mailbox=mailbox)
            .order_by("email")
        )


class DisconnectForm(forms.Form):
    """Disconnect: the credentials go at once; the admin chooses what happens to the mail."""

    mail = forms.ChoiceField(
        choices=[
            ("keep", "Keep the synced mail (read-only; reconnect later to continue)"),
            ("delete", "Delete the mailbox and all mail synced from it"),
        ],
        widget=forms.RadioSelect,
        initial="keep",
        label="Synced mail",
    )
    confirm_address = forms.CharField(
        required=False,
        label="To delete, type the mailbox address",
    )

    def __init__(self, *args: Any, mailbox: MailAccount, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mailbox = mailbox

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        typed = str(data.get("confirm_address") or "").strip().lower()
        if data.get("mail") == "delete" and typed != self.mailbox.address.lower():
            self.add_error("confirm_address", "Type the address exactly to delete its mail.")
        return data

    @property
    def delete_mail(self) -> bool:
        return self.cleaned_data.get("mail") == "delete"
