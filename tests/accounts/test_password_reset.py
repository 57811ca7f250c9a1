"""Password reset by email: works, and cannot be used to flood someone's inbox."""

import pytest
from django.core import mail
from django.test import Client

from accounts.models import User
from accounts.views.password_reset import PER_ADDRESS_LIMIT, PER_CLIENT_LIMIT

pytestmark = pytest.mark.smoke


def test_reset_mail_arrives_and_its_link_sets_a_new_password(client: Client, member: User) -> None:
    response = client.post("/password-reset/", {"email": "member@example.com"})
    assert response.status_code == 302 and response["Location"] == "/password-reset/sent/"
    assert len(mail.outbox) == 1
    link = next(word for word in mail.outbox[0].body.split() if "/reset/" in word)
    path = link[link.index("/reset/") :]
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "a brand new passphrase", "new_password2": "a brand new passphrase"},
    )
    assert done.status_code == 302
    member.refresh_from_db()
    assert member.check_password("a brand new passphrase")


def test_reset_mails_per_address_are_limited_without_revealing_it(
    client: Client, member: User
) -> None:
    for _ in range(PER_ADDRESS_LIMIT + 2):
        response = client.post("/password-reset/", {"email": "Member@Example.com"})
        assert response.status_code == 302 and response["Location"] == "/password-reset/sent/"
    assert len(mail.outbox) == PER_ADDRESS_LIMIT


def test_reset_requests_per_client_are_limited(client: Client, db: None) -> None:
    for index in range(PER_CLIENT_LIMIT):
        User.objects.create_user(email=f"person{index}@example.com", password="x" * 12)
    User.objects.create_user(email="one-more@example.com", password="x" * 12)
    for index in range(PER_CLIENT_LIMIT):
        client.post("/password-reset/", {"email": f"person{index}@example.com"})
    assert len(mail.outbox) == PER_CLIENT_LIMIT
    response = client.post("/password-reset/", {"email": "one-more@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == PER_CLIENT_LIMIT
