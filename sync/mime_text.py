"""Decoding helpers for ``sync.mime``: charsets the way browsers read them, text scrubbing, and
a collector for the problems found while parsing (reported, never raised).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from typing import Any, TypeVar

_MAX_ERROR = 500
_T = TypeVar("_T")
_D = TypeVar("_D")


SURROGATES = re.compile("[\udc80-\udcff]+")
_ANY_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_UNSTORABLE = re.compile(f"{_CONTROL.pattern}|{_ANY_SURROGATE.pattern}")  # either of them
_CHARSET_ALIASES = {
    "x-unknown": "", "unknown-8bit": "", "unknown": "", "x-user-defined": "cp1252",
    "us-ascii": "ascii", "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
    "windows-874": "cp874", "iso-8859-8-i": "iso-8859-8", "macintosh": "mac_roman",
    "x-mac-roman": "mac_roman", "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
    "euc-cn": "gb18030", "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "shift_jis": "cp932",
    "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "iso-2022-jp": "iso2022_jp_ext",
    "big5": "big5hkscs", "utf8": "utf-8", "unicode-1-1-utf-7": "utf-7",
}  # fmt: skip
_UNSAFE_CODECS = {"unicode_escape", "raw_unicode_escape", "undefined"}


def _codec(label: str) -> str | None:
    """Map a declared charset to a Python text codec name, or None if there is none."""
    label = _CHARSET_ALIASES.get(label, label)
    if not label:
        return None
    try:
        info = codecs.lookup(label)
    except Exception:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _UNSAFE_CODECS:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str]:
    """Decode with the declared charset, then UTF-8, then a lossy fallback; (text, problem)."""
    label = (charset or "").strip().strip("\"'").lower()
    codec = _codec(label) if label else None
    problem = f"unknown charset {label[:40]!r}" if label and codec is None else ""
    for name in (codec, "utf-8"):
        if name:
            try:
                return data.decode(name), problem
            except (UnicodeError, LookupError):
                continue
    if not problem and data:
        problem = f"undecodable bytes for charset {label or 'utf-8'!r}"
    lossy = codec if codec and codec != "ascii" else "cp1252"
    try:
        return data.decode(lossy, "replace"), problem
    except Exception:
        return data.decode("latin-1"), problem


def scrub(text: str) -> str:
    """Make a string storable: no NULs or stray control characters, no lone surrogates."""
    if not _UNSTORABLE.search(text):  # the usual case: one scan instead of two substitutions
        return text
    return _ANY_SURROGATE.sub("\ufffd", _CONTROL.sub("", text))


def fit_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary.

    For values PostgreSQL keeps in a B-tree index, whose entries must fit in a third of a page
    (2,704 bytes): a character limit alone lets four-byte characters overflow it, and such a
    row then fails the whole batch it is in.
    """
    if len(text) * 4 <= limit:  # the usual case: cannot be too long, no encoding needed
        return text
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def collapse(text: str) -> str:
    """Single-space a header-ish value: folding and tabs carry no meaning there."""
    return " ".join(text.split())


def safe_call(call: Callable[[], _T], default: _D) -> _T | _D:
    """Call a stdlib accessor that is documented not to raise, but does on hostile input."""
    try:
        return call()
    except Exception:
        return default


def describe_defect(defect: Any) -> str:
    """A short readable phrase for an email.errors defect."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", type(defect).__name__.removesuffix("Defect"))
    detail = str(defect)
    return (detail if detail and len(detail) < 100 else words).lower()


class Problems:
    """Collects short, de-duplicated problem descriptions."""

    def __init__(self) -> None:
        self.items: dict[str, None] = {}

    def add(self, text: str) -> None:
        if text:
            self.items[scrub(text)] = None

    def __str__(self) -> str:
        joined = "; ".join(self.items)
        return joined if len(joined) <= _MAX_ERROR else joined[: _MAX_ERROR - 1] + "…"
