"""What operators see: receipt tables and progress per phase, for the Prefect UI and the terminal.

The rows are computed once here; `styrkedja status` and the artifacts show the same rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlmodel import Session, select

from config.schema import OrgConfig
from models.tables import PhaseRun, Receipt, ReceiptState
from tasks.receipts import current_receipts

STATE_SV = {
    ReceiptState.ISSUED: "utfärdad",
    ReceiptState.ACKNOWLEDGED: "mottagen",
    ReceiptState.AGREED: "överens",
    ReceiptState.DISPUTED: "bestriden",
    ReceiptState.SUPERSEDED: "ersatt",
}


def artifact_key(*parts: object) -> str:
    """Artifact keys may hold only lower-case letters, digits and dashes."""
    text = "-".join(str(p) for p in parts).lower().replace("_", "-")
    return re.sub(r"[^a-z0-9-]+", "-", text).strip("-")[:200]


def receipt_rows(session: Session, cfg: OrgConfig, cycle_id: int, phase: str | None = None) -> list[dict[str, str]]:
    rows = []
    for r in current_receipts(session, cycle_id, phase):
        rows.append(_row(cfg, r))
    return rows


def _row(cfg: OrgConfig, r: Receipt) -> dict[str, str]:
    return {
        "id": str(r.id),
        "fas": cfg.phase(r.phase).name,
        "ämne": r.topic,
        "från": r.sender_unit,
        "till": r.receiver_unit,
        "version": str(r.version),
        "status": STATE_SV.get(ReceiptState(r.state), r.state),
        "sista dag": r.deadline.isoformat(),
        "signerad av": r.signed_by or "",
        "kommentar": (r.comment or "")[:200],
    }


@dataclass(frozen=True)
class PhaseStatus:
    phase: str
    name: str
    state: str
    agreed: int
    total: int
    window: tuple[date, date]


def phase_statuses(session: Session, cfg: OrgConfig, cycle_id: int, plan_year: int) -> list[PhaseStatus]:
    from tasks.wheel import resolve_wheel

    wheel = resolve_wheel(cfg, plan_year)
    runs = {r.phase: r for r in session.exec(select(PhaseRun).where(PhaseRun.cycle_id == cycle_id))}
    counts: dict[str, list[int]] = {}
    for r in current_receipts(session, cycle_id):
        c = counts.setdefault(r.phase, [0, 0])
        c[1] += 1
        c[0] += r.state == ReceiptState.AGREED
    out = []
    for p in cfg.wheel.phases:
        run = runs.get(p.id)
        agreed, total = counts.get(p.id, [0, 0])
        out.append(
            PhaseStatus(p.id, p.name, run.state if run else "not started", agreed, total, wheel.phase_window(p.id))
        )
    return out
