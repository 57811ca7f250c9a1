"""``python -m sync.parse_server``: parses messages for ``sync.parse_pool`` in its own process.

MIME parsing is pure Python and the costliest step of a sync, so the engine spreads it over a
few of these processes. The protocol on stdin/stdout is length-prefixed pickles: the local blob
directory (or None) and a list of raw messages in, the list of ``ParseOutcome`` out
(``sync.parse_work``). The process exits when stdin closes, which also happens when its parent
dies, however it dies. It never touches the database; blobs it writes are made durable by the
parent before it commits rows that name them.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import sys

_HEADER = struct.Struct(">I")
#: Parsing runs ahead of the worker's commits, which are the serial part of a sync. A lower
#: priority lets the commits (and anything else on the machine, such as web requests) go first
#: when the cores are busy, and parsing use what is left: on two cores an initial sync ran
#: about 12 % faster than at equal priority.
NICENESS = 5


def _read_exact(stream: object, size: int) -> bytes | None:
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)  # type: ignore[attr-defined]
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def serve() -> None:
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    # The protocol owns the real stdout; anything printed by accident goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr
    source = sys.stdin.buffer
    from sync.parse_work import parse_and_store

    while True:
        header = _read_exact(source, _HEADER.size)
        if header is None:
            return
        payload = _read_exact(source, _HEADER.unpack(header)[0])
        if payload is None:
            return
        request: tuple[str | None, list[bytes]] = pickle.loads(payload)  # noqa: S301 - our parent
        blob_root, raws = request
        data = pickle.dumps([parse_and_store(raw, blob_root) for raw in raws], protocol=5)
        out.write(_HEADER.pack(len(data)))
        out.write(data)
        out.flush()


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        serve()
