"""Full-text vectors for a batch of messages, computed on a second connection, a batch ahead.

PostgreSQL computes a message's ``search_vector`` with ``mailweb_search_vector`` (migration
0008). Left to the insert, that was three quarters of PostgreSQL's time for each message of an
initial sync, on the one connection that also threads, inserts and commits every batch in
order, the part of a sync that cannot run in parallel. ``SearchVectors`` asks a second
connection, on a thread of its own, for the same function's results as soon as a batch is
parsed, while the first connection is still storing the batch before it; the rows are then
inserted with their vectors. The same function of the same values gives the same vectors; the
trigger that computes them otherwise does nothing when a vector is given.

Only on PostgreSQL, and only for batches of at least ``MIN_BATCH`` messages: a push with a
message or two is not worth a second connection, and the trigger computes its vectors. The
thread and its connection are made for the first batch and closed with the ``with`` block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import NamedTuple

import psycopg
from django.db import connection

from sync.ingest import addresses_text, stored_subject
from sync.mime import ParsedMessage

__all__ = ["MIN_BATCH", "SearchDocument", "SearchVectors", "search_document"]

#: Smaller batches leave their vectors to the trigger.
MIN_BATCH = 32

_SQL = """
    SELECT mailweb_search_vector(subject, addresses, body)::text
    FROM unnest(%b::text[], %b::text[], %b::text[])
        WITH ORDINALITY AS d(subject, addresses, body, n)
    ORDER BY n
"""


class SearchDocument(NamedTuple):
    """The three stored values a message's search vector is computed from."""

    subject: str
    addresses: str
    body: str


def search_document(parsed: ParsedMessage) -> SearchDocument:
    """The values a message's search vector is computed from, exactly as its row stores them."""
    return SearchDocument(stored_subject(parsed), addresses_text(parsed), parsed.text)


class SearchVectors:
    """Computes search vectors in the background, one batch after another, in order."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    def submit(
        self, count: int, documents: Callable[[], Sequence[SearchDocument]]
    ) -> Future[list[str]] | None:
        """Start computing the vectors of ``count`` messages, or return None (see ``MIN_BATCH``).

        ``documents`` is called on the background thread, so it may wait (for the parse
        processes); the future's result is the vectors' text form, in the same order.
        """
        if connection.vendor != "postgresql" or count < MIN_BATCH:
            return None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-vectors")
        return self._executor.submit(_compute, documents)

    def close(self) -> None:
        """Wait for what was submitted, then close the thread's connection and the thread."""
        if self._executor is None:
            return
        self._executor.submit(_close_connection)
        self._executor.shutdown(wait=True)
        self._executor = None

    def __enter__(self) -> SearchVectors:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _compute(documents: Callable[[], Sequence[SearchDocument]]) -> list[str]:
    """Runs on the executor's thread, so on that thread's own database connection.

    psycopg's own cursor, with server-side binding: the texts go to PostgreSQL as binary
    arrays, not quoted into the statement (and not through Django's query log, which would
    keep the bodies).
    """
    batch = documents()
    if not batch:
        return []
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            _SQL,
            [
                [document.subject for document in batch],
                [document.addresses for document in batch],
                [document.body for document in batch],
            ],
        )
        return [row[0] for row in cursor.fetchall()]


def _close_connection() -> None:
    """Runs on the executor's thread: ``connection`` resolves to that thread's connection there
    (``connection.close`` looked up on the submitting thread would close that thread's own).
    """
    connection.close()
