"""Every URL, walked as a signed-out visitor and as a member without access, leaks nothing.

The URL list is read from the resolver, so a page added later is covered without editing this
file. Each integer in a route is filled with the id of an object in a mailbox the member cannot
see (by the route's first segment), every page is fetched with GET and POST, and every answer
must carry none of the hidden conversation's text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import MailAccount, User
from mailweb import image_proxy
from mailweb.models import Conversation, OutgoingMessage

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

SECRET = b"TOPSECRET"
# Pages anyone may load: they show no mail (sign-in, password reset, the admin's login, the icon).
PUBLIC_PREFIXES = ("login/", "password-reset/", "reset/", "admin/", "oauth/", "favicon.ico")
MAIL_PREFIXES = ("c/", "m/", "a/", "outbox/", "img")


def _walk(patterns: Sequence[Any], prefix: str = "") -> Iterator[str]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def all_routes() -> list[str]:
    return sorted(set(_walk(get_resolver().url_patterns)))


def _fill(route: str, ids: dict[str, int]) -> str:
    head = route.split("/", 1)[0] + "/"
    number = ids.get(head, ids["mailboxes/"])

    def replace(match: re.Match[str]) -> str:
        converter = match.group(1) or "str"
        return str(number) if converter == "int" else "x1"

    path = re.sub(r"<(?:(\w+):)?\w+>", replace, route)
    path = path.lstrip("^").rstrip("$").replace("\\Z", "")
    return "/" + path


@pytest.fixture
def secret_ids(
    secret_conversation: Conversation, hidden_mailbox: MailAccount, admin_user: User
) -> dict[str, int]:
    message = secret_conversation.messages.get()
    attachment = message.attachments.get()
    outgoing = OutgoingMessage.objects.create(
        mailbox=hidden_mailbox,
        conversation=secret_conversation,
        author=admin_user,
        message_id="<topsecret-out@example.com>",
        to=[["Boss", "boss@corp.test"]],
        subject="TOPSECRET reply",
        body_text="TOPSECRET reply body",
        status=OutgoingMessage.Status.FAILED,
    )
    return {
        "c/": secret_conversation.pk,
        "m/": message.pk,
        "a/": attachment.pk,
        "outbox/": outgoing.pk,
        "mailboxes/": hidden_mailbox.pk,
        "img": message.pk,
    }


def _requests(client: Client, route: str, ids: dict[str, int]) -> Iterator[tuple[str, Any]]:
    path = _fill(route, ids)
    query: dict[str, Any] = {
        "mailbox": ids["mailboxes/"],
        "q": "merger",
        "status": "all",
        "message": ids["m/"],
        "t": image_proxy.sign(ids["m/"], "https://tracker.example.net/pixel.gif"),
        "images": "1",
    }
    yield f"GET {path}", client.get(path, query)
    yield f"GET {path} (htmx)", client.get(path, query, HTTP_HX_REQUEST="true")
    yield (
        f"POST {path}",
        client.post(
            path,
            {
                "assignee": "me",
                "status": "closed",
                "body": "hi",
                "to": "x@example.org",
                "label": "1",
                "state": "viewing",
                "user": "1",
            },
        ),
    )


def _assert_no_leak(label: str, response: Any, route: str) -> None:
    status = response.status_code
    content = b"".join(response) if response.streaming else response.content
    assert SECRET not in content, f"{label} leaked hidden mail"
    assert status != 500, f"{label} crashed"
    if route.startswith(MAIL_PREFIXES):
        assert status in {302, 400, 403, 404, 405}, f"{label} answered {status}"


def test_the_walk_covers_the_inbox(db: None) -> None:
    routes = all_routes()
    for expected in ("c/<int:pk>/", "m/<int:pk>/frame", "a/<int:pk>/", "img", "search/"):
        assert expected in routes


def test_signed_out_visitor_gets_no_data(client: Client, secret_ids: dict[str, int]) -> None:
    for route in all_routes():
        for label, response in _requests(client, route, secret_ids):
            _assert_no_leak(label, response, route)
            if not route.startswith(PUBLIC_PREFIXES) and route:
                status = response.status_code
                assert status in {302, 403, 404, 405}, f"{label}: {status} for a visitor"
                if status == 302:
                    assert "/login/" in response["Location"], label


def test_member_without_access_gets_no_data(
    client: Client, outsider: User, secret_ids: dict[str, int]
) -> None:
    client.force_login(outsider)
    for route in all_routes():
        for label, response in _requests(client, route, secret_ids):
            _assert_no_leak(label, response, route)
    # And nothing changed behind the scenes.
    conversation = Conversation.objects.get(pk=secret_ids["c/"])
    assert conversation.status == Conversation.Status.OPEN
    assert conversation.assignee is None
    assert not conversation.notes.exists()
    assert OutgoingMessage.objects.get(pk=secret_ids["outbox/"]).status == "failed"


def test_member_with_access_to_another_mailbox_gets_no_data(
    client: Client, member_with_access: User, secret_ids: dict[str, int]
) -> None:
    client.force_login(member_with_access)
    for route in all_routes():
        if route.startswith("admin/"):
            continue
        for label, response in _requests(client, route, secret_ids):
            _assert_no_leak(label, response, route)
