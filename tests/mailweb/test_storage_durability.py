"""AtomicFileSystemStorage: atomic writes, and fsyncs deferred to one sync per block.

Durability itself cannot be observed without pulling the plug, so these tests record the sync
calls (``make_durable``, ``os.fsync``, ``syncfs``) while the files are really written.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from mailweb import storage as storage_module
from mailweb.storage import AtomicFileSystemStorage, make_durable, write_atomic
from tests.conftest import DurableCalls

pytestmark = pytest.mark.smoke


@pytest.fixture
def store(tmp_path: Path) -> AtomicFileSystemStorage:
    return AtomicFileSystemStorage(location=tmp_path / "store")


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Inodes of the files fsynced (the real fsync still runs)."""
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(storage_module.os, "fsync", fsync)
    return synced


def fake_syncfs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace syncfs(2) by a successful stand-in recording the descriptors it is given."""
    calls: list[int] = []

    def syncfs(fd: int) -> int:
        calls.append(fd)
        return 0

    monkeypatch.setattr(storage_module, "_SYNCFS", syncfs)
    return calls


def save(store: AtomicFileSystemStorage, name: str, data: bytes) -> str:
    assert store.save(name, ContentFile(data)) == name
    path = store.path(name)
    assert Path(path).read_bytes() == data
    return path


def test_save_outside_a_block_fsyncs_each_file(
    store: AtomicFileSystemStorage, fsyncs: list[int], durable_calls: DurableCalls
) -> None:
    first = save(store, "aa/bb/one", b"one")
    second = save(store, "aa/bb/two", b"two")
    assert fsyncs == [os.stat(first).st_ino, os.stat(second).st_ino]
    assert durable_calls == []


def test_deferred_sync_makes_the_block_durable_once(
    store: AtomicFileSystemStorage, fsyncs: list[int], durable_calls: DurableCalls
) -> None:
    with store.deferred_sync():
        paths = [save(store, f"aa/bb/{n}", n.encode()) for n in ("one", "two", "three")]
        assert fsyncs == []
        assert durable_calls == []
    assert fsyncs == []
    assert durable_calls == [(str(store.location), paths)]


def test_deferred_sync_block_that_raises_syncs_nothing(
    store: AtomicFileSystemStorage, fsyncs: list[int], durable_calls: DurableCalls
) -> None:
    with pytest.raises(RuntimeError), store.deferred_sync():
        save(store, "aa/bb/one", b"one")
        raise RuntimeError("commit failed")
    assert durable_calls == []
    # The failed block is over: the next save is synced on its own again.
    path = save(store, "aa/bb/two", b"two")
    assert fsyncs == [os.stat(path).st_ino]


def test_nested_blocks_sync_once_at_the_outermost_end(
    store: AtomicFileSystemStorage, durable_calls: DurableCalls
) -> None:
    with store.deferred_sync():
        first = save(store, "aa/bb/one", b"one")
        with store.deferred_sync():
            second = save(store, "aa/bb/two", b"two")
        assert durable_calls == []
        third = save(store, "aa/bb/three", b"three")
    assert durable_calls == [(str(store.location), [first, second, third])]


def test_deferred_sync_covers_only_its_own_thread(
    store: AtomicFileSystemStorage, fsyncs: list[int], durable_calls: DurableCalls
) -> None:
    other: list[str] = []
    with store.deferred_sync():
        mine = save(store, "aa/bb/mine", b"mine")
        thread = threading.Thread(target=lambda: other.append(save(store, "aa/bb/other", b"x")))
        thread.start()
        thread.join()
    assert fsyncs == [os.stat(other[0]).st_ino]
    assert durable_calls == [(str(store.location), [mine])]


def test_written_elsewhere_joins_the_block_or_syncs_at_once(
    store: AtomicFileSystemStorage, durable_calls: DurableCalls
) -> None:
    root = str(store.location)
    store.written_elsewhere("aa/bb/alone")
    assert durable_calls == [(root, [store.path("aa/bb/alone")])]
    durable_calls.clear()
    with store.deferred_sync():
        store.written_elsewhere("aa/bb/elsewhere")
        mine = save(store, "aa/bb/mine", b"mine")
        assert durable_calls == []
    assert durable_calls == [(root, [store.path("aa/bb/elsewhere"), mine])]


def test_make_durable_uses_one_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: list[int]
) -> None:
    calls = fake_syncfs(monkeypatch)
    paths = [str(tmp_path / name) for name in ("a", "b")]
    for path in paths:
        Path(path).write_bytes(b"x")
    make_durable(str(tmp_path), paths)
    assert len(calls) == 1
    assert fsyncs == []


def test_make_durable_falls_back_to_fsync_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: list[int]
) -> None:
    monkeypatch.setattr(storage_module, "_SYNCFS", None)
    paths = [str(tmp_path / name) for name in ("a", "b", "c")]
    for path in paths:
        Path(path).write_bytes(b"x")
    make_durable(str(tmp_path), paths)
    assert fsyncs == [os.stat(path).st_ino for path in paths]


def test_make_durable_with_nothing_to_sync_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: list[int]
) -> None:
    calls = fake_syncfs(monkeypatch)
    make_durable(str(tmp_path), [])
    assert calls == [] and fsyncs == []


def test_make_durable_raises_when_syncfs_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed sync must not pass for a durable one (the caller would commit its rows)."""
    monkeypatch.setattr(storage_module, "_SYNCFS", lambda fd: -1)
    (tmp_path / "a").write_bytes(b"x")
    with pytest.raises(OSError, match="syncfs failed"):
        make_durable(str(tmp_path), [str(tmp_path / "a")])


def test_write_atomic_creates_missing_directories_and_leaves_no_temp_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "x" / "y" / "blob"
    write_atomic(str(target), [b"hello ", b"world"], sync=False)
    assert target.read_bytes() == b"hello world"
    assert os.listdir(target.parent) == ["blob"]


def test_write_atomic_failing_chunks_leave_no_temp_file_and_keep_old_content(
    tmp_path: Path,
) -> None:
    target = tmp_path / "blob"
    target.write_bytes(b"previous")

    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise ConnectionError("source went away")

    with pytest.raises(ConnectionError):
        write_atomic(str(target), chunks(), sync=True)
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["blob"]


def test_write_atomic_failing_into_a_new_directory_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "new" / "blob"

    def chunks() -> Iterator[bytes]:
        raise ConnectionError("source went away")
        yield b""  # pragma: no cover - makes this a generator

    with pytest.raises(ConnectionError):
        write_atomic(str(target), chunks(), sync=False)
    assert os.listdir(target.parent) == []
