"""The image's collectstatic step writes what production pages need.

The Dockerfile collects static files at build time and the containers run with DEBUG off, which
serves them through a manifest of hashed names. A build that collects them under development
settings writes no manifest, and then every page of the deployment is a server error. This test
runs the Dockerfile's own collectstatic line, then renders the sign-in page under production
settings from what it wrote.
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PRODUCTION_SECRETS, ROOT, outside_environment

pytestmark = pytest.mark.smoke

_SIGN_IN_PAGE = """
import django
django.setup()
from django.test import Client
client = Client()
page = client.get("/login/", HTTP_HOST="mail.example.com", secure=True)
print(page.status_code)
for url in sorted(set(__import__("re").findall(r'(?:href|src)="(/static/[^"]+)"', page.text))):
    print(url, client.get(url, HTTP_HOST="mail.example.com", secure=True).status_code)
icon = client.get("/favicon.ico", HTTP_HOST="mail.example.com", secure=True, follow=True)
print("/favicon.ico", icon.redirect_chain[-1][0], icon.status_code)
"""


def _collectstatic_run() -> tuple[dict[str, str], list[str]]:
    """The variables and command of the Dockerfile's RUN line that calls collectstatic."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runs = [row for row in text.splitlines() if row.startswith("RUN")]
    line = next(row for row in runs if "collectstatic" in row)
    words = shlex.split(line.removeprefix("RUN"))
    env = {}
    while re.fullmatch(r"[A-Z_]+=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words[: words.index("&&")] if "&&" in words else words


def _clean_env(data_dir: Path, static_root: Path, **extra: str) -> dict[str, str]:
    """``outside_environment`` plus ``extra``; files go to ``data_dir`` and ``static_root``
    whatever ``extra`` says."""
    files = {"MAILWEB_DATA_DIR": str(data_dir), "STATIC_ROOT": str(static_root)}
    return outside_environment(**{**extra, "DJANGO_SETTINGS_MODULE": "mailweb.settings", **files})


def _python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """This interpreter with ``args`` in the checkout, in ``env``."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_images_static_files_serve_the_production_sign_in_page(tmp_path: Path) -> None:
    build_env, command = _collectstatic_run()
    assert command[:3] == ["python", "manage.py", "collectstatic"]
    static_root = tmp_path / "static"
    collected = _python(command[1:], _clean_env(tmp_path, static_root, **build_env))
    assert collected.returncode == 0, collected.stderr
    assert (static_root / "staticfiles.json").is_file()

    served = _python(["-c", _SIGN_IN_PAGE], _clean_env(tmp_path, static_root, **PRODUCTION_SECRETS))
    assert served.returncode == 0, served.stderr
    status, *assets = served.stdout.splitlines()
    assert status == "200"
    assert any(re.search(r"/static/css/app\.[0-9a-f]{12}\.css 200$", row) for row in assets), assets
    # The icon too: without one, browsers ask for /favicon.ico on every visit and log a 404;
    # pages that name no icon (Django's admin) are sent to it from there.
    assert any(re.search(r"/static/img/favicon\.[0-9a-f]{12}\.svg 200$", row) for row in assets)
    assert re.fullmatch(r"/favicon\.ico /static/img/favicon\.[0-9a-f]{12}\.svg 200", assets[-1])
    assert all(row.endswith(" 200") for row in assets), assets
