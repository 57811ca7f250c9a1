"""Content-addressed blobs: stored once, atomic, named by SHA-256."""

import hashlib
from pathlib import Path

import pytest

from mailweb.blobs import get_blob, has_blob, put_blob

pytestmark = pytest.mark.smoke


def test_put_is_idempotent_and_content_addressed(tmp_path: Path) -> None:
    data = b"From: a@example.com\r\n\r\nhello"
    digest = put_blob(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert put_blob(data) == digest
    assert get_blob(digest) == data
    assert has_blob(digest)
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name == digest
    assert not any(p.name.startswith(".tmp-") for p in files)


def test_missing_blob(tmp_path: Path) -> None:
    assert not has_blob("0" * 64)
    assert not has_blob("")
