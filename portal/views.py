"""What the pages show, read from the application database: plain dicts and lists for the templates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, select

from config.schema import OrgConfig
from models.tables import AuditEntry, Cycle, Document, HandoffMode, Receipt, ReceiptState, Submission
from tasks.portal_tokens import Recipient, author_unit
from tasks.receipts import step_text
from tasks.returns import fill_in_documents

OPEN_STATES = (ReceiptState.ISSUED, ReceiptState.ACKNOWLEDGED, ReceiptState.DISPUTED)
ACTION_SV = {
    "receipt_issued": "Kvittensen utfärdades",
    "receipt_acknowledged": "Svaret togs emot",
    "return_received": "Ifyllt dokument lämnades in",
    "receipt_agreed": "Mottagaren godkände",
    "receipt_agreed_on_behalf": "En operatör godkände för enheten",
    "receipt_disputed": "Mottagaren bestred",
    "receipt_disputed_on_behalf": "En operatör bestred för enheten",
    "refused_agreed": "Ett godkännande nekades",
    "refused_disputed": "Ett bestridande nekades",
    "portal_link_refused": "En ogiltig länk nekades",
    "portal_locked_out": "Spärr efter för många ogiltiga länkar",
    "portal_return": "Inlämnat i portalen",
    "portal_return_refused": "En inlämnad fil avvisades",
    "portal_csrf_refused": "Ett formulär utan säkerhetskod nekades",
    "portal_login": "Operatör loggade in",
    "portal_login_refused": "Inloggning nekades",
    "phase_resumed_override": "Fasen fortsatte utan alla kvittenser (operatörens beslut)",
    "phase_triggered": "Fasen startades",
    "gate_override": "Grinden åsidosattes",
    "gate_overridden": "Grinden åsidosattes",
    "gate_refused": "Grinden höll fasen: det som krävs före är inte klart",
    "hand_up_overridden": "Rapporten uppåt släpptes av en operatör",
    "phase_started": "Fasen startade",
    "phase_running": "Fasen körs",
    "phase_waiting": "Fasen väntar på kvittenser",
    "phase_completed": "Fasen blev klar",
    "phase_failed": "Fasen misslyckades",
    "phase_resume_failed": "Fasen kunde inte fortsätta",
    "phase_restarted_after_crash": "Fasen startades om efter ett avbrott",
    "phase_restarted_after_lost_run": "Fasen startades om efter en förlorad körning",
    "milestone_done": "Milstolpen är klar",
    "notification_requeued": "Ett meddelande köades för nytt utskick",
    "raised_item_acted_on": "En lyft fråga åtgärdades",
    "cycle_imported": "Planåret lästes in från ett arkiv",
}


_RECEIPT_KEY = re.compile(r"^[^/]+/(\d{4})/[a-z_]+/[^/]+/([^/>]+)->([^/]+)/v(\d+)$")
_RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DOC_KEY = re.compile(r"^[^/]+/(\d{4})/[a-z_]+/([^/]+)/[^/]+/v(\d+)$")


def subject_text(cfg: OrgConfig, subject: str | None) -> str:
    """An audit entry's subject as people read it: units by name, not keys."""
    if not subject:
        return ""
    if m := _RECEIPT_KEY.match(subject):
        return f"{unit_name(cfg, m[2])} → {unit_name(cfg, m[3])}, version {m[4]}"
    if m := _DOC_KEY.match(subject):
        return f"dokument från {unit_name(cfg, m[2])}, version {m[3]}"
    if subject.startswith("receipt "):
        return "kvittens " + subject.removeprefix("receipt ")
    if _RUN_ID.match(subject):
        return f"körning {subject[:8]}"  # a Prefect flow run: its short id, as the UI shows it
    return subject


def unit_name(cfg: OrgConfig, unit_id: str) -> str:
    try:
        return cfg.unit(unit_id).name
    except KeyError:
        return unit_id


