"""Parsing raw RFC 5322 messages into the fields the store and the inbox need.

Principle 1 of DESIGN.md says a message that does not parse is still stored and shown, so
``parse_message`` never raises: every step has a fallback, and whatever went wrong is described
in ``headers_error`` / ``parse_error`` instead. The standard library parser does the structural
work; this module adds the tolerance real mail needs (unknown charsets, 8-bit headers, broken
multiparts) and guards against inputs that make the header parser slow.

The structure is parsed with ``policy.compat32``: ``policy.default`` re-parses every
structured header through ``email.headerregistry`` (Content-Type on every
``get_content_type()`` call), which made parsing about 1.8 times slower, and nothing here needs
its header objects: top-level headers are decoded from their raw values
(``sync.mime_headers``), individual ones through ``policy.default``'s header factory where that
helps. A differential check over 2,400 corpus and mutated messages gave identical results
under both policies.

Pure Python, no Django: tests and workers can call it without settings.
"""

from __future__ import annotations

import datetime as dt
import email
import email.errors
import email.header
import email.utils
import html
import re
import unicodedata
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from typing import Any
from urllib.parse import unquote

from mailweb.html_cost import too_costly_to_sanitize
from mailweb.html_safety import html_to_text, sanitize_html
from sync.mime_headers import (
    MAX_ID_HEADER,
    MAX_REFERENCES,
    MAX_SUBJECT,
    Headers,
    clean_id,
    decode_words,
    parse_date,
)
from sync.mime_structure import MAX_PARTS, parse_structure
from sync.mime_text import (
    Problems,
    collapse,
    decode_bytes,
    describe_defect,
    fit_bytes,
    safe_call,
    scrub,
)

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
_MAX_DEPTH = 30
_SNIPPET_LENGTH = 200
_OCTET_STREAM = "application/octet-stream"
_MIME_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")  # RFC 6838


@dataclass(frozen=True)
class ParsedAttachment:
    """One non-body MIME part. ``is_inline`` means "shown inside the HTML through cid:".

    ``sha256`` is set (and ``payload`` emptied) once a parse process has stored the payload.
    """

    filename: str
    content_type: str
    size: int
    content_id: str
    is_inline: bool
    payload: bytes = field(repr=False)
    sha256: str = ""


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
    if not _has_long_content_header(data):
        return data, False
    capped = False

    def cap(match: re.Match[bytes]) -> bytes:
        nonlocal capped
        if len(match.group()) <= _MAX_CONTENT_HEADER:
            return match.group()
        capped = True
        return match.group()[:_MAX_CONTENT_HEADER]

    return _CONTENT_HEADER.sub(cap, data), capped


def _has_long_content_header(data: bytes) -> bool:
    """Whether any Content-* field (with its folded lines) exceeds the cap.

    The common answer is no, and finding that with ``bytes.find`` is much cheaper than running
    the multi-line regular expression over the whole message, attachments included.
    """
    if len(data) <= _MAX_CONTENT_HEADER:
        return False
    lowered = data.lower()
    start = 0 if lowered.startswith(b"content-") else lowered.find(b"\ncontent-")
    while start != -1:
        end = lowered.find(b"\n", start + 1)
        while end != -1 and lowered[end + 1 : end + 2] in (b" ", b"\t"):
            end = lowered.find(b"\n", end + 1)
        if (len(lowered) if end == -1 else end) - start > _MAX_CONTENT_HEADER:
            return True
        start = lowered.find(b"\ncontent-", start + 1) if end != -1 else -1
    return False


def _children(part: Message) -> list[Message]:
    """Sub-parts of a multipart or message/* part (empty when the structure is broken)."""
    payload = safe_call(part.get_payload, None)
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _serialize(part: Any, gen: Any) -> bytes:
    """An embedded message as bytes, or b"" if the generator trips over it."""
    try:
        return bytes(part.as_bytes(policy=gen))
    except Exception:
        return b""


def _content_type(part: Message) -> str:
    """The part's type/subtype as the standard library reads it, when it is one.

    A damaged Content-Type (a NUL, quotes or brackets in the name) comes through the library
    as it stands; stored as an attachment's type, a NUL made PostgreSQL refuse the batch.
    """
    ctype = safe_call(part.get_content_type, _OCTET_STREAM)
    return ctype if _MIME_TYPE.fullmatch(ctype) else _OCTET_STREAM


