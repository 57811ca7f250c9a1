"""Settings: production refuses to start without secrets; env helpers are strict."""

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from accounts.endpoints import host_and_port
from mailweb.env import env_bool, env_int, env_list, env_secret
from tests.conftest import ROOT

pytestmark = pytest.mark.smoke


def _import_settings(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAILWEB_", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"))
    }
    clean.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run(
        [sys.executable, "-c", "import mailweb.settings"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_secrets() -> None:
    result = _import_settings(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY, MAILWEB_TOKEN_KEYS, ALLOWED_HOSTS" in result.stderr


def test_production_starts_with_secrets() -> None:
    result = _import_settings(
        DEBUG="false",
        SECRET_KEY="x" * 50,
        MAILWEB_TOKEN_KEYS="ZmRlYnVnZmRlYnVnZmRlYnVnZmRlYnVnZmRlYnVnMTI=",
        ALLOWED_HOSTS="mail.example.com",
    )
    assert result.returncode == 0, result.stderr


def test_env_helpers(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("FLAG", "Yes")
    assert env_bool("FLAG") is True
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured):
        env_bool("FLAG")
    monkeypatch.setenv("NUM", "12")
    assert env_int("NUM", 3) == 12
    monkeypatch.setenv("NUM", "twelve")
    with pytest.raises(ImproperlyConfigured):
        env_int("NUM", 3)
    monkeypatch.setenv("ITEMS", "a, b,,c ")
    assert env_list("ITEMS") == ["a", "b", "c"]
    secret_file = tmp_path / "secret"  # type: ignore[operator]
    secret_file.write_text("s3cret\n")
    monkeypatch.delenv("TOKEN", raising=False)
    monkeypatch.setenv("TOKEN_FILE", str(secret_file))
    assert env_secret("TOKEN") == "s3cret"
    assert host_and_port("outlook.office365.com:993", 143) == ("outlook.office365.com", 993)
    assert host_and_port("mail.example.com", 993) == ("mail.example.com", 993)
    assert host_and_port("[::1]:1143", 993) == ("::1", 1143)
