"""The annual wheel as an iCalendar file (RFC 5545), for the whole organisation or for one unit.

Every milestone, meeting, phase window and follow-up report deadline is an all-day event
(DTSTART;VALUE=DATE, DTEND the next day, or the day after a phase's last day). Meetings carry their
purpose, goal, participants and kind in the description.

Stable and deterministic, so that a calendar program that imports the file again updates the
events instead of duplicating them:

- UID: "<organisation>-<plan year>-<id>@styrkedja" — the id of the milestone or meeting in the
  configuration, "fas-<phase>" for a phase window, "uppfoljning-<occasion key>" for a report;
- DTSTAMP: a fixed instant derived from the plan year (1 January, two years before, 00:00 UTC):
  the calendar describes the plan, not the moment of export; SEQUENCE 0;
- events sorted by date and UID; icalendar writes properties in a fixed order.
  The same configuration gives the same bytes.

A unit's calendar: the milestones it owns; its ancestors' milestones in the phases it takes part
in (it sends or receives a handoff, or attends a meeting of the phase); the receipt deadline of
every phase in which it sends or receives a handoff; the meetings it attends or organises; the
windows of those phases; and the follow-up report deadlines when it reports or receives reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from icalendar import Calendar, Event

from config.schema import OrgConfig
from models.errors import UserError
from tasks.followup_calendar import occasions
from tasks.wheel import resolve_wheel

__all__ = ["CalendarEntry", "calendar_entries", "calendar_ics", "default_path", "event_uid", "write_calendar"]

PRODID = "-//Styrkedja//Årshjul//SV"
KIND_SV = {"information": "information", "influence": "påverkan", "decision": "beslut"}


@dataclass(frozen=True)
class CalendarEntry:
    ident: str  # unique within the plan year: the configuration id, fas-<phase>, uppfoljning-<key>
    kind: str  # milestone | meeting | phase | follow_up
    summary: str
    start: date
    end: date  # inclusive last day
    description: str
    categories: tuple[str, ...]


def event_uid(cfg: OrgConfig, plan_year: int, ident: str) -> str:
    return f"{cfg.organisation.id}-{plan_year}-{ident}@styrkedja"


def _names(cfg: OrgConfig, ids: tuple[str, ...] | list[str]) -> str:
    by_id = {u.id: u.name for u in cfg.units}
    return ", ".join(by_id.get(i, i) for i in ids)


def _participation(cfg: OrgConfig, plan_year: int) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per phase: the units that send or receive a handoff, and those at one of its meetings."""
    from tasks.handoffs import handoffs_for_phase  # late: it pulls in the document catalog

    last = occasions(cfg, plan_year)[-1]
    handoff_units: dict[str, set[str]] = {}
    for p in cfg.wheel.phases:
        units: set[str] = set()
        for h in handoffs_for_phase(cfg, plan_year, p.id, last if p.id == "follow_up" else None, every_stage=True):
            units.update((h.sender, h.receiver))
        handoff_units[p.id] = units
    meeting_units: dict[str, set[str]] = {p.id: set() for p in cfg.wheel.phases}
    for mt in cfg.wheel.meetings:
        meeting_units.setdefault(mt.phase, set()).update((*mt.participants, mt.organiser))
    return handoff_units, meeting_units


