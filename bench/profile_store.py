#!/usr/bin/env python
"""Profile ingestion alone (blobs, threading, SQL) on the benchmark corpus, without IMAP.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/profile_store.py [--messages 2000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.imap_bench import (  # noqa: E402
    bench_env,
    corpus_path,
    database_url,
    read_corpus,
    recreate_database,
    setup_django,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--db", default="mailweb_profile")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    recreate_database(base, args.db)
    workdir = Path(tempfile.mkdtemp(prefix="mailweb-store-"))
    setup_django(bench_env(database_url(base, args.db), workdir / "blobs"))
    from django.db import transaction

    from accounts.models import MailAccount
    from mailweb.models import Folder
    from sync.ingest import IncomingMessage, ProviderKey, prepare_batch, store_batch
    from sync.mime import parse_message
    from sync.parse_work import ParseOutcome

    raws = [raw for _, raw in read_corpus(corpus_path(args.messages, 1))]
    raws.reverse()  # newest first, like an initial sync
    mailbox = MailAccount.objects.create(address="store@bench.example", method="imap_password")
    folder = Folder.objects.create(mailbox=mailbox, name="INBOX", role="inbox", uidvalidity=1)
    started = time.perf_counter()
    parsed = [ParseOutcome(parse_message(raw)) for raw in raws]
    parse_seconds = time.perf_counter() - started
    total = len(raws)
    items = [
        IncomingMessage(raw=raw, key=ProviderKey(folder=folder, uidvalidity=1, uid=total - i))
        for i, raw in enumerate(raws)
    ]
    timers = {"prepare (blobs)": 0.0, "store (threading + SQL)": 0.0}
    profiler = cProfile.Profile()
    if args.profile:
        profiler.enable()
    for start in range(0, total, 200):
        t0 = time.perf_counter()
        batch = prepare_batch(mailbox, items[start : start + 200], parsed[start : start + 200])
        t1 = time.perf_counter()
        with transaction.atomic():
            store_batch(batch)
        t2 = time.perf_counter()
        timers["prepare (blobs)"] += t1 - t0
        timers["store (threading + SQL)"] += t2 - t1
    profiler.disable()
    print(f"parse_message: {parse_seconds / total * 1000:.2f} ms/msg")
    for name, seconds in timers.items():
        print(f"{name:<28} {seconds / total * 1000:.2f} ms/msg")
    if args.profile:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
