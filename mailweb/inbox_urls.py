"""The shared inbox pages."""

from django.urls import path

from mailweb.views import inbox

urlpatterns = [
    path("", inbox.inbox, name="inbox"),
]
