"""One process against the fan-out: a whole region-scale year, run both ways in one process.

    python -m bench.fanout [--units 500] [--workers 2] [--rounds 2]

Runs bench/year.py's whole year (six planning phases with every receipt signed, one follow-up
occasion with the returns handed in, level reports handed up and aggregated) against one Prefect
API, once with STYRKEDJA_RENDER_WORKERS=1 (every document rendered in the flow's own process) and
once with the render pool of --workers processes, alternating which goes first from round to
round. Each run has its own database and output folder. No baseline is written: the comparison is
the project against itself. Writes bench/RESULTS-fanout.md (and .json beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import scenario as scn
from bench import year as yr
from bench.render import machine

RESULTS = Path(__file__).resolve().parent / "RESULTS-fanout.md"


@dataclass
class Run:
    workers: int
    round: int
    parts: dict[str, tuple[float, float]]  # part -> (wall, cpu) of the whole part (flow, signing, returns …)
    flows: dict[str, tuple[float, float]]  # part -> (wall, cpu) of the flow runs alone
    documents: dict[str, int]
    memory: tuple[float, float]

    def total(self, flows_only: bool = False) -> tuple[float, float]:
        src = self.flows if flows_only else self.parts
        return sum(w for w, _ in src.values()), sum(c for _, c in src.values())


def one_run(
    units: int, workers: int, rnd: int, args: argparse.Namespace, work: Path, bar: Progress, console: Console
) -> Run:
    os.environ["STYRKEDJA_RENDER_WORKERS"] = str(workers)
    r = yr.run_scale(
        units, args.seed, args.year, 1, work / f"w{workers}-r{rnd}", bar, console, 1, args.sign_max, baseline=False
    )
    return Run(
        workers,
        rnd,
        {p.name: (p.total.wall, p.total.cpu) for p in r.parts},
        {p.name: (p.project["flow"].wall, p.project["flow"].cpu) for p in r.parts},
        {p.name: p.documents for p in r.parts},
        r.memory,
    )


def _best(runs: list[Run], workers: int, part: str | None, flows_only: bool) -> tuple[float, float]:
    """Lowest wall time over the rounds (and that run's CPU): the run least disturbed by the machine."""
    mine = [r for r in runs if r.workers == workers]
    if part is None:
        return min((r.total(flows_only) for r in mine), key=lambda c: c[0])
    return min(((r.flows if flows_only else r.parts)[part] for r in mine), key=lambda c: c[0])


def report(runs: list[Run], args: argparse.Namespace, load: str, elapsed: float, when: datetime) -> str:
    pool = args.workers
    parts = list(runs[0].parts)
    lines = [
        "# A region-scale year: one process against the render pool",
        "",
        f"`python -m bench.fanout --units {args.units} --workers {pool} --rounds {args.rounds} --seed {args.seed} "
        f"--year {args.year}`, run {when:%Y-%m-%d %H:%M} (Europe/Stockholm), {elapsed:.0f} s in all.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in machine().items()),
        f"- load average (1, 5, 15 min): {load}",
        "",
        "## Whole year",
        "",
        f"Best of {args.rounds} round(s) for each; *ratio* is pool / one process (below 1: the pool is faster).",
        "",
        "| what | one process wall (s) | one process CPU (s) | pool wall (s) | pool CPU (s) | ratio wall | ratio CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, flows_only in (("whole year (flows, signing, returns, aggregation)", False), ("flow runs only", True)):
        a, b = _best(runs, 1, None, flows_only), _best(runs, pool, None, flows_only)
        lines.append(
            f"| {label} | {a[0]:.1f} | {a[1]:.1f} | {b[0]:.1f} | {b[1]:.1f} | {b[0] / a[0]:.2f} | {b[1] / a[1]:.2f} |"
        )
    lines += [
        "",
        "## Flow runs per part",
        "",
        "| part | documents | one process wall (s) | pool wall (s) | ratio wall | one process CPU (s) | pool CPU (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for part in parts:
        a, b = _best(runs, 1, part, True), _best(runs, pool, part, True)
        docs = runs[0].documents[part]
        lines.append(f"| {part} | {docs:,} | {a[0]:.2f} | {b[0]:.2f} | {b[0] / a[0]:.2f} | {a[1]:.2f} | {b[1]:.2f} |")
    lines += [
        "",
        "## Every run",
        "",
        "| round | render workers | whole year wall (s) | CPU (s) | flows wall (s) | peak RSS self / children (MiB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        (wall, cpu), flows = r.total(), r.total(True)
        rss = f"{r.memory[0]:.0f} / {r.memory[1]:.0f}"
        lines.append(f"| {r.round} | {r.workers} | {wall:.1f} | {cpu:.1f} | {flows[0]:.1f} | {rss} |")
    lines += [
        "",
        "## How to read it",
        "",
        "- Both ways run the same flows on the same generated region (bench/scenario.py, seeded) against one",
        "  Prefect API in this process; only STYRKEDJA_RENDER_WORKERS differs. A batch renders in the pool",
        "  when it has at least 15 documents per worker (tasks/rendering.py); the phases' documents and the",
        "  level reports both go through it. Everything else in a phase run (the gate, one transaction for",
        "  documents, receipts and the outbox, sending e-mail, artifacts) runs in the flow's process either",
        "  way, and signing, handing in returns and aggregating are outside the flows: that part of the year",
        "  cannot get faster from the pool, so the whole-year ratio is bounded by the share of rendering.",
        "- CPU time counts the pool's workers: the pool costs CPU (starting workers, pickling the",
        "  configuration and the results) and saves wall time only where a second core is free. On this",
        "  2-core machine the Prefect API server runs on the same cores.",
        "- Beyond one machine the fan-out is more process workers on more machines (README, Operations 4",
        "  and 6): phases, years and follow-up occasions run in parallel there; one phase run stays on one",
        "  machine.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Writes bench/RESULTS-fanout.md. Keep other heavy jobs off the machine: the pool needs a free core.",
    )
    parser.add_argument("--units", type=int, default=500, help="units in the generated region (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="render pool size to compare with one (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, alternating the order (default 2)")
    parser.add_argument("--seed", type=int, default=scn.DEFAULT_SEED, help="scenario seed")
    parser.add_argument("--year", type=int, default=2028, help="plan year")
    parser.add_argument("--sign-max", type=int, default=1000, help="receipts signed one by one per part (default 1000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args(argv)
    if args.units < 9 or args.workers < 2 or args.rounds < 1:
        parser.error("--units at least 9, --workers at least 2, --rounds at least 1")

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="styrkedja-fanout-"))
    os.environ.update(
        {
            "PREFECT_HOME": str(work / "prefect-home"),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "STYRKEDJA_SECRET_KEY": yr.SECRET,
        }
    )
    console = Console(width=160)
    load_before = yr.loadavg()
    sink = yr.MailSink()
    os.environ["STYRKEDJA_SMTP_PORT"] = str(sink.port)
    runs: list[Run] = []
    try:
        from prefect.testing.utilities import prefect_test_harness

        with console.status("Starting a Prefect API (prefect_test_harness) …"):
            harness = prefect_test_harness(server_startup_timeout=120)
            harness.__enter__()
        try:
            with Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=console,
            ) as bar:  # fmt: skip
                for rnd in range(1, args.rounds + 1):
                    order = (1, args.workers) if rnd % 2 else (args.workers, 1)
                    for workers in order:
                        console.log(f"round {rnd}: {workers} render worker(s)")
                        runs.append(one_run(args.units, workers, rnd, args, work, bar, console))
        finally:
            harness.__exit__(None, None, None)
        load = f"{load_before} before, {yr.loadavg()} after"
        when = datetime.now(ZoneInfo("Europe/Stockholm"))
        text = report(runs, args, load, time.perf_counter() - started, when)
        args.out.write_text(text, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps([asdict(r) for r in runs], indent=1), encoding="utf-8")
        console.print(text)
        console.print(f"written {args.out}")
    finally:
        sink.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
