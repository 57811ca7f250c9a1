"""Making hostile email HTML safe to show, and turning HTML into plain text.

Mail is hostile input (DESIGN.md, principle 7). Everything here is built on nh3 (the Ammonia
sanitizer, which parses HTML the way a browser does with html5ever) and an allow-list: anything
not named below is dropped. The URL and CSS rules live in one attribute filter so that every pass
over the HTML -- sanitizing, blocking remote images, rewriting ``cid:`` images -- enforces the
same policy, and a later pass can never re-open what an earlier one closed.

Pure Python, no Django: the sync workers and the web views both import it.
"""

from __future__ import annotations

import functools
import html
import re
import string
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from urllib.parse import unquote

import nh3

from mailweb.html_cost import too_costly_to_sanitize

__all__ = [
    "block_remote_images",
    "html_to_text",
    "remote_image_urls",
    "rewrite_cid_images",
    "sanitize_html",
]


def _words(text: str) -> frozenset[str]:
    """A set from a space-separated list: long allow-lists stay readable."""
    return frozenset(text.split())


ALLOWED_TAGS = _words(
    "a abbr acronym address article aside b bdi bdo big blockquote br caption center cite code "
    "col colgroup dd del details dfn div dl dt em figcaption figure font footer h1 h2 h3 h4 h5 h6 "
    "header hr i img ins kbd li main mark nav ol p pre q s samp section small span strike strong "
    "sub summary sup table tbody td tfoot th thead time tr tt u ul var wbr"
)
# Elements removed together with their content: their text is code or page chrome, not message.
# (Everything else that is not allowed -- form, input, base, meta, link... -- loses the tag and
# keeps only its harmless text.)
CLEAN_CONTENT_TAGS = _words(
    "script style title template iframe frame frameset object embed applet svg math noembed "
    "noframes head"
)
_TABLE_CELL = {"align", "valign", "width", "height", "bgcolor", "colspan", "rowspan", "nowrap"}
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "title", "dir", "lang", "align"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height", "border", "hspace", "vspace", "data-remote-src"},
    "font": {"color", "face", "size"},
    "table": {"width", "height", "border", "cellpadding", "cellspacing", "bgcolor", "summary"},
    "td": _TABLE_CELL,
    "th": _TABLE_CELL,
    "tr": {"valign", "bgcolor", "height"},
    "tbody": {"valign"},
    "thead": {"valign"},
    "tfoot": {"valign"},
    "col": {"span", "width", "valign"},
    "colgroup": {"span", "width", "valign"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value", "type"},
    "hr": {"width", "size", "noshade", "color"},
    "div": {"width"},
    "p": {"width"},
    "time": {"datetime"},
}
# CSS properties that only change how text and boxes look. Anything able to load a resource
# (background-image, list-style-image, border-image, cursor, content...) or escape the message's
# box (position, z-index, transform) is left out. ``background`` and ``list-style`` are shorthands
# that may carry url(); _clean_style drops any declaration with a function other than colours.
SAFE_CSS_PROPERTIES = _words(
    "color background background-color border border-top border-right border-bottom "
    "border-left border-color border-style border-width border-top-color border-right-color "
    "border-bottom-color border-left-color border-top-style border-right-style "
    "border-bottom-style border-left-style border-top-width border-right-width "
    "border-bottom-width border-left-width border-radius border-collapse border-spacing "
    "margin margin-top margin-right margin-bottom margin-left padding padding-top padding-right "
    "padding-bottom padding-left font font-family font-size font-style font-variant font-weight "
    "line-height letter-spacing word-spacing text-align text-decoration text-indent "
    "text-transform vertical-align white-space word-break word-wrap overflow-wrap direction "
    "width height min-width max-width min-height max-height display visibility overflow float "
    "clear list-style list-style-type list-style-position table-layout caption-side empty-cells "
    "opacity"
)
_SAFE_CSS_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla", "calc"})
_LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
_REMOTE_SCHEMES = frozenset({"http", "https"})
_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpeg|jpg|webp|bmp);base64,[a-z0-9+/=\s]*\Z", re.I)
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):", re.I)
_CSS_NAME_CHARACTERS = string.ascii_letters + string.digits + "_-"
_URL_TRIM = "".join(chr(c) for c in range(0x21))
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _normalize_url(value: str) -> tuple[str, str]:
    """Return (lower-cased scheme or "", url) the way a browser would read the attribute.

    Browsers ignore leading/trailing control characters and spaces and drop tabs and newlines
    anywhere, which is how ``jav&#x09;ascript:`` sneaks past naive checks.
    """
    url = value.strip(_URL_TRIM).replace("\t", "").replace("\n", "").replace("\r", "")
    match = _SCHEME.match(url)
    return (match.group(1).lower() if match else ""), url


