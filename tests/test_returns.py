"""Returns on a real database (SQLite and PostgreSQL): committees fill in what they received, as a
secretary would with Word and Excel (here python-docx and openpyxl, and LibreOffice), hand it
back, and the database holds exactly what they entered; every bad file is refused with one line
and leaves the database as it was."""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import string
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import typer
from docx import Document as DocxDocument
from secretary import CTRL, fill_docx, fill_xlsx, inject_raw
from sqlmodel import select
from typer.testing import CliRunner

from config.loader import load_config
from models.db import session_scope
from models.errors import UserError
from models.tables import AuditEntry, Document, Receipt, ReceiptState, Submission
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.documents import catalog
from tasks.documents.model import DocRequest, SheetSpec
from tasks.followup_calendar import occasions
from tasks.handoffs import handoffs_for_phase
from tasks.receipts import SignRequest, code_for, dispute, sign
from tasks.returns import REQUIRED, inspect_package, submit_file, watch_inbox

YEAR = 2028
FORMULA = '=HYPERLINK("http://x","klick")'
PLUS = "+SUM(A1)"


@pytest.fixture(scope="module")
def cfg():
    return load_config("region")


# ---------------------------------------------------------------------------------------------
# Setting up a phase and reading the database
# ---------------------------------------------------------------------------------------------


def _distribute(cfg, url: str, out: Path, phase: str, pick: Callable[[Any], bool] | None = None, occasion=None):
    cycle_id = prepare_cycle(cfg, YEAR, url)
    handoffs = handoffs_for_phase(cfg, YEAR, phase, occasion)
    chosen = [h for h in handoffs if pick(h)] if pick else handoffs[:1]
    distribute(cfg, cycle_id, phase, chosen, out, actor="test", url=url)
    return chosen


def _doc(url: str, kind: str, unit: str | None = None, version: int = 1) -> Document:
    with session_scope(url) as s:
        q = select(Document).where(Document.kind == kind, Document.version == version)
        if unit:
            q = q.where(Document.unit_id == unit)
        return s.exec(q.order_by(Document.id)).first()


def _receipts(url: str, phase: str) -> list[Receipt]:
    with session_scope(url) as s:
        return list(s.exec(select(Receipt).where(Receipt.phase == phase).order_by(Receipt.id)))


def _submissions(url: str) -> list[Submission]:
    with session_scope(url) as s:
        return list(s.exec(select(Submission).order_by(Submission.id)))


def _snapshot(url: str) -> dict[str, list]:
    """Everything a submission may touch, row by row."""
    with session_scope(url) as s:
        return {
            "submissions": [
                (x.id, x.document_id, x.file_hash, json.dumps(x.content, sort_keys=True))
                for x in s.exec(select(Submission).order_by(Submission.id))
            ],
            "receipts": [
                (x.id, x.state, x.acknowledged_by, x.acknowledged_at, x.signed_by, x.updated_at)
                for x in s.exec(select(Receipt).order_by(Receipt.id))
            ],
            "audit": [(x.id, x.action, x.subject) for x in s.exec(select(AuditEntry).order_by(AuditEntry.id))],
            "documents": [(x.id, x.key, x.content_hash) for x in s.exec(select(Document).order_by(Document.id))],
        }


def _signer(cfg, r: Receipt) -> str:
    return cfg.unit(r.receiver_unit).signatories[0].id


# ---------------------------------------------------------------------------------------------
# The secretary: filling in with python-docx and openpyxl
# ---------------------------------------------------------------------------------------------


