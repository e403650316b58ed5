"""The shape every phase flow shares: gate, distribute, notify, show, wait for receipts, complete.

A resumed run starts again from the top; every step before the suspend is idempotent, so the
second pass renders nothing, issues nothing and sends nothing that already exists.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import Pause
from prefect.flow_runs import suspend_flow_run

from config.loader import load_config
from models.tables import PhaseState
from tasks import phase_steps as steps
from tasks.distribution import DistributionResult
from tasks.faults import crash_point
from tasks.followup_calendar import find_occasion
from tasks.handoffs import STAGED_PHASES
from tasks.waiting import ResumeInput, mark_waiting, pause_key, record_override, wait_state


def _flow_run_id() -> str | None:
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


def _can_suspend() -> bool:
    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)


def _wait_for_receipts(cycle_id: int, phase: str, key: str, occasion: str = "") -> tuple[int, int, bool]:
    """Suspend until the receipts are all agreed or an operator overrides: (agreed, total, overridden).

    Returns only when resumed; a suspension raises Pause and this process exits. Each wait uses its
    own key (`key`, `key-1`, …): a key already used this run is refused by the server, which hands
    back the input it was resumed with, so a run started again from the top walks through the same
    keys, in order, to the first unused one. An automatic resume (a signature, a dispute, the
    watch) that comes while receipts are still outstanding — a signature racing a dispute, a resume
    meant for an earlier wait — is therefore only a reason to look again, never an override."""
    logger = get_run_logger()
    flow_run_id = _flow_run_id() or ""
    attempt = 0
    while True:
        this_key = pause_key(key, attempt)
        try:
            given: ResumeInput = suspend_flow_run(wait_for_input=ResumeInput, key=this_key)
        except Pause:
            crash_point("after_suspend")  # suspended on the server, this process not yet gone
            raise
        # Here only when this key was already resumed: by the last signature, or by an operator.
        _, agreed, total = wait_state(cycle_id, phase, occasion)
        if given.override:
            if record_override(cycle_id, phase, flow_run_id, this_key, given, agreed, total):
                logger.warning("Resumed by %s (override): %s", given.resumed_by, given.reason)
            return agreed, total, agreed < total
        if agreed == total:
            return agreed, total, False
        logger.info(
            "Resumed by %s (%s) with %d of %d receipts agreed: waiting again",
            given.resumed_by,
            given.reason,
            agreed,
            total,
        )
        attempt += 1


def run_phase(
    phase: str,
    *,
    year: int,
    as_of: date | None = None,
    override: bool = False,
    reason: str = "",
    wait: bool = True,
    config: str | None = None,
    actor: str = "ekonomistaben",
    occasion: str | None = None,
    override_levels: list[str] | None = None,
) -> dict[str, Any]:
    logger = get_run_logger()
    cfg = load_config(config)
    phase_cfg = cfg.phase(phase)
    occ = find_occasion(cfg, year, occasion) if phase == "follow_up" and occasion else None
    if phase == "follow_up" and occ is None:
        from tasks.followup_calendar import occasions

        occ = occasions(cfg, year)[-1]  # the annual report, unless told otherwise
    # A follow-up occasion is a phase run of its own: its own row, its own receipts to wait for.
    occ_key = occ.key if occ else ""

    cycle_id = steps.prepare_cycle(config, year)
    missing = steps.check_gate(config, cycle_id, phase, override, reason, actor, occ_key)
    steps.start_phase_run(cycle_id, phase, _flow_run_id(), as_of, actor, occ_key)
    result = steps.distribute_phase(config, cycle_id, year, phase, occ, actor)
    levels = None
    if occ is not None:
        # Each pass (the first run and every resume) writes the level reports whose level below has
        # returned, and hands them up; the hand-up receipts are then waited for like the others.
        overrides = dict.fromkeys(override_levels or [], reason)
        levels = steps.hand_up_levels(config, cycle_id, occ, overrides, actor)
    crash_point("after_record")  # receipts and their notifications committed, nothing sent yet
    sent = steps.send_notifications(config)
    steps.publish_receipts(config, cycle_id, year, phase, occ_key)

    gate_overridden = bool(missing)
    resumed_without_all = False
    key, agreed, total = wait_state(cycle_id, phase, occ_key)
    # A staged phase whose newest stage was agreed after this run distributed (a quick signature, or
    # one landing while the run started) is not done: distribute again, so the next stage is issued,
    # until a pass issues nothing new.
    while key is None and phase in STAGED_PHASES:
        more = steps.distribute_phase(config, cycle_id, year, phase, occ, actor)
        if not more.receipts_issued:
            break
        result = DistributionResult(
            documents_rendered=result.documents_rendered + more.documents_rendered,
            documents_total=more.documents_total,
            receipts_issued=result.receipts_issued + more.receipts_issued,
            receipts_total=more.receipts_total,
            notifications_queued=result.notifications_queued + more.notifications_queued,
        )
        sent = {k: v + n for (k, v), n in zip(sent.items(), steps.send_notifications(config).values(), strict=True)}
        steps.publish_receipts(config, cycle_id, year, phase, occ_key)
        key, agreed, total = wait_state(cycle_id, phase, occ_key)
    if key is not None and wait and _can_suspend():
        mark_waiting(cycle_id, phase, occ_key)
        logger.info("Waiting for %d of %d receipts; suspending until the last one is signed", total - agreed, total)
        crash_point("at_suspend")  # marked waiting, not yet suspended on the server
        agreed, total, resumed_without_all = _wait_for_receipts(cycle_id, phase, key, occ_key)
        steps.publish_receipts(config, cycle_id, year, phase, occ_key)

    overridden = gate_overridden or resumed_without_all
    if agreed < total and not resumed_without_all:
        steps.mark_phase(cycle_id, phase, PhaseState.WAITING, actor, overridden, occasion=occ_key)
        state = PhaseState.WAITING
    else:
        # The follow-up's receipt deadline is the annual report's: an interim occasion does not meet it.
        deadline_key = phase_cfg.receipt_deadline if occ is None or occ.kind == "annual" else None
        steps.mark_phase(cycle_id, phase, PhaseState.COMPLETED, actor, overridden, deadline_key, occasion=occ_key)
        state = PhaseState.COMPLETED
    summary = {
        "phase": phase,
        "phase_name": phase_cfg.name,
        "year": year,
        "occasion": occ.key if occ else None,
        "state": str(state),
        "documents_rendered": result.documents_rendered,
        "documents_total": result.documents_total,
        "receipts_issued": result.receipts_issued,
        "receipts_agreed": agreed,
        "receipts_total": total,
        "notifications_sent": sent["sent"],
        "overridden": overridden,
    }
    if levels is not None:
        summary |= {
            "level_reports": list(levels.levels),
            "level_reports_rendered": levels.reports_rendered,
            "levels_waiting": {u: list(m) for u, m in levels.waiting.items()},
            "levels_overridden": list(levels.overridden),
        }
    steps.publish_summary(
        config,
        year,
        phase,
        f"# {phase_cfg.name} {year}{' – ' + occ.name if occ else ''}\n\n"
        f"- Status: **{state}**\n- Dokument: {result.documents_total}\n"
        f"- Kvittenser överens: {agreed} av {total}\n- Meddelanden skickade: {sent['sent']}"
        f" (väntar på nytt försök: {sent['retried']}, misslyckade: {sent['failed']})\n"
        + (
            f"- Nivårapporter: {len(levels.levels)}; väntar på underlag: "
            f"{', '.join(levels.waiting) or 'ingen'}; undantag: {', '.join(levels.overridden) or 'inga'}\n"
            if levels is not None
            else ""
        ),
        occ_key,
    )
    return summary
