"""Coordination of parallel processes (seed 000, principle 4): other wheels checked against the master.

The assembly's budget process (cfg.wheel) is the master process and wins conflicts. Other processes
have wheels of their own: the follow-up calendar (tasks.followup_calendar) and the configured
`parallel_wheels` (committee meeting calendars, internal control, ...). Every dated thing of every
wheel lives in one id namespace, so a parallel item's date rule may be relative to the master
("2 weeks before pf_rs") and its constraints may name any id:

- `must_precede: X`: the item must fall at least `margin_days` before X (a committee meeting that
  must take the decision X's deadline needs);
- `needs: X`: the item must fall at least `margin_days` after X (a delivery that needs X as input).

A broken constraint is a `Conflict`, reported with both dates. Pure functions of the configuration:
no database, no Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from config.schema import OrgConfig
from tasks.calendar import RuleSpec, resolve_rules
from tasks.followup_calendar import KIND_NAMES, REPORT_WORKING_DAYS
from tasks.swedish import long_date, short_date
from tasks.wheel import rule_specs

__all__ = [
    "MASTER_WHEEL",
    "Conflict",
    "DatedItem",
    "check_coordination",
    "conflict_rows",
    "coordination_items",
    "followup_ids",
    "item_rows",
    "namespace_specs",
]

MASTER_WHEEL = "master"
FOLLOWUP_WHEEL = "follow_up"


@dataclass(frozen=True)
class DatedItem:
    id: str
    name: str
    wheel_id: str
    wheel_name: str
    day: date
    owner: str | None = None


@dataclass(frozen=True)
class Conflict:
    item: DatedItem
    relation: Literal["must_precede", "needs"]
    other: DatedItem
    margin_days: int
    days: int  # how many days the item is on the wrong side of the limit (>= 1)

    @property
    def limit(self) -> date:
        """The latest (must_precede) or earliest (needs) date the item could have."""
        if self.relation == "must_precede":
            return self.other.day - timedelta(days=self.margin_days)
        return self.other.day + timedelta(days=self.margin_days)

    def message(self) -> str:
        """One Swedish sentence with both dates; the master process wins, so the item is what moves."""
        margin = f" med minst {self.margin_days} dagars marginal" if self.margin_days else ""
        if self.relation == "must_precede":
            return (
                f"{self.item.name} ({_sv(self.item.day)}) ligger {self.days} dagar för sent: det ska ligga före "
                f"{self.other.name} ({_sv(self.other.day)}){margin}. Flytta det till senast {_sv(self.limit)}."
            )
        return (
            f"{self.item.name} ({_sv(self.item.day)}) ligger {self.days} dagar för tidigt: det behöver "
            f"{self.other.name} ({_sv(self.other.day)}){margin}. Flytta det till tidigast {_sv(self.limit)}."
        )


def _sv(day: date) -> str:
    return short_date(day)


def followup_ids(cfg: OrgConfig) -> dict[str, str]:
    """The follow-up calendar's ids in the namespace (each the deadline of a report) and their kinds."""
    out = {f"followup_interim_{i + 1}": "interim" for i in range(len(cfg.follow_up.interim_reports))}
    out["followup_annual"] = "annual"
    return out


def _followup_specs(cfg: OrgConfig) -> dict[str, RuleSpec]:
    # Each report is due REPORT_WORKING_DAYS after its period closes, as tasks.followup_calendar says;
    # the period end gets a helper id so the deadline is an ordinary relative rule.
    specs: dict[str, RuleSpec] = {}
    texts = [*cfg.follow_up.interim_reports, cfg.follow_up.annual_report]
    for rid, text in zip(followup_ids(cfg), texts, strict=True):
        specs[f"{rid}_period"] = RuleSpec(text, 0, "keep")
        specs[rid] = RuleSpec(f"{REPORT_WORKING_DAYS} working days after {rid}_period")
    return specs


def namespace_specs(cfg: OrgConfig) -> dict[str, RuleSpec]:
    """Every dated id: the master wheel, the follow-up calendar, then the parallel wheels' items."""
    specs = dict(rule_specs(cfg))
    specs.update(_followup_specs(cfg))
    policy = cfg.wheel.if_day_off
    for wheel in cfg.parallel_wheels:
        for item in wheel.items:
            specs[item.id] = RuleSpec(item.date.rule, item.date.year_offset, item.date.if_day_off or policy)
    return specs


