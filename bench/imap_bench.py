#!/usr/bin/env python
"""IMAP sync benchmark: Mailweb's sync engine against mbsync (isync), on the same Dovecot.

One run does everything (see bench/README.md):

1. generate the corpus (``bench/corpus.py``; cached under ``bench/.cache``) and APPEND it to the
   INBOX of a fresh local Dovecot (the test stand-in from ``tests/fakes``, implicit TLS);
2. then ``--rounds`` times (default 4), one after the other on the same server, each round
   starting by moving what the previous one stored (Maildir, blob store) out of the way and
   re-creating the database, who goes first rotating from round to round (nothing is deleted
   until the run ends, see ``_set_aside_previous_round``):
   a. mbsync pulls INBOX into an empty Maildir (initial), then runs five more times with
      nothing to do (resync);
   b. Mailweb: a fresh PostgreSQL database and blob store, the mailbox added as a password IMAP
      mailbox, a real Celery worker (solo pool, so the sync runs in the worker process) syncs
      it; measured: time to the newest 50 conversations being queryable, time to the whole
      initial sync (fetch, parse, blobs, threading, PostgreSQL rows and full-text index),
      then five no-change resyncs, CPU by process and the worker's peak RSS;
   c. the store is checked against the server (same messages, no duplicates);
3. the figures of every round and their medians are printed and written to
   ``bench/results/<timestamp>.json``. Both tools' times vary from round to round (the disk,
   the neighbours on the host), hence the rounds and the medians.

Usage (PostgreSQL and Redis must be reachable; the database named by --db is dropped and
re-created; the work directory needs about 450 MB per round, deleted at the end; leave six
minutes between the end of one run and the start of the next: see ``_set_aside_previous_round``)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python bench/imap_bench.py [--messages 10000] [--seed 1] [--rounds 3] \\
        [--db mailweb_bench]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.corpus import generate  # noqa: E402

USER = "bench@bench.example"
PASSWORD = "bench-password-1"  # a throwaway local Dovecot user


# --- corpus ----------------------------------------------------------------------------------


def corpus_path(count: int, seed: int) -> Path:
    """The corpus as length-prefixed records, generated once per (count, seed)."""
    path = ROOT / "bench" / ".cache" / f"corpus-{count}-{seed}.bin"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        for date, raw in generate(count, seed):
            out.write(struct.pack(">dI", date.timestamp(), len(raw)))
            out.write(raw)
    partial.rename(path)
    return path


def read_corpus(path: Path) -> Iterator[tuple[datetime, bytes]]:
    with path.open("rb") as handle:
        while header := handle.read(12):
            stamp, length = struct.unpack(">dI", header)
            yield datetime.fromtimestamp(stamp, tz=UTC), handle.read(length)


_HEADER = re.compile(rb"^(Message-ID|References):[ \t]*(.*(?:\r\n[ \t].*)*)", re.I | re.M)


def newest_threads(path: Path, count: int = 50) -> set[str]:
    """Message-IDs of the newest message of each of the ``count`` most recent threads."""
    root_of: dict[str, str] = {}
    newest: dict[str, tuple[datetime, str]] = {}
    for date, raw in read_corpus(path):
        head = raw.split(b"\r\n\r\n", 1)[0]
        fields = {m.group(1).lower(): m.group(2) for m in _HEADER.finditer(head)}
        message_id = fields[b"message-id"].decode().strip().strip("<>")
        refs = re.findall(rb"<([^>]+)>", fields.get(b"references", b""))
        root = root_of.get(refs[0].decode(), refs[0].decode()) if refs else message_id
        root_of[message_id] = root
        newest[root] = max(newest.get(root, (date, message_id)), (date, message_id))
    ordered = sorted(newest.values(), reverse=True)[:count]
    return {message_id for _, message_id in ordered}


# --- Dovecot and mbsync ----------------------------------------------------------------------


def start_dovecot(workdir: Path) -> Any:
    from tests.fakes.dovecot import DovecotServer

    server = DovecotServer(workdir / "dovecot", users=[(USER, PASSWORD)], plain_port=False)
    return server.start()


def seed(server: Any, path: Path) -> tuple[int, int]:
    """APPEND the corpus in chronological order (UIDs follow dates, INTERNALDATE = Date)."""
    count = size = 0
    chunk: list[dict[str, Any]] = []
    with server.admin(USER) as imap:
        for date, raw in read_corpus(path):
            chunk.append({"msg": raw, "date": date})
            count += 1
            size += len(raw)
            if len(chunk) == 200:
                imap.multiappend("INBOX", chunk)
                chunk = []
        if chunk:
            imap.multiappend("INBOX", chunk)
    return count, size


def mbsync_config(workdir: Path, server: Any) -> Path:
    maildir = workdir / "maildir"
    maildir.mkdir()
    config = workdir / "mbsyncrc"
    config.write_text(
        f"""IMAPAccount bench
