"""The document set of the planning cycle: which documents each phase sends, and rendering one.

`documents_for_phase` lists requests (kind, phase, unit, version); `render` turns one request
into a file under out_root/<plan year>/<phase>/ and returns what the caller records.
Everything derived from the configuration alone (wheel dates, timetable, frames, goals, the
organisation tree) is computed once per (configuration, plan year) and shared by every
document of that year: a region renders thousands of documents per phase.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from config.schema import Goal, OrgConfig, Unit
from models.errors import UserError
from tasks.calendar import RuleError, parse_rule, today_stockholm
from tasks.documents import excel, text, word
from tasks.documents.model import (
    ColumnSpec,
    DocMeta,
    DocRequest,
    Fixed,
    Format,
    RenderedDoc,
    RiskMatrixSpec,
    SheetSpec,
    TableData,
    content_hash,
)
from tasks.documents.sanitize import safe_filename, safe_path
from tasks.wheel import ResolvedWheel, resolve_wheel

# Bump when the writers change what a document looks like: the content hash changes with it.
RENDERER_VERSION = 1
HORIZON_YEARS = 4  # plan year plus three plan years
INVESTMENT_YEARS = 5

MEETING_KIND_SV = {"information": "Information", "influence": "Påverkan", "decision": "Beslut"}
YES_NO = ("Ja", "Nej")
TRAFFIC_LIGHTS = ("Grön", "Gul", "Röd")
FREQUENCIES = ("Löpande", "Månadsvis", "Kvartalsvis", "Per tertial", "Halvårsvis", "Årligen")

# The committee feedback template of seed 001 (six headings), plus the risk and sensitivity
# analysis the auditors asked for.
FEEDBACK_FIELDS: tuple[tuple[str, str, str], ...] = (
    (
        "bidrag_mal",
        "Nämndens bidrag till fullmäktiges mål och uppdrag",
        "Beskriv hur nämnden bidrar till varje mål och uppdrag som riktas till nämnden. "
        "Ange vilka mål nämnden vill avstå från, där det är tillåtet, och varför.",
    ),
    (
        "utvecklingsinsatser",
        "Utvecklingsinsatser och planerade förändringar i verksamheten",
        "Vilka större förändringar planerar nämnden under planperioden? Vad krävs för att de ska lyckas?",
    ),
    (
        "kompetensforsorjning",
        "Inriktning för kompetensförsörjning",
        "Beskriv behov av rekrytering, kompetensutveckling och omställning under planperioden.",
    ),
    (
        "hallbar_ekonomi",
        "Plan för en hållbar ekonomi och prioritering av resurser",
        "Hur når nämnden en ekonomi i balans inom ramen? Vilka prioriteringar och "
        "effektiviseringar föreslås, och vad blir konsekvenserna?",
    ),
    (
        "investeringar",
        "Investeringsplanering",
        "Kommentera investeringsplanen för nämndens del. Nya behov anges i Excelbilagan med belopp per år.",
    ),
    ("ovriga_synpunkter", "Övriga synpunkter", "Övriga synpunkter på planeringsförutsättningarna."),
    (
        "risk_kanslighet",
        "Risk- och känslighetsanalys",
        "Vilka antaganden är planen känsligast för (volymer, löner, priser, statsbidrag, "
        "kompetens)? Vad händer om de slår fel, och hur hanterar nämnden det?",
    ),
)

# Follow-up dialogue of seed 003 (Forshaga).
DIALOGUE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("stolta", "Vilka tre saker är vi mest stolta över?", "Ange tre saker med en kort motivering."),
    ("utmaningar", "Vilka tre saker ser vi som våra största utmaningar?", "Ange tre utmaningar."),
    ("lardomar", "Vilka tre lärdomar har vi gjort?", "Ange tre lärdomar och vad de betyder framåt."),
    ("gor_sjalva", "Vad gör vi själva?", "Vad kommer vi själva att göra som följd av analysen?"),
    (
        "lyfter_vidare",
        "Vad lyfter vi till nästa nivå?",
        "Vad behöver lyftas till nästa nivå för stöd eller beslut?",
    ),
    (
        "dela_med_oss",
        "Vad vill vi dela med oss av?",
        "Vad i vår analys är viktigt att dela med andra? (Kommunikation och transparens.)",
    ),
)
COMMITTEE_DIALOGUE_FIELDS: tuple[tuple[str, str, str], ...] = (
    (
        "mot_malen",
        "Är verksamheten där den borde vara i arbetet mot de övergripande målen?",
        "Bedöm läget mot fullmäktiges mål och målområden.",
    ),
    (
        "paverkan_invanare",
        "Hur påverkas de vi är till för på kort och lång sikt?",
        "Hur är det troligt att de vi är till för påverkas av sättet verksamheten har arbetat "
        "med de övergripande målen?",
    ),
)

# Organisation-wide internal control areas (seeds 002, 003), shown in the PF appendix and
# offered as starting rows in each committee's internal control plan.
COMMON_CONTROLS: tuple[tuple[str, str, str, str], ...] = (
    ("Attest och utbetalningar", "Felaktiga eller obehöriga utbetalningar", "Stickprov på attester", "Kvartalsvis"),
    ("Inköp och avtal", "Inköp utanför avtal", "Avtalstrohetsuppföljning", "Per tertial"),
    ("Informationssäkerhet", "Obehörig åtkomst till personuppgifter", "Behörighetsgenomgång", "Halvårsvis"),
    ("Bisysslor", "Otillåtna bisysslor", "Årlig inventering av bisysslor", "Årligen"),
    ("Kompetensförsörjning", "Svårt att rekrytera nyckelkompetenser", "Uppföljning av vakanser", "Per tertial"),
)

# The finance department's assessment (probability, consequence) of the common areas.
COMMON_CONTROL_SCORES: tuple[tuple[int, int], ...] = ((2, 3), (3, 2), (2, 4), (2, 2), (3, 3))

# Criteria for the investment prioritisation (seed 001: "fastställda kriterier") and weights.
INVESTMENT_CRITERIA: tuple[tuple[str, str, float], ...] = (
    ("Lagkrav och säkerhet", "Krävs investeringen av lag, myndighetskrav eller säkerhet?", 0.30),
    ("Verksamhetsnytta", "Hur mycket förbättras kvalitet och tillgänglighet för invånarna?", 0.25),
    ("Ekonomisk nytta", "Ger investeringen lägre driftkostnader eller undvikna kostnader?", 0.20),
    ("Hållbarhet", "Bidrar investeringen till miljö- och klimatmål?", 0.15),
    ("Risk vid utebliven investering", "Vad händer om investeringen inte görs?", 0.10),
)

FOLLOW_UP_ROWS = ("Intäkter", "Personalkostnader", "Lokalkostnader", "Köpt verksamhet", "Övriga kostnader")


@dataclass(frozen=True)
class KindSpec:
    kind: str
    phase: str
    format: Format
    title: Callable[[Cycle, Unit, DocRequest], str]
    recipients: Callable[[Cycle], list[Unit]]


# ---------------------------------------------------------------------------
# What is computed once per (configuration, plan year)
# ---------------------------------------------------------------------------


@dataclass
class Cycle:
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
            "name": u.name,
            "level": u.level,
            "level_name": level.name,
            "is_committee": u.id in self.committee_ids,
            "parent": self.names.get(u.parent or "", ""),
            "committee": self.names.get(committee or "", ""),
        }

    def goals_for(self, committee_id: str | None) -> list[dict[str, Any]]:
        """Goals that concern a committee: those targeted at it and those targeted at nobody."""
        if committee_id is None:
            return self.goals
        return [g for g in self.goals if not g["targeted_ids"] or committee_id in g["targeted_ids"]]

    def descendants(self, unit_id: str) -> list[Unit]:
        out: list[Unit] = []
        stack = list(reversed(self.children.get(unit_id, [])))
        while stack:
            u = stack.pop()
            out.append(u)
            stack.extend(reversed(self.children.get(u.id, [])))
        return out


_cache_lock = threading.Lock()
_cache: dict[tuple[int, int], Cycle] = {}
_CACHE_SIZE = 8


def cycle(cfg: OrgConfig, plan_year: int) -> Cycle:
    # Keyed by identity (a config holds dicts, so it is not hashable); the entry keeps the
    # config alive, so an id cannot be reused while it is cached.
    key = (id(cfg), plan_year)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit.cfg is cfg:
            return hit
    built = _build_cycle(cfg, plan_year)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = built
    return built


def _genitive(name: str) -> str:
    return name if name[-1:].lower() in ("s", "x", "z") else name + "s"


def _build_cycle(cfg: OrgConfig, plan_year: int) -> Cycle:
    try:
        wheel = resolve_wheel(cfg, plan_year)
    except RuleError as exc:
        raise UserError(f"configuration: the annual wheel cannot be resolved for {plan_year}: {exc}") from None
    names = {u.id: u.name for u in cfg.units}
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
    cyc = Cycle(
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
        org=org,
        phases=phases,
        timetable=timetable,
        follow_up_plan=_follow_up_plan(cfg, plan_year, names),
        frames=frames,
        goals=goals,
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
            {"id": i.id, "name": i.name, "target": i.target, "unit": i.unit, "kolada_id": i.kolada_id or ""}
            for i in g.indicators
        ],
    }


def _period_end(rule: str, plan_year: int) -> date | None:
    # A report "per 31 December" closes a period: the date keeps, even on a day off.
    try:
        return parse_rule(rule).resolve(plan_year, 0, "keep", None)
    except RuleError:
        return None


def _month_end(plan_year: int, month: int) -> date:
    first_next = date(plan_year + 1, 1, 1) if month == 12 else date(plan_year, month + 1, 1)
    return first_next - timedelta(days=1)


def follow_up_occasions(cfg: OrgConfig, plan_year: int) -> list[tuple[str, date | None]]:
    """The follow-up occasions of a plan year that produce documents, with Swedish labels:
    forecasts, interim reports and the annual report, in date order."""
    out: list[tuple[str, date | None]] = []
    for month in cfg.follow_up.forecasts:
        d = _month_end(plan_year, month)
        out.append((f"prognos {d.day} {text.MONTHS_SV[month - 1]}", d))
    for rule in cfg.follow_up.interim_reports:
        d = _period_end(rule, plan_year)
        out.append((f"delår {d.day} {text.MONTHS_SV[d.month - 1]}" if d else f"delår {rule}", d))
    d = _period_end(cfg.follow_up.annual_report, plan_year)
    out.append(("årsredovisning", d))
    out.sort(key=lambda x: x[1] or date.max)
    return out


def _follow_up_plan(cfg: OrgConfig, plan_year: int, names: Mapping[str, str]) -> list[dict[str, Any]]:
    fu = cfg.follow_up
    board = names[cfg.organisation.roles.executive_board]
    assembly = names[cfg.organisation.roles.assembly]
    rows: list[dict[str, Any]] = []
    for month in fu.monthly_checks:
        rows.append(
            {
                "date": _month_end(plan_year, month),
                "occasion": f"Månadsuppföljning {text.MONTHS_SV[month - 1]}",
                "content": "Periodens utfall mot periodbudget",
                "to": "Nämnd",
            }
        )
    for month in fu.forecasts:
        rows.append(
            {
                "date": _month_end(plan_year, month),
                "occasion": f"Budgetuppföljning {text.MONTHS_SV[month - 1]}",
                "content": "Utfall och helårsprognos, avvikelser med analys och åtgärder",
                "to": f"Nämnd, {board}",
            }
        )
    for rule in fu.interim_reports:
        rows.append(
            {
                "date": _period_end(rule, plan_year),
                "occasion": f"Delårsrapport per {rule.lower()}",
                "content": "Mål, uppdrag, ekonomi, investeringar och intern kontroll; prognos",
                "to": f"Nämnd, {board}, {assembly}",
            }
        )
    rows.append(
        {
            "date": _period_end(fu.annual_report, plan_year),
            "occasion": f"Årsredovisning per {fu.annual_report.lower()}",
            "content": "Måluppfyllelse, ekonomi, investeringar, intern kontroll och lärdomar",
            "to": f"Nämnd, {board}, {assembly}",
        }
    )
    rows.sort(key=lambda r: r["date"] or date.max)
    return rows


def _shared_tables(cyc: Cycle) -> dict[str, TableData]:
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
        widths=(3.0, 3.4, 2.8, 4.6, 2.2),
    )
    committees = [u for u in cfg.units if u.id in cyc.committee_ids]
    frame_rows: list[tuple[Any, ...]] = []
    totals = [0] * HORIZON_YEARS
    for u in committees:
        values = cyc.frames.get(u.id)
        if values is None:
            continue
        frame_rows.append((u.name, *values))
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
                u.name,
                ", ".join(c.name for c in cyc.children.get(u.id, [])) or "–",
                len(cyc.descendants(u.id)),
            )
            for u in committees
        ),
        widths=(5.0, 8.5, 2.5),
        numeric=(2,),
    )
    indicators = [(g["id"], i) for g in cyc.goals for i in g["indicators"]]
    indikatorer = TableData(
        headers=("Mål", "Indikator", "Målvärde", "Kolada-id"),
        rows=tuple(
            (
                gid,
                i["name"],
                f"{text.tal(i['target'], 0 if float(i['target']).is_integer() else 1)} {i['unit']}".strip(),
                i["kolada_id"] or "–",
            )
            for gid, i in indicators
        ),
        widths=(2.5, 8.5, 2.8, 2.2),
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


# ---------------------------------------------------------------------------
# The catalog
# ---------------------------------------------------------------------------


def _board(cyc: Cycle) -> list[Unit]:
    return [cyc.cfg.unit(cyc.cfg.organisation.roles.executive_board)]


def _working_committee(cyc: Cycle) -> list[Unit]:
    return [cyc.cfg.unit(cyc.cfg.organisation.roles.working_committee)]


def _committees(cyc: Cycle) -> list[Unit]:
    return [u for u in cyc.cfg.units if u.id in cyc.committee_ids]


def _administrations(cyc: Cycle) -> list[Unit]:
    return cyc.cfg.units_at(cyc.cfg.levels[3].id) if len(cyc.cfg.levels) > 3 else []


def _follow_up_units(cyc: Cycle) -> list[Unit]:
    # Committees and everything below them; each level assesses with the level below's
    # reports and hands a summary upwards.
    cfg = cyc.cfg
    return [u for u in cfg.units if cfg.level_index(u.level) >= 2]


def _occasion(req: DocRequest) -> str:
    occ = req.get("occasion")
    return f" {occ}" if occ else ""


def _years(cyc: Cycle) -> str:
    return f"{cyc.plan_year}–{cyc.horizon_end}"


KINDS: dict[str, KindSpec] = {
    k.kind: k
    for k in (
        KindSpec(
            "planeringsunderlag",
            "preparation",
            "docx",
            lambda c, u, r: f"Planeringsunderlag inför {c.org['plan_name']} {_years(c)}",
            _board,
        ),
        KindSpec(
            "investeringsprioritering",
            "preparation",
            "xlsx",
            lambda c, u, r: f"Investeringsprioritering {c.invest_years[0]}–{c.invest_years[-1]}",
            _board,
        ),
        KindSpec(
            "planeringsforutsattningar",
            "planning_prerequisites",
            "docx",
            lambda c, u, r: f"Planeringsförutsättningar {_years(c)}",
            _committees,
        ),
        KindSpec(
            "pf_bilagor",
            "planning_prerequisites",
            "xlsx",
            lambda c, u, r: f"Planeringsförutsättningar {_years(c)} – bilagor",
            _committees,
        ),
        KindSpec(
            "aterkoppling",
            "committee_feedback",
            "docx",
            lambda c, u, r: f"Återkoppling på planeringsförutsättningarna {_years(c)} – {u.name}",
            _committees,
        ),
        KindSpec(
            "regionplan_forslag",
            "regional_plan",
            "docx",
            lambda c, u, r: f"Förslag till {c.org['plan_name']} {_years(c)}",
            _working_committee,
        ),
        KindSpec(
            "regionplan_beslutad",
            "regional_plan",
            "docx",
            lambda c, u, r: f"{c.org['Plan_name']} {_years(c)} – beslutad",
            _committees,
        ),
        KindSpec(
            "verksamhetsplan",
            "operational_plans",
            "docx",
            lambda c, u, r: f"Verksamhetsplan {_years(c)} – {u.name}",
            _committees,
        ),
        KindSpec(
            "verksamhetsplan_mall",
            "operational_plans",
            "xlsx",
            lambda c, u, r: f"Verksamhetsplan {_years(c)} – mål, åtaganden och intern kontroll",
            _committees,
        ),
        KindSpec(
            "aktivitetsplan",
            "activity_plans",
            "xlsx",
            lambda c, u, r: f"Aktivitetsplan och detaljbudget {c.plan_year} – {u.name}",
            _administrations,
        ),
        KindSpec(
            "uppfoljning",
            "follow_up",
            "xlsx",
            lambda c, u, r: f"Uppföljning {c.plan_year}{_occasion(r)} – {u.name}",
            _follow_up_units,
        ),
        KindSpec(
            "uppfoljning_berattelse",
            "follow_up",
            "docx",
            lambda c, u, r: f"Uppföljningsdialog {c.plan_year}{_occasion(r)} – {u.name}",
            _follow_up_units,
        ),
    )
}


def kinds_for_phase(phase_id: str) -> list[str]:
    return [k.kind for k in KINDS.values() if k.phase == phase_id]


def documents_for_phase(
    cfg: OrgConfig, plan_year: int, phase_id: str, *, version: int = 1, occasion: str | None = None
) -> list[DocRequest]:
    """Every document the phase sends, recipient by recipient, in a stable order.

    `occasion` (follow_up only, e.g. "delår 31 augusti") is carried in each request's extra.
    """
    kinds = kinds_for_phase(phase_id)
    if not kinds:
        raise UserError(f"unknown phase {phase_id!r}: expected one of {', '.join(_phase_ids())}")
    cyc = cycle(cfg, plan_year)
    extra = (("occasion", occasion),) if occasion else ()
    out: list[DocRequest] = []
    for kind in kinds:
        for unit in KINDS[kind].recipients(cyc):
            out.append(DocRequest(kind, phase_id, unit.id, version, extra))
    return out


def _phase_ids() -> list[str]:
    return list(dict.fromkeys(k.phase for k in KINDS.values()))


def doc_key(cfg: OrgConfig, plan_year: int, req: DocRequest) -> str:
    return f"{cfg.organisation.id}/{plan_year}/{req.phase_id}/{req.unit_id}/{req.kind}/v{req.version}"


def _check(cfg: OrgConfig, req: DocRequest) -> tuple[KindSpec, Unit]:
    spec = KINDS.get(req.kind)
    if spec is None:
        raise UserError(f"unknown document kind {req.kind!r}: expected one of {', '.join(KINDS)}")
    if spec.phase != req.phase_id:
        raise UserError(f"document kind {req.kind!r} belongs to phase {spec.phase!r}, not {req.phase_id!r}")
    if not isinstance(req.version, int) or req.version < 1:
        raise UserError(f"document version must be a whole number ≥ 1, got {req.version!r}")
    try:
        unit = cfg.unit(req.unit_id)
    except KeyError:
        raise UserError(f"unknown unit {req.unit_id!r} in document request {req.kind!r}") from None
    return spec, unit


def _meta(cyc: Cycle, spec: KindSpec, unit: Unit, req: DocRequest, created: date) -> DocMeta:
    cfg = cyc.cfg
    try:
        phase_name = cfg.phase(req.phase_id).name
    except KeyError:
        phase_name = req.phase_id
    return DocMeta(
        organisation=cfg.organisation.name,
        plan_year=cyc.plan_year,
        horizon_end=cyc.horizon_end,
        phase_id=req.phase_id,
        phase_name=phase_name,
        kind=req.kind,
        title=spec.title(cyc, unit, req),
        unit_id=unit.id,
        recipient=unit.name,
        version=req.version,
        doc_key=doc_key(cfg, cyc.plan_year, req),
        created=created,
    )


def file_name(req: DocRequest, fmt: Format) -> str:
    occasion = req.get("occasion")
    parts = [req.unit_id, req.kind] + ([occasion.replace(" ", "-")] if occasion else []) + [f"v{req.version}"]
    return safe_filename("_".join(parts) + "." + fmt)


def render(
    cfg: OrgConfig, plan_year: int, req: DocRequest, out_root: Path, *, created: date | None = None
) -> RenderedDoc:
    """Render one document to out_root/<plan_year>/<phase>/<file> and describe it.

    The file is written to a temporary name in the same folder and renamed into place.
    `created` (the date on the cover) defaults to today in Stockholm; it is not part of the
    content hash, so re-rendering unchanged content on another day keeps the hash.
    """
    spec, unit = _check(cfg, req)
    cyc = cycle(cfg, plan_year)
    meta = _meta(cyc, spec, unit, req, created or today_stockholm())
    root = Path(out_root)
    path = safe_path(root, str(plan_year), req.phase_id, file_name(req, spec.format))
    ctx = _context(cyc, unit, req, meta)
    if spec.format == "docx":
        markup, tables = _DOCX_BUILDERS[req.kind](cyc, unit, req, ctx)
        digest = content_hash(
            {"renderer": RENDERER_VERSION, "meta": meta.hashable(), "markup": markup, "tables": tables}
        )
        word.write_docx(path, meta, markup, tables)
    else:
        sheets, instructions = _XLSX_BUILDERS[req.kind](cyc, unit, req, ctx)
        digest = content_hash(
            {
                "renderer": RENDERER_VERSION,
                "meta": meta.hashable(),
                "sheets": sheets,
                "instructions": instructions,
            }
        )
        excel.write_xlsx(path, meta, sheets, instructions)
    return RenderedDoc(
        kind=req.kind,
        phase_id=req.phase_id,
        unit_id=unit.id,
        version=req.version,
        relpath=path.relative_to(root.resolve()).as_posix(),
        format=spec.format,
        content_hash=digest,
        doc_key=meta.doc_key,
        title=meta.title,
    )


def expected_fields(cfg: OrgConfig, plan_year: int, req: DocRequest) -> dict[str, str]:
    """The fill-in fields (name -> heading) of a Word document, for reading a return back
    with `word.read_fields(path, labels=...)`. Renders the text only, writes nothing."""
    spec, unit = _check(cfg, req)
    if spec.format != "docx":
        return {}
    cyc = cycle(cfg, plan_year)
    meta = _meta(cyc, spec, unit, req, today_stockholm())
    markup, _ = _DOCX_BUILDERS[req.kind](cyc, unit, req, _context(cyc, unit, req, meta))
    return word.fields_in_markup(markup)


# ---------------------------------------------------------------------------
# Template contexts: plain data only (the organisation's templates run in a sandbox)
# ---------------------------------------------------------------------------


def _context(cyc: Cycle, unit: Unit, req: DocRequest, meta: DocMeta) -> dict[str, Any]:
    phase = next((p for p in cyc.phases if p["id"] == req.phase_id), None)
    committee_id = cyc.committee_of.get(unit.id)
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
        "occasion": req.get("occasion") or "",
        "extra": dict(req.extra),
    }


DocxResult = tuple[str, dict[str, TableData]]
XlsxResult = tuple[list[SheetSpec | RiskMatrixSpec], str]


def _fields(items: tuple[tuple[str, str, str], ...]) -> list[dict[str, str]]:
    return [{"name": n, "label": label, "guide": guide} for n, label, guide in items]


def _committee_frame_table(cyc: Cycle, committee_id: str | None) -> TableData | None:
    values = cyc.frames.get(committee_id or "")
    if values is None:
        return None
    first = values[0] or 1
    return TableData(
        headers=("År", "Ram (tkr)", "Förändring mot planåret"),
        rows=tuple((y, v, text.procent((v - values[0]) / first * 100)) for y, v in zip(cyc.years, values, strict=True)),
        widths=(3.0, 5.0, 8.0),
        numeric=(1, 2),
    )


def _goals_table(goals: list[dict[str, Any]]) -> TableData:
    return TableData(
        headers=("Målområde", "Mål", "Riktat till", "Får avstås"),
        rows=tuple((g["area"], g["title"], g["targeted_text"], "Ja" if g["opt_out_allowed"] else "Nej") for g in goals),
        widths=(3.2, 7.6, 3.6, 1.6),
    )


def _decisions(cyc: Cycle, req: DocRequest) -> TableData:
    """RSAU → RS → RF (KSAU → KS → KF): from req.extra when decided, else planned dates from the
    wheel. extra keys per role (working_committee, executive_board, assembly):
    <role>_date (ISO), <role>_paragraph, <role>_decision."""
    cfg = cyc.cfg
    roles = cfg.organisation.roles
    plan = f"{cyc.org['plan_name']} {_years(cyc)}"
    defaults = {
        "working_committee": f"Föreslår {cyc.org['executive_board']} att föreslå {cyc.org['assembly']} "
        f"att fastställa {plan}.",
        "executive_board": f"Föreslår {cyc.org['assembly']} att fastställa {plan}.",
        "assembly": f"Fastställer {plan}.",
    }
    rows = []
    for role in ("working_committee", "executive_board", "assembly"):
        unit_id = getattr(roles, role)
        given = req.get(f"{role}_date")
        when: date | str | None
        if given:
            try:
                when = date.fromisoformat(given)
            except ValueError:
                when = given
            status = "Beslutat"
        else:
            when = _planned_decision(cyc, unit_id)
            status = "Planerat"
        rows.append(
            (
                cyc.names[unit_id],
                when if when is not None else "Ej fastställt",
                req.get(f"{role}_paragraph") or "",
                req.get(f"{role}_decision") or defaults[role],
                status,
            )
        )
    return TableData(
        headers=("Instans", "Datum", "Paragraf", "Beslut", "Status"),
        rows=tuple(rows),
        widths=(3.6, 2.4, 1.8, 6.2, 2.0),
    )


def _planned_decision(cyc: Cycle, unit_id: str) -> date | None:
    rows = [r for r in cyc.timetable if r["phase_id"] == "regional_plan" and r["owner_id"] == unit_id]
    decisions = [r for r in rows if r.get("meeting_kind") == "decision"]
    pick = decisions or rows
    return pick[-1]["date"] if pick else None


def _docx_planeringsunderlag(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> DocxResult:
    tables = {k: cyc.tables[k] for k in ("ramar", "indikatorer", "faser", "intern_kontroll")}
    return text.render("planeringsunderlag.txt.j2", ctx | {"previous_year": cyc.plan_year - 1}), tables


def _docx_planeringsforutsattningar(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> DocxResult:
    committee_id = cyc.committee_of.get(unit.id)
    tables = dict(cyc.tables)
    tables["mal"] = _goals_table(cyc.goals)
    own = _committee_frame_table(cyc, committee_id)
    if own is not None:
        tables["namndens_ram"] = own
    feedback = next((p for p in cyc.phases if p["id"] == "committee_feedback"), None)
    extra = {
        "feedback_fields": _fields(FEEDBACK_FIELDS),
        "feedback_deadline": feedback["deadline"] if feedback else None,
        "has_own_frame": own is not None,
    }
    return text.render("planeringsforutsattningar.txt.j2", ctx | extra), tables


def _docx_aterkoppling(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> DocxResult:
    committee_id = cyc.committee_of.get(unit.id)
    tables: dict[str, TableData] = {"mal": _goals_table(cyc.goals_for(committee_id))}
    own = _committee_frame_table(cyc, committee_id)
    if own is not None:
        tables["namndens_ram"] = own
    extra = {"fields": _fields(FEEDBACK_FIELDS), "has_own_frame": own is not None}
    return text.render("aterkoppling.txt.j2", ctx | extra), tables


def _docx_regionplan_forslag(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> DocxResult:
    tables = {k: cyc.tables[k] for k in ("ramar", "indikatorer", "uppfoljningsplan")}
    tables["mal"] = _goals_table(cyc.goals)
    tables["beslutsgang"] = _decisions(cyc, DocRequest(req.kind, req.phase_id, req.unit_id))
    committees = [{"id": c.id, "name": c.name, "field": f"namnd_{i + 1}"} for i, c in enumerate(_committees(cyc))]
    return text.render("regionplan_forslag.txt.j2", ctx | {"committee_list": committees}), tables


def _docx_regionplan_beslutad(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> DocxResult:
    committee_id = cyc.committee_of.get(unit.id)
    tables = {"beslut": _decisions(cyc, req), "ramar": cyc.tables["ramar"]}
    tables["mal"] = _goals_table(cyc.goals_for(committee_id))
    own = _committee_frame_table(cyc, committee_id)
    if own is not None:
        tables["namndens_ram"] = own
    vp = next((p for p in cyc.phases if p["id"] == "operational_plans"), None)
    extra = {"has_own_frame": own is not None, "vp_deadline": vp["deadline"] if vp else None}
    return text.render("regionplan_beslutad.txt.j2", ctx | extra), tables


def _docx_verksamhetsplan(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> DocxResult:
    committee_id = cyc.committee_of.get(unit.id)
    tables = {"uppfoljningsplan": cyc.tables["uppfoljningsplan"]}
    own = _committee_frame_table(cyc, committee_id)
    if own is not None:
        tables["namndens_ram"] = own
    goal_fields = [{"name": f"mal_{i + 1}", "goal": g} for i, g in enumerate(cyc.goals_for(committee_id))]
    administrations = [c.name for c in cyc.children.get(unit.id, [])]
    extra = {"goal_fields": goal_fields, "has_own_frame": own is not None, "administrations": administrations}
    return text.render("verksamhetsplan.txt.j2", ctx | extra), tables


def _docx_uppfoljning_berattelse(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> DocxResult:
    fields = _fields(DIALOGUE_FIELDS)
    if unit.id in cyc.committee_ids:
        fields += _fields(COMMITTEE_DIALOGUE_FIELDS)
    below = [c.name for c in cyc.children.get(unit.id, [])]
    extra = {"fields": fields, "units_below": below}
    return text.render("uppfoljning_berattelse.txt.j2", ctx | extra), {
        "uppfoljningsplan": cyc.tables["uppfoljningsplan"]
    }


_DOCX_BUILDERS: dict[str, Callable[[Cycle, Unit, DocRequest, dict[str, Any]], DocxResult]] = {
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
    return tuple(f"{g['id']} – {g['title']}"[:250] for g in goals)


def _xlsx_investeringsprioritering(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> XlsxResult:
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
    committees = tuple(c.name for c in _committees(cyc))
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


def _timetable_sheet(cyc: Cycle) -> SheetSpec:
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


def _xlsx_pf_bilagor(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> XlsxResult:
    committees = _committees(cyc)
    frame_rows = tuple((u.name, *cyc.frames[u.id], None) for u in committees if u.id in cyc.frames)
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
    names = tuple(u.name for u in committees)
    invest = SheetSpec(
        name="Investeringsplan",
        columns=(
            _col("Nämnd/styrelse", "choice", 30, choices=names, editable=True),
            _col("Investeringsobjekt", width=34, editable=True),
            *(_col(str(y), "sek", 13, key=year_keys[i], editable=True) for i, y in enumerate(cyc.invest_years)),
            _col("Summa", "formula", 14, formula=f"=SUM({{{year_keys[0]}}}:{{{year_keys[-1]}}})", result="sek"),
        ),
        rows=tuple((n, None, *([None] * INVESTMENT_YEARS), None) for n in names),
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
    return sheets, text.render("pf_bilagor.txt.j2", ctx)


def _xlsx_verksamhetsplan_mall(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> XlsxResult:
    committee_id = cyc.committee_of.get(unit.id)
    goals = cyc.goals_for(committee_id)
    goal_rows = tuple(
        (g["area"], g["id"], g["title"], g["targeted_text"], None if g["opt_out_allowed"] else Fixed("–"), None)
        for g in goals
    )
    assembly_goals = SheetSpec(
        name="Fullmäktiges mål",
        columns=(
            _col("Målområde", width=22),
            _col("Mål-id", width=12),
            _col("Mål", width=48),
            _col("Riktat till", width=24),
            _col("Avstår (Ja/Nej)", "choice", 12, choices=YES_NO, editable=True),
            _col("Nämndens bidrag och åtaganden", width=50, editable=True),
        ),
        rows=goal_rows,
    )
    indicator_rows = tuple(
        (g["id"], i["name"], i["kolada_id"] or "–", i["target"], i["unit"], None, None)
        for g in goals
        for i in g["indicators"]
    )
    indicators = SheetSpec(
        name="Indikatorer",
        columns=(
            _col("Mål-id", width=12),
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
    administrations = tuple(c.name for c in cyc.children.get(unit.id, [])) or (unit.name,)
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
    controls = _risk_sheet(
        "Intern kontroll",
        tuple(
            (area, risk, None, None, None, control, freq, None, None) for area, risk, control, freq in COMMON_CONTROLS
        ),
        editable=True,
        blank=12,
    )
    matrix = RiskMatrixSpec("Riskmatris", "Intern kontroll", "p", "c")
    sheets: list[SheetSpec | RiskMatrixSpec] = [assembly_goals, indicators, own, commitments, controls, matrix]
    return sheets, text.render("verksamhetsplan_mall.txt.j2", ctx)


ACTIVITY_ROWS_PER_UNIT = 3


def _xlsx_aktivitetsplan(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> XlsxResult:
    below = cyc.descendants(unit.id) or [unit]
    committee_id = cyc.committee_of.get(unit.id)
    goal_choices = _goal_choices(cyc.goals_for(committee_id))
    activity_rows = tuple(
        (u.name, None, None, None, None, None, None) for u in below for _ in range(ACTIVITY_ROWS_PER_UNIT)
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
    budget = SheetSpec(
        name="Detaljbudget",
        columns=(
            _col("Enhet", width=30),
            _col("Id", width=12),
            _col("Personalkostnader", "sek", 16, editable=True, key="pers"),
            _col("Lokalkostnader", "sek", 16, editable=True, key="lok"),
            _col("Övriga kostnader", "sek", 16, editable=True, key="ovr"),
            _col("Intäkter (anges negativt)", "sek", 16, editable=True, key="int", bounds=(-1e12, 0)),
            _col("Nettobudget", "formula", 16, formula="=SUM({pers}:{int})", result="sek"),
        ),
        rows=tuple((u.name, u.id, None, None, None, None, None) for u in below),
        totals=True,
    )
    frame = cyc.frames.get(committee_id or "")
    extra = {
        "committee_frame": frame[0] if frame else None,
        "unit_count": len(below),
        "rows_per_unit": ACTIVITY_ROWS_PER_UNIT,
    }
    return [activities, budget], text.render("aktivitetsplan.txt.j2", ctx | extra)


def _xlsx_uppfoljning(cyc: Cycle, unit: Unit, req: DocRequest, ctx: dict[str, Any]) -> XlsxResult:
    threshold = cyc.cfg.follow_up.deviation_threshold_percent / 100
    economy = SheetSpec(
        name="Ekonomi",
        columns=(
            _col("Post", width=24),
            _col("Budget helår", "sek", 15, editable=True, key="b"),
            _col("Utfall hittills", "sek", 15, editable=True),
            _col("Prognos helår", "sek", 15, editable=True, key="f"),
            _col("Avvikelse", "formula", 14, formula='=IF(N({f})=0,"",{b}-{f})', result="sek"),
            _col(
                "Avvikelse %",
                "formula",
                12,
                formula='=IF(OR(N({b})=0,N({f})=0),"",({b}-{f})/ABS({b}))',
                result="percent",
                highlight="deviation",
                threshold=threshold,
            ),
            _col("Analys", width=44, editable=True),
            _col("Föreslagen åtgärd", width=40, editable=True),
        ),
        rows=tuple((post, None, None, None, None, None, None, None) for post in FOLLOW_UP_ROWS),
        blank_rows=3,
        totals=True,
    )
    goals = cyc.goals_for(cyc.committee_of.get(unit.id))
    goal_sheet = SheetSpec(
        name="Mål",
        columns=(
            _col("Mål-id", width=12),
            _col("Mål", width=48),
            _col("Bedömning", "choice", 12, choices=TRAFFIC_LIGHTS, editable=True, highlight="traffic_light"),
            _col("Kommentar och analys", width=50, editable=True),
            _col("Åtgärd", width=36, editable=True),
        ),
        rows=tuple((g["id"], g["title"], None, None, None) for g in goals),
    )
    indicators = SheetSpec(
        name="Indikatorer",
        columns=(
            _col("Mål-id", width=12),
            _col("Indikator", width=44),
            _col("Målvärde", "number", 11),
            _col("Enhet", width=10),
            _col("Utfall", "number", 11, editable=True),
            _col("Kommentar", width=44, editable=True),
        ),
        rows=tuple((g["id"], i["name"], i["target"], i["unit"], None, None) for g in goals for i in g["indicators"]),
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
    extra = {"threshold_percent": cyc.cfg.follow_up.deviation_threshold_percent}
    return [economy, goal_sheet, indicators, investments], text.render("uppfoljning.txt.j2", ctx | extra)


_XLSX_BUILDERS: dict[str, Callable[[Cycle, Unit, DocRequest, dict[str, Any]], XlsxResult]] = {
    "investeringsprioritering": _xlsx_investeringsprioritering,
    "pf_bilagor": _xlsx_pf_bilagor,
    "verksamhetsplan_mall": _xlsx_verksamhetsplan_mall,
    "aktivitetsplan": _xlsx_aktivitetsplan,
    "uppfoljning": _xlsx_uppfoljning,
}

assert set(_DOCX_BUILDERS) | set(_XLSX_BUILDERS) == set(KINDS), "every kind needs a builder"
