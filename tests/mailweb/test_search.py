"""Search: full-text on PostgreSQL (ranked), operators, visibility, and the LIKE fallback."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client

from accounts.models import MailAccount, User
from mailweb import actions, search
from mailweb.models import Conversation
from tests.mailweb.factories import deliver

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


@pytest.fixture
def corpus(mailbox: MailAccount, hidden_mailbox: MailAccount) -> dict[str, Conversation]:
    def add(key: str, **kwargs: Any) -> None:
        made[key] = deliver(mailbox, **kwargs).conversation

    made: dict[str, Conversation] = {}
    add(
        "invoice",
        subject="Invoice 2291 overdue",
        sender="Alice <alice@acme.test>",
        text="Please pay the invoice.",
    )
    add(
        "refund",
        subject="Refund request",
        sender="Bob <bob@shop.test>",
        text="The invoices you sent were wrong; I want a refund.",
    )
    add(
        "report",
        subject="Quarterly report",
        sender="Carol <carol@acme.test>",
        to="billing@example.com",
        text="Attached.",
        attachments=[("q3.pdf", "application/pdf", b"%PDF")],
    )
    add("other", subject="Lunch", sender="Dan <dan@food.test>", text="Pizza?")
    made["hidden"] = deliver(hidden_mailbox, subject="Invoice secret", text="invoice").conversation
    return made


def _subjects(user: User, query: str) -> list[str]:
    return [c.subject for c in search.search(user, query).conversations]


def test_parse_query() -> None:
    parsed = search.parse_query(
        'invoice from:alice to:bob subject:"march report" has:attachment is:closed '
        "assignee:me label:VIP nonsense:thing"
    )
    assert parsed.words == ["invoice", "nonsense:thing"]
    assert parsed.from_ == ["alice"] and parsed.to == ["bob"]
    assert parsed.subject == ["march report"]
    assert parsed.has_attachment and parsed.statuses == ["closed"]
    assert parsed.assignee == "me" and parsed.labels == ["VIP"]
    assert search.parse_query('unbalanced "quote').words == ["unbalanced", "quote"]


def test_ranked_full_text_with_stemming(
    member_with_access: User, corpus: dict[str, Conversation]
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL full-text search")
    found = _subjects(member_with_access, "invoice")
    # The subject match ranks above a body-only match ("invoices" stems to "invoic").
    assert found == ["Invoice 2291 overdue", "Refund request"]
    assert "Invoice secret" not in found


def test_operators(member_with_access: User, corpus: dict[str, Conversation]) -> None:
    assert _subjects(member_with_access, "from:alice") == ["Invoice 2291 overdue"]
    assert _subjects(member_with_access, "from:acme.test has:attachment") == ["Quarterly report"]
    assert _subjects(member_with_access, "to:billing@example.com") == ["Quarterly report"]
    assert _subjects(member_with_access, "subject:refund") == ["Refund request"]
    actions.set_status(corpus["other"], "closed", actor=member_with_access)
    assert _subjects(member_with_access, "is:closed") == ["Lunch"]
    assert "Lunch" not in _subjects(member_with_access, "is:open")
    actions.assign(corpus["refund"], member_with_access, actor=member_with_access)
    assert _subjects(member_with_access, "assignee:me") == ["Refund request"]
    assert _subjects(member_with_access, "invoice assignee:me") == ["Refund request"]


def test_like_fallback(
    member_with_access: User, corpus: dict[str, Conversation], monkeypatch: pytest.MonkeyPatch
) -> None:
    class SQLite:
        vendor = "sqlite"

    monkeypatch.setattr(search, "connection", SQLite())
    found = _subjects(member_with_access, "invoice")
    assert set(found) == {"Invoice 2291 overdue", "Refund request"}
    assert _subjects(member_with_access, "pizza from:dan") == ["Lunch"]


def test_search_page(member_client: Client, corpus: dict[str, Conversation]) -> None:
    page = member_client.get("/search/", {"q": "from:alice"}).content.decode()
    assert "Invoice 2291 overdue" in page
    assert "Invoice secret" not in page
    assert "Search results for" in page
    empty = member_client.get("/search/", {"q": ""}).content.decode()
    assert "has:attachment" in empty


def test_pagination(member_with_access: User, mailbox: MailAccount, monkeypatch: object) -> None:
    monkeypatch.setattr(search, "RESULTS_PER_PAGE", 3)  # type: ignore[attr-defined]
    for index in range(7):
        deliver(mailbox, subject=f"Widget {index}", text="widget broken")
    first = search.search(member_with_access, "widget", 1)
    second = search.search(member_with_access, "widget", 2)
    third = search.search(member_with_access, "widget", 3)
    assert first.has_next and second.has_next and not third.has_next
    ids = [c.pk for r in (first, second, third) for c in r.conversations]
    assert len(ids) == len(set(ids)) == 7


def test_common_word_plan_finds_the_same(
    member_with_access: User, corpus: dict[str, Conversation], monkeypatch: pytest.MonkeyPatch
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL full-text search")
    by_index = _subjects(member_with_access, "invoice")
    monkeypatch.setattr(search, "CANDIDATE_CAP", 1)  # as if "invoice" were in every message
    assert _subjects(member_with_access, "invoice") == by_index


def test_rare_word_plan_falls_back_when_the_estimate_was_low(
    member_with_access: User, corpus: dict[str, Conversation], monkeypatch: pytest.MonkeyPatch
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL full-text search")
    expected = _subjects(member_with_access, "invoice")
    monkeypatch.setattr(search, "_estimated_rows", lambda queryset: (0.0, 1.0))
    assert _subjects(member_with_access, "invoice") == expected  # GIN fetch, sorted here
    monkeypatch.setattr(search, "CANDIDATE_CAP", 1)
    assert _subjects(member_with_access, "invoice") == expected  # too many: ordered scan
