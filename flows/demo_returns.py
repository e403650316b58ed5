"""The demonstration's unit secretaries: they fill in the follow-up templates they received and hand
them back through the ordinary return path (`tasks.returns.submit_file`), so the level reports of
the demonstration year aggregate real, validated returns.

Figures add up by construction: units report budget, outcome so far and forecast per row; a few
forecast beyond the deviation threshold; some units raise an item to the next level, and some
levels act on what was raised to them. Levels above the units report no figures of their own (zero
rows): their report is the sum of the level below.
"""

from __future__ import annotations

import html
import multiprocessing
import re
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from docx import Document as open_docx
from docx.oxml.ns import qn
from sqlmodel import select

from config.loader import load_config
from models.db import output_root, session_scope
from models.tables import Document, Receipt, ReceiptState
from tasks.aggregation import OrgTree
from tasks.documents import catalog, word
from tasks.documents.content import FOLLOW_UP_ROWS
from tasks.documents.model import DocRequest
from tasks.followup_calendar import find_occasion
from tasks.returns import submit_file

# Items the first unit of every other administration raises; the administration acts on the
# first of them itself, the rest climb until the executive board acts on one.
ITEMS = (
    "Stöd för rekrytering av specialistsjuksköterskor",
    "Gemensam lösning för digitala vårdmöten",
    "Ökade lokalkostnader efter ombyggnaden behöver finansieras",
    "Samordnad upphandling av färdtjänst",
)
LESSONS = (
    "Prognoserna blir bättre när enheterna lämnar dem varje månad.",
    "Lokalkostnaderna måste följas upp tätare under året.",
    "Dialogen mellan nämnd och förvaltning om målen har gett bättre bedömningar.",
)


def plan(cfg: Any) -> dict[str, dict[str, Any]]:
    """What each unit writes: figures, raised items and what it acts on, deterministic per unit."""
    tree = OrgTree.from_config(cfg)
    kids = tree.children()
    senders = [u for u in tree.bottom_up() if cfg.unit(u).parent is not None]
    leaves = [u for u in senders if u not in kids]
    out: dict[str, dict[str, Any]] = {u: {"leaf": u not in kids, "raise": [], "act": []} for u in senders}
    for i, unit in enumerate(leaves):
        base = 2_000.0 + 500.0 * (i % 9)
        rows = {}
        for post in FOLLOW_UP_ROWS:
            budget = -base * 1.5 if post == "Intäkter" else base
            forecast = budget
            if i % 6 == 1 and post == "Personalkostnader":
                forecast = round(budget * 1.08)  # an overrun beyond the threshold
            if i % 9 == 4 and post == "Lokalkostnader":
                forecast = round(budget * 1.15)
            rows[post] = (budget, round(budget * 0.62), forecast)
        out[unit]["figures"] = rows
    admins = [u for u in senders if kids.get(u) and all(c not in kids for c in kids[u])]
    n = 0
    for j, admin in enumerate(admins):
        if j % 2:
            continue
        first = kids[admin][0]
        item = ITEMS[n % len(ITEMS)]
        out[first]["raise"].append(item)
        if n == 0:
            out[admin]["act"].append(item)  # the administration acts on it itself
        elif n == 1:
            out[cfg.organisation.roles.executive_board]["act"].append(item)  # the board does
        n += 1
    return out


