"""script/server end to end: on the no-server defaults it serves sign-in and a healthy /healthz,
and Ctrl-C stops web, worker, beat and idle."""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def test_server_starts_on_defaults_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "MAILWEB_TESTING"}
    }
    env.update(
        MAILWEB_DATA_DIR=str(tmp_path / "data"),
        MAILWEB_PORT=str(port),
        MAILWEB_ADMIN_EMAIL="first@example.com",
        MAILWEB_ADMIN_PASSWORD="first admin password",
    )
    process = subprocess.Popen(
        ["script/server"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        health = 0
        while time.monotonic() < deadline and process.poll() is None:
            health, _ = _get(f"{base}/healthz")
            if health == 200:
                break
            time.sleep(1)
        assert health == 200, "script/server did not become healthy within 3 minutes"
        status, body = _get(f"{base}/login/")
        assert status == 200 and b"Sign in to Mailweb" in body
        # Ctrl-C in a terminal sends SIGINT to the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = process.stdout.read().decode() if process.stdout else ""
    assert f"running at http://localhost:{port}/" in output
    assert "Created the first admin: first@example.com" in output
    time.sleep(1)
    leftovers = subprocess.run(
        ["pgrep", "-g", str(process.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == [], "web, worker or beat survived Ctrl-C"
