"""The embedded default: a local Prefect server (SQLite under a project-local PREFECT_HOME) and a
process serving every deployment, both started on demand and left running for the UI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from models.db import PROJECT_ROOT, home

DEFAULT_PORT = 4200


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME", PROJECT_ROOT / ".prefect-home"))


def api_url() -> str:
    return os.environ.get("PREFECT_API_URL", f"http://127.0.0.1:{DEFAULT_PORT}/api")


def ui_url() -> str:
    return api_url().removesuffix("/api")


def child_env() -> dict[str, str]:
    """What every process we start must agree on: where Prefect lives, no telemetry."""
    env = dict(os.environ)
    env.update(
        {
            "PREFECT_HOME": str(prefect_home()),
            "PREFECT_API_URL": api_url(),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # Pick up scheduled and resumed runs quickly: phases wait on people, not on polling.
            "PREFECT_RUNNER_POLL_FREQUENCY": env.get("PREFECT_RUNNER_POLL_FREQUENCY", "2"),
            "STYRKEDJA_HOME": str(home()),
        }
    )
    return env


def is_healthy(url: str | None = None, timeout: float = 1.0, path: str = "/health") -> bool:
    try:
        return httpx.get(f"{url or api_url()}{path}", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _pidfile(name: str) -> Path:
    return home() / f"{name}.pid"


def _alive(name: str) -> int | None:
    try:
        pid = int(_pidfile(name).read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _spawn(name: str, args: list[str]) -> int:
    home().mkdir(parents=True, exist_ok=True)
    log = open(home() / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child, which outlives us
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=child_env(),
        cwd=PROJECT_ROOT,
        start_new_session=True,
    )
    _pidfile(name).write_text(str(proc.pid))
    return proc.pid


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def ensure_server(timeout: float = 120.0) -> bool:
    """Start the local server unless one answers; True if this call started it."""
    if is_healthy():
        return False
    prefect_home().mkdir(parents=True, exist_ok=True)
    port = api_url().rsplit(":", 1)[-1].split("/")[0]
    _spawn("prefect-server", [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", port])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_healthy():
            return True
        if _alive("prefect-server") is None:
            raise RuntimeError(f"the Prefect server did not start; see {home() / 'prefect-server.log'}")
        time.sleep(0.5)
    raise RuntimeError(f"the Prefect server did not answer within {timeout:.0f} s; see {home() / 'prefect-server.log'}")


def ensure_serving(timeout: float = 120.0) -> bool:
    """Start `styrkedja serve` unless it runs; wait until its deployments are registered."""
    started = False
    if _alive("serve") is None:
        _spawn("serve", [_bin("styrkedja"), "serve"])
        started = True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if deployments_registered():
            return started
        if _alive("serve") is None:
            raise RuntimeError(f"serving the deployments failed; see {home() / 'serve.log'}")
        time.sleep(0.5)
    raise RuntimeError(f"the deployments were not registered within {timeout:.0f} s; see {home() / 'serve.log'}")


DEFAULT_PORTAL_PORT = 8400


def portal_port() -> int:
    return int(os.environ.get("STYRKEDJA_PORTAL_PORT", str(DEFAULT_PORTAL_PORT)))


def ensure_portal(config: str | None = None, timeout: float = 60.0) -> str:
    """Start `styrkedja portal` unless one answers on its port; its address. The address goes into
    STYRKEDJA_PORTAL_URL before anything sends a message, so every link points where it really runs."""
    url = f"http://127.0.0.1:{portal_port()}"
    os.environ["STYRKEDJA_PORTAL_URL"] = url
    if is_healthy(url, path="/halsa"):
        return url
    args = [_bin("styrkedja"), "portal", "--port", str(portal_port())]
    _spawn("portal", [*args, "--config", config] if config else args)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_healthy(url, path="/halsa"):
            return url
        if _alive("portal") is None:
            raise RuntimeError(f"the portal did not start; see {home() / 'portal.log'}")
        time.sleep(0.3)
    raise RuntimeError(f"the portal did not answer within {timeout:.0f} s; see {home() / 'portal.log'}")


def deployments_registered() -> bool:
    try:
        r = httpx.get(f"{api_url()}/deployments/name/sign-receipt/sign-receipt", timeout=2.0)
        return r.status_code == 200
    except httpx.HTTPError:
        return False


def stop_all() -> list[str]:
    """Stop what ensure_server/ensure_serving started; returns what was stopped."""
    stopped = []
    for name in ("portal", "serve", "prefect-server"):
        pid = _alive(name)
        if pid is None:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if _alive(name) is None:
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
        _pidfile(name).unlink(missing_ok=True)
        stopped.append(name)
    return stopped
