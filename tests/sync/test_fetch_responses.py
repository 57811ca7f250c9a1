"""Reading FETCH responses: the quick reader for the common shapes agrees with imapclient's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from imapclient.datetime_util import parse_to_datetime

from sync.imap import fetch, imap_session
from sync.imap.fetch import _general_responses, _internaldate, _parse_fetch, _simple_responses
from sync.imap.session import prepare_session, select
from tests.sync.conftest import ImapAccount
from tests.sync.mail import message

DATE = b'" 3-Mar-2024 10:11:12 +0100"'

# What imaplib hands over for a UID FETCH: one bytes item per response, or a (head, literal)
# tuple followed by the rest of the line.
SIMPLE_SHAPES: list[list[Any]] = [
    [
        (
            b"1 (UID 5 FLAGS (\\Seen $Forwarded) INTERNALDATE " + DATE + b" MODSEQ (77) BODY[] {5}",
            b"hello",
        ),
        b")",
        (b"2 (UID 9 FLAGS () INTERNALDATE " + DATE + b" BODY[] {0}", b""),
        b")",
    ],
    [b"3 (UID 6 RFC822.SIZE 1234)", b"4 (RFC822.SIZE 0 UID 7 FLAGS (\\Deleted))"],
    [b"5 (uid 8 flags (\\Flagged) modseq (3))"],
    [b"6 (FLAGS (\\Seen))", b"7 (UID 10 FLAGS (\\Seen))"],  # the first is unsolicited: no UID
    [(b"8 (UID 11 RFC822 {3}", b"abc"), b")"],
    # The body first or in the middle, as servers other than Dovecot may send it.
    [(b"9 (BODY[] {5}", b"hello"), b" UID 12 FLAGS (\\Seen) INTERNALDATE " + DATE + b")"],
    [(b"10 (UID 13 BODY[] {2}", b"hi"), b" MODSEQ (5))"],
]

OTHER_SHAPES: list[list[Any]] = [
    [(b"1 (UID 5 BODY[] {5}", b"hello"), b" X-GM-THRID 77)"],  # an unknown item after it
    [b"2 (UID 6 BODY[] NIL)"],
    [b"3 (UID 7 X-GM-LABELS (\\Inbox) FLAGS ())"],
    [(b"4 (UID 8 BODY[HEADER] {5}", b"hello"), b")"],
    [b"5 (UID 9 FLAGS (\\Seen)", b"6 (UID 10)"],
]


@pytest.mark.parametrize("data", SIMPLE_SHAPES)
def test_the_quick_reader_reads_the_common_shapes_as_imapclient_does(data: list[Any]) -> None:
    quick = _simple_responses(data)
    assert quick is not None
    assert quick == list(_general_responses(data))


@pytest.mark.parametrize("data", OTHER_SHAPES)
def test_other_shapes_go_to_imapclient(data: list[Any]) -> None:
    assert _simple_responses(data) is None


def test_a_mixed_response_is_read_whole_by_imapclient() -> None:
    data = [
        *SIMPLE_SHAPES[0],
        (b"3 (UID 12 BODY[] {2}", b"hi"),
        b" X-GM-THRID 7 FLAGS (\\Answered))",
    ]
    messages = _parse_fetch(data)
    assert sorted(messages) == [5, 9, 12]
    assert messages[5].body == b"hello" and messages[5].flags == (b"\\Seen", b"$Forwarded")
    assert messages[5].modseq == 77
    assert messages[12].body == b"hi" and messages[12].flags == (b"\\Answered",)


def test_a_literal_of_the_wrong_length_is_not_trusted() -> None:
    assert _simple_responses([(b"1 (UID 5 BODY[] {6}", b"hello"), b")"]) is None


@pytest.mark.parametrize(
    "text",
    [b" 3-Mar-2024 10:11:12 +0100", b"03-mar-2024 23:59:59 -0530", b"28-Feb-1999 00:00:00 +0000"],
)
def test_internaldate_matches_imapclient(text: bytes) -> None:
    ours = _internaldate(text)
    assert ours == parse_to_datetime(text, normalise=False)
    assert ours.utcoffset() == parse_to_datetime(text, normalise=False).utcoffset()


def test_internaldate_forms() -> None:
    assert _internaldate(b"03-Mar-2024 10:11:12 -0530") == datetime(
        2024, 3, 3, 10, 11, 12, tzinfo=timezone(-timedelta(hours=5, minutes=30))
    )
    # A form some servers send instead (dots in the time) is left to imapclient.
    assert _internaldate(b"Sat, 8 May 2010 16.03.09 +0200") == datetime(
        2010, 5, 8, 14, 3, 9, tzinfo=UTC
    )
    with pytest.raises(ValueError):
        _internaldate(b"31-Feb-2024 10:11:12 +0000")
    messages = _parse_fetch([b'1 (UID 5 INTERNALDATE "31-Feb-2024 10:11:12 +0000")'])
    assert messages[5].internaldate is None


@pytest.mark.dovecot
def test_dovecot_answers_in_the_common_shapes(
    imap_account: Callable[..., ImapAccount], monkeypatch: pytest.MonkeyPatch
) -> None:
    account = imap_account()
    uids = [account.append(message(f"M{n}"), flags=(b"\\Seen",)) for n in range(3)]

    def general(data: list[Any]) -> Any:
        raise AssertionError(f"not read by the quick reader: {data!r}")

    monkeypatch.setattr(fetch, "_general_responses", general)
    with imap_session(account.mailbox) as client:
        prepare_session(client)
        select(client, "INBOX")
        sizes = fetch.uid_fetch(client, "1:*", ["RFC822.SIZE"]).messages
        bodies = fetch.uid_fetch(
            client, "1:*", ["BODY.PEEK[]", "FLAGS", "INTERNALDATE", "MODSEQ"]
        ).messages
    assert sorted(sizes) == sorted(bodies) == uids
    for uid in uids:
        assert bodies[uid].body is not None and len(bodies[uid].body or b"") == sizes[uid].size
        assert b"\\Seen" in bodies[uid].flags
        assert bodies[uid].internaldate is not None and bodies[uid].modseq
