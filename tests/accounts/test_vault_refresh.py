"""get_access_token against the Entra stand-in: caching, rotation, tenants, failures."""

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test import Client

from accounts import vault
from accounts.microsoft import OUTLOOK_RESOURCE
from accounts.models import AdminAlert, MailAccount, User
from tests.accounts.entra_setup import Entra


@pytest.fixture
def connect(client: Client, admin_user: User, entra: Entra) -> Callable[..., MailAccount]:
    """Connect a new Microsoft user's mailbox through the real flow; returns the mailbox."""
    client.force_login(admin_user)

    def run(*, lifetime: int = 3600, tid: str | None = None) -> MailAccount:
        entra.idp.set_access_token_lifetime(lifetime)
        email = entra.new_user("box", tid=tid)
        response = entra.connect(client, email)
        assert response.status_code == 302, response.content[:400]
        return MailAccount.objects.get(address=email)

    return run


def test_cached_token_is_served_without_a_request(connect: Callable, entra: Entra) -> None:
    mailbox = connect()
    before = len(entra.idp.token_requests)
    first = vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    assert vault.get_access_token(mailbox, OUTLOOK_RESOURCE) == first
    assert len(entra.idp.token_requests) == before


def test_refresh_rotates_and_saves_the_refresh_token(connect: Callable, entra: Entra) -> None:
    mailbox = connect(lifetime=120)  # under five minutes left: never handed out
    old = vault.read_credentials(mailbox)["refresh_token"]
    token = vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    (request,) = entra.refresh_requests()
    assert set(request.scopes) >= {
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
    }
    stored = MailAccount.objects.get(pk=mailbox.pk)
    new = vault.read_credentials(stored)["refresh_token"]
    assert new != old and new.startswith("1.AUEA")
    assert vault.read_credentials(stored)["access_tokens"][OUTLOOK_RESOURCE]["token"] == token
    assert stored.access_token_expires_at is not None
    assert 60 < stored.access_token_expires_at.timestamp() - time.time() <= 120


def test_multi_tenant_refreshes_against_the_mailbox_tenant(connect: Callable, entra: Entra) -> None:
    tenant = "5b7f0c2e-8f5a-4d6c-9d51-0c1f2e3d4a5b"
    mailbox = connect(lifetime=60, tid=tenant)
    assert mailbox.tenant_id == tenant
    vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    assert [r.tenant for r in entra.refresh_requests()] == [tenant]


