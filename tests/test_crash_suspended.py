"""Crash while a phase is suspended: the phase runs through a served deployment, and the process
running it is killed (SIGKILL) at the suspend or while it waits for receipts. The serving process is
started again (as a service manager would), the receivers sign, and the phase completes — with every
document, receipt and notification exactly once and nothing missing.

- at_suspend: killed after the phase was marked waiting, before the run was suspended on the server.
  The run is lost (Prefect marks it crashed): the operator runs the phase again before anyone
  signs; it creates nothing twice and suspends, and the last signature resumes it.
- after_suspend: killed after the server accepted the suspension, before the process exited. The
  runner still reports the run crashed, so this too is lost; here everyone signs first, and the last
  signature finds the run crashed and starts the phase again from its deployment (audited, once
  however many callers), which creates nothing twice and completes.
- serve_killed: the serving process (with everything it started) is killed while the phase is
  suspended. The suspended run survives on the server; the last signature resumes it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect_server import (
    PrefectServer,
    children,
    deployed,
    own_prefect_api,
    run_state,
    start_serving,
    stop,
    wait_for,
)
from smtp_server import SmtpServer, local_smtp
from sqlmodel import select

from config.loader import load_config
from flows.registry import PHASE_FLOWS, deployment_name
from models.db import output_root, session_scope
from models.tables import AuditEntry, Document, Notification, NotificationState, PhaseRun, Receipt, ReceiptState
from tasks.notify import deliver_outbox
from tasks.receipts import SignRequest, code_for, sign
from tasks.waiting import resume_if_ready

YEAR = 2032
PHASE = "planning_prerequisites"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A Prefect server of this file's own: the session's API would see the runs this file crashes."""
    with own_prefect_api(tmp_path_factory.mktemp("prefect-server")) as srv:
        yield srv


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    yield from local_smtp(monkeypatch)


def _rows(model, phase: str = PHASE) -> list:  # type: ignore[no-untyped-def]
    with session_scope() as s:
        return list(s.exec(select(model).where(model.phase == phase).order_by(model.id)))


def _phase_run() -> PhaseRun:
    with session_scope() as s:
        return s.exec(select(PhaseRun).where(PhaseRun.phase == PHASE)).one()


def _deployment_runs() -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(deployment_name(PHASE_FLOWS[PHASE]))
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))


def _flow_run(flow_run_id: UUID) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def _trigger() -> UUID:
    fr = run_deployment(deployment_name(PHASE_FLOWS[PHASE]), parameters={"year": YEAR, "config": "region"}, timeout=0)
    return fr.id


