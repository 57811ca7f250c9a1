"""Every Mailboxes / Connect Microsoft page: signed-out → sign-in, members → 403."""

import pytest
from django.test import Client

from accounts.models import MailAccount, User

PAGES = [
    ("get", "/mailboxes/"),
    ("get", "/mailboxes/add-imap/"),
    ("post", "/mailboxes/add-imap/"),
    ("get", "/mailboxes/{pk}/disconnect/"),
    ("post", "/mailboxes/{pk}/disconnect/"),
    ("get", "/mailboxes/{pk}/folders/"),
    ("post", "/mailboxes/{pk}/folders/"),
    ("post", "/mailboxes/{pk}/access/"),
    ("post", "/mailboxes/{pk}/access/{user}/revoke/"),
    ("get", "/mailboxes/connect/microsoft/"),
    ("post", "/mailboxes/connect/microsoft/"),
    ("get", "/mailboxes/{pk}/reconnect/"),
    ("post", "/mailboxes/{pk}/reconnect/"),
]


def _url(template: str, mailbox: MailAccount, user: User) -> str:
    return template.format(pk=mailbox.pk, user=user.pk)


@pytest.mark.parametrize(("method", "template"), PAGES)
def test_signed_out_visitors_are_sent_to_sign_in(
    client: Client, mailbox: MailAccount, member: User, method: str, template: str
) -> None:
    url = _url(template, mailbox, member)
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize(("method", "template"), PAGES)
def test_members_are_refused(
    client: Client, mailbox: MailAccount, member_with_access: User, method: str, template: str
) -> None:
    client.force_login(member_with_access)
    response = getattr(client, method)(_url(template, mailbox, member_with_access))
    assert response.status_code == 403
    assert MailAccount.objects.filter(pk=mailbox.pk, status="active").exists()


def test_members_do_not_see_the_nav_link(client: Client, member: User, admin_user: User) -> None:
    client.force_login(member)
    assert b'href="/mailboxes/"' not in client.get("/").content
    client.force_login(admin_user)
    assert b'href="/mailboxes/"' in client.get("/").content


def test_callback_for_a_connect_flow_needs_an_admin(client: Client, member: User) -> None:
    client.force_login(member)
    session = client.session
    session["microsoft_flows"] = {
        "s1": {"flow": {"state": "s1"}, "purpose": "connect", "created": 9e12}
    }
    session.save()
    response = client.get("/oauth/microsoft/callback/", {"state": "s1", "code": "c"})
    assert response.status_code == 403
