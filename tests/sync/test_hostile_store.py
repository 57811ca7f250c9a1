"""Hostile mail through the whole store: parsed, threaded and written to PostgreSQL.

``test_mime`` checks that the parser never raises; this checks that what it returns is also
what PostgreSQL takes. Values the parser passed but the database refused (a NUL in an
attachment's type, subjects and ids past the B-tree entry size) once failed the whole batch
on every pass, so the mailbox stopped syncing at that message. Every message here must be
stored as parsed: none cut down by ``sync.ingest``'s last resort.
"""

from __future__ import annotations

import base64
import random

import pytest

from mailweb.blobs import get_blob
from mailweb.models import Message
from sync.ingest import ingest_batch
from tests.sync.test_ingest import item, make_mailbox
from tests.sync.test_mime import ALTERNATIVE, mixed_message

pytestmark = pytest.mark.django_db

# Character ranges: ASCII, CJK (3 bytes in UTF-8), CJK extension B and emoji (4 bytes),
# Cyrillic and Latin-1/Greek-ish two-byte text.
_SCRIPTS = [(0x20, 0x7E), (0x4E00, 0x9FFF), (0x20000, 0x2A6DF), (0x1F300, 0x1F6FF), (0x80, 0x7FF)]
_DATES = [
    "Fri, 31 Dec 9999 23:59:59 -1200",
    "Mon, 1 Jan 0001 00:00:00 +1400",
    "not a date",
    "Tue, 5 Mar 2024 10:15:00 +0000",
]


class _Hostile:
    """Messages with long, wide, damaged or missing headers and parts."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def text(self, longest: int) -> str:
        low, high = self.rng.choice(_SCRIPTS)
        return "".join(
            chr(self.rng.randint(low, high)) for _ in range(self.rng.randint(0, longest))
        )

    def encoded(self, longest: int) -> str:
        words = (self.text(20).encode() for _ in range(self.rng.randint(1, longest // 20)))
        return " ".join(f"=?utf-8?b?{base64.b64encode(w).decode()}?=" for w in words)

    def message(self) -> bytes:
        kind = self.rng.randrange(6)
        if kind == 0:  # a real message with damaged bytes
            mutated = bytearray(self.rng.choice([ALTERNATIVE, mixed_message()]))
            for _ in range(self.rng.randint(1, 60)):
                mutated[self.rng.randrange(len(mutated))] = self.rng.choice(
                    b"\x00\r\n:;<>=?\"'-\xff\x80 "
                )
            return bytes(mutated)
        if kind == 1:
            return self.rng.randbytes(self.rng.randint(0, 4000))
        headers = {
            "From": f"{self.text(3000)} <{self.text(400)}@{self.text(300)}>",
            "To": ", ".join(f"{self.text(50)} <{self.text(80)}@x.example>" for _ in range(200)),
            "Subject": self.text(6000) if kind == 2 else self.encoded(4000),
            "Message-ID": f"<{self.text(3000)}>",
            "In-Reply-To": f"<{self.text(3000)}>",
            "References": " ".join(f"<{self.text(300)}>" for _ in range(self.rng.randint(0, 50))),
            "Date": self.rng.choice([*_DATES, self.text(40)]),
        }
        lines = [f"{name}: {value}" for name, value in headers.items() if self.rng.random() < 0.9]
        if kind == 5:
            lines.append("Content-Type: multipart/mixed; boundary=zz")
            body = "".join(self.part() for _ in range(self.rng.randint(1, 5))) + "--zz--\r\n"
        else:
            lines.append(f"Content-Type: text/plain; charset={self.text(20)}")
            body = self.text(20000)
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogatepass")

    def part(self) -> str:
        ctype = self.rng.choice(["application/pdf", "text/html", self.text(30)])
        return (
            f"--zz\r\nContent-Type: {ctype}; name*=utf-8''{self.text(900)}\r\n"
            f"Content-ID: <{self.text(2000)}>\r\n"
            f'Content-Disposition: attachment; filename="{self.text(900)}"\r\n\r\n'
            f"{self.text(3000)}\r\n"
        )


@pytest.mark.parametrize("seed", [7, 11])
def test_hostile_messages_are_all_stored_as_parsed(seed: int) -> None:
    mailbox, inbox, _ = make_mailbox(f"hostile-{seed}@example.com")
    hostile = _Hostile(seed)
    raws = [hostile.message() for _ in range(150)]
    for start in range(0, len(raws), 25):
        batch = [
            item(raw, inbox, uid) for uid, raw in enumerate(raws[start : start + 25], start + 1)
        ]
        assert all(created for _, created in ingest_batch(mailbox, batch))
    stored = Message.objects.filter(mailbox=mailbox).order_by("uid")
    assert [row.uid for row in stored] == list(range(1, len(raws) + 1))
    assert not stored.filter(parse_error__contains="the database refused").exists()
    assert [get_blob(row.raw_sha256) for row in stored] == raws