def _stored(value: Any) -> Any:
    """What the database holds for a typed value: dates as ISO text, CTRL cleaned away."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return value.replace(CTRL, "")
    return value


def _expected_rows(edits: dict[tuple[int, str], Any], fixed: dict[int, dict[str, Any]] | None = None) -> dict:
    rows: dict[int, dict[str, Any]] = {}
    for (row, header), value in edits.items():
        rows.setdefault(row, {})[header] = _stored(value)
    for row, values in (fixed or {}).items():
        rows.setdefault(row, {}).update(values)
    return rows


def _by_row(entries: list[dict]) -> dict[int, dict[str, Any]]:
    return {e["row"]: e["values"] for e in entries}


def _choices(wb, ws, cell: str) -> list[str]:
    """The drop-down list of a cell, as Excel offers it."""
    for dv in ws.data_validations.dataValidation:
        if dv.type == "list" and cell in dv.sqref:
            f = dv.formula1
            if f.startswith('"'):
                return f.strip('"').split(",")
            sheet, ref = f.split("!")
            return [c.value for (c,) in wb[sheet.strip("'")][ref.replace("$", "")]]
    raise AssertionError(f"no list on {cell}")


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------

FEEDBACK = {
    "bidrag_mal": [
        "Nämnden bidrar till målen genom tre satsningar på nära vård i Åsele, Överkalix och Örnsköldsvik.",
        "Andra stycket: vi avstår inte från något mål.",
        "Tredje stycket, med radbrytning:\nrad två efter Skift+Retur\tmed tabb.",
    ],
    "utvecklingsinsatser": [f"{FORMULA} är inklistrad text och ska förbli text."],
    "kompetensforsorjning": [PLUS],
    "hallbar_ekonomi": [f"Ekonomi i balans trots kontroll{CTRL}tecken; ÅÄÖ åäö é ü."],
    "investeringar": ["Inga nya behov utöver investeringsplanen."],
    "ovriga_synpunkter": ["@SUM(1+1) och -2 är också text."],
    "risk_kanslighet": ["Löneökningar över 3 % ryms inte; statsbidragen är osäkra."],
}


def test_feedback_round_trip_idempotency_and_resubmission(cfg, db_url, tmp_path):
    out = tmp_path / "out"
    _distribute(cfg, db_url, out, "committee_feedback", lambda h: h.sender in ("HSN", "RUN"))
    doc = _doc(db_url, "aterkoppling", "HSN")
    filled = tmp_path / "aterkoppling_HSN.docx"
    expected = fill_docx(out / doc.relpath, filled, FEEDBACK)

    result = submit_file(cfg, filled, url=db_url, actor="Sara Sekreterare")

    assert result.created and result.document_key == doc.key and result.unit_id == "HSN"
    [sub] = _submissions(db_url)
    assert sub.content == {"fields": expected}
    for name, text in expected.items():  # field by field, as typed
        assert sub.content["fields"][name] == text, name
    assert sub.content["fields"]["utvecklingsinsatser"].startswith(FORMULA)
    assert "\n" in sub.content["fields"]["bidrag_mal"] and "\t" in sub.content["fields"]["bidrag_mal"]
    assert sub.content["fields"]["hallbar_ekonomi"] == "Ekonomi i balans trots kontrolltecken; ÅÄÖ åäö é ü."
    assert sub.document_id == doc.id and sub.unit_id == "HSN" and len(sub.file_hash) == 64
    receipts = {r.sender_unit: r for r in _receipts(db_url, "committee_feedback")}
    assert receipts["HSN"].state == ReceiptState.ACKNOWLEDGED and receipts["HSN"].acknowledged_by == "Sara Sekreterare"
    assert receipts["RUN"].state == ReceiptState.ISSUED
    with session_scope(db_url) as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "return_received")).one()
        ack = s.exec(select(AuditEntry).where(AuditEntry.action == "receipt_acknowledged")).one()
    assert entry.subject == doc.key and entry.detail["submission_id"] == sub.id and entry.actor == "Sara Sekreterare"
    assert entry.detail["removed_characters"] >= 5
    assert ack.subject == receipts["HSN"].key

    # The same file again: nothing new.
    before = _snapshot(db_url)
    again = submit_file(cfg, filled, url=db_url, actor="Sara Sekreterare")
    assert not again.created and again.submission_id == sub.id
    assert _snapshot(db_url) == before

    # A corrected file while the receiver has not decided: a new submission replaces the first.
    changed = tmp_path / "rättad.docx"
    expected2 = fill_docx(
        out / doc.relpath, changed, FEEDBACK | {"investeringar": ["Ett nytt behov: ambulansstation."]}
    )
    second = submit_file(cfg, changed, url=db_url, actor="Sara Sekreterare")
    assert second.created and second.replaces == sub.id and second.acknowledged == ()
    assert [s.content["fields"] for s in _submissions(db_url)] == [expected, expected2]

    # Once the board has agreed, a changed file is refused; the agreed one is still "received".
    r = receipts["HSN"]
    sign(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key), actor="RS"), db_url)
    before = _snapshot(db_url)
    late = tmp_path / "för_sent.docx"
    fill_docx(out / doc.relpath, late, FEEDBACK | {"ovriga_synpunkter": ["Ändrat i efterhand."]})
    with pytest.raises(UserError, match="redan godkänd") as exc:
        submit_file(cfg, late, url=db_url, actor="Sara Sekreterare")
    assert "för_sent.docx" in str(exc.value) and "\n" not in str(exc.value)
    assert _snapshot(db_url) == before
    assert not submit_file(cfg, changed, url=db_url, actor="x").created


def test_the_same_file_handed_in_twice_at_once_is_recorded_once(cfg, db_url, tmp_path):
    out = tmp_path / "out"
    _distribute(cfg, db_url, out, "committee_feedback")
    filled = tmp_path / "svar.docx"
    fill_docx(out / _doc(db_url, "aterkoppling", "HSN").relpath, filled, FEEDBACK)
    barrier = threading.Barrier(3)
    outcomes: list[Any] = []

    def go() -> None:
        barrier.wait()
        try:
            outcomes.append(submit_file(cfg, filled, url=db_url, actor="t").created)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            outcomes.append(exc)

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False, False, True]
    assert len(_submissions(db_url)) == 1
    with session_scope(db_url) as s:
        assert len(s.exec(select(AuditEntry).where(AuditEntry.action == "receipt_acknowledged")).all()) == 1


def test_operational_plan_needs_both_documents_before_the_receipt_is_acknowledged(cfg, db_url, tmp_path):
    out = tmp_path / "out"
    _distribute(cfg, db_url, out, "operational_plans", lambda h: h.sender == "HSN")
    mall = _doc(db_url, "verksamhetsplan_mall", "HSN")
    src = out / mall.relpath
    wb = openpyxl.load_workbook(src)
    goals, indicators, controls = wb["Fullmäktiges mål"], wb["Indikatorer"], wb["Intern kontroll"]
    goal_edits: dict[tuple[int, str], Any] = {}
    for r in range(2, goals.max_row + 1):
        if not goals.cell(r, 5).protection.locked:  # the goal may be opted out of
            goal_edits[(r, "Avstår (Ja/Nej)")] = "Nej"
        goal_edits[(r, "Nämndens bidrag och åtaganden")] = (
            f"Bidrag till {goals.cell(r, 2).value}: åtgärder i hela länet."
        )
    goal_edits[(2, "Nämndens bidrag och åtaganden")] = FORMULA
    indicator_edits = {(r, "Nämndens målvärde"): 80 + r for r in range(2, indicators.max_row + 1)}
    indicator_edits[(2, "Kommentar")] = f"Mätt via Kolada{CTRL}, årsvis."
    indicator_edits[(3, "Nämndens målvärde")] = "12,5"  # typed as text with a decimal comma
    first_blank = next(r for r in range(2, controls.max_row + 1) if not controls.cell(r, 1).value)
    control_edits: dict[tuple[int, str], Any] = {}
    for r in range(2, first_blank):
        control_edits[(r, "Sannolikhet (1–4)")] = 1 + r % 4
        control_edits[(r, "Konsekvens (1–4)")] = 4 - r % 4
    control_edits |= {
        (first_blank, "Kontrollområde"): "Läkemedel",
        (first_blank, "Risk"): "Svinn av narkotikaklassade läkemedel",
        (first_blank, "Sannolikhet (1–4)"): 2,
        (first_blank, "Konsekvens (1–4)"): 4,
        (first_blank, "Kontrollmoment"): "Inventering",
        (first_blank, "Frekvens"): "Månadsvis",
        (first_blank, "Ansvarig"): "Överläkare Åsa Öberg",
    }
    goal_choice = _choices(wb, wb["Åtaganden"], "B2")[0]
    admin = _choices(wb, wb["Åtaganden"], "C2")[0]
    commitments = {
        (2, "Åtagande"): "Öppna två nya vårdcentraler",
        (2, "Koppling till mål"): goal_choice,
        (2, "Ansvarig förvaltning"): admin,
        (2, "Klart senast"): date(2029, 6, 30),
        (2, "Resurser (tkr)"): 12_500,
        (3, "Åtagande"): PLUS,
        (3, "Koppling till mål"): goal_choice,
        (3, "Ansvarig förvaltning"): admin,
    }
    own = {(2, "Målområde"): _choices(wb, wb["Egna mål"], "A2")[0], (2, "Nämndens mål"): "Kortare väntetider"}
    filled = tmp_path / "vp_mall.xlsx"
    edits = {
        "Fullmäktiges mål": goal_edits,
        "Indikatorer": indicator_edits,
        "Intern kontroll": control_edits,
        "Åtaganden": commitments,
        "Egna mål": own,
    }
    fill_xlsx(src, filled, edits)

    result = submit_file(cfg, filled, url=db_url, actor="Nämndsekreterare")

    sheets = result.content["sheets"]
    assert _by_row(sheets["Fullmäktiges mål"]) == _expected_rows(goal_edits)
    assert _by_row(sheets["Indikatorer"]) == _expected_rows(indicator_edits) | {3: {"Nämndens målvärde": 12.5}}
    assert _by_row(sheets["Åtaganden"]) == _expected_rows(commitments)
    assert _by_row(sheets["Egna mål"]) == _expected_rows(own)
    # Pre-filled rows of the internal control plan carry what was sent along with what was added.
    controls_stored = _by_row(sheets["Intern kontroll"])
    for (r, header), value in control_edits.items():
        assert controls_stored[r][header] == value, (r, header)
    assert controls_stored[2]["Kontrollområde"] == controls.cell(2, 1).value
    assert _submissions(db_url)[0].content == result.content  # what the database holds
    # The plan is two documents: the receipt waits for the Word part.
    vp = _doc(db_url, "verksamhetsplan", "HSN")
    assert result.waiting_for == (vp.key,) and result.acknowledged == ()
    assert {r.state for r in _receipts(db_url, "operational_plans")} == {ReceiptState.ISSUED}

    fields = catalog.expected_fields(cfg, YEAR, DocRequest("verksamhetsplan", "operational_plans", "HSN"))
    answers = {name: [f"{label}: nämndens svar, åäö."] for name, label in fields.items()}
    vp_filled = tmp_path / "vp.docx"
    expected = fill_docx(out / vp.relpath, vp_filled, answers)
    second = submit_file(cfg, vp_filled, url=db_url, actor="Nämndsekreterare")
    assert _submissions(db_url)[1].content == {"fields": expected}
    receipts = _receipts(db_url, "operational_plans")
    assert second.acknowledged == tuple(r.key for r in receipts) and second.waiting_for == ()
    assert all(r.state == ReceiptState.ACKNOWLEDGED for r in receipts)


def _activity_edits(wb) -> tuple[dict, dict]:
    act, budget = wb["Aktiviteter"], wb["Detaljbudget"]
    goal = _choices(wb, act, "B2")[0]
    activities: dict[tuple[int, str], Any] = {}
    for r in range(2, act.max_row):  # the last row is "Summa"
        activities |= {
            (r, "Koppling till mål/åtagande"): goal,
            (r, "Aktivitet"): f"Aktivitet {r}: förbättra flödet på {act.cell(r, 1).value}",
            (r, "Ansvarig"): "Örjan Åström",
            (r, "Start"): date(2028, 1, 1 + r),
            (r, "Klart"): date(2028, 12, 1),
            (r, "Kostnad (tkr)"): 100 * r,
        }
    activities[(2, "Aktivitet")] = FORMULA
    activities[(3, "Aktivitet")] = PLUS
    activities[(4, "Aktivitet")] = f"Styr{CTRL}ning"
    money: dict[tuple[int, str], Any] = {}
    for r in range(2, budget.max_row):
        money |= {
            (r, "Personalkostnader"): 1000 * r,
            (r, "Lokalkostnader"): 200,
            (r, "Övriga kostnader"): 55.5,
            (r, "Intäkter (anges negativt)"): -300,
        }
    return activities, money


def test_activity_plan_round_trip_acknowledges_every_unit(cfg, db_url, tmp_path):
    out = tmp_path / "out"
    chosen = _distribute(cfg, db_url, out, "activity_plans", lambda h: h.sender == "RLK")
    doc = _doc(db_url, "aktivitetsplan", "RLK")
    wb = openpyxl.load_workbook(out / doc.relpath)
    activities, money = _activity_edits(wb)
    activities[(5, "Kostnad (tkr)")] = "1 234"  # a number typed as text, Swedish style
    filled = tmp_path / "aktivitetsplan.xlsx"
    fill_xlsx(out / doc.relpath, filled, {"Aktiviteter": activities, "Detaljbudget": money})

    result = submit_file(cfg, filled, url=db_url, actor="Controller")

    [sub] = _submissions(db_url)
    stored = sub.content["sheets"]
    assert _by_row(stored["Aktiviteter"]) == _expected_rows(activities) | {
        5: _expected_rows(activities)[5] | {"Kostnad (tkr)": 1234}
    }
    assert _by_row(stored["Detaljbudget"]) == _expected_rows(money)
    assert stored["Aktiviteter"][0]["values"]["Aktivitet"] == FORMULA
    assert stored["Aktiviteter"][2]["values"]["Aktivitet"] == "Styrning"
    assert stored["Detaljbudget"][0]["context"] == {"Enhet": wb["Detaljbudget"]["A2"].value, "Id": "EKO"}
    assert len(chosen) == 5 and len(result.acknowledged) == 5
    assert all(r.state == ReceiptState.ACKNOWLEDGED for r in _receipts(db_url, "activity_plans"))


def test_follow_up_round_trip(cfg, db_url, tmp_path):
    out = tmp_path / "out"
    occasion = next(o for o in occasions(cfg, YEAR) if o.key.startswith("delar"))
    _distribute(cfg, db_url, out, "follow_up", lambda h: h.sender == "HSF", occasion)
    sheet_doc = _doc(db_url, "uppfoljning", "HSF")
    assert occasion.key in sheet_doc.key
    wb = openpyxl.load_workbook(out / sheet_doc.relpath)
    eco = wb["Ekonomi"]
    economy: dict[tuple[int, str], Any] = {}
    for r in range(2, 7):
        economy |= {(r, "Budget helår"): 1000 + r, (r, "Utfall hittills"): 600, (r, "Prognos helår"): 990 + r}
    economy[(2, "Analys")] = "Intäkterna följer budget; åtgärder för övertid."
    economy |= {(7, "Post"): "Läkemedel", (7, "Budget helår"): 50, (7, "Utfall hittills"): 40, (7, "Prognos helår"): 60}
    assert eco.cell(7, 1).value is None and not eco.cell(7, 1).protection.locked
    goals = {(r, "Bedömning"): ["Grön", "Gul", "Röd"][r % 3] for r in range(2, wb["Mål"].max_row + 1)}
    goals[(2, "Kommentar och analys")] = f"Väntetiderna minskar{CTRL}."
    indicators = {(2, "Utfall"): 71.5}
    investments = {(2, "Projekt"): "Ny CT-kamera", (2, "Budget"): 12_000, (2, "Prognos"): 11_500}
    filled = tmp_path / "uppfoljning.xlsx"
    edits = {"Ekonomi": economy, "Mål": goals, "Indikatorer": indicators, "Investeringar": investments}
    fill_xlsx(out / sheet_doc.relpath, filled, edits)
    first = submit_file(cfg, filled, url=db_url, actor="Enhetschef")
    stored = first.content["sheets"]
    for sheet, cells in edits.items():
        assert _by_row(stored[sheet]) == _expected_rows(cells), sheet

    story = _doc(db_url, "uppfoljning_berattelse", "HSF")
    assert first.waiting_for == (story.key,) and first.acknowledged == ()
    fields = catalog.expected(cfg, YEAR, _request(story, occasion)).fields
    answers = {name: [f"{label} – vårt svar.", "Ytterligare ett stycke."] for name, label in fields.items()}
    story_filled = tmp_path / "berattelse.docx"
    expected = fill_docx(out / story.relpath, story_filled, answers)
    second = submit_file(cfg, story_filled, url=db_url, actor="Enhetschef")
    assert second.content == {"fields": expected}
    [receipt] = _receipts(db_url, "follow_up")
    assert second.acknowledged == (receipt.key,) and receipt.state == ReceiptState.ACKNOWLEDGED


def _request(doc: Document, occasion) -> DocRequest:
    extra = (("occasion", occasion.name), ("occasion_key", occasion.key)) if occasion else ()
    return DocRequest(doc.kind, doc.phase, doc.unit_id, doc.version, extra)


# What a secretary pastes into free text: Swedish letters, formula prefixes (= + - @), a tab, and
# characters XML cannot hold (CTRL, put into the saved file as raw bytes). Each must come back as text.
PASTED = (
    "Svar med åäö ÅÄÖ é ü – ”citat”",
    FORMULA,
    PLUS,
    "-2 % enligt prognos",
    "@SUM(1+1) är text",
    f"Styr{CTRL}ning\tmed tabb",
)


def _fill_every_open_cell(src: Path, dst: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """Type into every unlocked cell what its validation allows (a list value, a number within
    bounds, a date, pasted text): the whole fill-in surface of a workbook."""
    pasted = iter(PASTED * 10_000)
    wb = openpyxl.load_workbook(src)
    expected: dict[str, dict[int, dict[str, Any]]] = {}
    for ws in wb.worksheets:
        if ws.sheet_state != "visible":
            continue
        headers = {c.column: c.value for c in ws[1]}
        rules = {}
        for dv in ws.data_validations.dataValidation:
            for rng in dv.sqref.ranges:
                for row in ws[rng.coord] if ":" in rng.coord else ((ws[rng.coord],),):
                    for c in row:
                        rules[c.coordinate] = dv
        for row in ws.iter_rows(min_row=2):
            for c in row:
                if c.protection.locked or (isinstance(c.value, str) and c.value.startswith("=")):
                    continue
                dv = rules.get(c.coordinate)
                if dv is None:
                    value: Any = next(pasted)
                elif dv.type == "list":
                    value = _choices(wb, ws, c.coordinate)[-1]
                elif dv.type == "whole":
                    value = min(int(dv.formula1) + 1, int(dv.formula2))
                elif dv.type == "decimal":
                    lo, hi = float(dv.formula1), float(dv.formula2)
                    value = 0.25 if hi <= 1 else (-120 if hi <= 0 else 340)
                    value = min(max(value, lo), hi)
                elif dv.type == "date":
                    value = date(YEAR, 3, 15)
                else:
                    raise AssertionError(dv.type)
                c.value = value
                expected.setdefault(ws.title, {}).setdefault(c.row, {})[headers[c.column]] = _stored(value)
    wb.save(dst)
    inject_raw(dst, b"\x01_x0002_&#x7;\x08")
    return expected


def test_every_fill_in_kind_round_trips(cfg, db_url, tmp_path):
    """Whatever the catalog sends with something to fill in comes back as data, kind by kind."""
    out = tmp_path / "out"
    occasion = occasions(cfg, YEAR)[0]
    for phase in catalog.phase_ids():
        _distribute(cfg, db_url, out, phase, occasion=occasion if phase == "follow_up" else None)
    with session_scope(db_url) as s:
        docs = list(s.exec(select(Document).order_by(Document.id)))
    kinds = set()
    pasted_back: set[Any] = set()
    for doc in docs:
        exp = catalog.expected(cfg, YEAR, _request(doc, occasion if doc.phase == "follow_up" else None))
        if not exp.fill_in:
            continue
        kinds.add(doc.kind)
        filled = tmp_path / Path(doc.relpath).name
        if doc.format == "docx":
            answers = {
                name: [f"{label}: ifyllt svar med åäö.", f"{FORMULA} inklistrad", f"{PLUS}\tmed tabb och {CTRL}."]
                for name, label in exp.fields.items()
            }
            fields = fill_docx(out / doc.relpath, filled, answers)
            result = submit_file(cfg, filled, url=db_url, actor="t")
            with session_scope(db_url) as s:  # the database row, not what the call returned
                content = s.get(Submission, result.submission_id).content
            assert content == {"fields": fields}, doc.kind
        else:
            typed = _fill_every_open_cell(out / doc.relpath, filled)
            result = submit_file(cfg, filled, url=db_url, actor="t")
            with session_scope(db_url) as s:
                content = s.get(Submission, result.submission_id).content
            stored = {sheet: _by_row(rows) for sheet, rows in content["sheets"].items() if rows}
            assert stored == typed, doc.kind
            pasted_back.update(v for rows in stored.values() for row in rows.values() for v in row.values())
    # Every pasted text reached a workbook and came back as text, the control characters gone.
    assert pasted_back >= {_stored(t) for t in PASTED}
    assert kinds >= {
        "aterkoppling",
        "verksamhetsplan_mall",
        "aktivitetsplan",
        "uppfoljning",
        "uppfoljning_berattelse",
        "verksamhetsplan",
        "investeringsprioritering",
    }
    # Every handoff whose documents are all in is acknowledged.
    with session_scope(db_url) as s:
        states = {r.phase: r.state for r in s.exec(select(Receipt))}
    assert states["committee_feedback"] == states["follow_up"] == states["activity_plans"] == "acknowledged"


def test_required_rules_name_real_columns(cfg):
    units = {"verksamhetsplan_mall": "HSN", "aktivitetsplan": "HSF", "uppfoljning": "HSF"}
    for kind, sheets in REQUIRED.items():
        spec = catalog.KINDS[kind]
        unit = units.get(kind) or spec.recipients(catalog.year_data(cfg, YEAR))[0].id
        extra = {"occasion": "x", "occasion_key": occasions(cfg, YEAR)[0].key} if spec.phase == "follow_up" else {}
        exp = catalog.expected(cfg, YEAR, DocRequest(kind, spec.phase, unit, 1, extra))
        by_name = {s.name: s for s in exp.sheets if isinstance(s, SheetSpec)}
        for sheet, rule in sheets.items():
            headers = {c.header for c in by_name[sheet].columns}
            assert set(rule.required) <= headers, (kind, sheet)
            assert rule.unless is None or rule.unless[0] in headers


# ---------------------------------------------------------------------------------------------
# Refusals: one line naming file, place and value; nothing stored
# ---------------------------------------------------------------------------------------------


def _docx_core(path: Path, **props: str) -> None:
    doc = DocxDocument(path)
    for k, v in props.items():
        setattr(doc.core_properties, k, v)
    doc.save(path)


def _set_cover(path: Path, label: str, value: str) -> None:
    doc = DocxDocument(path)
    for row in doc.tables[0].rows:
        if row.cells[0].text == label:
            row.cells[1].paragraphs[0].runs[0].text = value
    doc.save(path)


def _zip_edit(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None], add: dict[str, bytes] | None = None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)


def _macro_enabled(src: Path, dst: Path, with_project: bool) -> None:
    """What Word saves as .docm: the macro-enabled main content type, and usually a VBA project."""

    def change(name: str, data: bytes) -> bytes:
        if name == "[Content_Types].xml":
            data = data.replace(
                b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
                b"application/vnd.ms-word.document.macroEnabled.main+xml",
            )
        return data

    _zip_edit(src, dst, change, {"word/vbaProject.bin": b"\xd0\xcf\x11\xe0" + b"\0" * 512} if with_project else None)


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """A .docx whose document.xml inflates to 1 GB of zeros (about 1 MB on disk), written streaming."""
    base = tmp_path_factory.mktemp("bomb")
    plain = base / "plain.docx"
    DocxDocument().save(plain)
    bomb = base / "bomb.docx"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename == "word/document.xml":
                continue
            zout.writestr(info, zin.read(info))
        chunk = b"\0" * (1 << 20)
        with zout.open("word/document.xml", "w", force_zip64=True) as fh:
            for _ in range(1024):
                fh.write(chunk)
    assert bomb.stat().st_size < 5 * 1024 * 1024
    return bomb


def test_refusals_are_one_line_and_store_nothing(cfg, db_url, tmp_path, zip_bomb):
    out = tmp_path / "out"
    _distribute(cfg, db_url, out, "committee_feedback", lambda h: h.sender in ("HSN", "RUN"))
    _distribute(cfg, db_url, out, "planning_prerequisites")
    _distribute(cfg, db_url, out, "operational_plans", lambda h: h.sender == "HSN")
    _distribute(cfg, db_url, out, "activity_plans", lambda h: h.sender == "RLK")
    hsn, run = _doc(db_url, "aterkoppling", "HSN"), _doc(db_url, "aterkoppling", "RUN")
    good = tmp_path / "good.docx"
    fill_docx(out / hsn.relpath, good, FEEDBACK)
    plan = _doc(db_url, "aktivitetsplan", "RLK")
    wb = openpyxl.load_workbook(out / plan.relpath)
    activities, money = _activity_edits(wb)
    total_row = wb["Aktiviteter"].max_row

    def xlsx(name: str, act: dict | None = None, bud: dict | None = None, inject: bool = True) -> Path:
        p = tmp_path / name
        edits = {"Aktiviteter": activities | (act or {}), "Detaljbudget": money | (bud or {})}
        fill_xlsx(out / plan.relpath, p, edits, inject=inject)
        return p

    def docx(name: str, answers: dict[str, list[str]]) -> Path:
        p = tmp_path / name
        fill_docx(out / hsn.relpath, p, answers)
        return p

    def copy(name: str, data: bytes) -> Path:
        p = tmp_path / name
        p.write_bytes(data)
        return p

    def wrong_unit() -> Path:
        p = tmp_path / "hsn_som_run.docx"
        fill_docx(out / hsn.relpath, p, FEEDBACK, inject=False)
        _docx_core(p, identifier=run.key)
        return p

    def other_template() -> Path:
        # A Word document of another kind, its identity consistently rewritten to HSN's feedback.
        vp = _doc(db_url, "verksamhetsplan", "HSN")
        p = tmp_path / "verksamhetsplan_som_aterkoppling.docx"
        fields = catalog.expected_fields(cfg, YEAR, DocRequest("verksamhetsplan", "operational_plans", "HSN"))
        fill_docx(out / vp.relpath, p, {n: ["svar"] for n in fields})
        keywords = f"styrkedja; aterkoppling; committee_feedback; {YEAR}; HSN; v1"
        _docx_core(p, identifier=hsn.key, category="aterkoppling", keywords=keywords, title=hsn.title)
        _set_cover(p, "Dokument-id", hsn.key)
        return p

    def tampered_xlsx() -> Path:
        p = xlsx("tampered.xlsx", inject=False)
        book = openpyxl.load_workbook(p)
        meta = book["_styrkedja"]
        for r in range(1, meta.max_row + 1):
            if meta.cell(r, 1).value == "doc_key":
                meta.cell(r, 2).value = plan.key.replace("/RLK/", "/HSF/")
            if meta.cell(r, 1).value == "unit":
                meta.cell(r, 2).value = "HSF"
        book.save(p)
        return p

    def outside() -> Path:
        p = xlsx("utanför.xlsx", inject=False)
        book = openpyxl.load_workbook(p)
        book["Aktiviteter"]["H3"] = "En anteckning bredvid tabellen"
        book.save(p)
        return p

    def huge_cell() -> Path:
        # openpyxl cuts a string at Excel's 32 767 characters; a hostile file need not.
        p = xlsx("jättecell.xlsx", {(2, "Aktivitet"): "QQHUGEQQ"})
        _zip_edit(p, p.with_name("jättecell_10MB.xlsx"), lambda _, data: data.replace(b"QQHUGEQQ", huge))
        return p.with_name("jättecell_10MB.xlsx")

    def macro(with_project: bool) -> Path:
        p = tmp_path / ("macro_vba.docx" if with_project else "macro_ct.docx")
        _macro_enabled(good, p, with_project)
        return p

    def locked_changed() -> Path:
        p = xlsx("låst.xlsx", inject=False)
        book = openpyxl.load_workbook(p)
        book["Detaljbudget"]["A2"] = "Någon annan enhet"
        book.save(p)
        return p

    rng = random.Random(4)
    huge = "".join(rng.choices(string.ascii_letters + " ", k=10_000_000)).encode()
    pf = _doc(db_url, "planeringsforutsattningar")
    png = b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(2000))
    TEXT = "Hej!\nDet här är text, inte ett dokument.".encode()  # noqa: N806
    no_other = {k: v for k, v in FEEDBACK.items() if k != "ovriga_synpunkter"}
    half = good.read_bytes()[: good.stat().st_size // 2]
    cases: list[tuple[str, Callable[[], Path], list[str]]] = [
        ("nothing to fill in", lambda: Path(shutil.copy(out / pf.relpath, tmp_path)), ["inget att fylla i"]),
        ("another kind's content", other_template, ["fältet 'uppdrag'", "hör inte till mallen"]),
        ("wrong unit", wrong_unit, ["manipulerat", "HSN"]),
        ("wrong unit in a workbook", tampered_xlsx, ["manipulerat"]),
        ("broken file", lambda: copy("trasig.docx", half), ["skadad eller avkortad"]),
        ("PNG renamed", lambda: copy("bild.docx", png), ["PNG-bild", "inte ett Word- eller Excel-dokument"]),
        ("text renamed", lambda: copy("text.docx", TEXT), ["inte ett Word- eller Excel-dokument"]),
        ("zip bomb", lambda: zip_bomb, ["zip-bomb", "1,0 GB"]),
        ("macros (vbaProject.bin)", lambda: macro(True), ["vbaProject.bin", "makron"]),
        ("macros (content type)", lambda: macro(False), ["makroaktiverat"]),
        ("macros (.docm)", lambda: copy("svar.docm", good.read_bytes()), [".docm"]),
        (
            "10 MB of text in one cell",
            huge_cell,
            ["cell C2", "10 000 000 tecken"],
        ),
        (
            "figures that do not add up",
            lambda: xlsx("summa.xlsx", {(total_row, "Kostnad (tkr)"): 999}),
            [f"cell G{total_row}", "999", "går inte ihop"],
        ),
        ("row sum typed over", lambda: xlsx("netto.xlsx", bud={(2, "Nettobudget"): 1}), ["cell G2", "går inte ihop"]),
        ("required section empty", lambda: docx("tomt.docx", no_other), ["'Övriga synpunkter'", "är tomt"]),
        (
            "required column empty",
            lambda: xlsx("tom_kolumn.xlsx", bud={(3, "Lokalkostnader"): None}),
            ["cell D3", "Lokalkostnader", "inte ifylld"],
        ),
        (
            "number field with text",
            lambda: xlsx("text_i_tal.xlsx", {(3, "Kostnad (tkr)"): "ungefär tusen"}),
            ["cell G3", "'ungefär tusen'", "inte ett belopp"],
        ),
        (
            "out of bounds",
            lambda: xlsx("intakt.xlsx", bud={(2, "Intäkter (anges negativt)"): 500}),
            ["cell F2", "utanför"],
        ),
        (
            "not in the list",
            lambda: xlsx("lista.xlsx", {(2, "Koppling till mål/åtagande"): "eget mål"}),
            ["cell B2", "finns inte i listan"],
        ),
        ("locked cell changed", locked_changed, ["cell A2", "låst", "Någon annan enhet"]),
        ("a value outside the table", outside, ["cell H3", "utanför tabellen", "En anteckning"]),
    ]
    for case, make, fragments in cases:
        path = make()
        before = _snapshot(db_url)
        with pytest.raises(UserError) as exc:
            submit_file(cfg, path, url=db_url, actor="t")
        message = str(exc.value)
        assert "\n" not in message and message.startswith(path.name + ":"), (case, message)
        for fragment in fragments:
            assert fragment in message, (case, message)
        assert _snapshot(db_url) == before, case
    assert _submissions(db_url) == []
    assert {r.state for r in _receipts(db_url, "committee_feedback")} == {ReceiptState.ISSUED}


def test_an_outdated_version_is_refused_naming_both(cfg, db_url, tmp_path):
    out = tmp_path / "out"
    chosen = _distribute(cfg, db_url, out, "committee_feedback")
    v1 = _doc(db_url, "aterkoppling", "HSN")
    filled_v1 = tmp_path / "v1.docx"
    fill_docx(out / v1.relpath, tmp_path / "v1-handed-in.docx", {**FEEDBACK, "risk_kanslighet": ["Inga risker."]})
    submit_file(cfg, tmp_path / "v1-handed-in.docx", url=db_url, actor="t")  # the receiver disputes what came back
    fill_docx(out / v1.relpath, filled_v1, FEEDBACK)  # a corrected file, too late for version 1
    [r1] = _receipts(db_url, "committee_feedback")
    dispute(cfg, SignRequest(r1.id, _signer(cfg, r1), code_for(r1.key), comment="Risker saknas."), db_url)

    before = _snapshot(db_url)
    with pytest.raises(UserError, match=r"bestriden .*vänta på version 2"):
        submit_file(cfg, filled_v1, url=db_url, actor="t")
    assert _snapshot(db_url) == before

    cycle_id = prepare_cycle(cfg, YEAR, db_url)
    distribute(cfg, cycle_id, "committee_feedback", chosen, out, actor="test", url=db_url)
    before = _snapshot(db_url)
    with pytest.raises(UserError) as exc:
        submit_file(cfg, filled_v1, url=db_url, actor="t")
    message = str(exc.value)
    assert "version 1" in message and "version 2" in message and "inaktuell" in message and "\n" not in message
    assert _snapshot(db_url) == before

    v2 = _doc(db_url, "aterkoppling", "HSN", version=2)
    filled_v2 = tmp_path / "v2.docx"
    expected = fill_docx(out / v2.relpath, filled_v2, FEEDBACK)
    result = submit_file(cfg, filled_v2, url=db_url, actor="t")
    assert result.version == 2 and result.content == {"fields": expected}
    states = {r.version: r.state for r in _receipts(db_url, "committee_feedback")}
    assert states == {1: ReceiptState.SUPERSEDED, 2: ReceiptState.ACKNOWLEDGED}


def test_package_guards_run_before_any_document_library():
    """The checks that need no database: what inspect_package says about raw bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("[Content_Types].xml", '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Types/>')
    with pytest.raises(UserError, match="DTD"):
        inspect_package(buf.getvalue(), "dtd.docx")
    with pytest.raises(UserError, match="lösenordsskyddat"):
        inspect_package(b"\xd0\xcf\x11\xe0" + b"\0" * 100, "krypterad.docx")
    with pytest.raises(UserError, match="tom"):
        inspect_package(b"", "tom.xlsx")
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", b" " * (30 * 1024 * 1024))  # 30 MB of spaces, ~30 kB packed
    with pytest.raises(UserError, match="komprimerad"):
        inspect_package(big.getvalue(), "ratio.docx")


