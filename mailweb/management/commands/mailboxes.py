"""``manage.py mailboxes [--json]``: every mailbox's connection and sync state, for admins.

Shows address, method, status, last successful sync, access-token expiry, last error, messages
stored per synced folder and the initial-sync progress. No secret is ever printed.
"""

import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count
from django.utils import timezone

from accounts.models import MailAccount
from mailweb.models import Folder
from mailweb.selectors import mailbox_progress


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def mailbox_report(mailbox: MailAccount) -> dict[str, Any]:
    """One mailbox's state as plain data (the --json shape)."""
    progress = mailbox_progress(mailbox)
    folders = (
        Folder.objects.filter(mailbox=mailbox, sync_enabled=True)
        .annotate(stored=Count("messages"))
        .order_by("name")
    )
    return {
        "id": mailbox.pk,
        "address": mailbox.address,
        "method": mailbox.method,
        "shared": mailbox.is_shared,
        "status": mailbox.status,
        "status_reason": mailbox.status_reason,
        "last_sync_at": _iso(mailbox.last_sync_at),
        "access_token_expires_at": _iso(mailbox.access_token_expires_at),
        "last_error": mailbox.last_error,
        "folders": [
            {"name": folder.name, "role": folder.role, "messages": folder.stored}
            for folder in folders
        ],
        "progress": {
            "synced": progress.synced,
            "total": progress.total,
            "eta_seconds": progress.eta_seconds,
            "unfetchable": progress.unfetchable,
            "unfetchable_reason": progress.unfetchable_reason,
        },
    }


class Command(BaseCommand):
    help = "List mailboxes with their status, last sync, token expiry, errors and folders."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON for scripts.")

    def handle(self, *args: Any, **options: Any) -> None:
        reports = [mailbox_report(m) for m in MailAccount.objects.order_by("address")]
        if options["json"]:
            self.stdout.write(json.dumps({"mailboxes": reports}, indent=2))
            return
        if not reports:
            self.stdout.write("No mailboxes. Connect one on the Mailboxes page.")
            return
        for index, report in enumerate(reports):
            if index:
                self.stdout.write("")
            self._write_text(report)

    def _write_text(self, report: dict[str, Any]) -> None:
        shared = " (shared)" if report["shared"] else ""
        status = report["status"] + (
            f" [{report['status_reason']}]" if report["status_reason"] else ""
        )
        style = (
            self.style.SUCCESS if report["status"] in ("active", "syncing") else self.style.ERROR
        )
        self.stdout.write(self.style.MIGRATE_HEADING(f"{report['address']}{shared}"))
        self.stdout.write(f"  method:        {report['method']}")
        self.stdout.write("  status:        " + style(status))
        self.stdout.write(f"  last sync:     {_when(report['last_sync_at'])}")
        self.stdout.write(f"  token expires: {_when(report['access_token_expires_at'])}")
        if report["last_error"]:
            self.stdout.write(f"  last error:    {report['last_error']}")
        progress = report["progress"]
        if progress["total"]:
            line = f"{progress['synced']:,}/{progress['total']:,} messages"
            if progress["eta_seconds"] is not None:
                line += f", about {max(1, round(progress['eta_seconds'] / 60))} min left"
            self.stdout.write(f"  progress:      {line}")
        if count := progress["unfetchable"]:
            self.stdout.write(
                f"  not fetched:   {count:,} message{'s' if count != 1 else ''} the server "
                f"would not send ({progress['unfetchable_reason']}); asked for again later"
            )
        for folder in report["folders"]:
            self.stdout.write(f"  folder {folder['name']}: {folder['messages']:,} messages")
        if not report["folders"]:
            self.stdout.write("  folders:       none synced yet")


def _when(value: str | None) -> str:
    if not value:
        return "never"
    moment = datetime.fromisoformat(value)
    local = timezone.localtime(moment)
    seconds = round((moment - timezone.now()).total_seconds())
    if seconds > 0:
        relative = f"in {_span(seconds)}"
    elif seconds > -60:
        relative = "just now"  # as on the Mailboxes page; "in 0s" read as not yet happened
    else:
        relative = f"{_span(-seconds)} ago"
    return f"{local:%Y-%m-%d %H:%M:%S %Z} ({relative})"


def _span(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"
