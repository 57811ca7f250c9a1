"""A person's day in headless Chromium: sign in, read, assign, note, reply, close, search."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts import vault
from accounts.models import MailAccount, MailboxAccess, User
from mailweb.celery import app as celery_app
from mailweb.models import Conversation, OutgoingMessage
from mailweb.views import inbox as inbox_views
from tests.browser.conftest import Watch, sign_in_cookie, tripped
from tests.fakes.ca import TestCA
from tests.fakes.idp import FakeIdentityProvider
from tests.fakes.smtp import FakeSMTPServer
from tests.mailweb.factories import conversation_with, deliver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
OUTLOOK = "https://outlook.office.com"


@pytest.fixture
def smtp_server(test_ca: TestCA, idp: FakeIdentityProvider) -> Iterator[FakeSMTPServer]:
    with FakeSMTPServer(test_ca, idp) as server:
        yield server


@pytest.fixture
def team(
    idp: FakeIdentityProvider,
    smtp_server: FakeSMTPServer,
    settings: Any,
    trust_test_ca: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    settings.MICROSOFT_SMTP_HOST = smtp_server.host
    settings.MAILWEB_SMTP_FILES_SENT = True
    # Sending runs inline in the live server instead of needing a worker for this test.
    monkeypatch.setattr(celery_app.conf, "task_always_eager", True)
    address = "helpdesk@example.com"
    idp.add_user(address)
    mailbox = MailAccount.objects.create(
        address=address,
        display_name="Helpdesk",
        method=MailAccount.Method.MICROSOFT_IMAP,
        signature="The Helpdesk team",
    )
    vault.store_oauth_tokens(
        mailbox,
        "refresh",
        access_token=idp.mint_access_token(address, [f"{OUTLOOK}/SMTP.Send"]),
        resource=OUTLOOK,
        expires_at=time.time() + 3600,
    )
    me = User.objects.create_user(
        email="mo@example.com", password="correct horse battery", name="Mo Member"
    )
    tess = User.objects.create_user(
        email="tess@example.com", password="correct horse battery", name="Tess Teammate"
    )
    for person in (me, tess):
        MailboxAccess.objects.create(user=person, mailbox=mailbox)
    conversation = conversation_with(
        mailbox,
        2,
        subject="Cannot log in",
        sender="Pat Customer <pat@customer.test>",
        text="I cannot log in since this morning.",
    )
    conversation_with(
        mailbox,
        1,
        subject="Invoice for March",
        sender="Acme <billing@acme.test>",
        text="Please find the invoice attached.",
    )
    return {"mailbox": mailbox, "me": me, "tess": tess, "conversation": conversation}


def test_sign_in_read_assign_note_reply_close_search(
    page: Any, live_server: Any, team: dict[str, Any], smtp_server: FakeSMTPServer, watch: Watch
) -> None:
    conversation: Conversation = team["conversation"]
    page.goto(live_server.url + "/")
    assert "/login/" in page.url
    page.get_by_label("Email").fill("mo@example.com")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in", exact=True).click()

    # The inbox lists both conversations, newest activity first, unread.
    rows = page.locator(".conv-row")
    rows.first.wait_for()
    assert rows.count() == 2
    assert page.locator(".conv-row.unread").count() == 2

    # Open with the keyboard: j selects, o opens (htmx swaps the reading pane, URL changes).
    page.locator("body").press("j")
    row = page.locator(f'.conv-row[data-conversation="{conversation.pk}"]')
    if "is-selected" not in (row.get_attribute("class") or ""):
        page.keyboard.press("j")
    page.keyboard.press("o")
    page.locator("#conv-subject", has_text="Cannot log in").wait_for()
    assert page.url.endswith(f"/c/{conversation.pk}/")
    # The row is marked read once htmx has settled the swap, a moment after the subject shows.
    expect(row).not_to_have_class(re.compile(r"\bunread\b"))
    assert "unread" not in (row.get_attribute("class") or "")
    assert page.locator("details.message[open]").count() == 1

    # Assign to me with "a".
    page.keyboard.press("a")
    page.locator("#conv-assignee", has_text="Assigned to Mo Member").wait_for()

    # An internal note mentioning a teammate.
    page.get_by_label("Internal note").fill("@tess this looks like the SSO outage")
    page.get_by_role("button", name="Add note").click()
    page.locator(".note", has_text="SSO outage").wait_for()

    # Reply with "r": the composer has the quote and the signature; sending goes over SMTP.
    page.keyboard.press("r")
    composer = page.locator("#composer form")
    composer.wait_for()
    body = page.locator("#compose-body")
    assert "The Helpdesk team" in body.input_value()
    assert "> I cannot log in" in body.input_value() or "> Reply number 1" in body.input_value()
    body.press("Control+Home")
    body.type("Hi Pat, we fixed the SSO issue. ")
    page.get_by_role("button", name="Send", exact=True).click()
    page.locator(".message-out").wait_for()
    assert len(smtp_server.messages) == 1
    sent = email.message_from_bytes(smtp_server.messages[0].data, policy=email.policy.default)
    assert sent["From"] == "Helpdesk <helpdesk@example.com>"
    assert "we fixed the SSO issue" in sent.get_content()
    assert OutgoingMessage.objects.get().status == "sent"

    # Close with "e"; the list refreshes without a reload and the conversation leaves "Open".
    page.keyboard.press("e")
    page.locator("#conv-status", has_text="Closed").wait_for()
    page.locator(f'.conv-row[data-conversation="{conversation.pk}"]').wait_for(state="detached")
    conversation.refresh_from_db()
    assert conversation.status == "closed"
    assert conversation.assignee == team["me"]

    # Search with "/".
    page.keyboard.press("/")
    page.keyboard.type("from:billing@acme.test")
    page.keyboard.press("Enter")
    page.locator("#list-heading", has_text="Search results").wait_for()
    assert page.locator(".conv-row .subject").all_inner_texts() == ["Invoice for March"]

    # The help overlay.
    page.locator("body").press("?")
    assert page.locator("#shortcuts").is_visible()
    page.keyboard.press("Escape")

    assert watch.dialogs == []
    assert tripped(page) == []
    assert not [e for e in watch.console_errors if "Content Security Policy" in e], (
        watch.console_errors
    )


def test_replying_under_an_html_message_breaks_no_content_security_rule(
    page: Any, live_server: Any, team: dict[str, Any], smtp_server: FakeSMTPServer, watch: Watch
) -> None:
    """The reply's swap re-renders the message frame, which the page sized through its style.

    htmx settled a swap by copying "style" onto the new elements with setAttribute, which the
    strict policy (style-src 'self') refuses, so every reply under an HTML message logged errors.
    """
    newsletter = deliver(
        team["mailbox"],
        subject="Spring offers",
        sender="Shop <news@shop.test>",
        text=None,
        html="<h1>Spring</h1><p>Hello <b>there</b></p>" + "<p>More.</p>" * 20,
    )
    sign_in_cookie(page, live_server, team["me"])
    page.goto(f"{live_server.url}/c/{newsletter.conversation_id}/")
    page.wait_for_function(
        "() => document.querySelector('iframe.message-frame')?.style.height !== ''"
    )
    page.locator("#reply-button").click()
    page.locator("#compose-body").wait_for()
    page.get_by_role("button", name="Send", exact=True).click()
    page.locator(".message-out").wait_for()
    assert len(smtp_server.messages) == 1
    assert not [e for e in watch.console_errors if "Content Security Policy" in e], (
        watch.console_errors
    )


def test_live_updates_and_collision_indicator(
    browser: Any, live_server: Any, team: dict[str, Any], watch: Watch
) -> None:
    conversation: Conversation = team["conversation"]
    contexts = []
    pages = []
    for person in (team["me"], team["tess"]):
        context = browser.new_context()
        tab = context.new_page()
        tab.set_default_timeout(15000)
        sign_in_cookie(tab, live_server, person)
        tab.goto(f"{live_server.url}/c/{conversation.pk}/")
        contexts.append(context)
        pages.append(tab)
    mine, theirs = pages
    # Each sees the other (presence is announced on load and every 10 s).
    mine.reload()
    mine.locator(".collision", has_text="Tess Teammate is viewing").wait_for()
    # Tess starts replying: Mo sees it within the next presence beat.
    theirs.locator("#reply-button").click()
    theirs.locator("#composer form").wait_for()
    mine.locator(".collision", has_text="replying").wait_for(timeout=20000)
    # New mail arrives: it shows up in Mo's open conversation without a reload.
    newest = conversation.messages.order_by("-received_at").first()
    assert newest is not None
    deliver(
        team["mailbox"],
        subject="Re: Cannot log in",
        in_reply_to=newest.message_id,
        text="Still broken, please hurry",
        sender="Pat Customer <pat@customer.test>",
    )
    mine.locator(".message", has_text="Still broken").wait_for(timeout=15000)
    # Tess assigns it to herself: Mo's header follows.
    theirs.locator("#assign-me-form button").click()
    mine.locator("#conv-assignee", has_text="Tess Teammate").wait_for(timeout=15000)
    for context in contexts:
        context.close()


def test_narrow_screen_shows_one_column(
    browser: Any, live_server: Any, team: dict[str, Any]
) -> None:
    context = browser.new_context(viewport={"width": 420, "height": 860})
    tab = context.new_page()
    sign_in_cookie(tab, live_server, team["me"])
    tab.goto(live_server.url + "/")
    assert tab.locator(".list-column").is_visible()
    assert not tab.locator("#reading-pane").is_visible()
    tab.locator(".conv-link").first.click()
    tab.locator("#conv-subject").wait_for()
    assert not tab.locator(".list-column").is_visible()
    assert tab.locator(".back-link").is_visible()
    box = tab.locator("#reading-pane").bounding_box()
    assert box is not None and box["width"] <= 420
    context.close()


def test_action_during_a_list_refresh_still_refreshes_the_list(
    page: Any, live_server: Any, team: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An action's "inbox-changed" while a slow list refresh is in flight is not lost.

    The refresh reads the list, then takes a second to answer; the conversation is closed
    meanwhile. Without ``hx-sync="this:replace"`` the stale answer replaced the list element
    and the queued refresh went with it, so the closed conversation stayed until the next
    15-second poll.
    """
    conversation: Conversation = team["conversation"]
    sign_in_cookie(page, live_server, team["me"])
    page.goto(f"{live_server.url}/c/{conversation.pk}/")
    row = page.locator(f'.conv-row[data-conversation="{conversation.pk}"]')
    row.wait_for()

    read_list = inbox_views.inbox_page
    answering: list[int] = []

    def slow_answer(*args: Any, **kwargs: Any) -> Any:
        answering.append(1)
        try:
            listed = read_list(*args, **kwargs)
            time.sleep(1.0)
            return listed
        finally:
            answering.pop()

    monkeypatch.setattr(inbox_views, "inbox_page", slow_answer)
    with page.expect_request(re.compile(r"/live/inbox")):
        page.evaluate("htmx.trigger(document.body, 'inbox-changed')")
    page.locator("body").press("e")
    page.locator("#conv-status", has_text="Closed").wait_for()
    row.wait_for(state="detached", timeout=8000)
    # The aborted refresh is still answering in the live server: let it finish before the
    # test database is flushed.
    page.goto("about:blank")
    deadline = time.monotonic() + 5
    while answering and time.monotonic() < deadline:
        time.sleep(0.05)


