"""Password reset by email, with a limit on how many reset mails one address or client triggers.

Without it, anyone could make Mailweb mail a person again and again. Over the limit the page
answers exactly as usual ("if the address is known, a link is on its way"), so the limit reveals
nothing about which addresses exist; the mail is simply not sent.
"""

import logging

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.http import HttpResponse, HttpResponseRedirect

from accounts.auth_backends import client_ip
from accounts.rate_limits import record_event, seconds_until_allowed

logger = logging.getLogger(__name__)

PER_ADDRESS_LIMIT = 3  # reset mails per address within WINDOW
PER_CLIENT_LIMIT = 10  # reset requests per client address within WINDOW
WINDOW = 60 * 60  # seconds


class ThrottledPasswordResetView(auth_views.PasswordResetView):
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        address_key = f"mailweb:reset:addr:{form.cleaned_data['email'].strip().lower()}"
        client_key = f"mailweb:reset:ip:{client_ip(self.request)}"
        limited = seconds_until_allowed(address_key, PER_ADDRESS_LIMIT, WINDOW) or (
            seconds_until_allowed(client_key, PER_CLIENT_LIMIT, WINDOW)
        )
        record_event(client_key, WINDOW)
        if limited:
            logger.warning("password reset throttled for a client or address")
            return HttpResponseRedirect(self.get_success_url())
        record_event(address_key, WINDOW)
        return super().form_valid(form)
