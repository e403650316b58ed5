"""Waiting for receipts: one suspended Prefect run per phase, resumed by the last signature.

A phase whose receipts are not all agreed suspends itself (it needs a deployment for that) with a
keyed `RunInput`. The key is derived from the receipts it waits for, so a resumed run that still
waits for the same receipts (an operator's override) goes on, while one that waits for new ones
(a dispute issued a new version) suspends again.
"""

from __future__ import annotations

import hashlib
import time

from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run
from prefect.input import RunInput
from pydantic import Field
from sqlmodel import select

from models.db import session_scope, with_retry
from models.tables import PhaseRun, PhaseState, ReceiptState
from tasks.audit import audit
from tasks.receipts import current_receipts


class ResumeInput(RunInput):
    """The form an operator fills in to resume a waiting phase without all receipts."""

    reason: str = Field(min_length=3, description="Varför ska fasen fortsätta? (krävs, sparas i granskningsloggen)")
    resumed_by: str = Field(default="operatör", description="Vem som fortsätter fasen")


def wait_state(cycle_id: int, phase: str) -> tuple[str | None, int, int]:
    """(key, agreed, total) from one snapshot: the key is None when nothing is outstanding, else it
    names exactly what is awaited. One read, so a signature landing in between cannot make the
    run neither wait nor finish."""
    with session_scope() as session:
        rows = current_receipts(session, cycle_id, phase)
    waiting = [r for r in rows if r.state != ReceiptState.AGREED]
    agreed, total = len(rows) - len(waiting), len(rows)
    if not waiting:
        return None, agreed, total
    ids = ",".join(f"{r.id}:{r.state}" for r in sorted(waiting, key=lambda r: r.id or 0))
    return "receipts-" + hashlib.sha256(ids.encode()).hexdigest()[:16], agreed, total


def mark_waiting(cycle_id: int, phase: str) -> None:
    def work(session) -> None:  # type: ignore[no-untyped-def]
        run = session.exec(select(PhaseRun).where(PhaseRun.cycle_id == cycle_id, PhaseRun.phase == phase)).one()
        run.state = PhaseState.WAITING
        session.add(run)

    with_retry(work)


def resume_if_ready(
    cycle_id: int, phase: str, actor: str, *, force_reason: str | None = None, wait_s: float = 20.0
) -> bool:
    """Resume the phase's suspended run when it has something to do: all receipts agreed, a dispute
    to answer with a new version, or an operator's reason. Returns True if a run was resumed."""
    with session_scope() as session:
        run = session.exec(select(PhaseRun).where(PhaseRun.cycle_id == cycle_id, PhaseRun.phase == phase)).first()
        if run is None or run.state != PhaseState.WAITING or not run.flow_run_id:
            return False
        rows = current_receipts(session, cycle_id, phase)
        disputed = any(r.state == ReceiptState.DISPUTED for r in rows)
        done = all(r.state == ReceiptState.AGREED for r in rows)
        flow_run_id = run.flow_run_id
    if not (done or disputed or force_reason):
        return False
    if force_reason:
        reason = force_reason
    elif done:
        reason = "Alla kvittenser är signerade"
    else:
        reason = "En kvittens bestreds; en ny version ska skickas"
    resumed = _resume(flow_run_id, {"reason": reason, "resumed_by": actor}, wait_s)
    if resumed is None:
        resumed = _restart_crashed(flow_run_id)
        if resumed:
            with session_scope() as session:
                audit(
                    session,
                    actor=actor,
                    action="phase_restarted_after_crash",
                    cycle_id=cycle_id,
                    phase=phase,
                    reason=f"the suspended run {flow_run_id} had crashed; {reason}",
                )
        return resumed  # an override is not carried over: the new run waits for what is still missing
    if resumed and force_reason:
        with session_scope() as session:
            audit(session, actor=actor, action="phase_resumed_override", cycle_id=cycle_id, phase=phase, reason=reason)
    return resumed


def _resume(flow_run_id: str, run_input: dict[str, str], wait_s: float) -> bool | None:
    """The run may not have reached its suspended state yet: wait for it, briefly. None when the
    run crashed instead (its process was killed around the suspend)."""
    from uuid import UUID

    from prefect import get_client

    deadline = time.monotonic() + wait_s
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(UUID(flow_run_id)).state
            if state is not None and state.type == StateType.PAUSED:
                resume_flow_run(UUID(flow_run_id), run_input=run_input)
                return True
            if state is not None and state.type == StateType.CRASHED:
                return None
            if state is not None and state.is_final():
                return False
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)


def _restart_crashed(flow_run_id: str) -> bool:
    """A phase marked waiting whose suspended run crashed (killed at or just after the suspend:
    Prefect lets Crashed replace Suspended) would otherwise wait for ever. Start the phase again
    from its deployment with the same parameters: the new run finds every document, receipt and
    notification already there, creates nothing twice, and completes or suspends as the receipts
    say. Only for deployment runs; a cancelled run was stopped on purpose and stays stopped."""
    from uuid import UUID

    from prefect import get_client

    with get_client(sync_client=True) as client:
        crashed = client.read_flow_run(UUID(flow_run_id))
        if crashed.deployment_id is None:
            return False
        # Keyed by the crashed run: two signatures (or a signature and the deadline watch) at once
        # start one new run, not two.
        client.create_flow_run_from_deployment(
            crashed.deployment_id, parameters=dict(crashed.parameters), idempotency_key=f"restart-{flow_run_id}"
        )
    return True
