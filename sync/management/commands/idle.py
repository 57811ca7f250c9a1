"""``manage.py idle``: push for IMAP mailboxes (one IDLE connection per Inbox).

Runs until SIGTERM/SIGINT; see ``sync.idle``. ``--check`` exits 0 when a running ``idle``
process reported in recently (the docker-compose healthcheck).
"""

from __future__ import annotations

import logging
import signal
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from mailweb.actions import record_heartbeat
from mailweb.models import Heartbeat
from sync.idle import REFRESH_SECONDS, IdleSupervisor

HEARTBEAT = "idle"
STALE_AFTER = timedelta(seconds=120)

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Keep an IMAP IDLE connection per mailbox and sync as soon as mail arrives."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check", action="store_true", help="health check: is an idle process alive?"
        )
        parser.add_argument(
            "--refresh",
            type=float,
            default=REFRESH_SECONDS,
            help="seconds between looks for new or removed mailboxes",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check"]:
            beat = Heartbeat.objects.filter(name=HEARTBEAT).first()
            if beat is None or timezone.now() - beat.at > STALE_AFTER:
                raise CommandError("no recent heartbeat from manage.py idle")
            self.stdout.write(f"idle: ok (last heartbeat {beat.at:%H:%M:%S})")
            return
        supervisor = IdleSupervisor(
            refresh_seconds=options["refresh"], heartbeat=lambda: record_heartbeat(HEARTBEAT)
        )

        def stop(signum: int, _frame: Any) -> None:
            log.info("idle: received signal %s, stopping", signum)
            supervisor.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write("idle: watching IMAP mailboxes (Ctrl-C stops)")
        supervisor.run()
        self.stdout.write("idle: stopped")
