"""One SMTP connection per sending lane, reused for a batch of messages.

apprise's e-mail plugin opens a connection, says EHLO, STARTTLS and AUTH, sends one message and
quits, for every message. Inside `reused_connections()` the plugin's `smtplib` is a stand-in whose
SMTP/SMTP_SSL hand out the calling thread's open connection to the same server instead: STARTTLS
and login are done once, `quit()` keeps the connection open, and the connections are closed when
the block ends. A reused connection that the server has closed meanwhile is opened again (once)
and the message sent on the new one; any other error is the message's, as before, and the broken
connection is not handed out again. Outside such a block (and in other threads) nothing changes.
"""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

__all__ = ["install", "reused_connections"]

_local = threading.local()


class _Pooled:
    """Stands in for an smtplib.SMTP object inside apprise; the real one is `self.real`."""

    def __init__(self, key: tuple[Any, ...], factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.key = key
        self._factory, self._args, self._kwargs = factory, args, kwargs
        self.real: Any = factory(*args, **kwargs)
        self.tls: Any = None  # the STARTTLS context, once done
        self.creds: tuple[str, str] | None = None
        self.reused = False  # handed out for a second message: a closed socket is ours to reopen

    def starttls(self, context: Any = None) -> Any:
        if self.tls is not None:
            return None
        result = self.real.starttls(context=context)
        self.tls = context if context is not None else True
        return result

    def login(self, user: str, password: str) -> Any:
        if self.creds == (user, password):
            return None
        if self.creds is not None:  # other credentials on the same server: a connection of their own
            self._reopen(login=False)
        result = self.real.login(user, password)
        self.creds = (user, password)
        return result

    def sendmail(self, from_addr: str, to_addrs: Any, msg: Any) -> Any:
        try:
            return self.real.sendmail(from_addr, to_addrs, msg)
        except smtplib.SMTPServerDisconnected:
            if not self.reused:
                self._drop()
                raise
        except (OSError, smtplib.SMTPException):
            self._drop()
            raise
        self._reopen(login=True)  # the server closed an idle connection: once more on a fresh one
        try:
            return self.real.sendmail(from_addr, to_addrs, msg)
        except (OSError, smtplib.SMTPException):
            self._drop()
            raise

    def quit(self) -> None:
        """Kept open for the lane's next message; closed when the lane's block ends."""

    def close_for_good(self) -> None:
        with suppress(OSError, smtplib.SMTPException, RuntimeError):
            self.real.quit()

    def _reopen(self, login: bool) -> None:
        with suppress(OSError, smtplib.SMTPException, RuntimeError):
            self.real.close()
        self.real = self._factory(*self._args, **self._kwargs)
        if self.tls is not None:
            self.real.starttls(context=None if self.tls is True else self.tls)
        if login and self.creds is not None:
            self.real.login(*self.creds)
        elif not login:
            self.creds = None

    def _drop(self) -> None:
        pool: dict[tuple[Any, ...], _Pooled] | None = getattr(_local, "pool", None)
        if pool is not None and pool.get(self.key) is self:
            del pool[self.key]
        with suppress(OSError, smtplib.SMTPException, RuntimeError):
            self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _factory(real: Any) -> Any:
    def make(host: str = "", port: int = 0, local_hostname: str | None = None, **kwargs: Any) -> Any:
        pool: dict[tuple[Any, ...], _Pooled] | None = getattr(_local, "pool", None)
        if pool is None:
            return real(host, port, local_hostname, **kwargs)
        key = (real, host, port, local_hostname)
        conn = pool.get(key)
        if conn is not None:
            conn.reused = True
            return conn
        conn = _Pooled(key, real, (host, port, local_hostname), kwargs)
        pool[key] = conn
        return conn

    return make


class _SmtplibShim:
    """The `smtplib` module as apprise's e-mail plugin sees it: SMTP and SMTP_SSL pooled."""

    def __init__(self) -> None:
        self.SMTP = _factory(smtplib.SMTP)
        self.SMTP_SSL = _factory(smtplib.SMTP_SSL)

    def __getattr__(self, name: str) -> Any:
        return getattr(smtplib, name)


def install() -> None:
    """Put the stand-in into apprise's e-mail plugin (idempotent)."""
    from apprise.plugins.email import base as email_base

    if not isinstance(email_base.smtplib, _SmtplibShim):
        email_base.smtplib = _SmtplibShim()  # type: ignore[assignment]


@contextmanager
def reused_connections() -> Iterator[None]:
    """Within this block, the calling thread's e-mails to one server share one connection."""
    if getattr(_local, "pool", None) is not None:  # nested: the outer block owns the connections
        yield
        return
    _local.pool = {}
    try:
        yield
    finally:
        pool, _local.pool = _local.pool, None
        for conn in pool.values():
            conn.close_for_good()