def test_action_right_after_a_list_refresh_still_refreshes_the_list(
    page: Any, live_server: Any, team: dict[str, Any]
) -> None:
    """An action's "inbox-changed" a few milliseconds after a list refresh landed is not lost.

    htmx binds a swapped-in element's triggers when the swap settles, 20 ms later by default;
    an event in between found no listener, and a conversation closed then stayed in the list
    until the next 15-second poll (a CI run of the flow test above failed so). The list now
    settles at once (``settle:0ms``), so its new element listens from the moment it is in.
    Here the browser's network is held: the refresh is answered with the list as it was before
    the close, and the close's answer follows it at once.
    """
    conversation: Conversation = team["conversation"]
    sign_in_cookie(page, live_server, team["me"])
    page.goto(f"{live_server.url}/c/{conversation.pk}/")
    row = page.locator(f'.conv-row[data-conversation="{conversation.pk}"]')
    row.wait_for()

    held: dict[str, Any] = {}

    def hold_first(name: str) -> Any:
        def handle(route: Any) -> None:
            if name in held:
                route.continue_()
            else:
                held[name] = route

        return handle

    page.route(re.compile(r"/live/inbox"), hold_first("list"))
    page.route(re.compile(rf"/c/{conversation.pk}/status"), hold_first("close"))

    page.evaluate("htmx.trigger(document.body, 'inbox-changed')")
    _wait_for_request(page, held, "list")
    stale_list = held["list"].fetch()  # read before the close
    page.locator("body").press("e")
    _wait_for_request(page, held, "close")
    closed = held["close"].fetch()
    held["list"].fulfill(response=stale_list)
    held["close"].fulfill(response=closed)

    page.locator("#conv-status", has_text="Closed").wait_for()
    row.wait_for(state="detached", timeout=8000)


def _wait_for_request(page: Any, held: dict[str, Any], name: str) -> None:
    """Let the browser run until the route handler has held the request called ``name``."""
    deadline = time.monotonic() + 5
    while name not in held:
        assert time.monotonic() < deadline, f"the {name} request was never made"
        page.wait_for_timeout(10)
