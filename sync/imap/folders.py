"""Finding a mailbox's folders and what each one is for.

Roles come from SPECIAL-USE flags (RFC 6154) when the server offers them, else from the names
Exchange Online and other servers use ("Sent Items", "Deleted Items", "Junk Email", ...).
Which folders are synced is the mailbox's ``folders_to_sync`` (roles or folder names); empty
means Inbox, Sent and Archive.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from imapclient import IMAPClient

from mailweb.models import Folder
from sync.imap.session import Capabilities

__all__ = [
    "DEFAULT_SYNCED_ROLES",
    "ListedFolder",
    "list_server_folders",
    "role_from_flags",
    "role_from_name",
    "wanted_folders",
]

log = logging.getLogger(__name__)

Role = Folder.Role
DEFAULT_SYNCED_ROLES = (Role.INBOX, Role.SENT, Role.ARCHIVE)
_MAX_NAME = Folder._meta.get_field("name").max_length or 500

_FLAG_ROLES = {
    b"\\SENT": Role.SENT,
    b"\\ARCHIVE": Role.ARCHIVE,
    b"\\TRASH": Role.TRASH,
    b"\\JUNK": Role.JUNK,
    b"\\SPAM": Role.JUNK,  # XLIST
    b"\\DRAFTS": Role.DRAFTS,
    b"\\INBOX": Role.INBOX,  # XLIST
}
# Exchange Online's names first, then other common servers' (compared case-insensitively, on the
# last path segment, so "INBOX.Sent" on Courier-style servers is found too).
_NAME_ROLES: dict[str, Folder.Role] = {
    "sent items": Role.SENT,
    "sent": Role.SENT,
    "sent messages": Role.SENT,
    "sent mail": Role.SENT,
    "deleted items": Role.TRASH,
    "trash": Role.TRASH,
    "deleted messages": Role.TRASH,
    "junk email": Role.JUNK,
    "junk e-mail": Role.JUNK,
    "junk": Role.JUNK,
    "spam": Role.JUNK,
    "archive": Role.ARCHIVE,
    "archives": Role.ARCHIVE,
    "drafts": Role.DRAFTS,
}
_UNSELECTABLE = {b"\\NOSELECT", b"\\NONEXISTENT"}


@dataclass(frozen=True)
class ListedFolder:
    name: str
    role: str
    flags: tuple[bytes, ...]


def role_from_flags(flags: Iterable[bytes]) -> str | None:
    for flag in flags:
        role = _FLAG_ROLES.get(bytes(flag).upper())
        if role:
            return role
    return None


def role_from_name(name: str, delimiter: str | None) -> str | None:
    if name.upper() == "INBOX":
        return Role.INBOX
    segments = name.split(delimiter) if delimiter else [name]
    # Only top-level folders or direct children of INBOX count: "Projects/Archive" is not the
    # Archive.
    if len(segments) > 2 or (len(segments) == 2 and segments[0].upper() != "INBOX"):
        return None
    return _NAME_ROLES.get(segments[-1].strip().lower())


def list_server_folders(client: IMAPClient, capabilities: Capabilities) -> list[ListedFolder]:
    """Every selectable folder with its role; at most one folder per role (flags win).

    A folder whose path is longer than a stored name can be (deep trees of long names) is
    left out with a warning: storing it failed the whole listing, so nothing synced.
    """
    listed = []
    too_long = 0
    for flags, delimiter, name in client.list_folders():
        upper = {bytes(flag).upper() for flag in flags}
        if upper & _UNSELECTABLE:
            continue
        folder_name = name if isinstance(name, str) else bytes(name).decode("utf-8", "replace")
        if len(folder_name) > _MAX_NAME or "\x00" in folder_name:
            too_long += 1
            continue
        sep = delimiter.decode() if isinstance(delimiter, bytes) else delimiter
        listed.append((folder_name, tuple(bytes(f) for f in flags), sep))

    taken: dict[str, str] = {}
    if capabilities.special_use:
        for name, flags, _ in listed:
            role = role_from_flags(flags)
            if role and role not in taken:
                taken[role] = name
    # Names fill the roles flags did not; the order of _NAME_ROLES decides ties ("Sent Items"
    # beats "Sent", as on Exchange).
    by_name: dict[str, list[tuple[int, str]]] = {}
    ranks = {key: index for index, key in enumerate(_NAME_ROLES)}
    for name, _, sep in listed:
        role = role_from_name(name, sep)
        if role == Role.INBOX:
            taken.setdefault(Role.INBOX, name)
        elif role:
            segment = name.split(sep)[-1].strip().lower() if sep else name.lower()
            by_name.setdefault(role, []).append((ranks.get(segment, 99), name))
    for role, candidates in by_name.items():
        if role not in taken:
            taken[role] = min(candidates)[1]
    roles = {name: role for role, name in taken.items()}
    if too_long:
        log.warning("left out %d folder(s) whose names are over %d characters", too_long, _MAX_NAME)
    return [ListedFolder(name, roles.get(name, Role.OTHER), flags) for name, flags, _ in listed]


def wanted_folders(folders_to_sync: Iterable[str] | None) -> tuple[set[str], set[str]]:
    """(roles, lower-cased names) the mailbox wants synced; defaults to Inbox, Sent, Archive."""
    entries = [str(entry).strip() for entry in (folders_to_sync or []) if str(entry).strip()]
    if not entries:
        return {str(role) for role in DEFAULT_SYNCED_ROLES}, set()
    known_roles = {str(role) for role in Role if role != Role.OTHER}
    roles = {entry.lower() for entry in entries if entry.lower() in known_roles}
    names = {entry.lower() for entry in entries if entry.lower() not in known_roles}
    return roles, names
