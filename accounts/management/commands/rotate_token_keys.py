"""Re-encrypt every mailbox's stored credentials under the newest MAILWEB_TOKEN_KEYS key.

Rotation: put a new key in front of MAILWEB_TOKEN_KEYS (keep the old ones after it), restart,
run this command, then remove the old keys. Safe to run again: credentials already under the
newest key are left alone. Each mailbox is re-encrypted under its row lock, so a token refresh
running at the same time is not lost.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import crypto
from accounts.models import MailAccount


class Command(BaseCommand):
    help = "Re-encrypt all stored mailbox credentials under the newest token key."

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = current = unreadable = 0
        ids = list(
            MailAccount.objects.exclude(credentials=b"").order_by("pk").values_list("pk", flat=True)
        )
        for pk in ids:
            with transaction.atomic():
                mailbox = MailAccount.objects.select_for_update().filter(pk=pk).first()
                if mailbox is None or not mailbox.credentials:
                    continue
                blob = bytes(mailbox.credentials)
                if crypto.is_current(blob):
                    current += 1
                    continue
                try:
                    mailbox.credentials = crypto.reencrypt(blob)
                except crypto.DecryptionError:
                    unreadable += 1
                    self.stderr.write(
                        f"mailbox {pk} ({mailbox.address}): no configured key decrypts its "
                        "credentials; reconnect it"
                    )
                    continue
                mailbox.save(update_fields=["credentials"])
                rotated += 1
        self.stdout.write(
            f"Re-encrypted {rotated} mailbox{'es' if rotated != 1 else ''}; "
            f"{current} already under the newest key; {unreadable} unreadable."
        )
        if unreadable:
            raise CommandError(
                f"{unreadable} mailbox(es) could not be decrypted with any configured key; "
                "do not remove old keys until they are reconnected."
            )
