"""URL map: the inbox pages (mailweb), sign-in and mailboxes (accounts), admin, health."""

from django.contrib import admin
from django.urls import include, path

from mailweb.views import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("mailweb.inbox_urls")),
]
