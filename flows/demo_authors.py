"""The demonstration's authors: whoever a fill-in handoff asks fills in what it sent and hands it back.

A fill-in handoff (feedback, operational and activity plans, follow-up returns, level reports) is
agreed on what its author returned, so the simulated committees, administrations and units type
into the documents they received — every yellow Word field, every open Excel cell of the rows the
template was sent with and the first blank rows — what its validation allows, and hand the files
back through the ordinary return path (`tasks.returns.submit_file`), which validates and stores
them. The follow-up's figures come from `flows.demo_returns` (they must add up the chain); this
module fills everything else, and is what tests use to hand a return back as a person would.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import openpyxl
from docx import Document as open_docx
from docx.oxml.ns import qn
from sqlmodel import select

from config.schema import OrgConfig
from models.db import output_root, session_scope
from models.tables import HandoffMode, Receipt, ReceiptState
from tasks.documents import word
from tasks.returns import fill_in_documents, submit_file

BLANK_ROWS_FILLED = 2  # a secretary adds a couple of rows of her own, not all the template offers


def _sentence(label: str, unit: str) -> str:
    """A plausible answer for a field or a text column, naming who wrote it."""
    label = label.rstrip("?:. ").strip()
    return f"{unit}: {label[:1].lower() + label[1:]} – enligt nämndens beslut och förvaltningens underlag."


def fill_docx(src: Path, dst: Path, unit: str) -> None:
    """Type an answer into every yellow field (the paragraph in the answer style after its bookmark)."""
    doc = open_docx(src)
    current: str | None = None
    done: set[str] = set()
    labels: dict[str, str] = {}
    heading = ""
    for p in doc.paragraphs:
        marks = [b.get(qn("w:name")) or "" for b in p._p.iter(qn("w:bookmarkStart"))]
        found = [m[len(word.FIELD_BOOKMARK_PREFIX) :] for m in marks if m.startswith(word.FIELD_BOOKMARK_PREFIX)]
        if found:
            current, heading = found[0], p.text
            labels[current] = heading
        elif current and current not in done and p.style is not None and p.style.name == word.ANSWER_STYLE:
            p.add_run(_sentence(labels.get(current) or heading or current, unit))
            done.add(current)
    doc.save(dst)


def _choices(wb: Any, formula: str) -> list[str]:
    if formula.startswith('"'):
        return formula.strip('"').split(",")
    sheet, ref = formula.split("!")
    return [str(c.value) for (c,) in wb[sheet.strip("'")][ref.replace("$", "")] if c.value is not None]


def _value(wb: Any, dv: Any, header: str, unit: str, row: int, year: int) -> Any:
    if dv is None:
        return _sentence(header, unit)
    if dv.type == "list":
        options = [o for o in _choices(wb, dv.formula1) if o]
        # "Nej" where a yes/no asks to opt out; otherwise a choice that varies by row.
        if "Nej" in options and "Ja" in options:
            return "Nej" if "vstår" in header else "Ja"
        return options[row % len(options)]
    if dv.type == "whole":
        lo, hi = int(float(dv.formula1)), int(float(dv.formula2))
        return min(max(lo, (lo + hi) // 2 if hi - lo < 10 else lo + 1 + row % 3), hi)
    if dv.type == "decimal":
        lo, hi = float(dv.formula1), float(dv.formula2)
        value = 0.25 if hi <= 1 else (-120.0 if hi <= 0 else 340.0 + 10 * row)
        return min(max(value, lo), hi)
    if dv.type == "date":
        return date(year, 6, 15)
    return _sentence(header, unit)


def fill_xlsx(src: Path, dst: Path, unit: str, year: int) -> None:
    """Type into the open cells of every visible sheet what their validation allows: on each row the
    template was sent with, and on the first blank rows."""
    wb = openpyxl.load_workbook(src)
    for ws in wb.worksheets:
        if ws.sheet_state != "visible":
            continue
        headers = {c.column: str(c.value or "") for c in ws[1]}
        rules: dict[str, Any] = {}
        for dv in ws.data_validations.dataValidation:
            for rng in dv.sqref.ranges:
                cells = ws[rng.coord] if ":" in rng.coord else ((ws[rng.coord],),)
                for line in cells:
                    for c in line:
                        rules[c.coordinate] = dv
        blank_filled = 0
        for line in ws.iter_rows(min_row=2):
            open_cells = [
                c
                for c in line
                if not c.protection.locked and not (isinstance(c.value, str) and c.value.startswith("="))
            ]
            if not open_cells:
                continue
            sent = any(c.protection.locked and c.value not in (None, "") for c in line)
            if not sent:
                if blank_filled >= BLANK_ROWS_FILLED:
                    continue
                blank_filled += 1
            for c in open_cells:
                if c.value in (None, ""):
                    c.value = _value(wb, rules.get(c.coordinate), headers.get(c.column, ""), unit, c.row, year)
    wb.save(dst)


def hand_back(
    cfg: OrgConfig, receipt_id: int, folder: Path, *, url: str | None = None, out_root: Path | None = None
) -> int:
    """Fill in every document a fill-in receipt's author was asked for and hand it back; returns
    the files handed in (0 when the receipt waits for no return)."""
    root = out_root or output_root()
    with session_scope(url) as s:
        receipt = s.get(Receipt, receipt_id)
        if receipt is None or receipt.mode != HandoffMode.FILL_IN or receipt.state != ReceiptState.ISSUED:
            return 0
        year = receipt.key.split("/")[1]
        docs = fill_in_documents(s, receipt)
        author = cfg.unit(receipt.sender_unit).name
    folder.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        filled = folder / Path(doc.relpath).name
        if doc.format == "docx":
            fill_docx(root / doc.relpath, filled, author)
        else:
            fill_xlsx(root / doc.relpath, filled, author, int(year))
        submit_file(cfg, filled, url=url, actor=f"demo:{receipt.sender_unit}")
    return len(docs)


def hand_back_all(
    cfg: OrgConfig,
    cycle_id: int,
    phase: str,
    folder: Path,
    *,
    topic_prefix: str = "",
    url: str | None = None,
    out_root: Path | None = None,
) -> int:
    """`hand_back` for every fill-in receipt of a phase (of a topic) still waiting for its return.
    A return serves every receipt of the same document (an activity plan goes to each unit), so
    each author's documents are handed back once."""
    with session_scope(url) as s:
        rows = s.exec(
            select(Receipt.id, Receipt.topic, Receipt.sender_unit).where(
                Receipt.cycle_id == cycle_id,
                Receipt.phase == phase,
                Receipt.mode == HandoffMode.FILL_IN,
                Receipt.state == ReceiptState.ISSUED,
            )
        ).all()
    count, seen = 0, set()
    for rid, topic, sender in sorted(rows):
        if not topic.startswith(topic_prefix) or (topic, sender) in seen:
            continue
        seen.add((topic, sender))
        count += hand_back(cfg, rid, folder, url=url, out_root=out_root)
    return count
