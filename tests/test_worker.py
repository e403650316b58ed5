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


@pytest.mark.slow
def test_phase_runs_on_a_process_worker(prefect_api, app_env: Path):
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
    log = app_env / "worker.log"
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", POOL, "--limit", "2"],
        cwd=app_env,
        env={**env, "STYRKEDJA_ROOT": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
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
