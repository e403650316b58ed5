"""A real local SMTP server for the tests (aiosmtpd), shared by the notification, deadline and
crash tests. No TLS; AUTH PLAIN/LOGIN accepted in clear, like a relay on localhost."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tasks.notify import KEY_HEADER

PASSWORD = "Hemligt:p@ss/w?rd#%&+42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mail:
    envelope_to: list[str]
    message: EmailMessage


@dataclass
class Mailbox:
    """aiosmtpd handler that keeps what it receives; `mode` makes it misbehave like a sick server:
    tempfail = 451 on DATA, drop = close the connection in the middle of DATA, auth_echo = refuse the
    login with a reply that repeats the password (as a careless server might)."""

    mode: str = "ok"
    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    delay: float = 0.0
    drop_data: set[int] = field(default_factory=set)  # close the connection on these DATA commands (1, 2, ...)
    data_seen: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_seen += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "tempfail":
            return "451 4.3.0 Tillfälligt fel, försök igen senare"
        if self.mode == "drop" or self.data_seen in self.drop_data:
            server.transport.close()
            return "250 OK"
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        self.mails.append(Mail(list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        if self.mode == "auth_echo":
            return AuthResult(success=False, handled=False, message=f"535 5.7.8 Fel lösenord {password} för {login}")
        return AuthResult(success=password in (PASSWORD, os.environ.get("STYRKEDJA_SMTP_LOSEN")))

    def received_keys(self) -> list[str]:
        return [str(m.message[KEY_HEADER]) for m in self.mails]


class SmtpServer:
    """A local SMTP server without TLS that accepts AUTH PLAIN/LOGIN in clear (like a relay on
    localhost); `stop()` makes the port refuse connections, `start()` brings it back."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.box = Mailbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(
            self.box,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self.box.authenticate,
            auth_require_tls=False,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def find(self, key: str) -> EmailMessage:
        """The message with this outbox key."""
        return next(m.message for m in self.box.mails if str(m.message[KEY_HEADER]) == key)


def local_smtp(monkeypatch: Any, *, start: bool = True, login: bool = False) -> Iterator[SmtpServer]:
    """A test's SMTP server, its port (and, with `login`, the sample's user and password) in the
    environment the sample configuration reads; `start=False` leaves bringing it up to the test.
    A fixture body: `yield from local_smtp(monkeypatch)`."""
    server = SmtpServer()
    monkeypatch.setenv("STYRKEDJA_SMTP_PORT", str(server.port))
    if login:
        monkeypatch.setenv("STYRKEDJA_SMTP_USER", "styrkedja")
        monkeypatch.setenv("STYRKEDJA_SMTP_PASS", PASSWORD)
    if start:
        server.start()
    try:
        yield server
    finally:
        server.stop()
