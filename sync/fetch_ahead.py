"""Reading batches from the IMAP server in a thread of its own, ahead of the commits.

An initial sync spends its time in three places: waiting for the server's FETCH responses (and
parsing them), parsing MIME (``sync.parse_pool``), and storing each batch in PostgreSQL. Done
one after the other on one thread, the worker waits on the network while the database idles
and the other way round. ``FetchAhead`` runs the fetching loop on a background thread that owns
the IMAP connection while it runs, handing fetched (and parse-submitted) batches to the caller
through a small bounded queue; the caller commits them strictly in order on its own thread and
database connection, so the cursor guarantees of ``sync.folder_sync`` do not change.

The thread never touches the database. An error on either side stops both: a fetch error is
re-raised to the caller at the point of the batch it would have produced; when the caller
stops early (an error, the pass out of time, enough batches), the thread finishes the FETCH it
is in and exits, and ``close()`` waits for that, so the connection is never used by two threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["FetchAhead"]

_DONE = object()
_POLL_SECONDS = 0.2


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class FetchAhead(Generic[T]):
    """Iterate over ``produce()``'s items, produced on a background thread ``depth`` ahead.

    ``produce`` is a generator function; it is called on the background thread. ``stop_after``
    is checked after each item produced: once it returns True nothing more is produced.
    """

    def __init__(
        self,
        produce: Callable[[], Iterator[T]],
        *,
        depth: int,
        stop_after: Callable[[int], bool] = lambda produced: False,
        name: str = "fetch-ahead",
    ) -> None:
        self._produce = produce
        self._stop_after = stop_after
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> FetchAhead[T]:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]

    def close(self) -> None:
        """Stop producing and wait for the thread (it finishes the item it is producing)."""
        self._stopping.set()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(timeout=_POLL_SECONDS)
        self._drain()

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _run(self) -> None:
        produced = 0
        try:
            for item in self._produce():
                if not self._put(item):
                    return
                produced += 1
                if self._stopping.is_set() or self._stop_after(produced):
                    break
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._put(_Failure(error))
            return
        self._put(_DONE)

    def _put(self, item: object) -> bool:
        """Queue ``item`` unless the consumer has gone; False when it has."""
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False
