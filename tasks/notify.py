"""Notifications: Swedish message texts, the outbox, and delivery through apprise.

The outbox is the `Notification` table. A notification is queued with `queue_notification` in the
same transaction as the event that causes it, idempotent by its key. `deliver_outbox` sends what is
due, at least once and, as long as nothing crashes between sending and marking, exactly once:

1. claim: in one short transaction the due rows (pending, next_attempt_at <= now) get a lease
   (next_attempt_at = now + LEASE) and attempts + 1. On PostgreSQL the rows are locked with SKIP
   LOCKED, on SQLite the write lock is taken up front; every claim is also a compare-and-set on
   `attempts`, so two concurrent senders never claim the same row.
2. send each row with apprise, outside any transaction: one lane (thread) per channel, so a channel
   that is down or slow never holds up another; an e-mail lane reuses one SMTP connection
   (tasks.smtp_pool). The lanes loop until nothing is due: a run leaves no due message behind.
3. mark it sent (state sent, sent_at), or record the failure in its own short transaction:
   last_error (secrets masked), next_attempt_at = now + backoff (1, 2, 4, ... minutes, at most
   6 hours), and after MAX_ATTEMPTS attempts state failed (kept, never deleted).

A crash between 2 and 3 sends the message again when the lease expires. Every message therefore
carries its key: e-mail in an `X-Styrkedja-Key` header, webhooks in the same HTTP header, MQTT and
other channels as a last line "Referens: <key>", so that a receiver can de-duplicate.

Channel URLs are apprise URLs from the configuration; `${VAR}` and `${VAR:-default}` are taken
from the environment at send time, so secrets are never stored in the YAML or the database.
Every error text that is stored or logged goes through `mask_secrets`.

No Prefect imports here: the flows wrap these functions as tasks.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from config.schema import Channel, OrgConfig
from models.db import output_root, with_retry
from models.tables import Notification, NotificationState, Receipt, utcnow
from tasks import smtp_pool
from tasks.faults import crash_point
from tasks.portal_tokens import LINK_PLACEHOLDER, link_at_send
from tasks.swedish import WEEKDAYS, long_date

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "CODE_PLACEHOLDER",
    "KEY_HEADER",
    "LEASE",
    "MAX_ATTEMPTS",
    "ChannelConfigError",
    "DeliveryReport",
    "OutboxEntry",
    "Requeued",
    "apprise_url",
    "backoff",
    "deliver_outbox",
    "list_outbox",
    "mask_secrets",
    "notifications_for_unit",
    "queue_notification",
    "render_message",
    "requeue_failed",
]

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "messages"
SUBJECT_PREFIX = "Ämne:"

MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=6)
# A claimed row is not due again for this long: longer than one send can take (SMTP timeout 15 s).
LEASE = timedelta(minutes=10)
# Stop starting new sends from a claimed batch when its lease has this little time left.
LEASE_MARGIN = timedelta(minutes=2)
CLAIM_BATCH = 25
# After this many consecutive transport failures on one channel in one run, the channel's other
# rows wait for the next run without an attempt (a dead server must not cost 15 s per message).
CHANNEL_BREAKER = 3
MAX_ERROR_CHARS = 2000

KEY_HEADER = "X-Styrkedja-Key"
# Stands in the stored body for a receipt's one-time code (see tasks.messages): the code is derived
# from the receipt key (tasks.receipts.code_for) and filled in only when the message is sent, so the
# outbox never holds it.
CODE_PLACEHOLDER = "⟦KOD⟧"

_WEBHOOK_HEADER_SCHEMES = {"json", "jsons", "form", "forms", "xml", "xmls"}
_COLUMN_LIMITS = {"key": 300, "address": 300, "attachment": 500, "link": 500, "recipient_unit": 40, "channel_id": 60}
_SUBJECT_LIMIT = 300


class ChannelConfigError(ValueError):
    """A channel URL that cannot be used as configured (missing variable, unknown channel)."""


# -- message texts --------------------------------------------------------------------------------
_TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")


def _datum(value: date | datetime | str) -> str:
    """A Swedish date: "fredag 15 oktober 2027". Accepts a date, a datetime or an ISO date string."""
    if isinstance(value, str):
        value = date.fromisoformat(value.strip()[:10])
    if isinstance(value, datetime):
        value = value.date()
    return f"{WEEKDAYS[value.weekday()]} {long_date(value)}"


def _dagar(n: int) -> str:
    n = int(n)
    return f"{n} dag" if abs(n) == 1 else f"{n} dagar"


@lru_cache(maxsize=1)
def _jinja() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["datum"] = _datum
    env.filters["dagar"] = _dagar
    return env


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_message(name: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """Render `templates/messages/<name>.txt.j2` into a Swedish (subject, body).

    The first non-empty rendered line must be `Ämne: ...`; the rest is the body. A missing context
    value is an error (StrictUndefined). The subject is one line (no header injection), at most
    300 characters; the body has no runs of blank lines and ends with the link.
    """
    if not _TEMPLATE_NAME.match(name):
        raise ValueError(f"invalid message template name: {name!r}")
    text = _jinja().get_template(f"{name}.txt.j2").render(**dict(context))
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines or not lines[0].startswith(SUBJECT_PREFIX):
        raise ValueError(f"message template {name!r} must start with a line '{SUBJECT_PREFIX} ...'")
    subject = _clip(_one_line(lines[0][len(SUBJECT_PREFIX) :]), _SUBJECT_LIMIT)
    body = "\n".join(line.rstrip() for line in lines[1:])
    body = re.sub(r"\n{3,}", "\n\n", body).strip("\n")
    return subject, body


# -- the outbox -----------------------------------------------------------------------------------


def _check_relpath(relpath: str) -> None:
    p = Path(relpath)
    if p.is_absolute() or ".." in p.parts or relpath.startswith(("/", "\\")) or "\\.." in relpath:
        raise ValueError(f"attachment must be a path relative to the output folder: {relpath!r}")


def queue_notification(
    session: Session,
    *,
    key: str,
    recipient_unit: str,
    channel_id: str,
    address: str,
    subject: str,
    body: str,
    cycle_id: int | None = None,
    receipt_id: int | None = None,
    attachment: str | None = None,
    link: str | None = None,
) -> Notification:
    """Put a message in the outbox, in the caller's transaction (no commit here).

    Idempotent by `key`: if a row with the key exists it is returned unchanged, never a second
    row; a concurrent insert of the same key (lost race) also returns the winner's row.
    """
    existing = session.exec(select(Notification).where(Notification.key == key)).first()
    if existing is not None:
        return existing
    values = {
        "key": key,
        "recipient_unit": recipient_unit,
        "channel_id": channel_id,
        "address": address,
        "attachment": attachment,
        "link": link,
    }
    for field, limit in _COLUMN_LIMITS.items():
        value = values[field]
        if value is not None and len(value) > limit:
            raise ValueError(f"notification {field} longer than {limit} characters: {value[:60]!r}…")
    if not key.strip() or not address.strip():
        raise ValueError("notification key and address must not be empty")
    if attachment is not None:
        for relpath in attachment.split(ATTACHMENT_SEPARATOR):
            _check_relpath(relpath)
    row = Notification(
        key=key,
        recipient_unit=recipient_unit,
        channel_id=channel_id,
        address=address.strip(),
        subject=_clip(_one_line(subject), _SUBJECT_LIMIT),
        body=body,
        cycle_id=cycle_id,
        receipt_id=receipt_id,
        attachment=attachment,
        link=link,
        state=NotificationState.PENDING,
        attempts=0,
        next_attempt_at=utcnow(),
    )
    try:
        # A savepoint, so that losing a race on the unique key does not abort the caller's transaction.
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        existing = session.exec(select(Notification).where(Notification.key == key)).first()
        if existing is None:
            raise
        return existing
    return row


def notifications_for_unit(cfg: OrgConfig, unit_id: str) -> list[tuple[str, str]]:
    """The unit's contacts as (channel id, address), in configuration order, without duplicates."""
    out: list[tuple[str, str]] = []
    for contact in cfg.unit(unit_id).contacts:
        pair = (contact.channel, contact.address)
        if pair not in out:
            out.append(pair)
    return out


