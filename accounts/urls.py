"""Sign-in, sign-out, and connecting Microsoft mailboxes (the OAuth flow and its callback)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts.views import microsoft, signin

urlpatterns = [
    path("login/", signin.LoginView.as_view(), name="login"),
    path("login/microsoft/", microsoft.sign_in_start, name="login_microsoft"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("mailboxes/connect/microsoft/", microsoft.connect, name="mailbox_connect_microsoft"),
    path("mailboxes/<int:pk>/reconnect/", microsoft.reconnect, name="mailbox_reconnect"),
    path("oauth/microsoft/callback/", microsoft.callback, name="microsoft_callback"),
]