def test_single_tenant_never_calls_common_or_organizations(
    connect: Callable, entra: Entra, settings: Any
) -> None:
    settings.MICROSOFT_TENANT = entra.idp.tenant_id
    mailbox = connect(lifetime=60)
    vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    tenants = {r.tenant for r in entra.idp.token_requests}
    tenants |= {r["tenant"] for r in entra.idp.authorize_requests}
    assert tenants == {entra.idp.tenant_id}
    assert len(entra.refresh_requests()) == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_make_one_token_request(
    connect: Callable, entra: Entra, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox = connect(lifetime=3600)
    # Make the cached token too old to hand out, so both workers must refresh.
    document = vault.read_credentials(mailbox)
    document["access_tokens"][OUTLOOK_RESOURCE]["expires_at"] = time.time() + 10
    vault.write_credentials(mailbox, document)
    slow_token = entra.idp.token

    def token(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.4)  # a slow Entra: the second worker arrives while the first waits
        return slow_token(*args, **kwargs)

    monkeypatch.setattr(entra.idp, "token", token)
    barrier = threading.Barrier(2)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(
                vault.get_access_token(MailAccount.objects.get(pk=mailbox.pk), OUTLOOK_RESOURCE)
            )
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(results) == 2 and results[0] == results[1]
    assert len(entra.refresh_requests()) == 1


def test_revocation_needs_reconnect_then_reconnect_restores(
    connect: Callable,
    entra: Entra,
    client: Client,
    admin_user: User,
    member: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    User.objects.create_user(email="second-admin@example.com", password="x" * 12, role="admin")
    mailbox = connect(lifetime=60)
    entra.idp.revoke(mailbox.address)
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(vault.NeedsReconnect) as caught,
    ):
        vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    assert "revoked" in str(caught.value) and "AADSTS" not in str(caught.value)
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.NEEDS_RECONNECT
    assert mailbox.status_reason == "revoked"
    assert "AADSTS50173" in mailbox.last_error
    alert = AdminAlert.objects.get(mailbox=mailbox, resolved_at__isnull=True)
    assert "revoked" in alert.message
    (message,) = mail.outbox
    assert set(message.to) == {"admin@example.com", "second-admin@example.com"}
    assert mailbox.address in message.subject
    assert f"http://localhost:8000/mailboxes/{mailbox.pk}/reconnect/" in message.body

    # Retries refuse at once: no token request, no second alert, no second email.
    requests_before = len(entra.idp.token_requests)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            with pytest.raises(vault.NeedsReconnect):
                vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    assert len(entra.idp.token_requests) == requests_before
    assert AdminAlert.objects.filter(mailbox=mailbox).count() == 1 and len(mail.outbox) == 1

    # The banner shows on every page an admin sees, not to members.
    assert b"revoked" in client.get("/mailboxes/").content
    assert b"banner-alert" in client.get("/").content
    member_client = Client()
    member_client.force_login(member)
    assert b"revoked" not in member_client.get("/").content

    # Reconnect: same mailbox, active again, alert resolved, tokens flow.
    start = client.post(f"/mailboxes/{mailbox.pk}/reconnect/")
    done = entra.sign_in(client, start)
    assert done.status_code == 302
    assert MailAccount.objects.count() == 1
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.ACTIVE and mailbox.last_error == ""
    assert not AdminAlert.objects.filter(resolved_at__isnull=True).exists()
    assert b"banner-alert" not in client.get("/").content
    assert vault.get_access_token(mailbox, OUTLOOK_RESOURCE).startswith("eyJ")


@pytest.mark.parametrize(
    ("break_it", "reason", "words"),
    [
        ("expire", "expired", "90 days"),
        ("consent", "consent", "Consent"),
    ],
)
def test_other_dead_grants_need_reconnect(
    connect: Callable, entra: Entra, break_it: str, reason: str, words: str
) -> None:
    mailbox = connect(lifetime=60)
    if break_it == "expire":
        entra.idp.expire_refresh_tokens(mailbox.address)
    else:
        entra.idp.inject(400, error="invalid_grant", code=65001, description="No consent.")
    with pytest.raises(vault.NeedsReconnect, match=words):
        vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.NEEDS_RECONNECT
    assert mailbox.status_reason == reason


def test_throttling_honours_retry_after(connect: Callable, entra: Entra) -> None:
    mailbox = connect(lifetime=60)
    entra.idp.inject(429, retry_after=7)
    with pytest.raises(vault.TokenUnavailable) as caught:
        vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    assert caught.value.retry_after is not None and caught.value.retry_after >= 7
    assert len(entra.refresh_requests()) == 1  # 7 s exceeds the 1 s budget: no retry
    # Other workers wait out the Retry-After without asking Microsoft again.
    with pytest.raises(vault.TokenUnavailable) as again:
        vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    assert 5 <= (again.value.retry_after or 0) <= 9
    assert len(entra.refresh_requests()) == 1
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.ACTIVE and not AdminAlert.objects.exists()


def test_server_errors_are_retried_with_backoff(connect: Callable, entra: Entra) -> None:
    mailbox = connect(lifetime=60)
    entra.idp.inject(500, count=2)
    token = vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    assert token.startswith("eyJ")
    assert [r.status for r in entra.refresh_requests()] == [500, 500, 200]


def test_persistent_server_errors_become_token_unavailable(connect: Callable, entra: Entra) -> None:
    mailbox = connect(lifetime=60)
    entra.idp.inject(500, count=100)
    with pytest.raises(vault.TokenUnavailable) as caught:
        vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    assert caught.value.retry_after and caught.value.retry_after > 0
    assert "HTTP 500" in str(caught.value)
    assert 2 <= len(entra.refresh_requests()) < 20
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.ACTIVE


def test_temporarily_unavailable_503_is_transient(connect: Callable, entra: Entra) -> None:
    mailbox = connect(lifetime=60)
    entra.idp.inject(503, count=1)
    assert vault.get_access_token(mailbox, OUTLOOK_RESOURCE).startswith("eyJ")


def test_unreachable_entra_is_transient(connect: Callable, entra: Entra, settings: Any) -> None:
    mailbox = connect(lifetime=60)
    settings.MICROSOFT_AUTHORITY_HOST = "https://127.0.0.1:9"
    with pytest.raises(vault.TokenUnavailable, match="connection to Microsoft"):
        vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.ACTIVE


def test_expired_client_secret_alerts_the_admins_once(
    connect: Callable,
    entra: Entra,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    client: Client,
) -> None:
    first, second = connect(lifetime=60), connect(lifetime=60)
    entra.idp.expire_client_secret(entra.app.client_id)
    with django_capture_on_commit_callbacks(execute=True):
        for mailbox in (first, second, first):
            with pytest.raises(vault.AppRegistrationError) as caught:
                vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    text = str(caught.value)
    assert "client secret has expired" in text and "MICROSOFT_CLIENT_SECRET" in text
    assert isinstance(caught.value, vault.NeedsReconnect)  # sync stops for it all the same
    (alert,) = AdminAlert.objects.filter(resolved_at__isnull=True)
    assert alert.kind == "microsoft_app" and alert.mailbox is None
    assert "AADSTS7000222" in alert.message
    assert len(mail.outbox) == 1 and "app registration" in mail.outbox[0].subject
    first.refresh_from_db()
    assert first.status == MailAccount.Status.ERROR and first.status_reason == "app_credentials"
    # The third call was refused without asking Microsoft with the same rejected secret.
    assert len(entra.refresh_requests()) == 2
    assert b"client secret has expired" in client.get("/mailboxes/").content

    # The admin adds a new secret and restarts: the next request works and clears it all.
    fixed = entra.idp.register_client(redirect_uris=entra.app.redirect_uris)
    entra.idp.clients[entra.app.client_id].secret = fixed.secret
    entra.idp.clients[entra.app.client_id].secret_expired = False
    settings.MICROSOFT_CLIENT_SECRET = fixed.secret
    assert vault.get_access_token(first, OUTLOOK_RESOURCE).startswith("eyJ")
    first.refresh_from_db()
    assert first.status == MailAccount.Status.ACTIVE and first.last_error == ""
    assert not AdminAlert.objects.filter(resolved_at__isnull=True).exists()


def test_no_replay_of_a_cached_400(connect: Callable, entra: Entra) -> None:
    """msal replays an HTTP 400 for 60 s per app object; Mailweb uses a fresh one each time."""
    from accounts import microsoft

    mailbox = connect(lifetime=60)
    refresh_token = vault.read_credentials(mailbox)["refresh_token"]
    authority = microsoft.refresh_authority(mailbox.tenant_id)
    scopes = microsoft.scopes_for(mailbox, OUTLOOK_RESOURCE)
    entra.idp.inject(400, error="interaction_required", code=50076, description="MFA.")
    with pytest.raises(microsoft.MicrosoftError) as caught:
        microsoft.redeem_refresh_token(authority, refresh_token, scopes)
    assert caught.value.kind == "reconnect"
    grant = microsoft.redeem_refresh_token(authority, refresh_token, scopes)  # same body
    assert grant.access_token and len(entra.refresh_requests()) == 2


def test_undecryptable_credentials_need_reconnect(
    connect: Callable, entra: Entra, settings: Any
) -> None:
    from cryptography.fernet import Fernet

    mailbox = connect(lifetime=60)
    settings.MAILWEB_TOKEN_KEYS = [Fernet.generate_key().decode()]  # the old key is gone
    with pytest.raises(vault.NeedsReconnect, match="MAILWEB_TOKEN_KEYS"):
        vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    mailbox.refresh_from_db()
    assert mailbox.status == MailAccount.Status.NEEDS_RECONNECT
    assert entra.refresh_requests() == []


def test_password_and_disabled_mailboxes_are_refused(mailbox: MailAccount) -> None:
    with pytest.raises(ValueError, match="does not sign in with Microsoft"):
        vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    oauth = MailAccount.objects.create(
        address="gone@contoso.example",
        method=MailAccount.Method.MICROSOFT_IMAP,
        status=MailAccount.Status.DISABLED,
    )
    with pytest.raises(vault.NeedsReconnect, match="disconnected"):
        vault.get_access_token(oauth, OUTLOOK_RESOURCE)
