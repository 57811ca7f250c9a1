"""A faster route to the ``email.message.Message`` tree that ``email.message_from_bytes`` builds.

The standard library's feed parser reads a message line by line, tests every line against the
delimiters of all enclosing multiparts, and compiles a fresh regular expression for every
boundary it meets. On the benchmark corpus that was about half of parsing a message. Ordinary
mail needs none of it: its header blocks end at a blank line and its parts at delimiter lines that
``str.find`` locates. ``parse_structure`` splits such a message itself and gives every header
block to the standard library's own header parser (``email.parser.HeaderParser``), so headers are
parsed by exactly the same code as before, and builds the same tree: the same headers, payloads,
preambles and epilogues, with RFC 2046's rule that the line break before a delimiter belongs to
the delimiter.

Whatever it would not reproduce exactly makes it return None, and the caller uses the feed parser
as before: a defect in any header block, message/* parts (the feed parser parses those as nested
messages), multipart/digest (other default types), a multipart without a boundary or with a
transfer encoding RFC 2045 forbids there, a missing first or closing delimiter, two delimiters in
a row, nested boundaries that are prefixes of each other, and carriage returns that are not part
of a CRLF (the feed parser treats a lone CR as a line break). ``tests/sync/test_mime_structure.py``
compares both trees part by part, on hand-written edge cases and on mutated messages.
"""

from __future__ import annotations

import itertools
import re
from email import errors, policy
from email.message import Message
from email.parser import HeaderParser

__all__ = ["MAX_PARTS", "parse_structure"]

_HEADER_PARSER = HeaderParser(policy=policy.compat32)
# What may follow "--" + boundary on a delimiter line (the feed parser's own rule, without lone CR).
_DELIMITER_TAIL = re.compile(r"(--)?[ \t]*(?:\r\n|\n)?")
_MULTIPART_ENCODINGS = ("7bit", "8bit", "binary")
# An empty line: at the start of a part, or after the line break ending the line before it.
_LEADING_BLANK_LINE = re.compile(r"\r?\n")
_BLANK_LINE = re.compile(r"\n\r?\n")
# Deeper nesting is left to the feed parser (and to the caller's own limits).
_MAX_DEPTH = 30
#: The parts a message shows (``sync.mime``). A multipart's parts past one more than this are
#: not even split out: 100,000 empty parts (1 MB) took 5 s to build, to be skipped unread.
MAX_PARTS = 1000


class _Unusual(Exception):
    """The message has something only the feed parser handles exactly."""


def parse_structure(data: bytes) -> Message | None:
    """The feed parser's tree for ``data`` (``policy.compat32``), or None to use the feed parser."""
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return None
    text = data.decode("ascii", "surrogateescape")  # as BytesParser does
    try:
        return _part(text, (), nested=False)
    except _Unusual:
        return None


def _part(region: str, boundaries: tuple[str, ...], *, nested: bool) -> Message:
    """One message or body part; ``boundaries`` are those of the enclosing multiparts."""
    head, body = _split_head(region)
    msg = _HEADER_PARSER.parsestr(head, headersonly=True)
    _drop_header_only_defect(msg)
    if msg.defects or msg.get_payload():
        raise _Unusual
    ctype = msg.get_content_type()
    if ctype.startswith("message/") or ctype == "multipart/digest":
        raise _Unusual
    if not ctype.startswith("multipart/"):
        msg.set_payload(_strip_eol(body) if nested else body)
        return msg
    boundary = msg.get_boundary()
    encoding = str(msg.get("content-transfer-encoding", "8bit")).lower()
    if boundary is None or encoding not in _MULTIPART_ENCODINGS:
        raise _Unusual
    if len(boundaries) >= _MAX_DEPTH or any(
        boundary.startswith(outer) or outer.startswith(boundary) for outer in boundaries
    ):
        raise _Unusual
    _split_multipart(msg, body, boundary, (*boundaries, boundary))
    if nested:  # the line break before the enclosing delimiter is not part of the epilogue
        msg.epilogue = _strip_eol(msg.epilogue) if msg.epilogue else None
    return msg


def _drop_header_only_defect(msg: Message) -> None:
    """Remove a defect that only header-only parsing reports, as newer Pythons do.

    Python before 3.11.5 (Debian 12's 3.11.2 among them) records a
    MultipartInvariantViolationDefect for every multipart header block parsed with
    ``headersonly`` (CPython gh-106186): the body it did not parse is not a list of parts. It
    says nothing about the header block, the parts are split below, and the feed parser does not
    report it for a whole message. Keeping it declined every multipart message there and sent it
    through the slower feed parser.
    """
    if msg.defects and msg.get_content_maintype() == "multipart":
        msg.defects[:] = [
            d for d in msg.defects if not isinstance(d, errors.MultipartInvariantViolationDefect)
        ]


def _split_head(region: str) -> tuple[str, str]:
    """The header block up to and including the first empty line, and the rest."""
    blank = _LEADING_BLANK_LINE.match(region) or _BLANK_LINE.search(region)
    if blank is None:
        return region, ""
    return region[: blank.end()], region[blank.end() :]


def _split_multipart(msg: Message, body: str, boundary: str, boundaries: tuple[str, ...]) -> None:
    """Attach the parts between the delimiter lines; set the preamble and the epilogue."""
    delimiters = _delimiter_lines(body, "--" + boundary)
    if not delimiters or delimiters[0][2]:
        raise _Unusual  # no first delimiter: StartBoundaryNotFoundDefect
    first_start = delimiters[0][0]
    if first_start:
        msg.preamble = _strip_eol(body[:first_start])
    parts: list[Message | str] = []
    for (_, previous_end, _), (start, line_end, is_close) in itertools.pairwise(delimiters):
        if start == previous_end:
            raise _Unusual  # two delimiters in a row
        parts.append(_part(body[previous_end:start], boundaries, nested=True))
        if len(parts) > MAX_PARTS:  # the reader reports the rest as skipped
            msg.set_payload(parts)
            msg.epilogue = body[start:]
            return
        if is_close:
            msg.set_payload(parts)
            msg.epilogue = body[line_end:]
            return
    raise _Unusual  # no closing delimiter: CloseBoundaryNotFoundDefect


def _delimiter_lines(body: str, separator: str) -> list[tuple[int, int, bool]]:
    """(start, end including the line break, is closing) of each delimiter line, in order.

    Stops at the first closing delimiter: what follows is the epilogue.
    """
    found = []
    position = body.find(separator)
    while position != -1:
        if position == 0 or body[position - 1] == "\n":
            line_end = body.find("\n", position)
            line_end = len(body) if line_end == -1 else line_end + 1
            tail = _DELIMITER_TAIL.fullmatch(body, position + len(separator), line_end)
            if tail:
                is_close = tail.group(1) is not None
                found.append((position, line_end, is_close))
                if is_close:
                    break
        position = body.find(separator, position + 1)
    return found


def _strip_eol(text: str) -> str:
    """``text`` without one trailing line break."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text
