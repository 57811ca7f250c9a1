"""Short-lived shared state for live pages: a change counter and who is looking at what.

Both live in Django's cache (Redis in production), so every web process sees the same values
and nothing needs cleaning up: presence entries expire on their own a few seconds after a
browser stops polling.
"""

import time
from dataclasses import dataclass

from django.core.cache import cache

CHANGE_KEY = "mailweb:changes"
PRESENCE_TTL = 30  # seconds; browsers re-announce every 10 s
VIEWING = "viewing"
REPLYING = "replying"


def bump_changes() -> None:
    """Tell polling pages that something changed (an action committed)."""
    try:
        cache.incr(CHANGE_KEY)
    except ValueError:
        cache.set(CHANGE_KEY, 1, timeout=None)


def change_counter() -> int:
    return int(cache.get(CHANGE_KEY, 0))


@dataclass(frozen=True)
class Presence:
    user_id: int
    name: str
    state: str


def _key(conversation_id: int) -> str:
    return f"mailweb:presence:{conversation_id}"


def announce(conversation_id: int, user_id: int, name: str, state: str) -> list[Presence]:
    """Record that ``user_id`` is viewing or replying now; returns everyone else present."""
    now = time.time()
    entries: dict[str, list[object]] = cache.get(_key(conversation_id)) or {}
    entries = {k: v for k, v in entries.items() if float(v[2]) > now}  # type: ignore[arg-type]
    entries[str(user_id)] = [name, state if state in {VIEWING, REPLYING} else VIEWING, now + 25]
    cache.set(_key(conversation_id), entries, timeout=PRESENCE_TTL)
    return _others(entries, user_id)


def leave(conversation_id: int, user_id: int) -> None:
    entries: dict[str, list[object]] = cache.get(_key(conversation_id)) or {}
    if entries.pop(str(user_id), None) is not None:
        cache.set(_key(conversation_id), entries, timeout=PRESENCE_TTL)


def present(conversation_id: int, user_id: int) -> list[Presence]:
    return _others(cache.get(_key(conversation_id)) or {}, user_id)


def _others(entries: dict[str, list[object]], user_id: int) -> list[Presence]:
    now = time.time()
    return sorted(
        (
            Presence(user_id=int(uid), name=str(value[0]), state=str(value[1]))
            for uid, value in entries.items()
            if uid != str(user_id) and float(value[2]) > now  # type: ignore[arg-type]
        ),
        key=lambda p: p.name,
    )
