"""Parsing raw RFC 5322 messages into the fields the store and the inbox need.

Principle 1 of DESIGN.md says a message that does not parse is still stored and shown, so
``parse_message`` never raises: every step has a fallback, and whatever went wrong is described
in ``headers_error`` / ``parse_error`` instead. The standard library parser (``policy.default``)
does the structural work; this module adds the tolerance real mail needs (unknown charsets,
8-bit headers, broken multiparts) and guards against inputs that make the header parser slow.

Pure Python, no Django: tests and workers can call it without settings.
"""

from __future__ import annotations

import codecs
import datetime as dt
import email
import email.errors
import email.header
import email.utils
import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from typing import Any, TypeVar
from urllib.parse import unquote

from mailweb.html_safety import html_to_text, sanitize_html

__all__ = [
    "ParsedAttachment",
    "ParsedMessage",
    "normalize_subject",
    "parse_message",
    "thread_keys",
]

# The stdlib header parser is super-linear: a 100 KB Content-Type takes seconds, 1 MB minutes.
# Headers are therefore cut to these sizes before it sees them.
_MAX_CONTENT_HEADER = 8 * 1024
_MAX_SUBJECT = 4 * 1024
_MAX_ADDRESS_HEADER = 32 * 1024
_MAX_ID_HEADER = 64 * 1024
_MAX_ID = 998
_MAX_REFERENCES = 200
_MAX_PARTS = 1000
_MAX_DEPTH = 30
_MAX_ERROR = 500
_SNIPPET_LENGTH = 200

_UTC = dt.UTC
_T = TypeVar("_T")
_D = TypeVar("_D")


@dataclass(frozen=True)
class ParsedAttachment:
    """One non-body MIME part. ``is_inline`` means "shown inside the HTML through cid:"."""

    filename: str
    content_type: str
    size: int
    content_id: str
    is_inline: bool
    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class ParsedMessage:
    """Everything the store keeps from a message besides its raw bytes. Addresses are lower-case.

    ``headers_error`` describes problems in the top-level headers, ``parse_error`` problems in
    the structure or bodies; both are "" for a clean message.
    """

    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    subject: str = ""
    from_name: str = ""
    from_address: str = ""
    to: list[tuple[str, str]] = field(default_factory=list)
    cc: list[tuple[str, str]] = field(default_factory=list)
    bcc: list[tuple[str, str]] = field(default_factory=list)
    reply_to: list[tuple[str, str]] = field(default_factory=list)
    date: dt.datetime | None = None
    text: str = ""
    html: str = ""
    sanitized_html: str = ""
    snippet: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    has_attachments: bool = False
    headers_error: str = ""
    parse_error: str = ""


# --- text helpers ---------------------------------------------------------------------------

_SURROGATES = re.compile("[\udc80-\udcff]+")
_ANY_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
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


def _scrub(text: str) -> str:
    """Make a string storable: no NULs or stray control characters, no lone surrogates."""
    return _ANY_SURROGATE.sub("\ufffd", _CONTROL.sub("", text))


def _collapse(text: str) -> str:
    """Single-space a header-ish value: folding and tabs carry no meaning there."""
    return " ".join(text.split())


def _safe(call: Callable[[], _T], default: _D) -> _T | _D:
    """Call a stdlib accessor that is documented not to raise, but does on hostile input."""
    try:
        return call()
    except Exception:
        return default


