#!/usr/bin/env python
"""Profile one initial sync in-process (for finding hot spots; not part of the benchmark).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/profile_sync.py [--messages 2000] [--db mailweb_profile]

Seeds a fresh Dovecot like bench/imap_bench.py, syncs it with ``sync.engine.run_sync`` under
cProfile and prints the top functions by cumulative and own time. With ``--no-profile`` it
prints what the pipeline's critical path is made of instead: wall time by stage, the CPU of
this process's main thread (the commit path's Python half; PostgreSQL's backend is the other),
CPU by process role (as imap_bench.py counts it) and the machine's busy CPU in all.

Run it on an otherwise idle machine, and not within six minutes of deleting a previous run's
files (see "Correction" in bench/README.md).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.imap_bench import (  # noqa: E402
    CpuMeter,
    add_bench_mailbox,
    bench_env,
    corpus_path,
    database_url,
    recreate_database,
    seed,
    setup_django,
    start_dovecot,
)


def _instrument() -> dict[str, float]:
    """Wrap the engine's stages with timers (wall time, including what they call)."""
    import functools

    from sync import folder_sync, ingest, message_rows, parse_pool

    timers: dict[str, float] = {}

    def timed(owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers[label] = timers.get(label, 0.0) + time.perf_counter() - started

        setattr(owner, name, wrapper)

    timed(folder_sync, "uid_fetch", "imap fetch (fetching thread)")
    timed(parse_pool.ParseJob, "result", "waiting for the parse processes")
    timed(folder_sync, "prepare_batch", "prepare (rows, blobs made durable)")
    timed(folder_sync, "store_batch", "store (threading + SQL)")
    timed(message_rows, "insert_new", "  store: inserting messages")
    timed(message_rows, "ThreadIndex", "  store: threading lookups")
    timed(message_rows, "_update_stored_conversations", "  store: updating conversations")
    timed(ingest, "_adopt_keyless", "  store: adopting sent copies")
    timed(ingest, "_existing", "  prepare: looking for stored keys")
    return timers


def _busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (everything but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class _RoleSampler:
    """``CpuMeter`` sampled every 0.1 s on a thread (IMAP sessions and connections are short)."""

    def __init__(self) -> None:
        self.meter = CpuMeter(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.meter.sample()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.meter.sample()
        return self.meter.totals()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", default="mailweb_profile")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    path = corpus_path(args.messages, args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="mailweb-profile-"))
    server = start_dovecot(workdir)
    try:
        seed(server, path)
        recreate_database(base, args.db)
        setup_django(
            bench_env(database_url(base, args.db), workdir / "blobs", ca_path=server.ca_path)
        )
        from sync.engine import run_sync

        mailbox = add_bench_mailbox(server)
        timers = _instrument()
        profiler = cProfile.Profile()
        gc.freeze()  # as the Celery worker does once it has started (mailweb/celery.py)
        roles = _RoleSampler()
        busy_before = _busy_cpu_seconds()
        cpu_before = time.process_time()
        main_before = time.thread_time()
        started = time.perf_counter()
        if args.no_profile:
            report = run_sync(mailbox.pk, raise_errors=True)
        else:
            report = profiler.runcall(run_sync, mailbox.pk, raise_errors=True)
        elapsed = time.perf_counter() - started
        main_cpu = time.thread_time() - main_before
        cpu = time.process_time() - cpu_before
        busy = _busy_cpu_seconds() - busy_before
        by_role = roles.stop()
        print(report)
        print(f"{args.messages} messages in {elapsed:.1f}s ({args.messages / elapsed:.0f}/s)")
        per_message = cpu / args.messages * 1000
        print(f"CPU of this process (all threads): {cpu:.1f}s, {per_message:.2f} ms/msg")
        print(f"  of which the main thread (commits): {main_cpu:.1f}s")
        print(
            "CPU by role, ms/msg: "
            + ", ".join(
                f"{role} {seconds / args.messages * 1000:.3f}" for role, seconds in by_role.items()
            )
        )
        share = busy / elapsed / (os.cpu_count() or 1)
        print(f"machine busy: {busy:.1f} CPU-s, {share:.0%} of all cores")
        resyncs = []
        for _ in range(5):
            started = time.perf_counter()
            again = run_sync(mailbox.pk, raise_errors=True)
            resyncs.append(time.perf_counter() - started)
            assert again.new == 0
        print("no-change resyncs (s):", " ".join(f"{r:.4f}" for r in resyncs))
        for name, seconds in sorted(timers.items(), key=lambda item: -item[1]):
            print(f"  {name:<28} {seconds:7.2f}s  {seconds / args.messages * 1000:6.2f} ms/msg")
        if not args.no_profile:
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(45)
            stats.sort_stats("tottime").print_stats(30)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