# -- secrets --------------------------------------------------------------------------------------

MASK = "***"
# scheme://user:password@ — the password part (also an empty user: scheme://:token@host).
_USERINFO = re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*):(?P<pw>[^\s@]*)@")
# host:port/path@... is not a password (e.g. mailto://127.0.0.1:2525/?to=a@b.se).
_PORT_THEN_PATH = re.compile(r"^\d{1,5}(?:[/?#]|$)")
_SECRET_NAMES = (
    r"pass|password|passwd|pwd|secret|client_secret|token|access_token|auth_token|refresh_token|"
    r"apikey|api_key|api-key|key|auth|authorization|sig|signature|pgpprv|privkey|private_key"
)
_QUERY_SECRET = re.compile(rf"(?P<pre>[?&;]\+?(?:{_SECRET_NAMES})=)(?P<v>[^&\s#'\"]*)", re.IGNORECASE)
_TEXT_SECRET = re.compile(
    r"(?P<pre>\b(?:pass|password|passwd|pwd|secret|token|api[_-]?key|access[_-]?token)\b\s*[=:]\s*[\"']?)"
    r"(?P<v>[^\s\"'&,;#*][^\s\"'&,;#]*)",
    re.IGNORECASE,
)
_AUTH_SCHEME = re.compile(r"(?P<pre>\b(?:Bearer|Basic)\s+)(?P<v>[A-Za-z0-9._~+/=\-]{8,})")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+")
_URL_PIECE = re.compile(r"[A-Za-z0-9_\-]{16,}")
# Not PWD/OLDPWD (the working directory) nor SSH_AUTH_SOCK: only names that say "secret".
_SECRET_ENV_NAME = re.compile(r"PASS|_PWD\b|TOKEN|SECRET|APIKEY|API_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
_MIN_ENV_SECRET = 6


def _looks_random(piece: str) -> bool:
    """A path piece that is probably a token (apprise services put tokens in the path)."""
    has_digit = any(c.isdigit() for c in piece)
    mixed_case = any(c.islower() for c in piece) and any(c.isupper() for c in piece)
    hex_like = len(piece) >= 24 and re.fullmatch(r"[0-9a-fA-F]+", piece) is not None
    return (has_digit and mixed_case) or hex_like


def _mask_url_tokens(match: re.Match[str]) -> str:
    url = match.group(0)
    head, sep, rest = url.partition("://")
    return head + sep + _URL_PIECE.sub(lambda m: MASK if _looks_random(m.group(0)) else m.group(0), rest)


def _env_secrets() -> list[str]:
    return [v for k, v in os.environ.items() if _SECRET_ENV_NAME.search(k) and v and len(v) >= _MIN_ENV_SECRET]


def mask_secrets(text: str | None, extra: Iterable[str] = ()) -> str:
    """Remove passwords and tokens from any text that may hold URLs (error messages, log lines).

    Masks: the values of secret-looking environment variables (…PASS…, …TOKEN…, …SECRET…) and of
    `extra`, raw and percent-encoded; `user:password@` in URLs; `?pass=`, `&token=`, `+Authorization=`
    and similar parameters; `password=`/`token:` in plain text; `Bearer`/`Basic` credentials; and
    token-like path pieces of apprise URLs (long, random-looking: mixed case with digits, or hex).
    """
    if not text:
        return ""
    out = str(text)
    values = {v for v in (*_env_secrets(), *extra) if v and len(v) >= 3}
    for value in sorted(values, key=len, reverse=True):
        escaped = repr(value.encode())[2:-1]  # as it shows in a bytes repr, e.g. an SMTP reply
        for form in {value, quote(value, safe=""), quote(value, safe="@:"), escaped}:
            out = out.replace(form, MASK)

    def userinfo(m: re.Match[str]) -> str:
        if _PORT_THEN_PATH.match(m.group("pw")):
            return m.group(0)
        return f"{m.group('pre')}:{MASK}@"

    out = _USERINFO.sub(userinfo, out)
    out = _QUERY_SECRET.sub(lambda m: m.group("pre") + MASK, out)
    out = _TEXT_SECRET.sub(lambda m: m.group("pre") + MASK, out)
    out = _AUTH_SCHEME.sub(lambda m: m.group("pre") + MASK, out)
    out = _URL.sub(_mask_url_tokens, out)
    return out


# -- channel URLs ---------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_URL_REGIONS = re.compile(
    r"^(?P<scheme>[^:/?#\s]+://)?(?P<auth>[^/?#]*)(?P<path>[^?#]*)(?P<query>\?[^#]*)?(?P<frag>#.*)?$", re.DOTALL
)