# ---------------------------------------------------------------------------------------------
# LibreOffice: a return saved by a real office suite (formulas computed and cached)
# ---------------------------------------------------------------------------------------------


def _soffice(tmp_path: Path, outdir: Path, target: str, files: list[Path]) -> None:
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed")
    profile = (tmp_path / "lo-profile").as_uri()
    subprocess.run(
        [soffice, f"-env:UserInstallation={profile}", "--headless", "--norestore", "--convert-to", target,
         "--outdir", str(outdir), *map(str, files)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(tmp_path)}, check=True,
    )  # fmt: skip


@pytest.mark.libreoffice
@pytest.mark.slow
def test_returns_saved_by_libreoffice_are_accepted_and_their_sums_checked(cfg, db_url, tmp_path):
    out = tmp_path / "out"
    _distribute(cfg, db_url, out, "activity_plans", lambda h: h.sender == "RLK")
    _distribute(cfg, db_url, out, "committee_feedback")
    plan, feedback = _doc(db_url, "aktivitetsplan", "RLK"), _doc(db_url, "aterkoppling", "HSN")
    # Valid files only: LibreOffice, like Word and Excel, cannot open one with XML-invalid characters.
    activities, money = _activity_edits(openpyxl.load_workbook(out / plan.relpath))
    activities[(4, "Aktivitet")] = "Styrning"
    filled = tmp_path / "in" / "aktivitetsplan.xlsx"
    filled.parent.mkdir()
    fill_xlsx(out / plan.relpath, filled, {"Aktiviteter": activities, "Detaljbudget": money}, inject=False)
    plain = {k: [t.replace(CTRL, "") for t in v] for k, v in FEEDBACK.items()}
    answers = fill_docx(out / feedback.relpath, tmp_path / "in" / "aterkoppling.docx", plain, inject=False)
    lo = tmp_path / "lo"
    _soffice(tmp_path, lo, "xlsx", [filled])
    _soffice(tmp_path, lo, "docx:MS Word 2007 XML", [tmp_path / "in" / "aterkoppling.docx"])
    cached = openpyxl.load_workbook(lo / "aktivitetsplan.xlsx", data_only=True)
    total_row = cached["Aktiviteter"].max_row
    assert cached["Aktiviteter"].cell(total_row, 7).value == sum(100 * r for r in range(2, total_row))

    sheet_result = submit_file(cfg, lo / "aktivitetsplan.xlsx", url=db_url, actor="t")
    assert _by_row(sheet_result.content["sheets"]["Aktiviteter"]) == _expected_rows(activities)
    assert _by_row(sheet_result.content["sheets"]["Detaljbudget"]) == _expected_rows(money)
    assert submit_file(cfg, lo / "aterkoppling.docx", url=db_url, actor="t").content == {"fields": answers}

    # A LibreOffice file whose cached total disagrees with its rows (the rows edited outside an
    # office suite afterwards) is refused: the cached figure is compared, not trusted.
    edited = tmp_path / "efterhand.xlsx"

    def change(name: str, data: bytes) -> bytes:
        if name == "xl/worksheets/sheet2.xml":
            data, n = re.subn(rb'(<c r="G2"[^>]*><v>)200(</v>)', rb"\g<1>201\g<2>", data)
            assert n == 1
        return data

    _zip_edit(lo / "aktivitetsplan.xlsx", edited, change)
    with pytest.raises(UserError, match=f"cell G{total_row}.*går inte ihop"):
        submit_file(cfg, edited, url=db_url, actor="t")


