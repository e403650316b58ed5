"""Aggregating the follow-up returns of one occasion, level by level (no Prefect).

unit → administration → committee → executive board → assembly. One query reads every stored
return of the occasion; the rest happens in memory, bottom-up over the unit tree.

Rules (kept deliberately small):

- Figures. A level without reporting children totals its own return; a level with reporting
  children totals the sum of its children's totals. Its own return is the summary it hands up
  and is kept apart as `reported`, so it is not counted twice. Categories are the economy
  sheet's "Post" (fixed and free rows alike) plus one "Investeringar" line summing the
  investment sheet. Deviation = budget − forecast, percent = deviation / |budget|, as the
  workbook's own formulas; flagged when |percent| exceeds `follow_up.deviation_threshold_percent`.
- Goals. Each level counts the traffic lights of its own return and of every return below it,
  per goal, with every comment and the unit that wrote it.
- Raised items ("Vad lyfter vi till nästa nivå?"). Every non-empty line of a unit's
  `lyfter_vidare` is one item, raised to its parent. A level *acts on* an item when its own
  return lists the same line (case and spacing ignored) under "Vad gör vi själva?"
  (`gor_sjalva`); otherwise the item is carried on to the next level, keeping its origin unit.
  Items nobody acted on stay open in the assembly's report. Every Word field must be filled in,
  so a line saying there is nothing ("Inget", "-", …) is not an item.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select

from config.schema import OrgConfig
from models.db import session_scope
from models.tables import Document, Submission

WORKBOOK, NARRATIVE = "uppfoljning", "uppfoljning_berattelse"
INVESTMENTS = "Investeringar"
RAISE_FIELD, OWN_ACTION_FIELD = "lyfter_vidare", "gor_sjalva"
TRAFFIC_LIGHTS = ("Grön", "Gul", "Röd")
# Answers meaning "nothing to raise / nothing we do": a required field cannot be left empty.
NOTHING = frozenset({"-", "–", "—", "inget", "inga", "nej", "inget att lyfta", "inget att rapportera"})


@dataclass(frozen=True)
class Figures:
    budget: float = 0.0
    outcome: float = 0.0
    forecast: float | None = None  # None: nobody gave a forecast (e.g. a monthly check)

    def __add__(self, other: Figures) -> Figures:
        if self.forecast is None and other.forecast is None:
            forecast = None
        else:
            forecast = (self.forecast or 0.0) + (other.forecast or 0.0)
        return Figures(self.budget + other.budget, self.outcome + other.outcome, forecast)

    @property
    def deviation(self) -> float | None:
        return None if self.forecast is None else self.budget - self.forecast

    @property
    def deviation_percent(self) -> float | None:
        if self.forecast is None or self.budget == 0:
            return None
        return (self.budget - self.forecast) / abs(self.budget) * 100


@dataclass(frozen=True)
class Deviation:
    category: str
    figures: Figures
    amount: float
    percent: float


@dataclass(frozen=True)
class GoalComment:
    unit: str
    assessment: str | None
    comment: str


@dataclass(frozen=True)
class GoalSummary:
    goal_id: str
    title: str
    counts: Mapping[str, int]  # traffic light -> number of returns
    comments: tuple[GoalComment, ...]


@dataclass(frozen=True)
class RaisedItem:
    text: str
    origin: str  # the unit that first raised it
    path: tuple[str, ...]  # origin first, then every level it passed without being acted on


@dataclass(frozen=True)
class Completeness:
    unit: str
    expected: tuple[str, ...]  # the children that report to this unit
    returned: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """All children have returned: the level may hand its own report up."""
        return not self.missing


@dataclass(frozen=True)
class LevelReport:
    unit: str
    level: str
    totals: Mapping[str, Figures]  # category -> summed figures
    deviations: tuple[Deviation, ...]  # only those beyond the threshold
    goals: Mapping[str, GoalSummary]
    raised: tuple[RaisedItem, ...]  # reached this level and were not acted on below it
    acted_on: tuple[RaisedItem, ...]  # reached this level and this level acts on them itself
    completeness: Completeness
    reported: Mapping[str, Figures] | None  # the unit's own return, None when it has none

    @property
    def total(self) -> Figures:
        """Every economy category together (investments apart)."""
        out = Figures()
        for name, f in self.totals.items():
            if name != INVESTMENTS:
                out = out + f
        return out


@dataclass(frozen=True)
class Aggregate:
    occasion_key: str
    threshold_percent: float
    reports: Mapping[str, LevelReport]  # unit id -> report, bottom-up order

    def __getitem__(self, unit: str) -> LevelReport:
        return self.reports[unit]


@dataclass(frozen=True)
class OrgTree:
    """The part of the configuration aggregation needs; built directly for synthetic benchmarks."""

    parent: Mapping[str, str | None]
    level: Mapping[str, str]
    skip: frozenset[str] = field(default_factory=frozenset)  # units that do not report (working committee)

    @classmethod
    def from_config(cls, cfg: OrgConfig) -> OrgTree:
        return cls(
            parent={u.id: u.parent for u in cfg.units},
            level={u.id: u.level for u in cfg.units},
            skip=frozenset({cfg.organisation.roles.working_committee}),
        )

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for unit, parent in self.parent.items():
            if parent is not None and unit not in self.skip:
                out[parent].append(unit)
        return out

    def bottom_up(self) -> list[str]:
        """Units (reporting ones and the root) with every child before its parent."""
        kids = self.children()
        order: list[str] = []
        roots = [u for u, p in self.parent.items() if p is None]
        stack: list[tuple[str, bool]] = [(r, False) for r in roots]
        while stack:  # iterative: a deep synthetic tree must not hit the recursion limit
            unit, done = stack.pop()
            if done:
                order.append(unit)
                continue
            stack.append((unit, True))
            stack.extend((c, False) for c in reversed(kids.get(unit, ())))
        return order


# ---------------------------------------------------------------------------------------------
# Reading the returns
# ---------------------------------------------------------------------------------------------


def load_returns(cycle_id: int, occasion_key: str, url: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """(unit, kind) -> content of the current return, for one occasion: one query.

    The occasion is in the document key ("…/uppfoljning-delar-2028-08-31/v1"). The highest
    version wins (a disputed version is superseded), then the latest submission (a corrected file
    replaces the earlier one)."""
    patterns = [f"%/{kind}-{occasion_key}/v%" for kind in (WORKBOOK, NARRATIVE)]
    q = (
        select(Document.unit_id, Document.kind, Document.version, Submission.id, Submission.content)
        .join(Submission, col(Submission.document_id) == col(Document.id))
        .where(
            Document.cycle_id == cycle_id,
            Document.phase == "follow_up",
            col(Document.kind).in_((WORKBOOK, NARRATIVE)),
            col(Document.key).like(patterns[0]) | col(Document.key).like(patterns[1]),
        )
    )
    best: dict[tuple[str, str], tuple[tuple[int, int], dict[str, Any]]] = {}
    with session_scope(url) as s:
        for unit, kind, version, sub_id, content in s.exec(q):
            rank = (version, sub_id)
            key = (unit, kind)
            if key not in best or rank > best[key][0]:
                best[key] = (rank, content)
    return {k: v[1] for k, v in best.items()}


def aggregate(cfg: OrgConfig, cycle_id: int, occasion_key: str, url: str | None = None) -> Aggregate:
    """Every level's report for one follow-up occasion of a cycle."""
    returns = load_returns(cycle_id, occasion_key, url)
    return aggregate_returns(OrgTree.from_config(cfg), returns, occasion_key, cfg.follow_up.deviation_threshold_percent)


