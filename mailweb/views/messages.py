"""Message bodies, attachments, original messages and the image proxy.

Everything a message carries is hostile: bodies are served as their own documents under a
CSP that allows no script and no network but our image routes, inside a sandboxed frame;
attachments always download (never render in our origin); remote images come only through
the proxy, and only after the reader asked.
"""

import logging
import re

from django.contrib.auth.decorators import login_required
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.cache import cache_control
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from mailweb import image_proxy
from mailweb.blobs import get_blob, has_blob
from mailweb.message_html import frame_policy, is_safe_inline_image, render_body
from mailweb.selectors import visible_attachment_or_none, visible_message_or_none

logger = logging.getLogger(__name__)

DOWNLOAD_POLICY = "default-src 'none'; sandbox"
# Types a browser might render as a document or run as script are always sent as bytes.
_DANGEROUS_TYPES = re.compile(
    r"(html|xml|svg|javascript|ecmascript|x-sh|x-shockwave|x-msdownload|json|css|rfc822)",
    re.I,
)
_VALID_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$", re.I)


def safe_download_type(declared: str) -> str:
    content_type = (declared or "").split(";")[0].strip().lower()
    if not _VALID_TYPE.match(content_type) or _DANGEROUS_TYPES.search(content_type):
        return "application/octet-stream"
    if content_type.startswith("text/"):
        return "text/plain; charset=utf-8"
    return content_type


def _harden(response: HttpResponse, policy: str = DOWNLOAD_POLICY) -> HttpResponse:
    response["Content-Security-Policy"] = policy
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


@login_required
@require_GET
@xframe_options_sameorigin
@cache_control(private=True, no_store=True)
def frame(request: HttpRequest, pk: int) -> HttpResponse:
    """The HTML body of one message as a document for a sandboxed iframe."""
    message = visible_message_or_none(request.user, pk)
    if message is None or not message.html_body:
        raise Http404("No such message")
    body = render_body(message, show_images=request.GET.get("images") == "1")
    origin = f"{request.scheme}://{request.get_host()}"
    policy = frame_policy(origin)
    # The same policy inside the document (frame-ancestors only works as a header).
    meta_policy = "; ".join(p for p in policy.split("; ") if not p.startswith("frame-ancestors"))
    response = render(request, "mailweb/frame.html", {"body": body, "policy": meta_policy})
    response["Referrer-Policy"] = "no-referrer"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = policy
    return response


@login_required
@require_GET
def attachment(request: HttpRequest, pk: int) -> HttpResponse:
    item = visible_attachment_or_none(request.user, pk)
    if item is None or not has_blob(item.sha256):
        raise Http404("No such attachment")
    response = HttpResponse(
        get_blob(item.sha256), content_type=safe_download_type(item.content_type)
    )
    filename = item.filename or f"attachment-{item.pk}"
    response["Content-Disposition"] = content_disposition_header(True, filename) or "attachment"
    return _harden(response)


@login_required
@require_GET
@cache_control(private=True, max_age=3600)
def attachment_inline(request: HttpRequest, pk: int) -> HttpResponse:
    """An inline (cid:) image for a message frame: raster images only, never a document."""
    item = visible_attachment_or_none(request.user, pk)
    if item is None or not is_safe_inline_image(item) or not has_blob(item.sha256):
        raise Http404("No such image")
    response = HttpResponse(get_blob(item.sha256), content_type=item.content_type.lower())
    response["Content-Disposition"] = "inline"
    return _harden(response, "default-src 'none'")


@login_required
@require_GET
def raw(request: HttpRequest, pk: int) -> HttpResponse:
    """The original message, byte for byte, as a .eml download."""
    message = visible_message_or_none(request.user, pk)
    if message is None or not has_blob(message.raw_sha256):
        raise Http404("No such message")
    response = HttpResponse(get_blob(message.raw_sha256), content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="message-{message.pk}.eml"'
    return _harden(response)


@login_required
@require_GET
@cache_control(private=True, max_age=86400)
def proxy(request: HttpRequest) -> HttpResponse:
    """A remote image fetched by the server for a message the reader can see."""
    try:
        message_id, url = image_proxy.unsign(request.GET.get("t", ""))
    except image_proxy.ProxyError as exc:
        raise SuspiciousOperation("tampered image URL") from exc
    if visible_message_or_none(request.user, message_id) is None:
        raise Http404("No such message")
    try:
        image = image_proxy.fetch(url)
    except image_proxy.ProxyError as exc:
        logger.info("image proxy refused a fetch for message %s: %s", message_id, exc)
        return _harden(HttpResponse(status=404), "default-src 'none'")
    response = HttpResponse(image.data, content_type=image.content_type)
    response["Content-Disposition"] = "inline"
    return _harden(response, "default-src 'none'")
