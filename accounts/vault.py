"""The token vault: the only code that reads or writes ``MailAccount.credentials``.

Credentials are one JSON document per mailbox, encrypted as a whole with Fernet
(``accounts.crypto``): the refresh token, cached access tokens per resource with their expiry,
or the password of a plain IMAP account. Nothing here logs, raises or returns a secret except the
functions whose job is to hand one to a protocol client.

Public API used by sync and views:
    get_access_token(mailbox, resource) -> str      # OAuth mailboxes
    get_password(mailbox) -> str                     # password IMAP mailboxes
    store_password(mailbox, password)
    store_oauth_tokens(mailbox, refresh_token, ...)  # after the connect flow
    clear_credentials(mailbox)
Errors: NeedsReconnect (the mailbox must be reconnected by a person; its subclass
AppRegistrationError means an admin must fix the Entra app instead), TokenUnavailable
(transient: try again after ``retry_after`` seconds).

Refreshing (``get_access_token``): a cached access token is returned while it stays valid for
MIN_REMAINING_SECONDS; otherwise the mailbox row is locked (``select_for_update``), the cache is
checked again (another worker may just have refreshed), one token request goes to the mailbox's
own tenant, and the rotated refresh token is saved in that same transaction before the access
token is returned. Call it outside a transaction: a failure commits the mailbox's new state
(needs reconnect, admin alert) before raising.
"""

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from accounts import crypto, microsoft, microsoft_errors
from accounts.models import MailAccount

logger = logging.getLogger(__name__)

# An access token is only handed out if it stays valid this long, so a sync that starts with it
# does not fail half-way through.
MIN_REMAINING_SECONDS = 300
# Transient failures are retried inside get_access_token for at most this many seconds in
# total (settings may override both for tests); beyond that the caller gets TokenUnavailable.
DEFAULT_RETRY_BUDGET_SECONDS = 20.0
DEFAULT_RETRY_BASE_DELAY = 1.0
MAX_BACKOFF_SECONDS = 30.0
# After Microsoft rejects the client secret, requests with that same secret pause this long.
CLIENT_REJECTED_PAUSE_SECONDS = 900


class VaultError(Exception):
    """Base class; messages are written for people and never contain a secret."""


class NeedsReconnect(VaultError):
    """The grant is gone (revoked, expired, consent withdrawn): a person must reconnect."""


class AppRegistrationError(NeedsReconnect):
    """Microsoft rejects the app itself (expired or wrong client secret, unknown app).

    A subclass of NeedsReconnect because sync must stop for it just the same, but what fixes it
    is an admin correcting the Entra app registration or MICROSOFT_CLIENT_SECRET, not a
    reconnect; the message says so.
    """


