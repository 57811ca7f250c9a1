"""Admin helpers for :class:`tests.fakes.dovecot.DovecotServer`: change a mailbox behind the
app's back, as another mail client (Outlook, a phone) or the server itself would.

Each helper opens a short IMAP session through Dovecot's master-user login
(``user*mailweb-admin``), so it works for token-only users too and the changes reach the app
through the normal IMAP machinery (IDLE notifications, UIDNEXT, EXPUNGE).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from datetime import datetime

from imapclient import IMAPClient

__all__ = ["MASTER_USER", "DovecotAdmin"]

MASTER_USER = "mailweb-admin"
_APPENDUID = re.compile(rb"APPENDUID \d+ (\d+)")


class DovecotAdmin:
    """Mixin: needs ``connect()``, ``master_password`` and ``doveadm()`` from the server."""

    master_password: str

    def connect(self, *, timeout: float = 10) -> IMAPClient:
        raise NotImplementedError

    def doveadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    @contextlib.contextmanager
    def admin(self, user: str) -> Iterator[IMAPClient]:
        """An IMAP session as ``user`` through the master login (no token or password needed)."""
        client = self.connect()
        try:
            client.login(f"{user}*{MASTER_USER}", self.master_password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def append(
        self,
        user: str,
        folder: str,
        raw: bytes,
        flags: Iterable[str | bytes] = (),
        msg_time: datetime | None = None,
    ) -> int:
        """Deliver ``raw`` into ``folder``; returns the new UID (from UIDPLUS APPENDUID)."""
        with self.admin(user) as imap:
            reply = imap.append(folder, raw, flags=tuple(flags), msg_time=msg_time)
        match = _APPENDUID.search(reply if isinstance(reply, bytes) else str(reply).encode())
        assert match, reply
        return int(match.group(1))

    def expunge(self, user: str, folder: str, uid: int | Iterable[int]) -> None:
        uids = [uid] if isinstance(uid, int) else list(uid)
        with self.admin(user) as imap:
            imap.select_folder(folder)
            imap.add_flags(uids, [b"\\Deleted"], silent=True)
            imap.uid_expunge(uids)

    def set_flags(
        self, user: str, folder: str, uid: int | Iterable[int], flags: Iterable[str | bytes]
    ) -> None:
        """Replace the flags of the messages (``\\Seen``, ``\\Flagged``, keywords ...)."""
        uids = [uid] if isinstance(uid, int) else list(uid)
        with self.admin(user) as imap:
            imap.select_folder(folder)
            imap.set_flags(uids, list(flags), silent=True)

    def flags(self, user: str, folder: str) -> dict[int, tuple[bytes, ...]]:
        with self.admin(user) as imap:
            imap.select_folder(folder, readonly=True)
            uids = imap.search("ALL")
            data = imap.fetch(uids, ["FLAGS"]) if uids else {}
        return {uid: tuple(item[b"FLAGS"]) for uid, item in data.items()}

    def move(self, user: str, folder: str, uid: int, destination: str) -> int:
        """Move one message; returns its UID in ``destination``.

        imaplib drops the tagged ``COPYUID`` text of UID commands, so the new UID is taken
        from the destination's UIDNEXT just before the copy (tests have no other writer).
        """
        with self.admin(user) as imap:
            new_uid = int(imap.folder_status(destination, [b"UIDNEXT"])[b"UIDNEXT"])
            imap.select_folder(folder)
            imap.copy([uid], destination)
            imap.add_flags([uid], [b"\\Deleted"], silent=True)
            imap.uid_expunge([uid])
        return new_uid

    def uids(self, user: str, folder: str) -> list[int]:
        with self.admin(user) as imap:
            imap.select_folder(folder, readonly=True)
            return sorted(imap.search("ALL"))

    def uidvalidity(self, user: str, folder: str) -> int:
        with self.admin(user) as imap:
            return int(imap.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def create_folder(self, user: str, folder: str) -> None:
        with self.admin(user) as imap:
            imap.create_folder(folder)

    def delete_folder(self, user: str, folder: str) -> None:
        with self.admin(user) as imap:
            imap.delete_folder(folder)

    def reset_uidvalidity(self, user: str, folder: str, *, renumber: bool = True) -> int:
        """Give ``folder`` a new UIDVALIDITY, as when a server rebuilds its index.

        With ``renumber`` the messages also get new UIDs (copied within the folder, originals
        expunged), so a client that ignored UIDVALIDITY would see duplicates and stale UIDs.
        Returns the new UIDVALIDITY.
        """
        if renumber:
            old = self.uids(user, folder)
            if old:
                with self.admin(user) as imap:
                    imap.select_folder(folder)
                    imap.copy(old, folder)
                    imap.add_flags(old, [b"\\Deleted"], silent=True)
                    imap.uid_expunge(old)
        new = max(self.uidvalidity(user, folder) + 1, int(time.time()))
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)
        return new
