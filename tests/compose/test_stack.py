"""`docker compose up`, end to end, as a self-hoster runs it.

The self-hosting path had never run until it was tried by hand, and then every page was a
server error. This module builds the image from a copy of this checkout, starts the whole stack
from `.env.example` with only the secrets filled in, and checks what a self-hoster sees first:
every service healthy, the sign-in page with its styles, the first admin's printed password, a
mailbox added on the Mailboxes page synced by the worker into PostgreSQL, raw messages in the
blobs volume, new mail pushed by the `idle` service, and a mailbox connected with "Connect
Microsoft" synced over XOAUTH2.

The IMAP server is a Dovecot on the host and the identity provider the Entra stand-in, reached
from the containers as `imap.test` and `idp.test` through Docker's host gateway, with
certificates from a test CA that the containers trust through `SSL_CERT_FILE` and
`REQUESTS_CA_BUNDLE` in `.env`, as a self-hoster with a private CA or a sovereign cloud sets
them. The base images come from tests/compose/stand_ins/build.sh: pulled, or where Docker Hub
cannot be reached (CI machines), built from Debian's packages.

Needs a Docker daemon and Compose: skipped without them, unless MAILWEB_REQUIRE_COMPOSE=1 (CI),
which turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from tests.conftest import ROOT
from tests.fakes.ca import TestCA
from tests.fakes.dovecot import DovecotServer, free_port
from tests.fakes.idp import FakeClient, FakeIdentityProvider

pytestmark = [pytest.mark.compose, pytest.mark.dovecot]

ADDRESS = "support@example.test"
PASSWORD = "app-password-" + secrets.token_hex(4)
MICROSOFT_ADDRESS = "ops@contoso.example"
SUBJECTS = [f"Order {n} — Lieferung verspätet" for n in range(5)]
APP_SERVICES = ("web", "worker", "beat", "idle")


def _compose_command() -> list[str] | None:
    """``docker compose`` (v2) or ``docker-compose`` (v1), whichever talks to a daemon."""
    if not shutil.which("docker"):
        return None
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return None
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) and (
            subprocess.run([*command, "version"], capture_output=True, timeout=30).returncode == 0
        ):
            return command
    return None


def _message(subject: str, number: int, to: str = ADDRESS) -> bytes:
    message = EmailMessage()
    message["From"] = f"Kundin {number} <kundin{number}@client.test>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<compose-{number}@client.test>"
    message.set_content(f"Bestellung {number} ist nicht angekommen.")
    return message.as_bytes()


def _copy_checkout(target: Path) -> None:
    """The files git would check out (committed or not, ignored ones left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _env_file(port: int, idp: FakeIdentityProvider, app: FakeClient, dovecot: DovecotServer) -> str:
    """.env.example with the secrets, this machine's host and the stand-ins filled in."""
    filled = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "MAILWEB_TOKEN_KEYS": Fernet.generate_key().decode(),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "ALLOWED_HOSTS": "localhost",
        "MAILWEB_BASE_URL": f"http://localhost:{port}",
        "MAILWEB_PORT": str(port),
        "MICROSOFT_CLIENT_ID": app.client_id,
        "MICROSOFT_CLIENT_SECRET": app.secret,
        "MICROSOFT_AUTHORITY_HOST": idp.authority_host,
        "MICROSOFT_IMAP_HOST": f"imap.test:{dovecot.port}",
        "SSL_CERT_FILE": "/test-ca/ca.pem",
        "REQUESTS_CA_BUNDLE": "/test-ca/ca.pem",
    }
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        name = line.partition("=")[0]
        lines.append(f"{name}={filled[name]}" if name in filled else line)
    return "\n".join(lines) + "\n"


_OVERRIDE = """\
x-stand-ins: &stand-ins
  extra_hosts: ["imap.test:host-gateway", "idp.test:host-gateway"]
  volumes: ["blobs:/data", "{ca_dir}:/test-ca:ro"]
services:
""" + "".join(f"  {name}: *stand-ins\n" for name in APP_SERVICES)