# ---------------------------------------------------------------------------------------------
# The inbox
# ---------------------------------------------------------------------------------------------


def _all_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".styrkedja"))


def test_inbox_sorts_files_never_loses_one_and_never_processes_one_twice(cfg, db_url, tmp_path):
    out = tmp_path / "out"
    _distribute(cfg, db_url, out, "committee_feedback", lambda h: h.sender in ("HSN", "RUN"))
    inbox = tmp_path / "inkorg"
    inbox.mkdir()
    good = inbox / "återkoppling HSN.docx"
    fill_docx(out / _doc(db_url, "aterkoppling", "HSN").relpath, good, FEEDBACK)
    shutil.copy(good, inbox / "samma igen.docx")  # the same file under another name
    (inbox / "bild.docx").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    (inbox / "~$återkoppling HSN.docx").write_bytes(b"Word's lock file")  # ignored: Word has the file open
    (tmp_path / "hemligt.txt").write_text("not for the inbox")
    os.symlink(tmp_path / "hemligt.txt", inbox / "länk.docx")
    growing = inbox / "kopieras.docx"
    growing.write_bytes(b"PK")
    stop = threading.Event()

    def writer() -> None:  # a copy still in progress: the file grows until stopped
        while not stop.is_set():
            with growing.open("ab") as fh:
                fh.write(b"x" * 100)
            time.sleep(0.02)

    t = threading.Thread(target=writer)
    t.start()
    try:
        results = watch_inbox(cfg, inbox, once=True, url=db_url, actor="inkorgen", settle=0.3)
    finally:
        stop.set()
        t.join()
    by_name = {r.name: r for r in results}
    twins = [by_name["återkoppling HSN.docx"], by_name["samma igen.docx"]]
    assert [r.outcome for r in twins] == ["processed", "processed"]
    assert sum("redan" in r.message for r in twins) == 1  # the second of the two was not processed again
    assert by_name["bild.docx"].outcome == "rejected"
    assert by_name["länk.docx"].outcome == "rejected" and "länk" in by_name["länk.docx"].message
    assert (inbox / "rejected" / "länk.docx").is_symlink()
    assert by_name["kopieras.docx"].outcome == "waiting" and growing.exists()
    assert "~$återkoppling HSN.docx" not in by_name
    assert len(_submissions(db_url)) == 1
    assert {p.name for p in (inbox / "processed").iterdir()} == {"återkoppling HSN.docx", "samma igen.docx"}
    reason = (inbox / "rejected" / "bild.docx.fel.txt").read_text(encoding="utf-8")
    assert "Skäl: bild.docx: är en PNG-bild" in reason and "kunde inte tas emot" in reason
    assert [r.state for r in _receipts(db_url, "committee_feedback")].count(ReceiptState.ACKNOWLEDGED) == 1

    # Next look: the copy has finished; the same name again does not overwrite what is there.
    shutil.copy(inbox / "rejected" / "bild.docx", inbox / "bild.docx")
    again = {r.name: r for r in watch_inbox(cfg, inbox, once=True, url=db_url, settle=0.1)}
    assert again["kopieras.docx"].outcome == "rejected" and not growing.exists()
    assert again["bild.docx"].outcome == "rejected" and "redan" in again["bild.docx"].message
    assert (inbox / "rejected" / "bild (2).docx").is_file() and (inbox / "rejected" / "bild (2).docx.fel.txt").is_file()
    assert (inbox / "rejected" / "kopieras.docx.fel.txt").is_file()
    # Nothing lost: every file dropped in is still there, under processed/ or rejected/ (or ignored).
    assert sorted(_all_files(inbox)) == sorted(
        [
            "~$återkoppling HSN.docx",
            "återkoppling HSN.docx",
            "samma igen.docx",
            "bild.docx",
            "bild.docx.fel.txt",
            "bild (2).docx",
            "bild (2).docx.fel.txt",
            "kopieras.docx",
            "kopieras.docx.fel.txt",
            "länk.docx",
            "länk.docx.fel.txt",
        ]
    )
    assert len(_submissions(db_url)) == 1


