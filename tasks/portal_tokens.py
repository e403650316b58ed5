"""Links into the portal: a signed, expiring token per recipient and handoff.

A token names a receipt, a recipient (a signatory id, or a contact address) and a purpose
('view': read the handoff; 'act': also sign, dispute or hand in a return), and an expiry. It is an
HMAC (SHA-256) under a key derived from the application's secret key (tasks.receipts._secret_key),
so it is never stored: messages derive it when they are written or sent, the portal verifies it.
A token is deterministic for (receipt, recipient, purpose): a message written twice (a retry, a
re-run) carries the same link. Actions are single use: the portal records each used token id per
action (PortalTokenUse, unique).

Refused links are counted (PortalFailure): after `RECEIPT_LIMIT` refusals for one receipt or
`CLIENT_LIMIT` from one client address within `WINDOW`, that receipt or address is locked out for
the rest of the window; each refusal and each lockout is in the audit log.

The portal imports this module; this module never imports the portal (tasks → models only)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from config.schema import OrgConfig
from models.db import session_scope, with_retry
from models.errors import UserError
from models.tables import Document, HandoffMode, PortalFailure, PortalTokenUse, Receipt, utcnow
from tasks.audit import audit
from tasks.receipts import _secret_key, code_expiry

DEFAULT_PORTAL_URL = "http://127.0.0.1:8400"
Purpose = Literal["view", "act"]
Role = Literal["receiver", "author"]
WINDOW = timedelta(minutes=15)
RECEIPT_LIMIT = 5
CLIENT_LIMIT = 10
TOKEN_PATH = "/l/"  # the one URL that carries a token (never logged: portal.logs)


def portal_url() -> str:
    """Where the portal runs (STYRKEDJA_PORTAL_URL); links in messages use it."""
    return os.environ.get("STYRKEDJA_PORTAL_URL", DEFAULT_PORTAL_URL).rstrip("/")


class TokenError(UserError):
    """A link the portal refuses; `reason` is a short code for the lockout count and the audit log."""

    def __init__(self, reason: str, message: str, receipt_id: int | None = None) -> None:
        super().__init__(message)
        self.reason, self.receipt_id = reason, receipt_id


@dataclass(frozen=True)
class Claims:
    receipt_id: int
    recipient: str
    purpose: Purpose
    expires: datetime
    token_id: str  # what a used action records


def _key() -> bytes:
    return hmac.new(_secret_key(), b"styrkedja portal link", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(receipt_id: int, recipient: str, purpose: Purpose, expires: datetime) -> str:
    body = json.dumps(
        {"r": receipt_id, "w": recipient, "p": purpose, "e": int(expires.timestamp())},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    mac = hmac.new(_key(), body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def token_expiry(cfg: OrgConfig, receipt: Receipt) -> datetime:
    """As long as the receipt's one-time code: `code_valid_days` past its deadline (end of day)."""
    return _expiry(receipt, cfg.deadlines.code_valid_days)


def _expiry(receipt: Receipt, valid_days: int) -> datetime:
    issued = receipt.created_at if receipt.created_at.tzinfo else receipt.created_at.replace(tzinfo=UTC)
    return code_expiry(receipt.deadline, issued, valid_days)


def portal_token(cfg: OrgConfig, receipt: Receipt, recipient_id: str, purpose: Purpose = "act") -> str:
    assert receipt.id is not None
    return make_token(receipt.id, recipient_id, purpose, token_expiry(cfg, receipt))


def portal_link(cfg: OrgConfig, receipt: Receipt, recipient_id: str, purpose: Purpose = "act") -> str:
    """The link a message gives `recipient_id` (a signatory id, a signatory's e-mail address, or one
    of the unit's contact addresses) for the receipt's handoff: opening it shows the handoff page,
    from which they act (the receiving unit's signatories sign; the author unit hands in)."""
    return f"{portal_url()}{TOKEN_PATH}{portal_token(cfg, receipt, recipient_id, purpose)}"


