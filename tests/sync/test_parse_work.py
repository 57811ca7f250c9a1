"""Parsing with blob storage: what a parse process stores and what it hands back.

``parse_and_store`` runs in the sync engine's parse processes; with the local blob directory it
writes the raw message and its attachments there and returns the attachments without payloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from email.message import EmailMessage
from pathlib import Path

import pytest

from accounts.models import MailAccount
from mailweb.blobs import local_blob_root
from mailweb.models import Folder
from sync import parse_pool as parse_pool_module
from sync.ingest import IncomingMessage, ProviderKey, prepare_batch
from sync.mime import ParsedMessage, parse_message
from sync.parse_pool import INLINE_BELOW, ParsePool, parse_many
from sync.parse_work import ParseOutcome, parse_and_store
from tests.conftest import DurableCalls
from tests.sync.mail import message

PDF = b"%PDF-1.4 quarterly report \x00\x01\x02" * 50
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def with_attachments() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.net>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Two attachments"
    msg["Message-ID"] = "<two-attachments@example.net>"
    msg.set_content("See attached.\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="chart.png")
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def blob_bytes(root: Path, sha256: str) -> bytes:
    return (root / sha256[:2] / sha256).read_bytes()


def assert_stored(outcome: ParseOutcome, raw: bytes, root: Path) -> None:
    """Blobs on disk, attachments without payloads, and otherwise exactly parse_message's result."""
    expected = dataclasses.replace(parse_message(raw), html="")  # the outcome leaves it out
    assert outcome.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert blob_bytes(root, outcome.raw_sha256) == raw
    assert len(outcome.parsed.attachments) == len(expected.attachments)
    for got, want in zip(outcome.parsed.attachments, expected.attachments, strict=True):
        assert got.payload == b""
        assert got.sha256 == hashlib.sha256(want.payload).hexdigest()
        assert blob_bytes(root, got.sha256) == want.payload
        assert dataclasses.replace(got, payload=want.payload, sha256="") == want
    assert dataclasses.replace(outcome.parsed, attachments=expected.attachments) == expected


def assert_not_stored(outcome: ParseOutcome, raw: bytes) -> None:
    assert outcome.raw_sha256 == ""
    assert outcome.parsed == dataclasses.replace(parse_message(raw), html="")
    assert all(a.payload and not a.sha256 for a in outcome.parsed.attachments)


class BrokenChild:
    """Stands in for ``parse_pool._Child`` where no parse process can start."""

    def __init__(self) -> None:
        raise OSError("cannot start parse process")


def parse_in_pool(raws: list[bytes], blob_root: str, *, processes: int) -> list[ParseOutcome]:
    """One job through a real pool of ``sync.parse_server`` children, closed afterwards."""
    pool = ParsePool(processes)
    try:
        return pool.submit(raws, blob_root).result()
    finally:
        pool.close()


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def test_parse_and_store_writes_raw_and_decoded_attachments(tmp_path: Path) -> None:
    raw = with_attachments()
    root = tmp_path / "parse-root"
    outcome = parse_and_store(raw, str(root))
    assert [a.filename for a in outcome.parsed.attachments] == ["report.pdf", "chart.png"]
    assert_stored(outcome, raw, root)
    # The decoded payloads, not the base64 text, are what is stored.
    assert {blob_bytes(root, a.sha256) for a in outcome.parsed.attachments} == {PDF, PNG}
    assert len(files_under(root)) == 3


def test_parse_and_store_without_root_writes_nothing(tmp_path: Path) -> None:
    raw = with_attachments()
    outcome = parse_and_store(raw, None)
    assert_not_stored(outcome, raw)
    assert [a.payload for a in outcome.parsed.attachments] == [PDF, PNG]
    assert files_under(tmp_path) == []


def test_parse_and_store_message_without_attachments(tmp_path: Path) -> None:
    raw = message(body="No attachments here.\n")
    outcome = parse_and_store(raw, str(tmp_path))
    assert outcome.parsed == parse_message(raw)
    assert files_under(tmp_path) == [tmp_path / outcome.raw_sha256[:2] / outcome.raw_sha256]


def test_parse_and_store_leaves_out_the_unsanitized_html(tmp_path: Path) -> None:
    raw = message(body="Plain.\n", html='<p onclick="x()">Rich <b>text</b></p>')
    outcome = parse_and_store(raw, str(tmp_path))
    full = parse_message(raw)
    assert full.html and outcome.parsed.html == ""
    assert outcome.parsed == dataclasses.replace(full, html="")
    sanitized = outcome.parsed.sanitized_html
    assert "Rich" in sanitized and "onclick" not in sanitized


