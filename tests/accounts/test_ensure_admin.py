"""The first admin: created once from the environment, or with a generated password shown once."""

from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User

pytestmark = pytest.mark.smoke


def test_creates_admin_from_environment(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILWEB_ADMIN_EMAIL", "Boss@Example.com")
    monkeypatch.setenv("MAILWEB_ADMIN_PASSWORD", "a long enough password")
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    admin = User.objects.get()
    assert admin.email == "boss@example.com"
    assert admin.is_admin and admin.is_staff
    assert admin.check_password("a long enough password")
    assert "a long enough password" not in out.getvalue()


def test_generates_password_once_and_is_idempotent(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILWEB_ADMIN_EMAIL", raising=False)
    monkeypatch.delenv("MAILWEB_ADMIN_PASSWORD", raising=False)
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    password = out.getvalue().split("after signing in): ")[1].strip()
    assert User.objects.get().check_password(password)
    again = StringIO()
    call_command("ensure_admin", stdout=again)
    assert "already exists" in again.getvalue()
    assert User.objects.count() == 1
