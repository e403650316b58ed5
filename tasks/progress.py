"""What operators see: receipt tables and progress per phase, for the Prefect UI and the terminal.

The rows are computed once here; `styrkedja status` and the artifacts show the same rows.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, select

from config.schema import OrgConfig
from models.tables import Milestone, PhaseRun, PhaseState, Receipt, ReceiptState
from tasks.followup_calendar import occasion_name
from tasks.receipts import current_receipts, occasion_of, step_text, waiting_for


def artifact_key(*parts: object) -> str:
    """Artifact keys may hold only lower-case letters, digits and dashes."""
    text = "-".join(str(p) for p in parts).lower().replace("_", "-")
    return re.sub(r"[^a-z0-9-]+", "-", text).strip("-")[:200]


def receipt_rows(
    session: Session, cfg: OrgConfig, cycle_id: int, phase: str | None = None, occasion: str = ""
) -> list[dict[str, str]]:
    rows = []
    for r in current_receipts(session, cycle_id, phase, occasion):
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
        "status": step_text(r.mode, r.state),
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
    occasion: str = ""  # a follow-up occasion's run is a row of its own
    awaiting_return: int = 0  # fill-in receipts whose author has not handed back
    awaiting_signature: int = 0  # receipts whose receiver has not signed (the return in, if any)


def phase_windows(cfg: OrgConfig, plan_year: int) -> dict[str, tuple[date, date]]:
    """Each phase's window, from a small cache file under the application home.

    Resolving the wheel needs Swedish working days, and the first `holidays.country_holidays` call
    imports every country the package has (~250 modules, 0.5–1 s): most of `styrkedja status`'s
    time. The cache key is the wheel's rules, the plan year, the holidays version and the date
    rules' code, so a changed rule or a new package resolves again. A cache that cannot be read or
    written is ignored."""
    import hashlib
    import json
    from importlib import metadata

    from models.db import home

    calendar_py = Path(__file__).with_name("calendar.py")
    try:
        code = f"{calendar_py.stat().st_mtime_ns}:{calendar_py.stat().st_size}:{metadata.version('holidays')}"
    except (OSError, metadata.PackageNotFoundError):
        code = "unknown"
    digest = hashlib.sha256(f"{cfg.wheel.model_dump_json()}|{plan_year}|{code}".encode()).hexdigest()[:32]
    path = home() / "cache" / f"phase-windows-{digest}.json"
    try:
        raw = json.loads(path.read_text("utf-8"))
        return {k: (date.fromisoformat(a), date.fromisoformat(b)) for k, (a, b) in raw.items()}
    except (OSError, ValueError, TypeError):
        pass
    from tasks.wheel import resolve_wheel

    wheel = resolve_wheel(cfg, plan_year)
    windows = {p.id: wheel.phase_window(p.id) for p in cfg.wheel.phases}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({k: [a.isoformat(), b.isoformat()] for k, (a, b) in windows.items()}), "utf-8")
        tmp.replace(path)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError:
        pass
    return windows


def phase_statuses(session: Session, cfg: OrgConfig, cycle_id: int, plan_year: int) -> list[PhaseStatus]:
    """One row per phase; the follow-up phase has one per occasion run (named after the occasion,
    counting that occasion's receipts), or one "not started" row while none has run."""
    windows = phase_windows(cfg, plan_year)
    runs: dict[str, list[PhaseRun]] = {}
    for r in session.exec(select(PhaseRun).where(PhaseRun.cycle_id == cycle_id)):
        runs.setdefault(r.phase, []).append(r)
    # Counted by the database: a large region's cycle has thousands of receipts, none needed as objects.
    # Per topic, since a follow-up occasion's receipts are told by their topic (tasks.receipts.occasion_of).
    counts: dict[tuple[str, str], list[int]] = {}  # agreed, total, awaiting return, awaiting signature
    rows = session.exec(
        select(Receipt.phase, Receipt.topic, Receipt.mode, Receipt.state, func.count())
        .where(Receipt.cycle_id == cycle_id, Receipt.state != ReceiptState.SUPERSEDED)
        .group_by(Receipt.phase, Receipt.topic, Receipt.mode, Receipt.state)
    )
    for phase, topic, mode, state, n in rows:
        step = waiting_for(mode, state)
        for key in {(phase, ""), (phase, occasion_of(topic))}:  # the whole phase, and the occasion's
            c = counts.setdefault(key, [0, 0, 0, 0])
            c[1] += n
            c[0] += n if state == ReceiptState.AGREED else 0
            c[2] += n if step == "retur" else 0
            c[3] += n if step == "kvittens" else 0
    out = []
    for p in cfg.wheel.phases:
        if p.id not in runs:
            agreed, total, returns, signatures = counts.get((p.id, ""), [0, 0, 0, 0])
            out.append(PhaseStatus(p.id, p.name, "not started", agreed, total, windows[p.id], "", returns, signatures))
            continue
        # A run without occasion first (every phase but the follow-up), then the occasions by date.
        for run in sorted(runs[p.id], key=lambda r: (r.occasion != "", r.occasion.partition("-")[2], r.occasion)):
            agreed, total, returns, signatures = counts.get((p.id, run.occasion), [0, 0, 0, 0])
            name = f"{p.name} – {occasion_name(run.occasion)}" if run.occasion else p.name
            out.append(
                PhaseStatus(p.id, name, run.state, agreed, total, windows[p.id], run.occasion, returns, signatures)
            )
    return out


# -- deadlines: the process-progression table ------------------------------------------------------
# One rule for "where does a milestone stand", shared by the deadline watch (tasks/deadlines.py),
# its artifacts and the terminal, so they always agree.

DEADLINE_DONE = "done"
DEADLINE_DUE_SOON = "due_soon"
DEADLINE_OVERDUE = "overdue"
DEADLINE_UPCOMING = "upcoming"
DEADLINE_STATE_SV = {
    DEADLINE_DONE: "klar",
    DEADLINE_DUE_SOON: "snart",
    DEADLINE_OVERDUE: "försenad",
    DEADLINE_UPCOMING: "kommande",
}
PROGRESSION_HEADERS = ("fas", "milstolpe", "ansvarig", "sista dag", "status", "dagar")


def soon_days(cfg: OrgConfig) -> int:
    """How far ahead a deadline counts as "due soon": the earliest reminder (14 days by default)."""
    return max((d for d in cfg.deadlines.reminder_offsets_days if d > 0), default=0)


def deadline_state(due: date, as_of: date, done: bool, soon: int) -> str:
    if done:
        return DEADLINE_DONE
    days = (due - as_of).days
    if days < 0:
        return DEADLINE_OVERDUE
    return DEADLINE_DUE_SOON if days <= soon else DEADLINE_UPCOMING


def days_text(days: int) -> str:
    """Days left (positive) or past (negative), in Swedish: "om 3 dagar", "i dag", "för 2 dagar sedan"."""
    if days == 0:
        return "i dag"
    n = abs(days)
    unit = "dag" if n == 1 else "dagar"
    return f"om {n} {unit}" if days > 0 else f"för {n} {unit} sedan"


def completion_days(session: Session, cycle_ids: list[int]) -> dict[tuple[int, str], date]:
    """(cycle, phase) → the day a completed phase run finished (its simulated as_of when it had one)."""
    from zoneinfo import ZoneInfo

    if not cycle_ids:
        return {}
    tz = ZoneInfo("Europe/Stockholm")
    out: dict[tuple[int, str], date] = {}
    query = select(PhaseRun).where(PhaseRun.cycle_id.in_(cycle_ids), PhaseRun.state == PhaseState.COMPLETED)  # type: ignore[attr-defined]
    for run in session.exec(query):
        if run.as_of is not None:
            day = run.as_of
        elif run.finished_at is not None:
            finished = run.finished_at if run.finished_at.tzinfo else run.finished_at.replace(tzinfo=UTC)
            day = finished.astimezone(tz).date()
        else:
            continue
        # The follow-up has a run per occasion: the latest completed one stands for the phase.
        key = (run.cycle_id, run.phase)
        out[key] = max(day, out.get(key, day))
    return out


def milestone_done(done_at: datetime | None, due: date, completed_on: date | None) -> bool:
    """Marked done, or its phase has completed on or after its date. The follow-up runs once per
    occasion, so a completed occasion does not finish the dates after it (completion_days)."""
    return done_at is not None or (completed_on is not None and due <= completed_on)


@dataclass(frozen=True)
class ProgressionRow:
    phase: str
    phase_name: str
    key: str
    name: str
    owner: str
    due: date
    state: str
    days: int

    def as_row(self) -> dict[str, str]:
        return dict(
            zip(
                PROGRESSION_HEADERS,
                (
                    self.phase_name,
                    self.name,
                    self.owner,
                    self.due.isoformat(),
                    DEADLINE_STATE_SV[self.state],
                    "" if self.state == DEADLINE_DONE else days_text(self.days),
                ),
                strict=True,
            )
        )


def progression(session: Session, cfg: OrgConfig, cycle_id: int, as_of: date) -> list[ProgressionRow]:
    """Every milestone of the cycle with its state on `as_of`, in date order."""
    order = {p.id: i for i, p in enumerate(cfg.wheel.phases)}
    completed = completion_days(session, [cycle_id])
    soon = soon_days(cfg)
    out = []
    for m in session.exec(select(Milestone).where(Milestone.cycle_id == cycle_id)):
        done = milestone_done(m.done_at, m.due, completed.get((cycle_id, m.phase)))
        try:
            phase_name = cfg.phase(m.phase).name
        except KeyError:
            phase_name = m.phase
        try:
            owner = cfg.unit(m.owner_unit).name
        except KeyError:
            owner = m.owner_unit
        out.append(
            ProgressionRow(
                m.phase,
                phase_name,
                m.key,
                m.name,
                owner,
                m.due,
                deadline_state(m.due, as_of, done, soon),
                (m.due - as_of).days,
            )
        )
    out.sort(key=lambda r: (r.due, order.get(r.phase, 99), r.key))
    return out


def progression_rows(session: Session, cfg: OrgConfig, cycle_id: int, as_of: date) -> list[dict[str, str]]:
    """The process-progression table (phase, milestone, owner, deadline, state, days) in Swedish."""
    return [r.as_row() for r in progression(session, cfg, cycle_id, as_of)]
