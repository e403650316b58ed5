"""Waiting for receipts: one suspended Prefect run per phase (per follow-up occasion: each occasion
is its own run, waiting for its own receipts), resumed by the last signature.

A phase whose receipts are not all agreed suspends itself (it needs a deployment for that) with a
keyed `RunInput`. The key names the set of receipts the phase currently counts (their ids, not
their states), so a resumed run that still counts the same receipts finds its key used and reads
the input it was resumed with, while one that counts new ones (a dispute issued a new version, a
follow-up level handed its report up) suspends again under a new key.

An automatic resume (the last signature, a dispute to answer) says `override=False`: the run goes
on only if the receipts really are all agreed, else it waits again under the next derived key
(`<key>-1`, `<key>-2`, …). An operator's resume (the CLI or the Prefect UI's form, whose default is
an override) lets the phase complete without them; the run itself writes the audit entry when it
consumes that input.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import StateType
from prefect.exceptions import FlowPauseTimeout, MissingContextError, NotPausedError, ObjectNotFound
from prefect.flow_runs import resume_flow_run
from prefect.input import RunInput
from pydantic import Field
from sqlmodel import Session, select

from models.db import session_scope, with_retry
from models.tables import AuditEntry, Cycle, PhaseState, Receipt, ReceiptState
from tasks.audit import audit
from tasks.phase_runs import find_phase_run, phase_run_query
from tasks.receipts import OCCASION_TOPICS, current_receipts, occasion_of

OVERRIDE_ACTION = "phase_resumed_override"


class ResumeInput(RunInput):
    """The form an operator fills in to resume a waiting phase without all receipts."""

    reason: str = Field(min_length=3, description="Varför ska fasen fortsätta? (krävs, sparas i granskningsloggen)")
    resumed_by: str = Field(default="operatör", description="Vem som fortsätter fasen")
    override: bool = Field(
        default=True,
        description="Fortsätt utan alla kvittenser (operatörens beslut, sparas i granskningsloggen). "
        "Automatiska återupptaganden anger nej: fasen väntar då vidare tills alla är överens.",
    )


def wait_state(cycle_id: int, phase: str, occasion: str = "") -> tuple[str | None, int, int]:
    """(key, agreed, total) from one snapshot: the key is None when nothing is outstanding, else it
    names the phase's (or the follow-up occasion's) current receipts (ids only: a signature does not
    change it, a new version or a new hand-up does). One read, so a signature landing in between
    cannot make the run neither wait nor finish."""
    with session_scope() as session:
        rows = current_receipts(session, cycle_id, phase, occasion)
    agreed, total = sum(r.state == ReceiptState.AGREED for r in rows), len(rows)
    if agreed == total:
        return None, agreed, total
    ids = ",".join(str(i) for i in sorted(r.id or 0 for r in rows))
    return "receipts-" + hashlib.sha256(ids.encode()).hexdigest()[:16], agreed, total


def pause_key(key: str, attempt: int) -> str:
    """The key of the attempt-th wait for the same receipts: the first is the key itself."""
    return key if attempt == 0 else f"{key}-{attempt}"


def mark_waiting(cycle_id: int, phase: str, occasion: str = "") -> None:
    def work(session) -> None:  # type: ignore[no-untyped-def]
        run = session.exec(phase_run_query(cycle_id, phase, occasion)).one()
        run.state = PhaseState.WAITING
        session.add(run)

    with_retry(work)


def record_override(
    cycle_id: int, phase: str, flow_run_id: str, key: str, given: ResumeInput, agreed: int, total: int
) -> bool:
    """Audit an operator's resume where the run consumes it: once per (flow run, key), however often
    the run passes that key again (a resumed run starts from the top). True if written now."""
    subject = f"{flow_run_id}/{key}"

    def work(session: Session) -> bool:
        seen = session.exec(
            select(AuditEntry.id).where(AuditEntry.action == OVERRIDE_ACTION, AuditEntry.subject == subject)
        ).first()
        if seen is not None:
            return False
        audit(
            session,
            actor=given.resumed_by or "operatör",
            action=OVERRIDE_ACTION,
            cycle_id=cycle_id,
            phase=phase,
            subject=subject,
            reason=given.reason,
            detail={"agreed": agreed, "total": total, "flow_run_id": flow_run_id, "key": key},
        )
        return True

    return bool(with_retry(work))


def resume_if_ready(
    cycle_id: int,
    phase: str,
    actor: str,
    *,
    occasion: str = "",
    force_reason: str | None = None,
    wait_s: float = 20.0,
    config: str | None = None,
) -> bool:
    """Resume the suspended run of the phase (of the follow-up `occasion`: a signature resumes the
    run of its receipt's occasion, tasks.receipts.occasion_of) when it has something to do: all its
    receipts agreed, a dispute to answer with a new version, or an operator's reason. Returns True
    if a run was resumed (or the phase started again because its run was lost). Never raises for a
    run that someone else resumed first, that crashed, or that the Prefect server does not know (an
    import onto another server).

    `config` names the configuration, for a phase started again from its deployment; None is the
    default configuration (`STYRKEDJA_CONFIG`)."""
    with session_scope() as session:
        run = find_phase_run(session, cycle_id, phase, occasion)
        if run is None or run.state != PhaseState.WAITING or not run.flow_run_id:
            return False
        occasion = run.occasion  # "" for a follow-up run waiting since before occasions were recorded
        rows = current_receipts(session, cycle_id, phase, occasion)
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
    # The override itself is audited by the run when it consumes this input (record_override).
    run_input = {"reason": reason, "resumed_by": actor, "override": bool(force_reason)}
    outcome = _resume(flow_run_id, run_input, wait_s)
    if outcome == "resumed":
        return True
    if outcome == "crashed":
        restarted = _restart_crashed(flow_run_id)
        if restarted is None:  # deleted between the two reads
            return _restart_lost(cycle_id, phase, occasion, flow_run_id, actor, reason, config)
        if restarted:
            with session_scope() as session:
                audit(
                    session,
                    actor=actor,
                    action="phase_restarted_after_crash",
                    cycle_id=cycle_id,
                    phase=phase,
                    reason=f"the suspended run {flow_run_id} had crashed; {reason}",
                )
        return restarted  # an override is not carried over: the new run waits for what is still missing
    if outcome == "unknown":
        return _restart_lost(cycle_id, phase, occasion, flow_run_id, actor, reason, config)
    return False


def resume_after_decision(
    receipt: Receipt,
    actor: str,
    *,
    prefect_up: Callable[[], bool],
    config: str | None = None,
    wait_s: float = 5.0,
) -> str | None:
    """After a signature or a dispute (the command line's `receipt sign`, the portal): resume the
    waiting run of the receipt's phase (of its follow-up occasion) when the Prefect server is up
    and the run has something to do. Returns what was resumed ("phase" or "phase occasion"), or
    None. `config` is the user's configuration, for a phase started again from its deployment."""
    if not prefect_up():
        return None
    occasion = occasion_of(receipt.topic)
    if resume_if_ready(receipt.cycle_id, receipt.phase, actor, occasion=occasion, wait_s=wait_s, config=config):
        return receipt.phase + (f" {occasion}" if occasion else "")
    return None


def _resume(flow_run_id: str, run_input: dict[str, Any], wait_s: float) -> str:
    """The run may not have reached its suspended state yet: wait for it, briefly. 'resumed',
    'crashed' (its process was killed around the suspend), 'unknown' (the Prefect server has no such
    run) or 'not_resumed' (not paused in time, finished, or someone else resumed it first)."""
    from prefect import get_client

    deadline = time.monotonic() + wait_s
    with get_client(sync_client=True) as client:
        while True:
            try:
                state = client.read_flow_run(UUID(flow_run_id)).state
            except ObjectNotFound:
                return "unknown"
            if state is not None and state.type == StateType.PAUSED:
                return "resumed" if _resume_paused(flow_run_id, run_input) else "not_resumed"
            if state is not None and state.type == StateType.CRASHED:
                return "crashed"
            if state is not None and state.is_final():
                return "not_resumed"
            if time.monotonic() > deadline:
                return "not_resumed"
            time.sleep(0.5)


def _resume_paused(flow_run_id: str, run_input: dict[str, Any]) -> bool:
    """Resume a run seen paused. Two last signatures (or a signature and the watch) may both see it
    paused: the second finds it no longer paused, which is not an error, just not its resume."""
    from prefect import get_client

    try:
        resume_flow_run(UUID(flow_run_id), run_input=run_input)
        return True
    except (NotPausedError, FlowPauseTimeout, RuntimeError, ObjectNotFound) as exc:
        with get_client(sync_client=True) as client:
            try:
                state = client.read_flow_run(UUID(flow_run_id)).state
            except ObjectNotFound:
                return False
        if state is not None and state.type == StateType.PAUSED and not isinstance(exc, NotPausedError):
            raise  # still paused and refused: a real error
        _logger().info("Flow run %s was resumed by someone else first (%s)", flow_run_id, exc)
        return False


def _restart_crashed(flow_run_id: str) -> bool | None:
    """A phase marked waiting whose suspended run crashed (killed at or just after the suspend:
    Prefect lets Crashed replace Suspended) would otherwise wait for ever. Start the phase again
    from its deployment with the same parameters: the new run finds every document, receipt and
    notification already there, creates nothing twice, and completes or suspends as the receipts
    say. Only for deployment runs; a cancelled run was stopped on purpose and stays stopped.
    None when the server no longer knows the run."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        try:
            crashed = client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            return None
        if crashed.deployment_id is None:
            return False
        # Keyed by the crashed run: two signatures (or a signature and the deadline watch) at once
        # start one new run, not two.
        client.create_flow_run_from_deployment(
            crashed.deployment_id, parameters=dict(crashed.parameters), idempotency_key=f"restart-{flow_run_id}"
        )
    return True


def phase_deployment_name(phase: str) -> str:
    """The phase's deployment, '<flow>/<flow>' (flows.registry.deployment_name): the flow is the
    phase id with hyphens."""
    name = phase.replace("_", "-")
    return f"{name}/{name}"


def _restart_lost(
    cycle_id: int, phase: str, occasion: str, flow_run_id: str, actor: str, reason: str, config: str | None
) -> bool:
    """The Prefect server does not know the phase's run (the cycle was imported onto another server,
    or the run was deleted): start the phase again from its deployment with the parameters the
    application database holds (plan year, as-of date, a gate override, the follow-up occasion).
    Keyed by the lost run, so two callers start one run. Without a deployment (or a configuration of
    this organisation) nothing can be started: say so in the log and the audit log, return False."""
    from prefect import get_client

    params, problem = _lost_run_parameters(cycle_id, phase, occasion, config)
    deployment = phase_deployment_name(phase)
    new_id: str | None = None
    if params is not None:
        with get_client(sync_client=True) as client:
            try:
                dep = client.read_deployment_by_name(deployment)
            except ObjectNotFound:
                problem = f"no deployment {deployment} on the Prefect server (is `styrkedja serve` running?)"
            else:
                fr = client.create_flow_run_from_deployment(
                    dep.id, parameters=params, idempotency_key=f"restart-{flow_run_id}"
                )
                new_id = str(fr.id)
    with session_scope() as session:
        if new_id is not None:
            audit(
                session,
                actor=actor,
                action="phase_restarted_after_lost_run",
                cycle_id=cycle_id,
                phase=phase,
                subject=new_id,
                reason=f"the Prefect server does not know the waiting run {flow_run_id}; started {deployment} "
                f"again as {new_id}; {reason}",
                detail={"lost_flow_run_id": flow_run_id, "parameters": params},
            )
        else:
            audit(
                session,
                actor=actor,
                action="phase_resume_failed",
                cycle_id=cycle_id,
                phase=phase,
                subject=flow_run_id,
                reason=f"the Prefect server does not know the waiting run {flow_run_id} and the phase could not "
                f"be started again: {problem}; {reason}",
            )
    if new_id is None:
        _logger().warning(
            "Phase %s of cycle %d waits on flow run %s, which the Prefect server does not know, and could not "
            "be started again: %s. Start it by hand: styrkedja run %s",
            phase,
            cycle_id,
            flow_run_id,
            problem,
            phase.replace("_", "-"),
        )
        return False
    _logger().warning(
        "Phase %s of cycle %d waited on flow run %s, unknown to the Prefect server; started again as %s",
        phase,
        cycle_id,
        flow_run_id,
        new_id,
    )
    return True


def _lost_run_parameters(
    cycle_id: int, phase: str, occasion: str, config: str | None
) -> tuple[dict[str, Any] | None, str]:
    """The phase flow's parameters for a run started again, or (None, why not)."""
    from config.loader import load_config

    with session_scope() as session:
        cycle = session.get(Cycle, cycle_id)
        run = session.exec(phase_run_query(cycle_id, phase, occasion)).first()
        if cycle is None or run is None:
            return None, f"no cycle {cycle_id} or no phase run {phase}{' ' + occasion if occasion else ''}"
        entries = session.exec(
            select(AuditEntry)
            .where(
                AuditEntry.cycle_id == cycle_id,
                AuditEntry.phase == phase,
                AuditEntry.action.in_(["phase_started", "gate_overridden"]),  # type: ignore[attr-defined]
            )
            .order_by(AuditEntry.id.desc())  # type: ignore[union-attr]
        ).all()
        # Another occasion's start or gate override is not this run's (phase_steps records the occasion).
        entries = [e for e in entries if (e.detail or {}).get("occasion", "") == occasion]
        rows = current_receipts(session, cycle_id, phase) if phase == "follow_up" and not occasion else []
        org, year, as_of = cycle.organisation_id, cycle.year, run.as_of
    try:
        org_of_config = load_config(config).organisation.id
    except Exception as exc:  # a configuration that no longer loads is a reason, not a crash
        return None, f"the configuration {config or '(default)'} does not load: {exc}"
    if org_of_config != org:
        return None, f"the configuration {config or '(default)'} is {org_of_config}, the cycle is {org}"
    started = next((e for e in entries if e.action == "phase_started"), None)
    gate = next((e for e in entries if e.action == "gate_overridden"), None)
    params: dict[str, Any] = {"year": year, "config": config, "wait": True}
    if as_of is not None:
        params["as_of"] = as_of.isoformat()
    if started is not None:
        params["actor"] = started.actor
    if gate is not None:  # the gate was overridden once, with a reason: the new run must pass it the same way
        params["override"] = True
        params["reason"] = gate.reason or "tidigare undantag från grinden"
    if occasion:
        params["occasion"] = occasion
    elif phase == "follow_up":
        # A run waiting since before the occasion was recorded with it: tell it from the receipts.
        waiting = [r for r in rows if r.state != ReceiptState.AGREED] or rows
        told = next(
            (
                r.topic.split("-", 1)[1]
                for r in sorted(waiting, key=lambda r: -(r.id or 0))
                if r.topic.startswith(OCCASION_TOPICS)
            ),
            None,
        )
        if told is None:
            return None, "the follow-up occasion cannot be told from its receipts"
        params["occasion"] = told
    return params, ""


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    from prefect import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("styrkedja.waiting")
