"""``manage.py healthcheck [CHECK ...]``: the /healthz checks from the command line.

Exit status 0 when every named check (default: all) passes; used by container healthchecks
where no HTTP server runs (beat, worker).
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailweb.health import health_report


class Command(BaseCommand):
    help = "Run the health checks (database, broker, worker) and fail if any named one fails."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("checks", nargs="*", help="database, broker, worker (default: all)")

    def handle(self, *args: Any, **options: Any) -> None:
        _, report = health_report()
        names = options["checks"] or list(report)
        unknown = sorted(set(names) - set(report))
        if unknown:
            raise CommandError(
                f"unknown check: {', '.join(unknown)} (choose from {', '.join(report)})"
            )
        failed = [name for name in names if not report[name]["ok"]]
        for name in names:
            self.stdout.write(
                f"{name}: {'ok' if report[name]['ok'] else 'FAILED'} ({report[name]['detail']})"
            )
        if failed:
            raise CommandError(f"unhealthy: {', '.join(failed)}")
