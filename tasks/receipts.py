"""Handoff receipts (kvittenser): the one place for their rules.

A receipt is issued when a sender hands a document to a receiver. A decision handoff's receiver
agrees or disputes the document as sent. A fill-in handoff is two steps: the request (the template
goes to the sender, its author, who fills it in) and the delivery (the validated return reaches
the receiver, the receipt is acknowledged and its content hash becomes the return's); the receiver
can agree or dispute only once the return is in. A dispute asks the sender for a new version; the
new version's receipt supersedes the old one and links to it.

    issued → acknowledged → agreed | disputed → superseded
    (fill-in: issued = waiting for the return, acknowledged = waiting for the receiver)

Only a signatory of the receiving unit may sign, with the one-time code sent in the notification
that delivered the document; an operator may sign on the unit's behalf with a written reason.
Every signature and every refused attempt is in the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, true
from sqlmodel import Session, select

from config.schema import OrgConfig
from models.db import home, with_retry
from models.errors import AuthorisationError, NotFoundError, UserError
from models.tables import Cycle, Document, HandoffMode, Receipt, ReceiptState, Signatory, Unit, utcnow
from tasks.audit import audit
from tasks.handoffs import PHASE_REQUIRES, STOCKHOLM, Handoff

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are typed by hand
CODE_LENGTH = 8
SIGNABLE = (ReceiptState.ISSUED, ReceiptState.ACKNOWLEDGED)
MAX_COMMENT = 4000
# Follow-up receipts name their occasion in their topic: the units' returns
# ('uppfoljning-<occasion>', tasks.handoffs) and the levels' hand-ups ('nivarapport-<occasion>',
# tasks.level_reports.hand_up_topic).
OCCASION_TOPICS = ("uppfoljning-", "nivarapport-")


def receipt_key(org_id: str, year: int, phase: str, topic: str, sender: str, receiver: str, version: int) -> str:
    return f"{org_id}/{year}/{phase}/{topic}/{sender}->{receiver}/v{version}"


# -- one-time codes -------------------------------------------------------------------------------
# The code is derived from a secret key outside the database (HMAC of the receipt key), so the
# outbox never holds it in clear: it is filled in when the message is sent. The database keeps a
# salted hash to verify it, an expiry, and forgets the hash once used.


def _secret_key() -> bytes:
    env = os.environ.get("STYRKEDJA_SECRET_KEY")
    if env:
        return env.encode()
    path = home() / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; use theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def code_for(key: str) -> str:
    digest = hmac.new(_secret_key(), key.encode(), hashlib.sha256).digest()
    return "".join(CODE_ALPHABET[b % len(CODE_ALPHABET)] for b in digest[:CODE_LENGTH])


_HASH_PREFIX = "h1$"


def _normalised(code: str) -> str:
    return code.strip().upper().replace("-", "").replace(" ", "")


def _hash_code(key: str, code: str) -> str:
    """What the database keeps of a one-time code: an HMAC under a key derived from the secret key.

    The codes are themselves derived from the secret key, so whoever holds it needs no stored hash,
    and whoever holds only the database cannot test guesses without it: a slow password hash
    (PBKDF2, 20–40 ms per receipt, as much CPU as writing the documents at region scale) would add
    nothing. Rows stored before carry a PBKDF2 hash without the prefix; `_code_matches` reads both."""
    hash_key = hmac.new(_secret_key(), b"styrkedja one-time code hash", hashlib.sha256).digest()
    digest = hmac.new(hash_key, f"{key}\0{_normalised(code)}".encode(), hashlib.sha256).hexdigest()
    return _HASH_PREFIX + digest


def _code_matches(key: str, code: str, stored: str) -> bool:
    if stored.startswith(_HASH_PREFIX):
        return hmac.compare_digest(_hash_code(key, code), stored)
    legacy = hashlib.pbkdf2_hmac("sha256", _normalised(code).encode(), key.encode(), 20_000).hex()
    return hmac.compare_digest(legacy, stored)


def code_expiry(deadline: date, issued: datetime, valid_days: int) -> datetime:
    """When a receipt's one-time code stops signing: `valid_days` after its deadline, at the end of
    that day in Europe/Stockholm, or `valid_days` after issue if that is later (a version issued
    after the deadline). Reminders, which go out until the receipt is signed, send the signatory
    back to the code in the delivery, so the code must outlive the deadline."""
    last_day = deadline + timedelta(days=valid_days)
    end_of_day = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=STOCKHOLM).astimezone(UTC)
    return max(end_of_day, issued + timedelta(days=valid_days))


# -- issuing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedReceipt:
    """What a phase run must do for one handoff: nothing, or issue this version."""

    handoff: Handoff
    version: int
    previous_id: int | None
    needs_issue: bool


def _latest(session: Session, cycle_id: int, phase: str, topic: str, sender: str, receiver: str) -> Receipt | None:
    return session.exec(
        select(Receipt)
        .where(
            Receipt.cycle_id == cycle_id,
            Receipt.phase == phase,
            Receipt.topic == topic,
            Receipt.sender_unit == sender,
            Receipt.receiver_unit == receiver,
        )
        .order_by(Receipt.version.desc())  # type: ignore[attr-defined]
    ).first()


def plan_receipts(session: Session, cycle_id: int, phase: str, handoffs: list[Handoff]) -> list[PlannedReceipt]:
    """Which version each handoff needs now: v1 if new, v(n+1) after a dispute, else nothing."""
    rows = session.exec(select(Receipt).where(Receipt.cycle_id == cycle_id, Receipt.phase == phase)).all()
    latest: dict[tuple[str, str, str], Receipt] = {}
    for r in rows:
        k = (r.topic, r.sender_unit, r.receiver_unit)
        if k not in latest or r.version > latest[k].version:
            latest[k] = r
    out = []
    for h in handoffs:
        prev = latest.get((h.topic, h.sender, h.receiver))
        if prev is None:
            out.append(PlannedReceipt(h, 1, None, True))
        elif prev.state == ReceiptState.DISPUTED:
            out.append(PlannedReceipt(h, prev.version + 1, prev.id, True))
        else:
            out.append(PlannedReceipt(h, prev.version, prev.id, False))
    return out


def issue_receipt(
    session: Session,
    cfg: OrgConfig,
    cycle: Cycle,
    plan: PlannedReceipt,
    document: Document,
    *,
    actor: str,
    now: datetime | None = None,
) -> tuple[Receipt, bool]:
    """Create the receipt for a planned handoff version; (receipt, created). Idempotent by key."""
    h = plan.handoff
    key = receipt_key(cfg.organisation.id, cycle.year, document.phase, h.topic, h.sender, h.receiver, plan.version)
    existing = session.exec(select(Receipt).where(Receipt.key == key)).first()
    if existing is not None:
        return existing, False
    now = now or utcnow()
    receipt = Receipt(
        key=key,
        cycle_id=cycle.id,  # type: ignore[arg-type]
        phase=document.phase,
        topic=h.topic,
        direction=h.direction,
        mode=h.mode,
        sender_unit=h.sender,
        receiver_unit=h.receiver,
        document_id=document.id,
        content_hash=document.content_hash,
        purpose=h.purpose,
        deadline=h.deadline,
        version=plan.version,
        supersedes_id=plan.previous_id,
        code_hash=_hash_code(key, code_for(key)),
        code_expires_at=code_expiry(h.deadline, now, cfg.deadlines.code_valid_days),
    )
    session.add(receipt)
    if plan.previous_id is not None:
        prev = session.get(Receipt, plan.previous_id)
        if prev is not None and prev.state == ReceiptState.DISPUTED:
            prev.state = ReceiptState.SUPERSEDED
            prev.updated_at = now
            session.add(prev)
    session.flush()
    audit(
        session,
        actor=actor,
        action="receipt_issued",
        cycle_id=cycle.id,
        phase=document.phase,
        subject=key,
        detail={"version": plan.version, "supersedes": plan.previous_id},
    )
    return receipt, True


# -- signing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignRequest:
    receipt_id: int
    signatory: str | None = None  # signatory id of the receiving unit
    code: str | None = None
    comment: str | None = None
    actor: str = "okänd"
    operator_reason: str | None = None  # set: an operator signs on the unit's behalf
    via: dict[str, Any] | None = None  # where it came from, for the audit entry (the portal: client, link)


def _valid_id(receipt_id: int) -> int:
    """A receipt id a database can hold; any other number names no receipt (and must not reach
    the driver, which fails on integers beyond 64 bits)."""
    if not 0 < receipt_id < 2**63:
        raise NotFoundError(f"receipt: no receipt with id {receipt_id}")
    return receipt_id


def _check_signable(session: Session, req: SignRequest, dispute: bool) -> Receipt:
    receipt = session.get(Receipt, _valid_id(req.receipt_id), with_for_update=True)
    if receipt is None:
        raise NotFoundError(f"receipt: no receipt with id {req.receipt_id}")
    if receipt.state not in SIGNABLE:
        hint = " (a newer version replaces it)" if receipt.state == ReceiptState.SUPERSEDED else ""
        raise UserError(f"receipt {receipt.id}: already {receipt.state}{hint}; nothing was changed")
    if dispute and not (req.comment and req.comment.strip()):
        raise UserError(f"receipt {receipt.id}: a dispute needs a comment saying what must change")
    if req.comment and len(req.comment) > MAX_COMMENT:
        raise UserError(f"receipt {receipt.id}: comment is {len(req.comment)} characters; at most {MAX_COMMENT}")
    if req.operator_reason is not None:
        if not req.operator_reason.strip():
            raise AuthorisationError(f"receipt {receipt.id}: signing on a unit's behalf needs a written reason")
        return _returned(session, receipt)
    if not req.signatory:
        raise AuthorisationError(f"receipt {receipt.id}: --signatory is required")
    signatory = session.exec(
        select(Signatory).where(Signatory.unit_id == receipt.receiver_unit, Signatory.signatory_id == req.signatory)
    ).first()
    if signatory is None:
        raise AuthorisationError(
            f"receipt {receipt.id}: {req.signatory!r} is not a signatory of the receiving unit {receipt.receiver_unit}"
        )
    if not req.code or receipt.code_hash is None:
        raise AuthorisationError(f"receipt {receipt.id}: a valid one-time code is required")
    if receipt.code_expires_at is not None and receipt.code_expires_at <= utcnow():
        expired = receipt.code_expires_at.astimezone(STOCKHOLM)
        raise AuthorisationError(
            f"receipt {receipt.id}: the one-time code expired {expired:%Y-%m-%d %H:%M} (Europe/Stockholm);"
            " an operator may sign on the unit's behalf with a reason"
        )
    if not _code_matches(receipt.key, req.code, receipt.code_hash):
        raise AuthorisationError(f"receipt {receipt.id}: wrong one-time code")
    return _returned(session, receipt)


def _returned(session: Session, receipt: Receipt) -> Receipt:
    """A fill-in receipt is agreed (or disputed) on its return: not before it is in."""
    if receipt.mode == HandoffMode.FILL_IN and receipt.state == ReceiptState.ISSUED:
        raise UserError(awaiting_return(session, receipt))
    return receipt


def _decide(cfg: OrgConfig, req: SignRequest, dispute: bool, url: str | None) -> Receipt:
    """Record an agreement or a dispute in one transaction, run again on a busy database or a lost
    race (`with_retry`: each run re-reads and re-checks the receipt, so a concurrent signature of the
    same receipt turns into "already agreed"). A refusal (`UserError`) is not retried: it is audited
    once, in its own transaction, and raised to the user."""
    action = "receipt_disputed" if dispute else "receipt_agreed"

    def decide(session: Session) -> Receipt:
        receipt = _check_signable(session, req, dispute)
        now = utcnow()
        if req.operator_reason is not None:
            who = f"{req.actor} (operatör för {receipt.receiver_unit})"
            receipt.on_behalf_reason = req.operator_reason.strip()
        else:
            signatory = cfg.unit(receipt.receiver_unit).signatories
            name = next((s.name for s in signatory if s.id == req.signatory), req.signatory or "")
            who = f"{name} ({receipt.receiver_unit})"
        receipt.state = ReceiptState.DISPUTED if dispute else ReceiptState.AGREED
        receipt.signed_by, receipt.signed_at = who, now
        receipt.comment = req.comment.strip() if req.comment else None
        receipt.code_hash = None  # single use
        receipt.updated_at = now
        session.add(receipt)
        audit(
            session,
            actor=req.actor if req.operator_reason is not None else who,
            action=action + ("_on_behalf" if req.operator_reason is not None else ""),
            cycle_id=receipt.cycle_id,
            phase=receipt.phase,
            subject=receipt.key,
            reason=req.operator_reason,
            detail={"comment": receipt.comment, "receipt_id": receipt.id, **(req.via or {})},
        )
        # Late: messages → notify → receipts (codes are filled in at send time) would be a cycle.
        from tasks.messages import queue_decision_notice

        queue_decision_notice(session, cfg, receipt)
        return receipt

    try:
        return with_retry(decide, url)
    except UserError as exc:
        reason = str(exc)

        def refused(session: Session) -> None:
            audit(
                session,
                actor=req.actor,
                action=action.replace("receipt_", "refused_"),
                subject=f"receipt {req.receipt_id}",
                reason=reason,
                detail={"signatory": req.signatory},
            )

        with_retry(refused, url)  # its own transaction: the refused change itself was rolled back
        raise


def sign(cfg: OrgConfig, req: SignRequest, url: str | None = None) -> Receipt:
    """The receiver agrees on content and purpose."""
    return _decide(cfg, req, dispute=False, url=url)


def dispute(cfg: OrgConfig, req: SignRequest, url: str | None = None) -> Receipt:
    """The receiver does not agree; the comment says what the sender must change."""
    return _decide(cfg, req, dispute=True, url=url)


def awaiting_return(session: Session, receipt: Receipt) -> str:
    """The refusal of a signature before a fill-in handoff's return is in: what is missing, from whom."""
    document = session.get(Document, receipt.document_id) if receipt.document_id else None
    what = f"«{document.title}»" if document else "returen"
    author = session.get(Unit, receipt.sender_unit)
    who = author.name if author else receipt.sender_unit
    return (
        f"kvittens {receipt.id}: väntar på retur från {who}: {what} har inte lämnats in ifylld "
        f"(senast {receipt.deadline:%Y-%m-%d}); kvittensen kan godkännas eller bestridas först när returen är inne; "
        "ingenting ändrades"
    )


