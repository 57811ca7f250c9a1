"""Content-addressed storage of raw messages and attachments through Django's storage API.

A blob's name is its SHA-256, so the same bytes are stored once however many folders or
mailboxes hold them, and a write can be repeated safely. Rows are written after their blob, so a
crash leaves at worst an orphan file, never a row pointing at missing bytes; local writes are
atomic (``mailweb.storage``), so a blob that exists is whole.
"""

import hashlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


def blob_name(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def put_blob(data: bytes) -> str:
    """Store ``data`` (once) and return its SHA-256 hex digest."""
    digest = hashlib.sha256(data).hexdigest()
    name = blob_name(digest)
    if not default_storage.exists(name):
        default_storage.save(name, ContentFile(data))
    return digest


def get_blob(sha256: str) -> bytes:
    with default_storage.open(blob_name(sha256), "rb") as handle:
        data: bytes = handle.read()
    return data


def has_blob(sha256: str) -> bool:
    return bool(sha256) and default_storage.exists(blob_name(sha256))
