"""Writes to the mail store that views, tasks and commands share."""

from django.db import transaction
from django.utils import timezone

from mailweb.models import Heartbeat


@transaction.atomic
def record_heartbeat(name: str) -> None:
    """Note that the background process ``name`` is alive now."""
    Heartbeat.objects.update_or_create(name=name, defaults={"at": timezone.now()})