#: Style attributes up to this long are remembered (at most 4,096 of them, so under 2 MB).
_CACHED_STYLE_LENGTH = 500


def _clean_style(value: str) -> str | None:
    """``_clean_style_uncached``, remembered for short values.

    Mail repeats the same few style strings on every paragraph and cell (Outlook's
    ``font-size:11pt;font-family:...``), and a sync sanitises thousands of messages; a long
    style is rare, and caching it would let one hostile message fill the memory.
    """
    if len(value) > _CACHED_STYLE_LENGTH:
        return _clean_style_uncached(value)
    return _cached_clean_style(value)


def _clean_style_uncached(value: str) -> str | None:
    """Keep only safe ``property: value`` declarations from a style attribute.

    Backslash escapes and comments are how CSS filters are usually fooled (``u\\72l(``,
    ``expr/**/ession``), so a style using them is dropped whole. Declarations that call any
    function other than a colour or calc() go too, which removes url(), image-set(),
    expression() and friends however they are spelled.
    """
    if "\\" in value or "/*" in value or "<" in value:
        return None
    kept = []
    for declaration in value.split(";"):
        name, sep, val = declaration.partition(":")
        name, val = name.strip().lower(), val.strip()
        if not sep or not val or name not in SAFE_CSS_PROPERTIES:
            continue
        if any(f.lower() not in _SAFE_CSS_FUNCTIONS for f in _css_function_names(val)):
            continue
        lowered = val.lower()
        if any(bad in lowered for bad in ("expression", "javascript", "@import", "behavior")):
            continue
        kept.append(f"{name}: {val}")
    return "; ".join(kept) or None


def _css_function_names(value: str) -> list[str]:
    """The name before each "(" of a CSS value ("" where there is none; "rgb (" reads "rgb").

    Each "(" looks back only as far as the one before it, so a value is read once whatever its
    length. A regular expression searching for a name, spaces and "(" restarted inside every
    long word and took 24 s over one style attribute of 40,000 letters.
    """
    names = []
    for before in value.split("(")[:-1]:
        before = before.rstrip()
        names.append(before[len(before.rstrip(_CSS_NAME_CHARACTERS)) :])
    return names


_cached_clean_style = functools.lru_cache(maxsize=4096)(_clean_style_uncached)


def _filter_attribute(tag: str, attr: str, value: str, *, block_remote: bool) -> str | None:
    """The single URL/CSS policy, called by nh3 for every attribute that survived the allow-list.

    nh3 has already rejected unknown schemes, but it does not know which scheme fits which
    attribute (data: only for images, never for links) or that relative URLs are meaningless in
    a message (``/x`` would hit our own server, ``//host/x`` a stranger's), so this decides.
    """
    if attr == "style":
        return _clean_style(value)
    if attr == "href":
        scheme, url = _normalize_url(value)
        if scheme in _LINK_SCHEMES or (not scheme and url.startswith("#")):
            return url
        return None
    if attr == "src":
        scheme, url = _normalize_url(value)
        if scheme == "cid" or (scheme == "data" and _DATA_IMAGE.match(url)):
            return url
        if scheme in _REMOTE_SCHEMES and not block_remote:
            return url
        return None
    if attr == "data-remote-src":
        scheme, url = _normalize_url(value)
        return url if scheme in _REMOTE_SCHEMES else None
    return value


