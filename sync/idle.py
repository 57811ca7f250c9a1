"""Push: one IMAP IDLE connection per active IMAP mailbox's Inbox (``manage.py idle``).

``IdleSupervisor`` keeps a thread (``IdleWatcher``) per mailbox that may sync, starting threads
for newly connected mailboxes and stopping those of mailboxes that were disconnected or need a
reconnect; it re-reads the mailbox list every ``refresh_seconds``. A watcher logs in with
``open_imap``, EXAMINEs the Inbox and IDLEs; on EXISTS, EXPUNGE or FETCH (new mail, deletions,
flag changes) it asks for an incremental sync, which the supervisor enqueues from its own
thread. IDLE is re-issued every ``renew_seconds`` (25 minutes: servers drop IDLE sessions
after 30), and a dropped connection is re-opened with exponential backoff and jitter (never
sooner than a throttling server asks, ``sync.imap.refusals``); every
(re)connect also asks for a sync, so nothing that arrived while disconnected waits for the
sweep. Servers without IDLE are polled with NOOP instead.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections, connection

from accounts import vault
from accounts.models import MailAccount
from mailweb.models import Folder
from sync.errors import RECONNECT, classify
from sync.imap.connection import IMAP_METHODS, ImapLoginRejected, close_quietly, open_imap
from sync.imap.refusals import busy_backoff
from sync.imap.session import Capabilities
from sync.status import HELD_STATES

log = logging.getLogger(__name__)

RENEW_SECONDS = 25 * 60
REFRESH_SECONDS = 10.0
POLL_SECONDS = 60.0  # NOOP interval for servers without IDLE
CHECK_SECONDS = 1.0  # how often a watcher looks up from idle_check (stop requests, debounce)
DEBOUNCE_SECONDS = 1.0
BACKOFF_START = 1.0
BACKOFF_MAX = 300.0
HEALTHY_SESSION_SECONDS = 60.0

__all__ = ["IdleSupervisor", "IdleWatcher", "is_change"]

_CHANGES = {b"EXISTS", b"EXPUNGE", b"FETCH", b"VANISHED"}


def is_change(response: Any) -> bool:
    """True for untagged responses that mean the Inbox changed (not RECENT, OK, ...)."""
    if not isinstance(response, tuple) or len(response) < 2:
        return False
    return any(isinstance(part, bytes) and part.upper() in _CHANGES for part in response[:2])


class IdleWatcher(threading.Thread):
    """The IDLE connection of one mailbox, reconnecting until stopped."""

    def __init__(
        self,
        mailbox_id: int,
        notify: Callable[[int], None],
        *,
        renew_seconds: float = RENEW_SECONDS,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        super().__init__(name=f"idle-{mailbox_id}", daemon=True)
        self.mailbox_id = mailbox_id
        self.notify = notify
        self.renew_seconds = renew_seconds
        self.poll_seconds = poll_seconds
        self.stopping = threading.Event()
        self.gave_up = ""  # why the watcher ended by itself (needs reconnect, gone)
        self.connected = threading.Event()
        self.sessions = 0
        self.idle_commands = 0
        self._last_notify = 0.0
        self._pending = False

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        delay = BACKOFF_START
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                asked_to_wait = 0.0  # what a throttling server suggested (sync.imap.refusals)
                try:
                    self._session()
                except vault.NeedsReconnect as exc:
                    self.gave_up = f"needs reconnect: {exc}"
                    log.info("idle: mailbox %s stops: %s", self.mailbox_id, self.gave_up)
                    return
                except MailAccount.DoesNotExist:
                    self.gave_up = "mailbox deleted"
                    return
                except ImapLoginRejected as exc:
                    if self._refused_for_good(exc):
                        return
                    asked_to_wait = busy_backoff(str(exc)) or 0.0
                except vault.TokenUnavailable as exc:
                    delay = max(delay, float(exc.retry_after or 0))
                    log.info("idle: mailbox %s: %s", self.mailbox_id, exc)
                except Exception as exc:
                    log.info(
                        "idle: mailbox %s disconnected (%s: %s)",
                        self.mailbox_id,
                        type(exc).__name__,
                        str(exc)[:200],
                    )
                    asked_to_wait = busy_backoff(str(exc)) or 0.0
                finally:
                    self.connected.clear()
                    connection.close()
                if self.stopping.is_set():
                    return
                if time.monotonic() - started > HEALTHY_SESSION_SECONDS:
                    delay = BACKOFF_START
                wait = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter
                self.stopping.wait(max(wait, asked_to_wait))
                delay = min(BACKOFF_MAX, delay * 2)
        finally:
            connection.close()

    def _refused_for_good(self, exc: ImapLoginRejected) -> bool:
        """A password the server refuses marks the mailbox, as the sync would, and ends the
        watcher: trying it again every few seconds only gets the account locked. A refused
        token (IMAP disabled, say) or a server that said "try later" is retried as usual."""
        failure = classify(exc)
        if failure.kind != RECONNECT:
            log.info("idle: mailbox %s: %s", self.mailbox_id, failure.message)
            return False
        failure.record(self.mailbox_id)
        self.gave_up = f"needs reconnect: {failure.message}"
        log.info("idle: mailbox %s stops: the server refused its password", self.mailbox_id)
        return True

    def _session(self) -> None:
        close_old_connections()
        mailbox = MailAccount.objects.get(pk=self.mailbox_id)
        if mailbox.status in HELD_STATES:
            raise vault.NeedsReconnect(f"mailbox is {mailbox.status}")
        inbox = (
            Folder.objects.filter(mailbox=mailbox, role=Folder.Role.INBOX)
            .values_list("name", flat=True)
            .first()
            or "INBOX"
        )
        client = open_imap(mailbox, timeout=60)
        connection.close()  # hold no database connection while idling
        try:
            capabilities = Capabilities.from_list(client.capabilities())
            client.select_folder(inbox, readonly=True)
            self.sessions += 1
            self.connected.set()
            self._changed()  # catch up with whatever arrived while disconnected
            if capabilities.idle:
                self._idle_loop(client)
            else:
                self._poll_loop(client)
        finally:
            close_quietly(client)

    def _idle_loop(self, client: Any) -> None:
        while not self.stopping.is_set():
            client.idle()
            self.idle_commands += 1
            started = time.monotonic()
            quick_empty = 0
            while not self.stopping.is_set() and time.monotonic() - started < self.renew_seconds:
                asked = time.monotonic()
                responses = client.idle_check(timeout=CHECK_SECONDS)
                if any(is_change(response) for response in responses):
                    self._changed()
                if any(_is_bye(response) for response in responses):
                    raise ConnectionError("the server ended the session")
                # imapclient swallows EOF in idle_check and returns nothing at once: a few
                # instant empty answers in a row mean the connection is gone.
                if not responses and time.monotonic() - asked < CHECK_SECONDS / 2:
                    quick_empty += 1
                    if quick_empty >= 3:
                        raise ConnectionError("the IDLE connection was closed")
                else:
                    quick_empty = 0
                self._flush()
            # DONE, then IDLE again (the renewal servers expect), unless stopping.
            _, responses = client.idle_done()
            if any(is_change(response) for response in responses):
                self._changed()
            self._flush()

    def _poll_loop(self, client: Any) -> None:
        while not self.stopping.is_set():
            _, responses = client.noop()
            if any(is_change(response) for response in responses):
                self._changed()
            self._flush()
            self.stopping.wait(self.poll_seconds)

    def _changed(self) -> None:
        """Ask for a sync now, or (within the debounce window) once the window ends."""
        now = time.monotonic()
        if now - self._last_notify >= DEBOUNCE_SECONDS:
            self._last_notify = now
            self._pending = False
            self.notify(self.mailbox_id)
        else:
            self._pending = True

    def _flush(self) -> None:
        if self._pending and time.monotonic() - self._last_notify >= DEBOUNCE_SECONDS:
            self._changed()


def _is_bye(response: Any) -> bool:
    return isinstance(response, tuple) and bool(response) and response[0] == b"BYE"


def idle_mailbox_ids() -> set[int]:
    """Mailboxes that should have an IDLE connection."""
    return set(
        MailAccount.objects.filter(method__in=IMAP_METHODS)
        .exclude(status__in=HELD_STATES)
        .values_list("pk", flat=True)
    )


class IdleSupervisor:
    """Runs the watchers and turns their change notices into sync tasks."""

    def __init__(
        self,
        enqueue: Callable[[int], None] | None = None,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.enqueue = enqueue or _enqueue_sync
        self.refresh_seconds = refresh_seconds
        self.renew_seconds = renew_seconds
        self.heartbeat = heartbeat
        self.watchers: dict[int, IdleWatcher] = {}
        self.changes: queue.Queue[int] = queue.Queue()
        self.stopping = threading.Event()
        self._retry_after: dict[int, float] = {}

    def refresh(self) -> None:
        """Start and stop watchers to match the mailboxes that should be watched."""
        close_old_connections()
        wanted = idle_mailbox_ids()
        connection.close()
        now = time.monotonic()
        for mailbox_id, watcher in list(self.watchers.items()):
            if mailbox_id not in wanted:
                watcher.stop()
                del self.watchers[mailbox_id]
                log.info("idle: stopped watching mailbox %s", mailbox_id)
            elif not watcher.is_alive():
                # It gave up (needs reconnect, deleted) although the mailbox is listed again:
                # try again, but not in a tight loop.
                del self.watchers[mailbox_id]
                self._retry_after[mailbox_id] = now + 60
        for mailbox_id in sorted(wanted - set(self.watchers)):
            if self._retry_after.get(mailbox_id, 0) > now:
                continue
            watcher = IdleWatcher(mailbox_id, self.changes.put, renew_seconds=self.renew_seconds)
            self.watchers[mailbox_id] = watcher
            watcher.start()
            log.info("idle: watching mailbox %s", mailbox_id)

    def run(self) -> None:
        """Until ``stop()``: refresh the watchers, forward changes as sync tasks."""
        next_refresh = 0.0
        next_heartbeat = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                try:
                    self.refresh()
                except Exception:
                    log.exception("idle: could not refresh the mailbox list")
                next_refresh = now + self.refresh_seconds
            if self.heartbeat is not None and now >= next_heartbeat:
                try:
                    self.heartbeat()
                except Exception:
                    log.exception("idle: heartbeat failed")
                next_heartbeat = now + 30
            try:
                mailbox_id = self.changes.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.enqueue(mailbox_id)
            except Exception:
                log.exception("idle: could not enqueue a sync of mailbox %s", mailbox_id)
        self.shutdown()

    def stop(self) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        for watcher in self.watchers.values():
            watcher.stop()
        for watcher in self.watchers.values():
            watcher.join(timeout=10)
        self.watchers.clear()


def _enqueue_sync(mailbox_id: int) -> None:
    from sync.tasks import sync_mailbox

    sync_mailbox.delay(mailbox_id)
