"""Benchmark: the inbox list and search at a million messages on PostgreSQL.

Not a test: it creates its own database (``mailweb_bench`` by default), fills it with bulk SQL
(``INSERT ... SELECT generate_series``: 250,000 conversations, 1,000,000 messages with
searchable bodies, labels, assignments and read state), then measures the server time of each
page through Django's test client (view + queries + template) and of the selectors alone,
and prints EXPLAIN ANALYZE of the main list query.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mailweb_bench \\
        .venv/bin/python bench/inbox_bench.py [--messages 1000000] [--reuse] [--runs 15]

``--reuse`` skips generation when the database already holds the data. Figures go to stdout
as a Markdown table (copied into bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailweb.settings")
# Production-like: DEBUG off (cached templates, no query log). MAILWEB_TESTING only relaxes
# the start-up checks for secrets and serves static files without a collectstatic manifest.
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("MAILWEB_TESTING", "true")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mailweb_bench")
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

MAILBOXES = 5
USERS = 12
WORDS = 5000


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _columns(cursor: Any, table: str) -> list[tuple[str, str, bool]]:
    cursor.execute(
        "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
        "WHERE table_name = %s AND is_generated = 'NEVER' AND column_default IS NULL "
        "ORDER BY ordinal_position",
        [table],
    )
    return list(cursor.fetchall())


def _insert_select(
    cursor: Any, table: str, values: dict[str, str], source: str, *, execute: bool = True
) -> str:
    """INSERT INTO table SELECT ... FROM source, filling NOT NULL columns not given with
    type defaults (Django keeps defaults in Python, not in the schema)."""
    defaults = {
        "text": "''",
        "character varying": "''",
        "integer": "0",
        "bigint": "0",
        "smallint": "0",
        "boolean": "false",
        "jsonb": "'[]'::jsonb",
        "timestamp with time zone": "now()",
        "bytea": "''::bytea",
    }
    names, exprs = [], []
    for name, data_type, nullable in _columns(cursor, table):
        if name == "id":
            continue
        if name in values:
            names.append(name)
            exprs.append(values[name])
        elif not nullable:
            names.append(name)
            exprs.append(defaults[data_type])
    quoted = ", ".join(f'"{name}"' for name in names)
    sql = f"INSERT INTO {table} ({quoted}) SELECT {', '.join(exprs)} {source}"
    if execute:
        cursor.execute(sql)
    return sql


def generate(messages: int) -> None:
    from django.db import connection

    from accounts.models import MailAccount, MailboxAccess, User
    from mailweb.models import Folder, Label

    conversations = messages // 4
    started = time.monotonic()
    admin = User.objects.create_superuser("admin@bench.test", "correct horse battery", name="Ada")
    members = [
        User.objects.create_user(f"agent{i}@bench.test", "correct horse battery", name=f"Agent {i}")
        for i in range(USERS - 1)
    ]
    boxes = [
        MailAccount.objects.create(
            address=f"box{i}@bench.test", method="imap_password", imap_host="x"
        )
        for i in range(MAILBOXES)
    ]
    for index, member in enumerate(members):
        for box in boxes[: 2 + index % 3]:
            MailboxAccess.objects.create(user=member, mailbox=box)
    folders = [
        Folder.objects.create(mailbox=box, name="INBOX", role="inbox", uidvalidity=1)
        for box in boxes
    ]
    labels = [Label.objects.create(name=f"label-{i}") for i in range(8)]
    user_ids = [admin.pk] + [m.pk for m in members]
    box_ids = [b.pk for b in boxes]
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("DROP INDEX IF EXISTS message_search_idx")
        # Each body is a 40-word slice of a shuffled pool of words (cheap to generate).
        pools = word_pools()
        cursor.execute(f"CREATE TEMP TABLE vocab_arr AS SELECT {pools[0]} AS a")
        boxes_sql = "ARRAY[" + ",".join(map(str, box_ids)) + "]"
        users_sql = "ARRAY[" + ",".join(map(str, user_ids)) + "]"
        _insert_select(
            cursor,
            "mailweb_conversation",
            {
                "mailbox_id": f"({boxes_sql})[1 + g % {MAILBOXES}]",
                "subject": "'Case ' || g || ' about ' "
                "|| (SELECT a[1 + (g * 7) % 20] FROM vocab_arr)",
                "normalized_subject": "'case ' || g",
                "status": "CASE WHEN g % 100 < 20 THEN 'open' WHEN g % 100 < 25 THEN 'pending' "
                "WHEN g % 100 < 28 THEN 'snoozed' ELSE 'closed' END",
                "assignee_id": f"CASE WHEN g % 3 = 0 THEN NULL "
                f"ELSE ({users_sql})[1 + g % {USERS}] END",
                "snoozed_until": "CASE WHEN g % 100 BETWEEN 25 AND 27 "
                "THEN now() + interval '1 day' END",
                "last_activity_at": f"now() - ({conversations} - g) * interval '2 minutes' "
                "+ (g % 7) * interval '1 second'",
                "last_message_at": f"now() - ({conversations} - g) * interval '2 minutes'",
                "message_count": "4",
                "has_attachments": "g % 10 = 0",
                "snippet": "'Hello, this is about case ' || g",
                "last_sender": "'Customer ' || (g % 5000)",
                "created_at": "now()",
            },
            f"FROM generate_series(1, {conversations}) g",
        )
        cursor.execute("SELECT min(id) FROM mailweb_conversation")
        first_conversation = cursor.fetchone()[0]
        folder_sql = "ARRAY[" + ",".join(str(f.pk) for f in folders) + "]"
        print(f"conversations: {time.monotonic() - started:.0f}s", flush=True)
        sql = _insert_select(
            cursor,
            "mailweb_message",
            {
                "mailbox_id": f"({boxes_sql})[1 + ((g - 1) / 4 + 1) % {MAILBOXES}]",
                "folder_id": f"({folder_sql})[1 + ((g - 1) / 4 + 1) % {MAILBOXES}]",
                "conversation_id": f"{first_conversation} + (g - 1) / 4",
                "uidvalidity": "1",
                "uid": "g",
                "message_id": "'m' || g || '@bench.test'",
                "in_reply_to": "CASE WHEN g % 4 = 1 THEN '' "
                "ELSE 'm' || (g - 1) || '@bench.test' END",
                "references": "'[]'::jsonb",
                "subject": "'Case ' || ((g - 1) / 4 + 1)",
                "from_name": "'Customer ' || (g % 5000)",
                "from_address": "'customer' || (g % 5000) || '@example' || (g % 50) || '.test'",
                "to": "'[]'::jsonb",
                "addresses_text": "'Customer ' || (g % 5000) || ' customer' || (g % 5000) "
                "|| '@example' || (g % 50) || '.test box@bench.test'",
                "date": f"now() - ({messages} - g) * interval '30 seconds'",
                "received_at": f"now() - ({messages} - g) * interval '30 seconds'",
                "size": "2000",
                "snippet": "'Hello, this is message ' || g",
                # Constant arrays, sliced per row without any lookup.
                "text_body": " || ' ' || ".join(
                    f"array_to_string(({pool})[1 + (g::bigint * {stride}) % {POOL - 10} : "
                    f"10 + (g::bigint * {stride}) % {POOL - 10}], ' ')"
                    for pool, stride in zip(pools, (7919, 104729, 1299709, 15485863), strict=True)
                ),
                "has_attachments": "g % 40 = 0",
                "direction": "CASE WHEN g % 4 = 0 THEN 'out' ELSE 'in' END",
                "created_at": "now()",
                "is_seen": "true",
            },
            "FROM generate_series(%(lo)s, %(hi)s) g",
            execute=False,
        )
        insert_in_parallel(sql, messages)
        print(f"messages: {time.monotonic() - started:.0f}s", flush=True)
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute(
            "CREATE INDEX message_search_idx ON mailweb_message USING gin (search_vector)"
        )
        print(f"search index: {time.monotonic() - started:.0f}s", flush=True)
        label_sql = "ARRAY[" + ",".join(str(label.pk) for label in labels) + "]"
        cursor.execute(
            "INSERT INTO mailweb_conversation_labels (conversation_id, label_id) "
            f"SELECT id, ({label_sql})[1 + id % 8] FROM mailweb_conversation WHERE id % 10 = 0"
        )
        cursor.execute(
            "INSERT INTO mailweb_conversationread (user_id, conversation_id, read_at) "
            f"SELECT {admin.pk}, id, now() FROM mailweb_conversation WHERE id % 2 = 0"
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"generated in {time.monotonic() - started:.0f}s", flush=True)


POOL = 400  # words per pool; a body is four 10-word slices of four pools


def word_pools() -> list[str]:
    """Four shuffled pools of words as PostgreSQL array literals.

    Slicing a text array walks it element by element, so pools stay small and a body is
    made of one slice from each (400^4 combinations). "please" and "thanks" sit in every
    pool several times (most messages contain them); each of the 20 topic words ("invoice",
    "refund", ...) sits once in one pool (about 2.5% of messages); the rest of each pool is
    drawn from 4,980 rarer words.
    """
    import random

    topics = [
        "invoice", "refund", "login", "password", "printer", "delivery", "parcel", "order",
        "account", "billing", "contract", "meeting", "report", "urgent", "error", "crash",
        "server", "network", "payment", "subscription",
    ]  # fmt: skip
    rare = [f"{topics[n % 20]}x{n}" for n in range(20, WORDS)]
    chooser = random.Random(42)
    pools = []
    for index in range(4):
        words = ["please"] * 6 + ["thanks"] * 6 + topics[index * 5 : index * 5 + 5]
        words += chooser.sample(rare, POOL - len(words))
        chooser.shuffle(words)
        pools.append("'{" + ",".join(words) + "}'::text[]")
    return pools


def insert_in_parallel(sql: str, messages: int, workers: int = 2, chunks: int = 8) -> None:
    """Run the INSERT for slices of the series on ``workers`` connections at once (the
    generated tsvector column makes each row cost CPU; one backend uses one core)."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    step = -(-messages // chunks)
    ranges = [(lo, min(messages, lo + step - 1)) for lo in range(1, messages + 1, step)]
    url = os.environ["DATABASE_URL"]

    def run(bounds: tuple[int, int]) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute(sql.replace("%(lo)s", str(bounds[0])).replace("%(hi)s", str(bounds[1])))
        print(f"  messages {bounds[0]:,}..{bounds[1]:,} stored", flush=True)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, ranges))