def coordination_items(cfg: OrgConfig, plan_year: int) -> dict[str, DatedItem]:
    """Every named item of every wheel for the plan year, by id (helper ids left out)."""
    dates = resolve_rules(namespace_specs(cfg), plan_year)
    master = "Budgetprocessen (huvudprocess)"
    out: dict[str, DatedItem] = {}
    for p in cfg.wheel.phases:
        out[f"{p.id}_start"] = DatedItem(
            f"{p.id}_start", f"{p.name} börjar", MASTER_WHEEL, master, dates[f"{p.id}_start"]
        )
        out[f"{p.id}_end"] = DatedItem(f"{p.id}_end", f"{p.name} slutar", MASTER_WHEEL, master, dates[f"{p.id}_end"])
    for m in cfg.wheel.milestones:
        out[m.id] = DatedItem(m.id, m.name, MASTER_WHEEL, master, dates[m.id], m.owner)
    for mt in cfg.wheel.meetings:
        out[mt.id] = DatedItem(mt.id, mt.name, MASTER_WHEEL, master, dates[mt.id], mt.organiser)
    for rid, kind in followup_ids(cfg).items():
        period = dates[f"{rid}_period"]
        label = f"{KIND_NAMES[kind]} per {long_date(period)} klar"
        out[rid] = DatedItem(rid, label, FOLLOWUP_WHEEL, "Uppföljning", dates[rid], cfg.organisation.roles.finance)
    for wheel in cfg.parallel_wheels:
        for item in wheel.items:
            out[item.id] = DatedItem(
                item.id, item.name, wheel.id, wheel.name, dates[item.id], item.owner or wheel.owner
            )
    return out


def check_coordination(cfg: OrgConfig, plan_year: int) -> list[Conflict]:
    """The broken constraints of the parallel wheels for the plan year, in date order."""
    items = coordination_items(cfg, plan_year)
    conflicts: list[Conflict] = []
    for wheel in cfg.parallel_wheels:
        for spec in wheel.items:
            item = items[spec.id]
            if spec.must_precede is not None:
                other = items[spec.must_precede]
                late = (item.day - (other.day - timedelta(days=spec.margin_days))).days
                if late > 0:
                    conflicts.append(Conflict(item, "must_precede", other, spec.margin_days, late))
            if spec.needs is not None:
                other = items[spec.needs]
                early = ((other.day + timedelta(days=spec.margin_days)) - item.day).days
                if early > 0:
                    conflicts.append(Conflict(item, "needs", other, spec.margin_days, early))
    return sorted(conflicts, key=lambda c: (c.item.day, c.item.id, c.relation))


_RELATION_SV = {"must_precede": "ska ligga före", "needs": "behöver"}


def conflict_rows(conflicts: list[Conflict]) -> list[dict[str, str]]:
    """The conflicts as table rows (Swedish headers), for the terminal and the Prefect UI."""
    return [
        {
            "process": c.item.wheel_name,
            "punkt": c.item.name,
            "datum": c.item.day.isoformat(),
            "villkor": _RELATION_SV[c.relation],
            "mot": f"{c.other.name} ({c.other.wheel_name})",
            "dess datum": c.other.day.isoformat(),
            "avvikelse (dagar)": str(c.days),
            "åtgärd": ("flytta till senast " if c.relation == "must_precede" else "flytta till tidigast ")
            + c.limit.isoformat(),
        }
        for c in conflicts
    ]


def item_rows(cfg: OrgConfig, plan_year: int) -> list[dict[str, str]]:
    """Every constrained item of the parallel wheels with its check, conflicting or not."""
    items = coordination_items(cfg, plan_year)
    broken = {(c.item.id, c.relation) for c in check_coordination(cfg, plan_year)}
    rows: list[dict[str, str]] = []
    for wheel in cfg.parallel_wheels:
        for spec in wheel.items:
            item = items[spec.id]
            for relation, ref in (("must_precede", spec.must_precede), ("needs", spec.needs)):
                if ref is None:
                    continue
                rows.append(
                    {
                        "process": wheel.name,
                        "punkt": item.name,
                        "datum": item.day.isoformat(),
                        "villkor": _RELATION_SV[relation],
                        "mot": items[ref].name,
                        "dess datum": items[ref].day.isoformat(),
                        "status": "KONFLIKT" if (spec.id, relation) in broken else "ok",
                    }
                )
    return rows
