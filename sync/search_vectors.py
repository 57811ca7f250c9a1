"""Full-text vectors for a batch of messages, computed on a second connection beside the commit.

PostgreSQL computes a message's ``search_vector`` with ``mailweb_search_vector`` (migration
0007); left to the insert, that was half of PostgreSQL's time for a batch of an initial sync,
spent while the sync's only connection, and so its worker, waited. ``SearchVectors`` asks a
second connection, on a thread of its own, for the same function's results while the first one
threads the batch into conversations; the rows are then inserted with their vectors. The same
function on the same values gives the same vectors; the trigger that computes them otherwise
does nothing when one is given.

Only on PostgreSQL: elsewhere ``submit`` returns None and the rows are stored as before. The
thread and its connection are made on the first batch and closed with the ``with`` block, so a
pass with nothing new opens no connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import NamedTuple

from django.db import connection

__all__ = ["SearchDocument", "SearchVectors"]

_SQL = """
    SELECT mailweb_search_vector(subject, addresses, body)::text
    FROM unnest(%s::text[], %s::text[], %s::text[])
        WITH ORDINALITY AS d(subject, addresses, body, n)
    ORDER BY n
"""


class SearchDocument(NamedTuple):
    """The three stored values a message's search vector is computed from."""

    subject: str
    addresses: str
    body: str


class SearchVectors:
    """Computes search vectors in the background, one batch after another, in order."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, documents: Sequence[SearchDocument]) -> Future[list[str]] | None:
        """Start computing the vectors of ``documents`` (their text form, in the same order)."""
        if connection.vendor != "postgresql" or not documents:
            return None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-vectors")
        return self._executor.submit(_compute, list(documents))

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


def _compute(documents: list[SearchDocument]) -> list[str]:
    """Runs on the executor's thread, so on that thread's own database connection."""
    with connection.cursor() as cursor:
        cursor.execute(
            _SQL,
            [
                [document.subject for document in documents],
                [document.addresses for document in documents],
                [document.body for document in documents],
            ],
        )
        return [row[0] for row in cursor.fetchall()]


def _close_connection() -> None:
    """Runs on the executor's thread: ``connection`` resolves to that thread's connection there
    (``connection.close`` looked up on the submitting thread would close that thread's own).
    """
    connection.close()
