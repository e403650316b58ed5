"""Production shape: the deployments of prefect.yaml on a process work pool, run by a worker.

`prefect work-pool create`, `prefect deploy` and `prefect worker start` run as the operator runs
them, against the test Prefect API; the worker runs the preparation phase in a process of its own,
which writes the documents and receipts into the application database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL
from prefect.workers.process import ProcessWorker
from sqlmodel import func, select

from flows.registry import OTHER_FLOWS, PHASE_FLOWS
from models.db import output_root, session_scope
from models.tables import Document, PhaseRun, Receipt, ReceiptState

ROOT = Path(__file__).resolve().parent.parent
POOL = "styrkedja-process"
PREFECT = str(Path(sys.executable).parent / "prefect")
YEAR = 2031


def _project() -> dict:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def test_prefect_yaml_lists_every_deployment_on_the_process_pool():
    deployments = {d["name"]: d for d in _project()["deployments"]}
    flows = {f.name: f for f in [*PHASE_FLOWS.values(), *OTHER_FLOWS.values()]}
    assert set(deployments) == {*flows, "deadline-watch"}
    for name, d in deployments.items():
        assert d["work_pool"]["name"] == POOL, name
        path, func_name = d["entrypoint"].split(":")
        assert path.startswith("flows/") and path.endswith(".py"), name
        for schedule in d.get("schedules") or []:
            assert schedule["timezone"] == "Europe/Stockholm", name
        if (ROOT / path).exists():
            # Deployment name = flow name: `styrkedja run` and the resume of a phase look them up so.
            assert load_flow_from_entrypoint(str(ROOT / d["entrypoint"])).name == name
    assert [s["cron"] for s in deployments["deadline-watch"]["schedules"]] == ["0 6 * * *"]
    assert all(not deployments[f]["schedules"] for f in flows)


def _prefect(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _state(flow_run_id: UUID) -> StateType | None:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return state.type if state else None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _pool_and_worker(log: Path) -> tuple[dict[str, str], subprocess.Popen[bytes]]:
    """The process work pool and a worker polling it; the environment the `prefect` CLI runs with."""
    env = {k: v for k, v in os.environ.items() if k != "STYRKEDJA_ROOT"}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()

    # What `prefect work-pool create styrkedja-process --type process` does, without a CLI start-up.
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name=POOL, type="process", base_job_template=ProcessWorker.get_default_base_job_template()),
            overwrite=True,
        )
    # A worker as on another machine: its own process and working directory, the checkout named by
    # STYRKEDJA_ROOT, polling every second. Started first, so its start-up overlaps the deploy.
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", POOL, "--limit", "2"],
        cwd=log.parent,
        env={**env, "STYRKEDJA_ROOT": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return env, worker


@pytest.mark.slow
def test_phase_runs_on_a_process_worker(prefect_api, app_env: Path):
    log = app_env / "worker.log"
    env, worker = _pool_and_worker(log)
    try:
        # The real file, one deployment of it: what `prefect deploy --all` does for each.
        _prefect(["--no-prompt", "deploy", "--name", "preparation"], env)
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name("preparation/preparation")
        assert dep.work_pool_name == POOL and dep.entrypoint == "flows/preparation.py:preparation"
        # The checkout's path is the worker's business, resolved when a run starts there.
        assert dep.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $STYRKEDJA_ROOT }}"}}
        ]

        fr = run_deployment(
            "preparation/preparation", parameters={"year": YEAR, "config": "region", "wait": False}, timeout=0
        )
        deadline = time.monotonic() + 90
        while _state(fr.id) not in {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED}:
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text(errors="replace")[-4000:]
            time.sleep(0.5)
        assert _state(fr.id) == StateType.COMPLETED, log.read_text(errors="replace")[-4000:]
    finally:
        _stop(worker)
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(fr.id).work_pool_name == POOL

    with session_scope() as s:
        receipts = list(s.exec(select(Receipt).where(Receipt.phase == "preparation")))
        docs = list(s.exec(select(Document).where(Document.phase == "preparation")))
        phase_run = s.exec(select(PhaseRun).where(PhaseRun.phase == "preparation")).one()
        n_docs = s.exec(select(func.count()).select_from(Document)).one()
    assert receipts and all(r.state == ReceiptState.ISSUED for r in receipts)
    assert docs and n_docs == len(docs) and all((output_root() / d.relpath).is_file() for d in docs)
    assert {r.document_id for r in receipts} <= {d.id for d in docs}
    # wait=False: recorded as waiting for its receipts, by the worker's flow run
    assert phase_run.state == "waiting" and phase_run.flow_run_id == str(fr.id)


def _until(predicate, timeout: float, what: str, worker: subprocess.Popen[bytes], log: Path):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline or worker.poll() is not None:
            raise AssertionError(f"timed out waiting for {what}\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)
    return value


@pytest.mark.slow
def test_a_waiting_phase_holds_no_worker_and_resumes_on_the_pool(prefect_api, app_env: Path):
    """wait=True on the pool: the run suspends, its flow process exits (a phase waiting for weeks
    holds no worker slot), and the last signature puts the same run back on the pool to complete."""
    from prefect_server import children

    from config.loader import load_config
    from tasks.receipts import SignRequest, code_for, sign
    from tasks.waiting import resume_if_ready

    log = app_env / "worker.log"
    env, worker = _pool_and_worker(log)
    try:
        _prefect(["--no-prompt", "deploy", "--name", "preparation"], env)
        params = {"year": YEAR + 1, "config": "region"}  # a year of its own among the deployment's runs
        fr = run_deployment("preparation/preparation", parameters=params, timeout=0)
        _until(lambda: _state(fr.id) == StateType.PAUSED, 120, "the phase to suspend", worker, log)
        _until(lambda: not children(worker.pid), 30, "the suspended run's flow process to exit", worker, log)
        assert worker.poll() is None  # the worker itself goes on polling

        cfg = load_config("region")
        with session_scope() as s:
            receipts = list(s.exec(select(Receipt).where(Receipt.phase == "preparation")))
            phase_run = s.exec(select(PhaseRun).where(PhaseRun.phase == "preparation")).one()
        assert receipts and all(r.state == ReceiptState.ISSUED for r in receipts)
        assert phase_run.state == "waiting" and phase_run.flow_run_id == str(fr.id)
        for n, r in enumerate(receipts, start=1):
            sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)))
            assert resume_if_ready(r.cycle_id, "preparation", "test", wait_s=0) == (n == len(receipts))

        _until(
            lambda: _state(fr.id) in {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED},
            120,
            "the resumed phase to finish",
            worker,
            log,
        )
        assert _state(fr.id) == StateType.COMPLETED, log.read_text(errors="replace")[-4000:]
    finally:
        _stop(worker)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(fr.id)
        dep = client.read_deployment_by_name("preparation/preparation")
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
        history = [st.name for st in client.read_flow_run_states(fr.id)]
    assert run.work_pool_name == POOL
    # suspended, then picked up from the pool a second time: two flow processes, one flow run
    assert "Suspended" in history and history.count("Running") == 2 and history[-1] == "Completed", history
    assert [r.id for r in runs if r.parameters.get("year") == YEAR + 1] == [fr.id]  # the same run, no new one
    with session_scope() as s:
        phase_run = s.exec(select(PhaseRun).where(PhaseRun.phase == "preparation")).one()
        assert s.exec(select(func.count()).select_from(Receipt)).one() == len(receipts)
    assert phase_run.state == "completed" and not phase_run.overridden and phase_run.flow_run_id == str(fr.id)
