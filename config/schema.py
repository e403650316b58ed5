"""Typed configuration: the organisation tree, the annual wheel (årshjul), channels, goals.

Loaded and validated once by `config.loader.load_config`; nothing else reads YAML.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The phases of the cycle, in order. Their Swedish names and windows come from configuration;
# the set itself is fixed because each one is a flow in flows/.
PHASE_IDS: tuple[str, ...] = (
    "preparation",
    "planning_prerequisites",
    "committee_feedback",
    "regional_plan",
    "operational_plans",
    "activity_plans",
    "follow_up",
)

UNIT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"
REF_ID_PATTERN = r"^[a-z0-9_]{1,60}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Level(Strict):
    id: str = Field(pattern=REF_ID_PATTERN)
    name: str = Field(min_length=1, max_length=80)


class Channel(Strict):
    """A notification transport. `url` is an apprise URL; ${VAR} is taken from the environment
    at send time so that secrets never sit in the YAML, the database or the UI."""

    id: str = Field(pattern=REF_ID_PATTERN)
    kind: Literal["email", "webhook", "mqtt", "other"]
    url: str = Field(min_length=3, max_length=2000)


class Contact(Strict):
    channel: str = Field(pattern=REF_ID_PATTERN)
    # Email address, MQTT topic or webhook path, depending on the channel kind.
    address: str = Field(min_length=1, max_length=300)


class Signatory(Strict):
    id: str = Field(pattern=REF_ID_PATTERN)
    name: str = Field(min_length=1, max_length=120)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=200)


class Control(Strict):
    """One row of a committee's internal control plan (seeds 002, 003): a risk, prioritised by
    probability × consequence (1–4 each), and the control that checks it."""

    area: str = Field(min_length=1, max_length=200)
    risk: str = Field(min_length=1, max_length=300)
    probability: int = Field(ge=1, le=4)
    consequence: int = Field(ge=1, le=4)
    control: str = Field(min_length=1, max_length=300)
    frequency: Literal["Löpande", "Månadsvis", "Kvartalsvis", "Per tertial", "Halvårsvis", "Årligen"]
    owner: str = Field(default="", max_length=200)


class Unit(Strict):
    id: str = Field(pattern=UNIT_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    level: str
    parent: str | None = None
    signatories: tuple[Signatory, ...] = ()
    contacts: tuple[Contact, ...] = ()
    # Committees only: the internal control plan, followed up with the reports of
    # `follow_up.internal_control_months` (OrgConfig checks that only committees have one).
    internal_control: tuple[Control, ...] = ()


class Roles(Strict):
    """Which unit plays which part in the process."""

    assembly: str
    executive_board: str
    working_committee: str
    finance: str


class Organisation(Strict):
    id: str = Field(pattern=REF_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["region", "municipality"]
    roles: Roles
    # Where links in notifications point (the Prefect UI); documents are linked by path.
    ui_url: str = "http://127.0.0.1:4200"


class DateRule(Strict):
    rule: str = Field(min_length=1, max_length=200)
    year_offset: int = Field(default=0, ge=-3, le=1)
    if_day_off: Literal["previous", "next", "keep"] | None = None


class Phase(Strict):
    id: str
    name: str = Field(min_length=1, max_length=120)
    owner: str
    start: DateRule
    end: DateRule
    # The milestone whose date is the deadline for this phase's receipts.
    receipt_deadline: str = Field(pattern=REF_ID_PATTERN)
    purpose: str = Field(min_length=1, max_length=2000)


class Milestone(Strict):
    id: str = Field(pattern=REF_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    phase: str
    owner: str
    date: DateRule


class Meeting(Strict):
    id: str = Field(pattern=REF_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    phase: str
    organiser: str
    date: DateRule
    participants: tuple[str, ...] = Field(min_length=1)
    purpose: str = Field(min_length=1, max_length=2000)
    goal: str = Field(min_length=1, max_length=2000)
    kind: Literal["information", "influence", "decision"]


class Wheel(Strict):
    if_day_off: Literal["previous", "next", "keep"] = "previous"
    phases: tuple[Phase, ...]
    milestones: tuple[Milestone, ...]
    meetings: tuple[Meeting, ...] = ()


class FollowUpCalendar(Strict):
    """When the follow-up occasions of a plan year fall (seeds 002, 003)."""

    # Months (1–12) with a check of period outcome against period budget.
    monthly_checks: tuple[int, ...] = ()
    # Months whose last day carries a full-year forecast.
    forecasts: tuple[int, ...] = ()
    # Date rules ("31 March", "31 August") for interim reports (delårsrapporter).
    interim_reports: tuple[str, ...] = ()
    annual_report: str = "31 December"
    deviation_threshold_percent: float = Field(default=5.0, ge=0, le=100)
    # Interim and annual reports whose period ends in these months carry the follow-up of the
    # committees' internal control plans (seed 002: with the August report and the annual report).
    internal_control_months: tuple[Annotated[int, Field(ge=1, le=12)], ...] = (8, 12)


class Deadlines(Strict):
    reminder_offsets_days: tuple[int, ...] = (14, 7, 1)
    escalate_after_days: int = Field(default=3, ge=1, le=60)
    # A receipt's one-time code signs until this many days after the receipt's deadline (end of that
    # day, Europe/Stockholm), or after issue if that is later: reminders after the deadline send the
    # signatory back to the code in the delivery, which must still work.
    code_valid_days: int = Field(default=30, ge=1, le=365)


class ParallelItem(Strict):
    """A dated item of a parallel wheel (a committee meeting, an internal-control delivery).

    `must_precede`: the item must fall at least `margin_days` before that id's date (a committee
    meeting that takes the decision a master deadline needs). `needs`: the item must fall at least
    `margin_days` after that id's date (a delivery that needs its input). Both name any id of the
    master wheel, of the follow-up calendar (`followup_interim_1`, …, `followup_annual`) or of a
    parallel wheel. The date rule may refer to the same ids ("2 weeks before pf_rs").
    """

    id: str = Field(pattern=REF_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    date: DateRule
    owner: str | None = None
    must_precede: str | None = Field(default=None, pattern=REF_ID_PATTERN)
    needs: str | None = Field(default=None, pattern=REF_ID_PATTERN)
    margin_days: int = Field(default=0, ge=0, le=365)


class ParallelWheel(Strict):
    """Another process's annual wheel, checked against the master budget wheel (seed 000, principle 4)."""

    id: str = Field(pattern=REF_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["committee_meetings", "internal_control", "follow_up", "other"] = "other"
    owner: str
    items: tuple[ParallelItem, ...] = Field(min_length=1)


class Indicator(Strict):
    id: str = Field(pattern=REF_ID_PATTERN)
    name: str = Field(min_length=1, max_length=300)
    target: float
    unit: str = Field(default="", max_length=40)
    kolada_id: str | None = Field(default=None, pattern=r"^[A-Z]\d{5}$")


class Goal(Strict):
    id: str = Field(pattern=REF_ID_PATTERN)
    area: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=500)
    # Empty: the goal concerns every committee.
    targeted: tuple[str, ...] = ()
    opt_out_allowed: bool = False
    indicators: tuple[Indicator, ...] = ()