def test_inbox_keeps_a_file_it_could_not_record(cfg, db_url, tmp_path):
    out = tmp_path / "out"
    _distribute(cfg, db_url, out, "committee_feedback")
    inbox = tmp_path / "inkorg"
    inbox.mkdir()
    fill_docx(out / _doc(db_url, "aterkoppling", "HSN").relpath, inbox / "svar.docx", FEEDBACK)
    unreachable = f"sqlite:///{tmp_path / 'finns-inte' / 'app.db'}"
    [res] = watch_inbox(cfg, inbox, once=True, url=unreachable, settle=0.05)
    assert res.outcome == "error" and (inbox / "svar.docx").is_file()
    [res] = watch_inbox(cfg, inbox, once=True, url=db_url, settle=0.05)
    assert res.outcome == "processed" and len(_submissions(db_url)) == 1


def test_inbox_watches_until_stopped_and_one_watcher_per_folder(cfg, db_url, tmp_path):
    out = tmp_path / "out"
    _distribute(cfg, db_url, out, "committee_feedback")
    inbox = tmp_path / "inkorg"
    inbox.mkdir()
    stop = threading.Event()
    seen: list[str] = []
    watcher = threading.Thread(
        target=watch_inbox,
        args=(cfg, inbox),
        kwargs={
            "once": False,
            "url": db_url,
            "interval": 0.1,
            "stop": stop,
            "on_result": lambda r: seen.append(r.outcome),
        },
    )
    watcher.start()
    try:
        time.sleep(0.3)
        with pytest.raises(UserError, match="bevakas redan"):
            watch_inbox(cfg, inbox, once=True, url=db_url, settle=0)
        staged = tmp_path / "svar.docx"
        fill_docx(out / _doc(db_url, "aterkoppling", "HSN").relpath, staged, FEEDBACK)
        os.replace(staged, inbox / "svar.docx")
        deadline = time.monotonic() + 30
        while "processed" not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        watcher.join(10)
    assert not watcher.is_alive() and "processed" in seen
    assert (inbox / "processed" / "svar.docx").is_file() and len(_submissions(db_url)) == 1


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------


