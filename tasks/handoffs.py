"""What each phase hands over, from whom to whom, with which documents, purpose and deadline.

A handoff is the unit of agreement: one receipt per handoff and version. The phase flows ask this
module what to distribute; the receipt module records and signs it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import select

from config.schema import OrgConfig, Unit
from models.db import get_engine, session_scope
from models.tables import Cycle, Direction, HandoffMode, Receipt, ReceiptState
from tasks.documents.model import DocRequest
from tasks.followup_calendar import Occasion
from tasks.wheel import resolve_wheel

# The receipts a phase needs from earlier phases before it may start (its gate).
PHASE_REQUIRES: dict[str, tuple[str, ...]] = {
    "preparation": (),
    "planning_prerequisites": ("preparation",),
    "committee_feedback": ("planning_prerequisites",),
    "regional_plan": ("committee_feedback",),
    "operational_plans": ("regional_plan",),
    "activity_plans": ("operational_plans",),
    "follow_up": ("activity_plans",),
}


# -- which handoffs ask for content back --------------------------------------------------------
# The one table of handoff kinds, by topic (follow-up topics name their occasion after a "-"). A
# fill-in handoff's sender is its author: the template goes to the author first (the request),
# and the receiver agrees to what the author handed back (the delivery). A decision handoff
# carries a decided document (or a draft for a body to decide on); the receiver agrees as it is.
# Phases name topics only; nothing else decides which kind a handoff is.
HANDOFF_MODES: dict[str, HandoffMode] = {
    "planeringsunderlag": HandoffMode.DECISION,  # the finance department's own material
    "planeringsforutsattningar": HandoffMode.DECISION,
    "aterkoppling": HandoffMode.FILL_IN,  # the committee writes its feedback
    "plan_beredning": HandoffMode.DECISION,
    "plan_forslag": HandoffMode.DECISION,
    "plan_beslut": HandoffMode.DECISION,
    "plan_beslutad": HandoffMode.DECISION,
    "verksamhetsplan": HandoffMode.FILL_IN,  # the committee writes its operational plan
    "aktivitetsplan": HandoffMode.FILL_IN,  # the administration writes activities and detailed budget
    "uppfoljning": HandoffMode.FILL_IN,  # each unit its outcome, forecast and assessment
    "nivarapport": HandoffMode.FILL_IN,  # each level its own assessment of the summed report
}


def topic_kind(topic: str) -> str:
    """The handoff kind a topic names: "uppfoljning-delar-2028-08-31" → "uppfoljning"."""
    return topic if topic in HANDOFF_MODES else topic.split("-", 1)[0]


def handoff_mode(topic: str) -> HandoffMode:
    try:
        return HANDOFF_MODES[topic_kind(topic)]
    except KeyError:
        raise ValueError(f"handoff topic {topic!r} is not in tasks.handoffs.HANDOFF_MODES") from None


@dataclass(frozen=True)
class Handoff:
    topic: str
    direction: Direction
    sender: str  # in a fill-in handoff: the author, asked to fill in and hand back
    receiver: str
    documents: tuple[DocRequest, ...]  # the first is the main document the receipt names
    purpose: str  # Swedish: what sender and receiver agree on
    deadline: date

    @property
    def mode(self) -> HandoffMode:
        return handoff_mode(self.topic)


def _doc(kind: str, phase: str, unit: str, extra: tuple[tuple[str, str], ...] = ()) -> DocRequest:
    return DocRequest(kind=kind, phase_id=phase, unit_id=unit, version=1, extra=extra)


def _committees(cfg: OrgConfig) -> list[Unit]:
    return cfg.committees()


# -- the regional plan: preparation and the RSAU → RS → RF decision --------------------------------

REGIONAL_PLAN = "regional_plan"
STOCKHOLM = ZoneInfo("Europe/Stockholm")


@dataclass(frozen=True)
class ChainStage:
    """One step of the draft plan through the decision chain. The receiving body's agreed receipt
    is its decision; the signature's comment is the decision text ("§ 45 Föreslår …")."""

    topic: str
    sender_role: str  # an attribute of organisation.roles
    receiver_role: str
    step: str  # Swedish: what the receiving body does with the draft


