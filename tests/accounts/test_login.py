"""Signing in with email and password, and being kept out when signed out."""

import pytest
from django.test import Client

from accounts.models import User

pytestmark = pytest.mark.smoke


def test_signed_out_visitor_is_sent_to_sign_in(client: Client, db: None) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_admin_signs_in_and_sees_inbox(client: Client, admin_user: User) -> None:
    page = client.get("/login/")
    assert page.status_code == 200
    assert b"Sign in to Mailweb" in page.content
    response = client.post(
        "/login/",
        {"username": "ADMIN@example.com", "password": "correct horse battery"},
        follow=True,
    )
    assert response.status_code == 200
    assert response.wsgi_request.user == admin_user
    assert b"Inbox" in response.content


def test_wrong_password_is_refused(client: Client, admin_user: User) -> None:
    response = client.post("/login/", {"username": "admin@example.com", "password": "wrong"})
    assert response.status_code == 200
    assert not response.wsgi_request.user.is_authenticated


def test_pages_carry_a_strict_csp(client: Client, db: None) -> None:
    response = client.get("/login/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
