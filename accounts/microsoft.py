"""Talking to Microsoft Entra ID through msal: authorities, scopes, apps and token requests.

Everything that knows msal's shape lives here; the vault (refresh under a lock) and the connect
views (the auth-code flow) call these functions and get back either a :class:`TokenGrant` or a
:class:`MicrosoftError` whose ``kind`` says what to do next. Error messages are written for
people and never contain a token: only Entra's ``error`` field, AADSTS codes and our own text.

Two msal behaviours shape the code:

* msal keeps an HTTP cache per application object that replays an HTTP 400 token response for
  60 s and a 429/5xx for its Retry-After, without calling the server. A mailbox that was just
  reconnected must not be refused by a stale cached 400, so every token request uses a fresh
  application object (and with it a fresh cache).
* msal scopes are one resource per request (Entra issues an access token for one audience), and
  msal adds ``openid profile offline_access`` itself and refuses them when passed.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from django.conf import settings

from accounts.microsoft_errors import MicrosoftError, classify_error
from accounts.models import MailAccount

logger = logging.getLogger(__name__)

OUTLOOK_RESOURCE = "https://outlook.office.com"
GRAPH_RESOURCE = "https://graph.microsoft.com"

IMAP_SCOPES = (f"{OUTLOOK_RESOURCE}/IMAP.AccessAsUser.All", f"{OUTLOOK_RESOURCE}/SMTP.Send")
GRAPH_SCOPES = ("Mail.ReadWrite", "Mail.Send", "User.Read")
GRAPH_SHARED_SCOPES = ("Mail.ReadWrite.Shared", "Mail.Send.Shared")
# "Sign in with Microsoft" only needs the ID token; Entra issues a User.Read token alongside.
SIGN_IN_SCOPES = ("User.Read",)

CALLBACK_PATH = "/oauth/microsoft/callback/"
MULTI_TENANT_SEGMENTS = frozenset({"common", "organizations", "consumers"})
# Hosts msal may validate through Microsoft's instance discovery (public and sovereign clouds).
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
    }
)
# Seconds for one HTTP exchange with Entra (connect, read); a refresh holds a row lock meanwhile.
HTTP_TIMEOUT = (5.0, 20.0)


@dataclass
class TokenGrant:
    """What a successful token request returned (the access token is for one resource)."""

    access_token: str
    refresh_token: str | None
    expires_at: float
    scopes: tuple[str, ...]
    id_claims: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # Never print a token, even in a debugger or a traceback.
        return f"<TokenGrant scopes={self.scopes} expires_at={self.expires_at:.0f}>"


# --- configuration -------------------------------------------------------------------------


def missing_settings() -> list[str]:
    """The settings an admin still has to provide before mailboxes can be connected."""
    return [
        name
        for name in ("MICROSOFT_CLIENT_ID", "MICROSOFT_CLIENT_SECRET")
        if not getattr(settings, name, "")
    ]


def is_configured() -> bool:
    return not missing_settings()


def redirect_uri() -> str:
    """The one redirect URI registered in Entra: ``MAILWEB_BASE_URL`` + the callback path."""
    return settings.MAILWEB_BASE_URL.rstrip("/") + CALLBACK_PATH


def is_multi_tenant() -> bool:
    return settings.MICROSOFT_TENANT.lower() in MULTI_TENANT_SEGMENTS


def connect_authority() -> str:
    """Where people sign in: the configured tenant (or ``organizations`` for multi-tenant)."""
    return f"{settings.MICROSOFT_AUTHORITY_HOST.rstrip('/')}/{settings.MICROSOFT_TENANT}"


def refresh_authority(tenant_id: str) -> str:
    """Where a mailbox's tokens are refreshed: never ``/common`` or ``/organizations``.

    A single-tenant deployment always uses its own tenant; a multi-tenant one uses the tenant
    the mailbox signed in from (the ID token's ``tid``), and only falls back to the configured
    segment for a mailbox connected before its tenant was recorded.
    """
    host = settings.MICROSOFT_AUTHORITY_HOST.rstrip("/")
    if not is_multi_tenant():
        return f"{host}/{settings.MICROSOFT_TENANT}"
    return f"{host}/{tenant_id or settings.MICROSOFT_TENANT}"


def uses_instance_discovery() -> bool:
    """Only a Microsoft sign-in host can be validated by Microsoft's instance discovery."""
    host = (urlsplit(settings.MICROSOFT_AUTHORITY_HOST).hostname or "").lower()
    return host in MICROSOFT_AUTHORITY_HOSTS


def client_fingerprint() -> str:
    """A short, non-reversible name for the configured client id + secret (cache keys)."""
    material = f"{settings.MICROSOFT_CLIENT_ID}:{settings.MICROSOFT_CLIENT_SECRET}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


# --- scopes --------------------------------------------------------------------------------


def connect_scopes(method: str, *, shared: bool = False) -> list[str]:
    """The scopes asked for when connecting a mailbox with ``method`` (one resource)."""
    if method == MailAccount.Method.MICROSOFT_IMAP:
        return list(IMAP_SCOPES)
    if method == MailAccount.Method.GRAPH:
        return list(GRAPH_SCOPES + (GRAPH_SHARED_SCOPES if shared else ()))
    raise ValueError(f"{method!r} is not a Microsoft sign-in method")


def resource_of(method: str) -> str:
    """The resource (access-token audience) a mailbox of ``method`` works with."""
    if method == MailAccount.Method.MICROSOFT_IMAP:
        return OUTLOOK_RESOURCE
    if method == MailAccount.Method.GRAPH:
        return GRAPH_RESOURCE
    raise ValueError(f"{method!r} is not a Microsoft sign-in method")


def scopes_for(mailbox: MailAccount, resource: str) -> list[str]:
    """The scopes for an access token to ``resource`` on ``mailbox`` (what it consented to)."""
    if not mailbox.uses_oauth:
        raise ValueError(f"mailbox {mailbox.pk} does not sign in with Microsoft")
    if resource.rstrip("/") != resource_of(mailbox.method):
        raise ValueError(
            f"mailbox {mailbox.pk} was connected for {mailbox.get_method_display()}; it has no "
            f"consent for {resource} (reconnect it with that method)"
        )
    return connect_scopes(mailbox.method, shared=mailbox.is_shared)


# --- msal application ----------------------------------------------------------------------


class _RecordingSession(requests.Session):
    """requests for msal, with a timeout, and remembering the last status and Retry-After.

    msal turns a 429 into an ``{"error": ...}`` dict and drops the headers; the vault needs
    Retry-After to honour it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_status: int | None = None
        self.last_retry_after: float | None = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = HTTP_TIMEOUT
        response = super().request(method, url, *args, **kwargs)
        self.last_status = response.status_code
        self.last_retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        return response


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def build_app(authority: str) -> tuple[msal.ConfidentialClientApplication, _RecordingSession]:
    """A fresh msal application (fresh HTTP cache) for one exchange with ``authority``.

    Constructing it fetches the authority's OpenID configuration; failures surface as
    :class:`MicrosoftError`.
    """
    if not is_configured():
        raise MicrosoftError(
            "app_registration",
            "Microsoft sign-in is not configured: set " + " and ".join(missing_settings()) + ".",
        )
    session = _RecordingSession()
    try:
        app = msal.ConfidentialClientApplication(
            settings.MICROSOFT_CLIENT_ID,
            client_credential=settings.MICROSOFT_CLIENT_SECRET,
            authority=authority,
            instance_discovery=uses_instance_discovery(),
            http_client=session,
            http_cache={},
        )
    except requests.RequestException as exc:
        raise _network_error(exc) from None
    except msal.exceptions.MsalServiceError:
        raise MicrosoftError(
            "transient",
            "Microsoft's sign-in service answered with a server error. Mailweb will try again.",
            retry_after=session.last_retry_after,
        ) from None
    except ValueError:
        raise MicrosoftError(
            "app_registration",
            f"Mailweb could not read the sign-in configuration of {authority}. Check "
            "MICROSOFT_AUTHORITY_HOST and MICROSOFT_TENANT (a tenant ID, a verified domain, or "
            "'organizations').",
        ) from None
    return app, session


def _network_error(exc: requests.RequestException) -> MicrosoftError:
    kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
    return MicrosoftError(
        "transient",
        f"The connection to Microsoft's sign-in service {kind} ({type(exc).__name__}). Mailweb "
        "will try again.",
    )


# --- token requests ------------------------------------------------------------------------


def redeem_refresh_token(authority: str, refresh_token: str, scopes: list[str]) -> TokenGrant:
    """Exchange a refresh token for an access token (and, always from Entra, a new refresh
    token: store it). Raises :class:`MicrosoftError`."""
    app, session = build_app(authority)
    try:
        result = app.acquire_token_by_refresh_token(refresh_token, scopes)
    except requests.RequestException as exc:
        raise _network_error(exc) from None
    except msal.exceptions.MsalServiceError:
        raise _server_error(session) from None
    return _grant_or_raise(result, session)


def start_auth_code_flow(
    scopes: list[str], *, login_hint: str | None = None, prompt: str | None = None
) -> dict[str, Any]:
    """Begin a sign-in (state, PKCE S256, nonce); keep the returned flow server-side."""
    app, _ = build_app(connect_authority())
    with warnings.catch_warnings():
        # msal recommends response_mode=form_post. Mailweb's session cookie is SameSite=Lax,
        # so a cross-site POST from Microsoft would arrive without the session that holds the
        # flow. The query mode is safe here: the code is single-use, bound to the PKCE verifier
        # kept server-side, and the callback redirects at once (Referrer-Policy same-origin).
        warnings.filterwarnings("ignore", message="response_mode='form_post'")
        flow: dict[str, Any] = app.initiate_auth_code_flow(
            scopes,
            redirect_uri=redirect_uri(),
            login_hint=login_hint or None,
            prompt=prompt,
            response_mode="query",
        )
    return flow


def finish_auth_code_flow(flow: dict[str, Any], reply: dict[str, str]) -> TokenGrant:
    """Redeem what Microsoft sent to the callback. Raises :class:`MicrosoftError`."""
    if reply.get("error"):
        # The redirect carried an error: no token request is made (msal would not either).
        raise classify_error(reply, during_flow=True)
    app, session = build_app(connect_authority())
    try:
        result = app.acquire_token_by_auth_code_flow(flow, reply)
    except ValueError:  # msal: state mismatch or a reply that does not belong to this flow
        raise MicrosoftError(
            "flow",
            "This sign-in does not match the one Mailweb started (it may have been opened in "
            "another window or already used). Start again.",
            error="state_mismatch",
        ) from None
    except requests.RequestException as exc:
        raise _network_error(exc) from None
    except msal.exceptions.MsalServiceError:
        raise _server_error(session) from None
    return _grant_or_raise(result, session, during_flow=True)


def _server_error(session: _RecordingSession) -> MicrosoftError:
    return MicrosoftError(
        "transient",
        f"Microsoft's sign-in service answered HTTP {session.last_status or 'error'}. "
        "Mailweb will try again.",
        error="server_error",
        retry_after=session.last_retry_after,
    )


def _grant_or_raise(
    result: dict[str, Any], session: _RecordingSession, *, during_flow: bool = False
) -> TokenGrant:
    if "access_token" in result:
        return TokenGrant(
            access_token=str(result["access_token"]),
            refresh_token=result.get("refresh_token"),
            expires_at=time.time() + float(result.get("expires_in") or 3600),
            scopes=tuple(str(result.get("scope", "")).split()),
            id_claims=dict(result.get("id_token_claims") or {}),
        )
    error = classify_error(result, during_flow=during_flow, status=session.last_status)
    if error.kind == "transient" and error.retry_after is None:
        error.retry_after = session.last_retry_after
    raise error