def acknowledge(session: Session, receipt: Receipt, by: str, content_hash: str | None = None) -> bool:
    """The handoff's returned documents were read back: the receipt moves from issued to
    acknowledged and, for a fill-in handoff, names the returned content (`content_hash`). A
    corrected return before the receiver has decided names the new content. True when changed."""
    if receipt.state not in SIGNABLE:
        return False
    changed = receipt.state == ReceiptState.ISSUED
    if changed:
        receipt.state = ReceiptState.ACKNOWLEDGED
        receipt.acknowledged_by, receipt.acknowledged_at = by, utcnow()
    if content_hash is not None and receipt.mode == HandoffMode.FILL_IN and receipt.content_hash != content_hash:
        receipt.content_hash = content_hash
        changed = True
    if changed:
        receipt.updated_at = utcnow()
        session.add(receipt)
    return changed


def waiting_for(mode: str, state: str) -> str:
    """Whose step is next, in one word: "retur" (the author), "kvittens" (the receiver), "ny version"
    (the sender, after a dispute), "" when nothing is awaited."""
    if state == ReceiptState.ISSUED:
        return "retur" if mode == HandoffMode.FILL_IN else "kvittens"
    if state == ReceiptState.ACKNOWLEDGED:
        return "kvittens"
    if state == ReceiptState.DISPUTED:
        return "ny version"
    return ""


