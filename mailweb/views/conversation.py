"""One conversation: reading, teamwork actions, replying, live updates and presence.

Every view resolves the conversation through ``conversation_or_404`` (the mailbox must be
visible to the person). Actions answer htmx requests with the refreshed reading pane and plain
form posts with a redirect, so everything works without JavaScript too.
"""

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from mailweb import actions, live
from mailweb.compose import MODES, initial_draft, parse_recipients
from mailweb.models import Conversation, Label, Message, OutgoingMessage
from mailweb.selectors import visible_conversations
from mailweb.views.common import (
    conversation_or_404,
    conversation_version,
    is_htmx,
    pane_context,
    render_full,
    render_pane,
    signed_in_user,
)


@login_required
@require_GET
def conversation(request: HttpRequest, pk: int) -> HttpResponse:
    user = signed_in_user(request)
    item = conversation_or_404(request, pk)
    actions.mark_read(item, user)
    compose = None
    mode = request.GET.get("compose", "")
    if mode in MODES:
        compose = _draft_context(item, mode, request.GET.get("message"))
    show = request.GET.get("images", "")
    return render_pane(
        request, item, compose=compose, show_images={int(show)} if show.isdigit() else set()
    )


def _done(request: HttpRequest, item: Conversation, **kwargs: Any) -> HttpResponse:
    """After an action: the refreshed pane for htmx (and tell the list), else a redirect."""
    if is_htmx(request):
        response = render(request, "mailweb/_pane.html", pane_context(request, item, **kwargs))
        response["HX-Trigger"] = "inbox-changed"
        return response
    if kwargs.get("error"):
        flash.error(request, kwargs["error"])
    return redirect("conversation", pk=item.pk)


ActionHandler = Callable[[HttpRequest, User, Conversation], HttpResponse | None]


def conversation_action(handler: ActionHandler) -> Callable[[HttpRequest, int], HttpResponse]:
    """A POST that changes a conversation: signed in, the conversation visible, and an
    ``ActionError`` shown to the person; a handler that returns None gets the refreshed pane."""

    @login_required
    @require_POST
    @functools.wraps(handler)
    def view(request: HttpRequest, pk: int) -> HttpResponse:
        user = signed_in_user(request)
        item = conversation_or_404(request, pk)
        try:
            response = handler(request, user, item)
        except actions.ActionError as exc:
            return _done(request, item, error=str(exc))
        return response or _done(request, item)

    return view


@conversation_action
def assign(request: HttpRequest, user: User, item: Conversation) -> None:
    choice = request.POST.get("assignee", "")
    assignee: User | None
    if choice == "me":
        assignee = user
    elif choice.isdigit():
        assignee = User.objects.filter(pk=int(choice), is_active=True).first()
        if assignee is None:
            raise actions.ActionError("That person does not exist.")
    else:
        assignee = None
    actions.assign(item, assignee, actor=user)


def _snooze_time(request: HttpRequest) -> datetime | None:
    offset = request.POST.get("tz_offset", "")
    tz: Any = (
        dt_timezone(timedelta(minutes=-int(offset)))
        if offset.lstrip("-").isdigit() and abs(int(offset)) <= 14 * 60
        else timezone.get_current_timezone()
    )
    now = timezone.now().astimezone(tz)
    preset = request.POST.get("preset", "")
    if preset == "3h":
        return now + timedelta(hours=3)
    morning = now.replace(hour=8, minute=0, second=0, microsecond=0)
    if preset == "tomorrow":
        return morning + timedelta(days=1)
    if preset == "monday":
        return morning + timedelta(days=(7 - now.weekday()) or 7)
    raw = request.POST.get("until", "")
    parsed = parse_datetime(raw) if raw else None
    if parsed is None:
        return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=tz)


@conversation_action
def status(request: HttpRequest, user: User, item: Conversation) -> HttpResponse | None:
    new_status = request.POST.get("status", "")
    until = _snooze_time(request) if new_status == Conversation.Status.SNOOZED else None
    actions.set_status(item, new_status, actor=user, snooze_until=until)
    if not is_htmx(request) and request.POST.get("next") == "inbox":
        return redirect("inbox")
    return None


@conversation_action
def labels(request: HttpRequest, user: User, item: Conversation) -> None:
    ids = [int(value) for value in request.POST.getlist("label") if value.isdigit()]
    chosen = list(Label.objects.filter(pk__in=ids))
    new_name = request.POST.get("new_label", "").strip()
    if new_name:
        chosen.append(actions.create_label(new_name))
    actions.set_labels(item, chosen, actor=user)


@conversation_action
def note(request: HttpRequest, user: User, item: Conversation) -> None:
    actions.add_note(item, request.POST.get("body", ""), author=user)


