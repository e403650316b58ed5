"""Setting up a cycle: the organisation, the cycle row, its milestones, meetings and goals.

Everything here is an upsert keyed by (cycle, key), so running it before every phase is safe and
picks up configuration changes (a moved meeting, a renamed unit).
"""

from __future__ import annotations

from sqlmodel import Session, select

from config.schema import OrgConfig
from models.db import with_retry
from models.errors import UserError
from models.tables import Cycle, Goal, Indicator, Meeting, Milestone, Signatory, Unit
from tasks.wheel import resolve_wheel

MIN_YEAR, MAX_YEAR = 2000, 2100
HORIZON_YEARS = 4


def check_year(year: int) -> int:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise UserError(f"year: {year} is out of range ({MIN_YEAR}–{MAX_YEAR})")
    return year


def check_organisation(session: Session, cfg: OrgConfig) -> None:
    """One application database holds one organisation: units have no organisation of their own
    and are matched by id, so another organisation's configuration would rename and re-parent the
    units it shares ids with (KS, EKO, …). Refuse it before anything is written."""
    others = sorted(
        session.exec(select(Cycle.organisation_id).where(Cycle.organisation_id != cfg.organisation.id).distinct()).all()
    )
    if others:
        raise UserError(
            f"configuration: organisation {cfg.organisation.id!r} does not belong in this database, which holds "
            f"organisation {', '.join(repr(o) for o in others)} (one application database holds one organisation: "
            "set STYRKEDJA_DATABASE_URL); nothing was written"
        )


def sync_organisation(session: Session, cfg: OrgConfig) -> None:
    check_organisation(session, cfg)
    existing = {u.id: u for u in session.exec(select(Unit)).all()}
    for u in cfg.units:
        values = {
            "name": u.name,
            "level": u.level,
            "level_index": cfg.level_index(u.level),
            "parent_id": u.parent,
        }
        row = existing.get(u.id)
        if row is None:
            session.add(Unit(id=u.id, **values))
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            session.add(row)
    session.flush()
    signatories = {(s.unit_id, s.signatory_id): s for s in session.exec(select(Signatory)).all()}
    for u in cfg.units:
        for s in u.signatories:
            row = signatories.get((u.id, s.id))
            if row is None:
                session.add(Signatory(unit_id=u.id, signatory_id=s.id, name=s.name, email=s.email))
            elif (row.name, row.email) != (s.name, s.email):
                row.name, row.email = s.name, s.email
                session.add(row)


def get_cycle(session: Session, cfg: OrgConfig, year: int) -> Cycle | None:
    return session.exec(select(Cycle).where(Cycle.organisation_id == cfg.organisation.id, Cycle.year == year)).first()


def _ensure_cycle(session: Session, cfg: OrgConfig, year: int) -> Cycle:
    cycle = get_cycle(session, cfg, year)
    if cycle is None:
        cycle = Cycle(organisation_id=cfg.organisation.id, year=year, horizon_end=year + HORIZON_YEARS - 1)
        session.add(cycle)
        session.flush()
    return cycle


def _sync_calendar(session: Session, cfg: OrgConfig, cycle: Cycle) -> None:
    wheel = resolve_wheel(cfg, cycle.year)
    milestones = {m.key: m for m in session.exec(select(Milestone).where(Milestone.cycle_id == cycle.id)).all()}
    for m in cfg.wheel.milestones:
        values = {"name": m.name, "phase": m.phase, "owner_unit": m.owner, "due": wheel[m.id]}
        row = milestones.get(m.id)
        if row is None:
            session.add(Milestone(cycle_id=cycle.id, key=m.id, **values))
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            session.add(row)
    meetings = {m.key: m for m in session.exec(select(Meeting).where(Meeting.cycle_id == cycle.id)).all()}
    for mt in cfg.wheel.meetings:
        values = {
            "name": mt.name,
            "phase": mt.phase,
            "organiser": mt.organiser,
            "day": wheel[mt.id],
            "participants": list(mt.participants),
            "purpose": mt.purpose,
            "goal": mt.goal,
            "kind": mt.kind,
        }
        row = meetings.get(mt.id)
        if row is None:
            session.add(Meeting(cycle_id=cycle.id, key=mt.id, **values))
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            session.add(row)


def _sync_goals(session: Session, cfg: OrgConfig, cycle: Cycle) -> None:
    goals = {g.key: g for g in session.exec(select(Goal).where(Goal.cycle_id == cycle.id)).all()}
    for g in cfg.goals:
        values = {
            "area": g.area,
            "title": g.title,
            "owner_unit": cfg.organisation.roles.assembly,
            "targeted": list(g.targeted),
            "opt_out_allowed": g.opt_out_allowed,
        }
        row = goals.get(g.id)
        if row is None:
            row = Goal(cycle_id=cycle.id, key=g.id, **values)
        else:
            for k, v in values.items():
                setattr(row, k, v)
        session.add(row)
        session.flush()
        indicators = {i.key: i for i in session.exec(select(Indicator).where(Indicator.goal_id == row.id)).all()}
        for ind in g.indicators:
            ind_values = {"name": ind.name, "target": ind.target, "unit": ind.unit, "kolada_id": ind.kolada_id}
            irow = indicators.get(ind.id) or Indicator(goal_id=row.id, key=ind.id, **ind_values)
            for k, v in ind_values.items():
                setattr(irow, k, v)
            session.add(irow)


def prepare_cycle(cfg: OrgConfig, year: int, url: str | None = None) -> int:
    """Make sure the organisation and the cycle exist and match the configuration; return the cycle id."""
    check_year(year)

    def work(session: Session) -> int:
        sync_organisation(session, cfg)
        cycle = _ensure_cycle(session, cfg, year)
        _sync_calendar(session, cfg, cycle)
        _sync_goals(session, cfg, cycle)
        assert cycle.id is not None
        return cycle.id

    return with_retry(work, url)
