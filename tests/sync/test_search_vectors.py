"""Search vectors computed on the second connection are the ones PostgreSQL's trigger computes.

``sync.search_vectors`` computes a batch's vectors on a second connection, a batch ahead of the
commit; the sync inserts them with the rows, and the trigger of migration 0008 fills the column
for every other writer.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest
from django.db import OperationalError, connection

from accounts.models import MailAccount
from mailweb.models import Folder, Message
from sync.ingest import IncomingMessage, ProviderKey, prepare_batch, store_batch
from sync.parse_work import parse_and_store
from sync.search_vectors import MIN_BATCH, SearchDocument, SearchVectors, search_document
from tests.sync.conftest import stale_search_vectors
from tests.sync.mail import message, new_id

pytestmark = pytest.mark.django_db


def function_vector(document: SearchDocument) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT mailweb_search_vector(%s, %s, %s)::text", list(document))
        return str(cursor.fetchone()[0])


def stored_vectors(mailbox: MailAccount) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT message_id, search_vector::text FROM mailweb_message WHERE mailbox_id = %s",
            [mailbox.pk],
        )
        return dict(cursor.fetchall())


def vector_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("search-vectors")]


@pytest.fixture
def postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the search vector exists on PostgreSQL only")


def new_batch(count: int) -> tuple[MailAccount, list[IncomingMessage]]:
    mailbox = MailAccount.objects.create(address="vectors@example.com", method="imap_password")
    inbox = Folder.objects.create(mailbox=mailbox, name="INBOX", role="inbox", uidvalidity=1)
    items = [
        IncomingMessage(
            raw=message(f"Invoice {n} für Zoë", body=f"Payment {n} overdue", message_id=new_id()),
            key=ProviderKey(folder=inbox, uidvalidity=1, uid=n + 1),
        )
        for n in range(count)
    ]
    return mailbox, items


@pytest.mark.usefixtures("postgresql")
def test_vectors_from_the_second_connection_equal_the_functions() -> None:
    documents = [
        SearchDocument("Réunion de planification", "Alice alice@example.com", "Hello\nworld"),
        SearchDocument("", "", ""),
        SearchDocument("Long", "", "word " * 30_000),  # beyond the function's 100,000 characters
        SearchDocument("日本語の件名", "山田 yamada@example.jp", "お世話になっております。"),
        SearchDocument("Quotes ' \" \\ and {braces}", "o'neil@example.com", "a\tb\r\nc"),
    ] * (MIN_BATCH // 5 + 1)
    with SearchVectors() as vectors:
        future = vectors.submit(len(documents), lambda: documents)
        assert future is not None
        computed = future.result()
    assert computed == [function_vector(document) for document in documents]
    assert not vector_threads()


def test_small_batches_are_left_to_the_trigger() -> None:
    with SearchVectors() as vectors:
        assert vectors.submit(MIN_BATCH - 1, lambda: []) is None
    assert not vector_threads()


@pytest.mark.usefixtures("postgresql")
def test_store_batch_inserts_the_vectors_it_is_given() -> None:
    mailbox, items = new_batch(3)
    outcomes = [parse_and_store(item.raw, None) for item in items]
    given: Future[list[str]] = Future()
    given.set_result([f"'marker{n}':1" for n in range(3)])

    store_batch(prepare_batch(mailbox, items, outcomes), search_vectors=given)

    stored = stored_vectors(mailbox)
    expected = {o.parsed.message_id: f"'marker{n}':1" for n, o in enumerate(outcomes)}
    assert stored == expected  # taken as given: the trigger computes only when none is given


@pytest.mark.usefixtures("postgresql")
def test_computed_vectors_match_what_the_trigger_stores() -> None:
    mailbox, items = new_batch(MIN_BATCH)
    outcomes = [parse_and_store(item.raw, None) for item in items]
    with SearchVectors() as vectors:
        future = vectors.submit(
            len(outcomes), lambda: [search_document(o.parsed) for o in outcomes]
        )
        store_batch(prepare_batch(mailbox, items[:2], outcomes[:2]))  # the trigger's vectors
        batch = prepare_batch(mailbox, items, outcomes)  # the first two are stored already
        store_batch(batch, search_vectors=future)
    assert len(stored_vectors(mailbox)) == MIN_BATCH
    assert stale_search_vectors(mailbox) == 0


@pytest.mark.usefixtures("postgresql")
def test_trigger_recomputes_the_vector_when_the_text_changes() -> None:
    mailbox, items = new_batch(1)
    store_batch(prepare_batch(mailbox, items))
    row = Message.objects.get(mailbox=mailbox)
    before = stored_vectors(mailbox)[row.message_id]

    row.is_seen = True
    row.save(update_fields=["is_seen"])
    assert stored_vectors(mailbox)[row.message_id] == before
    row.save()  # every column written, none changed
    assert stored_vectors(mailbox)[row.message_id] == before

    row.subject = "Renamed to something searchable"
    row.save()
    assert "'searchabl':" in stored_vectors(mailbox)[row.message_id]
    with connection.cursor() as cursor:  # a vector written directly is the function's again
        cursor.execute("UPDATE mailweb_message SET search_vector = 'bogus' WHERE id = %s", [row.pk])
    assert stale_search_vectors(mailbox) == 0


@pytest.mark.usefixtures("postgresql")
def test_a_failed_computation_leaves_the_vectors_to_the_trigger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailbox, items = new_batch(2)
    failed: Future[list[str]] = Future()
    failed.set_exception(OperationalError("connection refused; Payment 0 overdue"))

    store_batch(prepare_batch(mailbox, items), search_vectors=failed)

    assert len(stored_vectors(mailbox)) == 2
    assert stale_search_vectors(mailbox) == 0
    assert "search vectors not precomputed (OperationalError)" in caplog.text
    assert "overdue" not in caplog.text
