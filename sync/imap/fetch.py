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
from datetime import datetime, timedelta, timezone
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
    responses: Iterable[dict[bytes, Any]] | None = _simple_responses(data)
    for values in responses if responses is not None else _general_responses(data):
        uid = values.get(b"UID")
        if uid is None:
            continue  # unsolicited FETCH (a flag change by another client) without a UID
        message = messages.get(int(uid)) or FetchedMessage(uid=int(uid))
        messages[message.uid] = message
        for key, value in values.items():
            _apply(message, key, value)
    return messages


def _general_responses(data: list[Any]) -> Iterator[dict[bytes, Any]]:
    """Each FETCH response's attributes, by imapclient's parser (any response it reads)."""
    response = gen_parsed_response(data)
    for _seq in response:
        attributes = next(response)
        if not isinstance(attributes, tuple) or len(attributes) % 2:
            continue
        yield {
            bytes(attributes[i]).upper(): attributes[i + 1] for i in range(0, len(attributes), 2)
        }


# The responses an initial sync reads by the thousand: "<seq> (<items>)", or, with a message
# body, "<seq> (<items> BODY[] {<size>}" + the literal + "<items>)" (Dovecot puts the body
# last, other servers may not). Items are the few the engine asks for, in any order, each with
# a value of one fixed shape. One pattern for an item: its groups serve ``_read_items``.
_ITEM = rb'(UID|RFC822\.SIZE) (\d+)|(FLAGS) \(([^()]*)\)|(INTERNALDATE) "([^"]*)"|MODSEQ \((\d+)\)'
_SIMPLE_ITEM = re.compile(_ITEM, re.I)
_SIMPLE_HEAD = re.compile(
    rb"\d+ \((?P<items>(?:(?:%s) )*)"
    rb"(?:(?P<body>BODY\[\]|RFC822) \{(?P<size>\d+)\}|(?P<last>%s)\))\Z" % (_ITEM, _ITEM),
    re.I,
)
_SIMPLE_TAIL = re.compile(rb"(?P<items>(?: (?:%s))*)\)\Z" % _ITEM, re.I)


def _simple_responses(data: list[Any]) -> list[dict[bytes, Any]] | None:
    """The FETCH responses in ``data`` read with regular expressions, or None.

    imapclient's general parser tokenizes every response byte by byte in Python, which cost
    an initial sync about 0.08 ms per message, in the thread that also feeds the parse
    processes. This reads only the common shapes (``_SIMPLE_HEAD``) and gives up at the first
    response of any other shape, so that the general parser reads them all instead. Values
    come out as the general parser returns them.
    """
    responses: list[dict[bytes, Any]] = []
    index, count = 0, len(data)
    while index < count:
        item, literal, tail = data[index], None, None
        index += 1
        if isinstance(item, tuple):
            rest = data[index] if index < count else None
            tail = _SIMPLE_TAIL.match(rest) if isinstance(rest, bytes) else None
            if len(item) != 2 or tail is None:
                return None
            (item, literal), index = item, index + 1
        head = _SIMPLE_HEAD.match(item) if isinstance(item, bytes) else None
        if head is None or (head["body"] is None) != (literal is None):
            return None
        values: dict[bytes, Any] = {}
        for text in (head["items"], head["last"], tail["items"] if tail else None):
            if text:
                _read_items(text, values)
        if literal is not None:
            if int(head["size"]) != len(literal):
                return None
            values[head["body"].upper()] = literal
        responses.append(values)
    return responses


def _read_items(text: bytes, values: dict[bytes, Any]) -> None:
    """Items that ``_SIMPLE_HEAD`` or ``_SIMPLE_TAIL`` matched, into ``values``."""
    for match in _SIMPLE_ITEM.finditer(text):
        number_key, number, flags_key, flags, date_key, date, modseq = match.groups()
        if number_key is not None:
            values[number_key.upper()] = int(number)
        elif flags_key is not None:
            values[b"FLAGS"] = tuple(flags.split())
        elif date_key is not None:
            values[b"INTERNALDATE"] = date
        else:
            values[b"MODSEQ"] = (int(modseq),)


_MONTHS = {
    name: number
    for number, name in enumerate(b"jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)
}
_DATE_TIME = re.compile(
    rb" ?(\d{1,2})-([a-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z", re.I
)


def _internaldate(value: bytes) -> datetime:
    """An IMAP date-time (RFC 3501 ``date-time``) as an aware datetime, in its own offset."""
    match = _DATE_TIME.match(value)
    month = _MONTHS.get(match.group(2).lower()) if match else None
    if match is None or month is None:
        return parse_to_datetime(value, normalise=False)  # the forms servers get wrong
    day, _, year, hour, minute, second, sign, tz_hours, tz_minutes = match.groups()
    offset = timedelta(hours=int(tz_hours), minutes=int(tz_minutes))
    return datetime(
        int(year),
        month,
        int(day),
        int(hour),
        int(minute),
        int(second),
        tzinfo=timezone(-offset if sign == b"-" else offset),
    )


def _apply(message: FetchedMessage, key: bytes, value: Any) -> None:
    if key == b"FLAGS":
        message.flags = tuple(bytes(flag) for flag in (value or ()))
    elif key == b"INTERNALDATE":
        if value:
            with contextlib.suppress(ValueError):
                message.internaldate = _internaldate(bytes(value))
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