Host localhost
Port {server.port}
User {USER}
Pass {PASSWORD}
SSLType IMAPS
CertificateFile {server.ca_path}

IMAPStore bench-far
Account bench

MaildirStore bench-near
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel bench
Far :bench-far:
Near :bench-near:
Patterns INBOX
Create Near
Sync Pull
SyncState *
"""
    )
    return config


def run_mbsync(config: Path, cpu: dict[str, float] | None = None) -> float:
    """Run mbsync once; adds its CPU time (user + system) to ``cpu["mbsync"]``."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(["mbsync", "-c", str(config), "-q", "bench"], check=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        cpu["mbsync"] = cpu.get("mbsync", 0.0) + used
    return elapsed


def bench_mbsync(workdir: Path, server: Any) -> dict[str, Any]:
    config = mbsync_config(workdir, server)
    cpu: dict[str, float] = {}
    initial = run_mbsync(config, cpu)
    resyncs = [run_mbsync(config) for _ in range(5)]
    return {
        "initial_seconds": initial,
        "initial_cpu_seconds": cpu["mbsync"],
        "stored": maildir_count(workdir),
        "resync_seconds": resyncs,
        "resync_median_seconds": statistics.median(resyncs),
    }


def maildir_count(workdir: Path) -> int:
    inbox = workdir / "maildir" / "INBOX"
    return sum(1 for sub in ("cur", "new") for _ in (inbox / sub).iterdir())


# --- Mailweb ---------------------------------------------------------------------------------


def database_url(base: str, name: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + name))


def recreate_database(base: str, name: str) -> None:
    import psycopg

    parts = urlsplit(base)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def bench_env(
    db_url: str, blob_dir: Path, *, redis_url: str | None = None, ca_path: Path | None = None
) -> dict[str, str]:
    """The environment the benchmark and profiling programs (and the worker) run under."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailweb.settings",
        # Production settings: with DEBUG on, Django keeps every SQL statement (bulk inserts
        # of whole messages included) in memory and formats it, which distorts time and RSS.
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789",
        "MAILWEB_TOKEN_KEYS": "mHn1HZ9h8wXg2S0a0-5B7tQYkz1m0n3jv3m1gk6v5rQ=",
        "ALLOWED_HOSTS": "localhost",
        "DATABASE_URL": db_url,
        "MAILWEB_BLOB_DIR": str(blob_dir),
        "MAILWEB_DATA_DIR": str(blob_dir.parent / "data"),
        # One task for the whole initial sync (it would otherwise continue in follow-ups).
        "MAILWEB_TASK_SOFT_TIME_LIMIT": "7200",
        "MAILWEB_TASK_TIME_LIMIT": "7300",
        "LOG_LEVEL": "WARNING",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    if ca_path:
        env["SSL_CERT_FILE"] = str(ca_path)
    return env


def setup_django(env: dict[str, str]) -> None:
    """Configure Django in this process from ``env`` and migrate the database."""
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def add_bench_mailbox(server: Any) -> Any:
    """The seeded Dovecot account as a password IMAP mailbox (enqueues its first sync)."""
    from accounts.actions import add_password_mailbox

    return add_password_mailbox(
        USER,
        imap_host="localhost",
        imap_port=server.port,
        imap_security="ssl",
        username=USER,
        password=PASSWORD,
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_TICKS = os.sysconf("SC_CLK_TCK")
_DOVECOT = ("dovecot", "imap", "imap-login", "auth", "anvil", "log", "config", "stats")


class CpuMeter:
    """CPU time (user + system, and system alone) by role: the worker, its parse processes,
    PostgreSQL, Dovecot.

    Processes come and go (an IMAP session, a database connection), so /proc is sampled often
    and each process counts with the last value seen; run the benchmark on an otherwise idle
    machine, since every postgres and dovecot process is counted.
    """

    def __init__(self, worker_pid: int) -> None:
        self.worker_pid = worker_pid
        self.start: dict[int, tuple[str, float, float]] = self._read()
        self.last: dict[int, tuple[str, float, float]] = dict(self.start)

    def _read(self) -> dict[int, tuple[str, float, float]]:
        """pid -> (role, user + system seconds, system seconds)."""
        seen: dict[int, tuple[str, float, float]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw.rsplit(")", 1)[1].split()
            pid, ppid = int(entry.name), int(fields[1])
            system = int(fields[12]) / _TICKS
            used = int(fields[11]) / _TICKS + system
            if pid == self.worker_pid:
                seen[pid] = ("worker", used, system)
            elif ppid == self.worker_pid:
                seen[pid] = ("parse pool", used, system)
            elif name.startswith("postgres"):
                seen[pid] = ("postgresql", used, system)
            elif name.startswith(_DOVECOT):
                seen[pid] = ("dovecot", used, system)
        return seen

    def sample(self) -> None:
        self.last.update(self._read())

    def totals(self, *, system_only: bool = False) -> dict[str, float]:
        out = {"worker": 0.0, "parse pool": 0.0, "postgresql": 0.0, "dovecot": 0.0}
        for pid, (role, used, system) in self.last.items():
            _, used_before, system_before = self.start.get(pid, (role, 0.0, 0.0))
            out[role] += system - system_before if system_only else used - used_before
        return out


def children_peak_rss_mb(pid: int) -> float:
    """Peak RSS of the worker's child processes (the MIME parse pool), summed."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += peak_rss_mb(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


