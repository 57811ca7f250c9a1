"""Headless Chromium (Debian's, driven by Playwright) against pytest-django's live server.

Every page gets a tripwire before any of its scripts run: ``window.__tripwire`` records calls,
and ``alert``/``confirm``/``prompt`` dialogs, console errors and every request are collected,
so a test can prove that hostile mail executed nothing and contacted no one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

# Playwright's sync API runs an event loop in this thread; Django's ORM refuses to run in a
# thread with a running loop unless told it is fine (it is: tests are not async code).
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TRIPWIRE = """
(() => {
  const record = (what) => {
    try { (window.top.__tripped = window.top.__tripped || []).push(String(what)); } catch (e) {}
    (window.__tripped = window.__tripped || []).push(String(what));
  };
  window.__tripped = window.__tripped || [];
  window.__tripwire = record;
  for (const name of ["alert", "confirm", "prompt", "print"]) {
    const original = window[name];
    window[name] = function (...args) {
      record(name + ":" + args.join(","));
      return original && original.apply(this, args);
    };
  }
})();
"""


@dataclass
class Watch:
    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def page(browser: Any, watch: Watch) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(TRIPWIRE)
    tab = context.new_page()
    tab.set_default_timeout(10000)

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.on(
        "console",
        lambda message: (
            watch.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    tab.on("request", lambda request: watch.requests.append(request.url))
    tab.on("response", lambda response: watch.responses.append(response.url))
    tab.on(
        "requestfailed",
        lambda request: watch.failed.append((request.url, request.failure or "")),
    )
    yield tab
    context.close()


def sign_in_cookie(page: Any, live_server: Any, user: Any) -> None:
    """Skip the sign-in form: put a real session cookie for ``user`` in the browser."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
    )


def tripped(page: Any) -> list[str]:
    return list(page.evaluate("() => window.__tripped || []"))
