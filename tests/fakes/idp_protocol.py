"""The Entra v2 protocol rules behind :class:`tests.fakes.idp.FakeIdentityProvider`.

Split from the public class so each file stays readable: this mixin holds the authorize and
token endpoint logic (codes, PKCE, refresh-token rotation, consent, tenant checks) and raises
:class:`~tests.fakes.entra.EntraError` with the AADSTS code Entra would send. Callers hold
``self.lock``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import entra
from tests.fakes.entra import EntraError, FakeClient, FakeUser, ScopeRequest

__all__ = ["MULTI_TENANT", "EntraProtocol", "Injection", "Pending", "full_scope_names"]

#: Authority segments that are not one tenant; their discovery issuer keeps ``{tenantid}``.
MULTI_TENANT = frozenset({"common", "organizations", "consumers"})
CODE_LIFETIME = 600  # Entra's authorization codes live about ten minutes.


@dataclass
class _Code:
    user: FakeUser
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    challenge: str
    nonce: str | None
    expires_at: float
    used: bool = False


@dataclass
class _Grant:
    """The state behind one refresh token."""

    user: FakeUser
    client_id: str
    issued_at: float
    revoked: bool = False
    expired: bool = False


@dataclass
class Injection:
    """A failure queued by ``inject()`` for the next ``remaining`` token requests."""

    status: int
    remaining: int
    retry_after: int | None
    error: EntraError


@dataclass
class Pending:
    """Failures queued for upcoming requests; ``reset()`` drops them between tests."""

    authorize_errors: list[tuple[str, str]] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)


class EntraProtocol:
    """Endpoint logic; the state is created by ``FakeIdentityProvider.__init__``."""

    tenant_id: str
    access_token_lifetime: int
    signer: entra.Signer
    next_login: str | None
    authorize_requests: list[dict[str, str]]
    users: dict[str, FakeUser]
    clients: dict[str, FakeClient]
    lock: threading.RLock
    _codes: dict[str, _Code]
    _grants: dict[str, _Grant]
    _consent: dict[tuple[str, str], set[str]]
    _admin_consent: dict[str, set[str]]
    _pending: Pending

    @property
    def authority_host(self) -> str:
        raise NotImplementedError

    def issuer(self, tenant_id: str | None = None) -> str:
        raise NotImplementedError

    def resolve_tenant(self, segment: str) -> str:
        """Map an authority segment to a tenant id, or raise AADSTS90002 like Entra."""
        low = segment.lower()
        if low in MULTI_TENANT:
            return low
        for user in self.users.values():
            if low in (user.tid.lower(), user.email.split("@")[1].lower()):
                return user.tid
        if low == self.tenant_id.lower():
            return self.tenant_id
        raise EntraError(
            "invalid_tenant",
            90002,
            f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud.",
        )

    def openid_configuration(self, segment: str) -> dict[str, Any]:
        tid = self.resolve_tenant(segment)
        base = f"{self.authority_host}/{segment if tid in MULTI_TENANT else tid}"
        issuer_tid = "{tenantid}" if tid in MULTI_TENANT else tid
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.authority_host}/{issuer_tid}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "tid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self, segment: str) -> dict[str, Any]:
        tid = self.resolve_tenant(segment)
        return self.signer.jwks(self.issuer(None if tid in MULTI_TENANT else tid))

    def authorize(self, segment: str, params: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Validate an authorize request; return (redirect_uri, query) for the 302.

        Raises ``EntraError`` for problems Entra shows as an error page instead of
        redirecting (unknown app, unregistered redirect URI): the redirect URI is not trusted.
        """
        self.authorize_requests.append(dict(params, tenant=segment))
        tid = self.resolve_tenant(segment)
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            raise EntraError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{params.get('client_id')}' was not found in "
                "the directory.",
            )
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise EntraError(
                "invalid_request",
                50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match "
                f"the redirect URIs configured for the application '{client.client_id}'.",
            )
        reply = {"state": params["state"]} if "state" in params else {}
        if self._pending.authorize_errors:
            error, description = self._pending.authorize_errors.pop(0)
            return redirect_uri, {"error": error, "error_description": description, **reply}
        problem = self._check_authorize_params(params)
        if problem:
            return redirect_uri, {"error": "invalid_request", "error_description": problem, **reply}
        user = self._pick_user(params.get("login_hint"))
        if tid not in MULTI_TENANT and tid != user.tid:
            return redirect_uri, {
                "error": "invalid_request",
                "error_description": f"AADSTS50020: User account '{user.email}' does not exist "
                f"in tenant '{segment}'.",
                **reply,
            }
        scopes = tuple(params.get("scope", "").split())
        key = (user.email.lower(), client.client_id)
        self._consent.setdefault(key, set()).update(full_scope_names(scopes))
        code = "1.AUEA" + secrets.token_urlsafe(300)
        self._codes[code] = _Code(
            user=user,
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            challenge=params["code_challenge"],
            nonce=params.get("nonce"),
            expires_at=time.time() + CODE_LIFETIME,
        )
        reply = {"code": code, **reply, "session_state": str(uuid.uuid4())}
        if params.get("client_info") == "1":
            reply["client_info"] = entra.b64url_json({"uid": user.oid, "utid": user.tid})
        return redirect_uri, reply

    def _check_authorize_params(self, params: dict[str, str]) -> str | None:
        if params.get("response_type") != "code":
            return "AADSTS70005: response_type 'code' is required by this stand-in."
        if not params.get("code_challenge"):
            return "AADSTS9002325: Proof Key for Code Exchange is required (code_challenge)."
        if params.get("code_challenge_method") != "S256":
            return "AADSTS501491: Invalid code_challenge_method; only S256 is accepted."
        return None

    def _pick_user(self, login_hint: str | None) -> FakeUser:
        email, self.next_login = self.next_login, None
        email = email or login_hint
        if email:
            if email.lower() not in self.users:
                raise EntraError("invalid_request", 50034, f"User '{email}' does not exist.")
            return self.users[email.lower()]
        if not self.users:
            raise EntraError("invalid_request", 50034, "No users: call idp.add_user() first.")
        return next(iter(self.users.values()))

    def take_injection(self) -> Injection | None:
        pending = self._pending.injections
        if not pending:
            return None
        injection = pending[0]
        injection.remaining -= 1
        if injection.remaining <= 0:
            pending.pop(0)
        return injection

    def token(
        self, segment: str, form: dict[str, str], basic: tuple[str, str] | None
    ) -> dict[str, Any]:
        """Handle a token request; raise ``EntraError`` with Entra's code on failure."""
        tid = self.resolve_tenant(segment)
        client = self._authenticate_client(form, basic)
        grant_type = form.get("grant_type", "")
        scopes = entra.parse_scopes(form.get("scope", ""))
        if grant_type == "authorization_code":
            user, nonce = self._redeem_code(client, form)
        elif grant_type == "refresh_token":
            user, nonce = self._use_refresh_token(client, form.get("refresh_token", "")), None
        else:
            raise EntraError("unsupported_grant_type", 70003, f"The app requested '{grant_type}'.")
        if tid not in MULTI_TENANT and tid != user.tid:
            raise EntraError(
                "invalid_grant", 50020, f"User '{user.email}' does not exist in '{segment}'."
            )
        scopes = self._consented(user, client, scopes)
        return self._issue(user, client, scopes, nonce, form.get("client_info") == "1")

    def _authenticate_client(
        self, form: dict[str, str], basic: tuple[str, str] | None
    ) -> FakeClient:
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        client = self.clients.get(client_id)
        if client is None:
            raise EntraError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
            )
        if not secrets.compare_digest(secret, client.secret):
            raise EntraError(
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                f"is the client secret value, not the client secret ID, for a secret added to "
                f"app '{client_id}'.",
                status=401,
            )
        if client.secret_expired:
            raise EntraError(
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{client_id}' are expired. Visit the "
                "Azure portal to create new keys for your app.",
                status=401,
            )
        return client

    def _redeem_code(self, client: FakeClient, form: dict[str, str]) -> tuple[FakeUser, str | None]:
        code = self._codes.get(form.get("code", ""))
        if code is None or code.client_id != client.client_id:
            raise EntraError("invalid_grant", 9002313, "Invalid request. Request is malformed.")
        if code.used:
            raise EntraError(
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                "code or use an existing refresh token.",
            )
        code.used = True
        if time.time() > code.expires_at:
            raise EntraError("invalid_grant", 70008, "The provided authorization code expired.")
        if form.get("redirect_uri") != code.redirect_uri:
            raise EntraError(
                "invalid_grant",
                500112,
                f"The reply address '{form.get('redirect_uri')}' does not match the reply "
                f"address '{code.redirect_uri}' provided when requesting Authorization code.",
            )
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
            raise EntraError(
                "invalid_grant",
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the "
                "authorization request.",
            )
        return code.user, code.nonce

    def _use_refresh_token(self, client: FakeClient, token: str) -> FakeUser:
        grant = self._grants.get(token)
        if grant is None or grant.client_id != client.client_id:
            raise EntraError("invalid_grant", 9002313, "Invalid request. Request is malformed.")
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(grant.issued_at))
        if grant.revoked:
            raise EntraError(
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is "
                "needed. The user might have changed or reset their password. The grant was "
                f"issued on '{issued}'.",
            )
        if grant.expired:
            raise EntraError(
                "invalid_grant",
                700082,
                f"The refresh token has expired due to inactivity. The token was issued on "
                f"{issued} and was inactive for 90.00:00:00.",
            )
        return grant.user

    def _consented(self, user: FakeUser, client: FakeClient, req: ScopeRequest) -> ScopeRequest:
        """Expand ``.default`` and check consent (AADSTS65001) like Entra's token endpoint."""
        granted = self._consent.get((user.email.lower(), client.client_id), set())
        granted = granted | self._admin_consent.get(client.client_id, set())
        full = req.full
        if full == (f"{req.resource}/.default",):
            full = tuple(sorted(s for s in granted if s.startswith(req.resource + "/")))
        missing = [s for s in full if s not in granted]
        if missing or not full:
            raise EntraError(
                "invalid_grant",
                65001,
                f"The user or administrator has not consented to use the application with ID "
                f"'{client.client_id}' named '{client.name}'. Send an interactive authorization "
                f"request for this user and resource ({' '.join(missing) or req.resource}).",
                suberror="consent_required",
            )
        names = tuple(s.rpartition("/")[2] for s in full)
        return ScopeRequest(req.resource, names, full, req.oidc)

    def _issue(
        self,
        user: FakeUser,
        client: FakeClient,
        scopes: ScopeRequest,
        nonce: str | None,
        client_info: bool,
    ) -> dict[str, Any]:
        lifetime = self.access_token_lifetime
        claims = entra.access_token_claims(
            issuer=self.issuer(user.tid),
            user=user,
            client_id=client.client_id,
            app_name=client.name,
            scopes=scopes,
            lifetime=lifetime,
        )
        shown = scopes.names if scopes.resource == entra.GRAPH else scopes.full
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(shown),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": self.signer.sign(claims),
        }
        if scopes.wants_refresh_token:
            refresh_token = entra.new_refresh_token()
            self._grants[refresh_token] = _Grant(user, client.client_id, time.time())
            body["refresh_token"] = refresh_token
        if scopes.wants_id_token:
            body["id_token"] = self.signer.sign(
                entra.id_token_claims(
                    issuer=self.issuer(user.tid), user=user, client_id=client.client_id, nonce=nonce
                )
            )
        if client_info:
            body["client_info"] = entra.b64url_json({"uid": user.oid, "utid": user.tid})
        return body


def full_scope_names(scopes: Iterable[str]) -> list[str]:
    """Resource-qualified names of the resource scopes in ``scopes`` (any resources)."""
    out: list[str] = []
    for scope in scopes:
        if scope in entra.OIDC_SCOPES:
            continue
        out.extend(entra.parse_scopes([scope]).full)
    return out
