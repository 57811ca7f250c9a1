"""An SMTP submission server for tests: STARTTLS with the test CA, XOAUTH2 and PLAIN/LOGIN.

Built on aiosmtpd. Like Exchange Online's ``smtp.office365.com:587`` it requires STARTTLS
before AUTH and AUTH before MAIL. XOAUTH2 tokens are checked like Exchange checks them: an
RS256 signature from the identity provider stand-in, the Outlook audience, an unexpired
``exp``, and a ``user=`` matching the token's user (or a shared mailbox the test granted).
Like Dovecot's submission service it refuses an ``AUTH XOAUTH2 <initial response>`` command
line longer than 1,000 bytes, so clients must send the response on its own line.

Received messages are kept in ``messages`` (envelope and exact bytes) for assertions;
``fail_next`` makes the next transactions fail with a given reply to test retries.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.fakes.ca import TestCA
from tests.fakes.dovecot import free_port
from tests.fakes.idp import FakeIdentityProvider

__all__ = ["FakeSMTPServer", "ReceivedMessage"]

OUTLOOK = "https://outlook.office.com"


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    auth_user: str
    mechanism: str


@dataclass
class _State:
    messages: list[ReceivedMessage] = field(default_factory=list)
    auth_attempts: list[tuple[str, str, bool]] = field(default_factory=list)  # mech, user, ok
    passwords: dict[str, str] = field(default_factory=dict)
    shared: dict[str, set[str]] = field(default_factory=dict)  # shared address -> delegates
    failures: list[str] = field(default_factory=list)  # replies for the next DATA commands
    initial_response_lines: list[int] = field(default_factory=list)


class _Handler:
    def __init__(self, server: FakeSMTPServer) -> None:
        self.server = server

    # --- AUTH mechanisms (aiosmtpd calls auth_<NAME>(smtp, args)) ------------------------

    async def auth_XOAUTH2(self, smtp: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 2:
            self.server.state.initial_response_lines.append(len(" ".join(args)) + 5)
            if len(args[1]) > 1000:
                return AuthResult(success=False, handled=False, message="500 5.5.6 Line too long")
            raw = base64.b64decode(args[1])
        else:
            response = await smtp.challenge_auth("")
            if not isinstance(response, bytes):
                return AuthResult(success=False, handled=False)
            raw = response
        user, token = _parse_xoauth2(raw)
        ok = self.server.validate_token(user, token)
        with self.server.lock:
            self.server.state.auth_attempts.append(("XOAUTH2", user, ok))
        if ok:
            return AuthResult(success=True, auth_data=user)
        # RFC 7628 / Google's XOAUTH2: an error challenge, the client answers with an empty
        # line, then the failure.
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": OUTLOOK})
        await smtp.challenge_auth(error)
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )

    # --- SMTP transaction hooks ---------------------------------------------------------------

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        with self.server.lock:
            if self.server.state.failures:
                return self.server.state.failures.pop(0)
            self.server.state.messages.append(
                ReceivedMessage(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=_as_bytes(envelope.original_content or envelope.content or b""),
                    auth_user=str(session.auth_data or ""),
                    mechanism="",
                )
            )
        return "250 2.0.0 OK queued"


def _as_bytes(content: bytes | str) -> bytes:
    return content if isinstance(content, bytes) else content.encode()


def _parse_xoauth2(raw: bytes) -> tuple[str, str]:
    fields = dict(
        part.split("=", 1) for part in raw.decode(errors="replace").split("\x01") if "=" in part
    )
    auth = fields.get("auth", "")
    token = auth[7:] if auth.lower().startswith("bearer ") else ""
    return fields.get("user", ""), token


_AUTH_REFUSED = "535 5.7.8 Authentication credentials invalid"


class _PasswordAuthenticator:
    def __init__(self, server: FakeSMTPServer) -> None:
        self.server = server

    def __call__(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode()
        ok = self.server.state.passwords.get(user.lower()) == auth_data.password.decode()
        with self.server.lock:
            self.server.state.auth_attempts.append((mechanism, user, ok))
        if ok:
            return AuthResult(success=True, auth_data=user)
        # Answer the refusal (the default, handled=True, would leave the client waiting).
        return AuthResult(success=False, handled=False, message=_AUTH_REFUSED)


class _SMTP(SMTP):
    # Lines may be long: an XOAUTH2 response with a real-sized token is ~2.7 kB on its own
    # line (commands stay limited to 512 bytes, so "AUTH XOAUTH2 <long response>" is refused).
    line_length_limit = 16384


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _SMTP(self.handler, **self.SMTP_kwargs)


class FakeSMTPServer:
    """``with FakeSMTPServer(ca, idp) as smtp:`` serves 127.0.0.1:``smtp.port``.

    ``implicit_tls`` serves TLS from the first byte (as port 465 does) instead of STARTTLS.
    """

    def __init__(
        self, ca: TestCA, idp: FakeIdentityProvider | None = None, *, implicit_tls: bool = False
    ) -> None:
        self.ca = ca
        self.idp = idp
        self.implicit_tls = implicit_tls
        self.port = free_port()
        self.lock = threading.Lock()
        self.state = _State()
        self._controller: Controller | None = None

    # -- configuration ----------------------------------------------------------------------

    def add_password_user(self, user: str, password: str) -> None:
        self.state.passwords[user.lower()] = password

    def grant_shared(self, shared_address: str, delegate: str) -> None:
        self.state.shared.setdefault(shared_address.lower(), set()).add(delegate.lower())

    def fail_next(self, reply: str, count: int = 1) -> None:
        """Answer the next ``count`` DATA commands with ``reply`` (e.g. "451 4.3.0 Try later")."""
        with self.lock:
            self.state.failures.extend([reply] * count)

    def reset(self) -> None:
        with self.lock:
            self.state.messages.clear()
            self.state.auth_attempts.clear()
            self.state.failures.clear()
            self.state.initial_response_lines.clear()

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self.lock:
            return list(self.state.messages)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- token validation --------------------------------------------------------------------

    def validate_token(self, user: str, token: str) -> bool:
        if self.idp is None or not token:
            return False
        try:
            claims = jwt.decode(
                token,
                self.idp.public_key_pem,
                algorithms=["RS256"],
                audience=OUTLOOK,
                options={"require": ["exp", "iss", "aud"]},
                leeway=5,
            )
        except jwt.PyJWTError:
            return False
        if claims["iss"] not in self.idp.issuers():
            return False
        if "SMTP.Send" not in str(claims.get("scp", "")).split():
            return False
        owner = str(claims.get("upn") or claims.get("email") or "").lower()
        return user.lower() == owner or owner in self.state.shared.get(user.lower(), set())

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeSMTPServer:
        handler = _Handler(self)
        context = self.ca.server_context("smtp")
        # aiosmtpd does not count implicit TLS as TLS for auth_require_tls, so it would offer
        # no AUTH at all; every byte of that connection is encrypted anyway.
        tls: dict[str, Any] = (
            {"ssl_context": context, "auth_require_tls": False}
            if self.implicit_tls
            else {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
        )
        self._controller = _Controller(
            handler,
            hostname="127.0.0.1",
            port=self.port,
            **tls,
            auth_required=True,
            authenticator=_PasswordAuthenticator(self),
            server_hostname="localhost",
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> FakeSMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
