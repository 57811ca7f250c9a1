"""In-app notifications: @mentions, assignments, ended snoozes."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from mailweb import actions
from mailweb.selectors import notifications_for
from mailweb.views.common import signed_in_user


@login_required
@require_GET
def notifications(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    return render(request, "mailweb/notifications.html", {"items": notifications_for(user)})


@login_required
@require_POST
def mark_read(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    ids = [int(value) for value in request.POST.getlist("id") if value.isdigit()]
    actions.mark_notifications_read(user, ids or None)
    target = request.POST.get("conversation", "")
    if target.isdigit():
        return redirect("conversation", pk=int(target))
    return redirect("notifications")
