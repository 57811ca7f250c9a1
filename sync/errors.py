"""What went wrong in a sync, and what it means for the mailbox and for retrying.

* ``reconnect``: a person must act. Token failures are classified by the vault, which has
  already marked the mailbox; a password the server rejects is marked here through
  ``accounts.actions.mark_needs_reconnect`` (retrying a wrong password only gets the account
  locked by the server).
* ``transient``: network, server busy, token endpoint unavailable, a dropped lease: retry with
  backoff (honouring ``retry_after`` when the vault gives one).
* ``error``: a setting retrying cannot fix (an unknown host, an untrusted certificate, TLS on a
  plain port), the server refusing XOAUTH2 for a token the vault just issued (which usually
  means IMAP is disabled for the mailbox), or a bug. Shown at once and left to the sweep.

Messages are written for the Mailboxes page and never contain a secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, InterfaceError, OperationalError

from accounts import vault
from accounts.models import MailAccount
from sync import status
from sync.discovery import FolderListingError
from sync.imap.connection import CONNECTION_ERRORS, ImapLoginRejected, ImapUnavailable
from sync.imap.refusals import IMAP_ERRORS, busy_backoff, mailbox_not_opened
from sync.lease import LeaseLost
from sync.refused_rows import refused_value

log = logging.getLogger(__name__)

TRANSIENT, RECONNECT, ERROR = "transient", "reconnect", "error"

__all__ = ["ERROR", "RECONNECT", "TRANSIENT", "Failure", "classify"]


@dataclass
class Failure:
    kind: str
    message: str
    retry_after: float | None = None
    mark_reconnect: bool = False

    @property
    def transient(self) -> bool:
        return self.kind == TRANSIENT

    def record(self, mailbox_id: int, *, final: bool = False) -> None:
        """Write the failure to the mailbox; ``final`` means no retry follows."""
        if self.kind == RECONNECT:
            if self.mark_reconnect:
                from accounts import actions

                mailbox = MailAccount.objects.filter(pk=mailbox_id).first()
                if mailbox is not None:
                    actions.mark_needs_reconnect(
                        mailbox, self.message, status_reason="password_rejected"
                    )
            return
        status.record_failure(
            mailbox_id,
            self.message,
            transient=self.transient and not final,
            retry_after=self.retry_after,
        )


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, vault.NeedsReconnect):
        return Failure(RECONNECT, str(exc))
    if isinstance(exc, vault.TokenUnavailable):
        return Failure(TRANSIENT, str(exc), retry_after=exc.retry_after)
    if isinstance(exc, ImapLoginRejected):
        if exc.temporary:
            return Failure(TRANSIENT, str(exc))
        if exc.oauth:
            return Failure(
                ERROR,
                f"{exc} Mailweb's token was refused: check that IMAP is enabled for this "
                "mailbox (Microsoft 365 admin center → user → Mail → Manage email apps) and, "
                "for a shared mailbox, that the connecting account has Full Access to it.",
            )
        return Failure(
            RECONNECT,
            f"{exc} Enter the current password (or app password) on the Mailboxes page.",
            mark_reconnect=True,
        )
    if isinstance(exc, ImapUnavailable) and exc.configuration:
        return Failure(ERROR, f"{exc}. Check the mailbox's server settings.")
    if isinstance(exc, ImapUnavailable | LeaseLost):
        return Failure(TRANSIENT, str(exc))
    if isinstance(exc, SoftTimeLimitExceeded):
        return Failure(TRANSIENT, "the sync took longer than its time limit; it continues")
    if isinstance(exc, IMAP_ERRORS) and mailbox_not_opened(str(exc)):
        return Failure(
            ERROR,
            "The server accepted Mailweb's sign-in but would not open this mailbox "
            "(“User is authenticated but not connected”). For a shared mailbox, give the "
            "account that connected it Full Access to the shared mailbox (its delegation "
            "settings in the Exchange admin center, or Add-MailboxPermission -AccessRights "
            "FullAccess); the change can take a while to apply. Otherwise check the mailbox's "
            "address.",
        )
    if isinstance(exc, IMAP_ERRORS) and (wait := busy_backoff(str(exc))):
        return Failure(TRANSIENT, f"the IMAP server asks to wait: {_short(exc)}", retry_after=wait)
    if isinstance(exc, CONNECTION_ERRORS):
        return Failure(TRANSIENT, f"the connection to the IMAP server failed: {_short(exc)}")
    refusal = refused_value(exc) if isinstance(exc, DatabaseError) else None
    if refusal is not None:  # even cut down (sync.ingest): a bug to report, not an outage
        sqlstate = getattr(exc.__cause__, "sqlstate", None)
        log.error("the database refused a value in a sync (SQLSTATE %s)", sqlstate)
        return Failure(ERROR, f"the database refused a value while storing mail: {refusal}")
    if isinstance(exc, OperationalError | InterfaceError):
        return Failure(TRANSIENT, f"database unavailable: {type(exc).__name__}")
    if isinstance(exc, FolderListingError):
        return Failure(TRANSIENT, str(exc))
    if isinstance(exc, IMAP_ERRORS):
        return Failure(TRANSIENT, f"the IMAP server refused a command: {_short(exc)}")
    log.exception("sync failed unexpectedly", exc_info=exc)
    return Failure(ERROR, f"sync failed: {type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    return str(exc)[:300] or type(exc).__name__