def completeness(tree: OrgTree | OrgConfig, returned: Iterable[str], unit: str) -> Completeness:
    """Which children of `unit` have returned (workbook and narrative both in) and which are missing."""
    if not isinstance(tree, OrgTree):
        tree = OrgTree.from_config(tree)
    expected = tuple(tree.children().get(unit, ()))
    got = set(returned)
    return Completeness(
        unit=unit,
        expected=expected,
        returned=tuple(c for c in expected if c in got),
        missing=tuple(c for c in expected if c not in got),
    )


def own_actions(returns: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, set[str]]:
    """Unit -> the normalised lines of its own return's "Vad gör vi själva?": a level acts on an
    item raised to it (this occasion or an earlier one) by listing it there."""
    out: dict[str, set[str]] = {}
    for (unit, kind), content in returns.items():
        if kind == NARRATIVE:
            out[unit] = {normalise(x) for x in _lines((content or {}).get("fields", {}).get(OWN_ACTION_FIELD))}
    return out


def returned_units(returns: Mapping[tuple[str, str], Any]) -> set[str]:
    """Units whose return is whole: the receipt is acknowledged only once both documents are in."""
    return {u for (u, kind) in returns if kind == WORKBOOK and (u, NARRATIVE) in returns}


# ---------------------------------------------------------------------------------------------
# In memory
# ---------------------------------------------------------------------------------------------


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _cell(entry: dict[str, Any], name: str) -> Any:
    values, context = entry.get("values", {}), entry.get("context", {})
    return values[name] if name in values else context.get(name)


def _figures_of(content: dict[str, Any]) -> dict[str, Figures]:
    sheets = content.get("sheets", {})
    out: dict[str, Figures] = {}
    for entry in sheets.get("Ekonomi", ()):
        post = _cell(entry, "Post")
        if not post:
            continue
        forecast = _cell(entry, "Prognos helår")
        f = Figures(
            _num(_cell(entry, "Budget helår")),
            _num(_cell(entry, "Utfall hittills")),
            None if forecast is None else _num(forecast),
        )
        name = str(post).strip()
        out[name] = out[name] + f if name in out else f
    for entry in sheets.get(INVESTMENTS, ()):
        forecast = _cell(entry, "Prognos")
        f = Figures(
            _num(_cell(entry, "Budget")),
            _num(_cell(entry, "Utfall hittills")),
            None if forecast is None else _num(forecast),
        )
        out[INVESTMENTS] = out[INVESTMENTS] + f if INVESTMENTS in out else f
    return out


