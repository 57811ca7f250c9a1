"""Settings: production refuses to start without secrets; env helpers are strict."""

import json
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from accounts.endpoints import host_and_port
from mailweb.env import env_bool, env_int, env_list, env_secret, env_str
from tests.conftest import PRODUCTION_SECRETS, ROOT, outside_environment

pytestmark = pytest.mark.smoke


def _import_settings(code: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter with ``env``, then run ``code`` there."""
    return subprocess.run(
        [sys.executable, "-c", "import json\nfrom mailweb import settings\n" + code],
        cwd=ROOT,
        env=outside_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_secrets() -> None:
    result = _import_settings(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY, MAILWEB_TOKEN_KEYS, ALLOWED_HOSTS" in result.stderr


def test_production_starts_with_secrets() -> None:
    result = _import_settings(DEBUG="false", **PRODUCTION_SECRETS)
    assert result.returncode == 0, result.stderr


def test_env_example_blanks_mean_the_defaults() -> None:
    """Every line of .env.example as docker compose passes it on: blank values set but empty."""
    example = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            example[name] = value
    result = _import_settings(
        "print(json.dumps({'static': str(settings.STATIC_ROOT),"
        " 'blobs': str(settings.STORAGES['default']['OPTIONS']['location']),"
        " 'data': str(settings.DATA_DIR), 'secure': settings.SESSION_COOKIE_SECURE,"
        " 'hsts': settings.SECURE_HSTS_SECONDS, 'origins': settings.CSRF_TRUSTED_ORIGINS}))",
        **{
            **example,
            "SECRET_KEY": PRODUCTION_SECRETS["SECRET_KEY"],
            "MAILWEB_TOKEN_KEYS": PRODUCTION_SECRETS["MAILWEB_TOKEN_KEYS"],
        },
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["static"] == str(ROOT / "staticfiles")
    assert values["data"] == str(ROOT / "data")
    assert values["blobs"] == str(ROOT / "data" / "blobs")
    # MAILWEB_BASE_URL is https:// in the example, so cookies are secure and HSTS is on.
    assert values["secure"] is True
    assert values["hsts"] == 31536000
    assert values["origins"] == ["https://mail.example.com"]


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
    for blank in ("", "  "):
        monkeypatch.setenv("BLANK", blank)
        assert env_str("BLANK", "fallback") == "fallback"
        assert env_bool("BLANK", default=True) is True
        assert env_int("BLANK", 3) == 3
        assert env_list("BLANK", ["x"]) == ["x"]
        assert env_secret("BLANK", "fallback") == "fallback"
    secret_file = tmp_path / "secret"  # type: ignore[operator]
    secret_file.write_text("s3cret\n")
    monkeypatch.delenv("TOKEN", raising=False)
    monkeypatch.setenv("TOKEN_FILE", str(secret_file))
    assert env_secret("TOKEN") == "s3cret"
    assert host_and_port("outlook.office365.com:993", 143) == ("outlook.office365.com", 993)
    assert host_and_port("mail.example.com", 993) == ("mail.example.com", 993)
    assert host_and_port("[::1]:1143", 993) == ("::1", 1143)