def _lookup(m: re.Match[str], environ: Mapping[str, str]) -> str:
    name, default = m.group("name"), m.group("default")
    value = environ.get(name)
    if default is not None and not value:
        return default
    if value is None:
        raise ChannelConfigError(f"environment variable {name} is not set (used in a channel URL)")
    return value


def _skeleton(url: str) -> tuple[str, dict[str, re.Match[str]]]:
    """The URL with each ${VAR} replaced by a token free of URL syntax, and the tokens' matches."""
    holders: dict[str, re.Match[str]] = {}

    def stash(m: re.Match[str]) -> str:
        token = f"\x00{len(holders)}\x00"
        holders[token] = m
        return token

    return _VAR.sub(stash, url), holders


def _expand_env(url: str, environ: Mapping[str, str]) -> str:
    """Substitute ${VAR} / ${VAR:-default}, percent-encoding each value for its place in the URL.

    A value in the user/password, query or fragment is fully encoded (a password may hold @ : / ?);
    in the path "/" is kept; a URL that is nothing but one ${VAR} takes the value as it is.
    """
    whole = _VAR.fullmatch(url.strip())
    if whole is not None:
        return _lookup(whole, environ)
    skeleton, holders = _skeleton(url)
    if not holders:
        return url
    regions = _URL_REGIONS.match(skeleton)
    assert regions is not None  # the pattern matches any string
    out = []
    for region in ("scheme", "auth", "path", "query", "frag"):
        part = regions.group(region) or ""
        safe = "/" if region == "path" else ""
        for token, m in holders.items():
            if token in part:
                part = part.replace(token, quote(_lookup(m, environ), safe=safe))
        out.append(part)
    return "".join(out)


def _channel_secrets(channel: Channel, environ: Mapping[str, str]) -> list[str]:
    """The values substituted into a channel URL that must never show: those in `user:password@`,
    those of secret-looking variables and those given to secret-looking query parameters."""
    skeleton, holders = _skeleton(channel.url)
    regions = _URL_REGIONS.match(skeleton)
    assert regions is not None
    auth = regions.group("auth") or ""
    hidden = auth.rpartition("@")[0]
    for item in (regions.group("query") or "").lstrip("?").split("&"):
        name, _, value = item.partition("=")
        if re.fullmatch(rf"\+?(?:{_SECRET_NAMES})", unquote(name), re.IGNORECASE):
            hidden += value
    out = []
    for token, m in holders.items():
        if token in hidden or _SECRET_ENV_NAME.search(m.group("name")):
            try:
                out.append(_lookup(m, environ))
            except ChannelConfigError:
                continue
    return [v for v in out if v]


