"""``manage.py import_mbox PATH --mailbox ADDRESS``: import an mbox file or a Maildir.

Messages go through the same ingestion as synced mail (raw bytes kept, parsed, threaded,
indexed); importing the same file again adds nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import MailAccount
from sync.mbox import ImportReport, import_path


class Command(BaseCommand):
    help = "Import an mbox file or a Maildir into a mailbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="an mbox file or a Maildir directory")
        parser.add_argument("--mailbox", required=True, metavar="ADDRESS")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        mailbox = MailAccount.objects.filter(address__iexact=options["mailbox"]).first()
        if mailbox is None:
            raise CommandError(f"no mailbox {options['mailbox']}; add or connect it first")

        def progress(report: ImportReport) -> None:
            self.stdout.write(f"\r{report.seen} read, {report.imported} imported", ending="")
            self.stdout.flush()

        try:
            report = import_path(mailbox, path, progress=progress)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"\r{report.seen} messages read: {report.imported} imported, "
            f"{report.skipped} already present."
        )