STEP_TEXT = {"retur": "väntar på retur", "kvittens": "väntar på kvittens", "ny version": "väntar på ny version"}
STATE_TEXT = {ReceiptState.AGREED: "godkänd", ReceiptState.SUPERSEDED: "ersatt"}


def step_text(mode: str, state: str) -> str:
    """The state as a reader takes it in: "väntar på retur", "väntar på kvittens", "godkänd" …"""
    step = waiting_for(mode, state)
    return STEP_TEXT[step] if step else STATE_TEXT.get(state, state)  # type: ignore[call-overload]


def owes_next_step(mode: str, state: str, sender: str, receiver: str) -> str:
    """The unit that owes the next step: the author until the return is in (or after a dispute),
    then the receiver until it has signed."""
    return sender if waiting_for(mode, state) in ("retur", "ny version") else receiver


def replaced_because(session: Session, document_id: int | None) -> str | None:
    """Why a document's version replaces the one before: the dispute comment of the receipt it
    supersedes; None for a first version."""
    if document_id is None:
        return None
    receipt = session.exec(select(Receipt).where(Receipt.document_id == document_id)).first()
    if receipt is None or receipt.supersedes_id is None:
        return None
    previous = session.get(Receipt, receipt.supersedes_id)
    return (previous.comment or "").strip() or None if previous else None


