"""A Prefect server and a serving process of the tests' own, for the tests that stop, kill and
restart them: `prefect server start` with its own PREFECT_HOME (SQLite) on a free port, and
`styrkedja serve` against it. Each runs in its own session so that a signal reaches all it started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.schemas.objects import StateType

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


class PrefectServer:
    """`prefect server start` in its own session; stop() is SIGTERM, like a service manager."""

    def __init__(self, home: Path, log: Path) -> None:
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
        }
        self.env.pop("PREFECT_API_URL", None)
        self.env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        prefect = Path(sys.executable).parent / "prefect"
        self.proc = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if healthy(self.api):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        tail = self.log.read_text(errors="replace")[-3000:]
        raise AssertionError(f"the Prefect server did not start (exit {self.proc.poll()})\n{tail}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        stop(self.proc)
        code, self.proc = self.proc.returncode, None
        return code


def start_serving(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the process and everything it started; SIGKILL after 20 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def children(pid: int) -> list[int]:
    """Processes whose parent is pid (the flow runs a serving process started)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def run_state(flow_run_id: UUID) -> StateType | None:
    with get_client(sync_client=True) as client:
        st = client.read_flow_run(flow_run_id).state
    return st.type if st else None


def wait_for(predicate, timeout: float, what: str, log: Path, run_id: UUID | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    state = ""
    if run_id is not None:
        with get_client(sync_client=True) as client:
            st = client.read_flow_run(run_id).state
        state = f" (flow run state: {st.type.value if st else None} {st.name if st else ''} {st.message if st else ''})"
    raise AssertionError(f"timed out waiting for {what}{state}\n--- serve log ---\n{tail}")


def deployed() -> bool:
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name("sign-receipt/sign-receipt")
            return True
        except Exception:
            return False


def drain_events(timeout: float = 15.0) -> None:
    """Deliver the events this process queued (in-process flow runs emit them) while the server still
    answers; a server stopped first leaves them queued, and the interpreter waits for them at exit."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=timeout)


@contextlib.contextmanager
def own_prefect_api(folder: Path) -> Iterator[PrefectServer]:
    """A Prefect server of the caller's own under `folder`, the API this process talks to while
    the block runs; its queued events are sent before it stops (else pytest hangs at exit)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    srv = PrefectServer(folder / "prefect-home", folder / "prefect-server.log")
    srv.start(timeout=90)
    try:
        with temporary_settings(updates={PREFECT_API_URL: srv.api}):
            yield srv
    finally:
        drain_events()
        srv.stop()
