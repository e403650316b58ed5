"""What comes back goes forward: values typed into one return reach every later document that must
carry them, on a real database, through the real distribution, returns and receipts.

One typed value per handoff, followed from the file it was typed into (filled with the secretary's
helpers, submitted with tasks.returns.submit_file) to the documents rendered after it, re-opened
with python-docx and openpyxl:

- a sentence of the planning material's external analysis → the planning prerequisites §3;
- an investment (its name and its expense) from the investment prioritisation → the planning
  prerequisites' appendix 3 and the Excel investment plan → the regional plan proposal §5 → the
  decided plan;
- a sentence of the committee feedback's risk analysis → the proposal, under the committee's name;
- an assignment typed into the proposal → the next body's draft → the decided plan, dated by the
  assembly's decision;
- a commitment and an own risk of the operational plan → the activity plan's goal links and the
  level report's internal-control follow-up;
- a figure of the detailed budget → the follow-up workbook's budget, the same line → the level
  report, checked against the committee's frame;
- a lesson from the follow-up dialogue → the level report, with the unit's name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import openpyxl
import yaml
from docx import Document as open_docx
from secretary import fill_docx, fill_xlsx
from sqlmodel import select

from config.loader import load_config
from models.db import session_scope
from models.tables import Document, HandoffMode, Receipt, ReceiptState
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.documents import catalog
from tasks.documents.content import FOLLOW_UP_ROWS, INVESTMENT_CRITERIA
from tasks.documents.model import DocRequest
from tasks.followup_calendar import occasions
from tasks.handoffs import handoffs_for_phase
from tasks.level_reports import hand_up_levels
from tasks.receipts import SignRequest, code_for, sign
from tasks.returns import submit_file

YEAR = 2028
KEEP_LEAVES = {"EKO", "FSK", "GRS", "HTJ", "SAB", "GPA", "BIB"}
COMMITTEE, ADMIN, UNIT = "BUN", "SUT", "FSK"

INVESTMENT = "Ny förskola i Nödinge"
EXPENSE = 48_500
RISK_SENTENCE = "Lärarbristen kan försena den nya förskolan med ett år."
ASSIGNMENT = "Barn- och utbildningsnämnden får i uppdrag att utreda fler förskoleplatser i Nödinge."
COMMITMENT = "Öppna förskolan i Nödinge hösten 2029"
OWN_RISK = "Förskolan bemannas inte i tid"
STAFF_BUDGET = 12_345
LESSON = "Tidiga rekryteringar gav full bemanning i förskolan."
OUTLOOK = "Antalet barn i förskoleåldern ökar med åtta procent till 2031."


def _trimmed_config(tmp: Path) -> Path:
    data = yaml.safe_load(Path("config/municipality.yaml").read_text(encoding="utf-8"))
    data["units"] = [u for u in data["units"] if u["level"] != "unit" or u["id"] in KEEP_LEAVES]
    path = tmp / "kommun.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _distribute(cfg: Any, cycle_id: int, phase: str, url: str, out: Path, occasion: Any = None) -> None:
    handoffs = handoffs_for_phase(cfg, YEAR, phase, occasion, url=url)
    distribute(cfg, cycle_id, phase, handoffs, out, actor="test", url=url)


def _docs(url: str, kind: str, unit: str) -> list[Document]:
    with session_scope(url) as s:
        return list(
            s.exec(
                select(Document).where(Document.kind == kind, Document.unit_id == unit).order_by(Document.id)  # type: ignore[arg-type]
            )
        )


def _path(url: str, out: Path, kind: str, unit: str) -> Path:
    found = _docs(url, kind, unit)
    assert found, (kind, unit)
    return out / found[-1].relpath


def _docx_text(path: Path) -> str:
    doc = open_docx(path)
    parts = [p.text for p in doc.paragraphs]
    for t in doc.tables:
        parts += [" | ".join(c.text for c in row.cells) for row in t.rows]
    return "\n".join(parts)


def _rows(path: Path, sheet: str) -> list[dict[str, Any]]:
    ws = openpyxl.load_workbook(path)[sheet]
    head = [c.value for c in ws[1]]
    return [dict(zip(head, r, strict=False)) for r in ws.iter_rows(min_row=2, values_only=True)]


def _sign_all(cfg: Any, url: str, phase: str, comments: dict[str, str] | None = None) -> None:
    """The receivers sign what is waiting (an assembly's body with its decision as the comment)."""
    with session_scope(url) as s:
        waiting = list(
            s.exec(
                select(Receipt).where(
                    Receipt.phase == phase,
                    Receipt.state.in_([ReceiptState.ISSUED, ReceiptState.ACKNOWLEDGED]),  # type: ignore[attr-defined]
                )
            )
        )
    for r in waiting:
        if r.mode == HandoffMode.FILL_IN and r.state == ReceiptState.ISSUED:
            continue  # its return is not in (the test hands in only what it follows)
        signer = cfg.unit(r.receiver_unit).signatories[0].id
        comment = (comments or {}).get(r.receiver_unit)
        sign(cfg, SignRequest(r.id, signer, code_for(r.key), comment=comment, actor="test"), url)


def _fill_fields(cfg: Any, url: str, out: Path, tmp: Path, kind: str, unit: str, given: dict[str, str]) -> None:
    doc = _docs(url, kind, unit)[-1]
    fields = catalog.expected_fields(cfg, YEAR, DocRequest(doc.kind, doc.phase, unit, doc.version), url=url)
    answers = {name: [given.get(name, f"{label}: nämndens svar.")] for name, label in fields.items()}
    filled = tmp / f"{unit}-{kind}.docx"
    fill_docx(out / doc.relpath, filled, answers, inject=False)
    submit_file(cfg, filled, url=url, actor=f"Sekreterare {unit}")


def test_typed_values_travel_the_chain(db_url: str, tmp_path: Path) -> None:
    run_chain(db_url, tmp_path / "out", tmp_path)


def run_chain(url: str, out: Path, tmp: Path) -> Any:
    """The plan year of the trimmed municipality with a return at every handoff, each value
    checked where it must arrive; the documents are left under `out`. Returns the configuration."""
    saved = {k: os.environ.get(k) for k in ("STYRKEDJA_DATABASE_URL", "STYRKEDJA_RENDER_WORKERS")}
    os.environ |= {"STYRKEDJA_DATABASE_URL": url, "STYRKEDJA_RENDER_WORKERS": "1"}
    try:
        return _chain(url, out, tmp)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _chain(url: str, out: Path, tmp: Path) -> Any:
    cfg = load_config(_trimmed_config(tmp))
    names = {u.id: u.name for u in cfg.units}
    board = cfg.organisation.roles.executive_board
    cycle_id = prepare_cycle(cfg, YEAR, url)

    # Before anything has come back, the documents say so instead of showing an empty box.
    _distribute(cfg, cycle_id, "preparation", url, out)
    early = catalog.expected(cfg, YEAR, DocRequest("regionplan_forslag", "regional_plan", "KSAU"), url=url)
    assert "Inga investeringsförslag har lämnats in ännu." in (early.markup or "")
    assert f"Ingen återkoppling har lämnats in från {names[COMMITTEE]} ännu." in (early.markup or "")

    # 1. The investment prioritisation: one investment typed in by the finance department.
    prio = _path(url, out, "investeringsprioritering", board)
    scores = {f"{name} (1–5)": 4 for name, _, _ in INVESTMENT_CRITERIA}
    row = {
        "Nämnd/styrelse": names[COMMITTEE],
        "Investeringsobjekt": INVESTMENT,
        "Beskrivning och behov": "Fler barn i Nödinge",
        "Utgift totalt": EXPENSE,
        "Startår": YEAR + 1,
        **scores,
    }
    filled = tmp / "prio.xlsx"
    fill_xlsx(prio, filled, {"Investeringar": {(2, h): v for h, v in row.items()}}, inject=False)
    submit_file(cfg, filled, url=url, actor="Controller")
    # The planning material: one sentence of the external analysis.
    _fill_fields(cfg, url, out, tmp, "planeringsunderlag", board, {"omvarldsanalys": OUTLOOK})
    _sign_all(cfg, url, "preparation")

    # → planning prerequisites: appendix 3 in Word and the Excel investment plan.
    _distribute(cfg, cycle_id, "planning_prerequisites", url, out)
    pf = _docx_text(_path(url, out, "planeringsforutsattningar", COMMITTEE))
    assert INVESTMENT in pf and "48\u00a0500" in pf and "Inga investeringsförslag" not in pf
    section_3 = pf[pf.rindex("3 Förutsättningar, omvärld och utveckling") : pf.rindex("4 Kommunen i jämförelse")]
    assert OUTLOOK in section_3 and "inte lämnats in ännu" not in section_3
    plan = [r for r in _rows(_path(url, out, "pf_bilagor", COMMITTEE), "Investeringsplan") if r["Investeringsobjekt"]]
    assert plan[0]["Nämnd/styrelse"] == names[COMMITTEE] and plan[0]["Investeringsobjekt"] == INVESTMENT
    assert plan[0][str(YEAR + 1)] == EXPENSE
    _sign_all(cfg, url, "planning_prerequisites")

    # 2. Committee feedback: the risk and sensitivity analysis carries one sentence.
    _distribute(cfg, cycle_id, "committee_feedback", url, out)
    for c in cfg.committees():
        given = {"risk_kanslighet": RISK_SENTENCE} if c.id == COMMITTEE else {}
        _fill_fields(cfg, url, out, tmp, "aterkoppling", c.id, given)
    _sign_all(cfg, url, "committee_feedback")

    # 3. The regional plan, stage by stage: the working committee's draft carries the feedback and
    # the investment; the assignment it types in reaches the board's draft and the decided plan.
    _distribute(cfg, cycle_id, "regional_plan", url, out)
    draft = _docx_text(_path(url, out, "regionplan_forslag", "KSAU"))
    committee_part = draft[draft.index(names[COMMITTEE]) :]
    assert RISK_SENTENCE in committee_part and INVESTMENT in draft and "48\u00a0500" in draft
    _fill_fields(cfg, url, out, tmp, "regionplan_forslag", "KSAU", {"uppdrag": ASSIGNMENT})
    decisions = {
        "KSAU": "§ 12 KSAU föreslår kommunstyrelsen att föreslå kommunfullmäktige att fastställa planen.",
        "KS": "§ 40 Kommunstyrelsen föreslår kommunfullmäktige att fastställa planen.",
        "KF": "§ 7 Kommunfullmäktige fastställer plan och budget.",
    }
    _sign_all(cfg, url, "regional_plan", decisions)
    _distribute(cfg, cycle_id, "regional_plan", url, out)
    assert ASSIGNMENT in _docx_text(_path(url, out, "regionplan_forslag", "KS"))
    for body in ("KS", "KF"):
        if body == "KF":
            _distribute(cfg, cycle_id, "regional_plan", url, out)
        _fill_fields(cfg, url, out, tmp, "regionplan_forslag", body, {"uppdrag": ASSIGNMENT})
        _sign_all(cfg, url, "regional_plan", decisions)
    _distribute(cfg, cycle_id, "regional_plan", url, out)
    decided_path = _path(url, out, "regionplan_beslutad", COMMITTEE)
    decided = _docx_text(decided_path)
    assert ASSIGNMENT in decided and INVESTMENT in decided and "48\u00a0500" in decided
    with session_scope(url) as s:
        kf = s.exec(select(Receipt).where(Receipt.phase == "regional_plan", Receipt.receiver_unit == "KF")).one()
    kf_day = kf.signed_at.date() if kf.signed_at else None  # type: ignore[union-attr]
    assert kf_day is not None
    cover = open_docx(decided_path).core_properties
    assert cover.created is not None and abs((cover.created.date() - kf_day).days) <= 1
    _sign_all(cfg, url, "regional_plan")

    # 4. The operational plan: a commitment and the committee's own risk.
    _distribute(cfg, cycle_id, "operational_plans", url, out)
    mall = _path(url, out, "verksamhetsplan_mall", COMMITTEE)
    wb = openpyxl.load_workbook(mall)
    edits: dict[str, dict[tuple[int, str], Any]] = {"Fullmäktiges mål": {}, "Indikatorer": {}, "Intern kontroll": {}}
    for r in range(2, wb["Fullmäktiges mål"].max_row + 1):
        if wb["Fullmäktiges mål"].cell(r, 1).value:
            edits["Fullmäktiges mål"][(r, "Nämndens bidrag och åtaganden")] = "Vi bidrar."
    for r in range(2, wb["Indikatorer"].max_row + 1):
        if wb["Indikatorer"].cell(r, 1).value:
            edits["Indikatorer"][(r, "Nämndens målvärde")] = 10
    ic = wb["Intern kontroll"]
    prefilled = [r for r in range(2, ic.max_row + 1) if ic.cell(r, 2).value]
    for r in prefilled:
        edits["Intern kontroll"] |= {(r, "Sannolikhet (1–4)"): 2, (r, "Konsekvens (1–4)"): 2}
    new = prefilled[-1] + 1
    edits["Intern kontroll"] |= {
        (new, "Kontrollområde"): "Bemanning",
        (new, "Risk"): OWN_RISK,
        (new, "Sannolikhet (1–4)"): 3,
        (new, "Konsekvens (1–4)"): 4,
        (new, "Kontrollmoment"): "Uppföljning av rekryteringar",
    }
    edits["Åtaganden"] = {
        (2, "Åtagande"): COMMITMENT,
        (2, "Koppling till mål"): next(g.title for g in cfg.goals if not g.targeted or COMMITTEE in g.targeted),
        (2, "Ansvarig förvaltning"): names[ADMIN],
    }
    filled = tmp / "vp.xlsx"
    fill_xlsx(mall, filled, edits, inject=False)
    submit_file(cfg, filled, url=url, actor="Nämndsekreterare")
    _fill_fields(cfg, url, out, tmp, "verksamhetsplan", COMMITTEE, {})
    _sign_all(cfg, url, "operational_plans")

    # → the activity plan links activities to the commitment.
    _distribute(cfg, cycle_id, "activity_plans", url, out)
    ap = _path(url, out, "aktivitetsplan", ADMIN)
    ap_wb = openpyxl.load_workbook(ap)
    assert [r["Åtagande"] for r in _rows(ap, "Nämndens åtaganden") if r["Åtagande"]] == [COMMITMENT]
    lists = "\n".join(str(c.value) for ws in ap_wb.worksheets for row in ws.iter_rows() for c in row if c.value)
    assert f"Åtagande: {COMMITMENT}" in lists

    # 5. The detailed budget: one figure on the staff-cost line of the unit.
    budget_ws = ap_wb["Detaljbudget"]
    units = [budget_ws.cell(r, 1).value for r in range(2, budget_ws.max_row)]
    money: dict[tuple[int, str], Any] = {}
    for r, name in enumerate(units, start=2):
        money |= {
            (r, "Personalkostnader"): STAFF_BUDGET if name == names[UNIT] else 9_000,
            (r, "Lokalkostnader"): 1_000,
            (r, "Övriga kostnader"): 500,
            (r, "Intäkter (anges negativt)"): -200,
        }
    activities = {(2, "Aktivitet"): "Rekrytera förskollärare", (2, "Ansvarig"): "Rektor"}
    filled = tmp / "ap.xlsx"
    fill_xlsx(ap, filled, {"Detaljbudget": money, "Aktiviteter": activities}, inject=False)
    submit_file(cfg, filled, url=url, actor="Controller")
    _sign_all(cfg, url, "activity_plans")

    # → the follow-up: the unit's budget is its detailed budget, on the same line.
    occasion = next(o for o in occasions(cfg, YEAR) if o.key == f"delar-{YEAR}-08-31")
    _distribute(cfg, cycle_id, "follow_up", url, out, occasion)
    fu = _path(url, out, "uppfoljning", UNIT)
    eco = {r["Post"]: r for r in _rows(fu, "Ekonomi") if r["Post"] in FOLLOW_UP_ROWS}
    assert eco["Personalkostnader"]["Budget helår"] == STAFF_BUDGET
    instructions = "\n".join(str(c.value) for c in openpyxl.load_workbook(fu)["Instruktioner"]["B"] if c.value)
    assert occasion.deadline.day and f"senast {occasion.deadline.day} " in instructions

    # 6. The unit hands in its follow-up with a lesson; its administration's report carries it.
    filled = tmp / "fu.xlsx"
    figures = {(r, "Utfall hittills"): 10 for r in range(2, 2 + len(eco))} | {
        (r, "Prognos helår"): 20 for r in range(2, 2 + len(eco))
    }
    ws = openpyxl.load_workbook(fu)["Mål"]
    goals = {(r, "Bedömning"): "Grön" for r in range(2, ws.max_row + 1) if ws.cell(r, 1).value}
    fill_xlsx(fu, filled, {"Ekonomi": figures, "Mål": goals}, inject=False)
    submit_file(cfg, filled, url=url, actor="Förskolechef")
    story = _docs(url, "uppfoljning_berattelse", UNIT)[-1]
    extra = (("occasion", occasion.name), ("occasion_key", occasion.key))
    fields = catalog.expected(
        cfg, YEAR, DocRequest(story.kind, story.phase, UNIT, story.version, extra), url=url
    ).fields
    answers = {n: ["Inget."] for n in fields} | {"lardomar": [LESSON]}
    filled = tmp / "fu.docx"
    fill_docx(out / story.relpath, filled, answers, inject=False)
    submit_file(cfg, filled, url=url, actor="Förskolechef")
    hand_up_levels(cfg, cycle_id, occasion, out, actor="test", overrides={ADMIN: "Grundskolan sent"}, url=url)
    with session_scope(url) as s:
        report = s.exec(select(Document).where(Document.kind == "nivarapport", Document.unit_id == ADMIN)).one()
    text = _docx_text(out / report.relpath)
    assert LESSON in text and names[UNIT] in text[text.index("Lärdomar") if "Lärdomar" in text else 0 :]
    assert OWN_RISK in text  # the committee's own risk, in the internal-control follow-up
    # The committee's and the executive board's reports check the detailed budget against the frame.
    net = (STAFF_BUDGET + 1_000 + 500 - 200) + (9_000 + 1_000 + 500 - 200)
    overrides = {ADMIN: "Grundskolan sent", COMMITTEE: "Grundskolan sent", board: "Grundskolan sent"}
    hand_up_levels(cfg, cycle_id, occasion, out, actor="test", overrides=overrides, url=url)
    for level in (COMMITTEE, board):
        with session_scope(url) as s:
            doc = s.exec(select(Document).where(Document.kind == "nivarapport", Document.unit_id == level)).one()
        rows = [
            [c.text for c in row.cells]
            for t in open_docx(out / doc.relpath).tables
            if t.rows[0].cells[0].text == "Nämnd" and "Inom ram" in t.rows[0].cells[-1].text
            for row in t.rows[1:]
        ]
        mine = next(r for r in rows if r[0] == names[COMMITTEE])
        assert mine[2].replace("\u00a0", " ") == f"{net:,}".replace(",", " ")
        assert mine[4] == ("Ja" if net <= cfg.budget.frames[COMMITTEE] else "Nej")
    return cfg
