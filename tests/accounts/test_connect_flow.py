"""Connect Microsoft end to end: an admin signs in at the Entra stand-in through msal."""

import pytest
from django.core import mail
from django.test import Client

from accounts import vault
from accounts.microsoft import OUTLOOK_RESOURCE
from accounts.models import MailAccount, User
from accounts.signals import mailbox_connected
from tests.accounts.entra_setup import Entra


@pytest.fixture
def admin_client(client: Client, admin_user: User) -> Client:
    client.force_login(admin_user)
    return client


def test_admin_connects_a_mailbox(
    admin_client: Client, entra: Entra, admin_user: User, django_capture_on_commit_callbacks
) -> None:
    email = entra.new_user("ada")
    sent: list[dict] = []

    def receiver(**kwargs: object) -> None:
        sent.append(dict(kwargs))

    mailbox_connected.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = entra.connect(admin_client, email)
    finally:
        mailbox_connected.disconnect(receiver)
    assert response.status_code == 302 and response["Location"] == "/mailboxes/"
    mailbox = MailAccount.objects.get()
    assert mailbox.address == email
    assert mailbox.method == MailAccount.Method.MICROSOFT_IMAP
    assert mailbox.status == MailAccount.Status.ACTIVE
    assert mailbox.tenant_id == entra.idp.tenant_id
    assert mailbox.connected_by == admin_user and not mailbox.is_shared
    assert (mailbox.imap_host, mailbox.imap_port) == ("outlook.office365.com", 993)
    assert sent == [{"signal": mailbox_connected, "sender": MailAccount, "mailbox_id": mailbox.pk}]

    # The flow used PKCE S256, a nonce, and the redirect URI built from MAILWEB_BASE_URL.
    authorize = entra.idp.authorize_requests[-1]
    assert authorize["code_challenge_method"] == "S256" and authorize["nonce"]
    assert authorize["redirect_uri"] == "http://localhost:8000/oauth/microsoft/callback/"
    assert set(authorize["scope"].split()) == {
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
        "openid",
        "profile",
    }
    # The tokens from the sign-in are in the vault: no refresh needed for the first sync.
    before = len(entra.idp.token_requests)
    token = vault.get_access_token(mailbox, OUTLOOK_RESOURCE)
    assert token.startswith("eyJ") and len(entra.idp.token_requests) == before
    assert vault.read_credentials(mailbox)["refresh_token"].startswith("1.AUEA")
    page = admin_client.get("/mailboxes/")
    assert f"Connected {email}".encode() in page.content and email.encode() in page.content
    assert not mail.outbox


