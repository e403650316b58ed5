"""Per-kind content of each document: the template context (plain data only, since an
organisation's templates run in a sandbox), the tables of a Word document and the sheets of a
workbook. Each builder takes the year's shared data, the recipient unit and the request."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import date
from typing import Any

from config.schema import Unit
from models.errors import UserError
from tasks.documents import text, word
from tasks.documents.content import (
    ACTIVITY_ROWS_PER_UNIT,
    BASIS_SECTIONS,
    COMMITTEE_DIALOGUE_FIELDS,
    COMMON_CONTROL_SCORES,
    COMMON_CONTROLS,
    DIALOGUE_FIELDS,
    FEEDBACK_FIELDS,
    FOLLOW_UP_ROWS,
    FREQUENCIES,
    INVESTMENT_CRITERIA,
    TRAFFIC_LIGHTS,
    YES_NO,
)
from tasks.documents.model import (
    ColumnSpec,
    DocMeta,
    DocRequest,
    Fixed,
    Picture,
    RiskMatrixSpec,
    SheetSpec,
    TableData,
    follow_up_figure_columns,
)
from tasks.documents.returned import BUDGET_COLUMNS, Investment, Returned
from tasks.documents.yeardata import HORIZON_YEARS, INVESTMENT_YEARS, YearData, one_line
from tasks.followup_calendar import find_occasion
from tasks.handoffs import DECISION_CHAIN, planned_decision_day
from tasks.wheel_picture import wheel_png

ARSHJUL_CAPTION = (
    "Figur: årshjulet. Faserna är ringar, inifrån och ut i tidsordning; de numrerade märkena är milstolparna, "
    "som listas bredvid hjulet och i tabellen nedan."
)


def context(cyc: YearData, unit: Unit, req: DocRequest, meta: DocMeta) -> dict[str, Any]:
    phase = next((p for p in cyc.phases if p["id"] == req.phase_id), None)
    committee_id = cyc.committee_of.get(unit.id)
    # The day the return is due: the follow-up occasion's deadline, else the phase's receipt
    # deadline in the annual wheel (the handoff's deadline, tasks.handoffs).
    due = phase["deadline"] if phase else None
    if req.get("occasion_key"):
        # An occasion no longer configured keeps the phase's deadline.
        with contextlib.suppress(UserError):
            due = find_occasion(cyc.cfg, cyc.plan_year, req.get("occasion_key") or "").deadline
    frames = cyc.frames.get(committee_id or "", None)
    return {
        "org": cyc.org,
        # The cover date stays out of the text: it is not part of the content hash.
        "meta": meta.hashable() | {"cycle": meta.cycle},
        "unit": cyc.unit_ctx(unit),
        "plan_year": cyc.plan_year,
        "horizon_end": cyc.horizon_end,
        "years": cyc.years,
        "invest_years": cyc.invest_years,
        "phase": phase or {"id": req.phase_id, "name": meta.phase_name, "purpose": "", "deadline": None},
        "due": due,
        "phases": cyc.phases,
        "phase_by_id": {p["id"]: p for p in cyc.phases},
        "timetable": cyc.timetable,
        "goals": cyc.goals,
        "unit_goals": cyc.goals_for(committee_id),
        "areas": list(dict.fromkeys(g["area"] for g in cyc.goals)),
        "frames": [{"year": y, "amount": a} for y, a in zip(cyc.years, frames, strict=True)] if frames else [],
        "growth_percent": cyc.cfg.budget.growth_percent,
        "committees": cyc.org["committees"],
        "follow_up_plan": cyc.follow_up_plan,
        # Request data is flattened like configuration text: it must not start a markup line.
        "occasion": one_line(req.get("occasion") or ""),
        "extra": one_line(dict(req.extra)),
    }


DocxResult = tuple[str, dict[str, TableData]]
XlsxResult = tuple[list[SheetSpec | RiskMatrixSpec], str]


def _fields(items: tuple[tuple[str, str, str], ...]) -> list[dict[str, str]]:
    return [{"name": n, "label": label, "guide": guide} for n, label, guide in items]


def _field_names(prefix: str, ids: list[str]) -> list[str]:
    """Fill-in field names after what they are about ("mal_vard_i_tid"), so a return maps back
    to the goal or unit; by position ("mal_3") when an id does not fit a Word bookmark name or
    two ids would give the same name ("a-b" and "a_b")."""
    names = [f"{prefix}_{ident.replace('-', '_')}" for ident in ids]
    if len(set(names)) == len(names) and all(word.FIELD_NAME.match(n) for n in names):
        return names
    return [f"{prefix}_{i + 1}" for i in range(len(ids))]


def _committee_frame_table(cyc: YearData, committee_id: str | None) -> TableData | None:
    values = cyc.frames.get(committee_id or "")
    if values is None:
        return None
    first = values[0] or 1
    return TableData(
        headers=("År", "Ram (tkr)", "Förändring mot planåret"),
        rows=tuple(
            (str(y), v, text.procent((v - values[0]) / first * 100)) for y, v in zip(cyc.years, values, strict=True)
        ),
        widths=(3.0, 5.0, 8.0),
        numeric=(1, 2),
    )


def _goals_table(goals: list[dict[str, Any]]) -> TableData:
    return TableData(
        headers=("Målområde", "Mål", "Riktat till", "Får avstås"),
        rows=tuple((g["area"], g["title"], g["targeted_text"], "Ja" if g["opt_out_allowed"] else "Nej") for g in goals),
        widths=(3.0, 6.6, 4.4, 2.0),
    )


def _decisions(cyc: YearData, req: DocRequest) -> TableData:
    """RSAU → RS → RF (KSAU → KS → KF), in the order of tasks.handoffs.DECISION_CHAIN: a decided
    stage from req.extra (tasks.handoffs.decision_extra: <role>_date in ISO, <role>_paragraph,
    <role>_decision — the agreed receipt's day in Stockholm and its comment), every other stage
    "Planerat" with the day the wheel plans its decision."""
    cfg = cyc.cfg
    roles = cfg.organisation.roles
    plan = f"{cyc.org['plan_name']} {cyc.span}"
    defaults = {
        "working_committee": f"Föreslår {cyc.org['executive_board']} att föreslå {cyc.org['assembly']} "
        f"att fastställa {plan}.",
        "executive_board": f"Föreslår {cyc.org['assembly']} att fastställa {plan}.",
        "assembly": f"Fastställer {plan}.",
    }
    rows = []
    for stage in DECISION_CHAIN:
        role = stage.receiver_role
        unit_id = getattr(roles, role)
        given = req.get(f"{role}_date")
        when: date | str | None
        if given:
            try:
                when = date.fromisoformat(given)
            except ValueError:
                when = one_line(given)
            status = "Beslutat"
        else:
            when = planned_decision_day(cfg, cyc.plan_year, unit_id)
            status = "Planerat"
        rows.append(
            (
                cyc.names[unit_id],
                when if when is not None else "Ej fastställt",
                one_line(req.get(f"{role}_paragraph") or ""),
                one_line(req.get(f"{role}_decision") or "") or defaults[role],
                status,
            )
        )
    return TableData(
        headers=("Instans", "Datum", "Paragraf", "Beslut", "Status"),
        rows=tuple(rows),
        widths=(3.6, 2.4, 2.1, 5.9, 2.0),
    )


NO_INVESTMENTS = "Inga investeringsförslag har lämnats in ännu."


def _investments(cyc: YearData, ret: Returned, committee: str | None = None) -> list[Investment]:
    """The investment plan from the board's investment prioritisation and the committees' additions;
    one committee's when `committee` (a unit id) is given."""
    board = cyc.cfg.organisation.roles.executive_board
    found = ret.investments(board, cyc.invest_years)
    if committee is not None:
        found = [i for i in found if i.committee == cyc.names[committee]]
    return found


def _investment_table(cyc: YearData, investments: list[Investment], *, with_committee: bool = True) -> TableData:
    years = list(cyc.invest_years)
    rows = []
    for i in investments:
        amounts = [i.per_year.get(y) for y in years]
        rows.append(
            (*((i.committee,) if with_committee else ()), i.name, *amounts, sum(a or 0 for a in amounts) or i.total)
        )
    sums = [sum((i.per_year.get(y) or 0) for i in investments) for y in years]
    rows.append((*(("Summa",) if with_committee else ()), "" if with_committee else "Summa", *sums, sum(sums)))
    lead = (3.4, 3.6) if with_committee else (5.6,)
    rest = (16.0 - sum(lead)) / (len(years) + 1)
    first_num = len(lead)
    return TableData(
        headers=(*(("Nämnd/styrelse",) if with_committee else ()), "Investeringsobjekt", *map(str, years), "Summa"),
        rows=tuple(rows),
        widths=(*lead, *([round(rest, 2)] * (len(years) + 1))),
        numeric=tuple(range(first_num, first_num + len(years) + 1)),
    )


def _feedback_summary(cyc: YearData, ret: Returned) -> list[dict[str, Any]]:
    """Per committee: its name and its feedback under the six headings and the risk analysis, or
    nothing yet (the template says so)."""
    out = []
    for c in cyc.committees():
        got = ret.feedback(c.id)
        items = [{"label": label, "text": one_line(got[n])} for n, label, _ in FEEDBACK_FIELDS if got.get(n)]
        out.append({"name": cyc.names[c.id], "items": items})
    return out


def _chain_units(cyc: YearData) -> list[str]:
    roles = cyc.cfg.organisation.roles
    return [getattr(roles, stage.receiver_role) for stage in DECISION_CHAIN]


def _proposal_text(cyc: YearData, ret: Returned, before: str | None = None) -> dict[str, str]:
    """The proposal's text as the decision chain returned it; `before`: only the bodies before
    this one (the draft a body receives carries what the bodies before it wrote)."""
    chain = _chain_units(cyc)
    if before is not None:
        chain = chain[: chain.index(before)] if before in chain else []
    got = {k: one_line(v) for k, v in ret.proposal(chain).items()}
    return {k: "" for k in ("sammanfattning", "ramjusteringar", "investeringar", "uppdrag")} | got


def _goals_with_indicators(goals: list[dict[str, Any]]) -> TableData:
    rows = []
    for g in goals:
        indicators = g["indicators"] or [None]
        for n, i in enumerate(indicators):
            rows.append(
                (
                    g["title"] if n == 0 else "",
                    "Ingen indikator" if i is None else i["name"],
                    "" if i is None else i["target_text"],
                )
            )
    return TableData(headers=("Mål", "Indikator", "Målvärde"), rows=tuple(rows), widths=(6.0, 7.0, 3.0))


def _previous_conclusions(req: DocRequest) -> dict[str, Any] | None:
    """Last year's follow-up conclusions, carried in the request by the preparation phase
    (tasks/level_reports.with_conclusions): {"source", "annual", "items": [{"topic", "text"}]}."""
    raw = req.get("slutsatser")
    if not raw:
        return None
    data = json.loads(raw)
    items = [{"topic": one_line(i["topic"]), "text": one_line(i["text"])} for i in data.get("items", [])]
    return {"source": one_line(data.get("source", "")), "annual": bool(data.get("annual")), "items": items}


def _docx_planeringsunderlag(
    cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned
) -> DocxResult:
    tables = {k: cyc.tables[k] for k in ("ramar", "indikatorer", "faser", "intern_kontroll")}
    extra = {"previous_year": cyc.plan_year - 1, "conclusions": _previous_conclusions(req)}
    return text.render("planeringsunderlag.txt.j2", ctx | extra), tables


def _docx_planeringsforutsattningar(
    cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned
) -> DocxResult:
    committee_id = cyc.committee_of.get(unit.id)
    tables = dict(cyc.tables)
    tables["mal"] = _goals_table(cyc.goals)
    own = _committee_frame_table(cyc, committee_id)
    if own is not None:
        tables["namndens_ram"] = own
    # Appendix 1 shows the annual wheel as a picture (tasks/wheel_picture.py), above the timetable.
    tables["arshjul"] = Picture(wheel_png(cyc.cfg, cyc.plan_year), word.TEXT_WIDTH_CM, ARSHJUL_CAPTION)  # type: ignore[assignment]
    feedback = next((p for p in cyc.phases if p["id"] == "committee_feedback"), None)
    investments = _investments(cyc, ret)
    if investments:
        tables["investeringar"] = _investment_table(cyc, investments)
    # The planning material as the finance department returned it: sections 3, 4 and 5.
    basis = {
        k: one_line(v) for k, v in ret.fields("planeringsunderlag", cyc.cfg.organisation.roles.executive_board).items()
    }
    extra = {
        "basis": [{"label": label, "text": basis[n]} for n, label in BASIS_SECTIONS if basis.get(n)],
        "comparison": basis.get("jamforelser", ""),
        "economic_room": basis.get("ekonomiskt_utrymme", ""),
        "feedback_fields": _fields(FEEDBACK_FIELDS),
        "feedback_deadline": feedback["deadline"] if feedback else None,
        "has_own_frame": own is not None,
        "has_investments": bool(investments),
        "no_investments": NO_INVESTMENTS,
    }
    return text.render("planeringsforutsattningar.txt.j2", ctx | extra), tables


def _docx_aterkoppling(cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned) -> DocxResult:
    committee_id = cyc.committee_of.get(unit.id)
    tables: dict[str, TableData] = {"mal": _goals_table(cyc.goals_for(committee_id))}
    own = _committee_frame_table(cyc, committee_id)
    if own is not None:
        tables["namndens_ram"] = own
    extra = {"fields": _fields(FEEDBACK_FIELDS), "has_own_frame": own is not None}
    return text.render("aterkoppling.txt.j2", ctx | extra), tables


def _docx_regionplan_forslag(
    cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned
) -> DocxResult:
    tables = {k: cyc.tables[k] for k in ("ramar", "indikatorer", "uppfoljningsplan")}
    tables["mal"] = _goals_table(cyc.goals)
    # The draft carries the decisions taken so far: the assembly reads the board's proposal in it.
    tables["beslutsgang"] = _decisions(cyc, req)
    units = cyc.committees()
    fields = _field_names("namnd", [c.id for c in units])
    earlier = _proposal_text(cyc, ret, before=unit.id)
    feedback = _feedback_summary(cyc, ret)
    committees = [
        {"name": cyc.names[c.id], "field": f, "earlier": earlier.get(f, ""), "feedback": fb}
        for c, f, fb in zip(units, fields, feedback, strict=True)
    ]
    investments = _investments(cyc, ret)
    if investments:
        tables["investeringar"] = _investment_table(cyc, investments)
    # The body's stage is due on the day the wheel plans its decision (the stage's handoff deadline).
    due = planned_decision_day(cyc.cfg, cyc.plan_year, unit.id) or ctx["due"]
    extra = {
        "due": due,
        "committee_list": committees,
        "earlier": earlier,
        "has_investments": bool(investments),
        "no_investments": NO_INVESTMENTS,
    }
    return text.render("regionplan_forslag.txt.j2", ctx | extra), tables


def _docx_regionplan_beslutad(
    cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned
) -> DocxResult:
    committee_id = cyc.committee_of.get(unit.id)
    tables = {"beslut": _decisions(cyc, req), "ramar": cyc.tables["ramar"]}
    goals = cyc.goals_for(committee_id)
    tables["mal"] = _goals_table(goals)
    tables["indikatorer_namnd"] = _goals_with_indicators(goals)
    own = _committee_frame_table(cyc, committee_id)
    if own is not None:
        tables["namndens_ram"] = own
    investments = _investments(cyc, ret, committee_id) if committee_id else _investments(cyc, ret)
    if investments:
        tables["investeringar"] = _investment_table(cyc, investments, with_committee=committee_id is None)
    all_investments = _investments(cyc, ret)
    if all_investments:
        tables["investeringar_alla"] = _investment_table(cyc, all_investments)
    decided = _proposal_text(cyc, ret)
    vp = next((p for p in cyc.phases if p["id"] == "operational_plans"), None)
    extra = {
        "has_own_frame": own is not None,
        "vp_deadline": vp["deadline"] if vp else None,
        "decided": decided,
        "has_investments": bool(investments),
        "has_all_investments": bool(all_investments),
        "no_investments": NO_INVESTMENTS,
    }
    return text.render("regionplan_beslutad.txt.j2", ctx | extra), tables


def _docx_verksamhetsplan(cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned) -> DocxResult:
    committee_id = cyc.committee_of.get(unit.id)
    tables = {"uppfoljningsplan": cyc.tables["uppfoljningsplan"]}
    own = _committee_frame_table(cyc, committee_id)
    if own is not None:
        tables["namndens_ram"] = own
    goals = cyc.goals_for(committee_id)
    names = _field_names("mal", [g["id"] for g in goals])
    goal_fields = [{"name": n, "goal": g} for n, g in zip(names, goals, strict=True)]
    administrations = [cyc.names[c.id] for c in cyc.children.get(unit.id, [])]
    extra = {"goal_fields": goal_fields, "has_own_frame": own is not None, "administrations": administrations}
    return text.render("verksamhetsplan.txt.j2", ctx | extra), tables


def _docx_uppfoljning_berattelse(
    cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned
) -> DocxResult:
    fields = _fields(DIALOGUE_FIELDS)
    if unit.id in cyc.committee_ids:
        fields += _fields(COMMITTEE_DIALOGUE_FIELDS)
    below = [cyc.names[c.id] for c in cyc.children.get(unit.id, [])]
    extra = {"fields": fields, "units_below": below}
    return text.render("uppfoljning_berattelse.txt.j2", ctx | extra), {
        "uppfoljningsplan": cyc.tables["uppfoljningsplan"]
    }


DOCX_BUILDERS: dict[str, Callable[[YearData, Unit, DocRequest, dict[str, Any], Returned], DocxResult]] = {
    "planeringsunderlag": _docx_planeringsunderlag,
    "planeringsforutsattningar": _docx_planeringsforutsattningar,
    "aterkoppling": _docx_aterkoppling,
    "regionplan_forslag": _docx_regionplan_forslag,
    "regionplan_beslutad": _docx_regionplan_beslutad,
    "verksamhetsplan": _docx_verksamhetsplan,
    "uppfoljning_berattelse": _docx_uppfoljning_berattelse,
}


# ---------------------------------------------------------------------------
# Workbooks
# ---------------------------------------------------------------------------


def _col(header: str, kind: str = "text", width: float = 14, **kw: Any) -> ColumnSpec:
    return ColumnSpec(header=header, kind=kind, width=width, **kw)  # type: ignore[arg-type]


def _risk_sheet(name: str, rows: tuple[tuple[Any, ...], ...], editable: bool, blank: int) -> SheetSpec:
    return SheetSpec(
        name=name,
        columns=(
            _col("Kontrollområde", width=22, editable=editable),
            _col("Risk", width=34, editable=editable),
            _col("Sannolikhet (1–4)", "int", 12, editable=editable, key="p", bounds=(1, 4)),
            _col("Konsekvens (1–4)", "int", 12, editable=editable, key="c", bounds=(1, 4)),
            _col(
                "Riskvärde",
                "formula",
                11,
                formula='=IF(OR({p}="",{c}=""),"",{p}*{c})',
                result="int",
                highlight="risk",
            ),
            _col("Kontrollmoment", width=30, editable=editable),
            _col("Frekvens", "choice", 14, choices=FREQUENCIES, editable=editable),
            _col("Ansvarig", width=18, editable=editable),
            _col("Åtgärd", width=30, editable=editable),
        ),
        rows=rows,
        blank_rows=blank,
    )


def _goal_choices(goals: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(g["title"][:250] for g in goals)


def _xlsx_investeringsprioritering(
    cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned
) -> XlsxResult:
    criteria = SheetSpec(
        name="Kriterier",
        columns=(
            _col("Kriterium", width=30),
            _col("Beskrivning", width=60),
            _col("Vikt", "percent", 10, editable=True, bounds=(0, 1), total=True),
        ),
        rows=tuple((name, desc, weight) for name, desc, weight in INVESTMENT_CRITERIA),
        totals=True,
    )
    n = len(INVESTMENT_CRITERIA)
    keys = [f"k{i + 1}" for i in range(n)]
    weighted = "+".join(f"{{{k}}}*Kriterier!$C${i + 2}" for i, k in enumerate(keys))
    score_cols = tuple(
        _col(f"{name} (1–5)", "int", 13, editable=True, key=keys[i], bounds=(1, 5))
        for i, (name, _, _) in enumerate(INVESTMENT_CRITERIA)
    )
    committees = tuple(cyc.names[c.id] for c in cyc.committees())
    rows = tuple((name, None, None, None, None, *([None] * n), None, None, None) for name in committees)
    investments = SheetSpec(
        name="Investeringar",
        columns=(
            _col("Nämnd/styrelse", "choice", 28, choices=committees, editable=True),
            _col("Investeringsobjekt", width=30, editable=True),
            _col("Beskrivning och behov", width=40, editable=True),
            _col("Utgift totalt", "sek", 14, editable=True, bounds=(0, 1e9)),
            _col("Startår", "int", 9, editable=True, bounds=(cyc.plan_year - 1, cyc.plan_year + 10)),
            *score_cols,
            _col(
                "Viktad poäng",
                "formula",
                11,
                key="score",
                formula=f'=IF(COUNT({",".join("{" + k + "}" for k in keys)})<{n},"",ROUND({weighted},2))',
                result="number",
                number_format="0.00",
            ),
            _col(
                "Prioritet",
                "formula",
                9,
                formula='=IF({score}="","",RANK({score},${score_col}${first}:${score_col}${last}))',
                result="int",
            ),
            _col("Kommentar", width=30, editable=True),
        ),
        rows=rows,
        blank_rows=20,
        totals=True,
    )
    return [criteria, investments], text.render("investeringsprioritering.txt.j2", ctx | {"criteria_count": n})


def _timetable_sheet(cyc: YearData) -> SheetSpec:
    return SheetSpec(
        name="Tidplan",
        columns=(
            _col("Datum", "date", 12),
            _col("Aktivitet", width=34),
            _col("Fas", width=24),
            _col("Ansvarig", width=24),
            _col("Deltagare", width=30),
            _col("Syfte", width=40),
            _col("Mål", width=34),
            _col("Typ", width=12),
        ),
        rows=tuple(
            (r["date"], r["name"], r["phase"], r["owner"], r["participants"], r["purpose"], r["goal"], r["kind"])
            for r in cyc.timetable
        ),
    )


def _xlsx_pf_bilagor(cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned) -> XlsxResult:
    committees = cyc.committees()
    frame_rows = tuple((cyc.names[u.id], *cyc.frames[u.id], None) for u in committees if u.id in cyc.frames)
    frames = SheetSpec(
        name="Ramar per nämnd",
        columns=(
            _col("Nämnd/styrelse", width=36),
            *(_col(str(y), "sek", 14, key=f"y{i}") for i, y in enumerate(cyc.years)),
            _col(
                f"Förändring {cyc.years[0]}–{cyc.years[-1]}",
                "formula",
                14,
                formula=f'=IF(N({{y0}})=0,"",{{y{HORIZON_YEARS - 1}}}/{{y0}}-1)',
                result="percent",
            ),
        ),
        rows=frame_rows,
        totals=True,
    )
    year_keys = [f"i{i}" for i in range(INVESTMENT_YEARS)]
    names = tuple(cyc.names[u.id] for u in committees)
    investments = _investments(cyc, ret)
    # The prioritised investments first, with their amounts per year; then a row per committee
    # without one, for its new needs.
    with_rows = {i.committee for i in investments}
    plan_rows = tuple(
        (i.committee, i.name, *(i.per_year.get(y) for y in cyc.invest_years), None) for i in investments
    ) + tuple((n, None, *([None] * INVESTMENT_YEARS), None) for n in names if n not in with_rows)
    invest = SheetSpec(
        name="Investeringsplan",
        columns=(
            _col("Nämnd/styrelse", "choice", 30, choices=names, editable=True),
            _col("Investeringsobjekt", width=34, editable=True),
            *(_col(str(y), "sek", 13, key=year_keys[i], editable=True) for i, y in enumerate(cyc.invest_years)),
            _col("Summa", "formula", 14, formula=f"=SUM({{{year_keys[0]}}}:{{{year_keys[-1]}}})", result="sek"),
        ),
        rows=plan_rows,
        blank_rows=15,
        totals=True,
    )
    follow = SheetSpec(
        name="Uppföljningsplan",
        columns=(
            _col("Datum", "date", 12),
            _col("Tillfälle", width=34),
            _col("Innehåll", width=60),
            _col("Rapporteras till", width=40),
        ),
        rows=tuple((r["date"], r["occasion"], r["content"], r["to"]) for r in cyc.follow_up_plan),
    )
    controls = _risk_sheet(
        "Intern kontroll",
        tuple(
            (area, risk, p, c, None, control, freq, cyc.org["finance"], None)
            for (area, risk, control, freq), (p, c) in zip(COMMON_CONTROLS, COMMON_CONTROL_SCORES, strict=True)
        ),
        editable=False,
        blank=0,
    )
    sheets: list[SheetSpec | RiskMatrixSpec] = [frames, invest, _timetable_sheet(cyc), follow, controls]
    extra = {"investment_count": len(investments), "no_investments": NO_INVESTMENTS}
    return sheets, text.render("pf_bilagor.txt.j2", ctx | extra)


def _xlsx_verksamhetsplan_mall(
    cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned
) -> XlsxResult:
    committee_id = cyc.committee_of.get(unit.id)
    goals = cyc.goals_for(committee_id)
    goal_rows = tuple(
        (g["area"], g["title"], g["targeted_text"], None if g["opt_out_allowed"] else Fixed("–"), None) for g in goals
    )
    assembly_goals = SheetSpec(
        name="Fullmäktiges mål",
        columns=(
            _col("Målområde", width=22),
            _col("Mål", width=48),
            _col("Riktat till", width=24),
            _col("Avstår (Ja/Nej)", "choice", 12, choices=YES_NO, editable=True),
            _col("Nämndens bidrag och åtaganden", width=50, editable=True),
        ),
        rows=goal_rows,
    )
    indicator_rows = tuple(
        (g["title"], i["name"], i["kolada_id"] or "–", i["target"], i["unit"], None, None)
        for g in goals
        for i in g["indicators"]
    )
    indicators = SheetSpec(
        name="Indikatorer",
        columns=(
            _col("Mål", width=36),
            _col("Indikator", width=44),
            _col("Kolada-id", width=11),
            _col("Fullmäktiges målvärde", "number", 14),
            _col("Enhet", width=10),
            _col("Nämndens målvärde", "number", 14, editable=True),
            _col("Kommentar", width=40, editable=True),
        ),
        rows=indicator_rows,
    )
    goal_choices = _goal_choices(goals)
    administrations = tuple(cyc.names[c.id] for c in cyc.children.get(unit.id, [])) or (cyc.names[unit.id],)
    areas = tuple(dict.fromkeys(g["area"] for g in cyc.goals)) or ("Övrigt",)
    own = SheetSpec(
        name="Egna mål",
        columns=(
            _col("Målområde", "choice", 24, choices=areas, editable=True),
            _col("Nämndens mål", width=44, editable=True),
            _col("Koppling till fullmäktiges mål", "choice", 36, choices=goal_choices or None, editable=True),
            _col("Indikator", width=34, editable=True),
            _col("Målvärde", "number", 11, editable=True),
            _col("Ansvarig förvaltning", "choice", 26, choices=administrations, editable=True),
        ),
        blank_rows=8,
    )
    commitments = SheetSpec(
        name="Åtaganden",
        columns=(
            _col("Åtagande", width=44, editable=True),
            _col("Koppling till mål", "choice", 36, choices=goal_choices or None, editable=True),
            _col("Ansvarig förvaltning", "choice", 26, choices=administrations, editable=True),
            _col("Klart senast", "date", 12, editable=True),
            _col("Resurser (tkr)", "sek", 14, editable=True),
            _col("Kommentar", width=34, editable=True),
        ),
        blank_rows=12,
        totals=True,
    )
    # The committee's own risks (its configuration) with their assessment, then the common areas.
    own_controls = tuple(
        (c.area, c.risk, c.probability, c.consequence, None, c.control, c.frequency, c.owner or None, None)
        for c in (cyc.cfg.unit(committee_id).internal_control if committee_id else ())
    )
    common = tuple(
        (area, risk, None, None, None, control, freq, None, None)
        for area, risk, control, freq in COMMON_CONTROLS
        if area not in {r[0] for r in own_controls}
    )
    controls = _risk_sheet("Intern kontroll", own_controls + common, editable=True, blank=12)
    matrix = RiskMatrixSpec("Riskmatris", "Intern kontroll", "p", "c")
    sheets: list[SheetSpec | RiskMatrixSpec] = [assembly_goals, indicators, own, commitments, controls, matrix]
    return sheets, text.render("verksamhetsplan_mall.txt.j2", ctx)


def _xlsx_aktivitetsplan(cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned) -> XlsxResult:
    below = cyc.descendants(unit.id) or [unit]
    committee_id = cyc.committee_of.get(unit.id)
    plan = ret.operational_plan(committee_id) if committee_id else None
    mine = [c for c in plan.commitments if c.administration in ("", cyc.names[unit.id])] if plan else []
    # Activities link to the assembly's goals, the committee's own goals and its commitments.
    goal_choices = tuple(
        dict.fromkeys(
            (
                *_goal_choices(cyc.goals_for(committee_id)),
                *(f"Eget mål: {g.title}"[:250] for g in (plan.own_goals if plan else ())),
                *(f"Åtagande: {c.text}"[:250] for c in mine),
            )
        )
    )
    activity_rows = tuple(
        (cyc.names[u.id], None, None, None, None, None, None) for u in below for _ in range(ACTIVITY_ROWS_PER_UNIT)
    )
    activities = SheetSpec(
        name="Aktiviteter",
        columns=(
            _col("Enhet", width=30),
            _col("Koppling till mål/åtagande", "choice", 36, choices=goal_choices or None, editable=True),
            _col("Aktivitet", width=44, editable=True),
            _col("Ansvarig", width=20, editable=True),
            _col("Start", "date", 12, editable=True),
            _col("Klart", "date", 12, editable=True),
            _col("Kostnad (tkr)", "sek", 14, editable=True),
        ),
        rows=activity_rows,
        totals=True,
    )
    # The same budget lines as the follow-up (content.FOLLOW_UP_ROWS): the follow-up's budget is
    # this budget. Rows are in the order of `below`; no unit code is shown.
    lines = [BUDGET_COLUMNS[post] for post in FOLLOW_UP_ROWS]
    keys = [f"b{i}" for i in range(len(lines))]
    budget = SheetSpec(
        name="Detaljbudget",
        columns=(
            _col("Enhet", width=30),
            *(
                _col(
                    header,
                    "sek",
                    max(16, len(header) + 2),
                    editable=True,
                    key=keys[i],
                    **({"bounds": (-1e12, 0)} if header.startswith("Intäkter") else {}),
                )
                for i, header in enumerate(lines)
            ),
            _col("Nettobudget", "formula", 16, formula=f"=SUM({{{keys[0]}}}:{{{keys[-1]}}})", result="sek"),
        ),
        rows=tuple((cyc.names[u.id], *([None] * len(lines)), None) for u in below),
        totals=True,
    )
    frame = cyc.frames.get(committee_id or "")
    sheets: list[SheetSpec | RiskMatrixSpec] = [activities, budget]
    if mine:
        sheets.append(
            SheetSpec(
                name="Nämndens åtaganden",
                columns=(
                    _col("Åtagande", width=44),
                    _col("Koppling till mål", width=36),
                    _col("Klart senast", width=12),
                    _col("Resurser (tkr)", "sek", 14),
                ),
                rows=tuple((c.text, c.goal, c.due, c.resources) for c in mine),
            )
        )
    extra = {
        "has_plan": plan is not None,
        "commitment_count": len(mine),
        "committee_frame": frame[0] if frame else None,
        "unit_count": len(below),
        "rows_per_unit": ACTIVITY_ROWS_PER_UNIT,
    }
    return sheets, text.render("aktivitetsplan.txt.j2", ctx | extra)


def _xlsx_uppfoljning(cyc: YearData, unit: Unit, req: DocRequest, ctx: dict[str, Any], ret: Returned) -> XlsxResult:
    threshold = cyc.cfg.follow_up.deviation_threshold_percent / 100
    budget = _budget_for(cyc, ret, unit.id)
    economy = SheetSpec(
        name="Ekonomi",
        columns=(
            *follow_up_figure_columns(threshold, editable=True),
            _col("Analys", width=44, editable=True),
            _col("Föreslagen åtgärd", width=40, editable=True),
        ),
        rows=tuple(
            (post, budget.get(post) if budget else None, None, None, None, None, None, None) for post in FOLLOW_UP_ROWS
        ),
        blank_rows=3,
        totals=True,
    )
    goals = cyc.goals_for(cyc.committee_of.get(unit.id))
    goal_sheet = SheetSpec(
        name="Mål",
        columns=(
            _col("Mål", width=48),
            _col("Bedömning", "choice", 12, choices=TRAFFIC_LIGHTS, editable=True, highlight="traffic_light"),
            _col("Kommentar och analys", width=50, editable=True),
            _col("Åtgärd", width=36, editable=True),
        ),
        rows=tuple((g["title"], None, None, None) for g in goals),
    )
    indicators = SheetSpec(
        name="Indikatorer",
        columns=(
            _col("Mål", width=36),
            _col("Indikator", width=44),
            _col("Målvärde", "number", 11),
            _col("Enhet", width=10),
            _col("Utfall", "number", 11, editable=True),
            _col("Kommentar", width=44, editable=True),
        ),
        rows=tuple((g["title"], i["name"], i["target"], i["unit"], None, None) for g in goals for i in g["indicators"]),
    )
    investments = SheetSpec(
        name="Investeringar",
        columns=(
            _col("Projekt", width=34, editable=True),
            _col("Budget", "sek", 14, editable=True, key="b"),
            _col("Utfall hittills", "sek", 14, editable=True),
            _col("Prognos", "sek", 14, editable=True, key="f"),
            _col("Avvikelse", "formula", 14, formula='=IF(N({f})=0,"",{b}-{f})', result="sek"),
            _col("Kommentar", width=44, editable=True),
        ),
        blank_rows=6,
        totals=True,
    )
    extra = {"threshold_percent": cyc.cfg.follow_up.deviation_threshold_percent, "budget_given": bool(budget)}
    return [economy, goal_sheet, indicators, investments], text.render("uppfoljning.txt.j2", ctx | extra)


def detailed_budgets(cyc: YearData, ret: Returned) -> dict[str, dict[str, float]]:
    """unit id -> budget line -> tkr: every unit's detailed budget, from its administration's
    activity plan (the unit's row; an administration without units has one row, its own)."""
    key = f"detailed_budgets:{cyc.cfg.organisation.id}:{cyc.plan_year}"
    if key not in ret.cache:
        out: dict[str, dict[str, float]] = {}
        for a in cyc.administrations():
            below = [u.id for u in (cyc.descendants(a.id) or [a])]
            out |= ret.detailed_budget(a.id, below)
        ret.cache[key] = out
    return ret.cache[key]


def _budget_for(cyc: YearData, ret: Returned, unit_id: str) -> dict[str, float]:
    """A unit's budget per line: its own detailed budget, or the sum of the units' below it;
    empty when no activity plan below it has come back."""
    budgets = detailed_budgets(cyc, ret)
    if unit_id in budgets:
        return budgets[unit_id]
    ids = [u.id for u in cyc.descendants(unit_id)]
    found = [budgets[i] for i in ids if i in budgets]
    if not found:
        return {}
    return {post: sum(b.get(post, 0.0) for b in found) for post in FOLLOW_UP_ROWS}


XLSX_BUILDERS: dict[str, Callable[[YearData, Unit, DocRequest, dict[str, Any], Returned], XlsxResult]] = {
    "investeringsprioritering": _xlsx_investeringsprioritering,
    "pf_bilagor": _xlsx_pf_bilagor,
    "verksamhetsplan_mall": _xlsx_verksamhetsplan_mall,
    "aktivitetsplan": _xlsx_aktivitetsplan,
    "uppfoljning": _xlsx_uppfoljning,
}
