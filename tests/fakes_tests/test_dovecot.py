"""Dovecot as the IMAP peer: XOAUTH2 with the IdP's tokens, IDLE, and the admin helpers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import msal
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.fakes import dovecot as dovecot_module
from tests.fakes.dovecot import DovecotServer
from tests.fakes.idp import FakeIdentityProvider

pytestmark = [
    pytest.mark.dovecot,
    pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended"),
]

IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: %s\r\n\r\nHello.\r\n"


def new_address(idp: FakeIdentityProvider) -> str:
    email = f"box-{uuid.uuid4().hex[:8]}@contoso.example"
    idp.add_user(email)
    return email


def test_xoauth2_accepts_minted_and_msal_tokens(
    dovecot: DovecotServer, fresh_idp: FakeIdentityProvider, trust_test_ca: Path
) -> None:
    email = new_address(fresh_idp)
    imap = dovecot.connect()
    assert imap.oauth2_login(email, fresh_idp.mint_access_token(email)) == [b"Logged in"]
    assert imap.select_folder("INBOX")[b"EXISTS"] == 0
    imap.logout()

    redirect = "https://mailweb.test/cb"
    client = fresh_idp.register_client(redirect_uris=[redirect])  # after Dovecot started
    fresh_idp.next_login = email
    app = msal.ConfidentialClientApplication(
        client.client_id,
        client_credential=client.secret,
        authority=fresh_idp.authority,
        instance_discovery=False,
    )
    flow = app.initiate_auth_code_flow([IMAP_SCOPE], redirect_uri=redirect)
    result = app.acquire_token_by_auth_code_flow(
        flow, fresh_idp.complete_authorize(flow["auth_uri"])
    )
    imap = dovecot.connect()
    imap.oauth2_login(email, result["access_token"])
    imap.logout()
    # A v2-style token names the app in azp: Dovecot finds the key under keys/<client_id>/.
    v2 = fresh_idp.mint_access_token(email, extra_claims={"azp": client.client_id})
    dovecot.connect().oauth2_login(email, v2)


@pytest.mark.parametrize("problem", ["expired", "issuer", "forged", "other_user", "future"])
def test_xoauth2_rejects_bad_tokens(
    dovecot: DovecotServer, idp: FakeIdentityProvider, problem: str
) -> None:
    email = new_address(idp)
    token = {
        "expired": lambda: idp.mint_access_token(email, lifetime=-60),
        "issuer": lambda: idp.mint_access_token(email, issuer="https://sts.windows.net/x/"),
        "forged": lambda: idp.mint_access_token(
            email, key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ),
        "other_user": lambda: idp.mint_access_token(new_address(idp)),
        "future": lambda: idp.mint_access_token(email, extra_claims={"nbf": time.time() + 300}),
    }[problem]()
    with pytest.raises(LoginError):
        dovecot.connect().oauth2_login(email, token)


def test_password_users(dovecot: DovecotServer) -> None:
    dovecot.add_password_user("Shared@Example.com", "s3cret pass")
    imap = dovecot.connect()
    assert imap.login("shared@example.com", "s3cret pass") == b"Logged in"
    with pytest.raises(LoginError):
        dovecot.connect().login("shared@example.com", "wrong")
    assert dovecot.plain_port is not None
    plain = IMAPClient("127.0.0.1", dovecot.plain_port, ssl=False, timeout=5)
    assert plain.login("shared@example.com", "s3cret pass") == b"Logged in"


def test_idle_sees_new_mail(dovecot: DovecotServer, idp: FakeIdentityProvider) -> None:
    email = new_address(idp)
    imap = dovecot.connect()
    imap.oauth2_login(email, idp.mint_access_token(email))
    imap.select_folder("INBOX")
    imap.idle()
    uid = dovecot.append(email, "INBOX", MESSAGE % b"idle")
    responses: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 5
    while not responses and time.monotonic() < deadline:
        responses = imap.idle_check(timeout=1)
    imap.idle_done()
    assert (1, b"EXISTS") in responses
    assert imap.search("ALL") == [uid]


def test_admin_helpers(dovecot: DovecotServer, idp: FakeIdentityProvider) -> None:
    email = new_address(idp)
    first = dovecot.append(email, "INBOX", MESSAGE % b"one", flags=[b"\\Seen"])
    second = dovecot.append(email, "INBOX", MESSAGE % b"two")
    assert dovecot.uids(email, "INBOX") == [first, second]
    dovecot.set_flags(email, "INBOX", second, [b"\\Flagged", b"$label1"])
    assert set(dovecot.flags(email, "INBOX")[second]) >= {b"\\Flagged", b"$label1"}
    moved = dovecot.move(email, "INBOX", first, "Archive")
    assert dovecot.uids(email, "Archive") == [moved]
    dovecot.expunge(email, "INBOX", second)
    assert dovecot.uids(email, "INBOX") == []

    before = dovecot.uidvalidity(email, "Archive")
    after = dovecot.reset_uidvalidity(email, "Archive")
    assert after > before and dovecot.uidvalidity(email, "Archive") == after
    (renumbered,) = dovecot.uids(email, "Archive")
    assert renumbered != moved


def test_standard_server_offers_condstore_and_special_use(
    dovecot: DovecotServer, idp: FakeIdentityProvider
) -> None:
    email = new_address(idp)
    imap = dovecot.connect()
    imap.oauth2_login(email, idp.mint_access_token(email))
    assert {b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE", b"IDLE", b"MOVE"} <= set(imap.capabilities())
    folders = {name: flags for flags, _, name in imap.list_folders()}
    assert b"\\Sent" in folders["Sent"] and b"\\Trash" in folders["Trash"]
    assert dovecot.folder_name("\\Sent") == "Sent"
    imap.enable("CONDSTORE")  # Dovecot reports HIGHESTMODSEQ once CONDSTORE is in use.
    assert b"HIGHESTMODSEQ" in imap.select_folder("INBOX")


def test_exchange_like_server(
    dovecot_exchange_like: DovecotServer, idp: FakeIdentityProvider
) -> None:
    email = new_address(idp)
    imap = dovecot_exchange_like.connect()
    assert b"Microsoft Exchange" in imap.welcome
    imap.oauth2_login(email, idp.mint_access_token(email))
    capabilities = set(imap.capabilities())
    assert {b"IDLE", b"UIDPLUS", b"MOVE"} <= capabilities
    assert not capabilities & {b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE", b"ENABLE"}
    names = {name for _, _, name in imap.list_folders()}
    assert {"INBOX", "Sent Items", "Deleted Items", "Junk Email", "Drafts", "Archive"} <= names
    assert dovecot_exchange_like.folder_name("\\Trash") == "Deleted Items"
    assert b"HIGHESTMODSEQ" not in imap.select_folder("INBOX")
    # The admin helpers need only what Exchange offers (UIDPLUS, STATUS).
    uid = dovecot_exchange_like.append(email, "Sent Items", MESSAGE % b"sent", flags=[b"\\Seen"])
    assert dovecot_exchange_like.uids(email, "Sent Items") == [uid]
    dovecot_exchange_like.move(email, "Sent Items", uid, "Deleted Items")
    assert dovecot_exchange_like.uids(email, "Sent Items") == []


def test_start_stop_and_failures_show_the_log(
    tmp_path: Path, idp: FakeIdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    with DovecotServer(tmp_path / "ok", idp, users=[("pw@example.com", "pw")]) as server:
        runtime = server.tmpdir / "runtime"
        assert runtime.resolve().is_dir()
        assert server.connect().login("pw@example.com", "pw") == b"Logged in"
    assert not runtime.resolve().exists()

    with DovecotServer(tmp_path / "first", idp) as first:
        monkeypatch.setattr(dovecot_module, "free_port", lambda: first.port)
        with pytest.raises(RuntimeError, match="Address already in use"):
            DovecotServer(tmp_path / "clash", idp, plain_port=False).start()


def test_restart_drops_connections_and_keeps_mail(
    tmp_path: Path, idp: FakeIdentityProvider
) -> None:
    with DovecotServer(tmp_path, idp, users=["keep@example.com"]) as server:
        uid = server.append("keep@example.com", "INBOX", MESSAGE % b"kept")
        imap = server.connect(timeout=5)
        imap.oauth2_login("keep@example.com", idp.mint_access_token("keep@example.com"))
        imap.select_folder("INBOX")
        imap.idle()
        server.restart()
        with pytest.raises((OSError, IMAPClient.AbortError)):
            imap.idle_check(timeout=2)
            imap.idle_done()
        assert server.uids("keep@example.com", "INBOX") == [uid]
