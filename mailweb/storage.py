"""Local blob storage whose writes are atomic, and durable before anything refers to them.

Django's FileSystemStorage writes in place, so a worker killed mid-write would leave a truncated
file under the final name, and content addressing would then trust it forever. Here bytes go to
a temporary file in the same directory and are renamed into place (``write_atomic``, which has
no Django dependency so the sync engine's parse processes can write blobs too).

Durability: a blob must be on disk before a committed row names it. One write at a time is
fsynced before its rename. A sync writes hundreds of blobs per batch, though, and an fsync each
cost more than everything else the worker did for a message; inside ``deferred_sync()`` the
writes are not synced one by one but together when the block ends (one ``syncfs`` of the blob
filesystem on Linux, else an fsync per file), before the caller commits its rows.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.core.files.base import File
from django.core.files.storage import FileSystemStorage

__all__ = ["AtomicFileSystemStorage", "make_durable", "write_atomic"]


class AtomicFileSystemStorage(FileSystemStorage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    @contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Blobs saved in this block (on this thread) are made durable together at its end.

        If the block raises, nothing is synced: its blobs may not be durable, and the caller
        commits no row that names them. Nested blocks sync at the outermost end.
        """
        if getattr(self._local, "pending", None) is not None:
            yield
            return
        self._local.pending = []
        try:
            yield
            make_durable(str(self.location), self._local.pending)
        finally:
            self._local.pending = None

    def written_elsewhere(self, name: str) -> None:
        """``name`` was written by another process without a sync: sync it with the block's."""
        pending: list[str] | None = getattr(self._local, "pending", None)
        if pending is None:
            make_durable(str(self.location), [self.path(name)])
        else:
            pending.append(self.path(name))

    def _save(self, name: str, content: File[Any]) -> str:
        full_path = self.path(name)
        pending: list[str] | None = getattr(self._local, "pending", None)
        chunks = (c if isinstance(c, bytes) else c.encode() for c in content.chunks())
        write_atomic(full_path, chunks, sync=pending is None)
        if pending is not None:
            pending.append(full_path)
        return name.replace("\\", "/")

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        """Content-addressed names never collide with different bytes: overwrite in place."""
        return name


def write_atomic(full_path: str, chunks: Iterable[bytes], *, sync: bool) -> None:
    """Write ``chunks`` to a temporary file beside ``full_path`` and rename it into place.

    With ``sync`` the file is fsynced before the rename; without, the caller must call
    ``make_durable`` before relying on it. The temporary name is unique per process and thread.
    """
    directory = os.path.dirname(full_path)
    temp_path = f"{full_path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        handle = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)
        handle = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.replace(temp_path, full_path)
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise


def make_durable(root: str, paths: Sequence[str]) -> None:
    """Make ``paths`` (files under ``root``) durable: one syncfs, or an fsync each."""
    if not paths:
        return
    if _syncfs(root):
        return
    for path in paths:
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _load_syncfs() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols, libc's among them
        function = libc.syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SYNCFS = _load_syncfs()


def _syncfs(directory: str) -> bool:
    """Write back the whole filesystem holding ``directory`` (Linux ``syncfs(2)``).

    One call covers every file and rename since the last one, at the cost of one journal
    commit. Returns False where it is not available, so the caller fsyncs file by file.
    """
    if _SYNCFS is None:
        return False
    handle = os.open(directory, os.O_RDONLY)
    try:
        if _SYNCFS(handle) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs failed: {os.strerror(error)}")
    finally:
        os.close(handle)
    return True