def phase_name(cfg: OrgConfig, phase: str) -> str:
    try:
        return cfg.phase(phase).name
    except KeyError:
        return phase


def days_late(deadline: date, today: date) -> int:
    return max(0, (today - deadline).days)


@dataclass(frozen=True)
class NextStep:
    owner: str  # unit id
    text: str  # what the owner does next, Swedish


def next_step(receipt: Receipt, document: Document | None) -> NextStep | None:
    """Who owes the handoff's next step and what it is; None when it is done."""
    author = author_unit(receipt, document)
    state = receipt.state
    if state == ReceiptState.ISSUED and author is not None:
        return NextStep(author, "fylla i och lämna in dokumentet")
    if state in (ReceiptState.ISSUED, ReceiptState.ACKNOWLEDGED):
        return NextStep(receipt.receiver_unit, "granska och godkänna eller bestrida")
    if state == ReceiptState.DISPUTED:
        return NextStep(receipt.sender_unit, "skicka en ny version efter bestridandet")
    return None


def handoff_documents(session: Session, receipt: Receipt) -> list[Document]:
    """The handoff's documents: what a fill-in handoff's author fills in (an operational plan's
    workbook beside its Word document), or the decided document."""
    if receipt.mode == HandoffMode.FILL_IN:
        docs = fill_in_documents(session, receipt)
        if docs:
            return docs
    main = session.get(Document, receipt.document_id) if receipt.document_id else None
    return [main] if main is not None else []


def returned(session: Session, cfg: OrgConfig, docs: list[Document], labels: Any) -> list[dict[str, Any]]:
    """The latest return of each document, readable: Word fields as headed text, Excel rows as tables."""
    out = []
    for doc in docs:
        sub = session.exec(
            select(Submission).where(Submission.document_id == doc.id).order_by(Submission.id.desc())  # type: ignore[attr-defined]
        ).first()
        if sub is None:
            continue
        fields, sheets = labels(doc)
        item: dict[str, Any] = {
            "title": doc.title,
            "received_at": sub.received_at,
            "file_hash": sub.file_hash,
            "submission_id": sub.id if sub.relpath else None,
            "format": doc.format,
        }
        item["fields"] = [
            {"heading": fields.get(name, name.replace("_", " ").capitalize()), "paragraphs": str(text).split("\n")}
            for name, text in (sub.content.get("fields") or {}).items()
        ]
        tables = []
        for name, rows in (sub.content.get("sheets") or {}).items():
            headers: list[str] = []
            for r in rows:
                for h in r.get("values", {}):
                    if h not in headers:
                        headers.append(h)
            body = [[_cell(r.get("values", {}).get(h)) for h in headers] for r in rows]
            tables.append({"title": sheets.get(name, name), "headers": headers, "rows": body})
        item["tables"] = tables
        out.append(item)
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"
        return text.replace(",", " ").replace(".", ",")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}".replace(",", " ")
    return str(value)


