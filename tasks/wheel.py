"""The annual wheel (årshjul) of one plan year: every phase window, milestone and meeting as a date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from config.schema import DateRule, OrgConfig
from tasks.calendar import RuleSpec, resolve_rules


def _spec(rule: DateRule, default_policy: str) -> RuleSpec:
    return RuleSpec(rule=rule.rule, year_offset=rule.year_offset, if_day_off=rule.if_day_off or default_policy)


def rule_specs(cfg: OrgConfig) -> dict[str, RuleSpec]:
    """Every dated thing of the wheel under one id namespace; phase windows as <phase>_start/_end."""
    policy = cfg.wheel.if_day_off
    specs: dict[str, RuleSpec] = {}
    for p in cfg.wheel.phases:
        specs[f"{p.id}_start"] = _spec(p.start, policy)
        specs[f"{p.id}_end"] = _spec(p.end, policy)
    for m in cfg.wheel.milestones:
        specs[m.id] = _spec(m.date, policy)
    for mt in cfg.wheel.meetings:
        specs[mt.id] = _spec(mt.date, policy)
    return specs


def rule_fields(cfg: OrgConfig) -> dict[str, str]:
    """Where each rule id stands in the configuration file, for error messages."""
    fields: dict[str, str] = {}
    for i, p in enumerate(cfg.wheel.phases):
        fields[f"{p.id}_start"] = f"wheel.phases[{i}].start.rule"
        fields[f"{p.id}_end"] = f"wheel.phases[{i}].end.rule"
    for i, m in enumerate(cfg.wheel.milestones):
        fields[m.id] = f"wheel.milestones[{i}].date.rule"
    for i, mt in enumerate(cfg.wheel.meetings):
        fields[mt.id] = f"wheel.meetings[{i}].date.rule"
    return fields


@dataclass(frozen=True)
class ResolvedWheel:
    plan_year: int
    dates: dict[str, date]

    def phase_window(self, phase_id: str) -> tuple[date, date]:
        return self.dates[f"{phase_id}_start"], self.dates[f"{phase_id}_end"]

    def __getitem__(self, key: str) -> date:
        return self.dates[key]


def resolve_wheel(cfg: OrgConfig, plan_year: int) -> ResolvedWheel:
    return ResolvedWheel(plan_year, resolve_rules(rule_specs(cfg), plan_year))
