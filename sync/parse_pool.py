"""Parsing messages in parallel, in a few ``sync.parse_server`` processes.

Parsing MIME with the standard library costs several milliseconds of pure-Python CPU per
message, several times more than fetching it, so one core caps a sync far below what the
network and the database could do. ``ParsePool`` keeps a few child processes (plain
subprocesses: Celery's prefork workers are daemonic and may not use ``multiprocessing``) and
hands them slices of a batch while the engine fetches the next batch and commits the previous
one. Results are ``sync.parse_work.ParseOutcome`` values: exactly what
``sync.mime.parse_message`` returns, with the blobs already stored when the blob storage is
local. If a child fails, the slice is parsed in-process instead (and its blobs are left to the
caller), so a pool problem never loses a message.

``MAILWEB_SYNC_PARSE_PROCESSES`` sets the number of children (0 parses in-process).
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings

from mailweb.blobs import local_blob_root
from sync.parse_work import ParseOutcome, parse_and_store

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
#: Messages sent to a child in one request.
SLICE = 8
#: Batches smaller than this are parsed in-process (a push with one new message should not
#: wait for a round trip, nor start a pool).
INLINE_BELOW = 6
#: A child with nothing to do for this long exits (it is restarted on demand), so idle workers
#: do not keep the parse processes' memory.
IDLE_SECONDS = 60.0

__all__ = ["ParseJob", "ParsePool", "parse_many", "parse_pool", "warm_parse_pool"]


class ParseJob:
    """The pending result of ``ParsePool.submit``."""

    def __init__(self, count: int) -> None:
        self._results: list[ParseOutcome | None] = [None] * count
        self._remaining = count
        self._lock = threading.Lock()
        self._done = threading.Event()
        if count == 0:
            self._done.set()

    def _fill(self, start: int, parsed: Sequence[ParseOutcome]) -> None:
        with self._lock:
            self._results[start : start + len(parsed)] = parsed
            self._remaining -= len(parsed)
            if self._remaining <= 0:
                self._done.set()

    def result(self) -> list[ParseOutcome]:
        self._done.wait()
        return [parsed for parsed in self._results if parsed is not None]


class _Child:
    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sync.parse_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            env=env,
        )

    def call(self, blob_root: str | None, raws: Sequence[bytes]) -> list[ParseOutcome]:
        assert self.process.stdin is not None and self.process.stdout is not None
        data = pickle.dumps((blob_root, list(raws)), protocol=5)
        self.process.stdin.write(_HEADER.pack(len(data)))
        self.process.stdin.write(data)
        self.process.stdin.flush()
        header = self.process.stdout.read(_HEADER.size)
        if len(header) != _HEADER.size:
            raise EOFError("parse process exited")
        size = _HEADER.unpack(header)[0]
        payload = self.process.stdout.read(size)
        if len(payload) != size:
            raise EOFError("parse process exited mid-reply")
        parsed: list[ParseOutcome] = pickle.loads(payload)  # noqa: S301 - our own child
        if len(parsed) != len(raws):
            raise EOFError("parse process answered for the wrong number of messages")
        return parsed

    def close(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except Exception:
            self.process.kill()


class ParsePool:
    """``processes`` child parsers, each served by one thread of this process."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._tasks: queue.Queue[tuple[ParseJob, int, str | None, list[bytes]] | None] = (
            queue.Queue()
        )
        self._threads: list[threading.Thread] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._spares: list[_Child] = []  # started by warm(), not yet taken by a thread
        self._serving = 0  # children owned by the serving threads
        for index in range(processes):
            thread = threading.Thread(target=self._serve, name=f"parse-pool-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, raws: Sequence[bytes], blob_root: str | None = None) -> ParseJob:
        """Start parsing ``raws``; ``.result()`` returns them parsed, in order.

        With ``blob_root`` (the local blob storage's directory) the children store the blobs.
        """
        job = ParseJob(len(raws))
        for start in range(0, len(raws), SLICE):
            self._tasks.put((job, start, blob_root, list(raws[start : start + SLICE])))
        return job

    def warm(self) -> None:
        """Start the children that are not running, ahead of the work.

        A child takes a fraction of a second to start Python and import the MIME code; an
        initial sync calls this before it connects, so its first batch does not wait for that.
        Children started here and not taken within ``IDLE_SECONDS`` exit again.
        """
        with self._lock:
            missing = self.processes - self._serving - len(self._spares)
            try:
                self._spares.extend(_Child() for _ in range(max(0, missing)))
            except Exception as exc:  # the pool starts (or parses in-process) when used
                log.warning("could not start a parse process (%s)", type(exc).__name__)

    def _take_child(self) -> _Child:
        with self._lock:
            spare = self._spares.pop() if self._spares else None
            self._serving += 1
        try:
            return spare or _Child()
        except BaseException:
            with self._lock:
                self._serving -= 1
            raise

    def _retire(self, child: _Child) -> None:
        child.close()
        with self._lock:
            self._serving -= 1

    def _close_spares(self) -> None:
        with self._lock:
            spares, self._spares = self._spares, []
        for child in spares:
            child.close()

    def _serve(self) -> None:
        child: _Child | None = None
        while True:
            try:
                task = self._tasks.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                if child is not None:
                    self._retire(child)
                    child = None
                self._close_spares()
                continue
            if task is None:
                break
            job, start, blob_root, raws = task
            try:
                if child is None:
                    child = self._take_child()
                parsed = child.call(blob_root, raws)
            except Exception as exc:
                log.warning("parse process failed (%s); parsing in-process", type(exc).__name__)
                if child is not None:
                    self._retire(child)
                child = None
                parsed = [parse_and_store(raw, None) for raw in raws]
            job._fill(start, parsed)
        if child is not None:
            self._retire(child)

    def close(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self._close_spares()


_pool: ParsePool | None = None
_pool_lock = threading.Lock()


def configured_processes() -> int:
    value = getattr(settings, "MAILWEB_SYNC_PARSE_PROCESSES", None)
    if value is None:
        return min(4, os.cpu_count() or 1)
    return max(0, int(value))


def parse_pool() -> ParsePool | None:
    """The process-wide pool (started on first use), or None when parsing stays in-process."""
    global _pool
    processes = configured_processes()
    if processes <= 0:
        return None
    with _pool_lock:
        if _pool is not None and (_pool._pid != os.getpid() or _pool.processes != processes):
            _pool = None  # forked (Celery prefork) or reconfigured: this process needs its own
        if _pool is None:
            _pool = ParsePool(processes)
            atexit.register(_pool.close)
        return _pool


def warm_parse_pool() -> None:
    """Start the pool's children now (see ``ParsePool.warm``), if there is a pool."""
    pool = parse_pool()
    if pool is not None:
        pool.warm()


def parse_many(raws: Sequence[bytes]) -> ParseJob | list[ParseOutcome]:
    """Parse in the pool when it is worth it; returns a job, or the results right away."""
    pool = parse_pool() if len(raws) >= INLINE_BELOW else None
    if pool is None:
        return [parse_and_store(raw, None) for raw in raws]
    return pool.submit(raws, local_blob_root())