def _describe(defect: Any) -> str:
    """A short readable phrase for an email.errors defect."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", type(defect).__name__.removesuffix("Defect"))
    detail = str(defect)
    return (detail if detail and len(detail) < 100 else words).lower()


class _Problems:
    """Collects short, de-duplicated problem descriptions."""

    def __init__(self) -> None:
        self.items: dict[str, None] = {}

    def add(self, text: str) -> None:
        if text:
            self.items[_scrub(text)] = None

    def __str__(self) -> str:
        joined = "; ".join(self.items)
        return joined if len(joined) <= _MAX_ERROR else joined[: _MAX_ERROR - 1] + "…"


# --- headers --------------------------------------------------------------------------------


class _Headers:
    """Reads top-level headers from their raw values, each through its own fallback."""

    def __init__(self, msg: Message, hint: str | None, problems: _Problems) -> None:
        self.raw: dict[str, list[str]] = {}
        for name, value in _safe(lambda: list(msg.raw_items()), []):
            unfolded = re.sub(r"\r?\n", "", str(value))
            self.raw.setdefault(str(name).lower(), []).append(unfolded)
        self.hint = hint
        self.problems = problems

    def first(self, name: str) -> str:
        return self.raw.get(name, [""])[0]

    def unsurrogate(self, value: str) -> str:
        """Turn raw 8-bit header bytes (surrogate-escaped) into text: UTF-8, else body charset."""
        if not _SURROGATES.search(value):
            return value
        try:
            return value.encode("utf-8", "surrogateescape").decode("utf-8")
        except UnicodeError:
            self.problems.add("non-UTF-8 bytes in headers")

        def decode(match: re.Match[str]) -> str:
            return decode_bytes(match.group().encode("utf-8", "surrogateescape"), self.hint)[0]

        return _SURROGATES.sub(decode, value)

    def text(self, name: str, limit: int = _MAX_SUBJECT) -> str:
        """An unstructured header (RFC 2047 decoded); legacy decoding if the parser breaks."""
        value = self.unsurrogate(self.first(name)[:limit])
        try:
            header = policy.default.header_factory(name, value)
            self._defects(name, header.defects)
            return self.unsurrogate(_collapse(str(header)))
        except Exception:
            self.problems.add(f"{name.title()}: unparseable")
            return _collapse(decode_words(value))

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
        return [(_collapse(self.unsurrogate(n)), a.strip().lower()) for n, a in found]

    def _address_list(self, name: str, value: str) -> list[tuple[str, str]]:
        """Strict parse first; the lenient legacy parser when the strict one finds nothing usable.

        The strict parser raises on inputs like "bad@" and drops everything after a missing
        comma; real mail has both.
        """
        try:
            header: Any = policy.default.header_factory(name, value)
            modern = [(a.display_name, a.addr_spec) for a in header.addresses]
            self._defects(name, header.defects)
        except Exception:
            modern = []
            self.problems.add(f"{name.title()}: unparseable address list")
        if "@" not in "".join(a for _, a in modern) and "@" in value:
            pairs = _safe(lambda: email.utils.getaddresses([value]), [])
            legacy = [(decode_words(n), a) for n, a in pairs if "@" in a]
            if legacy:
                return legacy
        return [(n, a) for n, a in modern if a or n]

    def _defects(self, name: str, defects: Any) -> None:
        for defect in defects:
            if not isinstance(defect, email.errors.ObsoleteHeaderDefect):
                self.problems.add(f"{name.title()}: {_describe(defect)}")

    def ids(self, name: str) -> list[str]:
        """Message ids in order, de-duplicated, without <> or whitespace (clients fold them)."""
        value = " ".join(self.raw.get(name, []))[:_MAX_ID_HEADER]
        found = re.findall(r"<([^<>]*)>", value) or [t for t in value.split() if "@" in t]
        cleaned = ("".join(_scrub(i).split()).strip("<>")[:_MAX_ID] for i in found)
        return list(dict.fromkeys(i for i in cleaned if i))


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


def _parse_date(value: str) -> dt.datetime | None:
    """RFC 5322 date (or ISO 8601, which some tools write) as an aware UTC datetime."""
    value = value.strip()[:200]
    if not value:
        return None
    parsed: dt.datetime | None = _safe(lambda: email.utils.parsedate_to_datetime(value), None)
    if parsed is None:
        parsed = _safe(lambda: dt.datetime.fromisoformat(value), None)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_UTC)
    return _safe(lambda: parsed.astimezone(_UTC), None)


# --- bodies and attachments -----------------------------------------------------------------

_CID_REFERENCE = re.compile(r"cid:([^\s\"'<>()]+)", re.I)
_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?\s*([a-z0-9_.:\-]+)", re.I)
_CONTENT_HEADER = re.compile(rb"^content-[a-z0-9-]*:[^\n]*(?:\n[ \t][^\n]*)*", re.I | re.M)
_EXTENSIONS = {
    "message/rfc822": ".eml", "text/plain": ".txt", "text/html": ".html", "text/calendar": ".ics",
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "application/pdf": ".pdf",
    "application/ms-tnef": ".dat",
}  # fmt: skip
_RawPart = tuple[str, str, str, bytes]  # filename, content type, content id, payload


def _cap_content_headers(data: bytes) -> tuple[bytes, bool]:
    """Truncate absurdly long Content-* header fields anywhere in the message (parser DoS)."""
    capped = False

    def cap(match: re.Match[bytes]) -> bytes:
        nonlocal capped
        if len(match.group()) <= _MAX_CONTENT_HEADER:
            return match.group()
        capped = True
        return match.group()[:_MAX_CONTENT_HEADER]

    return _CONTENT_HEADER.sub(cap, data), capped


def _children(part: Message) -> list[Message]:
    """Sub-parts of a multipart or message/* part (empty when the structure is broken)."""
    payload = _safe(part.get_payload, None)
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _serialize(part: Any, gen: Any) -> bytes:
    """An embedded message as bytes, or b"" if the generator trips over it."""
    try:
        return bytes(part.as_bytes(policy=gen))
    except Exception:
        return b""


def _raw_header(part: Message, name: str) -> str:
    """A header's raw, unfolded value, without running the (slow, fragile) structured parser."""
    for key, value in _safe(lambda: list(part.raw_items()), []):
        if str(key).lower() == name:
            return re.sub(r"\r?\n", "", str(value))
    return ""


def _safe_filename(name: str, content_type: str, index: int) -> str:
    """A display/download name with no path, control or reserved characters."""
    if "=?" in name:
        name = decode_words(name)
    name = unicodedata.normalize("NFC", _scrub(name)).replace("\\", "/").rsplit("/", 1)[-1]
    name = _collapse(re.sub(r'[\x00-\x1f\x7f<>:"|?*]', "_", name)).strip(" .")
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[: 199 - len(ext)]}.{ext}" if dot and len(ext) <= 10 else name[:200]
    return name or f"attachment-{index}{_EXTENSIONS.get(content_type, '.bin')}"


class _Walker:
    """Walks the MIME tree once, collecting body texts, attachments and problems."""

    def __init__(self, problems: _Problems) -> None:
        self.problems = problems
        self.parts: list[_RawPart] = []
        self.seen = 0
        self.hint: str | None = None

    def walk(self, part: Message, depth: int = 0) -> tuple[list[str], list[str]]:
        """Return (plain texts, html texts) for this subtree."""
        self.seen += 1
        if self.seen > _MAX_PARTS or depth > _MAX_DEPTH:
            self.problems.add("too many or too deeply nested MIME parts; the rest were skipped")
            return [], []
        for defect in getattr(part, "defects", []):
            self.problems.add(_describe(defect))
        ctype = _safe(part.get_content_type, "application/octet-stream")
        if ctype.startswith("message/"):
            self._attach(part, ctype)
            return [], []
        if part.is_multipart():
            results = [self.walk(child, depth + 1) for child in _children(part)]
            return _alternative(results) if ctype == "multipart/alternative" else _mixed(results)
        if ctype.startswith("multipart/"):
            self.problems.add("multipart without a usable boundary; shown as text")
            return [self._text(part, "text/plain")], []
        disposition = _safe(part.get_content_disposition, None)
        is_body = ctype in ("text/plain", "text/html") and disposition != "attachment"
        if is_body and not _safe(part.get_filename, None):
            text = self._text(part, ctype)
            return ([text], []) if ctype == "text/plain" else ([], [text])
        self._attach(part, ctype)
        return [], []

    def _payload(self, part: Message) -> bytes:
        payload = _safe(lambda: part.get_payload(decode=True), None)
        for defect in getattr(part, "defects", []):  # decoding adds e.g. base64 defects
            self.problems.add(_describe(defect))
        if isinstance(payload, bytes):
            return payload
        if part.is_multipart():  # message/*: keep the embedded message as bytes, headers verbatim
            gen = policy.default.clone(refold_source="none", linesep="\r\n")
            return b"".join(_serialize(child, gen) for child in _children(part))
        return b""

    def _text(self, part: Message, ctype: str) -> str:
        payload = self._payload(part)
        charset = _safe(part.get_content_charset, None)
        if not charset and ctype == "text/html" and (meta := _META_CHARSET.search(payload[:4096])):
            charset = meta.group(1).decode("ascii")
        text, problem = decode_bytes(payload, charset)
        self.problems.add(f"{ctype} body: {problem}" if problem else "")
        self.hint = self.hint or charset
        return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")

    def _attach(self, part: Message, ctype: str) -> None:
        name = _safe(part.get_filename, None) or ""
        if not name and ctype == "message/rfc822":
            inner = _safe(lambda: part.get_payload(0), None)
            raw_subject = _raw_header(inner, "subject") if isinstance(inner, Message) else ""
            subject = decode_words(raw_subject[:150])
            name = f"{subject}.eml" if subject.strip() else ""
        cid = "".join(_raw_header(part, "content-id").split()).strip("<>")[:_MAX_ID]
        filename = _safe_filename(name, ctype, len(self.parts) + 1)
        self.parts.append((filename, ctype, _scrub(cid), self._payload(part)))


def _alternative(results: list[tuple[list[str], list[str]]]) -> tuple[list[str], list[str]]:
    """Pick the first plain and the last (richest) HTML alternative."""
    plain = next((p for p, _ in results if p), [])
    rich = next((h for _, h in reversed(results) if h), [])
    return plain, rich


def _mixed(results: list[tuple[list[str], list[str]]]) -> tuple[list[str], list[str]]:
    """Concatenate bodies in order, converting so neither the text nor the HTML loses a part."""
    if not any(h for _, h in results):
        return [t for p, _ in results for t in p], []
    plain: list[str] = []
    rich: list[str] = []
    for p, h in results:
        plain.extend(p or [html_to_text(x) for x in h])
        rich.extend(h or [f'<pre style="white-space: pre-wrap">{html.escape(x)}</pre>' for x in p])
    return plain, rich


# --- the public functions -------------------------------------------------------------------

_QUOTE_HEADER = re.compile(
    r"^(on\b.{0,200}\bwrote:|am\b.{0,200}\bschrieb\b.{0,200}:|le\b.{0,200}\ba écrit ?:"
    r"|-{2,} ?original message ?-{2,}|-{2,} ?ursprüngliche nachricht ?-{2,}|_{10,})$",
    re.I,
)


def _snippet(text: str) -> str:
    """First ~200 characters of what the sender wrote, skipping quotes and the signature."""
    kept = []
    for line in text.split("\n"):
        if line.rstrip() == "--" or _QUOTE_HEADER.match(line.strip()):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    snippet = _collapse(" ".join(kept)) or _collapse(text)
    if len(snippet) <= _SNIPPET_LENGTH:
        return snippet
    cut = snippet[:_SNIPPET_LENGTH]
    space = cut.rfind(" ")
    return cut[:space] if space > _SNIPPET_LENGTH * 3 // 4 else cut


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse raw message bytes. Never raises; failures end up in headers_error / parse_error."""
    try:
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
    except Exception:
        return ParsedMessage(parse_error="input is not bytes")
    try:
        return _parse(data)
    except Exception as exc:  # a stdlib bug or an input beyond every fallback: salvage
        return _salvage(data, f"could not parse message ({type(exc).__name__})")


def _parse(data: bytes) -> ParsedMessage:
    """The normal path: bodies first (their charset helps decode 8-bit headers), then headers."""
    head_problems, body_problems = _Problems(), _Problems()
    data, capped = _cap_content_headers(data)
    if capped:
        body_problems.add("oversized MIME header truncated")
    msg = email.message_from_bytes(data, policy=policy.default)
    walker = _Walker(body_problems)
    plain, rich = walker.walk(msg)
    headers = _Headers(msg, walker.hint, head_problems)

    text = _scrub("\n\n".join(plain))
    html_body = _scrub("\n".join(rich))
    if not text.strip() and html_body:
        text = html_to_text(html_body)
    sanitized = _safe(lambda: sanitize_html(html_body), "")
    if html_body and not sanitized and html_body.strip():
        body_problems.add("HTML body could not be sanitized")

    referenced = {unquote(c).lower() for c in _CID_REFERENCE.findall(html_body)}
    attachments = [
        ParsedAttachment(
            filename=name,
            content_type=ctype,
            size=len(payload),
            content_id=cid,
            is_inline=bool(cid) and cid.lower() in referenced,
            payload=payload,
        )
        for name, ctype, cid, payload in walker.parts
    ]

    date = _parse_date(headers.first("date"))
    if date is None:
        if headers.first("date").strip():
            head_problems.add("Date: unparseable")
        received = headers.first("received").rpartition(";")[2]
        date = _parse_date(received)

    senders = headers.addresses("from") or headers.addresses("sender") or [("", "")]
    references = headers.ids("references")
    if len(references) > _MAX_REFERENCES:
        references = references[:1] + references[1 - _MAX_REFERENCES :]
    message_id = headers.first("message-id")
    return ParsedMessage(
        message_id=next(
            iter(headers.ids("message-id")),
            _scrub("".join(message_id.split())).strip("<>")[:_MAX_ID],
        ),
        in_reply_to=next(iter(headers.ids("in-reply-to")), ""),
        references=references,
        subject=_scrub(headers.text("subject")),
        from_name=_scrub(senders[0][0]),
        from_address=_scrub(senders[0][1]),
        to=[(_scrub(n), _scrub(a)) for n, a in headers.addresses("to") if a],
        cc=[(_scrub(n), _scrub(a)) for n, a in headers.addresses("cc") if a],
        bcc=[(_scrub(n), _scrub(a)) for n, a in headers.addresses("bcc") if a],
        reply_to=[(_scrub(n), _scrub(a)) for n, a in headers.addresses("reply-to") if a],
        date=date,
        text=text,
        html=html_body,
        sanitized_html=sanitized,
        snippet=_snippet(text),
        attachments=attachments,
        has_attachments=any(not a.is_inline for a in attachments),
        headers_error=str(head_problems),
        parse_error=str(body_problems),
    )


def _salvage(data: bytes, reason: str) -> ParsedMessage:
    """Best effort for input the parser could not handle: a few headers by regex, body as text."""
    try:
        head, *rest = re.split(rb"\r?\n\r?\n", data, maxsplit=1)
        body = rest[0] if rest else b""
        head_text = re.sub(r"\r?\n[ \t]+", " ", head[:_MAX_ID_HEADER].decode("utf-8", "replace"))

        def grab(name: str) -> str:
            found = re.search(rf"(?im)^{name}:[ \t]*(.*)$", head_text)
            return found.group(1)[:_MAX_SUBJECT] if found else ""

        from_name, from_address = email.utils.parseaddr(grab("from"))
        ids = re.findall(r"<([^<>]*)>", grab("message-id"))
        text = _scrub(decode_bytes(body, None)[0].replace("\r\n", "\n"))
        return ParsedMessage(
            message_id="".join(ids[0].split()) if ids else "",
            subject=_scrub(_collapse(decode_words(grab("subject")))),
            from_name=_scrub(decode_words(from_name)),
            from_address=_scrub(from_address.lower()),
            date=_parse_date(grab("date")),
            text=text,
            snippet=_snippet(text),
            parse_error=reason,
        )
    except Exception:
        return ParsedMessage(parse_error=reason)


def thread_keys(parsed: ParsedMessage) -> list[str]:
    """Message ids that tie this message to a conversation: its own, In-Reply-To, References."""
    keys = [parsed.message_id, parsed.in_reply_to, *parsed.references]
    return list(dict.fromkeys(k for k in keys if k))


_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|antw|tr|rif|r|enc|odp|vl|res|doorst|回复|回覆|答复|转发|轉寄)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:\uff1a]|\[[^\[\]]{0,60}\])\s*",
    re.I,
)


def normalize_subject(subject: str) -> str:
    """Subject reduced for comparison: reply/forward prefixes and [list] tags gone, case kept.

    Only a guarded fallback for threading (same normalized subject *and* same participants,
    recent): headers are the real signal, subjects like "Hello" collide.
    """
    value = _collapse(subject)
    while True:
        shorter = _SUBJECT_PREFIX.sub("", value, count=1)
        if shorter == value:
            return value
        value = shorter
