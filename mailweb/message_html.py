"""Preparing a stored (already sanitized) HTML body for display in its sandboxed frame.

Display is a second line of defence on top of sanitizing at ingest: the HTML goes through the
sanitizer again, remote images stay blocked unless the reader asked for them (and then point
at our proxy), and ``cid:`` images point at the message's own attachments. The frame document
carries its own Content-Security-Policy (see ``frame_policy``), so even a sanitizer miss cannot
run script or reach another host.
"""

from dataclasses import dataclass

from django.urls import reverse

from mailweb import html_safety, image_proxy
from mailweb.models import Attachment, Message

SAFE_INLINE_IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif"}
)


@dataclass(frozen=True)
class RenderedBody:
    html: str
    remote_images: int
    images_shown: bool


def frame_policy(origin: str) -> str:
    """The frame's CSP: no script, no network except our own image routes, inline CSS only."""
    return "; ".join(
        [
            "default-src 'none'",
            f"img-src {origin} data:",
            "style-src 'unsafe-inline'",
            "font-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'self'",
        ]
    )


def cid_map(message: Message) -> dict[str, str]:
    """Content-ID (without <>) -> URL of the inline attachment, for raster images only."""
    mapping: dict[str, str] = {}
    for attachment in message.attachments.all():
        if attachment.content_id and attachment.content_type.lower() in SAFE_INLINE_IMAGE_TYPES:
            cid = attachment.content_id.strip().strip("<>")
            mapping[cid] = reverse("attachment-inline", args=[attachment.pk])
    return mapping


def render_body(message: Message, *, show_images: bool) -> RenderedBody:
    sanitized = html_safety.sanitize_html(message.html_body)
    remote = html_safety.remote_image_urls(sanitized)
    mapping = cid_map(message)
    if show_images and remote:
        html = html_safety.rewrite_images(
            sanitized, mapping, remote=lambda url: proxy_url(message.pk, url)
        )
    else:
        html = html_safety.rewrite_cid_images(html_safety.block_remote_images(sanitized), mapping)
    return RenderedBody(html=html, remote_images=len(remote), images_shown=show_images)


def proxy_url(message_id: int, url: str) -> str:
    return reverse("image-proxy") + "?t=" + image_proxy.sign(message_id, url)


def is_safe_inline_image(attachment: Attachment) -> bool:
    return attachment.content_type.lower() in SAFE_INLINE_IMAGE_TYPES
