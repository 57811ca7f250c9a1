"""Local blob storage whose writes are atomic.

Django's FileSystemStorage writes in place, so a worker killed mid-write would leave a truncated
file under the final name, and content addressing would then trust it forever. Here bytes go to
a temporary file in the same directory, are fsynced, and are renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from django.core.files.base import File
from django.core.files.storage import FileSystemStorage


class AtomicFileSystemStorage(FileSystemStorage):
    def _save(self, name: str, content: File[Any]) -> str:
        full_path = self.path(name)
        directory = os.path.dirname(full_path)
        os.makedirs(directory, exist_ok=True)
        handle, temp_path = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in content.chunks():
                    out.write(chunk if isinstance(chunk, bytes) else chunk.encode())
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp_path, 0o640)
            os.replace(temp_path, full_path)
        except BaseException:
            if os.path.exists(temp_path):
                os.unlink(temp_path)
            raise
        return name.replace("\\", "/")

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        """Content-addressed names never collide with different bytes: overwrite in place."""
        return name
