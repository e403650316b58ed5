"""Portal benchmark: page and signing times at 50 concurrent users against a local uvicorn.

    python -m bench.portal [--users 50] [--pages 10] [--workers 2] [--database URL]

A plan year of the sample region with the last two follow-up occasions distributed (82 receipts;
the first `users` of them with their returns in, as `styrkedja submit` leaves them), in a
temporary SQLite database (or the PostgreSQL at --database, in a schema of its own, dropped
afterwards). `styrkedja portal`'s server (uvicorn, `--workers`) runs in a child process on a free
port. Each user is a thread with its own HTTP client and its own e-mail link: it opens the link
(the landing page), reads its handoff page `pages` times, then signs, all users at once (a barrier
before each step). Times are per request, measured in the client (time.perf_counter around
the HTTP call), so they include the network stack and the thread's wait for the GIL on this side.
No timing is asserted. Results go to stdout and to bench/RESULTS-portal.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
YEAR = 2028
HEADER = (
    "| when | database | workers | users | think | open p50/p95 ms | page p50/p95 ms | sign p50/p95 ms "
    "| requests | wall s | load |"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k] * 1000


def _prepare(url: str, out: Path, users: int) -> list[str]:
    """The year, its follow-up receipts with returns in; one signatory's link per receipt."""
    from sqlmodel import select

    from config.loader import load_config
    from models.db import session_scope
    from models.migrate import upgrade
    from models.tables import Receipt
    from tasks.cycle import prepare_cycle
    from tasks.distribution import distribute
    from tasks.followup_calendar import occasions
    from tasks.handoffs import handoffs_for_phase
    from tasks.portal_tokens import portal_link
    from tasks.receipts import acknowledge

    cfg = load_config("region")
    upgrade(url)
    cycle_id = prepare_cycle(cfg, YEAR, url)
    for occ in occasions(cfg, YEAR)[-2:]:
        distribute(
            cfg, cycle_id, "follow_up", handoffs_for_phase(cfg, YEAR, "follow_up", occ), out, actor="bench", url=url
        )
    with session_scope(url) as s:
        rows = list(s.exec(select(Receipt).where(Receipt.phase == "follow_up").order_by(Receipt.id)))[:users]
        for r in rows:
            acknowledge(s, r, by="bench")
    if len(rows) < users:
        raise SystemExit(f"only {len(rows)} receipts for {users} users")
    return [portal_link(cfg, r, cfg.unit(r.receiver_unit).signatories[0].id) for r in rows]


def run(users: int, pages: int, workers: int, database: str | None, think: float = 0.0) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="styrkedja-bench-portal-"))
    schema = None
    if database:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(database.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{database}?options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{home / 'app.db'}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        STYRKEDJA_HOME=str(home),
        STYRKEDJA_DATABASE_URL=url,
        STYRKEDJA_OUTPUT=str(home / "out"),
        STYRKEDJA_PORTAL_URL=base,
        PREFECT_API_URL="http://127.0.0.1:9/api",  # no Prefect server: signing resumes nothing
        DO_NOT_TRACK="1",
    )
    os.environ.update(env)
    server = None
    try:
        links = _prepare(url, home / "out", users)
        server = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "portal", "--port", str(port), "--workers", str(workers)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/halsa", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the portal did not start")
            time.sleep(0.2)
        return (
            _load(links, pages, base, think)
            | {"think": think}
            | {
                "users": users,
                "pages": pages,
                "workers": workers,
                "db": "PostgreSQL" if database else "SQLite",
            }
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(20)
        if schema:
            import psycopg

            from models.db import get_engine

            get_engine(url).dispose()
            with psycopg.connect(database.replace("+psycopg", ""), autocommit=True) as conn:  # type: ignore[union-attr]
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        shutil.rmtree(home, ignore_errors=True)


def _load(links: list[str], pages: int, base: str, think: float) -> dict[str, object]:
    from portal.client import PortalClient

    barrier = threading.Barrier(len(links))
    page_times: list[float] = []
    sign_times: list[float] = []
    open_times: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def pause() -> None:
        # Bursts: every user at the same instant; or users who read for a while (0 to 2 × think s).
        if think > 0:
            time.sleep(random.uniform(0, 2 * think))
        else:
            barrier.wait()

    def user(link: str) -> None:
        try:
            # The user's browser exists before it opens the link: an httpx client costs tens of
            # milliseconds to make (its TLS context), which is the client's, not the portal's.
            http = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
            barrier.wait()
            pause()
            t = time.perf_counter()
            client = PortalClient.open(link, client=http)  # the landing page and the handoff page
            with lock:
                open_times.append(time.perf_counter() - t)
            with client:
                for _ in range(pages):
                    pause()
                    t = time.perf_counter()
                    r = client.http.get(client.path)
                    dt = time.perf_counter() - t
                    assert r.status_code == 200
                    with lock:
                        page_times.append(dt)
                pause()
                t = time.perf_counter()
                r = client.http.post(
                    f"{client.path}/godkann",
                    data={"csrf": client._csrf(), "kommentar": "Godkänt"},
                    follow_redirects=False,
                )
                dt = time.perf_counter() - t
                assert r.status_code == 303, r.status_code
                with lock:
                    sign_times.append(dt)
        except BaseException as exc:  # noqa: BLE001 - counted and reported
            barrier.abort()
            errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(link,)) for link in links]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} users failed: {errors[0]!r}")
    return {
        "open_p50": _pct(open_times, 50),
        "open_p95": _pct(open_times, 95),
        "page_p50": _pct(page_times, 50),
        "page_p95": _pct(page_times, 95),
        "page_mean": statistics.mean(page_times) * 1000,
        "sign_p50": _pct(sign_times, 50),
        "sign_p95": _pct(sign_times, 95),
        "requests": len(page_times) + len(sign_times) + 2 * len(open_times),
        "wall": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--think", type=float, default=0.0, help="mean seconds a user reads between requests; 0: all at once"
    )
    ap.add_argument("--database", help="a PostgreSQL URL (postgresql+psycopg://…); default: a SQLite file")
    ap.add_argument("--write", action="store_true", help="append the figures to bench/RESULTS-portal.md")
    args = ap.parse_args()
    res = run(args.users, args.pages, args.workers, args.database, args.think)
    load = os.getloadavg()[0]
    line = (
        f"| {datetime.now():%Y-%m-%d %H:%M} | {res['db']} | {res['workers']} | {res['users']} | "
        f"{'all at once' if not res['think'] else str(res['think']) + ' s'} | "
        f"{res['open_p50']:.0f} / {res['open_p95']:.0f} | {res['page_p50']:.0f} / {res['page_p95']:.0f} | "
        f"{res['sign_p50']:.0f} / {res['sign_p95']:.0f} | {res['requests']} | {res['wall']:.1f} | {load:.1f} |"
    )
    print(f"{platform.node()} ({os.cpu_count()} cores, load average {load:.1f}), python {platform.python_version()}")
    print(HEADER)
    print(line)
    if args.write:
        with (ROOT / "bench" / "RESULTS-portal.md").open("a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
