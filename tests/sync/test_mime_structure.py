"""sync.mime_structure builds the feed parser's own tree, or declines.

Every case compares the whole tree with ``email.message_from_bytes(..., policy=compat32)``:
headers in order, payloads, preambles, epilogues, defects, default types. Plain pytest, no Django.
"""

from __future__ import annotations

import email
import email.errors
import random
from email import policy
from email.message import Message
from email.parser import HeaderParser
from typing import Any

import pytest

from sync.mime_structure import MAX_PARTS, parse_structure


def build(*lines: str | bytes, eol: bytes = b"\r\n") -> bytes:
    return eol.join(line if isinstance(line, bytes) else line.encode() for line in lines)


def tree(msg: Message) -> tuple[Any, ...]:
    """Everything the feed parser sets on a message, recursively."""
    payload = msg._payload  # type: ignore[attr-defined]
    return (
        msg._headers,  # type: ignore[attr-defined]
        msg.get_unixfrom(),
        msg.preamble,
        msg.epilogue,
        [type(defect) for defect in msg.defects],
        msg.get_default_type(),
        msg.get_charset(),
        [tree(part) for part in payload] if isinstance(payload, list) else payload,
    )


def feed_parser_tree(raw: bytes) -> tuple[Any, ...]:
    return tree(email.message_from_bytes(raw, policy=policy.compat32))


def assert_same_tree(raw: bytes) -> None:
    fast = parse_structure(raw)
    assert fast is not None, "expected the fast path"
    assert tree(fast) == feed_parser_tree(raw)


NESTED = [
    "From: Alice <alice@example.com>",
    "Subject: nested",
    'Content-Type: multipart/mixed; boundary="outer"',
    "",
    "This is the preamble.",
    "",
    "--outer",
    'Content-Type: multipart/alternative; boundary="inner"',
    "",
    "--inner",
    "Content-Type: text/plain; charset=utf-8",
    "",
    "plain text",
    "--inner-- not a delimiter line",
    " --inner",
    "--innerX",
    "--inner \t",
    "Content-Type: text/html",
    "",
    "<p>html</p>",
    "",
    "--inner--",
    "",
    "inner epilogue",
    "--outer",
    "Content-Type: application/pdf; name=a.pdf",
    "Content-Transfer-Encoding: base64",
    "",
    "JVBERi0xLjQK",
    "--outer",
    "",
    "a part without headers",
    "--outer",
    "Content-Type: text/plain",
    "--outer--",
    "the epilogue",
    "",
]


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize(
    "lines",
    [
        ["Subject: plain", "", "body", "", "more body", ""],
        ["Subject: no body"],
        ["Subject: no body", ""],
        ["", "a body and no headers"],
        ["From sender@example.com Tue Mar  5 10:00:00 2024", "Subject: mbox", "", "body"],
        ["Subject: folded", " continuation", "\tmore", "", "body"],
        NESTED,
        [*NESTED[:-2], "--outer--"],  # closing delimiter at the very end, no line break
        [*NESTED[:-3], "--outer--  ", ""],  # trailing whitespace on the closing delimiter
        [b"Subject: caf\xc3\xa9", b"Content-Type: text/plain; charset=latin-1", b"", b"\xe9t\xe9"],
    ],
    ids=[
        "single",
        "headers-only",
        "headers-blank",
        "no-headers",
        "unixfrom",
        "folded",
        "nested",
        "close-at-eof",
        "close-whitespace",
        "8bit",
    ],
)
def test_ordinary_mail_gives_the_feed_parsers_tree(lines: list[str | bytes], eol: bytes) -> None:
    assert_same_tree(build(*lines, eol=eol))


class _HeaderParserBefore3115(HeaderParser):
    """The header parser of Python 3.11.0-3.11.4 (CPython gh-106186), on any Python."""

    def parsestr(self, text: str, headersonly: bool = True) -> Message:
        msg = super().parsestr(text, headersonly)
        if msg.get_content_maintype() == "multipart":
            msg.defects.append(email.errors.MultipartInvariantViolationDefect())
        return msg


