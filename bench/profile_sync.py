#!/usr/bin/env python
"""Profile one initial sync in-process (for finding hot spots; not part of the benchmark).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/profile_sync.py [--messages 2000] [--db mailweb_profile]

Seeds a fresh Dovecot like bench/imap_bench.py, syncs it with ``sync.engine.run_sync`` under
cProfile and prints the top functions by cumulative and own time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.imap_bench import (  # noqa: E402
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

    from sync import folder_sync, ingest, parse_pool

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
    timed(ingest, "insert_new", "  of which inserting messages")
    return timers


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
        cpu_before = time.process_time()
        started = time.perf_counter()
        if args.no_profile:
            report = run_sync(mailbox.pk, raise_errors=True)
        else:
            report = profiler.runcall(run_sync, mailbox.pk, raise_errors=True)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        print(report)
        print(f"{args.messages} messages in {elapsed:.1f}s ({args.messages / elapsed:.0f}/s)")
        per_message = cpu / args.messages * 1000
        print(f"CPU of this process (both threads): {cpu:.1f}s, {per_message:.2f} ms/msg")
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