def hand_in(
    config: str, year: int, occasion_key: str, units: Sequence[str], folder: str, links: dict[str, str] | None = None
) -> int:
    """Fill in and hand back both follow-up documents of each unit; returns the files handed in.
    With `links` (unit → the portal link of its request) each unit downloads its templates from the
    portal and uploads its return there, as a secretary does; without, the files go straight to
    the return path (the tests' shortcut)."""
    from portal.client import PortalClient

    cfg = load_config(config)
    occasion = find_occasion(cfg, year, occasion_key)
    what = plan(cfg)
    out = output_root()
    tmp = Path(folder)
    tmp.mkdir(parents=True, exist_ok=True)
    with session_scope() as s:
        docs = {
            (d.unit_id, d.kind): d
            for d in s.exec(select(Document).where(Document.phase == "follow_up", Document.unit_id.in_(units)))  # type: ignore[attr-defined]
            if f"-{occasion.key}/" in d.key
        }
    count = 0
    for unit in units:
        sheet, story = docs[(unit, "uppfoljning")], docs[(unit, "uppfoljning_berattelse")]
        extra = (("occasion", occasion.name), ("occasion_key", occasion.key))
        fields = catalog.expected(cfg, year, DocRequest(story.kind, story.phase, unit, story.version, extra)).fields
        filled_sheet, filled_story = tmp / f"{unit}_{occasion.key}.xlsx", tmp / f"{unit}_{occasion.key}.docx"
        link = (links or {}).get(unit)
        if link is None:
            _fill_workbook(out / sheet.relpath, filled_sheet, unit, what[unit])
            _fill_story(out / story.relpath, filled_story, unit, fields, what[unit], cfg)
            for path in (filled_sheet, filled_story):
                submit_file(cfg, path, actor=f"demo:{unit}")
        else:
            with PortalClient.open(link) as page:
                got = {p.suffix: p for p in page.download(tmp / "hamtat" / unit)}
                _fill_workbook(got[".xlsx"], filled_sheet, unit, what[unit])
                _fill_story(got[".docx"], filled_story, unit, fields, what[unit], cfg)
                for path in (filled_sheet, filled_story):
                    page.upload(path)
        count += 2
    return count


def hand_in_all(
    config: str, year: int, occasion_key: str, folder: Path, workers: int = 2, links: dict[str, str] | None = None
) -> int:
    """Every unit's return, in `workers` processes (filling and reading back is CPU-bound). With
    `links`, only the units whose request has arrived, each through the portal."""
    cfg = load_config(config)
    waiting = not_returned(occasion_key)
    # A second demonstration run hands in nothing twice.
    units = [u for u in plan(cfg) if u in waiting and (links is None or u in links)]
    if not units:
        return 0
    chunks = [units[i::workers] for i in range(workers)]
    # forkserver: the demo process has threads (the mail server, the progress bar).
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(hand_in, config, year, occasion_key, c, str(folder), links) for c in chunks if c]
        return sum(f.result() for f in futures)


def not_returned(occasion_key: str) -> set[str]:
    """Units whose follow-up receipt of the occasion still waits for their return."""
    with session_scope() as s:
        rows = s.exec(
            select(Receipt.sender_unit).where(
                Receipt.phase == "follow_up",
                Receipt.topic == f"uppfoljning-{occasion_key}",
                Receipt.state == ReceiptState.ISSUED,
            )
        ).all()
    return set(rows)


def _fill_workbook(src: Path, dst: Path, unit: str, what: dict[str, Any]) -> None:
    """Type the figures and goal assessments into the sheets' XML: openpyxl's load and save would
    cost more than reading the return back, and the demonstration hands in a hundred of them."""
    with zipfile.ZipFile(src) as z:
        parts = {i.filename: z.read(i) for i in z.infolist()}
        infos = z.infolist()
    sheets = _sheet_parts(parts)
    economy = parts[sheets["Ekonomi"]].decode()
    cols = _headers(economy)
    figures = what.get("figures")
    for r in range(2, 2 + len(FOLLOW_UP_ROWS)):
        post = html.unescape(re.search(rf'<c r="A{r}"[^>]*><is><t>(.*?)</t>', economy).group(1))  # type: ignore[union-attr]
        budget, outcome, forecast = figures[post] if figures else (0, 0, 0)
        for header, value in (("Budget helår", budget), ("Utfall hittills", outcome), ("Prognos helår", forecast)):
            economy = _put(economy, f"{cols[header]}{r}", value)
        if budget and abs(budget - forecast) / abs(budget) > 0.02:
            economy = _put(economy, f"{cols['Analys']}{r}", "Högre kostnader än planerat för bemanning och lokaler.")
            economy = _put(economy, f"{cols['Föreslagen åtgärd']}{r}", "Åtgärdsplan tas fram till nästa uppföljning.")
    parts[sheets["Ekonomi"]] = economy.encode()
    goals = parts[sheets["Mål"]].decode()
    cols = _headers(goals)
    for m in list(re.finditer(r'<c r="A(\d+)"[^>]*t="inlineStr"><is><t>', goals)):
        r = int(m.group(1))
        if r < 2:
            continue
        light = ("Grön", "Grön", "Gul", "Grön", "Röd")[(sum(map(ord, unit)) + r) % 5]
        goals = _put(goals, f"{cols['Bedömning']}{r}", light)
        goals = _put(goals, f"{cols['Kommentar och analys']}{r}", COMMENTS[light])
    parts[sheets["Mål"]] = goals.encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for info in infos:
            z.writestr(info, parts[info.filename])


