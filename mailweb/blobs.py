"""Content-addressed storage of raw messages and attachments through Django's storage API.

A blob's name is its SHA-256, so the same bytes are stored once however many folders or
mailboxes hold them, and a write can be repeated safely. Rows are written after their blob, so a
crash leaves at worst an orphan file, never a row pointing at missing bytes; local writes are
atomic (``mailweb.storage``), so a blob that exists is whole.

With the local storage, other processes may write blobs straight into its directory
(``store_local_blob``; the sync engine's parse processes do) and hand the digest to the process
that commits the rows, which makes them durable with its own (``blob_written_elsewhere``).
"""

import contextlib
import hashlib
import os
from collections.abc import Iterator

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages

from mailweb.storage import AtomicFileSystemStorage, write_atomic


def blob_name(sha256: str) -> str:
    """``ab/abcdef...``: one level of 256 directories.

    An initial sync writes a blob per message; with a second level (``ab/cd/``, as before) nearly
    every one of the first tens of thousands also created its own directory, which doubled the
    file system work per blob (0.105 against 0.060 ms of CPU per 19 KB blob on ext4) and left a
    4 KB directory per message. ext4's hashed directories keep lookups in a directory of
    thousands of files as cheap.
    """
    return f"{sha256[:2]}/{sha256}"


def _legacy_blob_name(sha256: str) -> str:
    """Where blobs were stored before (``ab/cd/abcdef...``); still read, never written."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def put_blob(data: bytes) -> str:
    """Store ``data`` (once) and return its SHA-256 hex digest.

    An existing file of another size (cut short by a power loss before it was synced) is
    written again rather than trusted.
    """
    digest = hashlib.sha256(data).hexdigest()
    name = blob_name(digest)
    if _stored_size(name) != len(data):
        default_storage.save(name, ContentFile(data))
    return digest


def _stored_size(name: str) -> int | None:
    try:
        return int(default_storage.size(name))
    except Exception:  # backends differ in what a missing file raises; writing again is safe
        return None


def _local_storage() -> AtomicFileSystemStorage | None:
    storage = storages["default"]  # the instance behind default_storage
    return storage if isinstance(storage, AtomicFileSystemStorage) else None


def local_blob_root() -> str | None:
    """The local storage's directory, or None when blobs go to a remote store (S3...)."""
    storage = _local_storage()
    return str(storage.location) if storage is not None else None


def store_local_blob(root: str, data: bytes) -> str:
    """``put_blob`` for another process, straight into the local storage at ``root``.

    Not durable yet: the process that commits rows naming the blob passes its digest to
    ``blob_written_elsewhere`` first. Needs no Django settings.
    """
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(root, blob_name(digest))
    try:
        size: int | None = os.path.getsize(path)
    except OSError:
        size = None
    if size != len(data):
        write_atomic(path, [data], sync=False)
    return digest


def blob_written_elsewhere(sha256: str) -> None:
    """Take over durability of a blob ``store_local_blob`` wrote in another process."""
    storage = _local_storage()
    if storage is None:
        raise RuntimeError("blobs are written by other processes only into the local storage")
    storage.written_elsewhere(blob_name(sha256))


@contextlib.contextmanager
def durable_blobs() -> Iterator[None]:
    """Blobs put in this block are durable when it ends (not necessarily before).

    For the sync engine, which writes a batch of blobs and then commits the rows naming them:
    the local storage then syncs once per batch instead of once per blob.
    """
    storage = _local_storage()
    with storage.deferred_sync() if storage is not None else contextlib.nullcontext():
        yield


def get_blob(sha256: str) -> bytes:
    try:
        return _read(blob_name(sha256))
    except Exception:  # backends differ in what a missing file raises
        legacy = _legacy_blob_name(sha256)
        if not default_storage.exists(legacy):
            raise
        return _read(legacy)


def _read(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        data: bytes = handle.read()
    return data


def has_blob(sha256: str) -> bool:
    return bool(sha256) and (
        default_storage.exists(blob_name(sha256))
        or default_storage.exists(_legacy_blob_name(sha256))
    )
