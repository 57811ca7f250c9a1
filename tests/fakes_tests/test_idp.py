"""The Entra stand-in, driven through msal exactly as Mailweb's token vault will drive it."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import msal
import pytest
import requests

from tests.fakes.idp import FakeClient, FakeIdentityProvider

pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")

IMAP = "https://outlook.office.com/IMAP.AccessAsUser.All"
SMTP = "https://outlook.office.com/SMTP.Send"
REDIRECT = "https://mailweb.test/accounts/microsoft/callback"


@dataclass
class Setup:
    idp: FakeIdentityProvider
    client: FakeClient
    email: str

    def app(
        self, authority: str | None = None, secret: str | None = None
    ) -> msal.ClientApplication:
        return msal.ConfidentialClientApplication(
            self.client.client_id,
            client_credential=secret or self.client.secret,
            authority=authority or self.idp.authority,
            instance_discovery=False,
        )

    def connect(self, app: msal.ClientApplication, scopes: list[str] | None = None) -> dict:
        """The whole "Connect Microsoft" dance; returns msal's result."""
        flow = app.initiate_auth_code_flow(scopes or [IMAP, SMTP], redirect_uri=REDIRECT)
        reply = self.idp.complete_authorize(flow["auth_uri"])
        return app.acquire_token_by_auth_code_flow(flow, reply)


@pytest.fixture
def setup(fresh_idp: FakeIdentityProvider, trust_test_ca: Path) -> Iterator[Setup]:
    email = f"user-{uuid.uuid4().hex[:8]}@contoso.example"
    fresh_idp.add_user(email, name="Ada Lovelace")
    fresh_idp.next_login = email
    yield Setup(fresh_idp, fresh_idp.register_client(redirect_uris=[REDIRECT]), email)


def claims(token: str, idp: FakeIdentityProvider, audience: str) -> dict:
    return jwt.decode(token, idp.public_key_pem, algorithms=["RS256"], audience=audience)


def test_discovery_matches_entra_shape(idp: FakeIdentityProvider, test_ca) -> None:
    get = lambda path: requests.get(f"{idp.authority_host}{path}", verify=test_ca.ca_path)  # noqa: E731
    multi = get("/organizations/v2.0/.well-known/openid-configuration").json()
    assert multi["issuer"] == f"{idp.authority_host}/{{tenantid}}/v2.0"
    assert multi["token_endpoint"] == f"{idp.authority_host}/organizations/oauth2/v2.0/token"
    one = get(f"/{idp.tenant_id}/v2.0/.well-known/openid-configuration").json()
    assert one["issuer"] == idp.issuer() == f"{idp.authority_host}/{idp.tenant_id}/v2.0"
    keys = requests.get(one["jwks_uri"], verify=test_ca.ca_path).json()["keys"]
    assert keys[0]["kid"] == idp.kid and keys[0]["kty"] == "RSA"
    missing = get(f"/{uuid.uuid4()}/v2.0/.well-known/openid-configuration")
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_tenant"


def test_auth_code_flow_through_msal(setup: Setup) -> None:
    result = setup.connect(setup.app())
    assert "error" not in result, result
    assert result["token_type"] == "Bearer" and result["expires_in"] == 3600
    assert result["scope"].split() == [IMAP, SMTP]
    assert len(result["refresh_token"]) > 1000  # Entra's are long: size DB columns for it.
    assert result["id_token_claims"]["preferred_username"] == setup.email  # nonce checked by msal
    user = setup.idp.users[setup.email]
    info = json.loads(base64.urlsafe_b64decode(result["client_info"] + "=="))
    assert info == {"uid": user.oid, "utid": user.tid}
    header = jwt.get_unverified_header(result["access_token"])
    assert header["alg"] == "RS256" and header["kid"] == setup.idp.kid
    at = claims(result["access_token"], setup.idp, "https://outlook.office.com")
    assert at["scp"] == "IMAP.AccessAsUser.All SMTP.Send"
    assert at["iss"] == setup.idp.issuer(user.tid) and at["tid"] == user.tid
    assert at["email"] == at["upn"] == setup.email and at["appid"] == setup.client.client_id
    assert at["iat"] <= time.time() - 4 and at["nbf"] <= time.time() - 4
    request = setup.idp.token_requests[-1]
    assert (request.grant_type, request.tenant) == ("authorization_code", "organizations")


