"""Signing in with rate-limited failures, signing out, and resetting a password by email."""

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client, RequestFactory

from accounts import auth_backends
from accounts.models import User

pytestmark = pytest.mark.django_db


def _attempt(client: Client, email: str, password: str, ip: str = "10.0.0.1") -> str:
    response = client.post(
        "/login/", {"username": email, "password": password}, REMOTE_ADDR=ip, follow=True
    )
    return response.content.decode()


def test_account_is_locked_after_repeated_failures_even_with_the_right_password(
    client: Client, member: User
) -> None:
    for _ in range(auth_backends.ACCOUNT_LIMIT):
        page = _attempt(client, member.email, "wrong password")
        assert 'class="error" role="alert"' in page
    page = _attempt(client, member.email, "correct horse battery")
    assert "Too many failed sign-in attempts" in page
    assert "_auth_user_id" not in client.session


def test_lock_is_per_account(client: Client, member: User, admin_user: User) -> None:
    for _ in range(auth_backends.ACCOUNT_LIMIT):
        _attempt(client, member.email, "wrong", ip="10.0.0.2")
    _attempt(client, admin_user.email, "correct horse battery", ip="10.0.0.3")
    assert client.session["_auth_user_id"] == str(admin_user.pk)


def test_one_address_guessing_many_accounts_is_locked(client: Client, member: User) -> None:
    for index in range(auth_backends.IP_LIMIT):
        _attempt(client, f"nobody{index}@example.com", "guess", ip="203.0.113.9")
    page = _attempt(client, member.email, "correct horse battery", ip="203.0.113.9")
    assert "Too many failed sign-in attempts" in page
    # The same person from another address still gets in.
    _attempt(client, member.email, "correct horse battery", ip="198.51.100.7")
    assert client.session["_auth_user_id"] == str(member.pk)


@pytest.mark.parametrize(
    ("behind_proxy", "peer", "forwarded", "counted_as"),
    [
        # The proxy's own address for every visitor; it appends the one it saw.
        (True, "172.18.0.1", "203.0.113.9", "203.0.113.9"),
        (True, "127.0.0.1", "10.9.8.7, 198.51.100.7", "198.51.100.7"),  # the proxy's entry
        (True, "::1", "2001:db8::5", "2001:db8::5"),
        # A visitor on the port directly, or without a proxy: their header is not believed.
        (True, "203.0.113.50", "198.51.100.7", "203.0.113.50"),
        (False, "172.18.0.1", "203.0.113.9", "172.18.0.1"),
        (True, "172.18.0.1", "not an address", "172.18.0.1"),
        (True, "172.18.0.1", "", "172.18.0.1"),
    ],
)
def test_the_address_counted_behind_a_reverse_proxy(
    settings: Any, behind_proxy: bool, peer: str, forwarded: str, counted_as: str
) -> None:
    settings.MAILWEB_BEHIND_PROXY = behind_proxy
    request = RequestFactory().post("/login/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded)
    assert auth_backends.client_ip(request) == counted_as


def test_behind_a_proxy_one_visitor_cannot_lock_out_the_others(
    client: Client, member: User, settings: Any
) -> None:
    """Every request arrives from the proxy; 20 failures of one visitor lock only them."""
    settings.MAILWEB_BEHIND_PROXY = True

    def attempt(email: str, password: str, visitor: str) -> str:
        response = client.post(
            "/login/",
            {"username": email, "password": password},
            REMOTE_ADDR="172.18.0.1",
            HTTP_X_FORWARDED_FOR=visitor,
            follow=True,
        )
        return response.content.decode()

    for index in range(auth_backends.IP_LIMIT):
        attempt(f"nobody{index}@example.com", "guess", "203.0.113.9")
    assert "Too many failed sign-in attempts" in attempt(
        member.email, "correct horse battery", "203.0.113.9"
    )
    attempt(member.email, "correct horse battery", "198.51.100.7")
    assert client.session["_auth_user_id"] == str(member.pk)


def test_success_clears_the_account_counter(client: Client, member: User) -> None:
    for _ in range(auth_backends.ACCOUNT_LIMIT - 1):
        _attempt(client, member.email, "wrong")
    _attempt(client, member.email, "correct horse battery")
    client.logout()
    for _ in range(auth_backends.ACCOUNT_LIMIT - 1):
        _attempt(client, member.email, "wrong")
    _attempt(client, member.email, "correct horse battery")
    assert client.session["_auth_user_id"] == str(member.pk)


def test_admin_sign_in_is_throttled_too(client: Client, admin_user: User) -> None:
    for _ in range(auth_backends.ACCOUNT_LIMIT):
        client.post("/admin/login/", {"username": admin_user.email, "password": "nope"})
    client.post(
        "/admin/login/", {"username": admin_user.email, "password": "correct horse battery"}
    )
    assert "_auth_user_id" not in client.session


def test_sign_out_needs_post_and_ends_the_session(client: Client, member: User) -> None:
    client.force_login(member)
    assert client.get("/").status_code == 200
    response = client.post("/logout/")
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_password_reset_by_email(client: Client, member: User) -> None:
    page = client.get("/login/")
    assert b"/password-reset/" in page.content
    response = client.post("/password-reset/", {"email": "MEMBER@example.com"}, follow=True)
    assert b"Check your email" in response.content
    assert len(mail.outbox) == 1
    body = str(mail.outbox[0].body)
    assert "Reset your Mailweb password" in mail.outbox[0].subject
    link = re.search(r"https?://[^/]+(/reset/[^\s]+/)", body)
    assert link is not None
    form = client.get(link.group(1), follow=True)
    assert b"Choose a new password" in form.content
    done = client.post(
        form.redirect_chain[-1][0] if form.redirect_chain else link.group(1),
        {"new_password1": "a much better secret 42", "new_password2": "a much better secret 42"},
        follow=True,
    )
    assert b"Your password has been changed" in done.content
    member.refresh_from_db()
    assert member.check_password("a much better secret 42")


def test_password_reset_for_unknown_address_says_the_same(client: Client, db: None) -> None:
    response = client.post("/password-reset/", {"email": "ghost@example.com"}, follow=True)
    assert b"Check your email" in response.content
    assert mail.outbox == []