DECISION_CHAIN: tuple[ChainStage, ...] = (
    ChainStage("plan_beredning", "finance", "working_committee", "bereder"),
    ChainStage("plan_forslag", "working_committee", "executive_board", "föreslår"),
    ChainStage("plan_beslut", "executive_board", "assembly", "beslutar"),
)
DECIDED_TOPIC = "plan_beslutad"
# Phases whose handoffs come in stages, each issued once the one before is agreed.
STAGED_PHASES = frozenset({"regional_plan"})
DRAFT_KIND, DECIDED_KIND = "regionplan_forslag", "regionplan_beslutad"
_PARAGRAPH = re.compile(r"^\s*(§\s*\d+[a-zA-Z]?)\s*[.:,–-]?\s*(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Decision:
    """A stage of the chain decided: the receiving body agreed to the draft."""

    role: str
    unit: str
    day: date  # the day it agreed, in Europe/Stockholm
    paragraph: str  # "§ 45", from the start of the comment; may be empty
    text: str  # the rest of the comment: the decision text; may be empty
    version: int  # the draft version it agreed to


def regional_plan_recipients(cfg: OrgConfig) -> dict[str, list[str]]:
    """Who receives each regional plan document: the draft goes to each body of the decision chain
    in turn, the decided plan to every committee. The catalog lists the same recipients."""
    roles = cfg.organisation.roles
    return {
        DRAFT_KIND: [getattr(roles, s.receiver_role) for s in DECISION_CHAIN],
        DECIDED_KIND: [c.id for c in _committees(cfg)],
    }


def split_decision(comment: str | None) -> tuple[str, str]:
    """("§ 45", "Föreslår …") from a signature's comment; ("", comment) without a paragraph."""
    text = " ".join((comment or "").split())
    m = _PARAGRAPH.match(text)
    if m is None:
        return "", text
    return " ".join(m.group(1).replace("§", "§ ").split()), m.group(2).strip()


def _stockholm_day(moment: datetime) -> date:
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; they are stored in UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(STOCKHOLM).date()


def read_decisions(cfg: OrgConfig, plan_year: int, url: str | None = None) -> dict[str, Decision] | None:
    """The stages of the plan year's decision chain the database holds as decided, by role; None
    when it holds no cycle of the plan year, or no application schema at all (a calendar exported
    before `init-db`). Any other database error is raised, never taken for "nothing decided"."""
    if not sa.inspect(get_engine(url)).has_table("cycle"):
        return None
    roles = cfg.organisation.roles
    triples = {
        (s.topic, getattr(roles, s.sender_role), getattr(roles, s.receiver_role)): s.receiver_role
        for s in DECISION_CHAIN
    }
    with session_scope(url) as session:
        cycle = session.exec(
            select(Cycle).where(Cycle.organisation_id == cfg.organisation.id, Cycle.year == plan_year)
        ).first()
        if cycle is None:
            return None
        rows = session.exec(
            select(Receipt).where(
                Receipt.cycle_id == cycle.id,
                Receipt.phase == REGIONAL_PLAN,
                Receipt.state == ReceiptState.AGREED,
                Receipt.topic.in_([s.topic for s in DECISION_CHAIN]),  # type: ignore[attr-defined]
            )
        ).all()
    out: dict[str, Decision] = {}
    for r in sorted(rows, key=lambda r: r.version):
        role = triples.get((r.topic, r.sender_unit, r.receiver_unit))
        if role is None or r.signed_at is None:
            continue
        paragraph, text = split_decision(r.comment)
        out[role] = Decision(role, r.receiver_unit, _stockholm_day(r.signed_at), paragraph, text, r.version)
    return out


def decision_extra(decisions: Mapping[str, Decision]) -> tuple[tuple[str, str], ...]:
    """The decision record a plan document carries (tasks/documents/builders._decisions reads it):
    <role>_date, <role>_paragraph, <role>_decision for each decided stage, in chain order."""
    out: list[tuple[str, str]] = []
    for stage in DECISION_CHAIN:
        d = decisions.get(stage.receiver_role)
        if d is not None:
            role = stage.receiver_role
            out += [(f"{role}_date", d.day.isoformat()), (f"{role}_paragraph", d.paragraph)]
            out.append((f"{role}_decision", d.text))
    return tuple(out)


def planned_decision_day(cfg: OrgConfig, plan_year: int, unit_id: str) -> date | None:
    """When the wheel plans `unit_id`'s decision on the plan: its last decision meeting in the phase,
    else its last milestone there; None if the wheel has neither."""
    wheel = resolve_wheel(cfg, plan_year)
    meetings = [
        wheel[m.id]
        for m in cfg.wheel.meetings
        if m.phase == REGIONAL_PLAN and m.organiser == unit_id and m.kind == "decision"
    ]
    milestones = [wheel[m.id] for m in cfg.wheel.milestones if m.phase == REGIONAL_PLAN and m.owner == unit_id]
    pick = meetings or milestones
    return max(pick) if pick else None


def _regional_plan(
    cfg: OrgConfig, plan_year: int, deadline: date, decisions: Mapping[str, Decision], *, every_stage: bool
) -> list[Handoff]:
    """Finance's draft → working committee (beredning) → executive board (förslag) → assembly
    (beslut), each stage once the one before is decided; then the decided plan to every committee,
    carrying the three decisions. Earlier stages stay in the list: their receipts still count."""
    roles = cfg.organisation.roles
    name = {u.id: u.name for u in cfg.units}
    plan = f"plan och budget {plan_year}–{plan_year + 3}"
    out: list[Handoff] = []
    decided: dict[str, Decision] = {}
    for i, stage in enumerate(DECISION_CHAIN):
        sender, receiver = getattr(roles, stage.sender_role), getattr(roles, stage.receiver_role)
        last = i == len(DECISION_CHAIN) - 1
        what = (
            f"{name[receiver]} beslutar om {plan}"
            if last
            else f"{name[receiver]} {stage.step} {plan} och lämnar "
            f"sitt förslag till {name[getattr(roles, DECISION_CHAIN[i + 1].receiver_role)]}"
        )
        out.append(
            Handoff(
                topic=stage.topic,
                direction=Direction.UP,
                sender=sender,
                receiver=receiver,
                documents=(_doc(DRAFT_KIND, REGIONAL_PLAN, receiver, decision_extra(decided)),),
                purpose=(
                    f"Förslag till {plan} från {name[sender]}: {what}. Kvittensen är beslutet: "
                    'kommentaren anger paragraf och beslutstext (t.ex. "§ 45 Föreslår …").'
                ),
                deadline=planned_decision_day(cfg, plan_year, receiver) or deadline,
            )
        )
        if stage.receiver_role not in decisions and not every_stage:
            return out
        if stage.receiver_role in decisions:
            decided[stage.receiver_role] = decisions[stage.receiver_role]
    assembly = roles.assembly
    for c in _committees(cfg):
        out.append(
            Handoff(
                topic=DECIDED_TOPIC,
                direction=Direction.DOWN,
                sender=assembly,
                receiver=c.id,
                documents=(_doc(DECIDED_KIND, REGIONAL_PLAN, c.id, decision_extra(decided)),),
                purpose=(
                    f"{c.name} bekräftar att fullmäktiges beslutade plan och budget för {plan_year} med "
                    "nämndens ram och uppdrag har tagits emot och förståtts."
                ),
                deadline=deadline,
            )
        )
    return out


def handoffs_for_phase(
    cfg: OrgConfig,
    plan_year: int,
    phase: str,
    occasion: Occasion | None = None,
    *,
    decisions: Mapping[str, Decision] | None = None,
    every_stage: bool = False,
    url: str | None = None,
) -> list[Handoff]:
    """The handoffs a run of `phase` distributes now.

    The regional plan is staged (see `DECISION_CHAIN`): its handoffs are the stages up to the first
    one the database (`url`) does not hold as decided, and the decided plan to the committees once
    the assembly has decided. `decisions` gives the decided stages instead of reading them.
    `every_stage` lists every stage regardless (for calendars and planning views: the same receipt
    triples and document keys, the decision record left as planned); so does a database that holds
    no cycle of the plan year (a phase run always prepares its cycle before it distributes)."""
    roles = cfg.organisation.roles
    wheel = resolve_wheel(cfg, plan_year)
    deadline = wheel[cfg.phase(phase).receipt_deadline]
    board = roles.executive_board
    out: list[Handoff] = []

    if phase == "preparation":
        out.append(
            Handoff(
                topic="planeringsunderlag",
                direction=Direction.UP,
                sender=roles.finance,
                receiver=board,
                documents=(_doc("planeringsunderlag", phase, board), _doc("investeringsprioritering", phase, board)),
                purpose=(
                    f"Gemensam faktabas inför planår {plan_year}: omvärldsanalys, ekonomiskt utrymme, "
                    "slutsatser från uppföljning och intern kontroll samt prioriterade investeringar. "
                    "Mottagaren bekräftar att underlaget räcker för att ta fram planeringsförutsättningarna."
                ),
                deadline=deadline,
            )
        )
    elif phase == "planning_prerequisites":
        for c in _committees(cfg):
            out.append(
                Handoff(
                    topic="planeringsforutsattningar",
                    direction=Direction.DOWN,
                    sender=board,
                    receiver=c.id,
                    documents=(
                        _doc("planeringsforutsattningar", phase, c.id),
                        _doc("pf_bilagor", phase, c.id),
                    ),
                    purpose=(
                        f"{c.name} bekräftar en gemensam tolkning av planeringsförutsättningarna för planår "
                        f"{plan_year}: mål riktade till nämnden, ekonomisk ram och tidplan."
                    ),
                    deadline=deadline,
                )
            )
    elif phase == "committee_feedback":
        for c in _committees(cfg):
            out.append(
                Handoff(
                    topic="aterkoppling",
                    direction=Direction.UP,
                    sender=c.id,
                    receiver=board,
                    documents=(_doc("aterkoppling", phase, c.id),),
                    purpose=(
                        f"Återkoppling från {c.name} på planeringsförutsättningarna (sex rubriker samt risk- och "
                        "känslighetsanalys). Mottagaren bekräftar att återkopplingen tas med i beredningen."
                    ),
                    deadline=deadline,
                )
            )
    elif phase == REGIONAL_PLAN:
        if decisions is None and not every_stage:
            decisions = read_decisions(cfg, plan_year, url)
            every_stage = decisions is None  # no cycle yet: nothing is staged, the whole plan is listed
        out.extend(_regional_plan(cfg, plan_year, deadline, decisions or {}, every_stage=every_stage))
    elif phase == "operational_plans":
        for c in _committees(cfg):
            for a in cfg.children(c.id):
                out.append(
                    Handoff(
                        topic="verksamhetsplan",
                        direction=Direction.DOWN,
                        sender=c.id,
                        receiver=a.id,
                        documents=(_doc("verksamhetsplan", phase, c.id), _doc("verksamhetsplan_mall", phase, c.id)),
                        purpose=(
                            f"{a.name} bekräftar {c.name}s verksamhetsplan för {plan_year}: mål, åtaganden, "
                            "indikatorer och internkontrollplan som förvaltningen ska bryta ned."
                        ),
                        deadline=deadline,
                    )
                )
    elif phase == "activity_plans":
        admin_level = cfg.levels[3].id
        for a in cfg.units_at(admin_level):
            for u in cfg.children(a.id):
                out.append(
                    Handoff(
                        topic="aktivitetsplan",
                        direction=Direction.DOWN,
                        sender=a.id,
                        receiver=u.id,
                        documents=(_doc("aktivitetsplan", phase, a.id),),
                        purpose=(
                            f"{u.name} bekräftar sina aktiviteter och sin detaljbudget för {plan_year} i "
                            f"{a.name}s aktivitetsplan."
                        ),
                        deadline=deadline,
                    )
                )
    elif phase == "follow_up":
        if occasion is None:
            raise ValueError("the follow-up phase needs an occasion")
        extra = (("occasion", occasion.name), ("occasion_key", occasion.key))
        for u in cfg.units:
            if u.parent is None or u.id == roles.working_committee:
                continue
            out.append(
                Handoff(
                    topic=f"uppfoljning-{occasion.key}",
                    direction=Direction.UP,
                    sender=u.id,
                    receiver=u.parent,
                    documents=(
                        _doc("uppfoljning", phase, u.id, extra),
                        _doc("uppfoljning_berattelse", phase, u.id, extra),
                    ),
                    purpose=(
                        f"{occasion.name}: {u.name} lämnar sitt utfall, sin prognos och sin bedömning. "
                        "Mottagaren bekräftar att det väsentliga förs vidare och att egna frågor åtgärdas."
                    ),
                    deadline=occasion.deadline,
                )
            )
    else:
        raise ValueError(f"unknown phase {phase!r}")
    return out
