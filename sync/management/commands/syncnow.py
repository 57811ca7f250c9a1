"""``manage.py syncnow [ADDRESS ...]``: one sync pass in the foreground, with a progress bar.

Syncs the named mailboxes (all IMAP mailboxes that may sync when none is named) in this process,
under the same lease as the workers: if a worker is syncing a mailbox right now, it says so and
moves on. Exits non-zero when any mailbox failed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import MailAccount
from sync.engine import run_sync
from sync.folder_sync import Progress
from sync.imap.connection import IMAP_METHODS
from sync.status import HELD_STATES


class Command(BaseCommand):
    help = "Sync IMAP mailboxes now, in the foreground (all of them when none is named)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addresses", nargs="*", metavar="ADDRESS")
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bar (for logs and cron)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        addresses: list[str] = options["addresses"]
        if addresses:
            mailboxes = []
            for address in addresses:
                mailbox = MailAccount.objects.filter(address__iexact=address).first()
                if mailbox is None:
                    raise CommandError(f"no mailbox {address}")
                mailboxes.append(mailbox)
        else:
            mailboxes = list(
                MailAccount.objects.filter(method__in=IMAP_METHODS).exclude(status__in=HELD_STATES)
            )
            if not mailboxes:
                self.stdout.write("No IMAP mailboxes to sync.")
                return
        show = not options["no_progress"] and self.stdout.isatty()
        failed = []
        for mailbox in mailboxes:
            bar = _Bar(self.stdout, mailbox.address) if show else None
            started = time.monotonic()
            report = run_sync(mailbox.pk, progress=bar.update if bar else None)
            if bar:
                bar.finish()
            elapsed = time.monotonic() - started
            if report.skipped:
                self.stdout.write(f"{mailbox.address}: skipped ({report.skipped})")
            elif report.busy:
                self.stdout.write(f"{mailbox.address}: a worker is syncing it right now")
            elif report.failure:
                failed.append(mailbox.address)
                self.stderr.write(f"{mailbox.address}: FAILED: {report.failure.message}")
            else:
                state = "" if report.complete else ", initial sync continues"
                self.stdout.write(
                    f"{mailbox.address}: {report.new} new, {report.flags} flag changes, "
                    f"{report.removed} removed in {elapsed:.1f}s{state}"
                )
        if failed:
            raise CommandError(f"sync failed for {', '.join(failed)}")


class _Bar:
    """A one-line progress bar: address, folder, synced/total, rate and ETA."""

    WIDTH = 30

    def __init__(self, out: Any, label: str) -> None:
        self.out = out
        self.label = label
        self.started = time.monotonic()
        self.first: tuple[float, int] | None = None
        self.drawn = False

    def update(self, progress: Progress) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = (now, progress.synced)
        total = max(progress.total, progress.synced, 1)
        filled = int(self.WIDTH * progress.synced / total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        rate_text = eta_text = ""
        elapsed = now - self.first[0]
        done_since = progress.synced - self.first[1]
        if elapsed > 0 and done_since > 0:
            rate = done_since / elapsed
            rate_text = f" {rate:.0f} msg/s"
            eta_text = f" ETA {_clock((total - progress.synced) / rate)}"
        line = (
            f"\r{self.label} {progress.folder[:20]:<20} [{bar}] "
            f"{progress.synced:,}/{total:,}{rate_text}{eta_text}"
        )
        self.out.write(line.ljust(100), ending="")
        self.out.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.out.write("\r" + " " * 110 + "\r", ending="")
            sys.stdout.flush()


def _clock(seconds: float) -> str:
    """Time left as terminal progress bars show it: 0:45, 12:05, 1:02:03."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
