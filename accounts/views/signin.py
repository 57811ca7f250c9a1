"""Sign in with Microsoft: for existing, active team members only; never creates anyone.

The account is matched by its Entra object id once linked, and the first time by its address
(``preferred_username``), which is only trusted from the deployment's own organization: the
configured tenant, or in a multi-tenant deployment a tenant a connected mailbox belongs to.
Microsoft's tokens from this sign-in are not kept.
"""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from accounts import flows, microsoft
from accounts.models import MailAccount, User
from accounts.views.errors import flow_error

PURPOSE_SIGN_IN = "signin"


class LoginView(auth_views.LoginView):
    """The password sign-in page, offering "Sign in with Microsoft" when it is configured."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["microsoft_sign_in"] = microsoft.is_configured()
        return context


def start_sign_in(request: HttpRequest) -> HttpResponse:
    if not microsoft.is_configured():
        messages.error(request, "Sign in with Microsoft is not set up on this Mailweb.")
        return redirect("login")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = ""
    try:
        flow = microsoft.start_auth_code_flow(
            list(microsoft.SIGN_IN_SCOPES), prompt="select_account"
        )
    except microsoft.MicrosoftError as exc:
        return flow_error(request, exc, retry_url=reverse("login"))
    flows.remember(request, flow, PURPOSE_SIGN_IN, next=target, retry_url=reverse("login"))
    return HttpResponseRedirect(flow["auth_uri"])


def finish_sign_in(
    request: HttpRequest, grant: microsoft.TokenGrant, pending: dict[str, Any]
) -> HttpResponse:
    claims = grant.id_claims
    oid = str(claims.get("oid") or "")
    tenant = str(claims.get("tid") or "")
    address = str(claims.get("preferred_username") or claims.get("email") or "").strip()
    user = User.objects.filter(microsoft_oid=oid).first() if oid else None
    if user is None:
        user = User.objects.filter(email__iexact=address).first() if address else None
        if user is not None and user.microsoft_oid and user.microsoft_oid != oid:
            return _refuse(
                request,
                f"The Mailweb account {user.email} is linked to a different Microsoft account.",
            )
        if user is not None and not _trusted_tenant(tenant):
            return _refuse(
                request,
                "Sign in with Microsoft accepts accounts of your organization only; this "
                "account belongs to another one. Sign in with your password instead.",
            )
    if user is None or not user.is_active:
        return _refuse(
            request,
            f"There is no active Mailweb account for {address or 'this Microsoft account'}. "
            "Ask an admin to add you (with this address), then sign in again.",
        )
    if not user.microsoft_oid and oid:
        user.microsoft_oid = oid
        user.save(update_fields=["microsoft_oid"])
    login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
    target = str(pending.get("next") or "")
    return HttpResponseRedirect(target or resolve_url(settings.LOGIN_REDIRECT_URL))


def _trusted_tenant(tenant: str) -> bool:
    """Whether an address claim from ``tenant`` may identify a team member."""
    if not microsoft.is_multi_tenant():
        return True  # Entra only signs in accounts of (or invited to) the configured tenant.
    return bool(tenant) and MailAccount.objects.filter(tenant_id__iexact=tenant).exists()


def _refuse(request: HttpRequest, reason: str) -> HttpResponse:
    return flow_error(
        request,
        microsoft.MicrosoftError("flow", reason, error="no_account"),
        retry_url=reverse("login"),
    )