def wal_position() -> tuple[int, int]:
    """Bytes of WAL written so far, and checkpoints so far (timed and requested)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_current_wal_lsn() - '0/0', checkpoints_timed + checkpoints_req "
            "FROM pg_stat_bgwriter"
        )
        wal, checkpoints = cursor.fetchone()
    return int(wal), int(checkpoints)


def start_from_a_checkpoint() -> tuple[int, int]:
    """Write out what re-creating and migrating the database left dirty, before the clock starts.

    Each initial sync writes a few hundred MB of WAL, and PostgreSQL checkpoints whenever about
    a gigabyte has piled up since the last one (``max_wal_size``), timed or not. Without this,
    whether a round paid for a checkpoint depended on what earlier rounds had written.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
    return wal_position()


def bench_mailweb(
    server: Any,
    workdir: Path,
    expected: int,
    newest: set[str],
    db_url: str,
    redis_url: str,
    code: Path = ROOT,
) -> dict[str, Any]:
    """One Mailweb initial sync and five resyncs; the worker runs the checkout at ``code``."""
    blob_dir = workdir / "blobs"  # the same directory every round (settings are read once)
    env = bench_env(db_url, blob_dir, redis_url=redis_url, ca_path=server.ca_path)
    setup_django(env)
    from accounts.models import MailAccount
    from mailweb.celery import app
    from mailweb.models import Conversation, Folder, Heartbeat, Message
    from sync.tasks import sync_mailbox

    mailbox = add_bench_mailbox(server)
    # Adding the mailbox enqueued its first sync (sync.receivers); the benchmark starts the
    # sync itself once the worker is up, so that every measurement covers exactly one task.
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mailweb",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=code,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not Heartbeat.objects.filter(name="worker").exists():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the Celery worker did not start")
            time.sleep(0.05)
        idle_rss = rss_mb(worker.pid)

        def done() -> bool:
            folders = Folder.objects.filter(mailbox=mailbox, sync_enabled=True)
            return (
                folders.exists() and not folders.filter(initial_sync_done_at__isnull=True).exists()
            )

        wal_before, checkpoints_before = start_from_a_checkpoint()
        meter = CpuMeter(worker.pid)
        started = time.perf_counter()
        sync_mailbox.delay(mailbox.pk)
        first_50 = None
        while True:
            if worker.poll() is not None:
                raise RuntimeError("the worker died")
            if first_50 is None:
                found = Message.objects.filter(mailbox=mailbox, message_id__in=newest).count()
                if found == len(newest):
                    first_50 = time.perf_counter() - started
            if done():
                break
            meter.sample()
            # Fine-grained until the newest conversations are in, then gentler: polling
            # PostgreSQL 50 times a second costs CPU the sync itself is short of.
            time.sleep(0.02 if first_50 is None else 0.1)
        initial = time.perf_counter() - started
        while not MailAccount.objects.filter(pk=mailbox.pk, last_sync_at__isnull=False).exists():
            time.sleep(0.01)
        initial_with_status = time.perf_counter() - started
        peak_initial = peak_rss_mb(worker.pid)
        peak_children = children_peak_rss_mb(worker.pid)
        meter.sample()
        cpu = meter.totals()
        system_cpu = meter.totals(system_only=True)
        wal_after, checkpoints_after = wal_position()

        resyncs = []
        for _ in range(5):
            time.sleep(0.5)  # the previous task has returned
            before = MailAccount.objects.get(pk=mailbox.pk).last_sync_at
            started = time.perf_counter()
            sync_mailbox.delay(mailbox.pk)
            while MailAccount.objects.get(pk=mailbox.pk).last_sync_at == before:
                time.sleep(0.005)
            resyncs.append(time.perf_counter() - started)

        stored = Message.objects.filter(mailbox=mailbox)
        ids = list(stored.values_list("message_id", flat=True))
        report = {
            "initial_seconds": initial,
            "initial_until_status_seconds": initial_with_status,
            "newest_50_conversations_seconds": first_50,
            "resync_seconds": resyncs,
            "resync_median_seconds": statistics.median(resyncs),
            "worker_rss_idle_mb": idle_rss,
            "worker_peak_rss_mb": peak_initial,
            "parse_pool_peak_rss_mb": peak_children,
            "initial_cpu_seconds": cpu,
            "initial_cpu_ms_per_message": {r: v / expected * 1000 for r, v in cpu.items()},
            "initial_system_cpu_ms_per_message": {
                r: v / expected * 1000 for r, v in system_cpu.items()
            },
            "initial_wal_mb": (wal_after - wal_before) / 1e6,
            "checkpoints_during_initial": checkpoints_after - checkpoints_before,
            "stored_messages": len(ids),
            "distinct_message_ids": len(set(ids)),
            "conversations": Conversation.objects.filter(mailbox=mailbox).count(),
            "server_messages": expected,
            "status": MailAccount.objects.get(pk=mailbox.pk).status,
        }
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_total_relation_size('mailweb_message'), "
                "pg_total_relation_size('mailweb_conversation')"
            )
            messages_bytes, conversations_bytes = cursor.fetchone()
        report["postgres_message_table_mb"] = messages_bytes / 1e6
        report["postgres_conversation_table_mb"] = conversations_bytes / 1e6
        report["blob_store_mb"] = (
            sum(f.stat().st_size for f in blob_dir.rglob("*") if f.is_file()) / 1e6
        )
        return report
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="rounds of mbsync and Mailweb; a multiple of 2 (3 with --baseline) lets each go "
        "first equally often",
    )
    parser.add_argument("--db", default="mailweb_bench", help="database to (re)create")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of Mailweb (e.g. a git worktree of an older commit) whose sync "
        "runs in every round too, taking turns with this one and mbsync",
    )
    args = parser.parse_args()
    if args.baseline and (differing := differing_migrations(ROOT, args.baseline)):
        sys.exit(
            f"--baseline {args.baseline} has other migrations than this checkout "
            f"({', '.join(differing)}): its worker would sync into this checkout's schema, "
            "so the comparison would not be of the two versions"
        )
    base_db = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12")
    if not shutil.which("mbsync"):
        sys.exit("mbsync not found: apt-get install isync")

    path = corpus_path(args.messages, args.seed)
    newest = newest_threads(path)
    workdir = Path(tempfile.mkdtemp(prefix="mailweb-bench-"))
    machine = {  # read now: the work directory is gone by the end
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "work_directory": str(workdir),
        "work_filesystem": filesystem_of(workdir),
    }
    server = start_dovecot(workdir)
    results: dict[str, Any] = {"messages": args.messages, "seed": args.seed, "rounds": []}
    try:
        started = time.perf_counter()
        count, size = seed(server, path)
        results["corpus_mb"] = size / 1e6
        results["seed_seconds"] = time.perf_counter() - started
        print(f"seeded {count} messages ({size / 1e6:.1f} MB)", flush=True)
        for number in range(args.rounds):
            round_dir = workdir / f"round-{number + 1}"
            _set_aside_previous_round(workdir, base_db, args.db)
            round_dir.mkdir()
            # Who goes first rotates from round to round (mbsync, this checkout and a baseline),
            # so that neither gains from its place.
            codes = {"mailweb": ROOT, **({"baseline": args.baseline} if args.baseline else {})}
            order = ["mbsync", *codes]
            order = order[number % len(order) :] + order[: number % len(order)]
            measured: dict[str, Any] = {"order": order}
            for label in order:
                if label == "mbsync":
                    measured[label] = bench_mbsync(round_dir, server)
                    seconds = measured[label]["initial_seconds"]
                    print(f"round {number + 1}: mbsync {seconds:.2f}s", flush=True)
                    continue
                if any(other in measured for other in codes):
                    # the other checkout ran already in this round: its store goes first
                    _set_aside_previous_round(workdir, base_db, args.db, keep_maildir=True)
                result = bench_mailweb(
                    server,
                    workdir,
                    count,
                    newest,
                    database_url(base_db, args.db),
                    redis_url,
                    codes[label],
                )
                print(f"round {number + 1}: {label} {result['initial_seconds']:.2f}s", flush=True)
                assert result["stored_messages"] == count == result["distinct_message_ids"], result
                measured[label] = result
            mbsync = measured["mbsync"]
            assert mbsync["stored"] == count, mbsync
            mailweb = measured["mailweb"]
            measured["initial_throughput_ratio"] = (
                mbsync["initial_seconds"] / mailweb["initial_seconds"]
            )
            measured["resync_time_ratio"] = (
                mailweb["resync_median_seconds"] / mbsync["resync_median_seconds"]
            )
            if args.baseline:
                measured["speedup_over_baseline"] = (
                    measured["baseline"]["initial_seconds"] / mailweb["initial_seconds"]
                )
            results["rounds"].append(measured)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    results["summary"] = _summary(results["rounds"], count)
    results["machine"] = machine
    results["parse_processes"] = os.environ.get("MAILWEB_SYNC_PARSE_PROCESSES") or "default"
    results["previous_rounds"] = "set aside"
    if args.baseline:
        results["baseline"] = str(args.baseline)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"imap-{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results["summary"], indent=2, default=str))


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo: the ratio depends on it (0.21-0.22 on the Intel
    machines, 0.30-0.43 on the AMD ones), since the two tools' work is so different."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return "unknown"