def test_msal_cache_serves_silent_requests(setup: Setup) -> None:
    app = setup.app()
    setup.connect(app)
    (account,) = app.get_accounts()
    assert account["username"] == setup.email
    assert app.acquire_token_silent([IMAP], account)["token_source"] == "cache"
    before = len(setup.idp.token_requests)
    refreshed = app.acquire_token_silent([IMAP], account, force_refresh=True)
    assert refreshed["token_source"] == "identity_provider"
    assert setup.idp.token_requests[before].grant_type == "refresh_token"


def test_code_is_single_use_and_pkce_checked(setup: Setup) -> None:
    app = setup.app()
    flow = app.initiate_auth_code_flow([IMAP], redirect_uri=REDIRECT)
    reply = setup.idp.complete_authorize(flow["auth_uri"])
    assert "access_token" in app.acquire_token_by_auth_code_flow(dict(flow), reply)
    again = app.acquire_token_by_auth_code_flow(dict(flow), reply)
    assert again["error"] == "invalid_grant" and again["error_codes"] == [54005]

    setup.idp.next_login = setup.email
    flow = app.initiate_auth_code_flow([IMAP], redirect_uri=REDIRECT)
    reply = setup.idp.complete_authorize(flow["auth_uri"])
    token_url = f"{setup.idp.authority}/oauth2/v2.0/token"
    form = {
        "client_id": setup.client.client_id,
        "client_secret": setup.client.secret,
        "grant_type": "authorization_code",
        "code": reply["code"],
        "redirect_uri": REDIRECT,
        "code_verifier": "not-the-verifier",
        "scope": IMAP,
    }
    bad = requests.post(token_url, data=form)
    assert bad.status_code == 400 and bad.json()["error_codes"] == [501481]


def test_authorize_rejects_unknown_redirect_and_plain_pkce(setup: Setup) -> None:
    app = setup.app()
    flow = app.initiate_auth_code_flow([IMAP], redirect_uri="https://evil.test/cb")
    page = requests.get(flow["auth_uri"], allow_redirects=False)
    assert page.status_code == 400 and page.json()["error_codes"] == [50011]
    no_pkce = flow["auth_uri"].replace("code_challenge_method=S256", "code_challenge_method=plain")
    no_pkce = no_pkce.replace("evil.test", "mailweb.test").replace(
        "%2Fcb", "%2Faccounts%2Fmicrosoft%2Fcallback"
    )
    assert setup.idp.complete_authorize(no_pkce)["error"] == "invalid_request"


def test_client_secret_errors(setup: Setup) -> None:
    wrong = setup.connect(setup.app(secret="wrong"))
    assert wrong["error"] == "invalid_client" and wrong["error_codes"] == [7000215]
    setup.idp.next_login = setup.email
    setup.idp.expire_client_secret(setup.client.client_id)
    expired = setup.connect(setup.app())
    assert expired["error"] == "invalid_client" and expired["error_codes"] == [7000222]
    assert setup.idp.token_requests[-1].status == 401


def test_refresh_tokens_rotate_and_revocation_kills_all(setup: Setup) -> None:
    app = setup.app()
    first = setup.connect(app)["refresh_token"]
    second = app.acquire_token_by_refresh_token(first, [IMAP])["refresh_token"]
    assert second != first
    still_valid = app.acquire_token_by_refresh_token(first, [IMAP])  # Entra does not revoke it
    assert "access_token" in still_valid
    assert setup.idp.active_refresh_tokens(setup.email) == 3

    setup.idp.revoke(setup.email)
    for token in (first, second):
        failed = app.acquire_token_by_refresh_token(token, [IMAP, SMTP])
        assert failed["error"] == "invalid_grant" and failed["error_codes"] == [50173]
        assert failed["error_description"].startswith("AADSTS50173:")
        assert {"timestamp", "trace_id", "correlation_id"} <= failed.keys()
    setup.idp.next_login = setup.email
    assert "access_token" in setup.connect(app)  # Reconnecting issues a working grant again.


