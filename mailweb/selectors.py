"""Reads that several views share; every one is scoped to what the user may see."""

from django.db.models import QuerySet

from accounts.selectors import AnyUser, visible_mailboxes
from mailweb.models import Conversation


def visible_conversations(user: AnyUser) -> QuerySet[Conversation]:
    return Conversation.objects.filter(mailbox__in=visible_mailboxes(user))
