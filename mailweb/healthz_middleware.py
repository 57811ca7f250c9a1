"""Answers ``/healthz`` before Django validates the Host header.

Container health checks (the Dockerfile's HEALTHCHECK and docker-compose.yml) ask
``http://127.0.0.1:8000/healthz`` from inside the container, so their Host is 127.0.0.1, which
is not among the ALLOWED_HOSTS of a deployment (mail.example.com). Through the normal stack
such a check got 400 and the web container stayed "unhealthy"; with SECURE_SSL_REDIRECT on it
would have got a redirect instead of an answer. This middleware comes first and answers that one
path itself; every other request is host-validated as before.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from mailweb.views.health import healthz


class HealthzMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == "/healthz":
            return healthz(request)
        return self.get_response(request)
