"""Rendering benchmark: a whole region's document set through the project, against a plain baseline.

    python -m bench.render [--scale 10] [--seed 2028] [--year 2028] [--repeat 1] [--keep]

The organisation is config/region.yaml made bigger, deterministically: every administration is
cloned `scale - 1` times with its units (a seeded generator names the clones and thins their
units a little), so the levels below the committees grow about `scale` times. The document set
is every document of every phase for one plan year plus one follow-up occasion (the interim
report per 31 August), all in version 1.

Measured in one process, one after the other, each writing to its own temporary folder:

1. project, 1 worker: `tasks.rendering.render_batch(..., workers=1)`
2. project, 2 workers: the same with a process pool of two
3. content: what the documents say (Jinja2 text, tables, sheet specs) via `catalog.expected`,
   built once for the baseline; timed on its own because the project's figures include it
4. baseline: a plain python-docx/openpyxl loop writing the same content — the same headings,
   paragraphs, tables, fill-in headings, sheets, cells and formulas — with neither the project's
   engine (base document, styles, raw XML writer) nor its finish (named styles, validation,
   protection, conditional formatting, print setup, cleaning)

Wall time is `time.perf_counter`; CPU time is this process plus its children, including the pool
workers (reaped by the forkserver, so read from its /proc entry). No timing is asserted anywhere.
Results go to stdout and to bench/RESULTS-render.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from docx import Document as DocxDocument
from openpyxl import Workbook
from openpyxl.utils import get_column_letter

from config.loader import check_references, load_config
from config.schema import OrgConfig
from tasks.documents import catalog
from tasks.documents.catalog import DocRequest, Expected
from tasks.documents.model import Fixed, RiskMatrixSpec, SheetSpec
from tasks.followup_calendar import occasions
from tasks.rendering import render_batch

RESULTS = Path(__file__).resolve().parent / "RESULTS-render.md"
PLACES = (
    "Norrfors", "Åsele", "Vilhelmina", "Dorotea", "Storuman", "Sorsele", "Malå", "Lycksele", "Vindeln",
    "Bjurholm", "Nordmaling", "Robertsfors", "Skellefteå", "Norsjö", "Vännäs", "Holmsund", "Hörnefors",
    "Burträsk", "Byske", "Jörn", "Boliden", "Kåge", "Ursviken", "Tärnaby", "Hemavan", "Örträsk",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# A bigger organisation, deterministically
# ---------------------------------------------------------------------------------------------


def scale_organisation(cfg: OrgConfig, scale: int, seed: int) -> OrgConfig:
    """The configuration with every administration cloned `scale - 1` times, units included."""
    rng = random.Random(seed)
    data = cfg.model_dump(mode="python")
    admin_level = cfg.levels[3].id
    units = list(data["units"])
    clones: list[dict[str, Any]] = []
    for admin in [u for u in units if u["level"] == admin_level]:
        children = [u for u in units if u["parent"] == admin["id"]]
        for k in range(2, scale + 1):
            place = PLACES[rng.randrange(len(PLACES))]
            clones.append(_clone(admin, f"{admin['id']}_{k}", f"{admin['name']} {place} {k}", admin["parent"]))
            # Most clones keep all units; some lose one or two, as real administrations differ.
            keep = max(1, len(children) - rng.choice((0, 0, 0, 1, 2)))
            for child in children[:keep]:
                clones.append(_clone(child, f"{child['id']}_{k}", f"{child['name']} {place} {k}", f"{admin['id']}_{k}"))
    data["units"] = units + clones
    big = OrgConfig.model_validate(data)
    check_references(big, "<bench.render>")
    return big


def _clone(unit: dict[str, Any], new_id: str, name: str, parent: str | None) -> dict[str, Any]:
    tag = new_id.lower().replace("-", "_")
    return unit | {
        "id": new_id,
        "name": name[:200],
        "parent": parent,
        "signatories": [s | {"email": s["email"].replace("@", f"+{tag}@")} for s in unit["signatories"]],
        "contacts": [c | {"address": f"{tag}.{c['address']}"} for c in unit["contacts"]],
    }


def document_set(cfg: OrgConfig, year: int) -> list[DocRequest]:
    """Every document of every phase, plus the interim follow-up per 31 August."""
    interim = next((o for o in occasions(cfg, year) if o.key.startswith("delar") and "-08-" in o.key), None)
    interim = interim or occasions(cfg, year)[0]
    out: list[DocRequest] = []
    for phase in catalog.phase_ids():
        occasion = interim.key if phase == "follow_up" else None
        out += catalog.documents_for_phase(cfg, year, phase, occasion=occasion)
    return out


# ---------------------------------------------------------------------------------------------
# The baseline: the same content, written the plain way
# ---------------------------------------------------------------------------------------------


def baseline_docx(path: Path, exp: Expected) -> None:
    meta = exp.meta
    doc = DocxDocument()  # python-docx's own default template
    doc.add_paragraph(meta.organisation, style="Subtitle")
    doc.add_paragraph(meta.title, style="Title")
    doc.add_paragraph(meta.cycle, style="Subtitle")
    cover = (
        ("Organisation", meta.organisation),
        ("Planeringscykel", meta.cycle),
        ("Fas", meta.phase_name),
        ("Mottagare", meta.recipient),
        ("Version", str(meta.version)),
        ("Datum", meta.created.isoformat()),
        ("Dokument-id", meta.doc_key),
    )
    _table(doc, ("", ""), cover, header=False)
    doc.add_page_break()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            _paragraph(doc, " ".join(pending))
            pending.clear()

    for raw in (exp.markup or "").split("\n"):
        line = raw.strip()
        if not line:
            flush()
        elif line == "[[toc]]":
            flush()
            doc.add_paragraph("Innehåll", style="TOC Heading")
            doc.add_paragraph("Högerklicka och välj Uppdatera fält för att visa innehållsförteckningen")
        elif line == "[[pagebreak]]":
            flush()
            doc.add_page_break()
        elif line.startswith("[[table:"):
            flush()
            table = exp.tables[line[8:-2]]
            _table(doc, table.headers, table.rows)
            doc.add_paragraph()
        elif line.startswith("[[field:"):
            flush()
            parts = line[8:-2].split("|")
            doc.add_heading(parts[1], level=2)
            if len(parts) > 2 and parts[2]:
                doc.add_paragraph().add_run(parts[2]).italic = True
            doc.add_paragraph()
        elif line.startswith(("# ", "## ", "### ")):
            flush()
            level = len(line) - len(line.lstrip("#"))
            doc.add_heading(line[level:].strip(), level=level)
        elif line.startswith("- "):
            flush()
            _paragraph(doc, line[2:], "List Bullet 2" if raw.startswith((" ", "\t")) else "List Bullet")
        elif line.startswith("> "):
            flush()
            doc.add_paragraph().add_run(line[2:]).italic = True
        else:
            pending.append(line)
    flush()
    section = doc.sections[0]
    section.header.paragraphs[0].text = f"{meta.organisation}\t{meta.title}"
    section.footer.paragraphs[0].text = f"{meta.cycle} · Version {meta.version}"
    cp = doc.core_properties
    cp.title, cp.identifier, cp.category, cp.version = meta.title, meta.doc_key, meta.kind, str(meta.version)
    doc.save(path)


def _paragraph(doc: Any, text: str, style: str | None = None) -> None:
    p = doc.add_paragraph(style=style)
    for i, part in enumerate(text.split("**")):
        if part:
            p.add_run(part).bold = i % 2 == 1


def _table(doc: Any, headers: tuple[str, ...], rows: Any, *, header: bool = True) -> None:
    t = doc.add_table(rows=0, cols=len(headers), style="Table Grid")
    for values in ((headers,) if header else ()) + tuple(rows):
        cells = t.add_row().cells
        for cell, value in zip(cells, values, strict=True):
            cell.text = "" if value is None else str(value)


def baseline_xlsx(path: Path, exp: Expected) -> None:
    meta = exp.meta
    wb = Workbook()
    ws = wb.active
    ws.title = "Instruktioner"
    ws.append([meta.title])
    ws.append([meta.cycle])
    ws.append([])
    for row in (
        ("Organisation", meta.organisation),
        ("Mottagare", meta.recipient),
        ("Fas", meta.phase_name),
        ("Version", meta.version),
        ("Datum", meta.created),
        ("Dokument-id", meta.doc_key),
    ):
        ws.append(list(row))
    ws.append([])
    for line in exp.instructions.split("\n"):
        ws.append([line.lstrip("#").strip()] if line.startswith("#") else [None, line.strip() or None])
    layout: dict[str, tuple[str, dict[str, str], int, int]] = {}
    for spec in exp.sheets:
        if isinstance(spec, SheetSpec):
            layout[spec.name] = _baseline_sheet(wb, spec)
        else:
            _baseline_matrix(wb, spec, layout)
    meta_ws = wb.create_sheet("_styrkedja")
    for key, value in (("doc_key", meta.doc_key), ("kind", meta.kind), ("unit", meta.unit_id)):
        meta_ws.append([key, value])
    meta_ws.sheet_state = "hidden"
    wb.properties.title, wb.properties.identifier = meta.title, meta.doc_key
    wb.save(path)


def _baseline_sheet(wb: Workbook, spec: SheetSpec) -> tuple[str, dict[str, str], int, int]:
    ws = wb.create_sheet(spec.name[:31].replace("/", "_"))
    cols = spec.columns
    letters = [get_column_letter(i + 1) for i in range(len(cols))]
    keys = {c.key: letters[i] for i, c in enumerate(cols) if c.key}
    ws.append([c.header for c in cols])
    n_rows = len(spec.rows) + spec.blank_rows
    first, last = 2, 1 + n_rows
    base = {f"{k}_col": v for k, v in keys.items()} | {"first": str(first), "last": str(last)}
    for offset in range(n_rows):
        r = first + offset
        values = spec.rows[offset] if offset < len(spec.rows) else (None,) * len(cols)
        refs = base | {"row": str(r)} | {k: f"{v}{r}" for k, v in keys.items()}
        out: list[Any] = []
        for col, value in zip(cols, values, strict=True):
            if isinstance(value, Fixed):
                out.append(value.value)
            elif col.kind == "formula" and col.formula and value is None:
                out.append(col.formula.format_map(refs))
            else:
                out.append(value)
        ws.append(out)
    if spec.totals and n_rows:
        ws.append(
            ["Summa"]
            + [
                f"=SUM({letters[i]}{first}:{letters[i]}{last})"
                if (c.total if c.total is not None else (c.result if c.kind == "formula" else c.kind) == "sek")
                else None
                for i, c in enumerate(cols)
            ][1:]
        )
    return ws.title, keys, first, last


def _baseline_matrix(wb: Workbook, spec: RiskMatrixSpec, layout: dict[str, tuple[str, dict[str, str], int, int]]):
    title, keys, first, last = layout[spec.source_sheet]
    ws = wb.create_sheet(spec.name)
    p, c = keys[spec.prob_column], keys[spec.cons_column]
    ws.append(["Riskmatris – antal risker per sannolikhet och konsekvens"])
    for prob in range(4, 0, -1):
        ws.append(
            [None, prob]
            + [
                f"=COUNTIFS('{title}'!${p}${first}:${p}${last},{prob},'{title}'!${c}${first}:${c}${last},{cons})"
                for cons in range(1, 5)
            ]
        )


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    name: str
    docs: int
    wall: float
    cpu: float
    megabytes: float

    @property
    def rate(self) -> float:
        return self.docs / self.wall if self.wall else 0.0


def _proc_cpu(pid: int) -> float:
    """utime + stime + cutime + cstime of a live process, in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def cpu_seconds() -> float:
    """CPU time of this process and every process it started, finished or not. The pool's
    workers are children of the forkserver, which reaps them: their time is in its cutime."""
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return own + sum(_proc_cpu(pid) for pid in _children(os.getpid()))


