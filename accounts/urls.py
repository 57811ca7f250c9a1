"""Sign-in, sign-out, password reset, and connecting Microsoft mailboxes (OAuth flow, callback)."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from accounts.views import microsoft, password_reset, signin

urlpatterns = [
    path("login/", signin.LoginView.as_view(), name="login"),
    path("login/microsoft/", microsoft.sign_in_start, name="login_microsoft"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("mailboxes/connect/microsoft/", microsoft.connect, name="mailbox_connect_microsoft"),
    path("mailboxes/<int:pk>/reconnect/", microsoft.reconnect, name="mailbox_reconnect"),
    path("oauth/microsoft/callback/", microsoft.callback, name="microsoft_callback"),
    # Password reset by email: Django's views with our templates.
    path(
        "password-reset/",
        password_reset.ThrottledPasswordResetView.as_view(
            success_url=reverse_lazy("password_reset_done")
        ),
        name="password_reset",
    ),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            success_url=reverse_lazy("password_reset_complete")
        ),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]
