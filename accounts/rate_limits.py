"""Sliding-window counters in the shared cache, for throttling sign-in and password resets.

Each key holds the timestamps of recent events (at most 50), so limits work across web
processes and machines that share the cache (Redis in production).
"""

import time

from django.core.cache import cache


def recent_events(key: str, window: float) -> list[float]:
    """Timestamps of the events under ``key`` within the last ``window`` seconds."""
    now = time.time()
    return [stamp for stamp in cache.get(key, []) if stamp > now - window]


def record_event(key: str, window: float) -> None:
    cache.set(key, [*recent_events(key, window), time.time()][-50:], timeout=int(window))


def seconds_until_allowed(key: str, limit: int, window: float) -> int:
    """0 while fewer than ``limit`` events happened in the window, else how long to wait."""
    events = recent_events(key, window)
    if len(events) < limit:
        return 0
    return int(events[-limit] + window - time.time()) + 1
