"""The header fast paths in ``sync.mime_headers`` give exactly what the strict parser gives.

Plain subjects and plain address lists (display names may hold RFC 2047 encoded words) skip
``policy.default``'s header parser (about twenty times slower); these tests compare both ways
on the forms the fast path accepts and on near misses it must leave to the parser. A
differential run over the benchmark corpus and mutated copies of it (bench/README.md) gave
identical results too.
"""

from __future__ import annotations

import pytest

from sync import mime_headers
from sync.mime_headers import Headers
from sync.mime_text import Problems

ADDRESS_LISTS = [
    "a@b.c",
    "A@Example.COM",
    " a@b.c ",
    "a@b.c,",
    "a@b.c, ",
    ",a@b.c",
    "a@b.c,,d@e.f",
    "John Smith <j@x.com>",
    "John  Smith <j@x.com>",
    '"Smith, John" <j@x.com>',
    '" John " <j@x.com>',
    '"" <j@x.com>',
    "<j@x.com>",
    "John<j@x.com>",
    "O'Brien <o@x.com>",
    'a+tag@x.com, John <j@x.com>, "Doe, Jane" <jd@x.com>',
    "Lucas =?utf-8?q?Lef=C3=A8vre?= <l@x.com>",
    "=?utf-8?b?zqDOsc+A?= =?utf-8?b?zrHOtM+Mz4DOv8+FzrvOv8+C?= <p@x.com>, a@b.c",
    "=?iso-8859-1?q?J=F6rg?= <j@x.de>",
    "=?utf-8?Q?x_y?= <a@b.c>",
    # near misses: the parser decides
    "=?x-unknown?q?abc?= <a@b.c>",
    "=?utf-8?b?zqDOsc+?= <a@b.c>",
    "=?utf-8?b?TWHDq2xsZSDQmNCy0LDQvdC+0LL=sA==?= <m@x.com>",
    "Noah =?utf-8?q?=arc=C3=ADa?= <n@x.com>",
    '"=?utf-8?q?A?=" <a@b.c>',
    "=?utf-8*en?q?A?= <a@b.c>",
    "a=?utf-8?q?b?= <a@b.c>",
    "a..b@c.d",
    ".a@c.d",
    "a@[1.2.3.4]",
    "John Q. Public <j@x.com>",
    "john@x.com (John)",
    "Group: a@b.c;",
    "undisclosed-recipients:;",
    "John <j@x.com",
    '"a\\"b" <a@b.c>',
    "Ünï <a@b.c>",
    "=?utf-8?q?Lef=C3=A8vre?= <l@x.com>",
    "a@b.c d@e.f",
    "a@b.c;d@e.f",
    "John <>",
]

SUBJECTS = ["Invoice 42", "Re:  spaced   out", "Re: =?utf-8?q?caf=C3=A9?=", "tab\there", "Ünï", ""]


def _headers(value: str, name: str) -> Headers:
    headers = Headers.__new__(Headers)
    headers.raw = {name: [value]}
    headers.hint = None
    headers.problems = Problems()
    return headers


def _strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mime_headers, "_simple_address_list", lambda value: None)


@pytest.mark.parametrize("value", ADDRESS_LISTS)
def test_address_fast_path_matches_the_parser(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _headers(value, "to")
    fast_result = (fast.addresses("to"), str(fast.problems))
    _strict(monkeypatch)
    strict = _headers(value, "to")
    assert fast_result == (strict.addresses("to"), str(strict.problems))


def test_fast_path_takes_plain_lists_and_leaves_the_rest() -> None:
    assert mime_headers._simple_address_list('a@b.c, "Doe, Jane" <jd@x.com>') == [
        ("", "a@b.c"),
        ("Doe, Jane", "jd@x.com"),
    ]
    assert mime_headers._simple_address_list("=?utf-8?q?caf=C3=A9?= Bar <a@b.c>") == [
        ("café Bar", "a@b.c")
    ]
    assert mime_headers._simple_address_list("=?x-unknown?q?x?= <a@b.c>") is None
    assert mime_headers._simple_address_list("Group: a@b.c;") is None


@pytest.mark.parametrize("value", SUBJECTS)
def test_subject_fast_path_matches_the_parser(value: str) -> None:
    headers = _headers(value, "subject")
    header = mime_headers.policy.default.header_factory("subject", value)
    assert headers.text("subject") == mime_headers.collapse(str(header))
