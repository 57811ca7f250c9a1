"""An IMAPS proxy in front of a Dovecot stand-in that answers chosen commands itself, or cuts
connections short.

Some server behaviour cannot be provoked from Dovecot: Exchange Online's throttling, for one,
refuses a command with "NO Request is throttled. Suggested Backoff Time: 299910 milliseconds"
(or BAD, then BYE). The proxy terminates TLS with a certificate of the test CA, relays every
line to Dovecot over TLS and back, and while ``refusing`` is set answers client commands that
match ``pattern`` with ``answer`` (after the command's tag) instead of forwarding them; with
no ``answer`` it cuts the connection instead, as a network failing at that moment would.
``rewrite`` changes the commands it forwards meanwhile (say, to make Dovecot leave a message
out of a FETCH answer, as a misbehaving server might).

A network that fails halfway is provoked with ``cuts``: each new connection takes the next
number from that list and is closed, both ways and without a word, once the server has sent
that many bytes of it (mid-line or mid-literal, wherever the count falls): closed, or with
``reset`` dropped with a TCP reset.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import struct
import threading
from collections.abc import Callable

from tests.fakes.ca import TestCA

__all__ = ["ImapProxy"]


class ImapProxy:
    """``ImapProxy(ca, upstream_port, pattern=, answer=, cuts=)``; ``port`` once started."""

    def __init__(
        self,
        ca: TestCA,
        upstream_port: int,
        *,
        pattern: bytes = rb"(?!)",
        answer: bytes = b"",
        cuts: list[int] | None = None,
        reset: bool = False,
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.pattern = re.compile(pattern, re.IGNORECASE)
        self.answer = answer
        self.refusing = True
        self.refused = 0
        self.connections = 0
        self.cuts = list(cuts or [])
        self.reset = reset  # cut with a TCP reset (as a middlebox does) instead of a close
        self.rewrite = rewrite  # applied to each command line forwarded while ``refusing``
        self.cut = 0  # connections cut so far
        cert = ca.issue_server_cert("imap-proxy")
        self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_tls.load_cert_chain(cert.cert_path, cert.key_path)
        self._client_tls = ssl.create_default_context(cafile=str(ca.ca_path))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="imap-proxy", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        self.connections += 1
        try:
            client = self._server_tls.wrap_socket(raw, server_side=True)
            upstream = self._client_tls.wrap_socket(
                socket.create_connection(("127.0.0.1", self.upstream_port)),
                server_hostname="127.0.0.1",
            )
        except OSError:
            raw.close()
            return
        lock = threading.Lock()  # client writes come from both directions
        budget = self.cuts.pop(0) if self.cuts else None
        threading.Thread(
            target=self._pump, args=(upstream, client, lock, budget), daemon=True
        ).start()
        reader = client.makefile("rb")
        try:
            for line in reader:
                if self.refusing and self.pattern.search(line):
                    self.refused += 1
                    if not self.answer:
                        break  # no answer at all: the connection is cut (``finally``)
                    tag = line.split(b" ", 1)[0]
                    with lock:
                        client.sendall(tag + b" " + self.answer + b"\r\n")
                    continue
                if self.refusing and self.rewrite is not None:
                    line = self.rewrite(line)
                upstream.sendall(line)
        except OSError:
            pass
        finally:
            reader.close()  # it holds the client socket open too
            for sock in (upstream, client):
                with contextlib.suppress(OSError):
                    sock.close()

    def _pump(
        self,
        source: ssl.SSLSocket,
        sink: ssl.SSLSocket,
        lock: threading.Lock,
        budget: int | None,
    ) -> None:
        """Relay the server's bytes to the client; past ``budget`` of them, cut both ends."""
        try:
            while data := source.recv(65536):
                if budget is not None and len(data) >= budget:
                    with lock:
                        sink.sendall(data[:budget])
                    self.cut += 1
                    self._cut(sink, source)
                    return
                if budget is not None:
                    budget -= len(data)
                with lock:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.close()

    def _cut(self, client: ssl.SSLSocket, upstream: ssl.SSLSocket) -> None:
        """End both connections now: with a FIN, or (``reset``) with a TCP reset.

        A reset goes out when the last reference to a socket closes with a zero linger time;
        ``_serve``'s reader holds the client socket, so its reading half is shut to wake it,
        and its ``finally`` closes both.
        """
        with contextlib.suppress(OSError):
            if self.reset:
                linger = struct.pack("ii", 1, 0)
                for sock in (client, upstream):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                client.shutdown(socket.SHUT_RD)
            else:
                for sock in (client, upstream):
                    sock.shutdown(socket.SHUT_RDWR)
