"""What each phase hands over, from whom to whom, with which documents, purpose and deadline.

A handoff is the unit of agreement: one receipt per handoff and version. The phase flows ask this
module what to distribute; the receipt module records and signs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from config.schema import OrgConfig, Unit
from models.tables import Direction
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


@dataclass(frozen=True)
class Handoff:
    topic: str
    direction: Direction
    sender: str
    receiver: str
    documents: tuple[DocRequest, ...]  # the first is the main document the receipt names
    purpose: str  # Swedish: what sender and receiver agree on
    deadline: date


def _doc(kind: str, phase: str, unit: str, extra: tuple[tuple[str, str], ...] = ()) -> DocRequest:
    return DocRequest(kind=kind, phase_id=phase, unit_id=unit, version=1, extra=extra)


def _committees(cfg: OrgConfig) -> list[Unit]:
    return cfg.committees()


def handoffs_for_phase(cfg: OrgConfig, plan_year: int, phase: str, occasion: Occasion | None = None) -> list[Handoff]:
    roles = cfg.organisation.roles
    wheel = resolve_wheel(cfg, plan_year)
    deadline = wheel[cfg.phase(phase).receipt_deadline]
    board, assembly = roles.executive_board, roles.assembly
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
    elif phase == "regional_plan":
        out.append(
            Handoff(
                topic="plan_forslag",
                direction=Direction.UP,
                sender=board,
                receiver=assembly,
                documents=(_doc("regionplan_forslag", phase, assembly),),
                purpose=f"Förslag till plan och budget {plan_year}–{plan_year + 3} för beslut i fullmäktige.",
                deadline=deadline,
            )
        )
        for c in _committees(cfg):
            out.append(
                Handoff(
                    topic="plan_beslutad",
                    direction=Direction.DOWN,
                    sender=assembly,
                    receiver=c.id,
                    documents=(_doc("regionplan_beslutad", phase, c.id),),
                    purpose=(
                        f"{c.name} bekräftar att fullmäktiges beslutade plan och budget för {plan_year} med "
                        "nämndens ram och uppdrag har tagits emot och förståtts."
                    ),
                    deadline=deadline,
                )
            )
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
