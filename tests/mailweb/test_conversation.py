"""A conversation page and the teamwork on it: assign, status, snooze, labels, notes, presence."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import MailAccount, User
from mailweb import actions, live
from mailweb.models import Activity, Conversation, Label, Notification
from mailweb.tasks import wake_snoozed_conversations
from tests.mailweb.factories import deliver

pytestmark = pytest.mark.django_db


def test_messages_oldest_first_newest_expanded(
    member_client: Client, conversation: Conversation
) -> None:
    page = member_client.get(f"/c/{conversation.pk}/").content.decode()
    first, second = conversation.messages.order_by("received_at")
    assert page.index(f'id="message-{first.pk}"') < page.index(f'id="message-{second.pk}"')
    assert re.search(rf'id="message-{second.pk}" open', page)
    assert not re.search(rf'id="message-{first.pk}" open', page)
    assert "Pat Customer" in page
    assert "support@example.com" in page  # recipients
    assert "Reply number 1" in page  # text body
    assert "Printer on fire" in page


def test_htmx_open_returns_only_the_pane(member_client: Client, conversation: Conversation) -> None:
    response = member_client.get(
        f"/c/{conversation.pk}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="reading-pane"
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="reading-pane"')
    assert "<html" not in body


def test_unknown_conversation_is_404(member_client: Client, db: None) -> None:
    assert member_client.get("/c/999999/").status_code == 404


def test_assign_to_me_teammate_and_unassign(
    member_client: Client, member_with_access: User, teammate: User, conversation: Conversation
) -> None:
    member_client.post(f"/c/{conversation.pk}/assign", {"assignee": "me"})
    conversation.refresh_from_db()
    assert conversation.assignee == member_with_access
    member_client.post(f"/c/{conversation.pk}/assign", {"assignee": str(teammate.pk)})
    conversation.refresh_from_db()
    assert conversation.assignee == teammate
    notice = Notification.objects.get(user=teammate)
    assert notice.kind == "assigned" and "Printer on fire" in notice.text
    member_client.post(f"/c/{conversation.pk}/assign", {"assignee": ""})
    conversation.refresh_from_db()
    assert conversation.assignee is None
    kinds = list(conversation.activities.values_list("kind", flat=True))
    assert kinds == ["assign", "assign", "unassign"]
    page = member_client.get(f"/c/{conversation.pk}/").content.decode()
    assert "Mo Member assigned this to Tess Teammate" in page
    assert "Mo Member unassigned Tess Teammate" in page


def test_cannot_assign_someone_without_access(
    member_client: Client, outsider: User, conversation: Conversation
) -> None:
    response = member_client.post(
        f"/c/{conversation.pk}/assign", {"assignee": str(outsider.pk)}, follow=True
    )
    assert "cannot see this mailbox" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.assignee is None


def test_close_reopen_pending(member_client: Client, conversation: Conversation) -> None:
    member_client.post(f"/c/{conversation.pk}/status", {"status": "closed"})
    conversation.refresh_from_db()
    assert conversation.status == "closed"
    page = member_client.get(f"/c/{conversation.pk}/").content.decode()
    assert "Mo Member closed this" in page
    assert 'id="reopen-form"' in page
    member_client.post(f"/c/{conversation.pk}/status", {"status": "pending"})
    conversation.refresh_from_db()
    assert conversation.status == "pending"


def test_htmx_action_returns_the_pane_and_tells_the_list(
    member_client: Client, conversation: Conversation
) -> None:
    response = member_client.post(
        f"/c/{conversation.pk}/status", {"status": "closed"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert response["HX-Trigger"] == "inbox-changed"
    assert b'id="reading-pane"' in response.content


def test_snooze_and_wake_up(
    member_client: Client, member_with_access: User, conversation: Conversation
) -> None:
    actions.assign(conversation, member_with_access, actor=member_with_access)
    member_client.post(
        f"/c/{conversation.pk}/status", {"status": "snoozed", "preset": "3h", "tz_offset": "-60"}
    )
    conversation.refresh_from_db()
    assert conversation.status == "snoozed"
    assert conversation.snoozed_until is not None
    delta = conversation.snoozed_until - timezone.now()
    assert timedelta(hours=2, minutes=59) < delta <= timedelta(hours=3)
    assert wake_snoozed_conversations() == 0
    Conversation.objects.filter(pk=conversation.pk).update(
        snoozed_until=timezone.now() - timedelta(seconds=1)
    )
    assert wake_snoozed_conversations() == 1
    conversation.refresh_from_db()
    assert conversation.status == "open" and conversation.snoozed_until is None
    assert Notification.objects.filter(user=member_with_access, kind="snooze").exists()
    assert Activity.objects.filter(conversation=conversation, data__reason="snooze ended").exists()


def test_snooze_until_a_chosen_local_time(
    member_client: Client, conversation: Conversation
) -> None:
    target = (timezone.now() + timedelta(days=2)).replace(microsecond=0, second=0)
    local = target.astimezone(timezone.get_fixed_timezone(120))  # UTC+2 in the browser
    member_client.post(
        f"/c/{conversation.pk}/status",
        {"status": "snoozed", "until": local.strftime("%Y-%m-%dT%H:%M"), "tz_offset": "-120"},
    )
    conversation.refresh_from_db()
    assert conversation.snoozed_until == target


def test_snooze_in_the_past_is_refused(member_client: Client, conversation: Conversation) -> None:
    response = member_client.post(
        f"/c/{conversation.pk}/status",
        {"status": "snoozed", "until": "2001-01-01T08:00"},
        follow=True,
    )
    assert "time in the future" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.status == "open"


def test_labels_add_create_and_remove(member_client: Client, conversation: Conversation) -> None:
    billing = Label.objects.create(name="Billing")
    member_client.post(
        f"/c/{conversation.pk}/labels", {"label": [str(billing.pk)], "new_label": "Urgent"}
    )
    assert sorted(conversation.labels.values_list("name", flat=True)) == ["Billing", "Urgent"]
    member_client.post(f"/c/{conversation.pk}/labels", {"label": [str(billing.pk)]})
    assert list(conversation.labels.values_list("name", flat=True)) == ["Billing"]
    page = member_client.get(f"/c/{conversation.pk}/").content.decode()
    assert "added Billing, Urgent" in page
    assert "removed Urgent" in page


def test_note_with_mentions_notifies_people_who_can_see_it(
    member_client: Client,
    teammate: User,
    outsider: User,
    admin_user: User,
    conversation: Conversation,
) -> None:
    member_client.post(
        f"/c/{conversation.pk}/notes",
        {"body": "@tess can you check this? also @olly and @admin@example.com"},
    )
    note = conversation.notes.get()
    assert {person.email for person in note.mentions.all()} == {teammate.email, admin_user.email}
    assert Notification.objects.filter(user=teammate, kind="mention").count() == 1
    assert not Notification.objects.filter(user=outsider).exists()
    page = member_client.get(f"/c/{conversation.pk}/").content.decode()
    assert "can you check this?" in page
    assert "added an internal note" in page
    # The teammate sees it in the app and opening it marks it read.
    client = Client()
    client.force_login(teammate)
    inbox = client.get("/").content.decode()
    assert 'aria-label="1 unread"' in inbox
    notifications = client.get("/notifications/").content.decode()
    assert "Mo Member mentioned you" in notifications
    notice = Notification.objects.get(user=teammate)
    response = client.post(
        "/notifications/read", {"id": notice.pk, "conversation": conversation.pk}
    )
    assert response["Location"] == f"/c/{conversation.pk}/"
    notice.refresh_from_db()
    assert notice.read_at is not None
    # Reading the conversation also clears what was pending for it.
    actions.add_note(conversation, "@tess one more thing", author=admin_user)
    assert 'aria-label="1 unread"' in client.get("/").content.decode()
    client.get(f"/c/{conversation.pk}/")
    assert "unread" not in client.get("/notifications/").content.decode().split("<main")[1]


def test_empty_note_is_refused(member_client: Client, conversation: Conversation) -> None:
    response = member_client.post(f"/c/{conversation.pk}/notes", {"body": "   "}, follow=True)
    assert "cannot be empty" in response.content.decode()
    assert not conversation.notes.exists()


def test_presence_shows_who_else_is_viewing_or_replying(
    member_client: Client, teammate: User, conversation: Conversation
) -> None:
    first = member_client.post(f"/c/{conversation.pk}/presence", {"state": "viewing"})
    assert b"is viewing" not in first.content  # alone
    other = Client()
    other.force_login(teammate)
    seen = other.post(f"/c/{conversation.pk}/presence", {"state": "replying"})
    assert b"Mo Member is viewing" in seen.content
    back = member_client.post(f"/c/{conversation.pk}/presence", {"state": "viewing"})
    assert b"Tess Teammate is <strong>replying</strong>" in back.content
    other.post(f"/c/{conversation.pk}/presence", {"state": "left"})
    assert [(p.name, p.state) for p in live.present(conversation.pk, 0)] == [
        ("Mo Member", "viewing")
    ]


def test_presence_expires(teammate: User, conversation: Conversation, monkeypatch: object) -> None:
    import time

    live.announce(conversation.pk, teammate.pk, "Tess", "viewing")
    assert [p.name for p in live.present(conversation.pk, 0)] == ["Tess"]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 26)  # type: ignore[attr-defined]
    assert live.present(conversation.pk, 0) == []


def test_live_updates_show_new_mail_without_reload(
    member_client: Client, mailbox: MailAccount, conversation: Conversation
) -> None:
    page = member_client.get(f"/c/{conversation.pk}/").content.decode()
    url = re.search(r'hx-get="(/c/\d+/live\?v=[^"]+)"', page)
    assert url is not None
    assert member_client.get(url.group(1)).status_code == 204
    newest = conversation.messages.order_by("-received_at").first()
    assert newest is not None
    deliver(mailbox, subject="Re: Printer on fire", in_reply_to=newest.message_id, text="Now smoke")
    update = member_client.get(url.group(1))
    assert update.status_code == 200
    body = update.content.decode()
    assert "Now smoke" in body
    assert 'id="timeline" class="timeline" hx-swap-oob="true"' in body
    assert 'hx-swap-oob="true"' in body.split('id="live"')[1].split(">")[0]


def test_compose_defaults(
    member_client: Client, mailbox: MailAccount, conversation: Conversation
) -> None:
    mailbox.signature = "Mo\nSupport team"
    mailbox.save()
    newest = conversation.messages.order_by("-received_at").first()
    assert newest is not None
    response = member_client.get(
        f"/c/{conversation.pk}/compose?mode=reply&message={newest.pk}", HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert 'value="Customer &lt;customer@example.org&gt;"' in body
    assert 'value="Re: Printer on fire"' in body
    assert "-- \nMo\nSupport team" in body
    assert "&gt; Reply number 1" in body
    # Without JavaScript the composer opens in the page.
    plain = member_client.get(f"/c/{conversation.pk}/compose?mode=forward&message={newest.pk}")
    assert plain.status_code == 302
    page = member_client.get(plain["Location"]).content.decode()
    assert "Forwarded message" in page and 'value="Fwd: Printer on fire"' in page