def measure(name: str, run: Callable[[Path], int], work: Path) -> Measure:
    folder = work / name.replace(" ", "_").replace(",", "")
    folder.mkdir(parents=True)
    gc.collect()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    docs = run(folder)
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return Measure(name, docs, wall, cpu, size / 1e6)


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": f"{usable} (os.cpu_count {os.cpu_count()})",
        "CPU": model,
        "memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "python-docx / openpyxl / lxml": " / ".join(metadata.version(p) for p in ("python-docx", "openpyxl", "lxml")),
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run(scale: int, seed: int, year: int, repeat: int, keep: bool) -> str:
    load_before = loadavg()
    cfg = scale_organisation(load_config("region"), scale, seed)
    requests = document_set(cfg, year)
    n_docx = sum(catalog.KINDS[r.kind].format == "docx" for r in requests)
    work = Path(tempfile.mkdtemp(prefix="styrkedja-bench-"))
    print(f"{len(cfg.units)} units, {len(requests)} documents ({n_docx} Word, {len(requests) - n_docx} Excel)")
    try:
        # Warm-up (imports, the per-year data, the base document and templates): one of each kind.
        first_of_kind = list({r.kind: r for r in requests}.values())
        render_batch(cfg, year, first_of_kind, work / "warmup", workers=1)

        results: list[Measure] = []
        contents: list[tuple[DocRequest, Expected]] = []

        def project(workers: int) -> Callable[[Path], int]:
            return lambda folder: len(render_batch(cfg, year, requests, folder, workers=workers))

        def content(_: Path) -> int:
            contents.clear()
            contents.extend((r, catalog.expected(cfg, year, r)) for r in requests)
            return len(contents)

        def baseline(folder: Path) -> int:
            for r, exp in contents:
                target = folder / catalog.file_name(r, exp.format)
                (baseline_docx if exp.format == "docx" else baseline_xlsx)(target, exp)
            return len(contents)

        for i in range(repeat):
            tag = f" #{i + 1}" if repeat > 1 else ""
            for name, fn in (
                ("project, 1 worker", project(1)),
                ("project, 2 workers", project(2)),
                ("content only (Jinja2, tables, sheet specs)", content),
                ("baseline (plain python-docx/openpyxl)", baseline),
            ):
                m = measure(name + tag, fn, work / f"run{i}")
                results.append(m)
                print(f"  {m.name:48} {m.wall:7.2f} s wall {m.cpu:7.2f} s CPU {m.rate:7.1f} docs/s")
        load = f"{load_before} before, {loadavg()} after"
        report = _report(cfg, requests, n_docx, results, scale, seed, year, repeat, load)
        RESULTS.write_text(report, encoding="utf-8")
        print(f"written {RESULTS}")
        return report
    finally:
        if keep:
            print(f"documents kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _best(results: list[Measure], prefix: str) -> Measure:
    return min((m for m in results if m.name.startswith(prefix)), key=lambda m: m.wall)


def _report(
    cfg: OrgConfig,
    requests: list[DocRequest],
    n_docx: int,
    results: list[Measure],
    scale: int,
    seed: int,
    year: int,
    repeat: int,
    load: str,
) -> str:
    now = datetime.now(ZoneInfo("Europe/Stockholm"))
    levels = {lv.id: sum(u.level == lv.id for u in cfg.units) for lv in cfg.levels}
    base = _best(results, "baseline")
    content = _best(results, "content")
    p1, p2 = _best(results, "project, 1"), _best(results, "project, 2")
    lines = [
        "# Rendering benchmark",
        "",
        f"`python -m bench.render --scale {scale} --seed {seed} --year {year} --repeat {repeat}`, "
        f"run {now:%Y-%m-%d %H:%M} (Europe/Stockholm).",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in machine().items()),
        f"- load average (1, 5, 15 min): {load}; other work on the machine slows wall time, not CPU time",
        "",
        "## Workload",
        "",
        f"config/region.yaml with every administration cloned {scale - 1} times (seed {seed}): "
        f"{len(cfg.units)} units ({', '.join(f'{n} {k}' for k, n in levels.items())}). "
        f"Every document of every phase for plan year {year} and one follow-up occasion: "
        f"**{len(requests)} documents**, {n_docx} Word and {len(requests) - n_docx} Excel.",
        "",
        "## Figures",
        "",
        "| run | wall (s) | CPU (s) | docs/s | CPU ms/doc | output (MB) |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {m.name} | {m.wall:.2f} | {m.cpu:.2f} | {m.rate:.1f} | {1000 * m.cpu / max(m.docs, 1):.1f} "
            f"| {m.megabytes:.1f} |"
            for m in results
        ),
        "",
        "Ratios, project / baseline (best run of each; below 1 means the project is faster):",
        "",
        "| | wall | CPU |",
        "|---|---:|---:|",
        f"| project 1 worker / baseline (writing only) | {p1.wall / base.wall:.2f} | {p1.cpu / base.cpu:.2f} |",
        f"| project 2 workers / baseline (writing only) | {p2.wall / base.wall:.2f} | {p2.cpu / base.cpu:.2f} |",
        f"| project 1 worker / (content + baseline) | {p1.wall / (content.wall + base.wall):.2f} "
        f"| {p1.cpu / (content.cpu + base.cpu):.2f} |",
        f"| project 2 workers / (content + baseline) | {p2.wall / (content.wall + base.wall):.2f} "
        f"| {p2.cpu / (content.cpu + base.cpu):.2f} |",
        f"| project 2 workers / project 1 worker | {p2.wall / p1.wall:.2f} | {p2.cpu / p1.cpu:.2f} |",
        "",
        "## How to read it",
        "",
        "- The project's runs include building the content (Jinja2 text, tables, sheet specs) and the "
        "content hash; the baseline is given the content ready-made, so *content + baseline* is the fair "
        "total, and *writing only* isolates the document engines.",
        "- The baseline writes the same headings, paragraphs, tables, fill-in headings, sheets, cells and "
        "formulas, but none of what makes the documents usable: real styles, the shaded answer fields with "
        "bookmarks, named cell styles, data validation, sheet protection, conditional formatting, print "
        "setup, cleaning of text. It starts from python-docx's default template (styles.xml of ~350 kB), "
        "which the project trims once per process.",
        "- 2 workers include starting the process pool (forkserver, imports in each worker); CPU time "
        "counts the workers. Each run writes to its own fresh folder.",
        "- The project writes every file to a temporary name, fsyncs it and renames it (a crash never "
        "leaves half a document); the baseline just saves. Wall time above CPU time is that waiting for "
        "the disk, and other processes competing for the CPUs (see the load average).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=10, help="administrations (with their units) ×N")
    parser.add_argument("--seed", type=int, default=2028, help="seed for the generated organisation")
    parser.add_argument("--year", type=int, default=2028, help="plan year")
    parser.add_argument("--repeat", type=int, default=1, help="repeat every run N times (best is compared)")
    parser.add_argument("--keep", action="store_true", help="keep the rendered documents")
    args = parser.parse_args(argv)
    if args.scale < 1 or args.repeat < 1:
        parser.error("--scale and --repeat must be at least 1")
    run(args.scale, args.seed, args.year, args.repeat, args.keep)


if __name__ == "__main__":
    sys.exit(main())
