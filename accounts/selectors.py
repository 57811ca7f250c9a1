"""Who may see what. Every view that touches mail goes through these."""

from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet

from accounts.models import MailAccount, User

AnyUser = User | AnonymousUser


def visible_mailboxes(user: AnyUser) -> QuerySet[MailAccount]:
    """Admins see every mailbox; members the ones granted to them; anonymous users none."""
    if not isinstance(user, User) or not user.is_active:
        return MailAccount.objects.none()
    if user.is_admin:
        return MailAccount.objects.all()
    return MailAccount.objects.filter(access__user=user)


def can_see_mailbox(user: AnyUser, mailbox_id: int) -> bool:
    return visible_mailboxes(user).filter(pk=mailbox_id).exists()