class TokenUnavailable(VaultError):
    """A transient failure (network, 5xx, 429); try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def read_credentials(mailbox: MailAccount) -> dict[str, Any]:
    """The decrypted credentials document ({} when none are stored)."""
    blob = bytes(mailbox.credentials or b"")
    if not blob:
        return {}
    try:
        document: dict[str, Any] = json.loads(crypto.decrypt(blob))
    except crypto.DecryptionError as exc:
        raise NeedsReconnect(str(exc)) from None
    return document


def write_credentials(mailbox: MailAccount, document: dict[str, Any]) -> None:
    """Encrypt and save ``document`` (the caller holds the row lock when it matters)."""
    mailbox.credentials = crypto.encrypt(json.dumps(document, separators=(",", ":")).encode())
    mailbox.save(update_fields=["credentials", "access_token_expires_at", "updated_at"])


@transaction.atomic
def store_password(mailbox: MailAccount, password: str) -> None:
    locked = MailAccount.objects.select_for_update().get(pk=mailbox.pk)
    document = read_credentials(locked) if locked.credentials else {}
    document["password"] = password
    write_credentials(locked, document)
    mailbox.credentials = locked.credentials


def get_password(mailbox: MailAccount) -> str:
    password = read_credentials(mailbox).get("password")
    if not password:
        raise NeedsReconnect("no password is stored for this mailbox")
    return str(password)


@transaction.atomic
def store_oauth_tokens(
    mailbox: MailAccount,
    refresh_token: str,
    *,
    access_token: str | None = None,
    resource: str | None = None,
    expires_at: float | None = None,
    replace: bool = False,
) -> None:
    """Save a (new or rotated) refresh token and, optionally, the access token it came with.

    ``replace`` starts a fresh document (a new connection): access tokens cached for an
    earlier grant, possibly of another account, must not survive a reconnect.
    """
    locked = MailAccount.objects.select_for_update().get(pk=mailbox.pk)
    document = {} if replace else _readable_or_empty(locked)
    if replace:
        locked.access_token_expires_at = None
    document["refresh_token"] = refresh_token
    if access_token and resource and expires_at:
        document.setdefault("access_tokens", {})[resource] = {
            "token": access_token,
            "expires_at": expires_at,
        }
        locked.access_token_expires_at = _aware(expires_at)
    write_credentials(locked, document)
    mailbox.credentials = locked.credentials
    mailbox.access_token_expires_at = locked.access_token_expires_at


def cached_access_token(mailbox: MailAccount, resource: str) -> str | None:
    """A cached access token for ``resource`` valid for at least MIN_REMAINING_SECONDS."""
    entry = read_credentials(mailbox).get("access_tokens", {}).get(resource)
    if entry and float(entry["expires_at"]) - time.time() >= MIN_REMAINING_SECONDS:
        return str(entry["token"])
    return None


@transaction.atomic
def clear_credentials(mailbox: MailAccount) -> None:
    """Forget every secret of ``mailbox`` at once (disconnect)."""
    MailAccount.objects.filter(pk=mailbox.pk).update(credentials=b"", access_token_expires_at=None)
    mailbox.credentials = b""
    mailbox.access_token_expires_at = None


def _readable_or_empty(mailbox: MailAccount) -> dict[str, Any]:
    """Existing credentials, or a fresh document if they cannot be decrypted (a reconnect)."""
    try:
        return read_credentials(mailbox)
    except NeedsReconnect:
        return {}


def _aware(epoch_seconds: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_seconds, tz=UTC)


# --- access tokens for OAuth mailboxes -----------------------------------------------------


@dataclass
class _Transient:
    """A failed attempt worth retrying, with the wait Microsoft asked for (if it said)."""

    message: str
    retry_after: float | None


def get_access_token(mailbox: MailAccount, resource: str) -> str:
    """An access token for ``resource`` (``microsoft.OUTLOOK_RESOURCE`` for IMAP/SMTP,
    ``microsoft.GRAPH_RESOURCE`` for Graph), valid for at least MIN_REMAINING_SECONDS.

    Raises NeedsReconnect (stop syncing this mailbox; a person must act — AppRegistrationError
    when it is the app registration), TokenUnavailable (try again after ``retry_after``), or
    ValueError when ``mailbox`` does not use Microsoft sign-in or ``resource`` does not match
    its method.
    """
    scopes = microsoft.scopes_for(mailbox, resource)
    budget = float(getattr(settings, "MAILWEB_TOKEN_RETRY_BUDGET", DEFAULT_RETRY_BUDGET_SECONDS))
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        outcome = _token_once(mailbox, resource, scopes, retrying=attempt > 0)
        if isinstance(outcome, str):
            return outcome
        delay = _next_delay(outcome.retry_after, attempt)
        if time.monotonic() + delay > deadline:
            raise TokenUnavailable(outcome.message, retry_after=math.ceil(delay))
        logger.info(
            "token request for mailbox %s failed transiently; retrying in %.1fs",
            mailbox.pk,
            delay,
        )
        time.sleep(delay)
        attempt += 1


def _token_once(
    mailbox: MailAccount, resource: str, scopes: list[str], *, retrying: bool
) -> str | _Transient:
    # Fast path without a lock: most calls find a cached token.
    current = MailAccount.objects.filter(pk=mailbox.pk).first()
    if current is None:
        raise NeedsReconnect("this mailbox no longer exists")
    _refuse_unless_connected(current)
    token = _cached_or_none(current, resource)
    if token:
        return token
    waiting = None if retrying else _backoff_remaining(current.pk)
    if waiting:
        return _Transient(_WAIT_MESSAGE, waiting)
    with transaction.atomic():
        locked = MailAccount.objects.select_for_update().get(pk=mailbox.pk)
        _refuse_unless_connected(locked)
        # Another worker may have refreshed while this one waited for the lock.
        token = _cached_or_none(locked, resource)
        if token:
            _sync_instance(mailbox, locked)
            return token
        waiting = None if retrying else _backoff_remaining(locked.pk)
        if waiting:
            return _Transient(_WAIT_MESSAGE, waiting)
        try:
            fresh = _refresh_locked(locked, resource, scopes)
        except microsoft.MicrosoftError as exc:
            if exc.kind == "transient":
                _set_backoff(locked.pk, _next_delay(exc.retry_after, 0))
                return _Transient(exc.reason, exc.retry_after)
            failure = _record_failure(locked, exc)
        else:
            _sync_instance(mailbox, locked)
            return fresh
        _sync_instance(mailbox, locked)
    # Raised after the transaction committed, so the mailbox's new state is kept.
    raise failure


_WAIT_MESSAGE = "Microsoft asked Mailweb to wait before requesting another token."


def _cached_or_none(mailbox: MailAccount, resource: str) -> str | None:
    """The cached token, or None (also when the credentials cannot be decrypted: the locked
    path then reports that properly)."""
    try:
        return cached_access_token(mailbox, resource)
    except NeedsReconnect:
        return None


def _refuse_unless_connected(mailbox: MailAccount) -> None:
    if mailbox.status == MailAccount.Status.NEEDS_RECONNECT:
        raise NeedsReconnect(mailbox.last_error or "this mailbox must be reconnected")
    if mailbox.status == MailAccount.Status.DISABLED:
        raise NeedsReconnect("this mailbox is disconnected")
    if mailbox.status_reason == "app_credentials" and cache_get(_client_rejected_key()) is not None:
        raise AppRegistrationError(mailbox.last_error or "Microsoft rejects Mailweb's app")


def _refresh_locked(locked: MailAccount, resource: str, scopes: list[str]) -> str:
    """One token request while holding the row lock; saves the rotated refresh token."""
    try:
        document = read_credentials(locked)
    except NeedsReconnect as exc:  # undecryptable: a key was removed too early
        raise microsoft.MicrosoftError(
            "reconnect",
            f"Mailweb cannot read this mailbox's sign-in: {exc}. Restore the key in "
            "MAILWEB_TOKEN_KEYS, or reconnect the mailbox on the Mailboxes page.",
            error="undecryptable",
        ) from None
    refresh_token = document.get("refresh_token")
    if not refresh_token:
        raise microsoft.MicrosoftError(
            "reconnect",
            "Mailweb holds no sign-in for this mailbox. Reconnect it on the Mailboxes page.",
            error="no_refresh_token",
        )
    authority = microsoft.refresh_authority(locked.tenant_id)
    grant = microsoft.redeem_refresh_token(authority, str(refresh_token), scopes)
    document["refresh_token"] = grant.refresh_token or refresh_token
    document.setdefault("access_tokens", {})[resource] = {
        "token": grant.access_token,
        "expires_at": grant.expires_at,
    }
    locked.access_token_expires_at = _aware(grant.expires_at)
    write_credentials(locked, document)
    logger.info(
        "refreshed the %s access token of mailbox %s (valid for %ds)",
        resource,
        locked.pk,
        grant.expires_at - time.time(),
    )
    if locked.status_reason == "app_credentials":
        from accounts import actions  # actions imports the vault

        actions.clear_app_registration_error(locked)
    return grant.access_token


def _record_failure(locked: MailAccount, exc: microsoft.MicrosoftError) -> VaultError:
    """Mark the mailbox (once per incident) and return the exception to raise."""
    from accounts import actions  # actions imports the vault

    if exc.kind == "app_registration":
        cache_set(_client_rejected_key(), 1, CLIENT_REJECTED_PAUSE_SECONDS)
        actions.mark_app_registration_error(locked, exc.reason, code=exc.code_label)
        return AppRegistrationError(exc.reason)
    actions.mark_needs_reconnect(
        locked, exc.reason, status_reason=_status_reason(exc), code=exc.code_label
    )
    return NeedsReconnect(exc.reason)


def _status_reason(exc: microsoft.MicrosoftError) -> str:
    if exc.code == microsoft_errors.REVOKED:
        return "revoked"
    if exc.code in microsoft_errors.EXPIRED_INACTIVE:
        return "expired"
    if exc.error == "consent_required" or exc.code in microsoft_errors.CONSENT:
        return "consent"
    return (exc.error or "reconnect")[:40]


def _sync_instance(target: MailAccount, source: MailAccount) -> None:
    """Let the caller's instance see what was saved (credentials, status, expiry)."""
    for name in ("credentials", "access_token_expires_at", "status", "status_reason", "last_error"):
        setattr(target, name, getattr(source, name))


