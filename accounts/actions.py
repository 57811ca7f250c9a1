"""Every change to mailboxes, their connection state and who may see them.

Views, tasks and management commands call these; each runs in one transaction and announces
what happened (signals to sync, alerts and email to admins) only after it commits.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.dispatch import Signal
from django.urls import reverse
from django.utils import timezone

from accounts import signals, vault
from accounts.endpoints import microsoft_imap_address, microsoft_smtp_address
from accounts.models import (
    IMAP_TLS_PORT,
    SMTP_TLS_PORT,
    AdminAlert,
    MailAccount,
    MailboxAccess,
    User,
    security_for_port,
)

logger = logging.getLogger(__name__)

ALERT_NEEDS_RECONNECT = "needs_reconnect"
ALERT_MICROSOFT_APP = "microsoft_app"
APP_CREDENTIALS = "app_credentials"


class MailboxConflict(ValueError):
    """The address is already used by a mailbox that this action must not take over."""


# --- connecting and disconnecting -----------------------------------------------------------


@transaction.atomic
def connect_microsoft_mailbox(
    address: str,
    *,
    method: str,
    tenant_id: str,
    refresh_token: str,
    access_token: str | None = None,
    resource: str | None = None,
    expires_at: float | None = None,
    is_shared: bool = False,
    delegate_address: str = "",
    display_name: str = "",
    connected_by: User | None = None,
) -> tuple[MailAccount, bool]:
    """Create or update (case-insensitively by address) a mailbox connected with Microsoft.

    Returns ``(mailbox, created)``. A reconnect clears "needs reconnect" and resolves the
    mailbox's alerts; the new grant replaces every stored secret. ``mailbox_connected`` is
    sent after commit.
    """
    if method not in (MailAccount.Method.MICROSOFT_IMAP, MailAccount.Method.GRAPH):
        raise ValueError(f"{method!r} is not a Microsoft method")
    address = address.strip()
    mailbox, created = _lock_or_create(address, method)
    now = timezone.now()
    mailbox.method = method
    mailbox.is_shared = is_shared
    mailbox.delegate_address = delegate_address if is_shared else ""
    mailbox.tenant_id = tenant_id
    mailbox.username = ""
    if display_name and not mailbox.display_name:
        mailbox.display_name = display_name[:200]
    if method == MailAccount.Method.MICROSOFT_IMAP:
        mailbox.imap_host, mailbox.imap_port = microsoft_imap_address()
        mailbox.imap_security = "ssl"
        mailbox.smtp_host, mailbox.smtp_port = microsoft_smtp_address()
        mailbox.smtp_security = security_for_port(None, mailbox.smtp_port, SMTP_TLS_PORT)
    if mailbox.status != MailAccount.Status.ACTIVE or created:
        mailbox.status_changed_at = now
    mailbox.status = MailAccount.Status.ACTIVE
    mailbox.status_reason = ""
    mailbox.last_error = ""
    mailbox.connected_at = now
    mailbox.connected_by = connected_by
    mailbox.save()
    vault.store_oauth_tokens(
        mailbox,
        refresh_token,
        access_token=access_token,
        resource=resource,
        expires_at=expires_at,
        replace=True,
    )
    AdminAlert.objects.filter(mailbox=mailbox, resolved_at__isnull=True).update(resolved_at=now)
    # A completed sign-in proves the client secret works again.
    AdminAlert.objects.filter(kind=ALERT_MICROSOFT_APP, resolved_at__isnull=True).update(
        resolved_at=now
    )
    vault.clear_backoff(mailbox)
    pk = mailbox.pk
    transaction.on_commit(lambda: _announce(signals.mailbox_connected, mailbox_id=pk))
    logger.info("mailbox %s (%s) %s", pk, method, "connected" if created else "reconnected")
    return mailbox, created


def _lock_or_create(address: str, method: str) -> tuple[MailAccount, bool]:
    """The mailbox with this address (row-locked), or a new one; safe against a race."""
    existing = MailAccount.objects.select_for_update().filter(address__iexact=address).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return MailAccount.objects.create(address=address, method=method), True
    except IntegrityError:  # Someone created it a moment ago: update theirs instead.
        return MailAccount.objects.select_for_update().get(address__iexact=address), False


def saved_password_mailbox(address: str) -> MailAccount | None:
    """The password mailbox with this address, if there is one: changing its password starts
    from its saved settings (the Mailboxes page's form, ``manage.py addmailbox`` run again)."""
    if not address.strip():
        return None
    return MailAccount.objects.filter(
        address__iexact=address.strip(), method=MailAccount.Method.IMAP_PASSWORD
    ).first()


def password_mailbox_conflict(address: str) -> str:
    """Why ``address`` cannot be added with a password, or "" when it can.

    For checks before ``add_password_mailbox`` (which raises the same as ``MailboxConflict``),
    such as the Add IMAP mailbox page's, which would otherwise sign in to a server first.
    """
    return _password_conflict(MailAccount.objects.filter(address__iexact=address.strip()).first())


def _password_conflict(existing: MailAccount | None) -> str:
    if existing is None or not existing.uses_oauth:
        return ""
    if existing.status == MailAccount.Status.DISABLED:
        return ""
    return (
        f"{existing.address} is connected with Microsoft; disconnect it before adding it with "
        "a password."
    )


@transaction.atomic
def add_password_mailbox(
    address: str,
    *,
    imap_host: str,
    imap_port: int,
    username: str,
    password: str,
    smtp_host: str = "",
    smtp_port: int = 587,
    display_name: str = "",
    imap_security: str | None = None,
    smtp_security: str | None = None,
) -> MailAccount:
    """Add (or update) a mailbox on any IMAP server that signs in with a password.

    Security defaults follow the port: IMAP 993 → TLS else STARTTLS; SMTP 465 → TLS else
    STARTTLS. Refuses (MailboxConflict) to take over an address connected with Microsoft;
    disconnect that one first.
    """
    address = address.strip()
    existing = MailAccount.objects.select_for_update().filter(address__iexact=address).first()
    conflict = _password_conflict(existing)
    if conflict:
        raise MailboxConflict(conflict)
    mailbox, created = (existing, False) if existing else _lock_or_create(address, "")
    now = timezone.now()
    mailbox.method = MailAccount.Method.IMAP_PASSWORD
    mailbox.imap_host, mailbox.imap_port = imap_host.strip(), int(imap_port)
    mailbox.imap_security = security_for_port(imap_security, imap_port, IMAP_TLS_PORT)
    mailbox.smtp_host, mailbox.smtp_port = smtp_host.strip(), int(smtp_port)
    mailbox.smtp_security = security_for_port(smtp_security, smtp_port, SMTP_TLS_PORT)
    mailbox.username = username.strip()
    mailbox.is_shared, mailbox.delegate_address, mailbox.tenant_id = False, "", ""
    if display_name:
        mailbox.display_name = display_name[:200]
    if created or mailbox.status != MailAccount.Status.ACTIVE:
        mailbox.status_changed_at = now
    mailbox.status = MailAccount.Status.ACTIVE
    mailbox.status_reason = ""
    mailbox.last_error = ""
    mailbox.connected_at = now
    mailbox.save()
    vault.clear_credentials(mailbox)  # Nothing of an earlier OAuth grant may remain.
    vault.store_password(mailbox, password)
    AdminAlert.objects.filter(mailbox=mailbox, resolved_at__isnull=True).update(resolved_at=now)
    pk = mailbox.pk
    transaction.on_commit(lambda: _announce(signals.mailbox_connected, mailbox_id=pk))
    return mailbox


@transaction.atomic
def disconnect_mailbox(mailbox: MailAccount, delete_mail: bool) -> None:
    """Forget the mailbox's credentials at once; keep its mail (status "disabled", can be
    reconnected later) or delete the mailbox with everything synced from it.

    ``mailbox_disconnected`` is sent after commit with ``deleted``.
    """
    locked = MailAccount.objects.select_for_update().get(pk=mailbox.pk)
    vault.clear_credentials(locked)
    vault.clear_backoff(locked)
    pk = locked.pk
    if delete_mail:
        locked.delete()  # Cascades to folders, messages, conversations, access grants.
    else:
        now = timezone.now()
        AdminAlert.objects.filter(mailbox=locked, resolved_at__isnull=True).update(resolved_at=now)
        locked.status = MailAccount.Status.DISABLED
        locked.status_reason = "disconnected"
        locked.last_error = ""
        locked.status_changed_at = now
        locked.save(update_fields=["status", "status_reason", "last_error", "status_changed_at"])
    mailbox.credentials = b""
    mailbox.status = MailAccount.Status.DISABLED
    transaction.on_commit(
        lambda: _announce(signals.mailbox_disconnected, mailbox_id=pk, deleted=delete_mail)
    )
    logger.info("mailbox %s disconnected (%s)", pk, "mail deleted" if delete_mail else "mail kept")


# --- connection problems ------------------------------------------------------------------


@transaction.atomic
def mark_needs_reconnect(
    mailbox: MailAccount, reason: str, *, status_reason: str = "reconnect", code: str = ""
) -> bool:
    """Put the mailbox in "needs reconnect": token requests stop until a person reconnects.

    Once per incident: the first call creates an admin alert and emails the admins; later
    calls (retries, other workers) return False and change nothing.
    """
    locked = MailAccount.objects.select_for_update().get(pk=mailbox.pk)
    if locked.status == MailAccount.Status.NEEDS_RECONNECT:
        return False
    message = f"{reason} ({code})" if code else reason
    locked.status = MailAccount.Status.NEEDS_RECONNECT
    locked.status_reason = status_reason[:40]
    locked.last_error = message
    locked.status_changed_at = timezone.now()
    locked.save(update_fields=["status", "status_reason", "last_error", "status_changed_at"])
    mailbox.status, mailbox.last_error = locked.status, locked.last_error
    mailbox.status_reason = locked.status_reason
    AdminAlert.objects.create(mailbox=locked, kind=ALERT_NEEDS_RECONNECT, message=message)
    link = settings.MAILWEB_BASE_URL + reverse("mailbox_reconnect", args=[locked.pk])
    subject = f"Mailweb: reconnect the mailbox {locked.address}"
    how = (
        f"Reconnect it here, signing in with Microsoft as "
        f"{locked.delegate_address or locked.address}"
        if locked.uses_oauth
        else "Enter its password again here"
    )
    body = (
        f"Mailweb can no longer reach the mailbox {locked.address}.\n\n{message}\n\n"
        f"Until it is reconnected, Mailweb neither syncs this mailbox nor sends from it. "
        f"{how}:\n{link}\n"
    )
    transaction.on_commit(lambda: email_admins(subject, body))
    logger.warning("mailbox %s needs reconnect (%s)", locked.pk, code or status_reason)
    return True


@transaction.atomic
def mark_app_registration_error(mailbox: MailAccount, reason: str, *, code: str = "") -> bool:
    """Microsoft rejects the app (client secret, registration): one alert for all mailboxes,
    one email per incident; the mailbox shows the error. Returns True for a new incident."""
    message = f"{reason} ({code})" if code else reason
    locked = MailAccount.objects.select_for_update().get(pk=mailbox.pk)
    if locked.status != MailAccount.Status.DISABLED:
        if locked.status != MailAccount.Status.ERROR:
            locked.status_changed_at = timezone.now()
        locked.status = MailAccount.Status.ERROR
        locked.status_reason = APP_CREDENTIALS
        locked.last_error = message
        locked.save(update_fields=["status", "status_reason", "last_error", "status_changed_at"])
        mailbox.status, mailbox.status_reason = locked.status, locked.status_reason
        mailbox.last_error = locked.last_error
    # One open alert per incident, shared by all mailboxes. (Two mailboxes failing in the
    # very same instant could both create one; that costs a second email, nothing more.)
    if AdminAlert.objects.filter(kind=ALERT_MICROSOFT_APP, resolved_at__isnull=True).exists():
        return False
    AdminAlert.objects.create(kind=ALERT_MICROSOFT_APP, message=message)
    subject = "Mailweb: Microsoft rejects Mailweb's app registration"
    body = (
        "Microsoft refused Mailweb's token requests because of the app registration, so no "
        f"Microsoft mailbox can sync until this is fixed.\n\n{message}\n\n"
        f"Mailboxes: {settings.MAILWEB_BASE_URL}{reverse('mailboxes')}\n"
    )
    transaction.on_commit(lambda: email_admins(subject, body))
    logger.error("Microsoft rejects the app registration (%s)", code or "no code")
    return True


@transaction.atomic
def clear_app_registration_error(mailbox: MailAccount) -> None:
    """A token request worked again: the app registration problem is over."""
    now = timezone.now()
    MailAccount.objects.filter(pk=mailbox.pk, status_reason=APP_CREDENTIALS).update(
        status=MailAccount.Status.ACTIVE, status_reason="", last_error="", status_changed_at=now
    )
    mailbox.status, mailbox.status_reason, mailbox.last_error = MailAccount.Status.ACTIVE, "", ""
    AdminAlert.objects.filter(kind=ALERT_MICROSOFT_APP, resolved_at__isnull=True).update(
        resolved_at=now
    )


# --- who may see which mailbox ---------------------------------------------------------------


@transaction.atomic
def grant_mailbox_access(mailbox: MailAccount, user: User) -> bool:
    """Let ``user`` see and work in ``mailbox``; True if the grant is new."""
    _, created = MailboxAccess.objects.get_or_create(mailbox=mailbox, user=user)
    return created


@transaction.atomic
def revoke_mailbox_access(mailbox: MailAccount, user: User) -> bool:
    """Take the grant away; True if there was one."""
    deleted, _ = MailboxAccess.objects.filter(mailbox=mailbox, user=user).delete()
    return deleted > 0


# --- helpers ---------------------------------------------------------------------------------


def admin_recipients() -> list[str]:
    admins = User.objects.filter(is_active=True).filter(
        Q(role=User.Role.ADMIN) | Q(is_superuser=True)
    )
    return list(admins.order_by("email").values_list("email", flat=True))


def email_admins(subject: str, body: str) -> None:
    """Email every active admin; a mail failure is logged, never raised (it runs after
    commit, and the banner shows the alert anyway)."""
    recipients = admin_recipients()
    if not recipients:
        return
    try:
        send_mail(subject, body, None, recipients)
    except Exception:
        logger.exception("could not email the admins: %s", subject)


def _announce(signal: Signal, **kwargs: object) -> None:
    """Send a lifecycle signal; a failing receiver is logged, not raised into the request."""
    for receiver, result in signal.send_robust(sender=MailAccount, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "receiver %s of %s failed: %s",
                getattr(receiver, "__qualname__", receiver),
                kwargs,
                type(result).__name__,
            )
