"""Sign in with Microsoft: existing active team members only, never creating anyone."""

import uuid
from typing import Any

import pytest
from django.test import Client

from accounts.models import MailAccount, User
from tests.accounts.entra_setup import Entra

pytestmark = pytest.mark.django_db


def _start(client: Client, next_url: str = "") -> Any:
    return client.post("/login/microsoft/", {"next": next_url})


def test_login_page_offers_microsoft_only_when_configured(
    client: Client, entra: Entra, settings: Any
) -> None:
    assert b"Sign in with Microsoft" in client.get("/login/").content
    settings.MICROSOFT_CLIENT_SECRET = ""
    assert b"Sign in with Microsoft" not in client.get("/login/").content


def test_member_signs_in_and_is_linked(client: Client, entra: Entra, settings: Any) -> None:
    settings.MICROSOFT_TENANT = entra.idp.tenant_id
    email = entra.new_user("member")
    user = User.objects.create_user(email=email.upper(), password=None)
    response = entra.sign_in(client, _start(client, "/notifications/"), email)
    assert response.status_code == 302 and response["Location"] == "/notifications/"
    assert int(client.session["_auth_user_id"]) == user.pk
    assert client.get("/").status_code == 200  # the session's backend is a configured one
    user.refresh_from_db()
    assert user.microsoft_oid == entra.idp.users[email].oid
    assert entra.idp.authorize_requests[-1]["prompt"] == "select_account"


def test_unknown_people_are_not_created(client: Client, entra: Entra, db: None) -> None:
    email = entra.new_user("stranger")
    page = entra.sign_in(client, _start(client), email)
    assert page.status_code == 400
    assert b"no active Mailweb account" in page.content
    assert not User.objects.filter(email__iexact=email).exists()
    assert "_auth_user_id" not in client.session


def test_inactive_people_cannot_sign_in(client: Client, entra: Entra, settings: Any) -> None:
    settings.MICROSOFT_TENANT = entra.idp.tenant_id
    email = entra.new_user("former")
    User.objects.create_user(email=email, is_active=False)
    page = entra.sign_in(client, _start(client), email)
    assert page.status_code == 400 and "_auth_user_id" not in client.session


def test_multi_tenant_trusts_addresses_only_from_known_tenants(
    client: Client, entra: Entra
) -> None:
    foreign_tenant = str(uuid.uuid4())
    email = entra.new_user("lookalike", tid=foreign_tenant)
    User.objects.create_user(email=email)
    page = entra.sign_in(client, _start(client), email)
    assert page.status_code == 400 and b"organization only" in page.content
    # Once a mailbox of that tenant is connected, its people may sign in.
    MailAccount.objects.create(
        address=f"box@{uuid.uuid4().hex[:6]}.example",
        method="microsoft_imap",
        tenant_id=foreign_tenant,
    )
    response = entra.sign_in(client, _start(client), email)
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_account_linked_to_another_microsoft_account_is_refused(
    client: Client, entra: Entra, settings: Any
) -> None:
    settings.MICROSOFT_TENANT = entra.idp.tenant_id
    email = entra.new_user("linked")
    User.objects.create_user(email=email, microsoft_oid=str(uuid.uuid4()))
    page = entra.sign_in(client, _start(client), email)
    assert page.status_code == 400 and b"different Microsoft account" in page.content


def test_open_redirects_are_dropped(client: Client, entra: Entra, settings: Any) -> None:
    settings.MICROSOFT_TENANT = entra.idp.tenant_id
    email = entra.new_user("redirect")
    User.objects.create_user(email=email)
    response = entra.sign_in(client, _start(client, "https://evil.example/"), email)
    assert response.status_code == 302 and response["Location"] == "/"


def test_sign_in_start_needs_post(client: Client, entra: Entra) -> None:
    assert client.get("/login/microsoft/").status_code == 405
