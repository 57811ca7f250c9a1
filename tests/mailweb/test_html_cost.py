"""HTML that would keep the sanitizer busy for minutes is recognised before it gets there, and
ordinary mail, however large, never is.

The figures in the docstring of ``mailweb.html_cost`` were measured with nh3; these tests check
the model's decisions only (tests never depend on timing).
"""

from __future__ import annotations

import pytest

from mailweb.html_cost import MAX_CHARACTER_REFERENCES, too_costly_to_sanitize
from mailweb.html_safety import block_remote_images, remote_image_urls, sanitize_html
from sync.mime import parse_message

# Shapes that make html5ever's stack deep, each repeated 12,000 times (nh3: 0.4 to 2.5 s each,
# growing with the square of the count): plain nesting, and nesting built from end tags the
# tree builder ignores or from elements it does not close implicitly.
DEEP = {
    "nested div": "<div>",
    "nested blockquote": "<blockquote>",
    "spans, then divs": None,
    "end tag that cannot close past a div": "<span><div></span>",
    "list item inside a list inside a list item": "<li><ul>",
    "definition inside a list": "<dd><dl>",
    "paragraph inside a div, end tag ignored": "<p><div></p>",
    "item of an ordered list": "<ol><li>",
    "formatting element around a block": "<b><div></b>",
}


@pytest.mark.parametrize("shape", list(DEEP))
def test_deep_nesting_is_too_costly(shape: str) -> None:
    unit = DEEP[shape]
    html = "<span>" * 12_000 + "<div>" * 12_000 if unit is None else unit * 12_000
    reason = too_costly_to_sanitize(html)
    assert reason.startswith("elements nested ") and reason.endswith(" deep")


def test_a_flood_of_character_references_is_too_costly() -> None:
    assert too_costly_to_sanitize("&nbsp;" * MAX_CHARACTER_REFERENCES) == ""
    reason = too_costly_to_sanitize("&amp;" * (MAX_CHARACTER_REFERENCES + 1))
    assert reason == "100,001 character references"


def newsletter(rows: int) -> str:
    """A large table-layout newsletter: nested tables, many rows, links and entities."""
    row = (
        '<tr><td class="x" style="padding:4px"><table width="100%"><tr><td>'
        '<a href="https://example.com/item?id=1&amp;utm=mail"><img src="cid:logo"></a>'
        "<p>Item&nbsp;text <b>bold</b> <i>it</i></p></td></tr></table></td></tr>"
    )
    return "<html><body><table><tbody>" + row * rows + "</tbody></table></body></html>"


def reply_chain(depth: int) -> str:
    """An Outlook-style thread quoting ``depth`` earlier replies, each in a div and a quote."""
    reply = (
        '<div><p class="MsoNormal">Thanks, see below.<o:p></o:p></p>'
        '<div style="border-top:solid #E1E1E1 1pt"><p><b>From:</b> Alice<br>'
        "<b>Sent:</b> Monday</p></div><blockquote>"
    )
    return reply * depth + "<p>The first message.</p>" + "</blockquote></div>" * depth


def sloppy(paragraphs: int) -> str:
    """Hand-written HTML: unclosed paragraphs, list items and cells, stray end tags."""
    return (
        "<ul>"
        + "<li>item" * 500
        + "</ul>"
        + "<p>para <font color=red>red</font></span>" * paragraphs
        + "<table>"
        + "<tr><td>a<td>b" * 500
        + "</table>"
    )


@pytest.mark.parametrize(
    "html",
    [newsletter(3_000), reply_chain(600), sloppy(20_000)],
    ids=["newsletter", "reply chain", "sloppy"],
)
def test_large_ordinary_html_is_not_too_costly(html: str) -> None:
    assert html.count("<") > 10_000  # large enough for the nesting to be looked at
    assert too_costly_to_sanitize(html) == ""


def test_the_sanitizer_and_display_passes_give_nothing_for_such_html() -> None:
    deep = "<div>" * 200_000 + '<img src="https://tracker.example/p.gif">'
    assert sanitize_html(deep) == ""
    assert block_remote_images(deep) == ""
    assert remote_image_urls(deep) == []


def test_a_message_with_such_html_is_stored_as_text_with_the_reason() -> None:
    raw = (
        b"From: Mallory <m@example.net>\r\nTo: support@example.com\r\nSubject: Deep\r\n"
        b"Message-ID: <deep@example.net>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>Hello there</p>" + b"<div>" * 200_000 + b"Regards, Mallory"
    )
    parsed = parse_message(raw)
    assert parsed.sanitized_html == ""
    assert parsed.text == "Hello there\n\nRegards, Mallory"
    assert parsed.parse_error == (
        "HTML body shown as text: elements nested 200,000 deep would take too long to sanitize"
    )
    assert parsed.subject == "Deep" and parsed.message_id == "deep@example.net"
