"""People, roles, connected mailboxes and who may see which mailbox.

Credentials for a mailbox live in one encrypted column (``MailAccount.credentials``); only the
vault (``accounts.vault``) reads or writes it, and nothing here ever renders it.
"""

from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    """Creates users keyed by a normalised (lower-case) email address."""

    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> "User":
        if not email:
            raise ValueError("A user needs an email address")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def get_by_natural_key(self, username: str | None) -> "User":
        """Sign-in matches the address case-insensitively, as mail systems do."""
        return self.get(email__iexact=username or "")

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> "User":
        fields.setdefault("role", User.Role.ADMIN)
        fields.setdefault("is_superuser", True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A team member who signs in with an email address (password or Microsoft)."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    microsoft_oid = models.CharField(
        max_length=64, blank=True, help_text="Entra object id, set after 'Sign in with Microsoft'."
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ("email",)

    def __str__(self) -> str:
        return self.email

    @property
    def is_admin(self) -> bool:
        return self.is_active and (self.role == self.Role.ADMIN or self.is_superuser)

    @property
    def is_staff(self) -> bool:
        """Admins reach the Django admin; the role is the single source of truth."""
        return self.is_admin

    def has_perm(self, perm: str, obj: models.Model | None = None) -> bool:
        return self.is_admin or super().has_perm(perm, obj)

    def has_module_perms(self, app_label: str) -> bool:
        return self.is_admin or super().has_module_perms(app_label)

    @property
    def display_name(self) -> str:
        return self.name or self.email.split("@")[0]


#: How a connection is encrypted: TLS from the first byte, or a plain connection upgraded with
#: STARTTLS.
SECURITY_MODES = [("ssl", "TLS"), ("starttls", "STARTTLS")]
IMAP_TLS_PORT, SMTP_TLS_PORT = 993, 465


def security_for_port(chosen: str | None, port: int, tls_port: int) -> str:
    """The chosen encryption mode, else the one the port implies: TLS on the protocol's
    well-known TLS port, STARTTLS anywhere else."""
    return chosen or ("ssl" if int(port) == tls_port else "starttls")


class MailAccount(models.Model):
    """A connected mailbox (own or shared) and the state of its connection."""

    class Method(models.TextChoices):
        GRAPH = "graph", "Microsoft Graph"
        MICROSOFT_IMAP = "microsoft_imap", "Microsoft IMAP (OAuth 2.0)"
        IMAP_PASSWORD = "imap_password", "IMAP with password"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SYNCING = "syncing", "Syncing"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"
        ERROR = "error", "Error"
        DISABLED = "disabled", "Disabled"

    address = models.EmailField(
        help_text="The mailbox's address; for a shared mailbox, the shared one."
    )
    display_name = models.CharField(max_length=200, blank=True)
    method = models.CharField(max_length=20, choices=Method.choices)
    is_shared = models.BooleanField(
        default=False, help_text="Reached with a delegate's rights (Microsoft shared mailbox)."
    )
    delegate_address = models.EmailField(
        blank=True, help_text="The account that consented; its tokens reach the shared mailbox."
    )
    tenant_id = models.CharField(max_length=64, blank=True)

    imap_host = models.CharField(max_length=255, blank=True)
    imap_port = models.PositiveIntegerField(default=993)
    imap_security = models.CharField(max_length=10, default="ssl", choices=SECURITY_MODES)
    smtp_host = models.CharField(max_length=255, blank=True)
    smtp_port = models.PositiveIntegerField(default=587)
    smtp_security = models.CharField(max_length=10, default="starttls", choices=SECURITY_MODES)
    username = models.CharField(
        max_length=255, blank=True, help_text="Login name for password IMAP."
    )
    folders_to_sync = models.JSONField(
        default=list,
        blank=True,
        help_text="Folder roles or names to sync; empty means inbox, sent, archive.",
    )
    signature = models.TextField(blank=True)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(
        max_length=40,
        blank=True,
        help_text="Why the status is what it is, for code: revoked, expired, consent, "
        "app_credentials, disconnected, ... (last_error has the sentence for people).",
    )
    last_error = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    last_sync_started_at = models.DateTimeField(null=True, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True, help_text="Last successful sync.")

    credentials = models.BinaryField(
        default=b"",
        editable=False,
        help_text="Fernet-encrypted JSON; only accounts.vault reads it.",
    )
    access_token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    connected_at = models.DateTimeField(
        null=True, blank=True, help_text="When the mailbox was last connected or reconnected."
    )
    connected_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("address",)
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(Lower("address"), name="mailaccount_address_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.address

    def __repr__(self) -> str:
        # Never include credentials in a repr that could end up in a log or traceback.
        return f"<MailAccount {self.pk} {self.address} {self.method} {self.status}>"

    @property
    def uses_oauth(self) -> bool:
        return self.method in {self.Method.GRAPH, self.Method.MICROSOFT_IMAP}

    @property
    def uses_imap(self) -> bool:
        return self.method in IMAP_METHODS

    @property
    def login_name(self) -> str:
        """The IMAP/SMTP user name: the (shared) address for OAuth, else the configured username."""
        return self.address if self.uses_oauth else (self.username or self.address)


#: The methods whose mail is synced over IMAP; a Graph mailbox is not.
IMAP_METHODS = frozenset({MailAccount.Method.MICROSOFT_IMAP, MailAccount.Method.IMAP_PASSWORD})


class MailboxAccess(models.Model):
    """Grants one user the right to see and work in one mailbox (admins see every mailbox)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="mailbox_access")
    mailbox = models.ForeignKey(MailAccount, on_delete=models.CASCADE, related_name="access")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["user", "mailbox"], name="mailboxaccess_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.mailbox}"


class AdminAlert(models.Model):
    """Something an admin must act on (a revoked token, an expired client secret).

    Shown as a banner on every page an admin sees until resolved.
    """

    mailbox = models.ForeignKey(
        MailAccount, on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    kind = models.CharField(max_length=40)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["resolved_at"], name="adminalert_open_idx")
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message[:60]}"