def test_one_resource_per_token_and_consent(setup: Setup) -> None:
    app = setup.app()
    refresh_token = setup.connect(app)["refresh_token"]
    mixed = app.acquire_token_by_refresh_token(refresh_token, [IMAP, "Mail.ReadWrite"])
    assert mixed["error"] == "invalid_scope" and mixed["error_codes"] == [28000]
    no_consent = app.acquire_token_by_refresh_token(refresh_token, ["Mail.ReadWrite"])
    assert no_consent["error"] == "invalid_grant" and no_consent["suberror"] == "consent_required"
    setup.idp.admin_consent(setup.client.client_id, ["Mail.ReadWrite", "Mail.Send"])
    graph = app.acquire_token_by_refresh_token(refresh_token, ["Mail.ReadWrite", "Mail.Send"])
    at = claims(graph["access_token"], setup.idp, "https://graph.microsoft.com")
    assert at["scp"] == "Mail.ReadWrite Mail.Send"
    default = app.acquire_token_by_refresh_token(
        refresh_token, ["https://outlook.office.com/.default"]
    )
    at = claims(default["access_token"], setup.idp, "https://outlook.office.com")
    assert at["scp"] == "IMAP.AccessAsUser.All SMTP.Send"


def test_failed_authorize_comes_back_as_error(setup: Setup) -> None:
    setup.idp.fail_next_authorize("access_denied", "AADSTS65004: User declined to consent.")
    app = setup.app()
    flow = app.initiate_auth_code_flow([IMAP], redirect_uri=REDIRECT)
    reply = setup.idp.complete_authorize(flow["auth_uri"])
    assert reply["state"] == flow["state"] and "code" not in reply
    result = app.acquire_token_by_auth_code_flow(flow, reply)
    assert result["error"] == "access_denied"
    assert setup.idp.token_requests == []


def test_throttling_and_server_errors(setup: Setup) -> None:
    app = setup.app()
    refresh_token = setup.connect(app)["refresh_token"]
    setup.idp.inject(status=429, retry_after=2)
    throttled = app.acquire_token_by_refresh_token(refresh_token, [IMAP])
    assert throttled["error"] == "temporarily_unavailable"
    calls = len(setup.idp.token_requests)
    replayed = app.acquire_token_by_refresh_token(refresh_token, [IMAP])
    assert replayed["error"] == "temporarily_unavailable"
    assert len(setup.idp.token_requests) == calls  # msal replays 429 for Retry-After itself

    setup.idp.inject(status=500)
    with pytest.raises(Exception, match="500"):  # msal raises on 5xx
        setup.app().acquire_token_by_refresh_token(refresh_token, [SMTP])
    assert setup.idp.token_requests[-1].status == 500


def test_login_hint_next_login_and_tenant_paths(setup: Setup) -> None:
    other = setup.idp.add_user(f"other-{uuid.uuid4().hex[:6]}@contoso.example")
    setup.idp.next_login = None
    app = setup.app(authority=f"{setup.idp.authority_host}/{setup.idp.tenant_id}")
    flow = app.initiate_auth_code_flow([IMAP], redirect_uri=REDIRECT, login_hint=other.email)
    result = app.acquire_token_by_auth_code_flow(
        flow, setup.idp.complete_authorize(flow["auth_uri"])
    )
    assert result["id_token_claims"]["preferred_username"] == other.email
    assert setup.idp.token_requests[-1].tenant == setup.idp.tenant_id
    assert setup.idp.authorize_requests[-1]["login_hint"] == other.email

    stranger = setup.idp.add_user("guest@fabrikam.example", tid=str(uuid.uuid4()))
    setup.idp.next_login = stranger.email
    flow = app.initiate_auth_code_flow([IMAP], redirect_uri=REDIRECT)
    reply = setup.idp.complete_authorize(flow["auth_uri"])
    assert reply["error_description"].startswith("AADSTS50020")


def test_form_post_and_token_lifetime(setup: Setup) -> None:
    setup.idp.set_access_token_lifetime(5)
    app = setup.app()
    flow = app.initiate_auth_code_flow([IMAP], redirect_uri=REDIRECT, response_mode="form_post")
    reply = setup.idp.complete_authorize(flow["auth_uri"])
    result = app.acquire_token_by_auth_code_flow(flow, reply)
    assert result["expires_in"] == 5
    at = claims(result["access_token"], setup.idp, "https://outlook.office.com")
    assert at["exp"] - time.time() <= 5