# -- reading --------------------------------------------------------------------------------------


def occasion_of(topic: str) -> str:
    """The follow-up occasion a receipt's topic names; "" for a receipt of a phase without occasions."""
    for prefix in OCCASION_TOPICS:
        if topic.startswith(prefix):
            return topic.removeprefix(prefix)
    return ""


def of_occasion(occasion: str) -> Any:
    """The one rule for which receipts belong to a phase run of `occasion`: a follow-up occasion's
    receipts name it in their topic; "" (a phase without occasions) takes every receipt of the phase."""
    if not occasion:
        return true()
    return Receipt.topic.in_([prefix + occasion for prefix in OCCASION_TOPICS])  # type: ignore[attr-defined]


def current_receipts(session: Session, cycle_id: int, phase: str | None = None, occasion: str = "") -> list[Receipt]:
    """The receipts that count: every one not superseded (of one follow-up occasion when `occasion`
    is given), in a stable order."""
    q = select(Receipt).where(
        Receipt.cycle_id == cycle_id, Receipt.state != ReceiptState.SUPERSEDED, of_occasion(occasion)
    )
    if phase is not None:
        q = q.where(Receipt.phase == phase)
    return list(session.exec(q.order_by(Receipt.phase, Receipt.topic, Receipt.receiver_unit, Receipt.sender_unit)))