def _append_path(url: str, piece: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/" + quote(piece.strip("/"), safe="/")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def _set_query(
    url: str, params: list[tuple[str, str]], *, replace: Iterable[str] = (), keep: Iterable[str] = ()
) -> str:
    """Add raw (already encoded) query parameters; `replace` names are dropped first, `keep` names
    are added only if the URL does not have them yet. The existing query is left byte for byte."""
    parts = urlsplit(url)
    items = [p for p in parts.query.split("&") if p]
    names = {unquote(p.split("=", 1)[0]).lower() for p in items}
    drop = {n.lower() for n in replace}
    items = [p for p in items if unquote(p.split("=", 1)[0]).lower() not in drop]
    keep_names = {n.lower() for n in keep}
    for name, value in params:
        if name.lower() in keep_names and name.lower() in names:
            continue
        items.append(f"{name}={value}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(items), parts.fragment))


def apprise_url(
    channel: Channel, address: str, *, key: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The apprise URL that sends to `address` on `channel`, with ${VAR}s from the environment.

    - email (mailto://, mailtos://, or any apprise e-mail service): the address as `to=` (replacing
      a `to=` in the channel URL), `format=text` unless the channel sets a format, and the key as an
      `X-Styrkedja-Key` header (`+X-Styrkedja-Key=...`). Plain local SMTP without TLS or login:
      `mailto://127.0.0.1:2525?from=styrkedja@norrsjo.example` (mailto:// never starts TLS;
      mailtos:// uses STARTTLS on 587 or `mode=ssl` on 465; user:password@ logs in).
    - mqtt (mqtt://host:port[/prefix]): the address is the topic, appended as the path.
    - webhook (json://, form://, xml://, ...): the address appended as path; the key as HTTP header.
    - other: `{address}` in the URL is replaced by the address, else it is appended as path.

    The result holds secrets: never log or store it (mask_secrets).
    """
    env = os.environ if environ is None else environ
    url = _expand_env(channel.url, env)
    address = address.strip()
    scheme = url.split("://", 1)[0].lower()
    if channel.kind == "email":
        params = [("to", quote(address, safe="@")), ("format", "text")]
        if key:
            params.append((f"+{KEY_HEADER}", quote(key, safe="")))
        return _set_query(url, params, replace=("to",), keep=("format",))
    if channel.kind == "mqtt":
        return _append_path(url, address)
    if channel.kind == "webhook":
        url = _append_path(url, address) if address else url
        if key and scheme in _WEBHOOK_HEADER_SCHEMES:
            url = _set_query(url, [(f"+{KEY_HEADER}", quote(key, safe=""))], replace=(f"+{KEY_HEADER}",))
        return url
    if "{address}" in url:
        return url.replace("{address}", quote(address, safe="@"))
    return _append_path(url, address) if address else url


# -- delivery -------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What one `deliver_outbox` run did.

    sent: delivered and marked sent. retried: failed this time, will be tried again (backoff).
    failed: failed for the last time (state failed). deferred: claimed but put back without an
    attempt (its channel already failed repeatedly in this run, or the claim's lease ran short).
    pending_left: rows still pending after the run, due now or waiting for a retry.
    """

    sent: int = 0
    retried: int = 0
    failed: int = 0
    pending_left: int = 0
    deferred: int = 0


@dataclass(frozen=True)
class _Claimed:
    id: int
    key: str
    channel_id: str
    address: str
    subject: str
    body: str
    attachment: str | None
    attempts: int  # after the claim: the number of this attempt
    receipt_key: str | None  # set only when the body holds the code placeholder
    link: str | None = None  # the recipient's portal link, when the body holds the link placeholder


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 1, 2, 4, 8 ... minutes, at most 6 hours."""
    return min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP)


def _aware(now: datetime | None) -> datetime | None:
    if now is not None and now.tzinfo is None:
        raise ValueError("deliver_outbox: `now` must be timezone-aware (UTC)")
    return now.astimezone(UTC) if now is not None else None


def _due_channels(url: str | None, now: datetime, skip_channels: set[str]) -> list[str]:
    """The channels that have rows due now (each gets its own sending lane)."""

    def fn(session: Session) -> list[str]:
        query = (
            select(Notification.channel_id)
            .where(Notification.state == NotificationState.PENDING, Notification.next_attempt_at <= now)
            .distinct()
        )
        return sorted(c for c in session.exec(query).all() if c not in skip_channels)

    return with_retry(fn, url)


def _claim(url: str | None, now: datetime, limit: int, channel_id: str, valid_days: int = 30) -> list[_Claimed]:
    lease_until = now + LEASE

    def fn(session: Session) -> list[_Claimed]:
        query = (
            select(Notification)
            .where(
                Notification.state == NotificationState.PENDING,
                Notification.next_attempt_at <= now,
                Notification.channel_id == channel_id,
            )
            .order_by(Notification.next_attempt_at, Notification.id)  # type: ignore[arg-type]
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite already holds the write lock
        )
        rows = session.exec(query).all()
        claimed: list[_Claimed] = []
        for row in rows:
            # Compare-and-set on attempts: only one claimer can move a row from n to n + 1.
            result = session.exec(
                update(Notification)
                .where(
                    Notification.id == row.id,
                    Notification.state == NotificationState.PENDING,
                    Notification.attempts == row.attempts,
                    Notification.next_attempt_at <= now,
                )
                .values(attempts=row.attempts + 1, next_attempt_at=lease_until)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                continue
            receipt_key = None
            if row.receipt_id is not None and CODE_PLACEHOLDER in (row.body + row.subject):
                receipt = session.get(Receipt, row.receipt_id)
                receipt_key = receipt.key if receipt is not None else None
            link = None
            if row.receipt_id is not None and LINK_PLACEHOLDER in row.body:
                # Made at send time, per recipient: the outbox never holds a token.
                link = link_at_send(session, row.receipt_id, row.address, valid_days)
            claimed.append(
                _Claimed(
                    id=row.id,  # type: ignore[arg-type]
                    key=row.key,
                    channel_id=row.channel_id,
                    address=row.address,
                    subject=row.subject,
                    body=row.body,
                    attachment=row.attachment,
                    attempts=row.attempts + 1,
                    receipt_key=receipt_key,
                    link=link,
                )
            )
        return claimed

    return with_retry(fn, url)


def _mark_sent(url: str | None, item: _Claimed, at: datetime) -> bool:
    def fn(session: Session) -> bool:
        result = session.exec(
            update(Notification)
            # Also a row that another sender gave up on after our lease expired: it did arrive.
            .where(Notification.id == item.id, Notification.state != NotificationState.SENT)
            .values(state=NotificationState.SENT, sent_at=at)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)

    return with_retry(fn, url)


def _mark_failed(url: str | None, item: _Claimed, at: datetime, error: str) -> str:
    """Record a failed attempt; returns the new state (pending or failed), or "" if the row moved on."""
    final = item.attempts >= MAX_ATTEMPTS
    state = NotificationState.FAILED if final else NotificationState.PENDING
    next_at = at if final else at + backoff(item.attempts)

    def fn(session: Session) -> str:
        result = session.exec(
            update(Notification)
            .where(
                Notification.id == item.id,
                Notification.state == NotificationState.PENDING,
                Notification.attempts == item.attempts,
            )
            .values(state=state, next_attempt_at=next_at, last_error=error)
            .execution_options(synchronize_session=False)
        )
        return str(state) if result.rowcount else ""

    return with_retry(fn, url)


def _release(url: str | None, item: _Claimed, next_at: datetime, error: str | None) -> None:
    """Give a claimed row back without counting an attempt."""

    def fn(session: Session) -> None:
        values: dict[str, Any] = {"attempts": item.attempts - 1, "next_attempt_at": next_at}
        if error:
            values["last_error"] = error
        session.exec(
            update(Notification)
            .where(
                Notification.id == item.id,
                Notification.state == NotificationState.PENDING,
                Notification.attempts == item.attempts,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    with_retry(fn, url)


def _count_pending(url: str | None) -> int:
    def fn(session: Session) -> int:
        query = select(func.count()).select_from(Notification).where(Notification.state == NotificationState.PENDING)
        return int(session.exec(query).one())  # type: ignore[call-overload]

    return with_retry(fn, url)


# -- apprise, its log and its errors --------------------------------------------------------------

_APPRISE_LOGGER_NAME = "apprise"
_capture_lock = threading.Lock()
_capture_users = 0
_saved_logger_state: tuple[int, bool] = (logging.NOTSET, True)
_thread_lines: dict[int, list[str]] = {}
# Values to mask in the records of a thread that is sending (the channel's secrets, the one-time code
# that apprise's MQTT plugin would otherwise log at DEBUG with the payload).
_thread_hidden: dict[int, tuple[str, ...]] = {}
_mask_installed = False


class _MaskFilter(logging.Filter):
    """Masks secrets in every record of the apprise logger, whoever handles it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = mask_secrets(record.getMessage(), _thread_hidden.get(record.thread or 0, ()))
            record.args = None
        except Exception:  # a broken record must not break sending
            pass
        return True


class _Router(logging.Handler):
    """While sending, apprise logs at DEBUG into this handler only: the calling thread's warnings and
    socket errors become the row's last_error; records at the logger's usual level are passed on to
    the parent loggers as before (masked)."""

    def __init__(self, forward_level: int) -> None:
        super().__init__(logging.DEBUG)
        self.forward_level = forward_level

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()  # already masked by _MaskFilter
        lines = _thread_lines.get(record.thread or 0)
        if lines is not None and (record.levelno >= logging.WARNING or message.startswith("Socket Exception")):
            lines.append(message)
        parent = logging.getLogger(_APPRISE_LOGGER_NAME).parent
        if record.levelno >= self.forward_level and parent is not None:
            parent.handle(record)


_router: _Router | None = None


def _install_mask() -> None:
    global _mask_installed
    with _capture_lock:
        if not _mask_installed:
            logging.getLogger(_APPRISE_LOGGER_NAME).addFilter(_MaskFilter())
            _mask_installed = True


@contextmanager
def _apprise_errors(hidden: Iterable[str] = ()) -> Iterator[list[str]]:
    """Collect what apprise reports about the sends of the current thread, masking `hidden`."""
    global _capture_users, _saved_logger_state, _router
    _install_mask()
    logger = logging.getLogger(_APPRISE_LOGGER_NAME)
    with _capture_lock:
        if _capture_users == 0:
            _saved_logger_state = (logger.level, logger.propagate)
            _router = _Router(logger.getEffectiveLevel())
            logger.addHandler(_router)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
        _capture_users += 1
    lines: list[str] = []
    _thread_lines[threading.get_ident()] = lines
    _thread_hidden[threading.get_ident()] = tuple(hidden)
    try:
        yield lines
    finally:
        _thread_lines.pop(threading.get_ident(), None)
        _thread_hidden.pop(threading.get_ident(), None)
        with _capture_lock:
            _capture_users -= 1
            if _capture_users == 0:
                logger.removeHandler(_router)  # type: ignore[arg-type]
                logger.setLevel(_saved_logger_state[0])
                logger.propagate = _saved_logger_state[1]
                _router = None


def _close(plugin: object) -> None:
    """apprise's MQTT plugin leaves its network thread running; stop it."""
    client = getattr(plugin, "client", None)
    if client is None or not hasattr(client, "loop_stop"):
        return
    with suppress(Exception):
        client.disconnect()
    with suppress(Exception):
        client.loop_stop()


class _ReusedTLSContexts:
    """Stands in for the `ssl` module inside apprise's e-mail plugin, which builds a new default
    TLS context for every message: loading the system's CA certificates is 50 ms, 80 % of a
    message's cost. One context per thread instead, reset to the verifying defaults each time it
    is handed out (the plugin itself relaxes it for a channel with verify=no)."""

    def __init__(self) -> None:
        import ssl

        self._ssl = ssl
        self._local = threading.local()

    def create_default_context(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            return self._ssl.create_default_context(*args, **kwargs)
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = self._local.ctx = self._ssl.create_default_context()
        ctx.verify_mode = self._ssl.CERT_REQUIRED
        ctx.check_hostname = True
        return ctx

    def __getattr__(self, name: str) -> Any:  # everything else is the real module
        return getattr(self._ssl, name)


def _reuse_tls_contexts() -> None:
    from apprise.plugins.email import base as email_base

    if not isinstance(email_base.ssl, _ReusedTLSContexts):
        email_base.ssl = _ReusedTLSContexts()  # type: ignore[assignment]


def _send(
    url: str, subject: str, body: str, attachment: tuple[Path, ...] | Path | None, hidden: Iterable[str] = ()
) -> str | None:
    """Send one message; None on success, else the reason (masked, `hidden` too)."""
    import apprise  # imported late: loading its plugins takes ~0.5 s

    _reuse_tls_contexts()
    smtp_pool.install()

    with _apprise_errors(hidden) as lines:
        asset = apprise.AppriseAsset(app_id="Styrkedja", app_desc="Styrkedja", timezone="Europe/Stockholm")
        plugin = apprise.Apprise.instantiate(url, asset=asset)
        if plugin is None:
            return "apprise could not load the channel URL: " + "; ".join(lines or ["unknown service"])
        if hasattr(plugin, "mqtt_block_time_sec"):
            # apprise polls every 0.2 s for the broker's acknowledgement; per instance, poll faster.
            plugin.mqtt_block_time_sec = 0.005
        try:
            sender = apprise.Apprise(asset=asset)
            sender.add(plugin)
            ok = sender.notify(
                title=subject,
                body=body,
                body_format=apprise.NotifyFormat.TEXT,
                attach=_attach_list(attachment),
            )
        finally:
            _close(plugin)
    if ok:
        return None
    return " | ".join(dict.fromkeys(lines)) or "apprise reported a failure without a reason"


def _attach_list(attachment: tuple[Path, ...] | Path | None) -> list[str] | None:
    if attachment is None:
        return None
    paths = (attachment,) if isinstance(attachment, Path) else attachment
    return [str(p) for p in paths] or None


ATTACHMENT_SEPARATOR = "\n"  # a message may carry several files (a template in two parts)


def _attachment_path(base_dir: Path, relpath: str) -> Path:
    _check_relpath(relpath)
    root = base_dir.resolve()
    path = (root / relpath).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"attachment outside the output folder: {relpath}")
    if not path.is_file():
        raise FileNotFoundError(f"attachment not found: {relpath}")
    return path


def _one_time_code(item: _Claimed) -> str | None:
    if CODE_PLACEHOLDER not in item.body + item.subject:
        return None
    if item.receipt_key is None:
        raise ChannelConfigError("message holds a one-time code placeholder but has no receipt")
    from tasks.receipts import code_for  # late: tasks.receipts is a heavier module

    return code_for(item.receipt_key)


@dataclass(frozen=True)
class _Outgoing:
    url: str
    subject: str
    body: str
    attachment: tuple[Path, ...] | None
    hidden: tuple[str, ...]  # never to be logged: the channel's secrets, the one-time code


def _prepare(item: _Claimed, channels: Mapping[str, Channel], base_dir: Path, secrets: list[str]) -> _Outgoing:
    channel = channels.get(item.channel_id)
    if channel is None:
        raise ChannelConfigError(f"unknown channel {item.channel_id!r} (not in the configuration)")
    url = apprise_url(channel, item.address, key=item.key)
    code = _one_time_code(item)
    subject, body = item.subject, item.body
    if code is not None:
        subject, body = subject.replace(CODE_PLACEHOLDER, code), body.replace(CODE_PLACEHOLDER, code)
    if item.link is not None:
        body = body.replace(LINK_PLACEHOLDER, item.link)
    if channel.kind not in ("email", "webhook"):
        body = f"{body}\n\nReferens: {item.key}"
    attachment = None
    if item.attachment and channel.kind == "email":
        attachment = tuple(_attachment_path(base_dir, p) for p in item.attachment.split(ATTACHMENT_SEPARATOR))
    return _Outgoing(url, subject, body, attachment, (*secrets, *([code] if code else [])))


def deliver_outbox(
    cfg: OrgConfig,
    url: str | None = None,
    now: datetime | None = None,
    limit: int | None = None,
    base_dir: Path | None = None,
) -> DeliveryReport:
    """Send every due notification (or at most `limit`); never raises because a channel is down.

    One sending lane (a thread) per channel, so a channel that is slow or down never holds up the
    others; each lane claims its channel's rows in batches and loops until none is due, or until
    its breaker opens (CHANNEL_BREAKER failures in a row). Rows that fall due while the lanes run
    (queued meanwhile, a lease given back) are picked up by another round before returning.

    `url` is the application database (default: the configured one); `now` fixes the clock (aware
    UTC; tests step it to pass the backoff); `base_dir` is where attachment paths are relative to
    (default: the output folder).
    """
    fixed_now = _aware(now)
    base = base_dir if base_dir is not None else output_root()
    channels = {c.id: c for c in cfg.channels}
    report = DeliveryReport()
    lock = threading.Lock()
    open_channels: set[str] = set()
    budget: list[int | None] = [None if limit is None else max(int(limit), 0)]

    def clock() -> datetime:
        return fixed_now if fixed_now is not None else utcnow()

    def take(n: int) -> int:
        """Reserve up to n sends of the budget (a negative n gives unused ones back)."""
        with lock:
            if budget[0] is None:
                return n
            granted = min(n, budget[0])
            budget[0] -= granted
            return granted

    def lane(channel_id: str) -> None:
        lane_report = DeliveryReport()
        tripped = False
        try:
            with smtp_pool.reused_connections():  # one SMTP connection for the lane's messages
                tripped = _deliver_lane(url, cfg, channel_id, channels, base, clock, take, lane_report)
        finally:
            with lock:
                for name in ("sent", "retried", "failed", "deferred"):
                    setattr(report, name, getattr(report, name) + getattr(lane_report, name))
                if tripped:
                    open_channels.add(channel_id)

    errors: list[BaseException] = []

    def run(channel_id: str) -> None:
        try:
            lane(channel_id)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)

    while budget[0] is None or budget[0] > 0:
        due = _due_channels(url, clock(), open_channels)
        if not due:
            break
        errors.clear()

        if len(due) == 1:
            run(due[0])
        else:
            threads = [threading.Thread(target=run, args=(c,), name=f"outbox-{c}") for c in due]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if errors:
            raise errors[0]
    report.pending_left = _count_pending(url)
    return report


def _deliver_lane(
    url: str | None,
    cfg: OrgConfig,
    channel_id: str,
    channels: Mapping[str, Channel],
    base: Path,
    clock: Callable[[], datetime],
    take: Callable[[int], int],
    report: DeliveryReport,
) -> bool:
    """One channel's lane: claim, send, mark, until nothing of this channel is due. True if the
    channel's breaker opened (the caller skips the channel for the rest of the run)."""
    channel = channels.get(channel_id)
    failures = 0
    while True:
        size = take(CLAIM_BATCH)
        if size <= 0:
            return False
        batch = _claim(url, clock(), size, channel_id, cfg.deadlines.code_valid_days)
        if len(batch) < size:
            take(len(batch) - size)  # give back what was not claimed
        if not batch:
            return False
        claimed_at = time.monotonic()
        for item in batch:
            if time.monotonic() - claimed_at > (LEASE - LEASE_MARGIN).total_seconds():
                _release(url, item, clock(), None)
                report.deferred += 1
                continue
            if failures >= CHANNEL_BREAKER:
                note = f"not tried: channel {item.channel_id} failed {CHANNEL_BREAKER} times in a row in this run"
                _release(url, item, clock() + backoff(max(item.attempts - 1, 1)), note)
                report.deferred += 1
                continue
            secrets = _channel_secrets(channel, os.environ) if channel is not None else []
            try:
                out = _prepare(item, channels, base, secrets)
            except Exception as exc:  # configuration or file problem: this row only
                _record_failure(url, item, clock(), f"{type(exc).__name__}: {exc}", secrets, report)
                continue
            secrets = list(out.hidden)
            try:
                error = _send(out.url, out.subject, out.body, out.attachment, out.hidden)
            except Exception as exc:  # apprise itself raised: treat as a failed send
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                crash_point("after_send")  # sent but not yet marked: the receiver de-duplicates by key
                # False only if another sender marked it after our lease expired: sent either way.
                _mark_sent(url, item, clock())
                report.sent += 1
                log.info("notification %s sent via %s", item.key, item.channel_id)
                failures = 0
                continue
            _record_failure(url, item, clock(), error, secrets, report)
            failures += 1
        if failures >= CHANNEL_BREAKER:
            return True


def _record_failure(
    url: str | None, item: _Claimed, at: datetime, error: str, secrets: list[str], report: DeliveryReport
) -> None:
    text = _clip(mask_secrets(error, secrets), MAX_ERROR_CHARS)
    state = _mark_failed(url, item, at, f"attempt {item.attempts}: {text}")
    if state == NotificationState.FAILED:
        report.failed += 1
        log.error("notification %s failed for good after %d attempts: %s", item.key, item.attempts, text)
    else:
        report.retried += 1
        log.warning("notification %s attempt %d failed, retry later: %s", item.key, item.attempts, text)


# -- operators: what the outbox holds, failed rows back in the queue ----------------------------


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox row as an operator sees it; `last_error` is masked again for display."""

    id: int
    key: str
    unit: str
    channel_id: str
    channel_kind: str  # email, mqtt, webhook, ...; "?" for a channel no longer configured
    subject: str
    state: str
    attempts: int
    next_attempt_at: datetime | None  # when a pending row is tried next; None once sent or failed
    sent_at: datetime | None
    last_error: str


def _as_utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; every stored time is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _entry(cfg: OrgConfig, row: Notification) -> OutboxEntry:
    channel = next((c for c in cfg.channels if c.id == row.channel_id), None)
    secrets = _channel_secrets(channel, os.environ) if channel is not None else []
    return OutboxEntry(
        id=row.id,  # type: ignore[arg-type]
        key=row.key,
        unit=row.recipient_unit,
        channel_id=row.channel_id,
        channel_kind=channel.kind if channel is not None else "?",
        subject=row.subject,
        state=str(row.state),
        attempts=row.attempts,
        next_attempt_at=_as_utc(row.next_attempt_at) if row.state == NotificationState.PENDING else None,
        sent_at=_as_utc(row.sent_at),
        last_error=mask_secrets(row.last_error, secrets),
    )


def list_outbox(
    cfg: OrgConfig,
    url: str | None = None,
    *,
    state: str | None = None,
    unit: str | None = None,
    ids: Iterable[int] | None = None,
    limit: int | None = None,
) -> tuple[list[OutboxEntry], int]:
    """The outbox rows (optionally of one state, one recipient unit, these ids) in id order, at most
    the latest `limit` of them; and how many rows match in all."""
    if state is not None and state not in {s.value for s in NotificationState}:
        raise ValueError(f"unknown notification state {state!r}")

    def fn(session: Session) -> tuple[list[OutboxEntry], int]:
        where = []
        if state is not None:
            where.append(Notification.state == state)
        if unit is not None:
            where.append(Notification.recipient_unit == unit)
        if ids is not None:
            where.append(Notification.id.in_(list(ids)))  # type: ignore[union-attr]
        total = int(session.exec(select(func.count()).select_from(Notification).where(*where)).one())  # type: ignore[call-overload]
        query = select(Notification).where(*where).order_by(Notification.id.desc())  # type: ignore[union-attr]
        if limit is not None:
            query = query.limit(max(int(limit), 0))
        rows = list(session.exec(query))
        return [_entry(cfg, r) for r in reversed(rows)], total

    return with_retry(fn, url)


@dataclass(frozen=True)
class Requeued:
    id: int
    key: str
    attempts: int  # the attempts it had failed after


def requeue_failed(
    cfg: OrgConfig,
    url: str | None = None,
    *,
    ids: Iterable[int] | None = None,
    actor: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> list[Requeued]:
    """Put failed rows back in the queue: pending, due now, with a fresh series of attempts and
    backoff; each one audited (`notification_requeued`, with the attempts and the masked last error).

    `ids=None`: every failed row. Named ids must all exist and be failed, else nothing changes and
    a UserError names the first that is not. The next `deliver_outbox` sends them.
    """
    from models.errors import NotFoundError, UserError
    from tasks.audit import audit  # late: keeps this module's imports to models and config

    at = _aware(now) or utcnow()
    wanted = None if ids is None else list(dict.fromkeys(int(i) for i in ids))

    def fn(session: Session) -> list[Requeued]:
        if wanted is None:
            rows = list(
                session.exec(
                    select(Notification).where(Notification.state == NotificationState.FAILED).order_by(Notification.id)  # type: ignore[arg-type]
                )
            )
        else:
            rows = []
            for nid in wanted:
                row = session.get(Notification, nid) if 0 < nid < 2**63 else None
                if row is None:
                    raise NotFoundError(f"notification: no notification with id {nid}")
                if row.state != NotificationState.FAILED:
                    raise UserError(
                        f"notification {nid}: state {row.state}, not failed; only failed notifications are retried "
                        "(pending ones are retried by themselves)"
                    )
                rows.append(row)
        done: list[Requeued] = []
        for row in rows:
            # Compare-and-set: a row another operator requeued (and maybe sent) meanwhile is left alone.
            result = session.exec(
                update(Notification)
                .where(Notification.id == row.id, Notification.state == NotificationState.FAILED)
                .values(state=NotificationState.PENDING, attempts=0, next_attempt_at=at)
                .execution_options(synchronize_session=False)
            )
            if not result.rowcount:
                continue
            entry = _entry(cfg, row)
            audit(
                session,
                actor=actor,
                action="notification_requeued",
                cycle_id=row.cycle_id,
                subject=row.key,
                reason=reason.strip() if reason and reason.strip() else None,
                detail={
                    "notification_id": row.id,
                    "attempts": row.attempts,
                    "last_error": _clip(entry.last_error, 500),
                },
            )
            done.append(Requeued(row.id, row.key, row.attempts))  # type: ignore[arg-type]
        return done

    return with_retry(fn, url)
