"""Pending Microsoft sign-ins, kept server-side in the session until the callback.

msal's flow holds the PKCE verifier and the nonce; it never goes to the browser. Several
sign-ins may be pending at once (two tabs), keyed by their ``state``; each is used at most once
and expires after FLOW_TTL_SECONDS (Entra's authorization codes live about ten minutes).
"""

import time
from typing import Any

from django.http import HttpRequest

SESSION_KEY = "microsoft_flows"
FLOW_TTL_SECONDS = 15 * 60
MAX_PENDING = 5


def remember(request: HttpRequest, flow: dict[str, Any], purpose: str, **context: Any) -> None:
    """Keep ``flow`` for the callback, with what to do once it completes."""
    pending = _fresh(request.session.get(SESSION_KEY) or {})
    pending[flow["state"]] = {
        "flow": flow,
        "purpose": purpose,
        "created": time.time(),
        **context,
    }
    newest = sorted(pending.items(), key=lambda item: item[1]["created"])[-MAX_PENDING:]
    request.session[SESSION_KEY] = dict(newest)


def take(request: HttpRequest, state: str) -> dict[str, Any] | None:
    """The pending sign-in for ``state``, removed from the session; None if unknown/expired."""
    pending = _fresh(request.session.get(SESSION_KEY) or {})
    entry = pending.pop(state, None) if state else None
    request.session[SESSION_KEY] = pending
    return entry


def _fresh(pending: dict[str, Any]) -> dict[str, Any]:
    cutoff = time.time() - FLOW_TTL_SECONDS
    return {
        state: entry
        for state, entry in pending.items()
        if isinstance(entry, dict) and float(entry.get("created", 0)) >= cutoff
    }