def history(session: Session, receipt: Receipt) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(every version of the handoff, its events from the audit log), oldest first."""
    versions = session.exec(
        select(Receipt)
        .where(
            Receipt.cycle_id == receipt.cycle_id,
            Receipt.phase == receipt.phase,
            Receipt.topic == receipt.topic,
            Receipt.sender_unit == receipt.sender_unit,
            Receipt.receiver_unit == receipt.receiver_unit,
        )
        .order_by(Receipt.version)  # type: ignore[arg-type]
    ).all()
    keys = [v.key for v in versions]
    doc_keys = [d.key for v in versions if v.document_id and (d := session.get(Document, v.document_id))]
    entries = session.exec(
        select(AuditEntry)
        .where(or_(AuditEntry.subject.in_(keys + doc_keys), AuditEntry.subject == f"receipt {receipt.id}"))  # type: ignore[union-attr]
        .order_by(AuditEntry.at, AuditEntry.id)  # type: ignore[arg-type]
        .limit(200)
    ).all()
    v_rows = [
        {
            "id": v.id,
            "version": v.version,
            "state": step_text(v.mode, v.state),
            "signed_by": v.signed_by or "",
            "signed_at": v.signed_at,
            "comment": v.comment or "",
            "current": v.id == receipt.id,
        }
        for v in versions
    ]
    e_rows = [
        {
            "at": e.at,
            "what": ACTION_SV.get(e.action, e.action.replace("_", " ")),
            "actor": e.actor,
            "text": e.reason or (e.detail or {}).get("comment") or "",
        }
        for e in entries
    ]
    return v_rows, e_rows


def handoff(
    session: Session, cfg: OrgConfig, receipt: Receipt, who: Recipient | None, today: date, labels: Any
) -> dict[str, Any]:
    docs = handoff_documents(session, receipt)
    main = docs[0] if docs else None
    step = next_step(receipt, main)
    versions, events = history(session, receipt)
    author = author_unit(receipt, main)
    signable = receipt.state in (ReceiptState.ISSUED, ReceiptState.ACKNOWLEDGED) and not (
        author is not None and receipt.state == ReceiptState.ISSUED
    )
    cycle = session.get(Cycle, receipt.cycle_id)
    return {
        "receipt": receipt,
        "year": cycle.year if cycle else "",
        "title": main.title if main else receipt.topic,
        "phase": phase_name(cfg, receipt.phase),
        "sender": unit_name(cfg, receipt.sender_unit),
        "receiver": unit_name(cfg, receipt.receiver_unit),
        "author": unit_name(cfg, author) if author else None,
        "author_id": author,
        "state": step_text(receipt.mode, receipt.state),
        "state_id": receipt.state,
        "late": days_late(receipt.deadline, today) if step else 0,
        "step": step,
        "step_owner": unit_name(cfg, step.owner) if step else None,
        "documents": docs,
        "returned": returned(session, cfg, docs, labels) if author else [],
        "versions": versions,
        "events": events,
        "who": who,
        "can_sign": bool(who and who.role == "receiver" and who.signatory and signable),
        "can_upload": bool(
            who and who.role == "author" and receipt.state in (ReceiptState.ISSUED, ReceiptState.ACKNOWLEDGED)
        ),
    }


def unit_items(session: Session, cfg: OrgConfig, unit_id: str, today: date) -> dict[str, list[dict[str, Any]]]:
    """Everything the unit owes and everything it waits for, each sorted by deadline."""
    docs_of_unit = select(Document.id).where(Document.unit_id == unit_id)
    rows = session.exec(
        select(Receipt, Document)
        .join(Document, Document.id == Receipt.document_id, isouter=True)  # type: ignore[arg-type]
        .where(
            Receipt.state.in_(OPEN_STATES),  # type: ignore[attr-defined]
            or_(
                Receipt.receiver_unit == unit_id,
                Receipt.sender_unit == unit_id,
                Receipt.document_id.in_(docs_of_unit),  # type: ignore[union-attr]
            ),
        )
    ).all()
    owes, waits = [], []
    for r, doc in rows:
        step = next_step(r, doc)
        if step is None:
            continue
        item = {
            "id": r.id,
            "title": doc.title if doc else r.topic,
            "phase": phase_name(cfg, r.phase),
            "deadline": r.deadline,
            "late": days_late(r.deadline, today),
            "step": step.text,
            "owner": unit_name(cfg, step.owner),
            "state": step_text(r.mode, r.state),
        }
        (owes if step.owner == unit_id else waits).append(item)
    key = lambda i: (i["deadline"], i["id"])  # noqa: E731
    return {"owes": sorted(owes, key=key), "waits": sorted(waits, key=key)}


def overdue(session: Session, cfg: OrgConfig, today: date, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
    """Every open handoff past its deadline, across plan years and units, most days late first."""
    rows = session.exec(
        select(Receipt, Document, Cycle)
        .join(Document, Document.id == Receipt.document_id, isouter=True)  # type: ignore[arg-type]
        .join(Cycle, Cycle.id == Receipt.cycle_id)  # type: ignore[arg-type]
        .where(Receipt.state.in_(OPEN_STATES), Receipt.deadline < today)  # type: ignore[attr-defined]
        .order_by(Receipt.deadline, Receipt.id)  # type: ignore[arg-type]
    ).all()
    out = []
    for r, doc, cycle in rows:
        step = next_step(r, doc)
        if step is None:
            continue
        out.append(
            {
                "id": r.id,
                "year": cycle.year,
                "title": doc.title if doc else r.topic,
                "phase": phase_name(cfg, r.phase),
                "owner": unit_name(cfg, step.owner),
                "owner_id": step.owner,
                "step": step.text,
                "deadline": r.deadline,
                "late": days_late(r.deadline, today),
            }
        )
    return out[:limit], len(out)


def cycles(session: Session, cfg: OrgConfig) -> list[Cycle]:
    return list(
        session.exec(
            select(Cycle).where(Cycle.organisation_id == cfg.organisation.id).order_by(Cycle.year.desc())  # type: ignore[attr-defined]
        )
    )


def progress(session: Session, cfg: OrgConfig, cycle: Cycle) -> dict[str, Any]:
    """Each unit's handoffs per phase: agreed of all it is a party to."""
    rows = session.exec(
        select(Receipt.phase, Receipt.sender_unit, Receipt.receiver_unit, Receipt.state).where(
            Receipt.cycle_id == cycle.id, Receipt.state != ReceiptState.SUPERSEDED
        )
    ).all()
    phases = [p.id for p in cfg.wheel.phases]
    counts: dict[str, dict[str, list[int]]] = {}
    for phase, sender, receiver, state in rows:
        for unit in {sender, receiver}:
            cell = counts.setdefault(unit, {}).setdefault(phase, [0, 0])
            cell[0] += state == ReceiptState.AGREED
            cell[1] += 1
    order = {u.id: i for i, u in enumerate(cfg.units)}
    units = sorted(counts, key=lambda u: (order.get(u, len(order)), u))
    return {
        "phases": [{"id": p, "name": phase_name(cfg, p)} for p in phases],
        "units": [
            {
                "name": unit_name(cfg, u),
                "cells": [
                    {"agreed": counts[u].get(p, [0, 0])[0], "total": counts[u].get(p, [0, 0])[1]} for p in phases
                ],
            }
            for u in units
        ],
    }


