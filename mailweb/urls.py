"""URL map: the inbox pages (mailweb), sign-in and mailboxes (accounts), admin.

/healthz is answered by mailweb.healthz_middleware, ahead of host validation.
"""

from django.contrib import admin
from django.urls import include, path

from mailweb.views import mailboxes as mailbox_views
from mailweb.views.favicon import favicon
from mailweb.views.mailbox_folders import mailbox_folders

urlpatterns = [
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("mailboxes/", mailbox_views.mailbox_list, name="mailboxes"),
    path("mailboxes/add-imap/", mailbox_views.add_imap, name="mailbox_add_imap"),
    path("mailboxes/<int:pk>/disconnect/", mailbox_views.disconnect, name="mailbox_disconnect"),
    path("mailboxes/<int:pk>/folders/", mailbox_folders, name="mailbox_folders"),
    path("mailboxes/<int:pk>/access/", mailbox_views.grant_access, name="mailbox_grant_access"),
    path(
        "mailboxes/<int:pk>/access/<int:user_id>/revoke/",
        mailbox_views.revoke_access,
        name="mailbox_revoke_access",
    ),
    path("", include("accounts.urls")),
    path("", include("mailweb.inbox_urls")),
]
