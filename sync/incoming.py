"""What ingestion works on: a message as a provider hands it over, and as prepared for storing.

Shared by ``sync.ingest`` (which prepares and stores batches), ``sync.threads`` (which decides
the conversation each message joins) and ``sync.message_rows`` (which writes the rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mailweb.models import Folder
from sync.mime import ParsedMessage


@dataclass(frozen=True)
class ProviderKey:
    """Where a message lives on the server: IMAP (folder, uidvalidity, uid) or a Graph id."""

    folder: Folder | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    graph_id: str = ""

    def identity(self) -> tuple[object, ...] | None:
        if self.uid is not None and self.folder is not None:
            return ("imap", self.folder.pk, self.uidvalidity, self.uid)
        if self.graph_id:
            return ("graph", self.graph_id)
        return None


@dataclass(frozen=True)
class ServerState:
    """Per-copy state reported by the server."""

    seen: bool = False
    flagged: bool = False
    answered: bool = False
    draft: bool = False
    received_at: datetime | None = None
    modseq: int | None = None


@dataclass(frozen=True)
class IncomingMessage:
    raw: bytes
    key: ProviderKey
    state: ServerState = field(default_factory=ServerState)


@dataclass
class PreparedMessage:
    """An incoming message whose blobs are written and which is parsed: ready to thread."""

    item: IncomingMessage
    raw_sha256: str
    parsed: ParsedMessage
    attachment_blobs: list[str]
    received_at: datetime
    participants: set[str]
    addresses_text: str

    @property
    def message_id(self) -> str:
        return self.parsed.message_id[:998]


def participants_of(parsed: ParsedMessage) -> set[str]:
    """The addresses a message is from or to, for the guarded subject match."""
    return {parsed.from_address, *(address for _, address in parsed.to + parsed.cc)} - {""}


def addresses_text(parsed: ParsedMessage) -> str:
    """Every name and address of the message in one searchable string."""
    pairs = [(parsed.from_name, parsed.from_address), *parsed.to, *parsed.cc, *parsed.reply_to]
    return " ".join(f"{name} {address}".strip() for name, address in pairs)[:10000]
