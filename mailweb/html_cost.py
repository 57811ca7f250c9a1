"""Spotting HTML that would take the sanitizer minutes, before it is handed to it.

nh3 parses with html5ever, which is quadratic in two places a hostile message can reach:

- For many start tags it looks through the stack of open elements ("is there a p element in
  button scope?"), so the cost is the number of such tags times the stack's depth. 200,000
  nested ``<div>`` (1 MB) take 190 s on this project's machines; 20,000 nested ``<span>``
  followed by 20,000 ``<div>`` take 5 s.
- Each character reference ("&amp;", "&nbsp;") is appended to its text node separately, at a
  cost that grows with the node: 400,000 of them (2 MB) take 2.8 s, four times as many take
  sixteen times as long.

A message that would take that long stops its mailbox's sync on every pass, and its page would
time out on every view, so such HTML is not sanitized at all: the message is shown as text.
Real mail stays far below both limits: an Outlook-style thread quoting 600 replies nests 1,200
deep and costs an eighth of the nesting limit; a 3,000-item newsletter has 6,000 references.

The depth is estimated with a small model of the tree builder's stack: closing tags pop what
the tree builder pops, and the elements that close their own kind (``<p>``, ``<li>``, table
cells...) do so. Where the model differs from html5ever it keeps elements open longer, so it
overestimates rather than underestimates: of 180 random tag soups of 20,000 to 40,000 tags, it
refused 69, and none it let through took nh3 more than 0.4 s.
"""

from __future__ import annotations

import re

__all__ = ["MAX_CHARACTER_REFERENCES", "MAX_NESTING_WORK", "too_costly_to_sanitize"]

#: Tags times the depth of the stack they meet (summed): a few nanoseconds each in html5ever,
#: so this is about a quarter of a second.
MAX_NESTING_WORK = 50_000_000
#: About 0.2 s of appending references.
MAX_CHARACTER_REFERENCES = 100_000
# With fewer tags than this, the nesting work cannot reach its limit (n tags: at most n²/2).
_FEWEST_TAGS_OVER_THE_LIMIT = 10_000


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# A tag's name, and whether it closes. Possessive, and never reaching past the next "<": a
# "<" without its ">" costs one look at what follows it (a backtracking version took 41 s over
# one "<a" followed by 100,000 letters).
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/<>]*+)(?:[\s/][^<>]*+)?>")

_VOID = _names(
    "area base basefont bgsound br col embed frame hr img input keygen link meta param source "
    "track wbr"
)
# The HTML standard's "special" elements, minus the void ones: an end tag of another element
# does not close past them, and their own end tag closes everything opened after them.
_SPECIAL = _names(
    "address applet article aside blockquote body button caption center colgroup dd details dir "
    "div dl dt fieldset figcaption figure footer form frameset h1 h2 h3 h4 h5 h6 head header "
    "hgroup html iframe li listing main marquee menu nav noembed noframes noscript object ol p "
    "plaintext pre script section select style summary table tbody td template textarea tfoot th "
    "thead title tr ul xmp"
)
# The elements that end a search of the stack, for the searches the tree builder makes: a <p>
# "in button scope", a table cell or row "in table scope", an <li>, <dd> or <dt> to close
# (any special element but address, div and p stops that one).
_BUTTON_SCOPE = _names("applet button caption html marquee object table td template th")
_TABLE_SCOPE = _names("html table template")
_LIST_STOP = _SPECIAL - {"address", "div", "p"}
# Block starts that close an open <p> first.
_CLOSES_P = _names(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption "
    "figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr main menu nav ol p pre section "
    "summary table ul"
)
# Table parts: the tree builder ignores their start tags outside a table.
_TABLE_PARTS = _names("caption col colgroup tbody td tfoot th thead tr")
_CATEGORIES = {
    "special": _SPECIAL,
    "button": _BUTTON_SCOPE,
    "table": _TABLE_SCOPE,
    "list": _LIST_STOP,
}


def too_costly_to_sanitize(html_text: str) -> str:
    """Why sanitizing ``html_text`` would take too long, or "" when it will not."""
    references = html_text.count("&")
    if references > MAX_CHARACTER_REFERENCES:
        return f"{references:,} character references"
    if html_text.count("<") >= _FEWEST_TAGS_OVER_THE_LIMIT:
        work, deepest = _nesting_work(html_text)
        if work > MAX_NESTING_WORK:
            return f"elements nested {deepest:,} deep"
    return ""


class _Stack:
    """The open elements, with where each name and each category sits (O(1) lookups)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.positions: dict[str, list[int]] = {}
        self.marks: dict[str, list[int]] = {category: [] for category in _CATEGORIES}

    def push(self, name: str) -> None:
        index = len(self.names)
        self.names.append(name)
        self.positions.setdefault(name, []).append(index)
        for category, members in _CATEGORIES.items():
            if name in members:
                self.marks[category].append(index)

    def top_of(self, *names: str) -> int:
        return max((self.positions[n][-1] for n in names if self.positions.get(n)), default=-1)

    def top_mark(self, category: str) -> int:
        marks = self.marks[category]
        return marks[-1] if marks else -1

    def pop_to(self, index: int) -> None:
        """Pop every element from the top down to the one at ``index``, that one included."""
        while len(self.names) > index:
            name = self.names.pop()
            self.positions[name].pop()
            position = len(self.names)
            for marks in self.marks.values():
                if marks and marks[-1] == position:
                    marks.pop()

    def close_in_scope(self, names: tuple[str, ...], scope: str) -> None:
        """Close the topmost of ``names`` unless an element of ``scope`` was opened after it."""
        index = self.top_of(*names)
        if index >= 0 and index >= self.top_mark(scope):
            self.pop_to(index)


def _nesting_work(html_text: str) -> tuple[int, int]:
    """(tags times the depth each met, the deepest the stack got), by the model above."""
    stack = _Stack()
    work = deepest = 0
    for closing, raw_name in _TAG.findall(html_text):
        name = raw_name.lower()
        work += len(stack.names)  # every tag may search the stack (an end tag: for its match)
        if closing:
            index = stack.top_of(name)
            # An end tag closes past ordinary elements only; a special one's closes everything.
            if index >= 0 and (name in _SPECIAL or index >= stack.top_mark("special")):
                stack.pop_to(index)
            continue
        if name in _VOID or (name in _TABLE_PARTS and not stack.positions.get("table")):
            continue  # nothing is opened (table parts outside a table are dropped)
        if name in _CLOSES_P:
            stack.close_in_scope(("p",), "button")
        if name == "li":
            stack.close_in_scope(("li",), "list")
        elif name in ("dd", "dt"):
            stack.close_in_scope(("dd", "dt"), "list")
        elif name in ("td", "th"):
            stack.close_in_scope(("td", "th"), "table")
        elif name == "tr":
            stack.close_in_scope(("tr",), "table")
        elif name == "option" and stack.names and stack.names[-1] == "option":
            stack.pop_to(len(stack.names) - 1)
        stack.push(name)
        deepest = max(deepest, len(stack.names))
    return work, deepest
