"""The shared inbox list."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from mailweb.selectors import visible_conversations


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    conversations = visible_conversations(request.user).select_related("mailbox", "assignee")[:50]
    return render(request, "mailweb/inbox.html", {"conversations": conversations})
