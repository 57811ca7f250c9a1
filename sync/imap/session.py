"""What a logged-in IMAP session offers, and selecting folders.

Capabilities are read from the server after login and used only when offered: Exchange Online
has none of CONDSTORE, QRESYNC or SPECIAL-USE, Dovecot has them all, and the engine works with
either. ``prepare_session`` turns on CONDSTORE/QRESYNC where they exist, so that SELECT reports
HIGHESTMODSEQ and FETCH can ask for changes since a MODSEQ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

log = logging.getLogger(__name__)

__all__ = ["Capabilities", "FolderStatus", "FolderUnavailable", "prepare_session", "select"]


class FolderUnavailable(Exception):
    """SELECT failed: the folder was deleted or renamed on the server, or is not selectable."""


@dataclass(frozen=True)
class Capabilities:
    """The extensions the engine can use on this connection."""

    condstore: bool = False
    qresync: bool = False
    special_use: bool = False
    move: bool = False
    uidplus: bool = False
    idle: bool = False
    enable: bool = False
    raw: tuple[str, ...] = ()

    @classmethod
    def from_list(cls, capabilities: tuple[bytes, ...] | list[bytes]) -> Capabilities:
        names = {bytes(c).upper().decode("ascii", "replace") for c in capabilities}
        return cls(
            condstore="CONDSTORE" in names or "QRESYNC" in names,
            qresync="QRESYNC" in names,
            # XLIST (Gmail's predecessor of SPECIAL-USE) marks folders with the same flags.
            special_use="SPECIAL-USE" in names or "XLIST" in names,
            move="MOVE" in names,
            uidplus="UIDPLUS" in names,
            idle="IDLE" in names,
            enable="ENABLE" in names,
            raw=tuple(sorted(names)),
        )

    def summary(self) -> list[str]:
        """The detected extensions the engine cares about, for logs and the status page."""
        wanted = ("condstore", "qresync", "special_use", "move", "uidplus", "idle")
        return [name.upper().replace("_", "-") for name in wanted if getattr(self, name)]


@dataclass(frozen=True)
class FolderStatus:
    """What SELECT/EXAMINE reported."""

    name: str
    uidvalidity: int
    uidnext: int | None
    exists: int
    highestmodseq: int | None


def prepare_session(client: IMAPClient) -> Capabilities:
    """Detect capabilities after login and enable CONDSTORE/QRESYNC when offered.

    Falls back to the plain-UID code paths (``condstore=False``) if enabling fails, so a server
    that advertises more than it delivers is still synced correctly.
    """
    capabilities = Capabilities.from_list(client.capabilities())
    if not capabilities.condstore:
        return capabilities
    try:
        if capabilities.enable:
            wanted = "QRESYNC" if capabilities.qresync else "CONDSTORE"
            enabled = {bytes(e).upper() for e in client.enable(wanted)}
            if capabilities.qresync and b"QRESYNC" not in enabled:
                capabilities = _without(capabilities, qresync=True)
                if b"CONDSTORE" not in enabled:
                    client.enable("CONDSTORE")
        else:
            # STATUS ... (HIGHESTMODSEQ) is a "CONDSTORE enabling command" (RFC 7162 3.1); QRESYNC
            # cannot be used without ENABLE.
            client.folder_status("INBOX", ["HIGHESTMODSEQ"])
            capabilities = _without(capabilities, qresync=True)
    except IMAPClientError as exc:
        log.warning("server advertised CONDSTORE but enabling it failed (%s); not using it", exc)
        capabilities = _without(capabilities, condstore=True, qresync=True)
    return capabilities


def _without(capabilities: Capabilities, **off: bool) -> Capabilities:
    values = {name: getattr(capabilities, name) for name in capabilities.__dataclass_fields__}
    for name in off:
        values[name] = False
    return Capabilities(**values)


def select(client: IMAPClient, name: str, *, readonly: bool = True) -> FolderStatus:
    """EXAMINE (or SELECT) ``name``; raises ``FolderUnavailable`` when the server says NO."""
    try:
        response = client.select_folder(name, readonly=readonly)
    except IMAPClientError as exc:
        if isinstance(exc, IMAPClient.AbortError):
            raise
        raise FolderUnavailable(f"cannot open folder {name!r}: {exc}") from None
    uidvalidity = response.get(b"UIDVALIDITY")
    if uidvalidity is None:
        raise FolderUnavailable(f"folder {name!r} has no UIDVALIDITY")
    modseq = response.get(b"HIGHESTMODSEQ")
    return FolderStatus(
        name=name,
        uidvalidity=int(uidvalidity),
        uidnext=int(response[b"UIDNEXT"]) if b"UIDNEXT" in response else None,
        exists=int(response.get(b"EXISTS", 0)),
        highestmodseq=int(modseq) if modseq else None,
    )
