"""Fixtures: a private redis-server (crane_tools.testing) and a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Iterator

import pytest
from crane_tools.redis_server import free_port
from crane_tools.testing import redis_server, redis_url  # noqa: F401 - fixtures


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts (parsed), for the test to read."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[str] = []
        self._cv = threading.Condition()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self._cv:
            self.messages.append(msg)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self._cv.notify_all()
        return "250 OK"

    def wait(self, n: int = 1, timeout: float = 30.0) -> list[email.message.EmailMessage]:
        """Wait until ``n`` messages have arrived; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.messages)} mail(s) arrived in {timeout:.0f} s, expected {n}")
                self._cv.wait(left)
            return list(self.messages)


class SmtpServer:
    """A local SMTP server on a fixed free port that can be stopped and started again (an outage)."""

    def __init__(self, **server_kwargs) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self.server_kwargs = server_kwargs
        self._controller = None

    def start(self) -> SmtpServer:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **self.server_kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A running local SMTP server (``smtp.port``, ``smtp.inbox``), stopped after the test."""
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_down() -> Iterator[SmtpServer]:
    """A local SMTP server that is *not* running yet (its port refuses connections); ``.start()`` it."""
    server = SmtpServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_auth() -> Iterator[SmtpServer]:
    """A running SMTP server that requires AUTH LOGIN/PLAIN as alice with password ``s3cret``."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    server = SmtpServer(auth_required=True, auth_require_tls=False)

    def authenticator(smtp, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"alice", b"s3cret")
        if ok:
            server.inbox.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    server.server_kwargs["authenticator"] = authenticator
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_tls(tmp_path_factory) -> Iterator[tuple[SmtpServer, str]]:
    """A running SMTP server that requires STARTTLS, with a certificate for 127.0.0.1; and its CA file."""
    import ssl

    from crane_tools.certs import init_ca, issue

    d = str(tmp_path_factory.mktemp("smtp-tls"))
    ca = init_ca(d, "mail-test")
    crt, key = issue(d, "smtp", server=True, hosts=["127.0.0.1"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)
    server = SmtpServer(tls_context=ctx, require_starttls=True).start()
    try:
        yield server, ca
    finally:
        server.stop()