def audit_log(
    session: Session,
    cfg: OrgConfig,
    *,
    cycle: Cycle | None,
    phase: str | None,
    unit: str | None,
    limit: int = 300,
) -> list[dict[str, Any]]:
    q = select(AuditEntry)
    if cycle is not None:
        q = q.where(AuditEntry.cycle_id == cycle.id)
    if phase:
        q = q.where(AuditEntry.phase == phase)
    if unit:
        q = q.where(
            or_(
                AuditEntry.subject.contains(f"/{unit}->"),  # type: ignore[union-attr]
                AuditEntry.subject.contains(f"->{unit}/"),  # type: ignore[union-attr]
                AuditEntry.subject.contains(f"/{unit}/"),  # type: ignore[union-attr]
                AuditEntry.actor.contains(f"({unit})"),  # type: ignore[attr-defined]
            )
        )
    entries = session.exec(q.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)).all()  # type: ignore[attr-defined]
    by_id = {c.id: c.year for c in cycles(session, cfg)}
    return [
        {
            "at": e.at,
            "year": by_id.get(e.cycle_id, ""),
            "phase": phase_name(cfg, e.phase) if e.phase else "",
            "what": ACTION_SV.get(e.action, e.action.replace("_", " ")),
            "actor": e.actor,
            "subject": subject_text(cfg, e.subject),
            "reason": e.reason or (e.detail or {}).get("comment") or "",
            "client": (e.detail or {}).get("client", ""),
        }
        for e in entries
    ]