def progress(session: Session, cycle_id: int, phase: str, occasion: str = "") -> tuple[int, int]:
    """(agreed, total) of the receipts that count in a phase (or one follow-up occasion of it)."""
    rows = session.exec(
        select(Receipt.state, func.count())
        .where(
            Receipt.cycle_id == cycle_id,
            Receipt.phase == phase,
            Receipt.state != ReceiptState.SUPERSEDED,
            of_occasion(occasion),
        )
        .group_by(Receipt.state)
    ).all()
    counts = dict(rows)
    return counts.get(ReceiptState.AGREED, 0), sum(counts.values())


def gate_missing(session: Session, cycle_id: int, phase: str) -> list[str]:
    """The receipts this phase's gate still waits for, as readable lines (unit, state, deadline)."""
    missing: list[str] = []
    for required in PHASE_REQUIRES[phase]:
        rows = current_receipts(session, cycle_id, required)
        if not rows:
            missing.append(f"{required}: no receipts issued yet (run phase '{required}' first)")
            continue
        for r in rows:
            if r.state != ReceiptState.AGREED:
                missing.append(
                    f"{required}/{r.topic} {r.sender_unit}→{r.receiver_unit} is {r.state}, due {r.deadline:%Y-%m-%d}"
                )
    return missing


def get_receipt(session: Session, receipt_id: int) -> Receipt:
    receipt = session.get(Receipt, _valid_id(receipt_id))
    if receipt is None:
        raise NotFoundError(f"receipt: no receipt with id {receipt_id}")
    return receipt