def _cli() -> typer.Typer:
    from flows.cli import app  # the real command line, which registers flows.cli_returns

    return app


@pytest.mark.parametrize("cmd", ["submit", "inbox"])
def test_commands_explain_themselves(cmd: str):
    result = CliRunner().invoke(_cli(), [cmd, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output and len(result.output.split()) > 40


def test_cli_submit_and_inbox(cfg, app_env, sqlite_url):
    out = app_env / "output"
    _distribute(cfg, sqlite_url, out, "committee_feedback", lambda h: h.sender in ("HSN", "RUN"))
    good = app_env / "svar.docx"
    fill_docx(out / _doc(sqlite_url, "aterkoppling", "HSN").relpath, good, FEEDBACK)
    runner = CliRunner()
    app = _cli()

    ok = runner.invoke(app, ["submit", str(good), "--config", "region", "--actor", "Sara"])
    assert ok.exit_code == 0, ok.output
    assert "mottagen" in ok.output and "HSN" in ok.output
    assert runner.invoke(app, ["submit", str(good)]).output.startswith("redan mottagen")

    bad = app_env / "fel.docx"
    bad.write_text("inte ett dokument")
    before = _snapshot(sqlite_url)
    refused = runner.invoke(app, ["submit", str(bad)])
    assert refused.exit_code == 2
    assert refused.output.strip().count("\n") == 0 and "fel.docx" in refused.output
    assert _snapshot(sqlite_url) == before

    inbox = app_env / "inkorg"
    inbox.mkdir()
    fill_docx(out / _doc(sqlite_url, "aterkoppling", "RUN").relpath, inbox / "run.docx", FEEDBACK)
    shutil.copy(bad, inbox / "fel.docx")
    res = runner.invoke(app, ["inbox", str(inbox), "--once"])
    assert res.exit_code == 0, res.output
    assert "1 mottagna, 1 avvisade" in res.output
    assert (inbox / "processed" / "run.docx").is_file() and (inbox / "rejected" / "fel.docx.fel.txt").is_file()
    with session_scope(sqlite_url) as s:
        assert {a.actor for a in s.exec(select(AuditEntry).where(AuditEntry.action == "return_received"))} == {
            "Sara",
            "inkorgen",
        }