@pytest.mark.parametrize("fault", ["at_suspend", "after_suspend", "serve_killed"])
def test_killed_while_suspended_completes_exactly_once(
    server: PrefectServer, app_env: Path, smtp: SmtpServer, fault: str
) -> None:
    cfg = load_config("region")
    committees = sorted(c.id for c in cfg.committees())
    env = {**os.environ, "PREFECT_API_URL": server.api, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    env.pop("STYRKEDJA_FAULT", None)
    log = app_env / "serve.log"
    # The previous phase, in process, signed: the gate is open.
    PHASE_FLOWS["preparation"](year=YEAR, config="region", wait=False)
    for r in _rows(Receipt, "preparation"):
        sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)))

    faulty = {**env, "STYRKEDJA_FAULT": fault} if fault != "serve_killed" else env
    serving = start_serving(faulty, log)
    try:
        wait_for(deployed, 90, "deployments to register", log)
        earlier = {r.id for r in _deployment_runs()}  # the cases before this one share the server
        first = _trigger()
        if fault == "serve_killed":
            wait_for(lambda: run_state(first) == StateType.PAUSED, 120, "the phase to suspend", log, first)
            wait_for(lambda: not children(serving.pid), 30, "the suspended run's process to exit", log, first)
        else:
            # The runner reports a flow process that died of SIGKILL as crashed — even after the server
            # had accepted its suspension: Prefect lets Crashed replace Suspended.
            wait_for(lambda: run_state(first) == StateType.CRASHED, 120, "the killed run to be reported", log, first)
            assert "-9" in str(_flow_run(first).state.message), _flow_run(first).state
            with get_client(sync_client=True) as client:
                history = [st.type for st in client.read_flow_run_states(first)]
            assert (StateType.PAUSED in history) == (fault == "after_suspend"), history
        # What the kill left behind: everything recorded and sent, the phase marked waiting.
        after_crash = _rows(Receipt)
        assert sorted(r.receiver_unit for r in after_crash) == committees
        assert all(r.state == ReceiptState.ISSUED for r in after_crash)
        assert _phase_run().state == "waiting" and _phase_run().flow_run_id == str(first)
        mails_after_crash = sorted(smtp.box.received_keys())

        # The serving process and all it started are killed outright, then started again without the fault
        # (as a service manager would).
        stop(serving, signal.SIGKILL)
        serving = start_serving(env, log)
        wait_for(deployed, 90, "deployments to register again", log)

        run = first
        if fault == "serve_killed":
            assert run_state(first) == StateType.PAUSED, "the suspended run did not survive the kill"
        if fault == "at_suspend":
            # The run is gone; the operator runs the phase again before anyone signs: it creates nothing
            # twice and suspends, and the last signature resumes it.
            run = _trigger()
            wait_for(lambda: run_state(run) == StateType.PAUSED, 120, "the re-run to suspend", log, run)
            assert _phase_run().flow_run_id == str(run) and _phase_run().attempts == 2
            assert sorted(smtp.box.received_keys()) == mails_after_crash, "the re-run sent something again"

        resumed = False
        for r in _rows(Receipt):
            assert not resumed, "a signature before the last one resumed the run"
            sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)))
            resumed = resume_if_ready(r.cycle_id, PHASE, "test", wait_s=0)
        if fault == "after_suspend":
            # Everyone signed while the run was gone: the last signature finds it crashed and starts the
            # phase again from its deployment (audited); the new run creates nothing and completes.
            assert resumed and run_state(first) == StateType.CRASHED
            # A second caller (the deadline watch, another signature) starts no second run: the final
            # check below finds exactly the crashed run and one new one.
            resume_if_ready(after_crash[0].cycle_id, PHASE, "watch", wait_s=0)
            run = wait_for(
                lambda: next((r.id for r in _deployment_runs() if r.id not in earlier and r.id != first), None),
                60,
                "the phase to be started again",
                log,
                first,
            )
            with session_scope() as s:
                restarts = s.exec(select(AuditEntry).where(AuditEntry.action == "phase_restarted_after_crash")).all()
            assert len(restarts) >= 1 and str(first) in (restarts[0].reason or "")
        else:
            assert resumed, f"the last signature did not resume the run (state {run_state(run)})"
        wait_for(lambda: run_state(run) == StateType.COMPLETED, 180, "the phase to complete", log, run)

        phase_run = _phase_run()
        assert phase_run.state == "completed" and not phase_run.overridden and phase_run.flow_run_id == str(run)
        runs = {r.id: r.state_type for r in _deployment_runs() if r.id not in earlier}
        if fault == "serve_killed":
            assert runs == {run: StateType.COMPLETED}, "the resume started a second run"
        else:
            assert runs == {first: StateType.CRASHED, run: StateType.COMPLETED}
    finally:
        stop(serving)

    # Exactly once, nothing missing: documents, receipts, notifications and the e-mails themselves.
    receipts = _rows(Receipt)
    assert sorted(r.receiver_unit for r in receipts) == committees
    assert {r.state for r in receipts} == {ReceiptState.AGREED} and {r.version for r in receipts} == {1}
    documents = _rows(Document)
    assert len(documents) == len({d.key for d in documents}) == 2 * len(committees)
    assert all((output_root() / d.relpath).is_file() for d in documents)
    assert list((output_root() / str(YEAR)).rglob("*.tmp")) == []
    deliver_outbox(cfg)  # anything the signatures queued
    with session_scope() as s:
        outbox = list(s.exec(select(Notification)))
        started = s.exec(select(AuditEntry).where(AuditEntry.action == "phase_started", AuditEntry.phase == PHASE))
        starts = len(list(started))
    assert {n.receipt_id for n in outbox} >= {r.id for r in receipts}
    assert len(outbox) == len({n.key for n in outbox})
    assert all(n.state == NotificationState.SENT for n in outbox)
    received = smtp.box.received_keys()
    assert len(received) == len(set(received)), "an e-mail arrived twice"
    assert sorted(received) == sorted(n.key for n in outbox if n.channel_id == "epost")
    # one pass before the kill and one after it (the resume or the re-run); at_suspend both a re-run and its resume
    assert starts == (3 if fault == "at_suspend" else 2)
