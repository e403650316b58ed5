"""The steps of a phase run as Prefect tasks. Each is idempotent: a resumed run starts again from
the top, so every step must be safe to repeat.

Caching is off on purpose: Prefect's default cache key includes the flow run id, which a resumed
run keeps, so a cached step would replay stale answers (for example "3 of 5 receipts agreed").
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlmodel import select

from config.loader import load_config
from models.db import output_root, session_scope, with_retry
from models.errors import GateNotMetError
from models.tables import Milestone, PhaseRun, PhaseState, utcnow
from tasks import cycle as cycle_mod
from tasks import level_reports
from tasks.audit import audit
from tasks.distribution import DistributionResult, distribute
from tasks.followup_calendar import Occasion
from tasks.handoffs import handoffs_for_phase
from tasks.level_reports import HandUpResult, with_conclusions
from tasks.notify import deliver_outbox
from tasks.phase_runs import phase_run_query
from tasks.progress import artifact_key, receipt_rows
from tasks.receipts import gate_missing, progress

step = task(cache_policy=NO_CACHE, persist_result=False, retries=0)


@step
def prepare_cycle(config: str | None, year: int) -> int:
    cfg = load_config(config)
    return cycle_mod.prepare_cycle(cfg, year)


@step
def check_gate(
    config: str | None, cycle_id: int, phase: str, override: bool, reason: str, actor: str, occasion: str = ""
) -> list[str]:
    """Stop with the list of missing receipts, unless an operator overrides with a reason (recorded
    with the follow-up occasion it was given for: a run started again finds its own)."""
    with session_scope() as session:
        missing = gate_missing(session, cycle_id, phase)
        if not missing:
            return []
        if not override:
            audit(
                session,
                actor=actor,
                action="gate_refused",
                cycle_id=cycle_id,
                phase=phase,
                detail={"missing": missing[:200]},
            )
        elif reason.strip():
            audit(
                session,
                actor=actor,
                action="gate_overridden",
                cycle_id=cycle_id,
                phase=phase,
                reason=reason.strip(),
                detail={"missing": missing[:200], **_occasion_detail(occasion)},
            )
            get_run_logger().warning("Gate overridden by %s (%s): %d receipts missing", actor, reason, len(missing))
            return missing
    if override:
        raise GateNotMetError(phase, ["an override needs a written --reason", *missing])
    raise GateNotMetError(phase, missing)


def _occasion_detail(occasion: str) -> dict[str, str]:
    return {"occasion": occasion} if occasion else {}


@step
def start_phase_run(
    cycle_id: int, phase: str, flow_run_id: str | None, as_of: date | None, actor: str, occasion: str = ""
) -> None:
    """The run's row, per (cycle, phase, follow-up occasion): a re-run or a resume updates its own."""

    def work(session: Any) -> None:
        run = session.exec(phase_run_query(cycle_id, phase, occasion)).first()
        if run is None and occasion and flow_run_id:
            # Resumed, this run was waiting since before occasions were recorded (occasion ""): its row.
            legacy = session.exec(phase_run_query(cycle_id, phase, "")).first()
            if legacy is not None and legacy.flow_run_id == flow_run_id:
                run, run.occasion = legacy, occasion
        if run is None:
            run = PhaseRun(cycle_id=cycle_id, phase=phase, occasion=occasion)
        if run.state != PhaseState.WAITING or run.flow_run_id != flow_run_id:
            run.attempts += 1  # a resume of the same run is not a new attempt
        run.state = PhaseState.RUNNING
        run.flow_run_id = flow_run_id
        run.as_of = as_of
        run.finished_at = None
        session.add(run)
        audit(
            session,
            actor=actor,
            action="phase_started",
            cycle_id=cycle_id,
            phase=phase,
            subject=flow_run_id,
            detail=_occasion_detail(occasion) or None,
        )

    with_retry(work)


@step
def distribute_phase(
    config: str | None, cycle_id: int, year: int, phase: str, occasion: Occasion | None, actor: str
) -> DistributionResult:
    cfg = load_config(config)
    handoffs = handoffs_for_phase(cfg, year, phase, occasion)
    if phase == "preparation":  # plan–do–check–act: last year's follow-up conclusions go into the material
        handoffs = with_conclusions(cfg, year, handoffs)
    result = distribute(cfg, cycle_id, phase, handoffs, output_root(), actor=actor)
    get_run_logger().info(
        "%s: %d of %d documents rendered, %d new receipts of %d, %d notifications queued",
        phase,
        result.documents_rendered,
        result.documents_total,
        result.receipts_issued,
        result.receipts_total,
        result.notifications_queued,
    )
    return result


