"""The shared inbox list, search results, and the list's live refresh."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from mailweb.search import search as run_search
from mailweb.selectors import InboxFilter, inbox_page, inbox_version, sidebar_counts
from mailweb.views.common import INBOX_QUERY_SESSION_KEY, htmx_target, signed_in_user


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    filters = InboxFilter.from_query(request.GET)
    request.session[INBOX_QUERY_SESSION_KEY] = filters.query()
    page = inbox_page(user, filters, cursor=request.GET.get("after"))
    context = {
        "page": page,
        "filters": filters,
        "list_query": filters.query(),
        "list_version": inbox_version(user, filters),
        "paged": bool(request.GET.get("after")),
    }
    target = htmx_target(request)
    if target == "list-more":
        return render(request, "mailweb/_list_rows.html", context)
    if target == "conversation-list":
        return render(request, "mailweb/_list.html", context)
    context["counts"] = sidebar_counts(user, filters)
    return render(request, "mailweb/inbox.html", context)


@login_required
@require_GET
def inbox_live(request: HttpRequest) -> HttpResponse:
    """Polled by the list: 204 while nothing changed, else the refreshed list."""
    user = signed_in_user(request)
    filters = InboxFilter.from_query(request.GET)
    version = inbox_version(user, filters)
    if request.GET.get("v") == version:
        return HttpResponse(status=204)
    page = inbox_page(user, filters)
    return render(
        request,
        "mailweb/_list.html",
        {
            "page": page,
            "filters": filters,
            "list_query": filters.query(),
            "list_version": version,
            "paged": False,
        },
    )


@login_required
@require_GET
def search(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    query = request.GET.get("q", "").strip()[:500]
    page_number = request.GET.get("page", "1")
    page = int(page_number) if page_number.isdigit() else 1
    results = run_search(user, query, page)
    filters = InboxFilter()
    context = {
        "results": results,
        "q": query,
        "filters": filters,
        "counts": sidebar_counts(user, filters),
        "list_query": filters.query(),
    }
    if htmx_target(request) == "conversation-list":
        return render(request, "mailweb/_search_list.html", context)
    return render(request, "mailweb/search.html", context)
