"""``manage.py addmailbox ADDRESS --imap-host HOST:PORT --username USER --password-file FILE``.

Adds (or updates) a plain IMAP mailbox that signs in with a password, for scripted setups; the
same as "Add an IMAP mailbox" on the Mailboxes page. The password is read from a file (``-``
reads standard input) so it never appears in the process list or shell history; it goes
straight into the encrypted vault. For a mailbox that exists, options left out keep their saved
values (the login name, the SMTP server, the encryption mode of an unchanged server), so
rotating a password takes ``--imap-host`` and ``--password-file`` alone. Before anything is
saved the command signs in to the IMAP server (and the SMTP server, if any) with these settings,
and stops with what failed; ``--no-check`` skips that, for setups that run before the server is
reachable. The initial sync is enqueued for the workers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.actions import (
    MailboxConflict,
    add_password_mailbox,
    password_mailbox_conflict,
    saved_password_mailbox,
)
from accounts.endpoints import host_and_port
from accounts.models import SECURITY_MODES
from sync.password_check import check_password_mailbox


class Command(BaseCommand):
    help = "Add a mailbox on any IMAP server that signs in with a password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address", help="the mailbox's email address")
        parser.add_argument("--imap-host", required=True, metavar="HOST[:PORT]")
        parser.add_argument(
            "--username", help="login name (default: the saved one, else the address)"
        )
        parser.add_argument(
            "--password-file",
            required=True,
            metavar="FILE",
            help="file holding the password; - for stdin",
        )
        parser.add_argument(
            "--smtp-host",
            metavar="HOST[:PORT]",
            help="for replies (default: the saved one, else none; '' removes it)",
        )
        parser.add_argument(
            "--imap-security",
            choices=[mode for mode, _ in SECURITY_MODES],
            help="default: the saved mode for the same host and port, else ssl on 993, "
            "else starttls",
        )
        parser.add_argument(
            "--smtp-security",
            choices=[mode for mode, _ in SECURITY_MODES],
            help="default: the saved mode for the same host and port, else ssl on 465, "
            "else starttls",
        )
        parser.add_argument("--display-name", default="")
        parser.add_argument(
            "--no-check",
            action="store_true",
            help="save without signing in to the servers first",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        source = options["password_file"]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
        except OSError as exc:
            raise CommandError(f"cannot read the password file: {exc.strerror}") from None
        password = text.rstrip("\r\n")
        if not password:
            raise CommandError("the password file is empty")
        saved = saved_password_mailbox(options["address"])
        saved_imap = (saved.imap_host, saved.imap_port, saved.imap_security) if saved else None
        saved_smtp = (saved.smtp_host, saved.smtp_port, saved.smtp_security) if saved else None
        imap_host, imap_port = host_and_port(options["imap_host"], 993)
        if options["smtp_host"] is None and saved is not None:
            smtp_host, smtp_port = saved.smtp_host, saved.smtp_port
        elif options["smtp_host"]:
            smtp_host, smtp_port = host_and_port(options["smtp_host"], 587)
        else:
            smtp_host, smtp_port = "", 587
        settings: dict[str, Any] = {
            "imap_host": imap_host,
            "imap_port": imap_port,
            "username": options["username"]
            or (saved.username if saved is not None and saved.username else options["address"]),
            "password": password,
            "smtp_host": smtp_host,
            "smtp_port": smtp_port,
            "imap_security": options["imap_security"]
            or _same_server_mode(saved_imap, imap_host, imap_port),
            "smtp_security": options["smtp_security"]
            or _same_server_mode(saved_smtp, smtp_host, smtp_port),
        }
        conflict = password_mailbox_conflict(options["address"])
        if conflict:
            raise CommandError(conflict)
        if not options["no_check"]:
            _check(settings)
        try:
            mailbox = add_password_mailbox(
                options["address"], display_name=options["display_name"], **settings
            )
        except MailboxConflict as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Added {mailbox.address} ({imap_host}:{imap_port}, {mailbox.imap_security}); "
            "the initial sync is queued. Run `manage.py syncnow "
            f"{mailbox.address}` to sync in the foreground."
        )


def _same_server_mode(saved: tuple[str, int, str] | None, host: str, port: int) -> str | None:
    """The saved encryption mode when ``host:port`` is the saved server, else None.

    Re-running the command to rotate a password must not turn an explicit choice (TLS on a port
    other than 993, say) back into the port's default.
    """
    if saved is None or saved[:2] != (host, port):
        return None
    return saved[2]


_FIELD_NAMES = {"imap_host": "IMAP server", "password": "login", "smtp_host": "SMTP server"}


def _check(settings: dict[str, Any]) -> None:
    problems = check_password_mailbox(**settings)
    if problems:
        lines = "\n".join(f"  {_FIELD_NAMES[field]}: {text}" for field, text in problems.items())
        raise CommandError(
            f"these settings did not work, so nothing was saved:\n{lines}\n"
            "(--no-check saves them anyway; the sync then keeps retrying)"
        )
