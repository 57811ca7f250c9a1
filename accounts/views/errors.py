"""The page shown when a Microsoft sign-in fails: what happened and what to do next."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts import microsoft

TITLES = {
    "app_registration": "Mailweb's app registration needs attention",
    "transient": "Microsoft could not be reached",
    "reconnect": "Microsoft refused the sign-in",
    "flow": "The sign-in did not complete",
}


def flow_error(
    request: HttpRequest, error: microsoft.MicrosoftError, retry_url: str
) -> HttpResponse:
    """A readable page for a failed sign-in (never a 500)."""
    status = {"transient": 503, "app_registration": 502}.get(error.kind, 400)
    return render(
        request,
        "accounts/microsoft_error.html",
        {
            "title": TITLES.get(error.kind, "The sign-in did not complete"),
            "error": error,
            "retry_url": retry_url,
            "is_admin": is_admin(request),
        },
        status=status,
    )


def is_admin(request: HttpRequest) -> bool:
    return bool(getattr(request.user, "is_admin", False))