def filesystem_of(path: Path) -> dict[str, Any]:
    """The mount holding ``path``: device, type, and whether it journals (ext4's jbd2).

    The journal matters here: without one, ext4 pays for every recently deleted inode it skips
    when it creates a file (see ``_set_aside_previous_round``), and both tools create a file per
    message.
    """
    stat = os.stat(path)
    wanted = f"{os.major(stat.st_dev)}:{os.minor(stat.st_dev)}"
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[2] == wanted:
                separator = fields.index("-")
                mount_point, (fs_type, source) = fields[4], fields[separator + 1 : separator + 3]
                break
        else:
            return {"device_id": wanted}
    device = os.path.basename(source)
    journals = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") else []
    return {
        "mount_point": mount_point,
        "type": fs_type,
        "device": source,
        "journal": any(name.rsplit("-", 1)[0] == device for name in journals),
    }


def _set_aside_previous_round(
    workdir: Path, base_db: str, db_name: str, *, keep_maildir: bool = False
) -> None:
    """Move what the previous round stored out of the way, and re-create the database.

    Nothing is deleted until the run ends (a rename frees no inode), because deleting makes the
    next file creations dearer for whichever tool comes first: ext4 without a journal (as on
    these machines) does not reuse an inode for 60 s after its deletion, 360 s while its
    inode-table block is dirty, and every allocation pays a buffer-cache lookup for each such
    inode it skips (``recently_deleted`` in the kernel's fs/ext4/ialloc.c). mbsync creates its
    files on its critical path and Mailweb off it, so the deletions biased the ratio; the
    measurements are under "Correction" in bench/README.md.
    """
    stored = [] if keep_maildir else list(workdir.glob("round-*"))
    stored.append(workdir / "blobs")
    aside = workdir / "set-aside"
    aside.mkdir(exist_ok=True)
    for number, previous in enumerate(p for p in stored if p.exists()):
        previous.rename(aside / f"{time.monotonic_ns()}-{number}-{previous.name}")
    _drop_connections()
    recreate_database(base_db, db_name)
    os.sync()


