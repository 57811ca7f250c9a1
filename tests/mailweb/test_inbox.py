"""The inbox list: order, filters, sidebar counts, unread state, keyset pages, live refresh."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import MailAccount, User
from mailweb import actions
from mailweb.models import Conversation, Label
from mailweb.selectors import InboxFilter, inbox_page, sidebar_counts
from tests.mailweb.factories import conversation_with, deliver

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def _sidebar_keys() -> list[str]:
    from mailweb.live import change_counter

    return [f"mailweb:sidebar:{user.pk}:None:{change_counter()}" for user in User.objects.all()]


def unread(conversation: Conversation) -> bool:
    return bool(conversation.is_unread)  # type: ignore[attr-defined]


def _many(mailbox: MailAccount, count: int) -> list[Conversation]:
    base = timezone.now() - timedelta(days=1)
    made = []
    for index in range(count):
        message = deliver(
            mailbox,
            subject=f"Question {index:03d}",
            sender=f"Person {index} <p{index}@customer.test>",
            date=base + timedelta(minutes=index),
        )
        made.append(message.conversation)
    return made


def _subjects(client: Client, url: str) -> list[str]:
    import re

    page = client.get(url).content.decode()
    return re.findall(r'<span class="subject">([^<]*)</span>', page)


def test_newest_activity_first_across_visible_mailboxes(
    client: Client, admin_user: User, mailbox: MailAccount, hidden_mailbox: MailAccount
) -> None:
    now = timezone.now()
    deliver(mailbox, subject="Older", date=now - timedelta(hours=2))
    deliver(hidden_mailbox, subject="Other mailbox", date=now - timedelta(hours=1))
    deliver(mailbox, subject="Newest", date=now)
    client.force_login(admin_user)
    assert _subjects(client, "/") == ["Newest", "Other mailbox", "Older"]


def test_member_sees_only_granted_mailboxes(
    member_client: Client, mailbox: MailAccount, hidden_mailbox: MailAccount
) -> None:
    deliver(mailbox, subject="Ours")
    deliver(hidden_mailbox, subject="Theirs")
    assert _subjects(member_client, "/") == ["Ours"]
    assert _subjects(member_client, f"/?mailbox={hidden_mailbox.pk}") == []


def test_filters(
    member_client: Client, member_with_access: User, teammate: User, mailbox: MailAccount
) -> None:
    mine, theirs, nobody, closed, pending = _many(mailbox, 5)
    actions.assign(mine, member_with_access, actor=member_with_access)
    actions.assign(theirs, teammate, actor=member_with_access)
    actions.set_status(closed, "closed", actor=member_with_access)
    actions.set_status(pending, "pending", actor=member_with_access)
    vip = Label.objects.create(name="VIP")
    actions.set_labels(nobody, [vip], actor=member_with_access)

    assert _subjects(member_client, "/?assignee=me") == [mine.subject]
    assert _subjects(member_client, f"/?assignee={teammate.pk}") == [theirs.subject]
    assert _subjects(member_client, "/?assignee=unassigned") == [nobody.subject]
    assert _subjects(member_client, "/?status=closed") == [closed.subject]
    assert _subjects(member_client, "/?status=pending") == [pending.subject]
    assert _subjects(member_client, f"/?label={vip.pk}") == [nobody.subject]
    assert len(_subjects(member_client, "/?status=all")) == 5
    assert _subjects(member_client, f"/?mailbox={mailbox.pk}&assignee=me") == [mine.subject]


def test_sidebar_counts(
    member_with_access: User, teammate: User, mailbox: MailAccount, hidden_mailbox: MailAccount
) -> None:
    one, two, three, four = _many(mailbox, 4)
    _many(hidden_mailbox, 2)  # not visible to the member
    actions.assign(one, member_with_access, actor=member_with_access)
    actions.assign(two, teammate, actor=member_with_access)
    actions.set_status(three, "closed", actor=member_with_access)
    actions.set_status(
        four, "snoozed", actor=member_with_access, snooze_until=timezone.now() + timedelta(days=1)
    )
    urgent = Label.objects.create(name="Urgent")
    actions.set_labels(one, [urgent], actor=member_with_access)
    counts = sidebar_counts(member_with_access, InboxFilter())
    assert counts.statuses == {"open": 2, "pending": 0, "snoozed": 1}
    assert counts.mine == 1
    assert counts.unassigned == 0
    assert counts.mailboxes == [(mailbox, 2)]
    assert counts.labels == [(urgent, 1)]
    assert {person.email for person in counts.teammates} == {
        member_with_access.email,
        teammate.email,
    }


def test_unread_is_per_person(
    member_client: Client,
    member_with_access: User,
    teammate: User,
    mailbox: MailAccount,
) -> None:
    conversation = conversation_with(mailbox, 1, subject="Fresh mail")
    page = inbox_page(member_with_access, InboxFilter())
    assert unread(page.conversations[0])
    member_client.get(f"/c/{conversation.pk}/")
    assert not unread(inbox_page(member_with_access, InboxFilter()).conversations[0])
    assert unread(inbox_page(teammate, InboxFilter()).conversations[0])
    # New mail makes it unread again.
    deliver(mailbox, subject="Re: Fresh mail", in_reply_to=conversation.messages.get().message_id)
    assert unread(inbox_page(member_with_access, InboxFilter()).conversations[0])
    # And "Mark unread" does too.
    member_client.get(f"/c/{conversation.pk}/")
    member_client.post(f"/c/{conversation.pk}/unread")
    assert unread(inbox_page(member_with_access, InboxFilter()).conversations[0])


def test_keyset_pages_cover_everything_once(member_with_access: User, mailbox: MailAccount) -> None:
    made = _many(mailbox, 23)
    # Two conversations with the same timestamp must not be skipped or repeated.
    Conversation.objects.filter(pk__in=[made[5].pk, made[6].pk]).update(
        last_activity_at=made[5].last_activity_at
    )
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = inbox_page(member_with_access, InboxFilter(), cursor=cursor, size=5)
        seen += [c.pk for c in page.conversations]
        pages += 1
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert pages == 5
    assert sorted(seen) == sorted(c.pk for c in made)
    assert len(seen) == len(set(seen))


def test_older_page_link_and_htmx_rows(member_client: Client, mailbox: MailAccount) -> None:
    _many(mailbox, 55)
    page = member_client.get("/").content.decode()
    assert page.count('class="conv-row') == 50
    assert "Older conversations" in page
    import re

    link = re.search(r'href="(/\?after=[^"]+)"', page)
    assert link is not None
    more = member_client.get(
        link.group(1).replace("&amp;", "&"), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="list-more"
    ).content.decode()
    assert more.count('class="conv-row') == 5
    assert "<html" not in more


def test_constant_queries_per_page_whatever_the_size(
    django_assert_num_queries: object, member_with_access: User, mailbox: MailAccount
) -> None:
    conversations = _many(mailbox, 60)
    label = Label.objects.create(name="L")
    for conversation in conversations[:30]:
        conversation.labels.add(label)
        actions.assign(conversation, member_with_access, actor=member_with_access)
    for size in (5, 20, 60):
        # One query for the page (with mailbox, assignee, unread state), one for its labels.
        with django_assert_num_queries(2):  # type: ignore[operator]
            page = inbox_page(member_with_access, InboxFilter(), size=size)
            for conversation in page.conversations:
                _ = [conversation.mailbox.address, conversation.assignee, unread(conversation)]
                _ = [label.name for label in conversation.labels.all()]
        assert len(page.conversations) == size


def test_whole_page_query_count_does_not_grow_with_rows(
    member_client: Client, mailbox: MailAccount
) -> None:
    _many(mailbox, 3)
    cache.delete_many(_sidebar_keys())
    with CaptureQueriesContext(connection) as few:
        member_client.get("/")
    _many(mailbox, 40)
    cache.delete_many(_sidebar_keys())  # the counts are cached briefly; compare uncached pages
    with CaptureQueriesContext(connection) as many:
        member_client.get("/")
    assert len(few) == len(many)


def test_live_refresh_answers_204_until_something_changes(
    member_client: Client,
    member_with_access: User,
    mailbox: MailAccount,
    django_capture_on_commit_callbacks: object,
) -> None:
    conversation = conversation_with(mailbox, 1, subject="Watch me")
    page = member_client.get("/").content.decode()
    import re

    url = re.search(r'hx-get="(/live/inbox\?[^"]+)"', page)
    assert url is not None
    live = url.group(1).replace("&amp;", "&")
    assert member_client.get(live).status_code == 204
    deliver(mailbox, subject="Brand new")
    refreshed = member_client.get(live)
    assert refreshed.status_code == 200
    assert b"Brand new" in refreshed.content
    new_url = re.search(r'hx-get="(/live/inbox\?[^"]+)"', refreshed.content.decode())
    assert new_url is not None
    live = new_url.group(1).replace("&amp;", "&")
    assert member_client.get(live).status_code == 204
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        actions.assign(conversation, member_with_access, actor=member_with_access)
    assert member_client.get(live).status_code == 200


def test_sidebar_counts_are_cached_until_the_team_acts(
    member_with_access: User, mailbox: MailAccount, django_capture_on_commit_callbacks: object
) -> None:
    (conversation,) = _many(mailbox, 1)
    assert sidebar_counts(member_with_access, InboxFilter()).mine == 0
    Conversation.objects.filter(pk=conversation.pk).update(assignee=member_with_access)
    assert sidebar_counts(member_with_access, InboxFilter()).mine == 0  # cached
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        actions.set_status(conversation, "pending", actor=member_with_access)
    counts = sidebar_counts(member_with_access, InboxFilter())
    assert counts.statuses["pending"] == 1 and counts.statuses["open"] == 0