def _make_cleaner(attribute_filter: Callable[[str, str, str], str | None]) -> nh3.Cleaner:
    """Build an nh3 cleaner with the mail allow-list and the given attribute filter."""
    return nh3.Cleaner(
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(CLEAN_CONTENT_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=attribute_filter,
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
        filter_style_properties=set(SAFE_CSS_PROPERTIES),
    )


_CLEANER = _make_cleaner(functools.partial(_filter_attribute, block_remote=False))
_BLOCKING_CLEANER = _make_cleaner(functools.partial(_filter_attribute, block_remote=True))


def sanitize_html(html_text: str) -> str:
    """Return ``html_text`` reduced to the mail allow-list; safe to store and to show framed.

    Scripts, event handlers, forms, frames, SVG/MathML, <style>/<base>/<meta>/<link>, dangerous
    URLs and CSS are removed; links open in a new tab without referrer. Remote images are kept
    (block them at display time with block_remote_images). Safe to apply again.
    """
    return _clean(_CLEANER, html_text)


def _clean(cleaner: nh3.Cleaner, html_text: str) -> str:
    """Run a cleaner; lone surrogates (from undecodable mail) would make nh3 raise.

    HTML that would keep nh3 busy for seconds or minutes (``mailweb.html_cost``) comes back
    empty, as HTML that cannot be made safe: the message is then shown as text.
    """
    if not html_text or too_costly_to_sanitize(html_text):
        return ""
    return cleaner.clean(_LONE_SURROGATE.sub("\ufffd", html_text))


def remote_image_urls(sanitized_html: str) -> list[str]:
    """List the remote (http/https) image URLs, blocked or not, in document order, de-duplicated.

    Collected by nh3's own parser rather than a regex, so it sees exactly what a browser would.
    """
    found: dict[str, None] = {}

    def collect(tag: str, attr: str, value: str) -> str | None:
        result = _filter_attribute(tag, attr, value, block_remote=False)
        remote = bool(result) and _normalize_url(result or "")[0] in _REMOTE_SCHEMES
        if tag == "img" and attr in ("src", "data-remote-src") and result and remote:
            found[result] = None
        return result

    _clean(_make_cleaner(collect), sanitized_html)
    return list(found)


class _ImageBlocker(HTMLParser):
    """Re-serializes HTML, moving remote ``<img src>`` into ``data-remote-src``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]]) -> str:
        values = {name: value or "" for name, value in attrs}
        if tag == "img" and _normalize_url(values.get("src", ""))[0] in _REMOTE_SCHEMES:
            values.setdefault("data-remote-src", values["src"])
            del values["src"]
        rendered = "".join(f' {k}="{html.escape(v, quote=True)}"' for k, v in values.items())
        return f"<{tag}{rendered}>"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.append(self._tag(tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.append(self._tag(tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(html.escape(data, quote=False))


def block_remote_images(sanitized_html: str) -> str:
    """Return the HTML with remote images disabled until a person asks for them.

    ``<img src="https://...">`` becomes ``<img data-remote-src="https://...">`` (no src, so no
    request, so the sender learns nothing); ``cid:`` and ``data:image`` images stay. The result
    goes through the sanitizer once more with remote src forbidden outright, so even input that
    html.parser reads differently from a browser cannot load anything remote. Background
    attributes and CSS url() never survive sanitizing in the first place.
    """
    blocker = _ImageBlocker()
    try:
        blocker.feed(sanitized_html)
        blocker.close()
        rewritten = "".join(blocker.out)
    except Exception:  # html.parser gave up; the blocking pass below still removes remote src.
        rewritten = sanitized_html
    return _clean(_BLOCKING_CLEANER, rewritten)


def rewrite_cid_images(html_text: str, mapping: Mapping[str, str]) -> str:
    """Point ``<img src="cid:...">`` at the URLs in ``mapping`` (Content-ID without <> -> URL).

    Meant as the last step before display: the mapped URLs are ours (often relative), so later
    sanitizing would drop them. Unknown cids are left alone; they load nothing.
    """
    return rewrite_images(html_text, mapping, remote=None)


def rewrite_images(
    html_text: str, mapping: Mapping[str, str], remote: Callable[[str], str] | None
) -> str:
    """One sanitizing pass that points images elsewhere: ``cid:`` ones through ``mapping`` and,
    when ``remote`` is given, http(s) ones (``src`` or a blocked ``data-remote-src``) through it
    (the display side passes its image proxy). The sanitizer's attribute policy runs first, so
    nothing it would drop survives.
    """
    lowered = {key.strip().strip("<>").lower(): url for key, url in mapping.items()}
    image_attributes = {"src", "data-remote-src"} if remote else {"src"}

    def rewrite(tag: str, attr: str, value: str) -> str | None:
        result = _filter_attribute(tag, attr, value, block_remote=False)
        if tag != "img" or attr not in image_attributes or not result:
            return result
        scheme = result.split(":", 1)[0].lower()
        if scheme == "cid":
            cid = unquote(result[4:]).strip().strip("<>")
            return mapping.get(cid) or lowered.get(cid.lower()) or result
        if remote is not None and scheme in {"http", "https"}:
            return remote(result)
        return result

    return _clean(_make_cleaner(rewrite), html_text)


_BLOCK_TAGS = _words(
    "address article aside blockquote caption center dd details div dl dt figcaption figure "
    "footer h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tr ul"
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template", "svg", "math", "noscript"})


class _TextRenderer(HTMLParser):
    """Collects the visible text of an HTML document with rough block structure."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.in_pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag in ("p", "blockquote", "table") else "\n")
        if tag == "pre":
            self.in_pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        if tag == "pre":
            self.in_pre = max(0, self.in_pre - 1)

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data if self.in_pre else re.sub(r"\s+", " ", data))


def html_to_text(html_text: str) -> str:
    """Render HTML as readable plain text, for search, snippets and HTML-only messages.

    Never raises: if html.parser chokes on a malformed declaration, tags are stripped crudely,
    which is good enough for text that is only ever displayed escaped.
    """
    renderer = _TextRenderer()
    try:
        renderer.feed(html_text)
        renderer.close()
        text = "".join(renderer.parts)
    except Exception:
        text = html.unescape(re.sub(r"<[^>]*>", " ", html_text))
    text = text.replace("\xa0", " ").replace("\r", "")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