class Budget(Strict):
    """Frames (SEK thousands) per committee for the plan year; later years grow by `growth_percent`."""

    frames: dict[str, int]
    growth_percent: float = Field(default=2.0, ge=-20, le=20)


class OrgConfig(Strict):
    organisation: Organisation
    levels: tuple[Level, ...] = Field(min_length=3)
    channels: tuple[Channel, ...] = ()
    units: tuple[Unit, ...] = Field(min_length=1)
    wheel: Wheel
    follow_up: FollowUpCalendar = FollowUpCalendar()
    deadlines: Deadlines = Deadlines()
    goals: tuple[Goal, ...] = ()
    budget: Budget
    vision: str = Field(default="", max_length=2000)
    # Optional: other processes' wheels, coordinated with the master wheel (tasks/coordination.py).
    parallel_wheels: tuple[ParallelWheel, ...] = ()

    @model_validator(mode="after")
    def _plans_on_committees(self) -> OrgConfig:
        committee_level = self.levels[2].id if len(self.levels) > 2 else None
        for i, u in enumerate(self.units):
            if u.internal_control and u.level != committee_level:
                raise ValueError(
                    f"units[{i}].internal_control: only committees (level {committee_level!r}) have an internal "
                    f"control plan; {u.id!r} is on level {u.level!r}"
                )
        return self

    # -- lookups (the tree is small; these are cheap and keep callers simple) --
    def unit(self, unit_id: str) -> Unit:
        for u in self.units:
            if u.id == unit_id:
                return u
        raise KeyError(unit_id)

    def level_index(self, level_id: str) -> int:
        return [lv.id for lv in self.levels].index(level_id)

    def children(self, unit_id: str) -> list[Unit]:
        return [u for u in self.units if u.parent == unit_id]

    def units_at(self, level_id: str) -> list[Unit]:
        return [u for u in self.units if u.level == level_id]

    def committees(self) -> list[Unit]:
        """Units on the third level (nämnder, styrelser)."""
        return self.units_at(self.levels[2].id)

    def phase(self, phase_id: str) -> Phase:
        for p in self.wheel.phases:
            if p.id == phase_id:
                return p
        raise KeyError(phase_id)

    def ancestors(self, unit_id: str) -> list[Unit]:
        out: list[Unit] = []
        parent = self.unit(unit_id).parent
        while parent is not None:
            u = self.unit(parent)
            out.append(u)
            parent = u.parent
        return out