def _raw_header(part: Message, name: str) -> str:
    """A header's raw, unfolded value, without running the (slow, fragile) structured parser."""
    for key, value in safe_call(lambda: list(part.raw_items()), []):
        if str(key).lower() == name:
            return re.sub(r"\r?\n", "", str(value))
    return ""


def _safe_filename(name: str, content_type: str, index: int) -> str:
    """A display/download name with no path, control or reserved characters."""
    if "=?" in name:
        name = decode_words(name)
    name = unicodedata.normalize("NFC", scrub(name)).replace("\\", "/").rsplit("/", 1)[-1]
    name = collapse(re.sub(r'[\x00-\x1f\x7f<>:"|?*]', "_", name)).strip(" .")
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[: 199 - len(ext)]}.{ext}" if dot and len(ext) <= 10 else name[:200]
    return name or f"attachment-{index}{_EXTENSIONS.get(content_type, '.bin')}"


class _Walker:
    """Walks the MIME tree once, collecting body texts, attachments and problems."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.parts: list[_RawPart] = []
        self.seen = 0
        self.hint: str | None = None

    def walk(self, part: Message, depth: int = 0) -> tuple[list[str], list[str]]:
        """Return (plain texts, html texts) for this subtree."""
        self.seen += 1
        if self.seen > MAX_PARTS or depth > _MAX_DEPTH:
            self.problems.add("too many or too deeply nested MIME parts; the rest were skipped")
            return [], []
        for defect in getattr(part, "defects", []):
            self.problems.add(describe_defect(defect))
        ctype = _content_type(part)
        if ctype.startswith("message/"):
            self._attach(part, ctype)
            return [], []
        if part.is_multipart():
            results = [self.walk(child, depth + 1) for child in _children(part)]
            return _alternative(results) if ctype == "multipart/alternative" else _mixed(results)
        if ctype.startswith("multipart/"):
            self.problems.add("multipart without a usable boundary; shown as text")
            return [self._text(part, "text/plain")], []
        disposition = safe_call(part.get_content_disposition, None)
        is_body = ctype in ("text/plain", "text/html") and disposition != "attachment"
        if is_body and not safe_call(part.get_filename, None):
            text = self._text(part, ctype)
            return ([text], []) if ctype == "text/plain" else ([], [text])
        self._attach(part, ctype)
        return [], []

    def _payload(self, part: Message) -> bytes:
        payload = safe_call(lambda: part.get_payload(decode=True), None)
        for defect in getattr(part, "defects", []):  # decoding adds e.g. base64 defects
            self.problems.add(describe_defect(defect))
        if isinstance(payload, bytes):
            return payload
        if part.is_multipart():  # message/*: keep the embedded message as bytes, headers verbatim
            gen = policy.default.clone(refold_source="none", linesep="\r\n")
            return b"".join(_serialize(child, gen) for child in _children(part))
        return b""

    def _text(self, part: Message, ctype: str) -> str:
        payload = self._payload(part)
        charset = safe_call(part.get_content_charset, None)
        if not charset and ctype == "text/html" and (meta := _META_CHARSET.search(payload[:4096])):
            charset = meta.group(1).decode("ascii")
        text, problem = decode_bytes(payload, charset)
        self.problems.add(f"{ctype} body: {problem}" if problem else "")
        self.hint = self.hint or charset
        return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")

    def _attach(self, part: Message, ctype: str) -> None:
        name = safe_call(part.get_filename, None) or ""
        if not name and ctype == "message/rfc822":
            inner = safe_call(lambda: part.get_payload(0), None)
            raw_subject = _raw_header(inner, "subject") if isinstance(inner, Message) else ""
            subject = decode_words(raw_subject[:150])
            name = f"{subject}.eml" if subject.strip() else ""
        cid = clean_id(_raw_header(part, "content-id"))
        filename = _safe_filename(name, ctype, len(self.parts) + 1)
        self.parts.append((filename, ctype, cid, self._payload(part)))


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
    kept_length, next_check = 0, _SNIPPET_LENGTH
    for line in text.split("\n"):
        if line.rstrip() == "--" or _QUOTE_HEADER.match(line.strip()):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
            kept_length += len(line) + 1
            # Enough once the collapsed text is longer than the snippet (checked at doubling
            # lengths, so whitespace-heavy text stays linear): the rest cannot change it.
            if kept_length > next_check:
                next_check = 2 * kept_length
                if len(collapse(" ".join(kept))) > _SNIPPET_LENGTH:
                    break
    snippet = collapse(" ".join(kept)) or collapse(text)
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
    head_problems, body_problems = Problems(), Problems()
    data, capped = _cap_content_headers(data)
    if capped:
        body_problems.add("oversized MIME header truncated")
    msg = parse_structure(data) or email.message_from_bytes(data, policy=policy.compat32)
    walker = _Walker(body_problems)
    plain, rich = walker.walk(msg)
    headers = Headers(msg, walker.hint, head_problems)

    text = scrub("\n\n".join(plain))
    html_body = scrub("\n".join(rich))
    if not text.strip() and html_body:
        text = html_to_text(html_body)
    too_costly = too_costly_to_sanitize(html_body)
    sanitized = "" if too_costly else safe_call(lambda: sanitize_html(html_body), "")
    if too_costly:
        body_problems.add(f"HTML body shown as text: {too_costly} would take too long to sanitize")
    elif html_body.strip() and not sanitized:
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

    date = parse_date(headers.first("date"))
    if date is None:
        if headers.first("date").strip():
            head_problems.add("Date: unparseable")
        received = headers.first("received").rpartition(";")[2]
        date = parse_date(received)

    senders = headers.addresses("from") or headers.addresses("sender") or [("", "")]
    references = headers.ids("references")
    if len(references) > MAX_REFERENCES:
        references = references[:1] + references[1 - MAX_REFERENCES :]
    message_id = headers.first("message-id")
    return ParsedMessage(
        message_id=next(
            iter(headers.ids("message-id")),
            clean_id(headers.unsurrogate(message_id)),
        ),
        in_reply_to=next(iter(headers.ids("in-reply-to")), ""),
        references=references,
        subject=scrub(headers.text("subject")),
        from_name=scrub(senders[0][0]),
        from_address=scrub(senders[0][1]),
        to=[(scrub(n), scrub(a)) for n, a in headers.addresses("to") if a],
        cc=[(scrub(n), scrub(a)) for n, a in headers.addresses("cc") if a],
        bcc=[(scrub(n), scrub(a)) for n, a in headers.addresses("bcc") if a],
        reply_to=[(scrub(n), scrub(a)) for n, a in headers.addresses("reply-to") if a],
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
        head_text = re.sub(r"\r?\n[ \t]+", " ", head[:MAX_ID_HEADER].decode("utf-8", "replace"))

        def grab(name: str) -> str:
            found = re.search(rf"(?im)^{name}:[ \t]*(.*)$", head_text)
            return found.group(1)[:MAX_SUBJECT] if found else ""

        from_name, from_address = email.utils.parseaddr(grab("from"))
        ids = re.findall(r"<([^<>]*)>", grab("message-id"))
        text = scrub(decode_bytes(body, None)[0].replace("\r\n", "\n"))
        return ParsedMessage(
            message_id=clean_id(ids[0]) if ids else "",
            subject=scrub(collapse(decode_words(grab("subject")))),
            from_name=scrub(decode_words(from_name)),
            from_address=scrub(from_address.lower()),
            date=parse_date(grab("date")),
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


MAX_NORMALIZED_SUBJECT = 998  # characters: Conversation.normalized_subject's max_length
_MAX_NORMALIZED_SUBJECT_BYTES = 2000  # and bytes, for its B-tree index (see fit_bytes)
_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|antw|tr|rif|r|enc|odp|vl|res|doorst|回复|回覆|答复|转发|轉寄)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:\uff1a]|\[[^\[\]]{0,60}\])\s*",
    re.I,
)


def normalize_subject(subject: str) -> str:
    """Subject reduced for comparison: reply/forward prefixes and [list] tags gone, case kept.

    Only a guarded fallback for threading (same normalized subject *and* same participants,
    recent): headers are the real signal, subjects like "Hello" collide. Cut to what the
    conversation's indexed column holds, so a fresh value compares equal to a stored one.
    """
    value = collapse(subject)
    while True:
        shorter = _SUBJECT_PREFIX.sub("", value, count=1)
        if shorter == value:
            return fit_bytes(value[:MAX_NORMALIZED_SUBJECT], _MAX_NORMALIZED_SUBJECT_BYTES)
        value = shorter
