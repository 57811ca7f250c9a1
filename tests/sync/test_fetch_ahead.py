"""FetchAhead: a producer on its own thread, a bounded lead, errors and early exits handled.

No timing assertions: the producer's progress is observed through a Condition, and waits have
generous timeouts only so that a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from sync.fetch_ahead import FetchAhead

WAIT = 10.0
# A lost item or end marker would leave the consumer blocked: fail instead of hanging long.
pytestmark = pytest.mark.timeout(30)


class Producer:
    """A generator function that counts the items it has started producing, and its thread."""

    def __init__(self, count: int | None = None, fail_after: int | None = None) -> None:
        self.count = count
        self.fail_after = fail_after
        self.started = 0
        self.closed = threading.Event()
        self.thread: threading.Thread | None = None
        self.progress = threading.Condition()

    def __call__(self) -> Iterator[int]:
        self.thread = threading.current_thread()
        numbers = range(self.count) if self.count is not None else itertools.count()
        try:
            for number in numbers:
                if number == self.fail_after:
                    raise ValueError("fetch failed")
                with self.progress:
                    self.started += 1
                    self.progress.notify_all()
                yield number
        finally:
            self.closed.set()

    def wait_started(self, at_least: int) -> int:
        with self.progress:
            assert self.progress.wait_for(lambda: self.started >= at_least, timeout=WAIT)
            return self.started


def test_items_arrive_in_order() -> None:
    with FetchAhead(Producer(50), depth=3) as ahead:
        assert list(ahead) == list(range(50))


def test_producer_runs_on_another_thread_which_is_gone_after_the_block() -> None:
    producer = Producer(3)
    with FetchAhead(producer, depth=2) as ahead:
        assert list(ahead) == [0, 1, 2]
    assert producer.thread is not None
    assert producer.thread is not threading.current_thread()
    assert not producer.thread.is_alive()


def test_producer_leads_by_at_most_depth_plus_the_item_in_production() -> None:
    """With ``depth`` queued and one more being produced, the producer waits for the consumer."""
    depth, total = 3, 12
    producer = Producer(total)
    with FetchAhead(producer, depth=depth) as ahead:
        # Nothing consumed yet: the queue fills and one more item is started, no further.
        assert producer.wait_started(depth + 1) == depth + 1
        for received, item in enumerate(ahead, start=1):
            assert item == received - 1
            # While this body runs the consumer holds still, so the producer's lead is fixed.
            expected = min(total, received + depth + 1)
            assert producer.wait_started(expected) == expected


def test_producer_error_is_raised_after_the_items_before_it() -> None:
    received: list[int] = []
    with (
        FetchAhead(Producer(fail_after=3), depth=2) as ahead,
        pytest.raises(ValueError, match="fetch failed"),
    ):
        for item in ahead:
            received.append(item)
    assert received == [0, 1, 2]


def test_stop_after_ends_production() -> None:
    """``stop_after(produced)`` is checked after each item; once True, nothing more starts."""
    producer = Producer(100)
    seen: list[int] = []

    def enough(produced: int) -> bool:
        seen.append(produced)
        return produced >= 3

    with FetchAhead(producer, depth=5, stop_after=enough) as ahead:
        assert list(ahead) == [0, 1, 2]
    assert seen == [1, 2, 3]
    assert producer.started == 3


def test_consumer_breaking_early_stops_producer_and_waits_for_its_item() -> None:
    """Leaving the block mid-item: close() waits for the item, then the producer is done."""
    release = threading.Event()
    in_second_item = threading.Event()
    finished_second_item = threading.Event()
    thread: list[threading.Thread] = []

    def produce() -> Iterator[int]:
        thread.append(threading.current_thread())
        yield 0
        in_second_item.set()
        assert release.wait(WAIT)
        finished_second_item.set()
        yield 1
        yield from itertools.count(2)

    with FetchAhead(produce, depth=1) as ahead:
        for item in ahead:
            assert item == 0
            assert in_second_item.wait(WAIT)
            release.set()
            break
    assert finished_second_item.is_set()
    assert not thread[0].is_alive()


def test_consumer_error_stops_endless_producer() -> None:
    depth = 2
    producer = Producer()  # endless: only the consumer leaving can stop it
    with (
        pytest.raises(RuntimeError, match="commit failed"),
        FetchAhead(producer, depth=depth) as ahead,
    ):
        for _item in ahead:
            producer.wait_started(depth + 2)
            raise RuntimeError("commit failed")
    assert producer.thread is not None and not producer.thread.is_alive()
    assert producer.closed.is_set()
    # One consumed, ``depth`` queued, one in production when the consumer left: no more.
    assert producer.started == depth + 2


def test_close_without_consuming_stops_blocked_producer() -> None:
    producer = Producer()
    ahead = FetchAhead(producer, depth=1)
    with ahead:
        producer.wait_started(2)  # one queued, one blocked on the full queue
    assert producer.thread is not None and not producer.thread.is_alive()
    assert producer.started == 2
