"""The whole receipt path through a served deployment: distribute → suspend → sign (one dispute, a
new version) → a late automatic resume meant for the dispute only makes the run wait again → the
serving process is restarted while suspended → the receivers sign with `styrkedja receipt sign`,
whose last signature resumes the run by itself → the next phase's gate opens → an operator resumes
the next phase from the resume form after one signature, and the run completes it, audited once.
Two follow-up occasions suspended at once are each resumed by the last signature of their own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_API_URL
from prefect_server import children, deployed, run_state, start_serving, stop, wait_for
from sqlmodel import select
from test_follow_up_chain import _trimmed_config
from typer.testing import CliRunner

from config.loader import load_config
from flows.cli import app
from flows.demo_authors import hand_back, hand_back_all
from flows.registry import OTHER_FLOWS, PHASE_FLOWS, deployment_name
from models.db import session_scope
from models.tables import AuditEntry, PhaseRun, Receipt, ReceiptState
from tasks.receipts import SignRequest, code_for, current_receipts, dispute, gate_missing, sign
from tasks.waiting import OVERRIDE_ACTION, _resume, resume_if_ready, wait_state

YEAR = 2030
pytestmark = pytest.mark.slow


def _receipts(phase: str) -> list[Receipt]:
    with session_scope() as s:
        return list(s.exec(select(Receipt).where(Receipt.phase == phase).order_by(Receipt.id)))


def test_suspended_phase_resumes_on_last_signature_across_a_restart(
    prefect_api, app_env: Path, monkeypatch: pytest.MonkeyPatch
):
    cfg = load_config("region")
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the CLI finds the server so
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    log = app_env / "serve.log"
    # The previous phase, in process, signed: its gate must be open.
    PHASE_FLOWS["preparation"](year=YEAR, config="region", wait=False)
    for r in _receipts("preparation"):
        sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)))

    serving = start_serving(env, log)
    try:
        wait_for(deployed, 90, "deployments to register", log)
        fr = run_deployment(
            deployment_name(PHASE_FLOWS["planning_prerequisites"]),
            parameters={"year": YEAR, "config": "region"},
            timeout=0,
        )
        wait_for(lambda: run_state(fr.id) == StateType.PAUSED, 120, "the phase to suspend", log)
        rows = _receipts("planning_prerequisites")
        assert len(rows) == len(cfg.committees()) and all(r.state == ReceiptState.ISSUED for r in rows)
        with session_scope() as s:
            run = s.exec(select(PhaseRun).where(PhaseRun.phase == "planning_prerequisites")).one()
        assert run.state == "waiting" and run.flow_run_id == str(fr.id)

        # One committee disputes: the run resumes, issues version 2 and suspends again.
        first = rows[0]
        signer = cfg.unit(first.receiver_unit).signatories[0].id
        dispute(cfg, SignRequest(first.id, signer, code_for(first.key), comment="Ramen 2031 saknas."))
        assert resume_if_ready(first.cycle_id, "planning_prerequisites", "test")
        v2 = wait_for(
            lambda: next((r for r in _receipts("planning_prerequisites") if r.supersedes_id == first.id), None),
            120,
            "version 2 to be issued",
            log,
        )
        wait_for(lambda: run_state(fr.id) == StateType.PAUSED, 120, "the phase to suspend again", log, fr.id)
        # A signature that came just after the dispute decided to resume for it, and reaches the run
        # only now that it waits for version 2: an automatic resume while receipts are outstanding is
        # no override, so the run waits again (before: completed, "overridden", with no audit entry).
        late = {"reason": "En kvittens bestreds; en ny version ska skickas", "resumed_by": "sen", "override": False}
        assert _resume(str(fr.id), late, wait_s=0) == "resumed"
        assert run_state(fr.id) != StateType.PAUSED
        wait_for(lambda: run_state(fr.id) == StateType.PAUSED, 120, "the phase to wait again", log, fr.id)
        with session_scope() as s:
            run = s.exec(select(PhaseRun).where(PhaseRun.phase == "planning_prerequisites")).one()
        assert run.state == "waiting" and not run.overridden
        # The suspended run's process exits just after reporting PAUSED; a SIGTERM before then would
        # reach a flow process rather than an idle runner, which is a different scenario.
        wait_for(lambda: not children(serving.pid), 30, "the suspended run's process to exit", log)

        # The serving process goes away while the phase is suspended, and comes back.
        stop(serving)
        serving = start_serving(env, log)
        wait_for(deployed, 90, "deployments to register again", log)

        # The receivers sign with the command line; its last signature resumes the run by itself.
        outputs = []
        for r in _receipts("planning_prerequisites"):
            if r.state == ReceiptState.ISSUED:
                signer = cfg.unit(r.receiver_unit).signatories[0].id
                args = ["receipt", "sign", str(r.id), "--signatory", signer, "--code", code_for(r.key)]
                result = CliRunner().invoke(app, [*args, "--config", "region"])
                assert result.exit_code == 0, result.output
                outputs.append(result.output)
        assert "phase planning_prerequisites resumed" in outputs[-1], outputs
        assert not any("resumed" in o for o in outputs[:-1]), outputs
        wait_for(lambda: run_state(fr.id) == StateType.COMPLETED, 180, "the resumed phase to complete", log, fr.id)

        rows = _receipts("planning_prerequisites")
        assert sum(r.state == ReceiptState.SUPERSEDED for r in rows) == 1
        assert {r.state for r in rows if r.id != first.id} == {ReceiptState.AGREED}
        assert v2.version == 2
        with session_scope() as s:
            run = s.exec(select(PhaseRun).where(PhaseRun.phase == "planning_prerequisites")).one()
            assert run.state == "completed" and not run.overridden
            assert gate_missing(s, first.cycle_id, "committee_feedback") == []
        # one suspended run for the whole phase, not one per receipt
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name(deployment_name(PHASE_FLOWS["planning_prerequisites"]))
            from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
        assert len(runs) == 1

        # An operator resumes the next phase without its receipts from the Prefect UI's resume form
        # (reason and name; the override box at its default), after one committee has signed: the
        # run finds its key (the same receipts) resumed and completes, and audits the override once.
        fb = run_deployment(
            deployment_name(PHASE_FLOWS["committee_feedback"]), parameters={"year": YEAR, "config": "region"}, timeout=0
        )
        wait_for(lambda: run_state(fb.id) == StateType.PAUSED, 120, "committee feedback to suspend", log)
        one = _receipts("committee_feedback")[0]
        hand_back(cfg, one.id, app_env / "returns")  # the committee hands its feedback in first
        sign(cfg, SignRequest(one.id, cfg.unit(one.receiver_unit).signatories[0].id, code_for(one.key)))
        reason = "Återkopplingen lämnades muntligt i styrdialogen; protokollförd § 41"
        resume_flow_run(fb.id, run_input={"reason": reason, "resumed_by": "Eva Operatör"})
        wait_for(lambda: run_state(fb.id) == StateType.COMPLETED, 120, "the overridden phase to complete", log, fb.id)
        with session_scope() as s:
            run = s.exec(select(PhaseRun).where(PhaseRun.phase == "committee_feedback")).one()
            entry = s.exec(select(AuditEntry).where(AuditEntry.action == OVERRIDE_ACTION)).one()
        assert run.state == "completed" and run.overridden
        assert entry.actor == "Eva Operatör" and entry.reason == reason and entry.phase == "committee_feedback"
        assert (entry.subject or "").startswith(f"{fb.id}/receipts-")
        assert entry.detail["agreed"] == 1 and entry.detail["total"] == len(_receipts("committee_feedback"))
        assert sum(r.state == ReceiptState.ISSUED for r in _receipts("committee_feedback")) == entry.detail["total"] - 1
    finally:
        stop(serving)


def _follow_up_runs() -> dict[str, PhaseRun]:
    with session_scope() as s:
        return {r.occasion: r for r in s.exec(select(PhaseRun).where(PhaseRun.phase == "follow_up"))}


def _sign_all_but_one(cfg, cycle_id: int, occasion: str, folder: Path) -> Receipt:  # type: ignore[no-untyped-def]
    """Every unit of the occasion hands its return in; every receipt is signed but the last, which
    is returned."""
    hand_back_all(cfg, cycle_id, "follow_up", folder, topic_prefix=f"uppfoljning-{occasion}")
    with session_scope() as s:
        *rest, last = current_receipts(s, cycle_id, "follow_up", occasion)
    for r in rest:
        sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)))
    return last


def _open(cycle_id: int, occasion: str) -> bool:
    with session_scope() as s:
        return any(r.state == ReceiptState.ISSUED for r in current_receipts(s, cycle_id, "follow_up", occasion))


def _up_the_chain(cfg, cycle_id: int, occasion: str, fr_id, folder: Path, log: Path, config: str) -> int:  # type: ignore[no-untyped-def]
    """After the units: level by level, each resumed pass hands up the levels whose level below
    has handed back; each level hands its report back and its parent signs, until the run
    completes. Returns the passes it took."""
    passes = 0
    while True:
        wait_for(
            lambda: run_state(fr_id) == StateType.COMPLETED or _open(cycle_id, occasion),
            120,
            f"{occasion}: the next level reports or completion",
            log,
            fr_id,
        )
        if run_state(fr_id) == StateType.COMPLETED:
            return passes
        wait_for(lambda: run_state(fr_id) == StateType.PAUSED, 120, f"{occasion} to suspend again", log, fr_id)
        passes += 1
        assert passes < 8
        hand_back_all(cfg, cycle_id, "follow_up", folder, topic_prefix=f"nivarapport-{occasion}")
        with session_scope() as s:
            rows = current_receipts(s, cycle_id, "follow_up", occasion)
        for r in rows:
            if r.state == ReceiptState.ACKNOWLEDGED:
                sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)))
        assert resume_if_ready(cycle_id, "follow_up", "test", occasion=occasion, config=config)


def test_two_follow_up_occasions_wait_at_once_and_each_resumes_on_its_own_receipts(
    prefect_api, app_env: Path, monkeypatch: pytest.MonkeyPatch
):
    """Each occasion is its own run and its own phase-run row (before: the second overwrote the
    first one's row, whose run the last signature then never resumed, and each counted the other's
    receipts). The trimmed municipality of the follow-up chain: 17 receipts per occasion."""
    config = str(_trimmed_config(app_env))
    cfg = load_config(config)
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the CLI finds the server so
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "STYRKEDJA_RENDER_WORKERS": "1",  # two small runs side by side: no render pools
    }
    log = app_env / "serve.log"
    first, second = f"delar-{YEAR}-03-31", f"delar-{YEAR}-08-31"
    serving = start_serving(env, log)
    try:
        wait_for(deployed, 90, "deployments to register", log)
        params = {"year": YEAR, "config": config, "override": True, "reason": "Verksamhetsplanerna finns på papper"}
        runs = {
            occ: run_deployment(
                deployment_name(PHASE_FLOWS["follow_up"]), parameters={**params, "occasion": occ}, timeout=0
            )
            for occ in (first, second)
        }
        for occ, fr in runs.items():
            wait_for(lambda fr=fr: run_state(fr.id) == StateType.PAUSED, 120, f"{occ} to suspend", log, fr.id)
        rows = _follow_up_runs()
        assert {occ: (r.state, r.flow_run_id) for occ, r in rows.items()} == {
            occ: ("waiting", str(fr.id)) for occ, fr in runs.items()
        }
        cycle_id = rows[first].cycle_id
        assert wait_state(cycle_id, "follow_up", first)[1:] == wait_state(cycle_id, "follow_up", second)[1:] == (0, 17)

        # The first occasion's receipts, the last one with the command line: its run resumes and
        # completes; the second's run stays suspended, waiting for all of its own.
        last = _sign_all_but_one(cfg, cycle_id, first, app_env / "returns")
        signer = cfg.unit(last.receiver_unit).signatories[0].id
        result = CliRunner().invoke(
            app,
            ["receipt", "sign", str(last.id), "--signatory", signer, "--code", code_for(last.key), "--config", config],
        )
        assert result.exit_code == 0 and f"phase follow_up {first} resumed" in result.output, result.output
        done = runs[first].id
        assert _up_the_chain(cfg, cycle_id, first, done, app_env / "returns", log, config) >= 2
        assert run_state(runs[second].id) == StateType.PAUSED
        rows = _follow_up_runs()
        assert (rows[first].state, rows[second].state) == ("completed", "waiting")
        assert rows[second].flow_run_id == str(runs[second].id)

        # The second occasion's last receipt through the sign-receipt flow (the Prefect UI's form).
        last = _sign_all_but_one(cfg, cycle_id, second, app_env / "returns")
        signed = OTHER_FLOWS["sign_receipt"](
            receipt_id=last.id,
            signatory=cfg.unit(last.receiver_unit).signatories[0].id,
            code=code_for(last.key),
            config=config,
        )
        assert signed["phase_resumed"] is True
        done = runs[second].id
        assert _up_the_chain(cfg, cycle_id, second, done, app_env / "returns", log, config) >= 2
        rows = _follow_up_runs()
        assert {occ: (r.state, r.flow_run_id, r.overridden) for occ, r in rows.items()} == {
            occ: ("completed", str(fr.id), True)
            for occ, fr in runs.items()  # the gate was overridden
        }
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name(deployment_name(PHASE_FLOWS["follow_up"]))
            from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

            flow_runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
        assert {fr.id for fr in flow_runs} == {fr.id for fr in runs.values()}  # one run per occasion, nothing restarted
    finally:
        stop(serving)
