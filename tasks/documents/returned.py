"""What came back: the stored returns of a plan year, as typed views the document builders read.

The chain carries content, not only signatures. A return is stored as data
(`models.tables.Submission.content`: Word fields as {"fields": {name: text}}, Excel rows as
{"sheets": {sheet: [{"row", "context", "values"}]}}); here the current one per document is read
(highest version of the document, then its latest submission) and turned into small frozen
records: investments, committee feedback, the proposal's text, operational plans (commitments,
own goals, the committee's own risks) and detailed budgets.

`Returned` is plain data (picklable): the caller loads it once per batch (`load_returned`, one
query) and passes it to every render; a builder that reads a kind nobody has returned yet gets an
empty view and the document says so in Swedish. `SOURCES` says which returned kinds each document
kind reads, so a batch loads only those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlmodel import col, select

from config.schema import OrgConfig
from models.db import session_scope
from models.tables import Cycle, Document, Submission

# Document kind -> the returned kinds its content reads.
SOURCES: dict[str, tuple[str, ...]] = {
    "planeringsforutsattningar": ("investeringsprioritering", "planeringsunderlag"),
    "pf_bilagor": ("investeringsprioritering",),
    "regionplan_forslag": ("investeringsprioritering", "pf_bilagor", "aterkoppling", "regionplan_forslag"),
    "regionplan_beslutad": ("investeringsprioritering", "pf_bilagor", "aterkoppling", "regionplan_forslag"),
    "verksamhetsplan": ("regionplan_forslag",),
    "aktivitetsplan": ("verksamhetsplan_mall",),
    "uppfoljning": ("aktivitetsplan",),
    "uppfoljning_berattelse": ("aktivitetsplan",),
    # Level reports (tasks/level_reports.py): the committees' own risks and detailed budgets.
    "nivarapport": ("verksamhetsplan_mall", "aktivitetsplan"),
    "nivarapport_siffror": ("verksamhetsplan_mall", "aktivitetsplan"),
}

# The detailed budget's lines are the follow-up's lines (tasks/documents/content.FOLLOW_UP_ROWS).
BUDGET_COLUMNS: dict[str, str] = {
    "Intäkter": "Intäkter (anges negativt)",
    "Personalkostnader": "Personalkostnader",
    "Lokalkostnader": "Lokalkostnader",
    "Köpt verksamhet": "Köpt verksamhet",
    "Övriga kostnader": "Övriga kostnader",
}


@dataclass(frozen=True)
class Investment:
    committee: str  # the committee's name, as chosen in the workbook
    name: str
    description: str
    total: float  # tkr
    start_year: int | None
    score: float | None
    comment: str
    per_year: Mapping[int, float]  # tkr per year of the investment plan
    source: str  # "prioritering" or the committee that added it in the appendix


@dataclass(frozen=True)
class Commitment:
    text: str
    goal: str  # the goal it is linked to, as chosen ("Vård i tid" ...)
    administration: str
    due: str
    resources: float | None


@dataclass(frozen=True)
class OwnGoal:
    area: str
    title: str
    goal: str
    indicator: str
    target: float | None
    administration: str


@dataclass(frozen=True)
class Risk:
    area: str
    risk: str
    probability: int
    consequence: int
    control: str
    frequency: str
    owner: str
    action: str

    @property
    def value(self) -> int:
        return self.probability * self.consequence


@dataclass(frozen=True)
class OperationalPlan:
    commitments: tuple[Commitment, ...]
    own_goals: tuple[OwnGoal, ...]
    risks: tuple[Risk, ...]
    contributions: Mapping[str, str]  # goal title -> the committee's contribution


@dataclass(frozen=True)
class Returned:
    """kind -> key -> content; the key is the document's unit id (and "<unit>|<occasion>" in the
    follow-up). `days` holds the day each return came in (ISO), by the same keys."""

    contents: Mapping[str, Mapping[str, dict[str, Any]]] = field(default_factory=dict)
    # Views computed once per batch (every follow-up document of a region reads the same budgets).
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def get(self, kind: str, unit: str, occasion: str = "") -> dict[str, Any] | None:
        return self.contents.get(kind, {}).get(f"{unit}|{occasion}" if occasion else unit)

    def of_kind(self, kind: str) -> dict[str, dict[str, Any]]:
        return dict(self.contents.get(kind, {}))

    def fields(self, kind: str, unit: str, occasion: str = "") -> dict[str, str]:
        got = self.get(kind, unit, occasion)
        return dict(got.get("fields", {})) if got else {}

    def rows(self, kind: str, unit: str, sheet: str, occasion: str = "") -> list[dict[str, Any]]:
        got = self.get(kind, unit, occasion)
        return list(got.get("sheets", {}).get(sheet, [])) if got else []

    # -- typed views -------------------------------------------------------------------------

    def investments(self, board: str, invest_years: Iterable[int]) -> list[Investment]:
        """The prioritised investments (the board's return of the investment prioritisation), best
        score first, the whole expense in its start year; then the new needs committees added to
        appendix 3 of the planning prerequisites, with their own amounts per year."""
        years = list(invest_years)
        out: list[Investment] = []
        weights = {
            _text(r["context"].get("Kriterium")): _num(r["values"].get("Vikt")) or 0.0
            for r in self.rows("investeringsprioritering", board, "Kriterier")
        }
        for r in self.rows("investeringsprioritering", board, "Investeringar"):
            v = r["values"] | r["context"]
            scores = {c: _num(v.get(f"{c} (1–5)")) for c in weights}
            name = _text(v.get("Investeringsobjekt"))
            if not name:
                continue
            total = _num(v.get("Utgift totalt")) or 0.0
            start = _int(v.get("Startår"))
            when = start if start in years else (years[0] if start is not None and start < years[0] else None)
            out.append(
                Investment(
                    committee=_text(v.get("Nämnd/styrelse")),
                    name=name,
                    description=_text(v.get("Beskrivning och behov")),
                    total=total,
                    start_year=start,
                    # The workbook's formula is not read back: the weighted score is computed here.
                    score=round(sum(w * (scores[c] or 0.0) for c, w in weights.items()), 2)
                    if weights and all(x is not None for x in scores.values())
                    else None,
                    comment=_text(v.get("Kommentar")),
                    per_year={when: total} if when is not None else {},
                    source="prioritering",
                )
            )
        out.sort(key=lambda i: (-(i.score or 0.0), i.name))
        for unit, content in sorted(self.of_kind("pf_bilagor").items()):
            for r in content.get("sheets", {}).get("Investeringsplan", []):
                v = r["values"] | r["context"]
                name = _text(v.get("Investeringsobjekt"))
                if not name or any(i.name == name and i.source == "prioritering" for i in out):
                    continue
                per_year = {y: n for y in years if (n := _num(v.get(str(y)))) is not None}
                out.append(
                    Investment(
                        committee=_text(v.get("Nämnd/styrelse")),
                        name=name,
                        description="",
                        total=sum(per_year.values()),
                        start_year=min(per_year) if per_year else None,
                        score=None,
                        comment="",
                        per_year=per_year,
                        source=unit,
                    )
                )
        return out

    def feedback(self, committee: str) -> dict[str, str]:
        """The committee's feedback on the planning prerequisites: field name -> text."""
        return self.fields("aterkoppling", committee)

    def proposal(self, chain: Iterable[str]) -> dict[str, str]:
        """The regional plan proposal's text as the furthest body of the decision chain returned
        it (`chain`: unit ids in decision order): the assembly's over the board's over RSAU's."""
        for unit in reversed(list(chain)):
            got = self.fields("regionplan_forslag", unit)
            if got:
                return got
        return {}

    def operational_plan(self, committee: str) -> OperationalPlan | None:
        if self.get("verksamhetsplan_mall", committee) is None:
            return None

        def sheet(name: str) -> list[dict[str, Any]]:
            return [r["values"] | r["context"] for r in self.rows("verksamhetsplan_mall", committee, name)]

        commitments = tuple(
            Commitment(
                _text(v.get("Åtagande")),
                _goal_title(v.get("Koppling till mål")),
                _text(v.get("Ansvarig förvaltning")),
                _day(v.get("Klart senast")),
                _num(v.get("Resurser (tkr)")),
            )
            for v in sheet("Åtaganden")
            if _text(v.get("Åtagande"))
        )
        own = tuple(
            OwnGoal(
                _text(v.get("Målområde")),
                _text(v.get("Nämndens mål")),
                _goal_title(v.get("Koppling till fullmäktiges mål")),
                _text(v.get("Indikator")),
                _num(v.get("Målvärde")),
                _text(v.get("Ansvarig förvaltning")),
            )
            for v in sheet("Egna mål")
            if _text(v.get("Nämndens mål"))
        )
        risks = tuple(
            Risk(
                _text(v.get("Kontrollområde")),
                _text(v.get("Risk")),
                _int(v.get("Sannolikhet (1–4)")) or 0,
                _int(v.get("Konsekvens (1–4)")) or 0,
                _text(v.get("Kontrollmoment")),
                _text(v.get("Frekvens")),
                _text(v.get("Ansvarig")),
                _text(v.get("Åtgärd")),
            )
            for v in sheet("Intern kontroll")
            if _text(v.get("Risk"))
        )
        contributions = {
            _text(v.get("Mål")): _text(v.get("Nämndens bidrag och åtaganden"))
            for v in sheet("Fullmäktiges mål")
            if _text(v.get("Nämndens bidrag och åtaganden"))
        }
        return OperationalPlan(commitments, own, risks, contributions)

    def detailed_budget(self, administration: str, units: list[str]) -> dict[str, dict[str, float]]:
        """unit id -> budget line -> tkr, from the administration's activity plan. Rows are in the
        order of `units` (the units the sheet was sent with), so no unit code need be shown."""
        out: dict[str, dict[str, float]] = {}
        for r in self.rows("aktivitetsplan", administration, "Detaljbudget"):
            i = int(r["row"]) - 2
            if not 0 <= i < len(units):
                continue
            v = r["values"]
            out[units[i]] = {line: _num(v.get(col_)) or 0.0 for line, col_ in BUDGET_COLUMNS.items()}
        return out


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).replace(" ", "").replace(",", "."))
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    n = _num(value)
    return None if n is None else int(round(n))


