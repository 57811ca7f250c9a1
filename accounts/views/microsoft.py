"""Connect Microsoft: start the sign-in, come back on the callback, store the grant.

``/mailboxes/connect/microsoft/`` (admin) and ``/mailboxes/<id>/reconnect/`` start an auth-code
flow (state, PKCE S256, nonce) kept server-side in the session; Microsoft redirects to
``/oauth/microsoft/callback/`` (``MAILWEB_BASE_URL`` + that path is the redirect URI registered
in Entra). The same callback finishes "Sign in with Microsoft" for team members
(``accounts.views.signin``). Every failure renders a page that says what happened and what to do
next; none becomes a 500.
"""

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import actions, flows, microsoft
from accounts.decorators import admin_required
from accounts.forms import ConnectMicrosoftForm
from accounts.models import MailAccount
from accounts.views import signin
from accounts.views.errors import flow_error, is_admin

PURPOSE_CONNECT = "connect"


@never_cache
@admin_required
@require_http_methods(["GET", "POST"])
def connect(request: HttpRequest) -> HttpResponse:
    """The "Connect Microsoft mailbox" form; a valid POST goes to Microsoft."""
    if not microsoft.is_configured():
        return _not_configured(request)
    form = ConnectMicrosoftForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        return _start_connect(
            request,
            method=form.cleaned_data["method"],
            shared_address=form.cleaned_data["shared_address"],
        )
    return render(
        request,
        "accounts/connect_microsoft.html",
        {"form": form, "redirect_uri": microsoft.redirect_uri()},
    )


@never_cache
@admin_required
@require_http_methods(["GET", "POST"])
def reconnect(request: HttpRequest, pk: int) -> HttpResponse:
    """Sign in again for an existing mailbox (after a revocation, or to resume a kept one)."""
    mailbox = get_object_or_404(MailAccount, pk=pk)
    if not mailbox.uses_oauth:
        return redirect(reverse("mailbox_add_imap") + "?" + urlencode({"address": mailbox.address}))
    if not microsoft.is_configured():
        return _not_configured(request)
    if request.method == "POST":
        return _start_connect(
            request,
            method=mailbox.method,
            shared_address=mailbox.address if mailbox.is_shared else "",
            mailbox=mailbox,
        )
    return render(
        request,
        "accounts/reconnect.html",
        {"mailbox": mailbox, "sign_in_as": mailbox.delegate_address or mailbox.address},
    )


def _start_connect(
    request: HttpRequest,
    *,
    method: str,
    shared_address: str,
    mailbox: MailAccount | None = None,
) -> HttpResponse:
    login_hint = (mailbox.delegate_address or mailbox.address) if mailbox else None
    scopes = microsoft.connect_scopes(method, shared=bool(shared_address))
    try:
        flow = microsoft.start_auth_code_flow(scopes, login_hint=login_hint)
    except microsoft.MicrosoftError as exc:
        return flow_error(request, exc, retry_url=request.path)
    flows.remember(
        request,
        flow,
        PURPOSE_CONNECT,
        method=method,
        shared_address=shared_address,
        mailbox_id=mailbox.pk if mailbox else None,
        retry_url=request.path,
    )
    return HttpResponseRedirect(flow["auth_uri"])


@never_cache
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """Where Microsoft sends the browser back with a code (or an error) and the state."""
    pending = flows.take(request, request.GET.get("state", ""))
    if pending is None:
        return flow_error(
            request,
            microsoft.MicrosoftError(
                "flow",
                "This sign-in has expired or was already used, or it was started in another "
                "browser. Start again from the Mailboxes page.",
                error="unknown_state",
            ),
            retry_url=reverse("mailboxes") if is_admin(request) else reverse("login"),
        )
    retry_url = pending.get("retry_url") or reverse("mailboxes")
    if pending["purpose"] == PURPOSE_CONNECT and not is_admin(request):
        raise PermissionDenied("Only admins connect mailboxes.")
    try:
        grant = microsoft.finish_auth_code_flow(pending["flow"], request.GET.dict())
    except microsoft.MicrosoftError as exc:
        return flow_error(request, exc, retry_url=retry_url)
    if pending["purpose"] == signin.PURPOSE_SIGN_IN:
        return signin.finish_sign_in(request, grant, pending)
    return _finish_connect(request, grant, pending)


def _finish_connect(
    request: HttpRequest, grant: microsoft.TokenGrant, pending: dict[str, Any]
) -> HttpResponse:
    retry_url = pending.get("retry_url") or reverse("mailbox_connect_microsoft")
    claims = grant.id_claims
    signer = str(claims.get("preferred_username") or claims.get("email") or "").strip()
    if "@" not in signer:
        return _connect_failed(
            request,
            "Microsoft did not say which account signed in (the ID token has no "
            "preferred_username or email). Check that the app registration has the openid, "
            "profile and email permissions.",
            retry_url,
        )
    if not grant.refresh_token:
        return _connect_failed(
            request,
            "Microsoft did not issue a refresh token, so Mailweb could not keep syncing. Check "
            "that the app registration has the offline_access permission.",
            retry_url,
        )
    shared = str(pending.get("shared_address") or "")
    address = shared or signer
    target_id = pending.get("mailbox_id")
    if target_id:
        target = MailAccount.objects.filter(pk=target_id).first()
        if target is None:
            return _connect_failed(
                request, "That mailbox was deleted while you were signing in.", retry_url
            )
        if target.address.lower() != address.lower():
            return _connect_failed(
                request,
                f"You signed in as {signer}, but this is the mailbox {target.address}. Sign "
                f'in again as {target.address} (use "Use another account" at Microsoft).',
                retry_url,
            )
    method = str(pending["method"])
    mailbox, created = actions.connect_microsoft_mailbox(
        address,
        method=method,
        tenant_id=str(claims.get("tid") or ""),
        refresh_token=grant.refresh_token,
        access_token=grant.access_token,
        resource=microsoft.resource_of(method),
        expires_at=grant.expires_at,
        is_shared=bool(shared),
        delegate_address=signer if shared else "",
        display_name="" if shared else str(claims.get("name") or ""),
        connected_by=request.user,  # type: ignore[arg-type]
    )
    if created:
        note = "It will start syncing in a moment."
        if method == MailAccount.Method.GRAPH:
            note = "Mail sync starts once Mailweb's Graph engine is available."
        messages.success(request, f"Connected {mailbox.address}. {note}")
    else:
        messages.success(request, f"Reconnected {mailbox.address}.")
    return redirect("mailboxes")


def _connect_failed(request: HttpRequest, reason: str, retry_url: str) -> HttpResponse:
    return flow_error(
        request, microsoft.MicrosoftError("flow", reason, error="wrong_account"), retry_url
    )


def _not_configured(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "accounts/microsoft_not_configured.html",
        {"missing": microsoft.missing_settings(), "redirect_uri": microsoft.redirect_uri()},
    )


@never_cache
@require_POST
def sign_in_start(request: HttpRequest) -> HttpResponse:
    """ "Sign in with Microsoft" on the sign-in page (team members)."""
    return signin.start_sign_in(request)
