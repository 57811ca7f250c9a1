"""UID sets, UID SEARCH and UID FETCH the way the engine needs them.

imapclient's ``fetch`` turns its id argument into integers to filter the replies, so it cannot
take a range such as ``1:*`` (it raises ``ValueError`` after the command already ran) and a
list of 10,000 UIDs makes a command line longer than servers accept. ``uid_fetch`` sends
compact range sets, keys replies by the UID in each FETCH response (unsolicited FETCHes for
other messages, which carry no UID, are dropped), and collects QRESYNC's VANISHED responses.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from imapclient import IMAPClient
from imapclient.datetime_util import parse_to_datetime
from imapclient.exceptions import IMAPClientError
from imapclient.response_parser import gen_parsed_response

__all__ = [
    "FetchResult",
    "FetchedMessage",
    "compress_uids",
    "parse_uid_set",
    "search_uids",
    "state_from_flags",
    "uid_chunks",
    "uid_fetch",
]

SEEN, FLAGGED, ANSWERED, DRAFT = b"\\SEEN", b"\\FLAGGED", b"\\ANSWERED", b"\\DRAFT"


def compress_uids(uids: Iterable[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1:3,7,9:10"`` (sorted, duplicates dropped)."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    parts: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


_RANGE = re.compile(r"^(\d+)(?::(\d+))?$")


def parse_uid_set(text: str) -> list[int]:
    """``"1:3,7"`` -> ``[1, 2, 3, 7]`` (ranges may be written high:low)."""
    uids: list[int] = []
    for part in text.split(","):
        match = _RANGE.match(part.strip())
        if not match:
            continue
        low = int(match.group(1))
        high = int(match.group(2) or low)
        low, high = min(low, high), max(low, high)
        uids.extend(range(low, high + 1))
    return uids


def uid_chunks(uids: Sequence[int], size: int) -> Iterator[list[int]]:
    """Consecutive slices of ``uids`` with at most ``size`` items each."""
    for start in range(0, len(uids), size):
        yield list(uids[start : start + size])


def search_uids(client: IMAPClient, low: int = 1, high: int | None = None) -> list[int]:
    """Sorted UIDs in ``low:high`` (``high`` None means up to the last message).

    ``UID SEARCH UID n:*`` matches the highest UID even when it is below ``n`` (``*`` is the
    highest UID); such results are filtered out.
    """
    if high is not None and high < low:
        return []
    criteria = ["UID", f"{max(low, 1)}:{high if high is not None else '*'}"]
    found = client.search(criteria)
    return sorted(uid for uid in found if uid >= low and (high is None or uid <= high))


@dataclass
class FetchedMessage:
    """One message's FETCH data, normalised."""

    uid: int
    flags: tuple[bytes, ...] = ()
    internaldate: datetime | None = None
    modseq: int | None = None
    size: int | None = None
    body: bytes | None = None
    header: bytes | None = None


@dataclass
class FetchResult:
    messages: dict[int, FetchedMessage] = field(default_factory=dict)
    vanished: list[int] = field(default_factory=list)


def uid_fetch(
    client: IMAPClient,
    uids: str | Sequence[int],
    items: Sequence[str],
    modifiers: Sequence[str] = (),
) -> FetchResult:
    """``UID FETCH <set> (<items>) [(<modifiers>)]``; the set is a string or a UID list.

    ``items`` are IMAP fetch attributes (``FLAGS``, ``BODY.PEEK[]``, ``MODSEQ``...); ``UID`` is
    always added. VANISHED (EARLIER) responses (QRESYNC) are returned in ``vanished``.
    """
    uid_set = uids if isinstance(uids, str) else compress_uids(uids)
    wanted = ["UID", *[item for item in items if item.upper() != "UID"]]
    imap = client._imap  # imapclient exposes no range FETCH; this mirrors its fetch().
    imap.untagged_responses.pop("VANISHED", None)
    args = ["FETCH", uid_set, "(" + " ".join(wanted) + ")"]
    if modifiers:
        args.append("(" + " ".join(modifiers) + ")")
    tag = imap._command("UID", *args)
    typ, data = imap._command_complete("FETCH", tag)
    if typ != "OK":
        raise IMAPClientError(f"FETCH failed: {_text(data)}")
    typ, data = imap._untagged_response(typ, data, "FETCH")
    result = FetchResult(messages=_parse_fetch(data))
    for line in imap.untagged_responses.pop("VANISHED", None) or []:
        text = _text([line])
        result.vanished.extend(parse_uid_set(text.replace("(EARLIER)", "").strip()))
    return result


def _text(data: list[Any]) -> str:
    first = data[0] if data else b""
    if isinstance(first, tuple):
        first = first[0]
    if isinstance(first, bytes):
        return first.decode("utf-8", "replace")
    return str(first)


def _parse_fetch(data: list[Any]) -> dict[int, FetchedMessage]:
    messages: dict[int, FetchedMessage] = {}
    if not data or data == [None]:
        return messages
    response = gen_parsed_response(data)
    for _seq in response:
        attributes = next(response)
        if not isinstance(attributes, tuple) or len(attributes) % 2:
            continue
        values = {
            bytes(attributes[i]).upper(): attributes[i + 1] for i in range(0, len(attributes), 2)
        }
        uid = values.get(b"UID")
        if uid is None:
            continue  # unsolicited FETCH (a flag change by another client) without a UID
        message = messages.get(int(uid)) or FetchedMessage(uid=int(uid))
        messages[message.uid] = message
        for key, value in values.items():
            _apply(message, key, value)
    return messages


def _apply(message: FetchedMessage, key: bytes, value: Any) -> None:
    if key == b"FLAGS":
        message.flags = tuple(bytes(flag) for flag in (value or ()))
    elif key == b"INTERNALDATE":
        if value:
            with contextlib.suppress(ValueError):
                message.internaldate = parse_to_datetime(bytes(value), normalise=False)
    elif key == b"MODSEQ":
        message.modseq = int(value[0] if isinstance(value, tuple) else value)
    elif key == b"RFC822.SIZE":
        message.size = int(value)
    elif key in (b"BODY[]", b"RFC822"):
        message.body = bytes(value) if value is not None else b""
    elif key.startswith(b"BODY[HEADER"):
        message.header = bytes(value) if value is not None else b""


def state_from_flags(flags: Iterable[bytes]) -> tuple[bool, bool, bool, bool]:
    """(seen, flagged, answered, draft) from an IMAP FLAGS list."""
    upper = {bytes(flag).upper() for flag in flags}
    return SEEN in upper, FLAGGED in upper, ANSWERED in upper, DRAFT in upper
