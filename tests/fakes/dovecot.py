"""A real Dovecot 2.3 as the IMAP peer in tests, with XOAUTH2 against the fake identity provider.

Mailweb's IMAP sync must be tested against a server with real IMAP semantics (UIDVALIDITY,
IDLE, MOVE, flags), and its tokens must be accepted the way Exchange accepts them. Dovecot's
oauth2 passdb validates the IdP's RS256 JWTs locally, so login fails exactly when the token is
expired, forged or issued by another tenant. ``hide_capabilities`` and ``exchange_names`` make
it look like Exchange Online (no CONDSTORE/QRESYNC/SPECIAL-USE; "Sent Items", ...).

Why files live in two places: pytest's temporary directories are ``0700`` and owned by the
test user, but Dovecot's unprivileged processes (``dovecot`` for auth, ``nobody`` for mail)
must traverse to the keys, passwd files, sockets and mail. So mail, keys and sockets live in a
``0755`` directory made with :func:`tempfile.mkdtemp` (linked as ``<tmpdir>/runtime``), while the
configuration and logs, read and written only by root processes, stay in ``tmpdir``.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.fakes.ca import TestCA
from tests.fakes.dovecot_admin import MASTER_USER, DovecotAdmin
from tests.fakes.dovecot_conf import (
    EXCHANGE_CAPABILITIES,
    EXCHANGE_FOLDERS,
    STANDARD_FOLDERS,
    DovecotLayout,
    render_config,
    render_oauth2,
)

if TYPE_CHECKING:
    from tests.fakes.idp import FakeClient, FakeIdentityProvider

__all__ = ["DOVECOT_BINARY", "DovecotServer", "free_port"]

DOVECOT_BINARY = "/usr/sbin/dovecot"
DOVEADM_BINARY = "/usr/bin/doveadm"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _group_of(user: str) -> str:
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


class DovecotServer(DovecotAdmin):
    """One Dovecot instance on free 127.0.0.1 ports: IMAPS (implicit TLS) and plain IMAP.

    ``users`` are created up front: an email string for a token-only user, or an
    ``(email, password)`` pair for a password user. ``issuers`` defaults to
    ``idp.issuers()`` at start. ``listen="*"`` and extra ``cert_hostnames`` let containers
    reach it through the host (tests/compose).
    """

    def __init__(
        self,
        tmpdir: str | Path,
        idp: FakeIdentityProvider | None = None,
        *,
        ca: TestCA | None = None,
        hide_capabilities: bool = False,
        exchange_names: bool = False,
        users: Iterable[str | tuple[str, str]] = (),
        plain_port: bool = True,
        issuers: Iterable[str] | None = None,
        listen: str = "127.0.0.1",
        cert_hostnames: tuple[str, ...] = ("localhost",),
    ) -> None:
        self.tmpdir = Path(tmpdir)
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.idp = idp
        self.ca = ca or (idp.ca if idp else TestCA(self.tmpdir / "ca"))
        self.hide_capabilities = hide_capabilities
        self.exchange_names = exchange_names
        self.folders = dict(EXCHANGE_FOLDERS if exchange_names else STANDARD_FOLDERS)
        self.host = "127.0.0.1"
        self.listen = listen
        self.cert_hostnames = cert_hostnames
        self.master_password = "master-" + os.urandom(8).hex()
        self.instance_marker = base64.b64encode(os.urandom(12)).decode()
        self._users = list(users)
        self._plain_port = plain_port
        self._issuers = list(issuers) if issuers is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self.layout: DovecotLayout | None = None
        self._listening = False

    # -- lifecycle -------------------------------------------------------------------------

    def _build_layout(self) -> DovecotLayout:
        runtime = Path(tempfile.mkdtemp(prefix="mailweb-dovecot-"))
        runtime.chmod(0o755)
        link = self.tmpdir / "runtime"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(runtime)
        cert_name = "-".join(("imap", *self.cert_hostnames[1:]))  # the CA caches by name
        cert = self.ca.issue_server_cert(cert_name, hostnames=self.cert_hostnames)
        mail_user = "nobody"  # Dovecot refuses uid 0 for mail; nobody owns no other files.
        issuers = self._issuers if self._issuers is not None else []
        if self._issuers is None and self.idp is not None:
            issuers = self.idp.issuers()
        return DovecotLayout(
            conf_dir=self.tmpdir,
            runtime=runtime,
            imaps_port=free_port(),
            imap_port=free_port() if self._plain_port else None,
            cert_path=cert.cert_path,
            key_path=cert.key_path,
            mail_user=mail_user,
            mail_group=_group_of(mail_user),
            internal_user="dovecot",
            login_user="dovenull",
            issuers=issuers,
            folders=self.folders,
            capabilities=EXCHANGE_CAPABILITIES if self.hide_capabilities else None,
            listen=self.listen,
            # Exchange also ends its greeting with a bracketed base64 token.
            greeting=(
                "The Microsoft Exchange IMAP4 service is ready."
                if self.exchange_names or self.hide_capabilities
                else "Dovecot (Mailweb tests) ready."
            )
            + f" [{self.instance_marker}]",
        )

    def _write_files(self, layout: DovecotLayout) -> None:
        """Write config, passwd files and the IdP's public key where Dovecot reads them."""
        mail = layout.runtime / "mail"
        for directory in (layout.runtime / "run", layout.runtime / "state", mail):
            directory.mkdir(exist_ok=True)
        user = pwd.getpwnam(layout.mail_user)
        os.chown(mail, user.pw_uid, user.pw_gid)
        layout.master_passwd_path.write_text(f"{MASTER_USER}:{{PLAIN}}{self.master_password}\n")
        layout.passwd_path.touch()
        for path in (layout.master_passwd_path, layout.passwd_path):
            path.chmod(0o644)  # The auth process runs as "dovecot"; these are test secrets.
        if self.idp is not None:
            self._write_key("default")
            for client_id in list(self.idp.clients):
                self._write_key(client_id)
            if not self._listening:
                self.idp.add_client_listener(self._on_client)
                self._listening = True
        (self.tmpdir / "oauth2.conf.ext").write_text(render_oauth2(layout))
        self.conf_path.write_text(render_config(layout))

    def _write_key(self, azp: str) -> None:
        """Publish the IdP key at ``keys/<azp>/RS256/<kid>``; Dovecot picks the dir by ``azp``."""
        assert self.layout is not None and self.idp is not None
        directory = self.layout.keys_dir / azp.replace("/", "%2f") / "RS256"
        directory.mkdir(parents=True, exist_ok=True)
        for part in (directory, directory.parent, self.layout.keys_dir):
            part.chmod(0o755)
        key_file = directory / self.idp.kid
        key_file.write_text(self.idp.public_key_pem)
        key_file.chmod(0o644)

    def _on_client(self, client: FakeClient) -> None:
        if self.layout is not None:
            self._write_key(client.client_id)

    def start(self) -> DovecotServer:
        """Start ``dovecot -F`` and wait until IMAPS accepts connections (about 0.2 s)."""
        if not Path(DOVECOT_BINARY).exists():
            raise FileNotFoundError(f"{DOVECOT_BINARY} is missing: apt-get install dovecot-imapd")
        if os.geteuid() != 0:
            raise PermissionError(
                "DovecotServer runs Dovecot as root (it switches to the dovecot, dovenull and "
                "nobody users); run the IMAP tests as root, e.g. in the dev container"
            )
        self.layout = self._build_layout()
        try:
            self._write_files(self.layout)
            for entry in self._users:
                if isinstance(entry, tuple):
                    self.add_password_user(*entry, wait=False)  # not running yet
            self._spawn()
            for entry in self._users:
                with self.admin(entry[0] if isinstance(entry, tuple) else entry):
                    pass  # Logging in once creates the Maildir and the auto folders.
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_listening(self, timeout: float = 10.0) -> None:
        assert self._proc is not None
        port = self.port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"dovecot exited with {code}:\n{tail}")
            if self._answers(port):
                return
            time.sleep(0.02)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"dovecot did not listen on port {port} within {timeout}s:\n{tail}")

    def _answers(self, port: int) -> bool:
        """True when *this* instance greets on ``port``: another server (or a previous run)
        may hold the port, so the greeting must carry this instance's marker."""
        context = self.ca.client_context()
        try:
            with (
                socket.create_connection((self.host, port), 0.5) as raw,
                context.wrap_socket(raw, server_hostname=self.host) as tls,
            ):
                return self.instance_marker.encode() in tls.recv(4096)
        except OSError:
            return False

    def _spawn(self) -> None:
        with (self.tmpdir / "dovecot.stderr").open("ab") as stderr:
            self._proc = subprocess.Popen(
                [DOVECOT_BINARY, "-F", "-c", str(self.conf_path)],
                stdout=stderr,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Its own process group, so stop() can end its children.
            )
        self._wait_until_listening()

    def _stop_process(self) -> None:
        """SIGTERM, then SIGKILL the process group: with clients connected (IDLE), Dovecot's
        own shutdown takes over a second, which adds up in tests that restart it."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(0.3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(5)
        self._proc = None

    def restart(self) -> None:
        """Stop and start again on the same ports with the same mail: connections drop,
        as when Exchange restarts a front end."""
        self._stop_process()
        self._spawn()

    def stop(self) -> None:
        """Stop Dovecot and delete its mail and sockets (the log stays in ``tmpdir``)."""
        self._stop_process()
        if self.layout is not None:
            shutil.rmtree(self.layout.runtime, ignore_errors=True)
            self.layout = None

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses and diagnostics ---------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.tmpdir / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.tmpdir / "dovecot.log"

    @property
    def port(self) -> int:
        """The IMAPS (implicit TLS, like outlook.office365.com:993) port."""
        assert self.layout is not None, "start() first"
        return self.layout.imaps_port

    @property
    def plain_port(self) -> int | None:
        """The cleartext IMAP port (STARTTLS offered), or None when disabled."""
        assert self.layout is not None, "start() first"
        return self.layout.imap_port

    @property
    def ca_path(self) -> Path:
        return self.ca.ca_path

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for path in (self.tmpdir / "dovecot.stderr", self.log_path):
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def folder_name(self, special_use: str) -> str:
        """This instance's name for a SPECIAL-USE role, e.g. ``"\\\\Sent"`` -> "Sent Items"."""
        return next(name for name, flag in self.folders.items() if flag == special_use)

    @contextlib.contextmanager
    def unreadable(
        self, user: str, containing: bytes, *, size_in_name: bool = True
    ) -> Iterator[Path]:
        """Inside, Dovecot cannot read the one message of ``user`` holding ``containing``.

        Its Maildir file is made mode 000 (Dovecot reads mail as "nobody"), as a damaged disk
        or a botched restore would leave it: FETCHing it fails, and Dovecot answers NO and
        closes the connection. Without ``size_in_name`` the file also loses the ",S=,W="
        sizes from its name (as files delivered by other tools lack them), so asking for its
        RFC822.SIZE fails too. Readable again on leaving.
        """
        assert self.layout is not None, "start() first"
        maildir = self.layout.runtime / "mail" / user / "Maildir"
        [path] = [
            p
            for p in maildir.rglob("*")
            if p.is_file() and p.parent.name in ("cur", "new") and containing in p.read_bytes()
        ]
        if not size_in_name:
            path = path.rename(path.with_name(re.sub(r",S=\d+,W=\d+", "", path.name)))
        mode = path.stat().st_mode
        path.chmod(0)
        try:
            yield path
        finally:
            # Dovecot may have moved it from new/ to cur/ (adding ":2,<flags>") meanwhile.
            base = path.name.split(":")[0]
            for moved in maildir.rglob(base + "*"):
                moved.chmod(mode)

    # -- users -----------------------------------------------------------------------------

    def add_password_user(self, user: str, password: str, *, wait: bool = True) -> None:
        """Allow ``LOGIN user password``, and (``wait``) return once Dovecot accepts it.

        Dovecot's auth process re-reads the passwd file at most once a second, so a login
        right after the write can fail; waiting makes the next login in a test deterministic.
        """
        assert self.layout is not None, "start() first"
        with self.layout.passwd_path.open("a") as fh:
            fh.write(f"{user.lower()}:{{PLAIN}}{password}\n")
        deadline = time.monotonic() + 10
        while wait:
            client = self.connect(timeout=5)
            try:
                client.login(user, password)
                client.logout()
                return
            except LoginError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def connect(self, *, timeout: float = 10) -> IMAPClient:
        """An unauthenticated IMAPS client trusting the test CA."""
        return IMAPClient(
            self.host, self.port, ssl=True, ssl_context=self.ca.client_context(), timeout=timeout
        )

    def doveadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``doveadm`` against this instance's configuration; raises on failure."""
        return subprocess.run(
            [DOVEADM_BINARY, "-c", str(self.conf_path), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