@dataclass
class Stack:
    """A running compose project, and the Dovecot and identity provider it talks to."""

    directory: Path
    compose: list[str]
    url: str
    dovecot: DovecotServer
    idp: FakeIdentityProvider
    ca_path: Path

    def run(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [*self.compose, *args],
            cwd=self.directory,
            env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_HOST")},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def state(self, service: str) -> tuple[str, str, int]:
        """The container's status, health (empty without a check) and exit code."""
        container = self.run("ps", "-a", "-q", service).strip()
        assert container, f"no container for {service}"
        template = "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}"
        status, health, code = (
            subprocess.run(
                ["docker", "inspect", "-f", template + "/{{.State.ExitCode}}", container],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .split("/")
        )
        return status, health, int(code)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    compose = _compose_command()
    if compose is None:
        reason = "needs a Docker daemon and docker compose (or docker-compose)"
        if os.environ.get("MAILWEB_REQUIRE_COMPOSE") == "1":
            pytest.fail(reason + "; MAILWEB_REQUIRE_COMPOSE=1 requires them")
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("compose")
    ca_dir = base / "ca"
    ca = TestCA(ca_dir)
    ca_dir.chmod(0o755)
    ca.ca_path.chmod(0o644)
    with contextlib.ExitStack() as cleanup:
        idp = FakeIdentityProvider(ca, host="idp.test", listen="0.0.0.0").start()
        cleanup.callback(idp.stop)
        idp.add_user(MICROSOFT_ADDRESS)
        dovecot = DovecotServer(
            base / "dovecot",
            idp,
            ca=ca,
            users=[(ADDRESS, PASSWORD), MICROSOFT_ADDRESS],
            listen="*",
            cert_hostnames=("localhost", "imap.test"),
        )
        dovecot.start()
        cleanup.callback(dovecot.stop)
        for number, subject in enumerate(SUBJECTS):
            dovecot.append(ADDRESS, "INBOX", _message(subject, number))

        directory = base / "mailweb"
        _copy_checkout(directory)
        port = free_port()
        app = idp.register_client(
            redirect_uris=[f"http://localhost:{port}/oauth/microsoft/callback/"]
        )
        (directory / ".env").write_text(_env_file(port, idp, app, dovecot))
        (directory / "compose.stand-ins.yml").write_text(_OVERRIDE.format(ca_dir=ca_dir))
        files = ["-f", "docker-compose.yml", "-f", "compose.stand-ins.yml"]
        stack = Stack(
            directory,
            [*compose, "-p", f"mailwebcheck{os.getpid()}", *files],
            f"http://localhost:{port}",
            dovecot,
            idp,
            ca.ca_path,
        )
        _provide_base_images()
        cleanup.callback(stack.run, "down", "-v", "--remove-orphans", timeout=300)
        stack.run("up", "-d", "--build", timeout=900)
        failed_before = request.session.testsfailed
        yield stack
        if request.session.testsfailed > failed_before:
            print(stack.run("logs", "--no-color", "--tail", "60", timeout=60))


def _provide_base_images() -> None:
    """Pulled, or built as stand-ins where Docker Hub cannot be reached (stand_ins/build.sh)."""
    built = subprocess.run(
        [str(ROOT / "tests" / "compose" / "stand_ins" / "build.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout + built.stderr


def _wait(
    what: str, check: Callable[[], bool], timeout: float, explain: Callable[[], str] = str
) -> float:
    """Seconds until ``check()`` is true; fails naming ``what`` and ``explain()`` after that."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(1)
    pytest.fail(f"{what}: not within {timeout:.0f} s. {explain()}")


@pytest.mark.timeout(1200)
def test_every_service_becomes_healthy(stack: Stack) -> None:
    _wait(
        "web, worker, beat and idle healthy",
        lambda: all(stack.state(name)[:2] == ("running", "healthy") for name in APP_SERVICES),
        timeout=300,
        explain=lambda: str({name: stack.state(name) for name in APP_SERVICES}),
    )
    assert stack.state("migrate") == ("exited", "", 0)
    health = requests.get(stack.url + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text


def test_the_sign_in_page_is_served_with_its_assets(stack: Stack) -> None:
    page = requests.get(stack.url + "/login/", timeout=10)
    assert page.status_code == 200
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
    assert any(re.fullmatch(r"/static/css/app\.[0-9a-f]{12}\.css", url) for url in assets)
    for url in assets:
        assert requests.get(stack.url + url, timeout=10).status_code == 200, url


def _submit(
    session: requests.Session, url: str, data: dict[str, str], *, follow: bool = True
) -> requests.Response:
    """GET the form at ``url`` for its CSRF token, then POST ``data`` to it."""
    form = session.get(url, timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, f"no CSRF token in {url}"
    return session.post(
        url,
        data={**data, "csrfmiddlewaretoken": token.group(1)},
        allow_redirects=follow,
        timeout=10,
    )


def _inbox(stack: Stack, session: requests.Session) -> str:
    return session.get(stack.url + "/", timeout=10).text


def _signed_in(stack: Stack) -> requests.Session:
    """A session of the first admin, with the password `migrate` printed once."""
    printed = re.search(
        r"Generated password \(shown once[^)]*\): (\S+)", stack.run("logs", "migrate")
    )
    assert printed, "migrate printed no password for the first admin"
    session = requests.Session()
    signed_in = _submit(
        session,
        stack.url + "/login/",
        {"username": "admin@example.com", "password": printed.group(1)},
    )
    assert signed_in.url.rstrip("/") == stack.url, "sign-in did not lead to the inbox"
    return session


def _add_mailbox(stack: Stack, session: requests.Session) -> None:
    """The Mailboxes page's form, as an admin fills it in (STARTTLS on the plain port)."""
    added = _submit(
        session,
        stack.url + "/mailboxes/add-imap/",
        {
            "address": ADDRESS,
            "imap_host": "imap.test",
            "imap_port": str(stack.dovecot.plain_port),
            "imap_security": "starttls",
            "password": PASSWORD,
            "smtp_port": "587",
        },
    )
    assert added.status_code == 200, added.text[:2000]
    # The web container signed in to Dovecot before saving (and trusted its CA to do so).
    assert f"Added {ADDRESS}. Signed in successfully" in added.text, added.text[:2000]


def test_a_mailbox_added_on_the_page_syncs_and_new_mail_is_pushed(stack: Stack) -> None:
    session = _signed_in(stack)
    _add_mailbox(stack, session)

    def inbox() -> str:
        return _inbox(stack, session)

    _wait("the five messages in the inbox", lambda: all(s in inbox() for s in SUBJECTS), 120)
    blobs = stack.run("exec", "-T", "worker", "find", "/data/blobs", "-type", "f")
    assert len(blobs.split()) >= len(SUBJECTS), "raw messages are not in the blobs volume"

    # Wait until the idle service watches the mailbox, so that what follows is push, not the
    # five-minute sweep.
    _wait(
        "the idle service watching the mailbox",
        lambda: "watching mailbox" in stack.run("logs", "idle"),
        60,
    )
    stack.dovecot.append(ADDRESS, "INBOX", _message("Nachtrag per Push", 99))
    seconds = _wait("the pushed message in the inbox", lambda: "Nachtrag per Push" in inbox(), 60)
    print(f"pushed message in the inbox after {seconds:.1f} s (polled once a second)")


def test_connect_microsoft_then_sync_over_xoauth2(stack: Stack) -> None:
    """The admin consents at the identity provider; the worker signs in to IMAP with a token."""
    subjects = [f"Über Entra {n}" for n in range(2)]
    for number, subject in enumerate(subjects, start=200):
        stack.dovecot.append(
            MICROSOFT_ADDRESS, "INBOX", _message(subject, number, MICROSOFT_ADDRESS)
        )
    session = _signed_in(stack)
    start = _submit(
        session,
        stack.url + "/mailboxes/connect/microsoft/",
        {"method": "microsoft_imap", "shared_address": ""},
        follow=False,
    )
    assert start.status_code == 302, start.text[:2000]
    authorize = start.headers["Location"]
    assert authorize.startswith(stack.idp.authority_host + "/"), authorize
    # The browser's side: idp.test is the containers' name for this host; here it is 127.0.0.1.
    stack.idp.next_login = MICROSOFT_ADDRESS
    consented = requests.get(
        authorize.replace(stack.idp.authority_host, f"https://127.0.0.1:{stack.idp.port}", 1),
        allow_redirects=False,
        verify=str(stack.ca_path),
        timeout=10,
    )
    assert consented.status_code == 302, consented.text
    back = session.get(consented.headers["Location"], timeout=30)
    assert back.status_code == 200 and MICROSOFT_ADDRESS in back.text, back.text[:2000]
    _wait(
        "the Microsoft mailbox's messages in the inbox",
        lambda: all(s in _inbox(stack, session) for s in subjects),
        120,
    )
