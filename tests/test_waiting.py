"""Waiting for receipts, piece by piece, against a real Prefect API and a real database: the wait key
names the receipts and not their states, a resume that lost a race is not an error, an operator's
override is audited once by the run that consumes it, and a waiting phase whose run the Prefect
server does not know (an import onto another server) is started again from its deployment."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext
from prefect.flow_runs import pause_flow_run
from prefect_server import own_prefect_api
from sqlmodel import func, select, update

from config.loader import load_config
from flows.demo_authors import hand_back
from flows.registry import PHASE_FLOWS, deployment_name
from models.db import session_scope
from models.tables import AuditEntry, PhaseRun, PhaseState, Receipt, ReceiptState
from tasks import phase_steps
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.followup_calendar import occasions
from tasks.handoffs import handoffs_for_phase
from tasks.phase_runs import find_phase_run
from tasks.progress import phase_statuses
from tasks.receipts import SignRequest, code_for, current_receipts, dispute, occasion_of, sign
from tasks.waiting import (
    OVERRIDE_ACTION,
    ResumeInput,
    _resume,
    _resume_paused,
    mark_waiting,
    phase_deployment_name,
    record_override,
    resume_if_ready,
    wait_state,
)

YEAR = 2033
PHASE = "preparation"


NEXT = "planning_prerequisites"  # one receipt per committee


def _current(cycle_id: int, phase: str) -> list[Receipt]:
    with session_scope() as s:
        return current_receipts(s, cycle_id, phase)


def _prepare() -> int:
    """The preparation phase run in this process without waiting: its receipts issued."""
    PHASE_FLOWS[PHASE](year=YEAR, config="region", wait=False)
    with session_scope() as s:
        return s.exec(select(Receipt.cycle_id).where(Receipt.phase == PHASE)).first()  # type: ignore[return-value]


def _sign_all(cycle_id: int, phase: str) -> None:
    cfg = load_config("region")
    for r in _current(cycle_id, phase):
        if r.state != ReceiptState.AGREED:
            sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)))


def _overrides() -> list[AuditEntry]:
    with session_scope() as s:
        return list(s.exec(select(AuditEntry).where(AuditEntry.action == OVERRIDE_ACTION)))


def test_every_phase_deployment_name_is_the_registrys() -> None:
    for phase, flow_obj in PHASE_FLOWS.items():
        assert phase_deployment_name(phase) == deployment_name(flow_obj)


def test_the_wait_key_names_the_receipts_not_their_states(prefect_api: None, app_env: Path) -> None:
    cfg = load_config("region")
    cycle_id = _prepare()
    _sign_all(cycle_id, PHASE)
    PHASE_FLOWS[NEXT](year=YEAR, config="region", wait=False)
    rows = _current(cycle_id, NEXT)
    assert len(rows) >= 2, "the test needs a phase with at least two receipts"
    key, agreed, total = wait_state(cycle_id, NEXT)
    assert key is not None and (agreed, total) == (0, len(rows))

    # A signature since the suspension does not change the key: an operator's resume of that key is
    # found again by the re-run (B1), and the phase goes on instead of suspending anew.
    first, second = rows[0], rows[1]
    sign(cfg, SignRequest(first.id, cfg.unit(first.receiver_unit).signatories[0].id, code_for(first.key)))
    assert wait_state(cycle_id, NEXT) == (key, 1, len(rows))

    # A dispute alone does not either; the new version it leads to does.
    signer = cfg.unit(second.receiver_unit).signatories[0].id
    dispute(cfg, SignRequest(second.id, signer, code_for(second.key), comment="Underlaget saknar ramarna."))
    assert wait_state(cycle_id, NEXT)[0] == key
    PHASE_FLOWS[NEXT](year=YEAR, config="region", wait=False)
    new_key, agreed, total = wait_state(cycle_id, NEXT)
    assert new_key is not None and new_key != key and (agreed, total) == (1, len(rows))

    _sign_all(cycle_id, NEXT)
    assert wait_state(cycle_id, NEXT) == (None, len(rows), len(rows))


def _paused_flow(key: str) -> tuple[str, list[ResumeInput], threading.Thread]:
    """A flow run in a thread of this process, paused for a ResumeInput under `key`."""
    ids: list[str] = []
    got: list[ResumeInput] = []

    @flow(name="waits-for-input")
    def waits() -> None:
        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None
        ids.append(str(ctx.flow_run.id))
        got.append(pause_flow_run(wait_for_input=ResumeInput, timeout=60, poll_interval=1, key=key))

    thread = threading.Thread(target=waits, daemon=True)
    thread.start()
    _until(lambda: ids and _state(ids[0]) == StateType.PAUSED, 30, "the run to pause")
    return ids[0], got, thread


def _state(flow_run_id: str) -> StateType | None:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    return state.type if state else None


def _until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_resume_that_lost_the_race_is_not_an_error(prefect_api: None, app_env: Path) -> None:
    flow_run_id, got, thread = _paused_flow("receipts-race")
    automatic = {"reason": "Alla kvittenser är signerade", "resumed_by": "signatär 1", "override": False}
    assert _resume_paused(flow_run_id, automatic)
    # The second of two near-simultaneous last signatures saw it paused too; resume_flow_run now
    # finds it running: no traceback after a committed signature, just not this caller's resume.
    assert _resume_paused(flow_run_id, {**automatic, "resumed_by": "signatär 2"}) is False
    assert _resume(flow_run_id, automatic, wait_s=0) == "not_resumed"
    thread.join(timeout=60)
    assert [(g.resumed_by, g.override) for g in got] == [("signatär 1", False)]


def test_the_resume_form_is_an_override_and_the_cli_path_leaves_the_audit_to_the_run(
    prefect_api: None, app_env: Path
) -> None:
    cycle_id = _prepare()
    # What the Prefect UI's form sends: reason and name, the override box left at its default.
    flow_run_id, got, thread = _paused_flow("receipts-form")
    assert _resume_paused(flow_run_id, {"reason": "Beslut i styrdialogen", "resumed_by": "Eva Operatör"})
    thread.join(timeout=60)
    assert got[0].override is True

    # The CLI's `styrkedja resume`: resume_if_ready resumes, the run (not the CLI) writes the entry.
    flow_run_id, got, thread = _paused_flow("receipts-cli")
    with session_scope() as s:
        s.exec(
            update(PhaseRun).where(PhaseRun.phase == PHASE).values(state=PhaseState.WAITING, flow_run_id=flow_run_id)
        )  # type: ignore[call-overload]
    assert resume_if_ready(cycle_id, PHASE, "Eva Operatör", force_reason="Protokollfört § 12")
    thread.join(timeout=60)
    assert (got[0].override, got[0].resumed_by, got[0].reason) == (True, "Eva Operatör", "Protokollfört § 12")
    assert _overrides() == []  # before: resume_if_ready wrote one here, the form path none

    # The run consumes it: one entry per (run, key), however often the re-run passes the key.
    assert record_override(cycle_id, PHASE, flow_run_id, "receipts-cli", got[0], 1, 3)
    assert not record_override(cycle_id, PHASE, flow_run_id, "receipts-cli", got[0], 1, 3)
    [entry] = _overrides()
    assert (entry.actor, entry.reason, entry.subject) == (
        "Eva Operatör",
        "Protokollfört § 12",
        f"{flow_run_id}/receipts-cli",
    )
    assert entry.detail["agreed"] == 1 and entry.detail["total"] == 3
    assert record_override(cycle_id, PHASE, flow_run_id, "receipts-cli-1", got[0], 1, 3)
    assert len(_overrides()) == 2


def _lost_waiting_phase() -> tuple[int, str]:
    """The preparation phase waiting on a flow run the server never saw, all its receipts agreed by
    the time the last signature asks to resume it (as after `styrkedja import` onto another server)."""
    cycle_id = _prepare()
    lost = str(uuid.uuid4())
    with session_scope() as s:
        s.exec(update(Receipt).where(Receipt.phase == PHASE).values(state=ReceiptState.AGREED))  # type: ignore[call-overload]
        s.exec(update(PhaseRun).where(PhaseRun.phase == PHASE).values(state=PhaseState.WAITING, flow_run_id=lost))  # type: ignore[call-overload]
    return cycle_id, lost


def _audit(action: str) -> list[AuditEntry]:
    with session_scope() as s:
        return list(s.exec(select(AuditEntry).where(AuditEntry.action == action)))


@pytest.mark.slow
def test_a_waiting_phase_unknown_to_the_prefect_server_starts_again_from_its_deployment(
    app_env: Path, tmp_path: Path
) -> None:
    with own_prefect_api(tmp_path):
        cycle_id, lost = _lost_waiting_phase()

        # No deployment on this server: no traceback, False, and the audit log says why.
        assert resume_if_ready(cycle_id, PHASE, "signatär", wait_s=0, config="region") is False
        [failed] = _audit("phase_resume_failed")
        assert lost in (failed.reason or "") and "no deployment preparation/preparation" in (failed.reason or "")

        # With the deployment: the phase is started from it, once however many callers.
        flow_obj = PHASE_FLOWS[PHASE]
        deployment_id = flow_obj.to_deployment(name=flow_obj.name).apply()
        assert resume_if_ready(cycle_id, PHASE, "signatär", wait_s=0, config="region")
        assert resume_if_ready(cycle_id, PHASE, "bevakningen", wait_s=0, config="region")
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
        assert len(runs) == 1
        assert runs[0].parameters == {"year": YEAR, "config": "region", "wait": True, "actor": "ekonomistaben"}
        restarted = _audit("phase_restarted_after_lost_run")
        assert [e.subject for e in restarted] == [str(runs[0].id)] * 2
        assert restarted[0].detail["lost_flow_run_id"] == lost
        with session_scope() as s:
            n_receipts = s.exec(select(func.count()).select_from(Receipt)).one()

        # The run it started completes the phase (all receipts agreed) and creates nothing twice.
        import asyncio

        from prefect.runner import Runner

        asyncio.run(Runner().execute_flow_run(runs[0].id))
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(runs[0].id).state
        assert state is not None and state.type == StateType.COMPLETED, state
        with session_scope() as s:
            run = s.exec(select(PhaseRun).where(PhaseRun.phase == PHASE)).one()
            assert s.exec(select(func.count()).select_from(Receipt)).one() == n_receipts
        assert run.state == PhaseState.COMPLETED and run.flow_run_id == str(runs[0].id) and not run.overridden


FU = "follow_up"


def _follow_up_runs() -> dict[str, tuple[str, str | None, int]]:
    with session_scope() as s:
        return {r.occasion: (r.state, r.flow_run_id, r.attempts) for r in s.exec(select(PhaseRun))}


def test_each_follow_up_occasion_has_its_own_phase_run_and_waits_for_its_own_receipts(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two occasions of one cycle waiting at once: two rows, each counting its own receipts; a
    re-run of one updates its own row (before: one row per phase, the second occasion overwrote
    the first one's run, and each waited for the other's receipts)."""
    monkeypatch.setenv("STYRKEDJA_DATABASE_URL", db_url)
    monkeypatch.setenv("STYRKEDJA_HOME", str(tmp_path))
    cfg = load_config("region")
    cycle_id = prepare_cycle(cfg, YEAR, db_url)
    first, second = occasions(cfg, YEAR)[-2:]
    for occ in (first, second):  # two hand-ins each: enough to tell the occasions apart
        handoffs = handoffs_for_phase(cfg, YEAR, FU, occ)[:2]
        distribute(cfg, cycle_id, FU, handoffs, tmp_path / "out", actor="test", url=db_url)
    mine = {occ.key: _current_of(cycle_id, occ.key) for occ in (first, second)}
    assert all(mine.values()) and {r.id for rows in mine.values() for r in rows} == {
        r.id for r in _current(cycle_id, FU)
    }
    assert all(occasion_of(r.topic) == key for key, rows in mine.items() for r in rows)

    start = phase_steps.start_phase_run.fn
    start(cycle_id, FU, "run-a", None, "test", first.key)
    mark_waiting(cycle_id, FU, first.key)
    start(cycle_id, FU, "run-b", None, "test", second.key)  # started while the first waits
    mark_waiting(cycle_id, FU, second.key)
    assert _follow_up_runs() == {first.key: ("waiting", "run-a", 1), second.key: ("waiting", "run-b", 1)}

    n_first, n_second = len(mine[first.key]), len(mine[second.key])
    key_first, _, _ = wait_state(cycle_id, FU, first.key)
    assert wait_state(cycle_id, FU, second.key)[1:] == (0, n_second)
    for r in mine[first.key]:  # each unit hands its return in, then its parent signs
        hand_back(cfg, r.id, tmp_path / "returns", url=db_url, out_root=tmp_path / "out")
        sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)), db_url)
    assert wait_state(cycle_id, FU, first.key) == (None, n_first, n_first)
    key_second, agreed, total = wait_state(cycle_id, FU, second.key)
    assert key_second is not None and key_second != key_first and (agreed, total) == (0, n_second)
    # The second occasion has nothing to resume for: no Prefect call, no change.
    assert resume_if_ready(cycle_id, FU, "test", occasion=second.key, wait_s=0) is False

    # The first occasion resumed (the same run: no new attempt), completed, then run again.
    start(cycle_id, FU, "run-a", None, "test", first.key)
    phase_steps.mark_phase.fn(cycle_id, FU, PhaseState.COMPLETED, "test", occasion=first.key)
    start(cycle_id, FU, "run-a2", None, "test", first.key)
    phase_steps.mark_phase.fn(cycle_id, FU, PhaseState.COMPLETED, "test", occasion=first.key)
    assert _follow_up_runs() == {first.key: ("completed", "run-a2", 2), second.key: ("waiting", "run-b", 1)}

    # `status` and the deadline watch's artifact: a row per occasion, named after it.
    with session_scope() as s:
        statuses = [st for st in phase_statuses(s, cfg, cycle_id, YEAR) if st.phase == FU]
    assert [(st.name, st.occasion, st.state, st.agreed, st.total) for st in statuses] == [
        (f"Uppföljning – {first.name}", first.key, "completed", n_first, n_first),
        (f"Uppföljning – {second.name}", second.key, "waiting", 0, n_second),
    ]


