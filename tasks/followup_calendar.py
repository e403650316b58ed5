"""The follow-up occasions of a plan year, from configuration (seeds 002 and 003).

Monthly checks of period outcome against period budget, full-year forecasts, interim reports and
the annual report. Each occasion is one run of the follow-up flow.
"""

from __future__ import annotations

import calendar as _cal
from dataclasses import dataclass
from datetime import date

from config.schema import OrgConfig
from models.errors import UserError
from tasks.calendar import RuleSpec, add_working_days, resolve_rules
from tasks.swedish import long_date

# Working days a level has to hand its follow-up upwards after the period closes.
REPORT_WORKING_DAYS = 10

KIND_NAMES = {
    "monthly": "Månadsuppföljning",
    "forecast": "Budgetuppföljning med helårsprognos",
    "interim": "Delårsrapport",
    "annual": "Årsredovisning",
}


@dataclass(frozen=True)
class Occasion:
    key: str  # e.g. "delar-2028-08-31": stable, used in receipt and document keys
    kind: str  # monthly | forecast | interim | annual
    period_end: date
    deadline: date

    @property
    def name(self) -> str:
        day = self.period_end
        return f"{KIND_NAMES[self.kind]} per {long_date(day)}"


_PREFIX = {"monthly": "manad", "forecast": "prognos", "interim": "delar", "annual": "ar"}


def occasion_name(key: str) -> str:
    """An occasion's Swedish name from its key alone, without resolving the calendar (`status` stays
    fast): 'delar-2028-08-31' is 'Delårsrapport per 31 augusti 2028'; a key it cannot read is its own name."""
    prefix, _, day = key.partition("-")
    kind = next((k for k, p in _PREFIX.items() if p == prefix), None)
    try:
        period_end = date.fromisoformat(day)
    except ValueError:
        return key
    return f"{KIND_NAMES[kind]} per {long_date(period_end)}" if kind else key


def _month_end(year: int, month: int) -> date:
    return date(year, month, _cal.monthrange(year, month)[1])


def occasions(cfg: OrgConfig, plan_year: int) -> list[Occasion]:
    """Every follow-up occasion of the plan year, in date order; the bigger report wins a shared date."""
    fu = cfg.follow_up
    by_date: dict[date, str] = {}
    rank = {"monthly": 0, "forecast": 1, "interim": 2, "annual": 3}

    def put(day: date, kind: str) -> None:
        if day not in by_date or rank[kind] > rank[by_date[day]]:
            by_date[day] = kind

    for m in fu.monthly_checks:
        put(_month_end(plan_year, m), "monthly")
    for m in fu.forecasts:
        put(_month_end(plan_year, m), "forecast")
    specs = {f"interim_{i}": RuleSpec(rule, 0, "keep") for i, rule in enumerate(fu.interim_reports)}
    specs["annual"] = RuleSpec(fu.annual_report, 0, "keep")
    resolved = resolve_rules(specs, plan_year)
    for i in range(len(fu.interim_reports)):
        put(resolved[f"interim_{i}"], "interim")
    put(resolved["annual"], "annual")
    return [
        Occasion(
            key=f"{_PREFIX[kind]}-{day.isoformat()}",
            kind=kind,
            period_end=day,
            deadline=add_working_days(day, REPORT_WORKING_DAYS),
        )
        for day, kind in sorted(by_date.items())
    ]


def find_occasion(cfg: OrgConfig, plan_year: int, key: str) -> Occasion:
    found = occasions(cfg, plan_year)
    for o in found:
        if o.key == key:
            return o
    known = ", ".join(o.key for o in found)
    raise UserError(f"occasion: unknown follow-up occasion {key!r} for {plan_year} (known: {known})")
