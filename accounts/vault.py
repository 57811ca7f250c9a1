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
Errors: NeedsReconnect (the mailbox must be reconnected by a person), TokenUnavailable
(transient: try again after ``retry_after`` seconds).
"""

import json
import time
from typing import Any

from django.db import transaction

from accounts import crypto
from accounts.models import MailAccount

# An access token is only handed out if it stays valid this long, so a sync that starts with it
# does not fail half-way through.
MIN_REMAINING_SECONDS = 300


class VaultError(Exception):
    """Base class; messages are written for people and never contain a secret."""


class NeedsReconnect(VaultError):
    """The grant is gone (revoked, expired, consent withdrawn): a person must reconnect."""


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
) -> None:
    """Save a (new or rotated) refresh token and, optionally, the access token it came with."""
    locked = MailAccount.objects.select_for_update().get(pk=mailbox.pk)
    document = _readable_or_empty(locked)
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