def _next_delay(retry_after: float | None, attempt: int) -> float:
    """Retry-After when given (plus a little jitter), else exponential backoff with jitter."""
    if retry_after is not None:
        return retry_after + random.uniform(0, min(1.0, retry_after * 0.1))  # noqa: S311
    base = float(getattr(settings, "MAILWEB_TOKEN_RETRY_BASE_DELAY", DEFAULT_RETRY_BASE_DELAY))
    ceiling = min(MAX_BACKOFF_SECONDS, base * 2**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311


# Short-lived coordination state lives in the cache (Redis in production). It only saves
# requests, so a cache outage degrades to "ask Microsoft" rather than failing.


def _backoff_key(mailbox_id: int) -> str:
    return f"accounts:token-backoff:{mailbox_id}"


def _client_rejected_key() -> str:
    return f"accounts:client-rejected:{microsoft.client_fingerprint()}"


def _backoff_remaining(mailbox_id: int) -> float | None:
    until = cache_get(_backoff_key(mailbox_id))
    remaining = float(until) - time.time() if until is not None else 0.0
    return remaining if remaining > 0 else None


def _set_backoff(mailbox_id: int, seconds: float) -> None:
    cache_set(_backoff_key(mailbox_id), time.time() + seconds, math.ceil(seconds) + 1)


def clear_backoff(mailbox: MailAccount) -> None:
    """Forget pauses for ``mailbox`` (after a reconnect or a fixed app registration)."""
    cache_delete(_backoff_key(mailbox.pk))
    cache_delete(_client_rejected_key())


def cache_get(key: str) -> Any:
    try:
        return cache.get(key)
    except Exception:  # A broken cache must not stop token refreshes.
        logger.warning("cache unavailable; reading %s skipped", key.split(":")[1])
        return None


def cache_set(key: str, value: Any, timeout: float) -> None:
    try:
        cache.set(key, value, timeout)
    except Exception:
        logger.warning("cache unavailable; writing %s skipped", key.split(":")[1])


def cache_delete(key: str) -> None:
    try:
        cache.delete(key)
    except Exception:
        logger.warning("cache unavailable; clearing %s skipped", key.split(":")[1])
