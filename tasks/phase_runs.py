"""Finding a phase run: one row per (cycle, phase, follow-up occasion).

The follow-up phase runs once per occasion, each run waiting for its own receipts
(tasks.receipts.of_occasion); every other phase has the occasion "". A follow-up run that was
waiting when the occasion column was added has "" too (migration 0004): it stands for whichever
occasion it runs, until its run starts again and the row is given its occasion (phase_steps).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from models.tables import PhaseRun


def phase_run_query(cycle_id: int, phase: str, occasion: str = "") -> Any:
    return select(PhaseRun).where(PhaseRun.cycle_id == cycle_id, PhaseRun.phase == phase, PhaseRun.occasion == occasion)


def find_phase_run(session: Session, cycle_id: int, phase: str, occasion: str = "") -> PhaseRun | None:
    """The occasion's run, else (for an occasion) a run from before occasions were recorded."""
    run = session.exec(phase_run_query(cycle_id, phase, occasion)).first()
    if run is None and occasion:
        run = session.exec(phase_run_query(cycle_id, phase, "")).first()
    return run