def differing_migrations(ours: Path, theirs: Path) -> list[str]:
    """The migration files that differ between two checkouts (added, removed or changed).

    Every round migrates one database with this checkout's migrations and runs both workers
    against it. A baseline whose migrations differ would sync into a schema it was not written
    for (a search column it does not know of filled or not filled for it, say), and the
    comparison would be of something else than the two versions.
    """

    def migrations(root: Path) -> dict[str, bytes]:
        return {
            str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.glob("*/migrations/*.py"))
        }

    mine, other = migrations(ours), migrations(theirs)
    return sorted(name for name in mine.keys() | other.keys() if mine.get(name) != other.get(name))


def _drop_connections() -> None:
    """Close this process's database connections (from an earlier round) before a re-create."""
    from django.conf import settings

    if settings.configured:
        from django.db import connections

        connections.close_all()


def _summary(rounds: list[dict[str, Any]], count: int) -> dict[str, Any]:
    """Medians over the rounds; the ratio is the median of the rounds' own ratios."""

    def median(values: Iterable[float]) -> float:
        return statistics.median(list(values))

    def median_by_role(key: str) -> dict[str, float]:
        return {
            role: median(r["mailweb"][key][role] for r in rounds)
            for role in rounds[0]["mailweb"][key]
        }

    mbsync = median(r["mbsync"]["initial_seconds"] for r in rounds)
    mailweb = median(r["mailweb"]["initial_seconds"] for r in rounds)
    baseline = (
        {
            "baseline_initial_seconds": [r["baseline"]["initial_seconds"] for r in rounds],
            "median_baseline_initial_seconds": median(
                r["baseline"]["initial_seconds"] for r in rounds
            ),
            "median_speedup_over_baseline": median(r["speedup_over_baseline"] for r in rounds),
        }
        if "baseline" in rounds[0]
        else {}
    )
    return {
        **baseline,
        "rounds": len(rounds),
        "mbsync_initial_seconds": [r["mbsync"]["initial_seconds"] for r in rounds],
        "mailweb_initial_seconds": [r["mailweb"]["initial_seconds"] for r in rounds],
        "initial_throughput_ratios": [r["initial_throughput_ratio"] for r in rounds],
        "median_mbsync_initial_seconds": mbsync,
        "median_mailweb_initial_seconds": mailweb,
        "median_throughput_messages_per_second": {
            "mbsync": count / mbsync,
            "mailweb": count / mailweb,
        },
        "median_initial_throughput_ratio": median(r["initial_throughput_ratio"] for r in rounds),
        "median_resync_time_ratio": median(r["resync_time_ratio"] for r in rounds),
        "median_newest_50_conversations_seconds": median(
            r["mailweb"]["newest_50_conversations_seconds"] for r in rounds
        ),
        "median_cpu_ms_per_message": median_by_role("initial_cpu_ms_per_message"),
        "median_system_cpu_ms_per_message": median_by_role("initial_system_cpu_ms_per_message"),
        "checkpoints_during_mailweb_initial": [
            r["mailweb"]["checkpoints_during_initial"] for r in rounds
        ],
        "median_mailweb_initial_wal_mb": median(r["mailweb"]["initial_wal_mb"] for r in rounds),
        "max_worker_peak_rss_mb": max(r["mailweb"]["worker_peak_rss_mb"] for r in rounds),
        "max_parse_pool_peak_rss_mb": max(r["mailweb"]["parse_pool_peak_rss_mb"] for r in rounds),
    }


if __name__ == "__main__":
    main()