def _current_of(cycle_id: int, occasion: str) -> list[Receipt]:
    with session_scope() as s:
        return current_receipts(s, cycle_id, FU, occasion)


def test_a_follow_up_run_waiting_from_before_occasions_were_recorded_keeps_its_row(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row migrated with the occasion "" (migration 0004) is found for any occasion's signature,
    and its run, resumed, gives it its occasion instead of leaving a second row behind."""
    monkeypatch.setenv("STYRKEDJA_DATABASE_URL", sqlite_url)
    cycle_id = prepare_cycle(load_config("region"), YEAR, sqlite_url)
    with session_scope() as s:
        s.add(PhaseRun(cycle_id=cycle_id, phase=FU, state=PhaseState.WAITING, flow_run_id="old-run", attempts=1))
    occasion = f"delar-{YEAR}-08-31"
    with session_scope() as s:
        legacy = find_phase_run(s, cycle_id, FU, occasion)
    assert legacy is not None and legacy.flow_run_id == "old-run"
    phase_steps.start_phase_run.fn(cycle_id, FU, "old-run", None, "test", occasion)
    assert _follow_up_runs() == {occasion: ("running", "old-run", 1)}
    phase_steps.start_phase_run.fn(cycle_id, FU, "new-run", None, "test", f"ar-{YEAR}-12-31")
    assert set(_follow_up_runs()) == {occasion, f"ar-{YEAR}-12-31"}
