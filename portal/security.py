"""Cookies, CSRF tokens, security headers and the client's address."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasks.receipts import _secret_key

CSRF_COOKIE = "kv_csrf"
OPERATOR_COOKIE = "kv_operator"
HEADERS = {
    # No script at all, no inline style: the pages work without JavaScript.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _key(purpose: bytes) -> bytes:
    return hmac.new(_secret_key(), b"styrkedja portal " + purpose, hashlib.sha256).digest()


def receipt_cookie(receipt_id: int) -> str:
    """The cookie that holds a handoff's link once it is opened (the URL no longer does)."""
    return f"kv_r{receipt_id}"


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, expires: datetime | None = None) -> None:
    response.set_cookie(
        name,
        value,
        expires=expires,
        path="/",
        httponly=True,
        secure=secure(request),
        samesite="strict",
    )


# -- CSRF: a random cookie, and in each form an HMAC of it (a site that cannot read our cookies
# cannot compute it); bound to the operator's session or the handoff link too, where there is one.


def csrf_seed(request: Request) -> tuple[str, bool]:
    """The browser's CSRF cookie value, and whether it is new (then the response must set it)."""
    seed = request.cookies.get(CSRF_COOKIE, "")
    if len(seed) == 43:
        return seed, False
    return secrets.token_urlsafe(32), True


def csrf_token(seed: str) -> str:
    return hmac.new(_key(b"csrf"), seed.encode(), hashlib.sha256).hexdigest()


def csrf_ok(request: Request, given: str | None) -> bool:
    seed = request.cookies.get(CSRF_COOKIE, "")
    return bool(seed and given) and hmac.compare_digest(csrf_token(seed), given or "")


# -- operator sessions: a signed cookie (username, expiry) ---------------------------------------


def operator_session(username: str, expires: int) -> str:
    body = f"{username}|{expires}"
    mac = hmac.new(_key(b"operator"), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}|{mac}"


def read_operator_session(value: str | None, now: int) -> str | None:
    if not value or value.count("|") != 2:
        return None
    username, expires, mac = value.split("|")
    good = hmac.new(_key(b"operator"), f"{username}|{expires}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(good, mac) or not expires.isdigit() or int(expires) <= now:
        return None
    return username


def client_address(request: Request) -> str:
    """The client's address as uvicorn saw it (with --proxy-headers behind a trusted proxy)."""
    return request.client.host if request.client else "okänd"


class SecurityHeaders:
    """The security headers on every response (a plain ASGI middleware: no per-request task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.fixed = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        static = scope.get("path", "").startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.fixed if k not in have]
                if https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                if not static and b"cache-control" not in have:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