COMMENTS = {
    "Grön": "Målet nås enligt plan.",
    "Gul": "Målet nås delvis; arbetet har försenats.",
    "Röd": "Målet nås inte i år; bemanningen räcker inte.",
}


def _sheet_parts(parts: dict[str, bytes]) -> dict[str, str]:
    """Sheet name -> part name, from the workbook and its relationships."""
    book = parts["xl/workbook.xml"].decode()
    rels = parts["xl/_rels/workbook.xml.rels"].decode()
    target = {m.group(2): m.group(1).lstrip("/") for m in re.finditer(r'Target="([^"]+)" Id="([^"]+)"', rels)}
    out = {}
    for m in re.finditer(r'<sheet [^>]*name="([^"]+)"[^>]*r:id="([^"]+)"', book):
        part = target[m.group(2)]
        out[html.unescape(m.group(1))] = part if part.startswith("xl/") else "xl/" + part
    return out


def _headers(xml: str) -> dict[str, str]:
    return {html.unescape(t): col for col, t in re.findall(r'<c r="([A-Z]+)1"[^>]*><is><t>(.*?)</t>', xml)}


def _put(xml: str, ref: str, value: float | str) -> str:
    """Replace the (empty, styled) cell `ref` with a number or an inline string, keeping its style."""
    cell = re.compile(rf'<c r="{ref}"( s="\d+")?[^>]*?(?:/>|>.*?</c>)')
    if isinstance(value, str):
        body = f' t="inlineStr"><is><t>{html.escape(value, quote=False)}</t></is></c>'
    else:
        body = f' t="n"><v>{value}</v></c>'
    new, n = cell.subn(lambda m: f'<c r="{ref}"{m.group(1) or ""}{body}', xml, count=1)
    if n != 1:
        raise ValueError(f"demo: no cell {ref} in the follow-up workbook")
    return new


def _fill_story(src: Path, dst: Path, unit: str, fields: dict[str, str], what: dict[str, Any], cfg: Any) -> None:
    doc = open_docx(src)
    answers = {name: f"{label.rstrip('?')}: se verksamhetens analys ({unit})." for name, label in fields.items()}
    answers["lyfter_vidare"] = "\n".join(what["raise"]) or "Inget."
    answers["gor_sjalva"] = "\n".join([*what["act"], "Vi följer upp ekonomin månadsvis."])
    if unit == cfg.organisation.roles.executive_board and "lardomar" in answers:
        answers["lardomar"] = "\n".join(LESSONS)
    current = None
    for p in doc.paragraphs:
        marks = [b.get(qn("w:name")) or "" for b in p._p.iter(qn("w:bookmarkStart"))]
        found = [m[len(word.FIELD_BOOKMARK_PREFIX) :] for m in marks if m.startswith(word.FIELD_BOOKMARK_PREFIX)]
        if found:
            current = found[0]
        elif current in answers and p.style.name == word.ANSWER_STYLE:
            lines = answers.pop(current).split("\n")
            for line in lines[:-1]:
                p.insert_paragraph_before(line, style=word.ANSWER_STYLE)
            p.add_run(lines[-1])
    doc.save(dst)