@step
def hand_up_levels(
    config: str | None, cycle_id: int, occasion: Occasion, overrides: dict[str, str], actor: str
) -> HandUpResult:
    """Follow-up: each level whose level below is complete gets its level report and hands it up."""
    cfg = load_config(config)
    result = level_reports.hand_up_levels(cfg, cycle_id, occasion, output_root(), actor=actor, overrides=overrides)
    logger = get_run_logger()
    logger.info(
        "%s: %d level reports (%d documents written), %d hand-ups issued, %d overridden",
        occasion.key,
        len(result.levels),
        result.reports_rendered,
        result.receipts_issued,
        len(result.overridden),
    )
    if result.waiting:  # normal on the first pass: the returns are not in yet
        logger.info(
            "Not handed up yet (returns missing): %s",
            "; ".join(f"{u} ({', '.join(m)})" for u, m in result.waiting.items()),
        )
    return result


@step
def send_notifications(config: str | None) -> dict[str, int]:
    """Send what the outbox holds; a channel that is down is retried later, never fails the run."""
    cfg = load_config(config)
    report = deliver_outbox(cfg, base_dir=output_root())
    return {"sent": report.sent, "retried": report.retried, "failed": report.failed}


@step
def publish_receipts(config: str | None, cycle_id: int, year: int, phase: str, occasion: str = "") -> tuple[int, int]:
    """Receipt table and progress as artifacts on this run; keyed (per follow-up occasion), so the
    Artifacts page keeps history."""
    cfg = load_config(config)
    with session_scope() as session:
        rows = receipt_rows(session, cfg, cycle_id, phase, occasion)
        agreed, total = progress(session, cycle_id, phase, occasion)
    org = cfg.organisation.id
    name = cfg.phase(phase).name + (f" ({occasion})" if occasion else "")
    create_table_artifact(
        table=rows or [{"status": "inga kvittenser"}],
        key=artifact_key("kvittenser", org, year, phase, *_occasion_part(occasion)),
        description=f"Kvittenser för {name}, planår {year}: {agreed} av {total} överens.",
    )
    create_progress_artifact(
        progress=100.0 * agreed / total if total else 100.0,
        key=artifact_key("framdrift", org, year, phase, *_occasion_part(occasion)),
        description=f"Väntar på {total - agreed} av {total} kvittenser" if agreed < total else "Alla kvittenser klara",
    )
    return agreed, total


@step
def mark_phase(
    cycle_id: int,
    phase: str,
    state: PhaseState,
    actor: str,
    overridden: bool = False,
    deadline_key: str | None = None,
    occasion: str = "",
) -> None:
    def work(session: Any) -> None:
        run = session.exec(phase_run_query(cycle_id, phase, occasion)).one()
        run.state = state
        run.overridden = run.overridden or overridden
        if state == PhaseState.COMPLETED:
            run.finished_at = utcnow()
            # The phase's receipt deadline milestone is done when its receipts are.
            if deadline_key:
                ms = session.exec(
                    select(Milestone).where(Milestone.cycle_id == cycle_id, Milestone.key == deadline_key)
                ).first()
                if ms is not None and ms.done_at is None:
                    ms.done_at = run.finished_at
                    session.add(ms)
        session.add(run)
        audit(
            session,
            actor=actor,
            action=f"phase_{state}",
            cycle_id=cycle_id,
            phase=phase,
            detail=_occasion_detail(occasion) or None,
        )

    with_retry(work)


@step
def publish_summary(config: str | None, year: int, phase: str, text: str, occasion: str = "") -> None:
    cfg = load_config(config)
    create_markdown_artifact(
        markdown=text,
        key=artifact_key("sammanfattning", cfg.organisation.id, year, phase, *_occasion_part(occasion)),
        description=f"{phase} {occasion}".strip(),
    )


def _occasion_part(occasion: str) -> tuple[str, ...]:
    """Artifact keys of a follow-up occasion name it: two occasions do not share one history."""
    return (occasion,) if occasion else ()
