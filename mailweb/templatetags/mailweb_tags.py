"""Small template helpers for the inbox: address lists, timeline sentences, counters."""

from datetime import datetime, timedelta
from typing import Any

from django import template
from django.template.defaultfilters import capfirst
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime
from django.utils.timesince import timesince

from mailweb.models import Activity
from mailweb.selectors import unread_notification_count

register = template.Library()


@register.simple_tag(takes_context=True)
def notification_count(context: dict[str, Any]) -> int:
    request = context.get("request")
    user = getattr(request, "user", None)
    return unread_notification_count(user) if user is not None else 0


@register.filter
def addresses(pairs: Any) -> str:
    """[[name, address], ...] -> "Name <address>, other@x" for display (escaped by Django)."""
    out = []
    for pair in pairs or []:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            name, address = pair
            out.append(f"{name} <{address}>" if name else str(address))
    return ", ".join(out)


@register.filter
def initials(text: str) -> str:
    words = [word for word in (text or "?").replace("@", " ").replace(".", " ").split() if word]
    return "".join(word[0] for word in words[:2]).upper() or "?"


@register.filter
def ago(value: datetime | None) -> str:
    """Say "just now" within the last minute, else "3 minutes ago" (Django's ``timesince``).

    A mailbox that synced seconds ago would otherwise read "0 minutes ago".
    """
    if value is None:
        return ""
    if timezone.now() - value < timedelta(minutes=1):
        return "just now"
    return f"{timesince(value)} ago"


@register.filter
def smartdate(value: datetime | None) -> str:
    """Today: 14:05; this year: 3 Mar; older: 3 Mar 2023."""
    if value is None:
        return ""
    return _smartdate(timezone.localtime(value), timezone.localtime())


def _smartdate(local: datetime, now: datetime) -> str:
    if local.date() == now.date():
        return local.strftime("%H:%M")
    if local.year == now.year:
        return f"{local.day} {local.strftime('%b')}"
    return f"{local.day} {local.strftime('%b %Y')}"


@register.simple_tag
def list_rows(conversations: Any, current: Any = None) -> list[dict[str, Any]]:
    """What ``_rows.html`` shows of each conversation, as plain strings worked out once per
    list (no template lookups, filters or ``{% url %}`` per row): dictionaries, the fastest
    thing for the template engine to look into. ``current`` is the open conversation, if any.

    Each value is what the former per-row template printed (escaped by the template as before).
    """
    prefix = reverse("conversation", args=[0]).removesuffix("0/")
    now = timezone.localtime()
    current_pk = getattr(current, "pk", None)
    rows = []
    for c in conversations:
        when = c.last_activity_at
        local = timezone.localtime(when) if when is not None else None
        mailbox = c.mailbox
        assignee = c.assignee
        assignee_name = assignee.display_name if assignee is not None else ""
        count = c.message_count
        rows.append(
            {
                "pk": c.pk,
                "url": f"{prefix}{c.pk}/",
                "unread": bool(getattr(c, "is_unread", False)),
                "current": current_pk is not None and c.pk == current_pk,
                "sender": c.last_sender or "(unknown sender)",
                "count": str(count) if count > 1 else "",
                "when_iso": local.isoformat() if local is not None else "",
                "when_title": formats.localize(local) if local is not None else "None",
                "when": _smartdate(local, now) if local is not None else "",
                "subject": c.subject or "(no subject)",
                "snippet": c.snippet,
                "mailbox": mailbox.display_name or mailbox.address,
                "status": c.status,
                "status_label": capfirst(c.status),
                "attachments": c.has_attachments,
                "labels": [(label.color, label.name) for label in c.labels.all()],
                "assignee": assignee_name,
                "initials": initials(assignee_name) if assignee is not None else "",
            }
        )
    return rows


STATUS_WORDS = {"open": "reopened", "pending": "set to pending", "closed": "closed"}


@register.filter
def activity_text(activity: Activity) -> str:
    data = activity.data or {}
    who = activity.actor.display_name if activity.actor else "Mailweb"
    kind = activity.kind
    if kind == "assign":
        return f"{who} assigned this to {data.get('to', 'someone')}"
    if kind == "unassign":
        return f"{who} unassigned {data.get('previous') or 'this'}"
    if kind == "status":
        status = data.get("status", "")
        if status == "snoozed":
            until = parse_datetime(str(data.get("until", "")))
            when = timezone.localtime(until).strftime("%a %d %b, %H:%M") if until else "later"
            return f"{who} snoozed this until {when}"
        reason = f" ({data['reason']})" if data.get("reason") else ""
        return f"{who} {STATUS_WORDS.get(status, 'changed the status of')} this{reason}"
    if kind == "label":
        return f"{who} added {', '.join(data.get('added', []))}"
    if kind == "unlabel":
        return f"{who} removed {', '.join(data.get('removed', []))}"
    if kind == "reply":
        return f"{who} replied to {data.get('to', '')}"
    if kind == "forward":
        return f"{who} forwarded this to {data.get('to', '')}"
    if kind == "retry":
        return f"{who} retried sending a reply"
    return f"{who}: {kind}"


@register.filter
def status_label(status: str) -> str:
    return str(status).capitalize()


@register.simple_tag
def remote_images(message: Any) -> int:
    """How many remote images the message's HTML would load (0 for text-only mail)."""
    from mailweb import html_safety

    if not message.html_body or "<img" not in message.html_body.lower():
        return 0
    return len(html_safety.remote_image_urls(message.html_body))