# The outbox never holds a link's token (like the one-time code): a message body holds this
# placeholder, and the sender fills in `link_at_send` for the message's receipt and address.
LINK_PLACEHOLDER = "⟦LÄNK⟧"


def link_at_send(session: Session, receipt_id: int, address: str, valid_days: int) -> str:
    """`portal_link` for an outbox row being sent: its receipt and address, the configuration's
    `deadlines.code_valid_days`. Deterministic, so a retried send carries the same link."""
    receipt = session.get(Receipt, receipt_id)
    if receipt is None:
        raise UserError(f"receipt: no receipt with id {receipt_id}")
    return f"{portal_url()}{TOKEN_PATH}{make_token(receipt_id, address, 'act', _expiry(receipt, valid_days))}"


def read_token(token: str, now: datetime | None = None) -> Claims:
    """The claims of a genuine, unexpired token; TokenError (in Swedish) otherwise."""
    if len(token) > 2000 or token.count(".") != 1:
        raise TokenError("forged", "Länken är inte giltig (den är ofullständig eller ändrad).")
    body_b64, mac_b64 = token.split(".")
    try:
        body, mac = _unb64(body_b64), _unb64(mac_b64)
    except (ValueError, TypeError):
        raise TokenError("forged", "Länken är inte giltig (den är ofullständig eller ändrad).") from None
    if not hmac.compare_digest(hmac.new(_key(), body, hashlib.sha256).digest(), mac):
        raise TokenError("forged", "Länken är inte giltig (den är ofullständig eller ändrad).", _claimed_id(body))
    data = json.loads(body)
    expires = datetime.fromtimestamp(int(data["e"]), UTC)
    receipt_id = int(data["r"])
    if expires <= (now or utcnow()):
        raise TokenError(
            "expired",
            f"Länken gällde till {expires.astimezone(_stockholm()):%Y-%m-%d %H:%M}; be ekonomistaben om en ny länk.",
            receipt_id,
        )
    token_id = hashlib.sha256(body).hexdigest()[:32]
    return Claims(receipt_id, str(data["w"]), data["p"], expires, token_id)


def _claimed_id(body: bytes) -> int | None:
    try:
        value = int(json.loads(body)["r"])
    except (ValueError, KeyError, TypeError):
        return None
    return value if 0 < value < 2**63 else None


def _stockholm():  # noqa: ANN202 - a ZoneInfo
    from tasks.handoffs import STOCKHOLM

    return STOCKHOLM


# -- who the recipient is -------------------------------------------------------------------------


def author_unit(receipt: Receipt, document: Document | None = None) -> str | None:
    """The unit that fills in the handoff's document and hands in the return (a fill-in handoff's
    sender), or None for a decision handoff, whose document the receiver only reads and agrees on."""
    return receipt.sender_unit if receipt.mode == HandoffMode.FILL_IN else None


def _matches(cfg: OrgConfig, unit_id: str, recipient: str) -> str | None:
    """The signatory id when `recipient` is a signatory (by id or e-mail) of the unit; '' when it
    is one of the unit's contact addresses; None when it is neither."""
    try:
        unit = cfg.unit(unit_id)
    except KeyError:
        return None
    for s in unit.signatories:
        if recipient in (s.id, s.email):
            return s.id
    if any(c.address == recipient for c in unit.contacts):
        return ""
    return None


@dataclass(frozen=True)
class Recipient:
    role: Role
    unit_id: str
    signatory: str | None  # the receiving unit's signatory id: only a signatory signs
    label: str  # who, for the page and the audit log


def recipient_of(cfg: OrgConfig, receipt: Receipt, document: Document | None, recipient: str) -> Recipient | None:
    """What the token's recipient is in this handoff, or None when they are no party to it."""
    sig = _matches(cfg, receipt.receiver_unit, recipient)
    if sig is not None:
        return Recipient(
            "receiver", receipt.receiver_unit, sig or None, _label(cfg, receipt.receiver_unit, sig, recipient)
        )
    author = author_unit(receipt, document)
    if author is not None:
        sig = _matches(cfg, author, recipient)
        if sig is not None:
            return Recipient("author", author, None, _label(cfg, author, sig, recipient))
    return None


