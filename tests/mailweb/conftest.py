"""Fixtures for the inbox tests: a second, hidden mailbox, teammates, signed-in clients."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import MailAccount, MailboxAccess, User
from mailweb.models import Conversation
from tests.mailweb.factories import conversation_with


@pytest.fixture
def hidden_mailbox(db: None) -> MailAccount:
    return MailAccount.objects.create(
        address="secret@example.com",
        method=MailAccount.Method.IMAP_PASSWORD,
        imap_host="127.0.0.1",
    )


@pytest.fixture
def teammate(db: None, mailbox: MailAccount) -> User:
    person = User.objects.create_user(
        email="tess@example.com", password="correct horse battery", name="Tess Teammate"
    )
    MailboxAccess.objects.create(user=person, mailbox=mailbox)
    return person


@pytest.fixture
def outsider(db: None) -> User:
    """A member who sees no mailbox at all."""
    return User.objects.create_user(
        email="olly@example.com", password="correct horse battery", name="Olly Outsider"
    )


@pytest.fixture
def member_client(client: Client, member_with_access: User) -> Client:
    client.force_login(member_with_access)
    return client


@pytest.fixture
def conversation(mailbox: MailAccount) -> Conversation:
    return conversation_with(
        mailbox, 2, subject="Printer on fire", sender="Pat Customer <pat@customer.test>"
    )


@pytest.fixture
def secret_conversation(hidden_mailbox: MailAccount) -> Conversation:
    return conversation_with(
        hidden_mailbox,
        1,
        subject="TOPSECRET merger plans",
        text="TOPSECRET body text",
        sender="Boss <boss@corp.test>",
        attachments=[("TOPSECRET.pdf", "application/pdf", b"%PDF-1.4 TOPSECRET")],
        html="<p>TOPSECRET html</p>",
    )