def _day(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return _text(value)[:10]


def _goal_title(value: Any) -> str:
    """A goal choice is "<title>" (older workbooks: "<id> – <title>"): the title people read."""
    text = _text(value)
    head, sep, tail = text.partition(" – ")
    return tail if sep and head and " " not in head else text


def _occasion_of(key: str, kind: str) -> str:
    segment = key.rsplit("/", 2)[-2]
    return segment[len(kind) + 1 :] if segment.startswith(kind + "-") else ""


def load_returned(
    cfg: OrgConfig, plan_year: int, kinds: Iterable[str], url: str | None = None, *, as_of: datetime | None = None
) -> Returned:
    """The current return of every document of these kinds in the plan year's cycle: one query.
    An empty view when there is no cycle (a document rendered outside a run) or nothing yet.
    `as_of`: only what had come in by then (UTC) — what a document sent at that moment held,
    so that its return is read against exactly what was sent."""
    wanted = sorted(set(kinds))
    if not wanted:
        return Returned()
    try:
        with session_scope(url) as s:
            cycle = s.exec(
                select(Cycle).where(Cycle.organisation_id == cfg.organisation.id, Cycle.year == plan_year)
            ).first()
            if cycle is None:
                return Returned()
            q = (
                select(
                    Document.unit_id, Document.kind, Document.key, Document.version, Submission.id, Submission.content
                )
                .join(Submission, col(Submission.document_id) == col(Document.id))
                .where(Document.cycle_id == cycle.id, col(Document.kind).in_(wanted))
            )
            if as_of is not None:
                q = q.where(col(Submission.received_at) <= as_of)
            rows = list(s.exec(q))
    except Exception as exc:  # no application schema: nothing has been returned
        if "no such table" in str(exc) or "does not exist" in str(exc):
            return Returned()
        raise
    best: dict[tuple[str, str], tuple[tuple[int, int], dict[str, Any]]] = {}
    for unit, kind, key, version, sub_id, content in rows:
        occasion = _occasion_of(key, kind)
        k = (kind, f"{unit}|{occasion}" if occasion else unit)
        rank = (version, sub_id)
        if k not in best or rank > best[k][0]:
            best[k] = (rank, content)
    contents: dict[str, dict[str, dict[str, Any]]] = {}
    for (kind, k), (_, content) in best.items():
        contents.setdefault(kind, {})[k] = content
    return Returned(contents)


def sources_for(kinds: Iterable[str]) -> set[str]:
    return {s for k in kinds for s in SOURCES.get(k, ())}
