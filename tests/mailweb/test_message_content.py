"""Message bodies in sandboxed frames, blocked remote images, cid images, safe downloads."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import MailAccount
from mailweb.models import Message
from mailweb.views.messages import safe_download_type
from tests.mailweb.factories import PNG, deliver

pytestmark = pytest.mark.django_db

HOSTILE = """
<p onclick="alert(1)">Hello <a href="javascript:alert(2)">click</a></p>
<script>alert(3)</script>
<img src="https://tracker.example.net/pixel.gif?u=42" width="1" height="1">
<img src="cid:logo@x">
<svg onload="alert(4)"><script>alert(5)</script></svg>
<div style="background-image:url(https://tracker.example.net/bg.png)">styled</div>
<iframe src="https://evil.example.net/"></iframe>
<form action="https://evil.example.net/"><input name="password"></form>
"""


@pytest.fixture
def hostile(mailbox: MailAccount) -> Message:
    return deliver(
        mailbox,
        subject="Hostile",
        text="plain fallback",
        html=HOSTILE,
        inline=[("logo@x", "image/png", PNG)],
        attachments=[
            ("invoice.html", "text/html", b"<script>alert(6)</script>"),
            ("photo.svg", "image/svg+xml", b"<svg onload='alert(7)'/>"),
            ("report.pdf", "application/pdf", b"%PDF-1.4"),
        ],
    )


def test_html_is_framed_in_a_sandbox_without_scripts(
    member_client: Client, hostile: Message
) -> None:
    page = member_client.get(f"/c/{hostile.conversation_id}/").content.decode()
    frame = re.search(r"<iframe[^>]*class=\"message-frame\"[^>]*>", page)
    assert frame is not None
    tag = frame.group(0)
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in tag
    assert "allow-scripts" not in tag
    assert f'src="/m/{hostile.pk}/frame"' in tag
    assert "alert(" not in page
    assert "Images from the sender are hidden" in page


def test_frame_document_has_its_own_strict_policy(member_client: Client, hostile: Message) -> None:
    response = member_client.get(f"/m/{hostile.pk}/frame")
    policy = response["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # falls back to default-src 'none'
    assert "img-src http://testserver data:" in policy
    assert "frame-ancestors 'self'" in policy
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["Referrer-Policy"] == "no-referrer"
    body = response.content.decode()
    assert '<meta http-equiv="Content-Security-Policy"' in body
    for bad in ("<script", "onclick", "javascript:", "onload", "<svg", "<iframe", "<form", "url("):
        assert bad not in body.split("</head>")[1], bad
    # Remote images are blocked: no src pointing anywhere but here.
    assert "tracker.example.net/pixel.gif" not in re.findall(r'src="([^"]*)"', body)
    assert 'data-remote-src="https://tracker.example.net/pixel.gif?u=42"' in body
    cid = hostile.attachments.get(content_id__contains="logo")
    assert f'src="/a/{cid.pk}/inline"' in body


def test_show_images_goes_through_the_proxy(member_client: Client, hostile: Message) -> None:
    body = member_client.get(f"/m/{hostile.pk}/frame?images=1").content.decode()
    sources = re.findall(r'<img[^>]*src="([^"]*)"', body)
    assert any(src.startswith("/img?t=") for src in sources)
    assert not any("tracker.example.net" in src for src in sources)


def test_text_only_mail_is_escaped(member_client: Client, mailbox: MailAccount) -> None:
    message = deliver(mailbox, text="<b>not bold</b> see https://example.org/x")
    page = member_client.get(f"/c/{message.conversation_id}/").content.decode()
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page
    assert '<a href="https://example.org/x" rel="nofollow">' in page


def test_attachments_always_download_with_safe_types(
    member_client: Client, hostile: Message
) -> None:
    by_name = {a.filename: a for a in hostile.attachments.all()}
    html = member_client.get(f"/a/{by_name['invoice.html'].pk}/")
    assert html["Content-Type"] == "application/octet-stream"
    assert html["Content-Disposition"].startswith("attachment;")
    assert 'filename="invoice.html"' in html["Content-Disposition"]
    assert html["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in html["Content-Security-Policy"]
    svg = member_client.get(f"/a/{by_name['photo.svg'].pk}/")
    assert svg["Content-Type"] == "application/octet-stream"
    pdf = member_client.get(f"/a/{by_name['report.pdf'].pk}/")
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content == b"%PDF-1.4"


def test_inline_route_serves_raster_images_only(member_client: Client, hostile: Message) -> None:
    logo = hostile.attachments.get(content_id__contains="logo")
    response = member_client.get(f"/a/{logo.pk}/inline")
    assert response["Content-Type"] == "image/png"
    assert response.content == PNG
    assert response["Content-Security-Policy"] == "default-src 'none'"
    svg = hostile.attachments.get(filename="photo.svg")
    assert member_client.get(f"/a/{svg.pk}/inline").status_code == 404


def test_original_message_downloads(member_client: Client, hostile: Message) -> None:
    response = member_client.get(f"/m/{hostile.pk}/raw")
    assert response["Content-Disposition"] == f'attachment; filename="message-{hostile.pk}.eml"'
    assert b"Subject: Hostile" in response.content


@pytest.mark.parametrize(
    ("declared", "served"),
    [
        ("text/html", "application/octet-stream"),
        ("application/xhtml+xml", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("application/javascript", "application/octet-stream"),
        ("text/plain", "text/plain; charset=utf-8"),
        ("text/csv; charset=latin-1", "text/plain; charset=utf-8"),
        ("image/png", "image/png"),
        ("application/pdf", "application/pdf"),
        ("bogus", "application/octet-stream"),
        ("", "application/octet-stream"),
    ],
)
def test_safe_download_type(declared: str, served: str) -> None:
    assert safe_download_type(declared) == served
