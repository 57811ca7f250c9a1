"""Helpers the inbox views share: access checks, htmx detection, the reading-pane context."""

import hashlib
from typing import Any

from django.db.models import Q
from django.http import Http404, HttpRequest
from django.shortcuts import render
from django.template.response import TemplateResponse

from accounts.models import User
from mailweb import live
from mailweb.models import Conversation, Label, Message
from mailweb.selectors import (
    InboxFilter,
    conversation_thread,
    inbox_page,
    sidebar_counts,
    teammates,
    visible_conversation_or_none,
)

INBOX_QUERY_SESSION_KEY = "mailweb.inbox_query"


def signed_in_user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # login_required ran first
    return user


def conversation_or_404(request: HttpRequest, pk: int) -> Conversation:
    """The conversation if the user may see its mailbox; a 404 otherwise (never a 403, which
    would confirm that it exists)."""
    conversation = visible_conversation_or_none(request.user, pk)
    if conversation is None:
        raise Http404("No such conversation")
    return conversation


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def htmx_target(request: HttpRequest) -> str:
    return request.headers.get("HX-Target", "") if is_htmx(request) else ""


def remembered_filter(request: HttpRequest) -> InboxFilter:
    """The list filter the person last used, so the list beside a conversation stays put."""
    from django.http import QueryDict

    return InboxFilter.from_query(QueryDict(request.session.get(INBOX_QUERY_SESSION_KEY, "")))


def pane_context(
    request: HttpRequest,
    conversation: Conversation,
    *,
    compose: dict[str, Any] | None = None,
    error: str = "",
    show_images: set[int] | None = None,
) -> dict[str, Any]:
    user = signed_in_user(request)
    thread = conversation_thread(conversation)
    messages: list[Message] = thread.messages
    return {
        "conversation": conversation,
        "thread": thread,
        "newest_message": messages[-1] if messages else None,
        "labels": list(Label.objects.all()),
        "conversation_label_ids": {label.pk for label in conversation.labels.all()},
        "teammates": list(teammates(user, conversation.mailbox).order_by("name", "email")),
        "others": live.present(conversation.pk, user.pk),
        "compose": compose,
        "error": error,
        "show_images": show_images or set(),
        "version": conversation_version(conversation),
        "statuses": Conversation.Status.choices,
    }


def conversation_version(conversation: Conversation) -> str:
    """Changes whenever anything shown in the reading pane changes (polled every few seconds)."""
    from django.db.models import Count, Max, OuterRef, Subquery

    from mailweb.models import Activity, Note, OutgoingMessage

    def newest(model: Any) -> Subquery:
        return Subquery(
            model.objects.filter(conversation=OuterRef("pk"))
            .values("conversation")
            .annotate(newest=Max("id"))
            .values("newest")[:1]
        )

    outbox = (
        OutgoingMessage.objects.filter(conversation=OuterRef("pk"))
        .values("conversation")
        .annotate(
            n=Count("id"),
            sent=Count("id", filter=Q(status="sent")),
            failed=Count("id", filter=Q(status="failed")),
            newest=Max("id"),
        )
    )
    row = (
        Conversation.objects.filter(pk=conversation.pk)
        .annotate(
            activity=newest(Activity),
            note=newest(Note),
            out_sent=Subquery(outbox.values("sent")[:1]),
            out_failed=Subquery(outbox.values("failed")[:1]),
            out_newest=Subquery(outbox.values("newest")[:1]),
        )
        .values_list(
            "status",
            "assignee_id",
            "message_count",
            "last_activity_at",
            "activity",
            "note",
            "out_sent",
            "out_failed",
            "out_newest",
        )
        .first()
    )
    return hashlib.sha256(repr(row).encode()).hexdigest()[:16]


def render_pane(request: HttpRequest, conversation: Conversation, **kwargs: Any) -> Any:
    """The reading pane alone (htmx) or the whole page around it."""
    context = pane_context(request, conversation, **kwargs)
    if htmx_target(request) == "reading-pane":
        return render(request, "mailweb/_pane.html", context)
    return render_full(request, context)


def render_full(request: HttpRequest, context: dict[str, Any]) -> TemplateResponse:
    user = signed_in_user(request)
    filters = remembered_filter(request)
    page = inbox_page(user, filters)
    return TemplateResponse(
        request,
        "mailweb/inbox.html",
        {
            **context,
            "page": page,
            "filters": filters,
            "counts": sidebar_counts(user, filters),
            "list_query": filters.query(),
        },
    )
