"""Password sign-in that slows down guessing: failed attempts are limited per account and per IP.

A drop-in replacement for Django's ``ModelBackend`` (so it also guards the admin's sign-in).
Counters live in the shared cache with a sliding window; while an account or an address is
locked, the password is not even checked, and the sign-in page says how long to wait.
"""

import ipaddress
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from accounts.rate_limits import record_event, seconds_until_allowed

ACCOUNT_LIMIT = 5  # failures per account within WINDOW
IP_LIMIT = 20  # failures per client address within WINDOW
WINDOW = 15 * 60  # seconds


def client_ip(request: HttpRequest | None) -> str:
    """The visitor's address, which failed sign-ins are counted by.

    Behind the reverse proxy (``MAILWEB_BEHIND_PROXY``) REMOTE_ADDR is the proxy's own address
    for every visitor (gunicorn does not replace it), so counting by it would let anyone's 20
    failures lock everybody out. The proxy appends the address it saw to X-Forwarded-For; that
    last entry is believed only from a peer on a private or loopback address, where a proxy
    sits, so that a visitor reaching the port directly cannot choose their own address.
    """
    if request is None:
        return "unknown"
    remote = str(request.META.get("REMOTE_ADDR") or "unknown")
    if not settings.MAILWEB_BEHIND_PROXY or not _is_local(remote):
        return remote
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR") or "").split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(forwarded))
    except ValueError:
        return remote


#: Where a reverse proxy's connections come from: loopback, the private ranges (RFC 1918, and
#: Docker's networks within them) and IPv6 unique-local addresses.
_PROXY_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::1/128",
        "fc00::/7",
    )
)


def _is_local(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _PROXY_NETWORKS)


def _keys(username: str, ip: str) -> tuple[str, str]:
    return f"mailweb:login-fail:acct:{username.strip().lower()}", f"mailweb:login-fail:ip:{ip}"


def seconds_locked(username: str, ip: str) -> int:
    """How long sign-in stays refused for this account or address (0 when allowed)."""
    account_key, ip_key = _keys(username, ip)
    return max(
        seconds_until_allowed(account_key, ACCOUNT_LIMIT, WINDOW),
        seconds_until_allowed(ip_key, IP_LIMIT, WINDOW),
    )


def record_failure(username: str, ip: str) -> None:
    for key in _keys(username, ip):
        record_event(key, WINDOW)


def clear_account(username: str) -> None:
    cache.delete(_keys(username, "")[0])


class ThrottledModelBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None:
            username = kwargs.get("email") or kwargs.get("username")
        if not username or password is None:
            return None
        ip = client_ip(request)
        wait = seconds_locked(username, ip)
        if wait:
            if request is not None:
                request.login_locked_seconds = wait  # type: ignore[attr-defined]
            # PermissionDenied stops Django trying other backends and fails the sign-in.
            raise PermissionDenied("too many failed sign-in attempts")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            record_failure(username, ip)
            wait = seconds_locked(username, ip)
            if wait and request is not None:
                request.login_locked_seconds = wait  # type: ignore[attr-defined]
        else:
            clear_account(username)
        return user