def test_parse_pool_child_stores_blobs(tmp_path: Path) -> None:
    """Through a real ``sync.parse_server`` child: the same outcomes, blobs on disk."""
    raws = [
        with_attachments(),
        message(attachment=PDF),
        message(body="plain\n"),
        message(html="<p>Rich <b>text</b></p>"),
    ]
    root = tmp_path / "pool-root"
    outcomes = parse_in_pool(raws, str(root), processes=1)
    assert len(outcomes) == len(raws)
    for outcome, raw in zip(outcomes, raws, strict=True):
        assert_stored(outcome, raw, root)


def test_parse_pool_failed_child_parses_in_process_without_storing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool problem never loses a message: parsed in-process, blobs left to the caller."""

    monkeypatch.setattr(parse_pool_module, "_Child", BrokenChild)
    raws = [with_attachments(), message()]
    outcomes = parse_in_pool(raws, str(tmp_path), processes=1)
    for outcome, raw in zip(outcomes, raws, strict=True):
        assert_not_stored(outcome, raw)
    assert files_under(tmp_path) == []


def test_parse_many_small_batch_parses_in_process_without_storing(tmp_path: Path) -> None:
    raws = [with_attachments(), message()]
    assert len(raws) < INLINE_BELOW
    outcomes = parse_many(raws)
    assert isinstance(outcomes, list)
    for outcome, raw in zip(outcomes, raws, strict=True):
        assert isinstance(outcome.parsed, ParsedMessage)
        assert_not_stored(outcome, raw)
    assert files_under(tmp_path) == []


def test_parse_processes_run_at_a_lower_priority() -> None:
    """Parsing yields the cores to the worker's commits (sync.parse_server.NICENESS)."""
    from sync.parse_server import NICENESS

    child = parse_pool_module._Child()
    try:
        assert len(child.call(None, [message("Priority")])) == 1  # it has reached serve()
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, child.process.pid) == min(19, own + NICENESS)
    finally:
        child.close()


@pytest.mark.django_db
def test_prepare_batch_makes_the_parse_processes_blobs_durable_at_once(
    durable_calls: DurableCalls,
) -> None:
    """One sync for the batch, covering the raw messages and attachments a child stored."""
    root = local_blob_root()
    assert root is not None
    mailbox = MailAccount.objects.create(address="durable@example.com", method="imap_password")
    inbox = Folder.objects.create(mailbox=mailbox, name="INBOX", role="inbox", uidvalidity=1)
    raws = [with_attachments(), message()]
    outcomes = [parse_and_store(raw, root) for raw in raws]
    items = [
        IncomingMessage(raw=raw, key=ProviderKey(folder=inbox, uidvalidity=1, uid=n + 1))
        for n, raw in enumerate(raws)
    ]

    prepare_batch(mailbox, items, outcomes)

    [(synced_root, paths)] = [call for call in durable_calls if call[1]]
    assert synced_root == root
    assert len(paths) == 4  # two raw messages and two attachments


def test_warm_starts_the_children_the_work_then_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[parse_pool_module._Child] = []

    class CountedChild(parse_pool_module._Child):
        def __init__(self) -> None:
            super().__init__()
            started.append(self)

    monkeypatch.setattr(parse_pool_module, "_Child", CountedChild)
    pool = ParsePool(2)
    try:
        pool.warm()
        pool.warm()  # already running: nothing more is started
        assert len(started) == 2
        raws = [message(f"Warm {n}") for n in range(40)]
        outcomes = pool.submit(raws, str(tmp_path / "pool-root")).result()
        assert [o.parsed.subject for o in outcomes] == [f"Warm {n}" for n in range(40)]
        assert len(started) == 2  # the work went to the warmed children
    finally:
        pool.close()
    assert all(child.process.poll() is not None for child in started)


def test_warm_failing_leaves_the_pool_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parse_pool_module, "_Child", BrokenChild)
    pool = ParsePool(1)
    try:
        pool.warm()
        raws = [message("Still parsed")] * INLINE_BELOW
        outcomes = pool.submit(raws, str(tmp_path)).result()
        assert [o.parsed.subject for o in outcomes] == ["Still parsed"] * INLINE_BELOW
    finally:
        pool.close()
