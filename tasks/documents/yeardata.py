"""Everything the documents of one plan year derive from the configuration alone: wheel dates,
timetable, phases, frames, goals, the organisation tree and the tables shared by many documents.

Computed once per (configuration, plan year) and shared by every document of that year: a region
renders thousands of documents per phase. Strings from the configuration are cleaned and
flattened to one line here, once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from config.schema import Goal, OrgConfig, Unit
from models.errors import UserError
from tasks.calendar import RuleError, parse_rule
from tasks.documents import text
from tasks.documents.content import COMMON_CONTROLS, MEETING_KIND_SV
from tasks.documents.model import TableData
from tasks.documents.sanitize import clean_text
from tasks.swedish import MONTHS
from tasks.wheel import ResolvedWheel, resolve_wheel

HORIZON_YEARS = 4  # plan year plus three plan years
INVESTMENT_YEARS = 5


@dataclass
class YearData:
    """Shared by every document of the year: builders read it and never change it."""

    cfg: OrgConfig
    plan_year: int
    wheel: ResolvedWheel
    horizon_end: int
    years: list[int]
    invest_years: list[int]
    names: dict[str, str]
    children: dict[str, list[Unit]]
    committee_of: dict[str, str | None]
    committee_ids: set[str]
    org: dict[str, Any]
    phases: list[dict[str, Any]]
    timetable: list[dict[str, Any]]
    follow_up_plan: list[dict[str, Any]]
    frames: dict[str, list[int]]
    goals: list[dict[str, Any]]
    tables: dict[str, TableData] = field(default_factory=dict)

    def unit_ctx(self, u: Unit) -> dict[str, Any]:
        cfg = self.cfg
        level = cfg.levels[cfg.level_index(u.level)]
        committee = self.committee_of.get(u.id)
        return {
            "id": u.id,
            "name": self.names[u.id],
            "level": u.level,
            "level_name": one_line(level.name),
            "is_committee": u.id in self.committee_ids,
            "parent": self.names.get(u.parent or "", ""),
            "committee": self.names.get(committee or "", ""),
        }

    def goals_for(self, committee_id: str | None) -> list[dict[str, Any]]:
        """Goals that concern a committee: those targeted at it and those targeted at nobody."""
        if committee_id is None:
            return self.goals
        return [g for g in self.goals if not g["targeted_ids"] or committee_id in g["targeted_ids"]]

    @property
    def span(self) -> str:
        """The plan period, e.g. "2028–2031"."""
        return f"{self.plan_year}–{self.horizon_end}"

    def committees(self) -> list[Unit]:
        return [u for u in self.cfg.units if u.id in self.committee_ids]

    def administrations(self) -> list[Unit]:
        return self.cfg.units_at(self.cfg.levels[3].id) if len(self.cfg.levels) > 3 else []

    def descendants(self, unit_id: str) -> list[Unit]:
        out: list[Unit] = []
        stack = list(reversed(self.children.get(unit_id, [])))
        while stack:
            u = stack.pop()
            out.append(u)
            stack.extend(reversed(self.children.get(u.id, [])))
        return out


_cache_lock = threading.Lock()
_cache: dict[tuple[int, int], YearData] = {}
_CACHE_SIZE = 8


def year_data(cfg: OrgConfig, plan_year: int) -> YearData:
    # Keyed by identity (a config holds dicts, so it is not hashable); the entry keeps the
    # config alive, so an id cannot be reused while it is cached.
    key = (id(cfg), plan_year)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit.cfg is cfg:
            return hit
    built = _build(cfg, plan_year)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = built
    return built


def one_line(value: Any) -> Any:
    """Strings from the configuration, recursively cleaned and flattened to one line: the
    document markup is line-based, so a value must not start a line of its own."""
    if isinstance(value, str):
        return " ".join(clean_text(value).split())
    if isinstance(value, dict):
        return {k: one_line(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(one_line(v) for v in value)
    return value


def _genitive(name: str) -> str:
    return name if name[-1:].lower() in ("s", "x", "z") else name + "s"


def _build(cfg: OrgConfig, plan_year: int) -> YearData:
    try:
        wheel = resolve_wheel(cfg, plan_year)
    except RuleError as exc:
        raise UserError(f"configuration: the annual wheel cannot be resolved for {plan_year}: {exc}") from None
    names = {u.id: one_line(u.name) for u in cfg.units}
    children: dict[str, list[Unit]] = {}
    for u in cfg.units:
        if u.parent is not None:
            children.setdefault(u.parent, []).append(u)
    committee_level = cfg.levels[2].id
    committee_ids = {u.id for u in cfg.units if u.level == committee_level}
    parent = {u.id: u.parent for u in cfg.units}
    committee_of: dict[str, str | None] = {}
    for u in cfg.units:
        cur: str | None = u.id
        while cur is not None and cur not in committee_ids:
            cur = parent.get(cur)
        committee_of[u.id] = cur

    roles = cfg.organisation.roles
    is_region = cfg.organisation.kind == "region"
    horizon_end = plan_year + HORIZON_YEARS - 1
    plan_name = "regionplan och budget" if is_region else "mål och budget"
    org = {
        "id": cfg.organisation.id,
        "name": cfg.organisation.name,
        "genitive": _genitive(cfg.organisation.name),
        "kind": cfg.organisation.kind,
        "is_region": is_region,
        "term": "regionen" if is_region else "kommunen",
        "Term": "Regionen" if is_region else "Kommunen",
        "plan_name": plan_name,
        "Plan_name": plan_name[0].upper() + plan_name[1:],
        "assembly": names[roles.assembly],
        "executive_board": names[roles.executive_board],
        "working_committee": names[roles.working_committee],
        "finance": names[roles.finance],
        "vision": cfg.vision,
        "levels": [lv.name for lv in cfg.levels],
        "committees": [u.name for u in cfg.units if u.id in committee_ids],
    }

    phases = []
    for p in cfg.wheel.phases:
        start, end = wheel.phase_window(p.id)
        phases.append(
            {
                "id": p.id,
                "name": p.name,
                "owner": names.get(p.owner, p.owner),
                "start": start,
                "end": end,
                "deadline": wheel.dates.get(p.receipt_deadline),
                "purpose": p.purpose,
            }
        )
    phase_names = {p.id: p.name for p in cfg.wheel.phases}

    timetable: list[dict[str, Any]] = []
    for m in cfg.wheel.milestones:
        timetable.append(
            {
                "id": m.id,
                "date": wheel.dates[m.id],
                "name": m.name,
                "phase": phase_names.get(m.phase, m.phase),
                "phase_id": m.phase,
                "owner": names.get(m.owner, m.owner),
                "owner_id": m.owner,
                "participants": "",
                "purpose": "",
                "goal": "",
                "kind": "Milstolpe",
            }
        )
    for mt in cfg.wheel.meetings:
        timetable.append(
            {
                "id": mt.id,
                "date": wheel.dates[mt.id],
                "name": mt.name,
                "phase": phase_names.get(mt.phase, mt.phase),
                "phase_id": mt.phase,
                "owner": names.get(mt.organiser, mt.organiser),
                "owner_id": mt.organiser,
                "participants": ", ".join(names.get(x, x) for x in mt.participants),
                "purpose": mt.purpose,
                "goal": mt.goal,
                "kind": MEETING_KIND_SV[mt.kind],
                "meeting_kind": mt.kind,
            }
        )
    timetable.sort(key=lambda row: (row["date"], row["name"]))

    growth = 1 + cfg.budget.growth_percent / 100
    frames = {
        cid: [round(amount * growth**k) for k in range(HORIZON_YEARS)] for cid, amount in cfg.budget.frames.items()
    }

    goals = [_goal_ctx(g, names) for g in cfg.goals]
    cyc = YearData(
        cfg=cfg,
        plan_year=plan_year,
        wheel=wheel,
        horizon_end=horizon_end,
        years=list(range(plan_year, plan_year + HORIZON_YEARS)),
        invest_years=list(range(plan_year, plan_year + INVESTMENT_YEARS)),
        names=names,
        children=children,
        committee_of=committee_of,
        committee_ids=committee_ids,
        org=one_line(org),
        phases=one_line(phases),
        timetable=one_line(timetable),
        follow_up_plan=one_line(_follow_up_plan(cfg, plan_year, names)),
        frames=frames,
        goals=one_line(goals),
    )
    cyc.tables.update(_shared_tables(cyc))
    return cyc


def _goal_ctx(g: Goal, names: Mapping[str, str]) -> dict[str, Any]:
    return {
        "id": g.id,
        "area": g.area,
        "title": g.title,
        "targeted_ids": list(g.targeted),
        "targeted": [names.get(t, t) for t in g.targeted],
        "targeted_text": ", ".join(names.get(t, t) for t in g.targeted) or "Alla nämnder",
        "opt_out_allowed": g.opt_out_allowed,
        "indicators": [
            {
                "id": i.id,
                "name": i.name,
                "target": i.target,
                "unit": i.unit,
                "target_text": target_text(i.target, i.unit),
                "kolada_id": i.kolada_id or "",
            }
            for i in g.indicators
        ],
    }


def target_text(target: float, unit: str) -> str:
    """ "75 %", "600" (a count needs no unit: "600 antal" is not Swedish), "3,5 dagar"."""
    number = text.tal(target, 0 if float(target).is_integer() else 1)
    return number if unit.strip().lower() in ("", "antal", "st", "st.") else f"{number} {unit}"


def _period_end(rule: str, plan_year: int) -> date | None:
    # A report "per 31 December" closes a period: the date keeps, even on a day off.
    try:
        return parse_rule(rule).resolve(plan_year, 0, "keep", None)
    except RuleError:
        return None


def _month_end(plan_year: int, month: int) -> date:
    first_next = date(plan_year + 1, 1, 1) if month == 12 else date(plan_year, month + 1, 1)
    return first_next - timedelta(days=1)


def _day_month(d: date | None, rule: str) -> str:
    # "31 augusti" in Swedish, whatever language the rule was written in.
    return f"{d.day} {MONTHS[d.month - 1]}" if d else rule


def _follow_up_plan(cfg: OrgConfig, plan_year: int, names: Mapping[str, str]) -> list[dict[str, Any]]:
    fu = cfg.follow_up
    board = names[cfg.organisation.roles.executive_board]
    assembly = names[cfg.organisation.roles.assembly]
    rows: list[dict[str, Any]] = []
    for month in fu.monthly_checks:
        rows.append(
            {
                "date": _month_end(plan_year, month),
                "occasion": f"Månadsuppföljning {MONTHS[month - 1]}",
                "content": "Periodens utfall mot periodbudget",
                "to": "Nämnd",
            }
        )
    for month in fu.forecasts:
        rows.append(
            {
                "date": _month_end(plan_year, month),
                "occasion": f"Budgetuppföljning {MONTHS[month - 1]}",
                "content": "Utfall och helårsprognos, avvikelser med analys och åtgärder",
                "to": f"Nämnd, {board}",
            }
        )
    for rule in fu.interim_reports:
        end = _period_end(rule, plan_year)
        rows.append(
            {
                "date": end,
                "occasion": f"Delårsrapport per {_day_month(end, rule)}",
                "content": "Mål, uppdrag, ekonomi, investeringar och intern kontroll; prognos",
                "to": f"Nämnd, {board}, {assembly}",
            }
        )
    end = _period_end(fu.annual_report, plan_year)
    rows.append(
        {
            "date": end,
            "occasion": f"Årsredovisning per {_day_month(end, fu.annual_report)}",
            "content": "Måluppfyllelse, ekonomi, investeringar, intern kontroll och lärdomar",
            "to": f"Nämnd, {board}, {assembly}",
        }
    )
    rows.sort(key=lambda r: r["date"] or date.max)
    return rows


def _shared_tables(cyc: YearData) -> dict[str, TableData]:
    """Tables that are the same in every document of the year: built once."""
    cfg = cyc.cfg
    tidplan = TableData(
        headers=("Datum", "Aktivitet", "Ansvarig", "Deltagare", "Syfte och mål", "Typ"),
        rows=tuple(
            (
                r["date"],
                r["name"],
                r["owner"],
                r["participants"],
                " ".join(x for x in (r["purpose"], r["goal"] and f"Mål: {r['goal']}") if x),
                r["kind"],
            )
            for r in cyc.timetable
        ),
        widths=(2.2, 3.6, 2.6, 3.0, 3.4, 1.7),
    )
    faser = TableData(
        headers=("Fas", "Period", "Ansvarig", "Syfte", "Kvittens senast"),
        rows=tuple(
            (
                p["name"],
                f"{text.iso(p['start'])} – {text.iso(p['end'])}",
                p["owner"],
                p["purpose"],
                p["deadline"],
            )
            for p in cyc.phases
        ),
        widths=(3.4, 2.6, 3.0, 4.8, 2.2),
    )
    committees = [u for u in cfg.units if u.id in cyc.committee_ids]
    frame_rows: list[tuple[Any, ...]] = []
    totals = [0] * HORIZON_YEARS
    for u in committees:
        values = cyc.frames.get(u.id)
        if values is None:
            continue
        frame_rows.append((cyc.names[u.id], *values))
        totals = [a + b for a, b in zip(totals, values, strict=True)]
    frame_rows.append(("Summa", *totals))
    ramar = TableData(
        headers=("Nämnd/styrelse", *(f"{y} (tkr)" for y in cyc.years)),
        rows=tuple(frame_rows),
        widths=(5.6, 2.6, 2.6, 2.6, 2.6),
        numeric=(1, 2, 3, 4),
    )
    organisation = TableData(
        headers=("Nämnd/styrelse", "Förvaltningar", "Antal enheter"),
        rows=tuple(
            (
                cyc.names[u.id],
                ", ".join(cyc.names[c.id] for c in cyc.children.get(u.id, [])) or "–",
                len(cyc.descendants(u.id)),
            )
            for u in committees
        ),
        widths=(5.0, 8.5, 2.5),
        numeric=(2,),
    )
    indicators = [(g["title"], i) for g in cyc.goals for i in g["indicators"]]
    indikatorer = TableData(
        headers=("Mål", "Indikator", "Målvärde", "Kolada-id"),
        rows=tuple(
            (
                gid,
                i["name"],
                i["target_text"],
                i["kolada_id"] or "–",
            )
            for gid, i in indicators
        ),
        widths=(4.6, 6.6, 2.6, 2.2),
    )
    uppfoljningsplan = TableData(
        headers=("Datum", "Tillfälle", "Innehåll", "Rapporteras till"),
        rows=tuple((r["date"], r["occasion"], r["content"], r["to"]) for r in cyc.follow_up_plan),
        widths=(2.3, 4.2, 5.9, 3.6),
    )
    intern_kontroll = TableData(
        headers=("Kontrollområde", "Risk", "Kontroll", "Frekvens"),
        rows=COMMON_CONTROLS,
        widths=(3.6, 4.8, 4.8, 2.8),
    )
    return {
        "tidplan": tidplan,
        "faser": faser,
        "ramar": ramar,
        "organisation": organisation,
        "indikatorer": indikatorer,
        "uppfoljningsplan": uppfoljningsplan,
        "intern_kontroll": intern_kontroll,
    }