@login_required
@require_POST
def unread(request: HttpRequest, pk: int) -> HttpResponse:
    user = signed_in_user(request)
    item = conversation_or_404(request, pk)
    actions.mark_unread(item, user)
    return redirect("inbox")


def _draft_context(item: Conversation, mode: str, message_id: str | None) -> dict[str, Any]:
    message = None
    if message_id and message_id.isdigit():
        message = item.messages.filter(pk=int(message_id)).first()
    if message is None:
        message = item.messages.order_by("-received_at", "-id").first()
    draft = initial_draft(item.mailbox, message, mode)
    return {"draft": draft, "error": ""}


@login_required
@require_GET
def compose(request: HttpRequest, pk: int) -> HttpResponse:
    item = conversation_or_404(request, pk)
    mode = request.GET.get("mode", "reply")
    context = _draft_context(item, mode, request.GET.get("message"))
    if is_htmx(request):
        return render(request, "mailweb/_composer.html", {"conversation": item, "compose": context})
    return redirect(
        reverse("conversation", args=[item.pk])
        + f"?compose={mode if mode in MODES else 'reply'}&message={context['draft'].message_id}"
        + "#composer"
    )


@login_required
@require_POST
def send(request: HttpRequest, pk: int) -> HttpResponse:
    user = signed_in_user(request)
    item = conversation_or_404(request, pk)
    mode = request.POST.get("mode", "reply")
    message_id = request.POST.get("message", "")
    parent = item.messages.filter(pk=int(message_id)).first() if message_id.isdigit() else None
    draft = initial_draft(item.mailbox, parent, mode)
    draft.to = request.POST.get("to", "")
    draft.cc = request.POST.get("cc", "")
    draft.bcc = request.POST.get("bcc", "")
    draft.subject = request.POST.get("subject", "").strip()
    draft.body = request.POST.get("body", "")
    try:
        to = parse_recipients(draft.to)
        cc = parse_recipients(draft.cc)
        bcc = parse_recipients(draft.bcc)
        with transaction.atomic():
            outgoing = actions.queue_reply(
                item,
                author=user,
                to=to,
                cc=cc,
                bcc=bcc,
                subject=draft.subject,
                body=draft.body,
                reply_to=parent if mode != "forward" else None,
                forward_of=parent if mode == "forward" else None,
            )
            _enqueue_send(outgoing)
    except (ValidationError, actions.ActionError) as exc:
        error = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
        compose_context = {"draft": draft, "error": error}
        if is_htmx(request):
            response = render(
                request,
                "mailweb/_composer.html",
                {"conversation": item, "compose": compose_context},
            )
            response["HX-Retarget"] = "#composer"
            response["HX-Reswap"] = "outerHTML"
            return response
        return render_full(request, pane_context(request, item, compose=compose_context))
    live.leave(item.pk, user.pk)
    return _done(request, item)


def _enqueue_send(outgoing: OutgoingMessage) -> None:
    from sync.outbox_tasks import send_outgoing

    transaction.on_commit(lambda: send_outgoing.delay(outgoing.pk))


@login_required
@require_POST
def retry(request: HttpRequest, pk: int) -> HttpResponse:
    user = signed_in_user(request)
    outgoing = OutgoingMessage.objects.filter(
        pk=pk, conversation__in=visible_conversations(user)
    ).first()
    if outgoing is None or outgoing.conversation is None:
        raise Http404("No such message")
    with transaction.atomic():
        if actions.retry_outgoing(outgoing, actor=user):
            _enqueue_send(outgoing)
    item = conversation_or_404(request, outgoing.conversation.pk)
    return _done(request, item)


@login_required
@require_GET
def live_updates(request: HttpRequest, pk: int) -> HttpResponse:
    """Polled by the reading pane: 204 while nothing changed, else the refreshed parts."""
    item = conversation_or_404(request, pk)
    if request.GET.get("v") == conversation_version(item):
        return HttpResponse(status=204)
    actions.mark_read(item, signed_in_user(request))
    response = render(request, "mailweb/_live.html", pane_context(request, item))
    response["HX-Trigger"] = "inbox-changed"
    return response


@login_required
@require_POST
def presence(request: HttpRequest, pk: int) -> HttpResponse:
    user = signed_in_user(request)
    item = conversation_or_404(request, pk)
    state = request.POST.get("state", live.VIEWING)
    if state == "left":
        live.leave(item.pk, user.pk)
        return HttpResponse(status=204)
    others = live.announce(item.pk, user.pk, user.display_name, state)
    return render(request, "mailweb/_presence.html", {"others": others, "conversation": item})


def message_in(item: Conversation, pk: int) -> Message:
    message = item.messages.filter(pk=pk).first()
    if message is None:
        raise Http404("No such message")
    return message