def _label(cfg: OrgConfig, unit_id: str, signatory: str, recipient: str) -> str:
    """Who acts, as the page and the audit log name them: the signatory's name, or the unit's name
    and the contact address the link was sent to; the unit id in brackets (as signed_by has it)."""
    unit = cfg.unit(unit_id)
    name = next((s.name for s in unit.signatories if s.id == signatory), None) if signatory else None
    return f"{name} ({unit_id})" if name else f"{unit.name}, {recipient} ({unit_id})"


# -- single use and lockout -----------------------------------------------------------------------


def claim_use(claims: Claims, action: str, client: str, url: str | None = None) -> None:
    """Record the token's use for `action` before the action runs; TokenError if it was used."""

    def work(session: Session) -> None:
        session.add(
            PortalTokenUse(
                token_id=claims.token_id,
                action=action,
                receipt_id=claims.receipt_id,
                recipient=claims.recipient[:200],
                client=client[:100],
            )
        )
        session.flush()

    try:
        with session_scope(url) as session:
            work(session)
    except IntegrityError:
        raise TokenError(
            "reused", "Länken har redan använts för det här; öppna den senaste länken du fått.", claims.receipt_id
        ) from None


def release_use(claims: Claims, action: str, url: str | None = None) -> None:
    """The action was refused (nothing changed): the link may be used again."""

    def work(session: Session) -> None:
        row = session.exec(
            select(PortalTokenUse).where(PortalTokenUse.token_id == claims.token_id, PortalTokenUse.action == action)
        ).first()
        if row is not None:
            session.delete(row)

    with_retry(work, url)


def uses(session: Session, claims: Claims) -> set[str]:
    """The actions this link has been used for ("decide", "upload:<document id>")."""
    return set(session.exec(select(PortalTokenUse.action).where(PortalTokenUse.token_id == claims.token_id)).all())


def locked_out(session: Session, client: str, receipt_id: int | None, now: datetime | None = None) -> str | None:
    """Why this client or receipt may not try a link now, in Swedish; None when it may."""
    since = (now or utcnow()) - WINDOW
    by_client = session.exec(
        select(func.count()).select_from(PortalFailure).where(PortalFailure.client == client, PortalFailure.at > since)
    ).one()
    if by_client >= CLIENT_LIMIT:
        return "För många ogiltiga länkar från din adress; försök igen om en kvart."
    if receipt_id is not None:
        by_receipt = session.exec(
            select(func.count())
            .select_from(PortalFailure)
            .where(PortalFailure.receipt_id == receipt_id, PortalFailure.at > since)
        ).one()
        if by_receipt >= RECEIPT_LIMIT:
            return "För många ogiltiga länkar till den här kvittensen; försök igen om en kvart."
    return None


def record_failure(client: str, error: TokenError, url: str | None = None) -> None:
    """Count and audit a refused link; audit a lockout when this refusal reaches a limit."""

    def work(session: Session) -> None:
        session.add(PortalFailure(client=client[:100], receipt_id=error.receipt_id, reason=error.reason))
        session.flush()
        audit(
            session,
            actor=f"portalen ({client})",
            action="portal_link_refused",
            subject=f"receipt {error.receipt_id}" if error.receipt_id else None,
            reason=str(error),
            detail={"client": client, "reason": error.reason, "receipt_id": error.receipt_id},
        )
        why = locked_out(session, client, error.receipt_id)
        if why is not None:
            audit(
                session,
                actor=f"portalen ({client})",
                action="portal_locked_out",
                subject=f"receipt {error.receipt_id}" if error.receipt_id else None,
                reason=why,
                detail={"client": client, "receipt_id": error.receipt_id},
            )

    with_retry(work, url)