def _add_all(target: dict[str, Figures], more: Mapping[str, Figures]) -> None:
    for name, f in more.items():
        target[name] = target[name] + f if name in target else f


def normalise(text: str) -> str:
    """An item's identity: case and spacing ignored."""
    return re.sub(r"\s+", " ", text).strip().casefold()


_norm = normalise


def _lines(text: Any) -> list[str]:
    if not isinstance(text, str):
        return []
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and _norm(line).rstrip(".!") not in NOTHING]


def _goal_entries(unit: str, content: dict[str, Any] | None) -> list[tuple[str, str, GoalComment]]:
    if not content:
        return []
    out = []
    for entry in content.get("sheets", {}).get("Mål", ()):
        # The goal's title identifies it (older workbooks also carry a "Mål-id" column).
        goal_id = _cell(entry, "Mål-id") or _cell(entry, "Mål")
        if not goal_id:
            continue
        assessment = _cell(entry, "Bedömning")
        comment = _cell(entry, "Kommentar och analys") or ""
        out.append((str(goal_id), str(_cell(entry, "Mål") or ""), GoalComment(unit, assessment, str(comment))))
    return out


def aggregate_returns(
    tree: OrgTree,
    returns: Mapping[tuple[str, str], dict[str, Any]],
    occasion_key: str,
    threshold_percent: float,
) -> Aggregate:
    """The pure part of `aggregate`: (unit, kind) -> content in, level reports out."""
    kids = tree.children()
    done = returned_units(returns)
    totals: dict[str, dict[str, Figures]] = {}
    goals: dict[str, list[tuple[str, str, GoalComment]]] = {}
    outgoing: dict[str, list[RaisedItem]] = {}  # what a unit hands to its parent
    reports: dict[str, LevelReport] = {}

    for unit in tree.bottom_up():
        children = kids.get(unit, [])
        sheet = returns.get((unit, WORKBOOK))
        story = returns.get((unit, NARRATIVE))
        own = _figures_of(sheet) if sheet is not None else None

        summed: dict[str, Figures] = {}
        if children:
            for c in children:
                _add_all(summed, totals[c])
        elif own is not None:
            summed = dict(own)
        totals[unit] = summed

        # Goals: this level's own assessment and everything below it. Each entry is copied once
        # per level above it: O(units × depth), about 1 s for 4,000 units.
        collected = _goal_entries(unit, sheet)
        for c in children:
            collected.extend(goals[c])
        goals[unit] = collected
        for c in children:
            del goals[c]  # no longer needed: keeps memory flat on large trees
        summary: dict[str, tuple[str, dict[str, int], list[GoalComment]]] = {}
        for goal_id, title, gc in collected:
            t, counts, comments = summary.setdefault(goal_id, (title, dict.fromkeys(TRAFFIC_LIGHTS, 0), []))
            if gc.assessment:
                counts[gc.assessment] = counts.get(gc.assessment, 0) + 1
            if gc.comment:
                comments.append(gc)

        # Raised items arriving from the children; acted on here, or passed on.
        fields = (story or {}).get("fields", {})
        acts = {_norm(x) for x in _lines(fields.get(OWN_ACTION_FIELD))}
        arriving = [item for c in children for item in outgoing.pop(c, ())]
        acted = tuple(i for i in arriving if _norm(i.text) in acts)
        open_items = [i for i in arriving if _norm(i.text) not in acts]
        passing = [RaisedItem(i.text, i.origin, (*i.path, unit)) for i in open_items]
        seen = {_norm(i.text) for i in passing}
        for line in _lines(fields.get(RAISE_FIELD)):
            if _norm(line) not in seen:  # the same matter raised again is one item, first origin kept
                seen.add(_norm(line))
                passing.append(RaisedItem(line, unit, (unit,)))
        outgoing[unit] = passing

        deviations = []
        for name, f in summed.items():
            pct = f.deviation_percent
            if pct is not None and abs(pct) > threshold_percent:
                deviations.append(Deviation(name, f, f.deviation or 0.0, pct))

        reports[unit] = LevelReport(
            unit=unit,
            level=tree.level.get(unit, ""),
            totals=summed,
            deviations=tuple(deviations),
            goals={
                g: GoalSummary(g, title, counts, tuple(comments)) for g, (title, counts, comments) in summary.items()
            },
            raised=tuple(open_items),
            acted_on=acted,
            completeness=Completeness(
                unit=unit,
                expected=tuple(children),
                returned=tuple(c for c in children if c in done),
                missing=tuple(c for c in children if c not in done),
            ),
            reported=own,
        )
    return Aggregate(occasion_key, threshold_percent, reports)
