"""Authorities, scopes and Entra error classification (no network)."""

from typing import Any

import pytest

from accounts import microsoft
from accounts.microsoft_errors import classify_error
from accounts.models import MailAccount

pytestmark = pytest.mark.smoke


@pytest.mark.parametrize(
    ("tenant", "mailbox_tid", "expected"),
    [
        ("organizations", "tid-1", "https://login.microsoftonline.com/tid-1"),
        ("common", "tid-1", "https://login.microsoftonline.com/tid-1"),
        ("organizations", "", "https://login.microsoftonline.com/organizations"),
        (
            "contoso.onmicrosoft.com",
            "tid-1",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com",
        ),
        ("tid-9", "", "https://login.microsoftonline.com/tid-9"),
    ],
)
def test_refresh_authority(settings: Any, tenant: str, mailbox_tid: str, expected: str) -> None:
    settings.MICROSOFT_AUTHORITY_HOST = "https://login.microsoftonline.com"
    settings.MICROSOFT_TENANT = tenant
    assert microsoft.refresh_authority(mailbox_tid) == expected


@pytest.mark.parametrize(
    ("host", "discovery"),
    [
        ("https://login.microsoftonline.com", True),
        ("https://login.microsoftonline.us/", True),
        ("https://login.chinacloudapi.cn", True),
        ("https://127.0.0.1:8443", False),
        ("https://idp.example.test", False),
    ],
)
def test_instance_discovery_only_for_microsoft_hosts(
    settings: Any, host: str, discovery: bool
) -> None:
    settings.MICROSOFT_AUTHORITY_HOST = host
    assert microsoft.uses_instance_discovery() is discovery


def test_redirect_uri_comes_from_the_base_url(settings: Any) -> None:
    settings.MAILWEB_BASE_URL = "https://mail.example.com"
    assert microsoft.redirect_uri() == "https://mail.example.com/oauth/microsoft/callback/"


def test_scopes_are_one_resource_per_method() -> None:
    imap = MailAccount(method=MailAccount.Method.MICROSOFT_IMAP, is_shared=True)
    assert microsoft.scopes_for(imap, "https://outlook.office.com") == [
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
    ]
    graph = MailAccount(method=MailAccount.Method.GRAPH)
    assert microsoft.scopes_for(graph, "https://graph.microsoft.com/") == [
        "Mail.ReadWrite",
        "Mail.Send",
        "User.Read",
    ]
    shared = MailAccount(method=MailAccount.Method.GRAPH, is_shared=True)
    assert "Mail.Send.Shared" in microsoft.scopes_for(shared, "https://graph.microsoft.com")
    for reserved in ("openid", "profile", "offline_access"):
        assert reserved not in microsoft.connect_scopes("graph", shared=True)
    with pytest.raises(ValueError):
        microsoft.scopes_for(imap, "https://graph.microsoft.com")


@pytest.mark.parametrize(
    ("body", "kind", "words"),
    [
        ({"error": "invalid_grant", "error_codes": [50173]}, "reconnect", "revoked"),
        ({"error": "invalid_grant", "error_codes": [700082]}, "reconnect", "90 days"),
        ({"error": "invalid_grant", "error_codes": [70008]}, "reconnect", "90 days"),
        ({"error": "invalid_grant", "error_codes": [65001]}, "reconnect", "Consent"),
        ({"error": "consent_required"}, "reconnect", "Consent"),
        ({"error": "interaction_required", "error_codes": [50076]}, "reconnect", "multi-factor"),
        ({"error": "interaction_required", "error_codes": [53003]}, "reconnect", "Conditional"),
        ({"error": "invalid_grant", "error_codes": [50057]}, "reconnect", "disabled"),
        ({"error": "interaction_required"}, "reconnect", "interactively"),
        ({"error": "invalid_client", "error_codes": [7000222]}, "app_registration", "expired"),
        ({"error": "invalid_client", "error_codes": [7000215]}, "app_registration", "not its ID"),
        (
            {"error": "unauthorized_client", "error_codes": [700016]},
            "app_registration",
            "CLIENT_ID",
        ),
        ({"error": "temporarily_unavailable", "error_codes": [90033]}, "transient", "busy"),
        (
            {"error": "invalid_grant", "error_description": "AADSTS50173: revoked"},
            "reconnect",
            "revoked",
        ),
    ],
)
def test_refresh_errors_are_classified_on_codes(body: dict, kind: str, words: str) -> None:
    error = classify_error({**body, "error_description": body.get("error_description", "x")})
    assert error.kind == kind
    assert words in error.reason


def test_flow_errors_are_told_apart() -> None:
    declined = classify_error(
        {"error": "access_denied", "error_description": "AADSTS65004: no"}, during_flow=True
    )
    assert declined.kind == "flow" and "declined" in declined.reason and declined.code == 65004
    admin = classify_error(
        {"error": "access_denied", "error_description": "AADSTS90094: x"}, during_flow=True
    )
    assert "admin consent" in admin.reason.lower()
    late = classify_error({"error": "invalid_grant", "error_codes": [54005]}, during_flow=True)
    assert "Start again" in late.reason