def calendar_entries(cfg: OrgConfig, plan_year: int, unit: str | None = None) -> list[CalendarEntry]:
    """The events of the organisation's (or one unit's) calendar for the plan year, in date order."""
    if unit is not None and unit not in {u.id for u in cfg.units}:
        known = ", ".join(u.id for u in cfg.units[:20]) + (", …" if len(cfg.units) > 20 else "")
        raise UserError(f"--unit: unknown unit {unit!r} (known: {known})")
    wheel = resolve_wheel(cfg, plan_year)
    phase_names = {p.id: p.name for p in cfg.wheel.phases}
    deadline_of = {p.receipt_deadline: p for p in cfg.wheel.phases}
    entries: list[CalendarEntry] = []

    handoffs: dict[str, set[str]] = {}
    attends: dict[str, set[str]] = {}
    takes_part: set[str] = {p.id for p in cfg.wheel.phases}
    if unit is not None:
        handoffs, attends = _participation(cfg, plan_year)
        takes_part = {p for p in handoffs if unit in handoffs[p] or unit in attends.get(p, set())}
        ancestors = {a.id for a in cfg.ancestors(unit)}

    for p in cfg.wheel.phases:
        if p.id not in takes_part:
            continue
        start, end = wheel.phase_window(p.id)
        entries.append(
            CalendarEntry(
                f"fas-{p.id}",
                "phase",
                f"Fas: {p.name} (planår {plan_year})",
                start,
                end,
                f"{' '.join(p.purpose.split())}\n\nAnsvarig: {_names(cfg, [p.owner])}\n"
                f"Kvittenser senast: {wheel[p.receipt_deadline].isoformat()}",
                ("Fas",),
            )
        )

    for m in cfg.wheel.milestones:
        if unit is not None:
            own = m.owner == unit
            from_above = m.owner in ancestors and m.phase in takes_part
            receipts_due = m.id in deadline_of and unit in handoffs.get(deadline_of[m.id].id, set())
            if not (own or from_above or receipts_due):
                continue
        text = f"Milstolpe i fasen {phase_names.get(m.phase, m.phase)}, planår {plan_year}.\n"
        text += f"Ansvarig: {_names(cfg, [m.owner])}"
        if m.id in deadline_of:
            text += f"\nSista dag för kvittenserna i fasen {deadline_of[m.id].name}."
        entries.append(
            CalendarEntry(m.id, "milestone", m.name, wheel[m.id], wheel[m.id], text, ("Milstolpe", "Årshjul"))
        )

    for mt in cfg.wheel.meetings:
        if unit is not None and unit not in mt.participants and unit != mt.organiser:
            continue
        text = (
            f"Syfte: {' '.join(mt.purpose.split())}\n"
            f"Mål: {' '.join(mt.goal.split())}\n"
            f"Deltagare: {_names(cfg, mt.participants)}\n"
            f"Typ: {KIND_SV.get(mt.kind, mt.kind)}\n"
            f"Arrangör: {_names(cfg, [mt.organiser])}\n"
            f"Fas: {phase_names.get(mt.phase, mt.phase)}, planår {plan_year}"
        )
        entries.append(CalendarEntry(mt.id, "meeting", mt.name, wheel[mt.id], wheel[mt.id], text, ("Möte", "Årshjul")))

    if unit is None or unit in handoffs.get("follow_up", set()):
        for o in occasions(cfg, plan_year):
            entries.append(
                CalendarEntry(
                    f"uppfoljning-{o.key}",
                    "follow_up",
                    f"Uppföljning: {o.name} – rapporteringen klar",
                    o.deadline,
                    o.deadline,
                    f"{o.name}: varje nivå lämnar sitt utfall, sin prognos och sin bedömning till nivån ovanför "
                    f"senast denna dag (perioden slutar {o.period_end.isoformat()}).",
                    ("Uppföljning", "Årshjul"),
                )
            )
    entries.sort(key=lambda e: (e.start, e.end, event_uid(cfg, plan_year, e.ident)))
    return entries


def calendar_ics(cfg: OrgConfig, plan_year: int, unit: str | None = None) -> bytes:
    """The calendar as iCalendar bytes; the same configuration always gives the same bytes."""
    entries = calendar_entries(cfg, plan_year, unit)
    org = cfg.organisation.name
    who = f"{_names(cfg, [unit])} ({org})" if unit else org
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"Årshjul {plan_year} – {who}")
    cal.add("x-wr-caldesc", f"Planerings- och budgetprocessens årshjul för planår {plan_year}: {who}.")
    cal.add("x-wr-timezone", "Europe/Stockholm")
    stamp = datetime(plan_year - 2, 1, 1, tzinfo=UTC)
    for e in entries:
        ev = Event()
        ev.add("uid", event_uid(cfg, plan_year, e.ident))
        ev.add("dtstamp", stamp)
        ev.add("sequence", 0)
        ev.add("summary", e.summary)
        ev.add("dtstart", e.start)
        ev.add("dtend", e.end + timedelta(days=1))
        ev.add("description", e.description)
        ev.add("categories", list(e.categories))
        ev.add("transp", "TRANSPARENT")  # all-day plan entries must not block anyone's day
        cal.add_component(ev)
    return cal.to_ical()


def default_path(cfg: OrgConfig, plan_year: int, unit: str | None, root: Path) -> Path:
    name = f"arshjul-{cfg.organisation.id}-{plan_year}" + (f"-{unit}" if unit else "") + ".ics"
    return root / str(plan_year) / "kalender" / name


def write_calendar(cfg: OrgConfig, plan_year: int, out: Path, unit: str | None = None) -> Path:
    """Write the calendar to `out` atomically (a reader never sees half a file)."""
    from tasks.documents.files import atomic_save

    data = calendar_ics(cfg, plan_year, unit)
    atomic_save(out, lambda fh: fh.write(data))
    return out