def measure(label: str, call: Callable[[], Any], runs: int) -> tuple[str, float, float]:
    call()  # warm up (connection, caches, plans)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    median = statistics.median(times)
    p95 = times[min(len(times) - 1, max(0, -(-len(times) * 95 // 100) - 1))]
    print(f"| {label} | {median:.1f} | {p95:.1f} |", flush=True)
    return label, median, p95


def run(runs: int) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from accounts.models import MailAccount, User
    from mailweb.models import Conversation, Label, Message
    from mailweb.search import search
    from mailweb.selectors import InboxFilter, _sidebar_counts, inbox_page, sidebar_counts

    setup_test_environment()
    admin = User.objects.get(email="admin@bench.test")
    agent = User.objects.get(email="agent3@bench.test")
    box = MailAccount.objects.order_by("pk").first()
    label = Label.objects.order_by("pk").first()
    assert box is not None and label is not None
    print(
        f"\n{Message.objects.count():,} messages, {Conversation.objects.count():,} "
        f"conversations, {MailAccount.objects.count()} mailboxes\n"
    )
    admin_client, agent_client = Client(), Client()
    admin_client.force_login(admin)
    agent_client.force_login(agent)
    middle = inbox_page(admin, InboxFilter(status="all"), size=50)
    cursor = middle.next_cursor
    for _ in range(200):  # ~10,000 rows deep
        page = inbox_page(admin, InboxFilter(status="all"), cursor=cursor, size=50)
        cursor = page.next_cursor

    def get(client: Client, url: str) -> Callable[[], Any]:
        def call() -> None:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        return call

    print("| what | median ms | p95 ms |\n| --- | ---: | ---: |")
    rows = [
        ("selector: open list, 50 rows (admin)", lambda: inbox_page(admin, InboxFilter())),
        (
            "selector: page 200 deep (keyset)",
            lambda: inbox_page(admin, InboxFilter(status="all"), cursor=cursor),
        ),
        ("selector: sidebar counts, cached (admin)", lambda: sidebar_counts(admin, InboxFilter())),
        (
            "selector: sidebar counts, uncached (admin)",
            lambda: _sidebar_counts(admin, InboxFilter()),
        ),
        (
            "selector: sidebar counts, uncached (member)",
            lambda: _sidebar_counts(agent, InboxFilter()),
        ),
        ("page GET / (admin: list + sidebar + template)", get(admin_client, "/")),
        ("page GET / (admin, sidebar not cached)", uncached(get(admin_client, "/"))),
        ("page GET / (member of 2-4 mailboxes)", get(agent_client, "/")),
        ("page GET /?assignee=me", get(admin_client, "/?assignee=me")),
        ("page GET /?assignee=unassigned", get(admin_client, "/?assignee=unassigned")),
        ("page GET /?mailbox=<one>", get(admin_client, f"/?mailbox={box.pk}")),
        ("page GET /?status=closed", get(admin_client, "/?status=closed")),
        ("page GET /?label=<one>", get(admin_client, f"/?label={label.pk}")),
        ("htmx list poll, unchanged (204)", lambda: None),
        ("search: rare word", lambda: search(admin, "refundx4081")),
        ("search: word in 0.8% of messages", lambda: search(admin, "invoice")),
        ("search: word in every message (ranked window)", lambda: search(admin, "customer")),
        ("search: two words", lambda: search(admin, "printer urgent")),
        ("search: from:", lambda: search(admin, "from:customer42@example42.test")),
        (
            "search: word has:attachment is:open",
            lambda: search(admin, "login has:attachment is:open"),
        ),
        ("page GET /search/?q=invoice", get(admin_client, "/search/?q=invoice")),
    ]
    for label_text, call in rows:
        if label_text.startswith("htmx list poll"):
            html = admin_client.get("/").content.decode()
            import re

            match = re.search(r'hx-get="(/live/inbox\?[^"]+)"', html)
            assert match is not None
            url = match.group(1).replace("&amp;", "&")
            measure(label_text, get_204(admin_client, url), runs)
            continue
        measure(label_text, call, runs)
    explain(connection, admin)


def uncached(call: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> None:
        from django.core.cache import cache

        cache.clear()  # the bench's own Redis database (REDIS_URL)
        call()

    return run


def get_204(client: Any, url: str) -> Callable[[], Any]:
    def call() -> None:
        assert client.get(url).status_code == 204

    return call


def explain(connection: Any, admin: Any) -> None:
    from mailweb.selectors import InboxFilter, apply_filter, visible_conversations, with_unread

    queryset = (
        with_unread(apply_filter(visible_conversations(admin), admin, InboxFilter()), admin)
        .select_related("mailbox", "assignee")
        .order_by("-last_activity_at", "-id")[:51]
    )
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        print("\nEXPLAIN ANALYZE, open list (admin):")
        for (line,) in cursor.fetchall():
            print("   ", line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    ensure_database()
    setup_django()
    from mailweb.models import Message

    if not (args.reuse and Message.objects.exists()):
        if Message.objects.exists():
            sys.exit("the bench database already has data: drop it or pass --reuse")
        generate(args.messages)
    run(args.runs)


if __name__ == "__main__":
    main()
