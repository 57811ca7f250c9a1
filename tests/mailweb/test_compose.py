"""What the composer starts with: recipients, subject prefixes, quote and signature."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from accounts.models import MailAccount
from mailweb.compose import initial_draft, parse_recipients
from tests.mailweb.factories import deliver

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


@pytest.fixture
def incoming(mailbox: MailAccount) -> object:
    mailbox.signature = "Support\nExample Inc."
    mailbox.save()
    return deliver(
        mailbox,
        subject="RE: Fwd: Order 55",
        sender="Ann <ann@client.test>",
        to="support@example.com, Bob <bob@client.test>",
        cc="Cy <cy@client.test>, support@example.com",
        text="Line one\n\nLine three",
    )


def test_reply_goes_to_the_sender_with_quote_and_signature(
    mailbox: MailAccount, incoming: object
) -> None:
    draft = initial_draft(mailbox, incoming, "reply")  # type: ignore[arg-type]
    assert draft.to == "Ann <ann@client.test>"
    assert draft.cc == ""
    assert draft.subject == "Re: Order 55"
    assert draft.body.index("-- \nSupport\nExample Inc.") < draft.body.index("wrote:")
    assert "> Line one\n>\n> Line three" in draft.body


def test_reply_all_copies_everyone_but_ourselves(mailbox: MailAccount, incoming: object) -> None:
    draft = initial_draft(mailbox, incoming, "reply_all")  # type: ignore[arg-type]
    assert draft.to == "Ann <ann@client.test>"
    assert draft.cc == "Bob <bob@client.test>, Cy <cy@client.test>"


def test_reply_to_header_wins(mailbox: MailAccount) -> None:
    from tests.mailweb.factories import build

    message = build(subject="Hi", sender="Noreply <noreply@shop.test>")
    message["Reply-To"] = "Help <help@shop.test>"
    stored = deliver(mailbox, message)
    assert initial_draft(mailbox, stored, "reply").to == "Help <help@shop.test>"


def test_replying_to_our_own_message_writes_to_its_recipients(mailbox: MailAccount) -> None:
    ours = deliver(
        mailbox, subject="Follow-up", sender="support@example.com", to="Dee <dee@client.test>"
    )
    assert initial_draft(mailbox, ours, "reply").to == "Dee <dee@client.test>"


def test_forward_has_no_recipients_and_the_original_headers(
    mailbox: MailAccount, incoming: object
) -> None:
    draft = initial_draft(mailbox, incoming, "forward")  # type: ignore[arg-type]
    assert draft.to == "" and draft.subject == "Fwd: Order 55"
    assert "---------- Forwarded message ---------" in draft.body
    assert "From: Ann <ann@client.test>" in draft.body
    assert "Cc: Cy <cy@client.test>, support@example.com" in draft.body
    assert "Line three" in draft.body


def test_html_only_mail_is_quoted_as_text(mailbox: MailAccount) -> None:
    html_only = deliver(mailbox, text=None, html="<p>Hello <b>there</b></p><p>Bye</p>")
    body = initial_draft(mailbox, html_only, "reply").body
    assert "> Hello there" in body and "<b>" not in body


def test_parse_recipients() -> None:
    assert parse_recipients("Ann <ann@x.test>; bob@y.test, ann@x.test") == [
        ("Ann", "ann@x.test"),
        ("", "bob@y.test"),
    ]
    assert parse_recipients("  ") == []
    with pytest.raises(ValidationError, match="not an email address"):
        parse_recipients("Ann <ann@x.test>, oops")
