"""Follow-up aggregation on a real database (SQLite and PostgreSQL): every unit of the sample region
fills in and hands in its follow-up return, as a secretary would, and the level reports add up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openpyxl
import pytest
from secretary import fill_docx, fill_xlsx
from sqlmodel import select

from config.loader import load_config
from models.db import session_scope
from models.tables import Document
from tasks.aggregation import INVESTMENTS, Figures, OrgTree, aggregate, aggregate_returns, completeness
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.documents import catalog
from tasks.documents.content import FOLLOW_UP_ROWS
from tasks.documents.model import DocRequest
from tasks.followup_calendar import occasions
from tasks.handoffs import handoffs_for_phase
from tasks.returns import submit_file

YEAR = 2028
MISSING = "LAB"  # one unit of HSF never hands in: HSF is incomplete
COST = 10_000.0
INCOME = -2_000.0

# Raised items and who acts on them (see the module's rule): NSH's is acted on by HSF, SKS's
# passes HSF and HSN and is acted on by RS, STV's is acted on by nobody and reaches RF.
RAISES = {
    "NSH": "Fler vårdplatser i Umeå",
    "SKS": "Ny lönemodell för sjuksköterskor",
    "STV": "Samordnad upphandling av färdtjänst",
}
ACTS = {"HSF": ["Fler vårdplatser i Umeå", "Vi ser över bemanningen."], "RS": ["ny lönemodell för  sjuksköterskor"]}


@pytest.fixture(scope="module")
def cfg():
    return load_config("region")


def _figures(unit: str, leaf: bool) -> dict[str, Figures]:
    """Known figures per unit. Non-leaf units report a token 1 per row: their return is the summary
    they hand up and must not be added to the sum of their children."""
    out: dict[str, Figures] = {}
    for post in FOLLOW_UP_ROWS:
        budget = (INCOME if post == "Intäkter" else COST) if leaf else 1.0
        forecast = budget
        if unit == "NSH" and post == "Personalkostnader":
            forecast = 11_000.0  # −10 %: flagged at NSH, diluted below the threshold at HSF
        if unit in ("FTVN", "FTVS", "STV") and post == "Lokalkostnader":
            forecast = 7_000.0  # +30 % in all of TVF: flagged at TVF and TAN too
        out[post] = Figures(budget, budget / 2, forecast)
    if unit == "PSY":
        out["Läkemedel"] = Figures(500.0, 200.0, 520.0)  # a free row: a category of its own
    if unit == "AMB":
        out[INVESTMENTS] = Figures(12_000.0, 3_000.0, 11_500.0)
    return out


def _colour(unit: str, row: int) -> str:
    return ("Grön", "Gul", "Röd")[(len(unit) + row) % 3]


def _hand_in(cfg, url: str, out: Path, tmp: Path, occasion, unit: str, leaf: bool) -> list[tuple[str, str | None]]:
    """Fill in and submit both documents of one unit; returns the goal assessments typed."""
    with session_scope(url) as s:
        docs = {
            d.kind: d for d in s.exec(select(Document).where(Document.phase == "follow_up", Document.unit_id == unit))
        }
    wb = openpyxl.load_workbook(out / docs["uppfoljning"].relpath)
    figures = _figures(unit, leaf)
    economy: dict[tuple[int, str], Any] = {}
    for r, post in enumerate(FOLLOW_UP_ROWS, start=2):
        assert wb["Ekonomi"].cell(r, 1).value == post
        f = figures[post]
        economy |= {(r, "Budget helår"): f.budget, (r, "Utfall hittills"): f.outcome, (r, "Prognos helår"): f.forecast}
    if "Läkemedel" in figures:
        f = figures["Läkemedel"]
        r = len(FOLLOW_UP_ROWS) + 2
        economy |= {(r, "Post"): "Läkemedel", (r, "Budget helår"): f.budget}
        economy |= {(r, "Utfall hittills"): f.outcome, (r, "Prognos helår"): f.forecast}
    investments: dict[tuple[int, str], Any] = {}
    if INVESTMENTS in figures:
        f = figures[INVESTMENTS]
        investments = {(2, "Projekt"): "Ny ambulansstation", (2, "Budget"): f.budget}
        investments |= {(2, "Utfall hittills"): f.outcome, (2, "Prognos"): f.forecast}
    goals: dict[tuple[int, str], Any] = {}
    typed: list[tuple[str, str | None]] = []
    ws = wb["Mål"]
    for r in range(2, ws.max_row + 1):
        goal_id = ws.cell(r, 1).value
        if goal_id is None:
            continue
        goals[(r, "Bedömning")] = _colour(unit, r)
        goals[(r, "Kommentar och analys")] = f"Kommentar från {unit}"
        typed.append((goal_id, _colour(unit, r)))
    sheet_file = tmp / f"{unit}.xlsx"
    fill_xlsx(
        out / docs["uppfoljning"].relpath,
        sheet_file,
        {"Ekonomi": economy, "Mål": goals, "Investeringar": investments},
        inject=False,
    )
    submit_file(cfg, sheet_file, url=url, actor=f"Chef {unit}")

    story = docs["uppfoljning_berattelse"]
    extra = (("occasion", occasion.name), ("occasion_key", occasion.key))
    fields = catalog.expected(cfg, YEAR, DocRequest(story.kind, story.phase, unit, story.version, extra)).fields
    answers = {name: [f"{label} – svar från {unit}."] for name, label in fields.items()}
    answers["lyfter_vidare"] = [RAISES[unit]] if unit in RAISES else ["Inget."]
    answers["gor_sjalva"] = ACTS.get(unit, ["Vi följer upp månadsvis."])
    story_file = tmp / f"{unit}.docx"
    fill_docx(out / story.relpath, story_file, answers, inject=False)
    submit_file(cfg, story_file, url=url, actor=f"Chef {unit}")
    return typed


def _expected_totals(tree: OrgTree, leaves_in: set[str]) -> dict[str, dict[str, Figures]]:
    """Recursively: a unit with reporting children sums its children, otherwise its own figures."""
    kids = tree.children()

    def go(unit: str) -> dict[str, Figures]:
        if unit not in kids:
            return _figures(unit, True) if unit in leaves_in else {}
        out: dict[str, Figures] = {}
        for c in kids[unit]:
            for name, f in go(c).items():
                out[name] = out[name] + f if name in out else f
        expected[unit] = out
        return out

    expected: dict[str, dict[str, Figures]] = {}
    root = next(u for u, p in tree.parent.items() if p is None)
    go(root)
    return expected


def test_level_reports_add_up_flag_deviations_and_carry_raised_items(cfg, db_url, tmp_path):
    occasion = next(o for o in occasions(cfg, YEAR) if o.kind == "interim")
    out = tmp_path / "out"
    cycle_id = prepare_cycle(cfg, YEAR, db_url)
    handoffs = handoffs_for_phase(cfg, YEAR, "follow_up", occasion)
    distribute(cfg, cycle_id, "follow_up", handoffs, out, actor="test", url=db_url)
    tree = OrgTree.from_config(cfg)
    kids = tree.children()
    senders = [h.sender for h in handoffs]
    assert MISSING in senders and "RSAU" not in senders
    typed: list[tuple[str, str | None]] = []
    for unit in senders:
        if unit != MISSING:
            typed += _hand_in(cfg, db_url, out, tmp_path, occasion, unit, unit not in kids)

    agg = aggregate(cfg, cycle_id, occasion.key, db_url)
    threshold = cfg.follow_up.deviation_threshold_percent
    assert threshold == 2.0

    # Figures: every level is the sum of the level below, recursively up to the assembly.
    leaves = {u for u in senders if u not in kids and u != MISSING}
    expected = _expected_totals(tree, leaves)
    for unit, totals in expected.items():
        assert dict(agg[unit].totals) == totals, unit
        below = [agg[c].totals for c in kids[unit] if c in agg.reports]
        for name, f in agg[unit].totals.items():
            assert f.budget == sum(t[name].budget for t in below if name in t), (unit, name)
            assert f.forecast == sum(t[name].forecast or 0 for t in below if name in t), (unit, name)
    n = len(leaves)
    rf = agg["RF"].totals
    assert rf["Personalkostnader"] == Figures(COST * n, COST * n / 2, COST * n + 1_000)
    assert rf["Intäkter"].budget == INCOME * n and rf["Läkemedel"] == Figures(500.0, 200.0, 520.0)
    assert rf[INVESTMENTS] == Figures(12_000.0, 3_000.0, 11_500.0)
    assert agg["HSF"].reported is not None and agg["HSF"].reported["Personalkostnader"].budget == 1.0
    assert agg["RF"].reported is None  # the assembly hands nothing up

    # Deviations: beyond the threshold, and only those, at every level.
    nsh = {d.category: d for d in agg["NSH"].deviations}
    assert set(nsh) == {"Personalkostnader"} and nsh["Personalkostnader"].amount == -1_000.0
    assert nsh["Personalkostnader"].percent == pytest.approx(-10.0)
    # −1,000 on 70,000 is −1.4 %: not flagged at HSF; PSY's Läkemedel and AMB's investment
    # are the only ones of their category, so their deviations stay whole all the way up.
    hsf_flags = {d.category: round(d.percent, 2) for d in agg["HSF"].deviations}
    assert hsf_flags == {"Läkemedel": -4.0, INVESTMENTS: 4.17}
    for unit in ("FTVN", "TVF", "TAN"):
        [dev] = agg[unit].deviations
        assert (dev.category, dev.percent) == ("Lokalkostnader", pytest.approx(30.0)), unit
    lok = rf["Lokalkostnader"]
    assert lok.deviation_percent == pytest.approx(9_000 / (COST * n) * 100)
    # 9,000 of 300,000 = 3 %
    assert {d.category for d in agg["RS"].deviations} == {"Lokalkostnader", "Läkemedel", INVESTMENTS}
    assert {d.category for d in agg["PSY"].deviations} == {"Läkemedel"}  # −4 %
    for unit, report in agg.reports.items():
        flagged = {d.category for d in report.deviations}
        beyond = {k for k, f in report.totals.items() if abs(f.deviation_percent or 0) > threshold}
        assert flagged == beyond, unit

    # Goals: per goal and colour, every return of the region (the level's own included) is counted.
    counts: dict[str, dict[str, int]] = {}
    for goal_id, colour in typed:
        counts.setdefault(goal_id, {"Grön": 0, "Gul": 0, "Röd": 0})[colour] += 1
    assert {g: dict(s.counts) for g, s in agg["RF"].goals.items()} == counts
    some_goal = next(iter(agg["HSF"].goals.values()))
    assert {c.unit for c in some_goal.comments} == {"HSF"} | {c for c in kids["HSF"] if c != MISSING}
    assert all(c.comment == f"Kommentar från {c.unit}" for c in some_goal.comments)

    # Raised items: in the parent's report, further up until a level acts on them.
    def texts(items) -> dict[str, tuple[str, ...]]:
        return {i.text: (i.origin, *i.path[1:]) for i in items}

    assert texts(agg["HSF"].acted_on) == {RAISES["NSH"]: ("NSH",)}
    assert texts(agg["HSF"].raised) == {RAISES["SKS"]: ("SKS",)}
    assert texts(agg["HSN"].raised) == {RAISES["SKS"]: ("SKS", "HSF")}
    assert texts(agg["RS"].acted_on) == {RAISES["SKS"]: ("SKS", "HSF", "HSN")}
    assert texts(agg["TVF"].raised) == {RAISES["STV"]: ("STV",)}
    assert texts(agg["RF"].raised) == {RAISES["STV"]: ("STV", "TVF", "TAN", "RS")}
    assert agg["RF"].acted_on == () and agg["NSH"].raised == ()  # "Inget." is not an item

    # Completeness: HSF misses LAB and may not hand up; the rest are whole.
    hsf = agg["HSF"].completeness
    assert hsf.missing == (MISSING,) and not hsf.complete and MISSING not in hsf.returned
    assert [u for u, r in agg.reports.items() if not r.completeness.complete] == ["HSF"]
    assert agg["RS"].completeness.expected.count("RSAU") == 0 and agg["RF"].completeness.complete
    assert completeness(cfg, hsf.returned, "HSF") == hsf
    assert completeness(cfg, [*hsf.returned, MISSING], "HSF").complete


def test_half_a_return_is_not_a_return():
    """Only the workbook in (the narrative missing) leaves the unit missing for its parent."""
    tree = OrgTree(parent={"A": None, "B": "A", "C": "A"}, level={"A": "assembly", "B": "unit", "C": "unit"})
    sheet = {"sheets": {"Ekonomi": [{"row": 2, "context": {"Post": "Intäkter"}, "values": {"Budget helår": -5}}]}}
    returns = {
        ("B", "uppfoljning"): sheet,
        ("B", "uppfoljning_berattelse"): {"fields": {}},
        ("C", "uppfoljning"): sheet,
    }
    agg = aggregate_returns(tree, returns, "x", 2.0)
    assert agg["A"].completeness.missing == ("C",) and agg["A"].completeness.returned == ("B",)
    assert agg["A"].totals["Intäkter"] == Figures(-10.0, 0.0, None)  # no forecast given: no deviation
    assert agg["A"].deviations == ()


def test_an_open_item_of_an_earlier_occasion_is_acted_on_later(cfg, db_url):
    """Raised in the August report and acted on by nobody, an item stays open at the top; in the
    annual report the committee on its way lists it under "Vad gör vi själva?" and it is acted on.
    Stored once however often an occasion is synchronised."""
    from models.tables import RaisedIssue
    from tasks.aggregation import own_actions
    from tasks.level_reports import issues_reaching, sync_raised_issues

    august, annual = (o for o in occasions(cfg, YEAR) if o.key in (f"delar-{YEAR}-08-31", f"ar-{YEAR}-12-31"))
    cycle_id = prepare_cycle(cfg, YEAR, db_url)
    tree = OrgTree.from_config(cfg)

    def story(**fields: str) -> dict[str, Any]:
        return {"fields": fields}

    first = {("NSH", "uppfoljning_berattelse"): story(lyfter_vidare="Fler vårdplatser\nInget", gor_sjalva="-")}
    agg = aggregate_returns(tree, first, august.key, 2.0)
    for _ in range(2):  # a re-run records nothing twice
        issues = sync_raised_issues(cfg, cycle_id, august, agg, own_actions(first), url=db_url)
    [item] = issues
    assert (item.state, item.path) == ("open", ("NSH", "HSF", "HSN", "RS", "RF"))
    assert [i.text for i in issues_reaching(issues, "HSN", annual.key)] == ["Fler vårdplatser"]  # carried over
    assert issues_reaching(issues, "NSH", august.key) == []  # not in the raiser's own report

    later = {("HSN", "uppfoljning_berattelse"): story(lyfter_vidare="Inget", gor_sjalva="fler  VÅRDPLATSER")}
    assert own_actions(later) == {"HSN": {"fler vårdplatser"}}
    agg = aggregate_returns(tree, later, annual.key, 2.0)
    [item] = sync_raised_issues(cfg, cycle_id, annual, agg, own_actions(later), url=db_url)
    assert (item.state, item.acted_by_unit) == ("acted_on", "HSN")
    assert issues_reaching([item], "RS", annual.key) == []  # acted on: no longer listed above
    with session_scope(db_url) as s:
        assert len(s.exec(select(RaisedIssue)).all()) == 1
