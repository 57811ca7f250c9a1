"""Top-level header reading for ``sync.mime``: each header through its own fallback, with sizes
capped first because the standard library's header parser is super-linear on huge values.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email
import email.errors
import email.header
import email.utils
import functools
import re
from email import policy
from email.message import Message
from typing import Any

from sync.mime_text import (
    SURROGATES,
    Problems,
    collapse,
    decode_bytes,
    describe_defect,
    fit_bytes,
    safe_call,
    scrub,
)

MAX_SUBJECT = 4 * 1024
_MAX_ADDRESS_HEADER = 32 * 1024
# The strict parser's share of that: its time grows faster than the list. In obsolete route
# syntax ("<@a,@a,...:x@y>") a 48 KB header took 1.8 s, a message with four of them 7.3 s; with
# at most this much of a list the fast path does not understand (still some 150 addresses
# with comments or quoted names) read strictly, that message takes 0.9 s.
_MAX_STRICTLY_PARSED = 8 * 1024
MAX_ID_HEADER = 64 * 1024
MAX_ID = 998  # bytes in UTF-8: RFC 5322's line limit, and well inside a B-tree index entry
MAX_REFERENCES = 200
_UTC = dt.UTC


class Headers:
    """Reads top-level headers from their raw values, each through its own fallback."""

    def __init__(self, msg: Message, hint: str | None, problems: Problems) -> None:
        self.raw: dict[str, list[str]] = {}
        for name, value in safe_call(lambda: list(msg.raw_items()), []):
            unfolded = re.sub(r"\r?\n", "", str(value))
            self.raw.setdefault(str(name).lower(), []).append(unfolded)
        self.hint = hint
        self.problems = problems

    def first(self, name: str) -> str:
        return self.raw.get(name, [""])[0]

    def unsurrogate(self, value: str) -> str:
        """Turn raw 8-bit header bytes (surrogate-escaped) into text: UTF-8, else body charset."""
        if not SURROGATES.search(value):
            return value
        try:
            return value.encode("utf-8", "surrogateescape").decode("utf-8")
        except UnicodeError:
            self.problems.add("non-UTF-8 bytes in headers")

        def decode(match: re.Match[str]) -> str:
            return decode_bytes(match.group().encode("utf-8", "surrogateescape"), self.hint)[0]

        return SURROGATES.sub(decode, value)

    def text(self, name: str, limit: int = MAX_SUBJECT) -> str:
        """An unstructured header (RFC 2047 decoded); legacy decoding if the parser breaks."""
        value = self.unsurrogate(self.first(name)[:limit])
        if value.isascii() and value.isprintable() and "=?" not in value:
            return collapse(value)  # what the parser would return, without running it
        try:
            header = _header_class(name)(name, value)
            self._defects(name, header.defects)
            return self.unsurrogate(collapse(str(header)))
        except Exception:
            self.problems.add(f"{name.title()}: unparseable")
            return collapse(decode_words(value))

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(name, lower-cased address) pairs from every occurrence of an address header."""
        found: list[tuple[str, str]] = []
        for raw in self.raw.get(name, []):
            value = self.unsurrogate(raw)
            if len(value) > _MAX_ADDRESS_HEADER:
                cut = value.rfind(",", 0, _MAX_ADDRESS_HEADER)
                value = value[: cut if cut > 0 else _MAX_ADDRESS_HEADER]
                self.problems.add(f"{name.title()}: too long, truncated")
            found.extend(self._address_list(name, value))
        return [(collapse(self.unsurrogate(n)), a.strip().lower()) for n, a in found]

    def _address_list(self, name: str, value: str) -> list[tuple[str, str]]:
        """Strict parse first; the lenient legacy parser when the strict one finds nothing usable.

        The strict parser raises on inputs like "bad@" and drops everything after a missing
        comma; real mail has both.
        """
        simple = _simple_address_list(value)
        if simple is not None:
            return simple
        if len(value) > _MAX_STRICTLY_PARSED:
            cut = value.rfind(",", 0, _MAX_STRICTLY_PARSED)
            value = value[: cut if cut > 0 else _MAX_STRICTLY_PARSED]
            self.problems.add(f"{name.title()}: too long to read whole, truncated")
        try:
            header: Any = _header_class(name)(name, value)
            modern = [(a.display_name, a.addr_spec) for a in header.addresses]
            self._defects(name, header.defects)
        except Exception:
            modern = []
            self.problems.add(f"{name.title()}: unparseable address list")
        if "@" not in "".join(a for _, a in modern) and "@" in value:
            pairs = safe_call(lambda: email.utils.getaddresses([value]), [])
            legacy = [(decode_words(n), a) for n, a in pairs if "@" in a]
            if legacy:
                return legacy
        return [(n, a) for n, a in modern if a or n]

    def _defects(self, name: str, defects: Any) -> None:
        for defect in defects:
            if not isinstance(defect, email.errors.ObsoleteHeaderDefect):
                self.problems.add(f"{name.title()}: {describe_defect(defect)}")

    def ids(self, name: str) -> list[str]:
        """Message ids in order, de-duplicated, without <> or whitespace (clients fold them).

        8-bit ids are decoded like other headers (UTF-8 per RFC 6532): replacing their bytes
        with U+FFFD would give different ids of the same shape the same value, and thread
        unrelated mail together.
        """
        value = self.unsurrogate(" ".join(self.raw.get(name, []))[:MAX_ID_HEADER])
        found = re.findall(r"<([^<>]*)>", value) or [t for t in value.split() if "@" in t]
        return list(dict.fromkeys(i for i in (clean_id(i) for i in found) if i))