def test_multipart_mail_takes_the_fast_path_on_pythons_before_3_11_5(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Their header-only parse flags every multipart header block; the parts are still split."""
    monkeypatch.setattr(
        "sync.mime_structure._HEADER_PARSER", _HeaderParserBefore3115(policy=policy.compat32)
    )
    assert_same_tree(build(*NESTED))


def test_mixed_line_endings_give_the_same_tree() -> None:
    raw = build(*NESTED[:12]) + b"\n" + build(*NESTED[12:], eol=b"\n")
    assert_same_tree(raw)


@pytest.mark.parametrize(
    "lines",
    [
        ["Subject: lone CR", "", "a\rb"],
        ["Subject: broken header", "this is not a header", "", "body"],
        ["Content-Type: message/rfc822", "", "Subject: inner", "", "inner body"],
        ['Content-Type: multipart/digest; boundary="d"', "", "--d", "", "Subject: x", "--d--"],
        ["Content-Type: multipart/mixed", "", "no boundary parameter"],
        [
            'Content-Type: multipart/mixed; boundary="b"',
            "Content-Transfer-Encoding: base64",
            "",
            "--b",
            "",
            "x",
            "--b--",
        ],
        ['Content-Type: multipart/mixed; boundary="b"', "", "no delimiter at all"],
        ['Content-Type: multipart/mixed; boundary="b"', "", "--b--", "closing only"],
        ['Content-Type: multipart/mixed; boundary="b"', "", "--b", "", "never closed"],
        ['Content-Type: multipart/mixed; boundary="b"', "", "--b", "--b", "", "x", "--b--"],
        [
            'Content-Type: multipart/mixed; boundary="b"',
            "",
            "--b",
            'Content-Type: multipart/alternative; boundary="b2"',
            "",
            "--b2",
            "",
            "x",
            "--b2--",
            "--b--",
        ],
        [
            'Content-Type: multipart/mixed; boundary="b"',
            "",
            "--b",
            "Content-Type: message/delivery-status",
            "",
            "Reporting-MTA: dns; x",
            "--b--",
        ],
    ],
    ids=[
        "lone-cr",
        "header-defect",
        "message-rfc822",
        "digest",
        "no-boundary",
        "base64-multipart",
        "no-first-delimiter",
        "closing-first",
        "no-closing",
        "doubled-delimiter",
        "prefix-boundaries",
        "delivery-status",
    ],
)
def test_unusual_mail_is_left_to_the_feed_parser(lines: list[str]) -> None:
    assert parse_structure(build(*lines)) is None


def test_deep_nesting_is_left_to_the_feed_parser() -> None:
    lines: list[str] = []
    for depth in range(40):
        boundary = f"level{depth}x"
        lines += [f'Content-Type: multipart/mixed; boundary="{boundary}"', "", f"--{boundary}"]
    assert parse_structure(build(*lines, "", "deep")) is None


def test_parts_past_the_shown_ones_are_not_split_out() -> None:
    """100,000 empty parts took 5 s to build for a reader that shows 1,000: the structure
    keeps one more than that (so the reader says the rest were skipped) and the rest unread."""
    raw = build(
        'Content-Type: multipart/mixed; boundary="z"',
        "",
        *(["--z", "", "x"] * 5000),
        "--z--",
    )
    msg = parse_structure(raw)
    assert msg is not None
    assert len(msg.get_payload()) == MAX_PARTS + 1
    epilogue = msg.epilogue or ""
    assert epilogue.startswith("--z\r\n") and epilogue.count("--z") == 5000 - MAX_PARTS


def mutate(rng: random.Random, raw: bytes) -> bytes:
    """A few random line-level edits of the kinds that trip MIME parsers."""
    lines = raw.split(b"\n")
    for _ in range(rng.randint(1, 4)):
        if not lines:
            break
        index = rng.randrange(len(lines))
        kind = rng.randrange(9)
        if kind == 0:
            del lines[index]
        elif kind == 1:
            lines.insert(index, lines[rng.randrange(len(lines))])
        elif kind == 2:
            lines.insert(index, rng.choice([b"--outer", b"--inner", b"--outer--", b"--inner--"]))
        elif kind == 3:
            lines[index] = lines[index].rstrip(b"\r")
        elif kind == 4:
            lines[index] = lines[index] + rng.choice([b" ", b"\t", b"--", b"x", b"\r"])
        elif kind == 5:
            lines.insert(index, b"")
        elif kind == 6:
            lines[index] = b" " + lines[index]
        elif kind == 7:
            lines = lines[: index + 1]
        else:
            lines[index] = lines[index].replace(b"multipart/mixed", b"multipart/digest")
    return b"\n".join(lines)


def test_mutated_mail_gives_the_same_tree_or_is_declined() -> None:
    rng = random.Random(20261129)
    bases = [build(*NESTED), build(*NESTED, eol=b"\n")]
    fast = declined = 0
    for _ in range(3000):
        raw = mutate(rng, rng.choice(bases))
        result = parse_structure(raw)
        if result is None:
            declined += 1
            continue
        fast += 1
        assert tree(result) == feed_parser_tree(raw), raw
    assert fast > 500 and declined > 500  # both paths were exercised
