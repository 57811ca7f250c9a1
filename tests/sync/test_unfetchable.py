"""The record of messages the server would not send: backoff, due retries, forgetting.

The engine side (refused batches fetched one by one, the cursor moving past, retries that
arrive) is in ``test_engine`` against a real Dovecot.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import MailAccount
from mailweb.models import Folder, UnfetchableMessage
from sync import unfetchable

pytestmark = pytest.mark.django_db


@pytest.fixture
def inbox() -> Folder:
    mailbox = MailAccount.objects.create(address="desk@example.com", method="imap_password")
    return Folder.objects.create(mailbox=mailbox, name="INBOX", uidvalidity=7)


def _row(folder: Folder, uid: int) -> UnfetchableMessage:
    return UnfetchableMessage.objects.get(folder=folder, uid=uid)


def test_each_refusal_doubles_the_wait_up_to_a_day(inbox: Folder) -> None:
    unfetchable.record(inbox, {4: "Internal error occurred."})
    first = _row(inbox, 4)
    assert first.attempts == 1
    assert timedelta(minutes=14) < first.next_attempt_at - timezone.now() <= timedelta(minutes=15)
    unfetchable.record(inbox, {4: "Still broken."})
    second = _row(inbox, 4)
    assert (second.attempts, second.error) == (2, "Still broken.")
    assert second.next_attempt_at - timezone.now() > timedelta(minutes=29)
    UnfetchableMessage.objects.filter(pk=first.pk).update(attempts=200)  # months of retries
    unfetchable.record(inbox, {4: "Still broken."})
    wait = _row(inbox, 4).next_attempt_at - timezone.now()
    assert timedelta(hours=23) < wait <= timedelta(days=1)


def test_due_records_and_what_is_forgotten(inbox: Folder) -> None:
    unfetchable.record(inbox, {4: "x", 5: "y", 6: "z"})
    assert unfetchable.due(inbox) == []  # not yet
    UnfetchableMessage.objects.filter(uid__in=[4, 5]).update(next_attempt_at=timezone.now())
    UnfetchableMessage.objects.create(
        folder=inbox, uidvalidity=6, uid=9, error="old", next_attempt_at=timezone.now()
    )
    assert unfetchable.due(inbox) == [4, 5]
    assert not UnfetchableMessage.objects.filter(uidvalidity=6).exists()  # names nothing now
    asked_at = timezone.now()
    unfetchable.record(inbox, {5: "refused again"})  # 4 arrived (or was expunged)
    unfetchable.forget_arrived(inbox, [4, 5], asked_at)
    assert sorted(UnfetchableMessage.objects.values_list("uid", flat=True)) == [5, 6]


def test_server_words_drop_imaplib_wrapping() -> None:
    bye = Exception("command: FETCH => FETCH failed: Internal error occurred.")
    assert unfetchable.server_words(bye) == "Internal error occurred."
    assert unfetchable.server_words(Exception(b"NO [UNAVAILABLE] Try later")) == (
        "NO [UNAVAILABLE] Try later"
    )
