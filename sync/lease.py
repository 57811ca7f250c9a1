"""One writer per mailbox (DESIGN.md, principle 3).

On PostgreSQL the lease is a session-level advisory lock held on a connection of its own, so
transactions on the worker's normal connection cannot release it, and a worker that dies (even
by SIGKILL) releases it the moment its connection drops. Elsewhere (SQLite, the no-server
default) it is a row in ``MailboxSyncState`` with an expiry, renewed while the sync runs; a
lease whose holder process is gone (same host, dead pid) is taken over at once.

``request_sync`` bumps a counter before a sync tries the lease; the holder compares the counter
after its pass and runs again if someone asked in the meantime, so a push that arrives while a
sync is running is never lost (see ``sync.engine.run_sync``).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import F, Q
from django.utils import timezone

from sync.models import MailboxSyncState

log = logging.getLogger(__name__)

# Namespace of Mailweb's advisory locks (first key), so other applications sharing the database
# with their own advisory locks cannot collide with a mailbox id.
ADVISORY_NAMESPACE = 0x4D57  # "MW"
ROW_LEASE_SECONDS = 300

__all__ = ["Lease", "LeaseBusy", "LeaseLost", "mailbox_lease", "request_sync", "requests_seen"]


class LeaseBusy(Exception):
    """Another worker is syncing this mailbox."""


class LeaseLost(Exception):
    """The lease was lost while syncing (its database connection dropped or it expired)."""


def ensure_state(mailbox_id: int) -> None:
    MailboxSyncState.objects.get_or_create(mailbox_id=mailbox_id)


def request_sync(mailbox_id: int) -> int:
    """Record that a sync of the mailbox was asked for; returns the new request count."""
    ensure_state(mailbox_id)
    MailboxSyncState.objects.filter(mailbox_id=mailbox_id).update(requests=F("requests") + 1)
    return requests_seen(mailbox_id)


def requests_seen(mailbox_id: int) -> int:
    value = (
        MailboxSyncState.objects.filter(mailbox_id=mailbox_id)
        .values_list("requests", flat=True)
        .first()
    )
    return int(value or 0)


class Lease:
    """A held lease; ``check()`` renews it and raises ``LeaseLost`` if it is gone."""

    def __init__(self, mailbox_id: int) -> None:
        self.mailbox_id = mailbox_id

    def check(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def release(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class AdvisoryLease(Lease):
    def __init__(self, mailbox_id: int, connection: Any) -> None:
        super().__init__(mailbox_id)
        self.connection = connection

    @classmethod
    def acquire(cls, mailbox_id: int) -> AdvisoryLease:
        connection = connections.create_connection(DEFAULT_DB_ALIAS)
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_NAMESPACE, mailbox_id]
                )
                (locked,) = cursor.fetchone()
        except BaseException:
            connection.close()
            raise
        if not locked:
            connection.close()
            raise LeaseBusy(f"mailbox {mailbox_id} is being synced by another worker")
        return cls(mailbox_id, connection)

    def check(self) -> None:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:
            raise LeaseLost(f"lease connection of mailbox {self.mailbox_id} dropped") from exc

    def release(self) -> None:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(%s, %s)", [ADVISORY_NAMESPACE, self.mailbox_id]
                )
        except Exception:
            log.warning("could not unlock mailbox %s; closing the connection", self.mailbox_id)
        finally:
            self.connection.close()


def _holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(holder: str) -> bool:
    """True when ``holder`` names a process on this host that no longer exists."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class RowLease(Lease):
    def __init__(self, mailbox_id: int, holder: str) -> None:
        super().__init__(mailbox_id)
        self.holder = holder

    @classmethod
    def acquire(cls, mailbox_id: int) -> RowLease:
        ensure_state(mailbox_id)
        holder = _holder_id()
        now = timezone.now()
        free = Q(lease_holder="") | Q(lease_expires_at__lt=now)
        if cls._take(mailbox_id, holder, free):
            return cls(mailbox_id, holder)
        current = (
            MailboxSyncState.objects.filter(mailbox_id=mailbox_id)
            .values_list("lease_holder", flat=True)
            .first()
        )
        if current and _holder_is_dead(current):
            log.info("taking over the lease of mailbox %s from dead %s", mailbox_id, current)
            if cls._take(mailbox_id, holder, Q(lease_holder=current)):
                return cls(mailbox_id, holder)
        raise LeaseBusy(f"mailbox {mailbox_id} is being synced by another worker")

    @staticmethod
    def _take(mailbox_id: int, holder: str, condition: Q) -> bool:
        expires = timezone.now() + timedelta(seconds=ROW_LEASE_SECONDS)
        updated = MailboxSyncState.objects.filter(condition, mailbox_id=mailbox_id).update(
            lease_holder=holder, lease_expires_at=expires
        )
        return updated == 1

    def check(self) -> None:
        expires = timezone.now() + timedelta(seconds=ROW_LEASE_SECONDS)
        renewed = MailboxSyncState.objects.filter(
            mailbox_id=self.mailbox_id, lease_holder=self.holder
        ).update(lease_expires_at=expires)
        if renewed != 1:
            raise LeaseLost(f"the lease of mailbox {self.mailbox_id} was taken over")

    def release(self) -> None:
        MailboxSyncState.objects.filter(
            mailbox_id=self.mailbox_id, lease_holder=self.holder
        ).update(lease_holder="", lease_expires_at=None)


@contextmanager
def mailbox_lease(mailbox_id: int) -> Iterator[Lease]:
    """Hold the mailbox's lease for the block; raises ``LeaseBusy`` when someone else has it."""
    lease: Lease
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        lease = AdvisoryLease.acquire(mailbox_id)
    else:
        lease = RowLease.acquire(mailbox_id)
    try:
        yield lease
    finally:
        lease.release()
