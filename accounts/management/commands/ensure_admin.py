"""Create the first admin if the team has none; used by script/server and the Docker entrypoint.

The address and password come from MAILWEB_ADMIN_EMAIL / MAILWEB_ADMIN_PASSWORD; without a
password one is generated and printed once, since it is stored only as a hash.
"""

import os
import secrets
from typing import Any

from django.core.management.base import BaseCommand

from accounts.models import User


class Command(BaseCommand):
    help = "Create a first admin user when none exists."

    def handle(self, *args: Any, **options: Any) -> None:
        if User.objects.filter(role=User.Role.ADMIN, is_active=True).exists():
            self.stdout.write("An admin already exists; nothing to do.")
            return
        email = os.environ.get("MAILWEB_ADMIN_EMAIL", "").strip() or "admin@example.com"
        password = os.environ.get("MAILWEB_ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(15)
        User.objects.create_superuser(email=email, password=password, name="Admin")
        self.stdout.write(self.style.SUCCESS(f"Created the first admin: {email}"))
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Generated password (shown once, change it after signing in): {password}"
                )
            )