def test_connect_page_offers_methods_and_shared_mailbox(admin_client: Client, entra: Entra) -> None:
    page = admin_client.get("/mailboxes/connect/microsoft/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'value="microsoft_imap"' in html and 'value="graph"' in html
    assert "Graph engine ships" in html
    assert 'name="shared_address"' in html
    assert "http://localhost:8000/oauth/microsoft/callback/" in html


def test_shared_mailbox_is_reached_with_the_delegate(admin_client: Client, entra: Entra) -> None:
    delegate = entra.new_user("delegate")
    response = entra.connect(admin_client, delegate, shared_address="Support@Contoso.example")
    assert response.status_code == 302
    mailbox = MailAccount.objects.get()
    assert mailbox.address == "support@contoso.example"
    assert mailbox.is_shared and mailbox.delegate_address == delegate
    assert mailbox.login_name == "support@contoso.example"


def test_graph_method_asks_for_graph_scopes_only(admin_client: Client, entra: Entra) -> None:
    email = entra.new_user("graph")
    entra.connect(admin_client, email, method="graph", shared_address="team@contoso.example")
    mailbox = MailAccount.objects.get()
    assert mailbox.method == MailAccount.Method.GRAPH
    scopes = set(entra.idp.authorize_requests[-1]["scope"].split())
    assert scopes - {"openid", "profile", "offline_access"} == {
        "Mail.ReadWrite",
        "Mail.Send",
        "User.Read",
        "Mail.ReadWrite.Shared",
        "Mail.Send.Shared",
    }
    token_request = entra.idp.token_requests[-1]
    assert not any(s.startswith("https://outlook") for s in token_request.scopes)
    with pytest.raises(ValueError, match="no consent"):
        vault.get_access_token(mailbox, OUTLOOK_RESOURCE)


def test_reconnect_updates_the_same_mailbox(admin_client: Client, entra: Entra) -> None:
    email = entra.new_user("bob")
    entra.connect(admin_client, email)
    mailbox = MailAccount.objects.get()
    first_secret = vault.read_credentials(mailbox)["refresh_token"]
    page = admin_client.get(f"/mailboxes/{mailbox.pk}/reconnect/")
    assert page.status_code == 200 and email.encode() in page.content
    start = admin_client.post(f"/mailboxes/{mailbox.pk}/reconnect/")
    assert entra.idp.authorize_requests == entra.idp.authorize_requests  # (logged below)
    reply = entra.authorize(start)  # no next_login: the login_hint picks the account
    assert entra.idp.authorize_requests[-1]["login_hint"] == email
    done = admin_client.get("/oauth/microsoft/callback/", reply)
    assert done.status_code == 302
    assert MailAccount.objects.count() == 1
    mailbox.refresh_from_db()
    assert vault.read_credentials(mailbox)["refresh_token"] != first_secret


def test_connecting_an_address_again_in_other_case_makes_no_duplicate(
    admin_client: Client, entra: Entra
) -> None:
    email = entra.new_user("case")
    MailAccount.objects.create(
        address=email.upper(), method=MailAccount.Method.IMAP_PASSWORD, imap_host="x"
    )
    entra.connect(admin_client, email)
    mailbox = MailAccount.objects.get()
    assert mailbox.method == MailAccount.Method.MICROSOFT_IMAP
    assert "password" not in vault.read_credentials(mailbox)


def test_reconnect_as_the_wrong_account_is_refused(admin_client: Client, entra: Entra) -> None:
    owner, stranger = entra.new_user("owner"), entra.new_user("stranger")
    entra.connect(admin_client, owner)
    mailbox = MailAccount.objects.get()
    before = vault.read_credentials(mailbox)["refresh_token"]
    start = admin_client.post(f"/mailboxes/{mailbox.pk}/reconnect/")
    page = entra.sign_in(admin_client, start, login=stranger)
    assert page.status_code == 400
    assert f"You signed in as {stranger}".encode() in page.content
    mailbox.refresh_from_db()
    assert vault.read_credentials(mailbox)["refresh_token"] == before
    assert MailAccount.objects.count() == 1


@pytest.mark.parametrize(
    ("error", "description", "expected"),
    [
        ("access_denied", "AADSTS65004: User declined to consent.", b"declined"),
        (
            "consent_required",
            "AADSTS65001: The user or administrator has not consented.",
            b"Grant admin consent",
        ),
        (
            "invalid_request",
            "AADSTS50020: User account from identity provider does not exist in tenant.",
            b"different organization",
        ),
        (
            "unauthorized_client",
            "AADSTS700016: Application with identifier was not found in the directory.",
            b"does not know Mailweb",
        ),
        ("interaction_required", "AADSTS53003: Access has been blocked by CA.", b"Conditional"),
    ],
)
def test_errors_at_microsoft_become_readable_pages(
    admin_client: Client, entra: Entra, error: str, description: str, expected: bytes
) -> None:
    email = entra.new_user("err")
    entra.idp.fail_next_authorize(error, description)
    page = entra.connect(admin_client, email)
    assert page.status_code in (400, 502)
    assert expected in page.content
    assert b"Try again" in page.content and description.split(":")[0].encode() in page.content
    assert not MailAccount.objects.exists()
    assert entra.idp.token_requests == []


def test_expired_client_secret_at_sign_in_explains_the_fix(
    admin_client: Client, entra: Entra
) -> None:
    email = entra.new_user("secret")
    entra.idp.expire_client_secret(entra.app.client_id)
    page = entra.connect(admin_client, email)
    assert page.status_code == 502
    assert b"client secret has expired" in page.content
    assert b"MICROSOFT_CLIENT_SECRET" in page.content and b"AADSTS7000222" in page.content
    assert not MailAccount.objects.exists()


def test_wrong_client_secret_at_sign_in(admin_client: Client, entra: Entra, settings) -> None:
    email = entra.new_user("wrong")
    settings.MICROSOFT_CLIENT_SECRET = "not-the-secret"
    page = entra.connect(admin_client, email)
    assert page.status_code == 502 and b"AADSTS7000215" in page.content
    assert b"value (not its ID)" in page.content


def test_unknown_or_reused_state_is_a_readable_page(admin_client: Client, entra: Entra) -> None:
    email = entra.new_user("state")
    start = admin_client.post("/mailboxes/connect/microsoft/", {"method": "microsoft_imap"})
    reply = entra.authorize(start, email)
    assert admin_client.get("/oauth/microsoft/callback/", reply).status_code == 302
    again = admin_client.get("/oauth/microsoft/callback/", reply)  # reload / replay
    assert again.status_code == 400 and b"expired or was already used" in again.content
    forged = admin_client.get("/oauth/microsoft/callback/", {"code": "x", "state": "forged"})
    assert forged.status_code == 400
    bare = admin_client.get("/oauth/microsoft/callback/")
    assert bare.status_code == 400


def test_flow_from_another_session_is_not_accepted(
    admin_client: Client, entra: Entra, admin_user: User
) -> None:
    email = entra.new_user("csrf")
    start = admin_client.post("/mailboxes/connect/microsoft/", {"method": "microsoft_imap"})
    reply = entra.authorize(start, email)
    other = Client()
    other.force_login(admin_user)
    page = other.get("/oauth/microsoft/callback/", reply)
    assert page.status_code == 400
    assert not MailAccount.objects.exists()


def test_unreachable_microsoft_is_a_readable_page(
    admin_client: Client, entra: Entra, settings
) -> None:
    settings.MICROSOFT_AUTHORITY_HOST = "https://127.0.0.1:9"  # nothing listens there
    page = admin_client.post("/mailboxes/connect/microsoft/", {"method": "microsoft_imap"})
    assert page.status_code == 503
    assert b"connection to Microsoft" in page.content


def test_missing_configuration_explains_what_to_set(admin_client: Client, settings) -> None:
    settings.MICROSOFT_CLIENT_ID = ""
    settings.MICROSOFT_CLIENT_SECRET = ""
    page = admin_client.get("/mailboxes/connect/microsoft/")
    assert page.status_code == 200
    assert b"MICROSOFT_CLIENT_ID" in page.content and b"MICROSOFT_CLIENT_SECRET" in page.content
    assert b"http://localhost:8000/oauth/microsoft/callback/" in page.content
    assert admin_client.post("/mailboxes/connect/microsoft/").status_code == 200