def clean_id(value: str) -> str:
    """A message id as stored: no whitespace or angle brackets, at most ``MAX_ID`` bytes."""
    return fit_bytes("".join(scrub(value).split()).strip("<>"), MAX_ID)


@functools.cache
def _header_class(name: str) -> Any:
    """``policy.default``'s class for a header (its registry builds a new class per lookup)."""
    registry: Any = policy.default.header_factory
    return registry[name]


# The everyday forms of an address list, which the strict parser reads the same way but about
# twenty times slower: "local@domain", "Name <local@domain>" (the name may hold RFC 2047
# encoded words) and '"Any, name" <local@domain>', ASCII, comma-separated; anything else
# (comments, groups, obsolete syntax, encoded words in quotes) goes to the parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_SIMPLE_ADDRESS = re.compile(
    rf"""[ \t]*(?:
        (?:"(?P<quoted>[^"\\\r\n]*)"|(?P<plain>[A-Za-z0-9_'!*+/=?. -]*?))
        [ \t]*<(?P<bracketed>{_ADDR_SPEC})>
        | (?P<bare>{_ADDR_SPEC})
    )[ \t]*(?:,|$)""",
    re.X,
)
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_'-]+")
_ENCODED_WORD = re.compile(r"=\?([A-Za-z0-9_-]+)\?([BbQq])\?([A-Za-z0-9!*+/=_-]*)\?=")
_Q_ESCAPE = re.compile(rb"=([A-Fa-f0-9]{2})")
_BAD_Q_ESCAPE = re.compile(r"=(?![A-Fa-f0-9]{2})")


def _simple_address_list(value: str) -> list[tuple[str, str]] | None:
    """(display name, address) pairs if ``value`` is a plain list, else None."""
    if not value.strip():
        return None
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(value):
        match = _SIMPLE_ADDRESS.match(value, position)
        if match is None or match.end() == position:
            return None
        if match["bare"]:
            found.append(("", match["bare"]))
        else:
            quoted = match["quoted"]
            name = quoted if quoted is not None else _plain_phrase(match["plain"] or "")
            if name is None or (quoted is not None and "=?" in quoted):
                return None
            found.append((name, match["bracketed"]))
        position = match.end()
    return found


def _plain_phrase(phrase: str) -> str | None:
    """A display name of plain words and encoded words, decoded; None for anything else.

    Words are joined by one space, encoded or not: that is what the strict address parser of
    the Python versions we run returns (it keeps the space between adjacent encoded words).
    """
    words: list[str] = []
    for token in phrase.split():
        if _PLAIN_WORD.fullmatch(token):
            words.append(token)
            continue
        encoded = _ENCODED_WORD.fullmatch(token)
        if encoded is None:
            return None
        charset, encoding, payload = encoded.groups()
        try:
            if encoding in "Bb":  # only canonical base64: the parser reports anything else
                data = binascii.a2b_base64(payload.encode("ascii"), strict_mode=True)
            elif _BAD_Q_ESCAPE.search(payload):
                return None
            else:
                data = _Q_ESCAPE.sub(
                    lambda m: bytes.fromhex(m[1].decode("ascii")),
                    payload.encode("ascii").replace(b"_", b" "),
                )
            text = data.decode(charset)
        except (binascii.Error, LookupError, UnicodeError):  # the parser reports these
            return None
        if not text.isprintable():
            return None
        words.append(text)
    return " ".join(words)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words the lenient legacy way (used when the strict parser fails)."""
    try:
        chunks = email.header.decode_header(value)
    except Exception:
        return value
    out = []
    for chunk, charset in chunks:
        out.append(decode_bytes(chunk, charset)[0] if isinstance(chunk, bytes) else chunk)
    return "".join(out)


def parse_date(value: str) -> dt.datetime | None:
    """RFC 5322 date (or ISO 8601, which some tools write) as an aware UTC datetime."""
    value = value.strip()[:200]
    if not value:
        return None
    parsed: dt.datetime | None = safe_call(lambda: email.utils.parsedate_to_datetime(value), None)
    if parsed is None:
        parsed = safe_call(lambda: dt.datetime.fromisoformat(value), None)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_UTC)
    return safe_call(lambda: parsed.astimezone(_UTC), None)
