"""Content-addressed blobs: stored once, atomic, named by SHA-256."""

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from mailweb.blobs import (
    blob_name,
    blob_written_elsewhere,
    durable_blobs,
    get_blob,
    has_blob,
    local_blob_root,
    put_blob,
    store_local_blob,
)
from tests.conftest import DurableCalls

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
    assert not any(".tmp-" in p.name for p in files)


def test_missing_blob(tmp_path: Path) -> None:
    assert not has_blob("0" * 64)
    assert not has_blob("")
    with pytest.raises(FileNotFoundError):
        get_blob("0" * 64)


def test_one_level_of_directories(tmp_path: Path) -> None:
    digest = put_blob(b"one directory level")
    assert (tmp_path / "blobs" / digest[:2] / digest).is_file()


def test_blobs_stored_under_the_two_level_layout_are_still_read(tmp_path: Path) -> None:
    data = b"stored before the layout changed"
    digest = hashlib.sha256(data).hexdigest()
    legacy = tmp_path / "blobs" / digest[:2] / digest[2:4] / digest
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(data)
    assert has_blob(digest)
    assert get_blob(digest) == data


def test_put_rewrites_a_blob_of_the_wrong_size(tmp_path: Path) -> None:
    """A file cut short (power loss before its sync) is written again, not trusted."""
    data = b"From: a@example.com\r\n\r\n" + b"x" * 1000
    digest = hashlib.sha256(data).hexdigest()
    path = tmp_path / "blobs" / blob_name(digest)
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:100])
    assert put_blob(data) == digest
    assert path.read_bytes() == data


def test_put_leaves_a_whole_blob_alone(tmp_path: Path) -> None:
    data = b"already stored"
    digest = put_blob(data)
    path = tmp_path / "blobs" / blob_name(digest)
    inode = path.stat().st_ino  # an atomic rewrite renames a new file (a new inode) into place
    assert put_blob(data) == digest
    assert path.stat().st_ino == inode
    assert path.read_bytes() == data


def test_store_local_blob_writes_content_addressed_file(tmp_path: Path) -> None:
    root = tmp_path / "elsewhere"
    data = b"attachment bytes"
    digest = store_local_blob(str(root), data)
    assert digest == hashlib.sha256(data).hexdigest()
    path = root / digest[:2] / digest
    assert path.read_bytes() == data
    assert os.listdir(path.parent) == [digest]
    path.write_bytes(data[:3])  # truncated: written again
    assert store_local_blob(str(root), data) == digest
    assert path.read_bytes() == data


def test_blobs_written_elsewhere_join_the_durable_block(
    tmp_path: Path, durable_calls: DurableCalls
) -> None:
    root = local_blob_root()
    assert root is not None and root == str(tmp_path / "blobs")
    with durable_blobs():
        elsewhere = store_local_blob(root, b"written by a parse process")
        blob_written_elsewhere(elsewhere)
        here = put_blob(b"written here")
        assert durable_calls == []
    assert durable_calls == [
        (root, [os.path.join(root, blob_name(elsewhere)), os.path.join(root, blob_name(here))])
    ]
    assert get_blob(elsewhere) == b"written by a parse process"


def test_blob_written_elsewhere_needs_the_local_storage(settings: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    assert local_blob_root() is None
    with pytest.raises(RuntimeError):
        blob_written_elsewhere("0" * 64)
