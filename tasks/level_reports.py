"""Level reports of a follow-up occasion, and the hand-up from each level to the next (no Prefect).

Every level with reporting units below it (administration, committee, executive board, assembly)
gets a report built from the aggregate of the level below (tasks/aggregation.py): a Word document
(summed figures, deviations beyond the threshold, goal assessments, raised items, internal control
with the August and annual reports, a section for the level's own assessment) and an Excel
workbook with the figures. Handing the report up to the parent is a follow-up-direction receipt
(tasks/receipts.py). The assembly's report is the top of the chain: it is written, not handed up.

Rules:

- A level hands up only when every unit below it has returned (`Completeness`), unless an
  operator overrides with a reason; the override is in the audit log and in the report.
- Raised items are stored (`RaisedIssue`): open until a level acts on them, and listed in the
  report of every level they reach until then, in later occasions of the cycle too.
- Idempotent like distribution: documents and receipts are keyed (org/year/follow_up/unit/
  nivarapport-<occasion>/v<n>); a re-run renders and issues nothing that exists. A dispute of a
  hand-up asks for a new version, rendered from the returns as they are then.
- The conclusions of the top report (annual and interim) are stored; the next cycle's
  planeringsunderlag lists them (`conclusions_for_next_cycle`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from config.schema import OrgConfig
from models.db import session_scope, with_retry
from models.errors import UserError
from models.tables import (
    AuditEntry,
    Conclusion,
    Cycle,
    Direction,
    Document,
    RaisedIssue,
    Receipt,
    ReceiptState,
    Submission,
    utcnow,
)
from tasks.aggregation import (
    Aggregate,
    Figures,
    LevelReport,
    OrgTree,
    aggregate_returns,
    load_returns,
    normalise,
    own_actions,
)
from tasks.audit import audit
from tasks.calendar import today_stockholm
from tasks.distribution import record_documents
from tasks.documents import excel, text, word
from tasks.documents.catalog import LEVEL_REPORT_KINDS, doc_key, file_name, spec_of
from tasks.documents.content import TRAFFIC_LIGHTS, YES_NO
from tasks.documents.model import (
    ColumnSpec,
    DocMeta,
    DocRequest,
    RenderedDoc,
    SheetSpec,
    TableData,
    content_hash,
    follow_up_figure_columns,
)
from tasks.documents.sanitize import safe_path
from tasks.documents.yeardata import YearData, one_line, year_data
from tasks.followup_calendar import Occasion, occasions
from tasks.handoffs import Handoff
from tasks.messages import queue_handoffs
from tasks.receipts import issue_receipt, plan_receipts
from tasks.rendering import fan_out

PHASE = "follow_up"
REPORT, FIGURES = LEVEL_REPORT_KINDS
# The fields of a level report's own assessment (templates/docs/nivarapport.txt.j2), as the level above reads them.
LEVEL_ANSWER_LABELS = (
    ("egen_bedomning", "Samlad bedömning"),
    ("egna_atgarder", "Vad gör vi själva?"),
    ("lyfts_vidare", "Vad lyfter vi till nästa nivå?"),
    ("intern_kontroll_resultat", "Resultat av kontrollerna"),
)
OPEN, ACTED_ON = "open", "acted_on"
HIGH_RISK = 9  # probability × consequence at or above this is a high risk (4 × 4 matrix)
RENDERER_VERSION = 1


# ---------------------------------------------------------------------------------------------
# What a pass did
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandUpResult:
    reports_rendered: int  # documents written in this pass
    levels: tuple[str, ...]  # levels whose report exists (handed up, or the top)
    waiting: Mapping[str, tuple[str, ...]]  # level -> units below it that have not returned
    overridden: tuple[str, ...]  # levels handed up without complete returns, by override
    receipts_issued: int
    notifications_queued: int
    conclusions: int  # stored in this pass (the top report's)


@dataclass(frozen=True)
class IssueView:
    id: int
    text: str
    origin: str
    path: tuple[str, ...]
    state: str
    acted_by_unit: str | None
    occasion_key: str


def level_units(cfg: OrgConfig) -> list[str]:
    """Units that get a level report: those with reporting units below them, bottom-up."""
    tree = OrgTree.from_config(cfg)
    kids = tree.children()
    return [u for u in tree.bottom_up() if kids.get(u)]


def report_request(unit: str, occasion: Occasion, kind: str = REPORT, version: int = 1) -> DocRequest:
    return DocRequest(kind, PHASE, unit, version, (("occasion", occasion.name), ("occasion_key", occasion.key)))


def hand_up_topic(occasion: Occasion) -> str:
    return f"{REPORT}-{occasion.key}"


def refusal(cfg: OrgConfig, occasion: Occasion, unit: str, missing: tuple[str, ...]) -> str:
    """The one-line reason a level may not hand up yet."""
    names = ", ".join(f"{m} ({cfg.unit(m).name})" for m in missing)
    return (
        f"follow-up {occasion.key}: {unit} cannot hand up its level report: no return yet from {names}; "
        f"wait for them, or override with a reason"
    )


# ---------------------------------------------------------------------------------------------
# The pass: aggregate, store raised items, render, hand up
# ---------------------------------------------------------------------------------------------


def hand_up_levels(
    cfg: OrgConfig,
    cycle_id: int,
    occasion: Occasion,
    out_root: Path,
    *,
    actor: str,
    overrides: Mapping[str, str] | None = None,
    only: str | None = None,
    url: str | None = None,
) -> HandUpResult:
    """Write every level report whose level below is complete (or overridden) and hand it up.

    `overrides`: level -> reason, to hand up without complete returns (audited). `only`: hand up
    this one level, refused with a `UserError` naming what is missing while it is incomplete."""
    units = level_units(cfg)
    if only is not None and only not in units:
        raise UserError(f"level: {only!r} has no level report to hand up (levels: {', '.join(units)})")
    overrides = dict(overrides or {})
    for unit, reason in overrides.items():
        if unit not in units:
            raise UserError(f"override: {unit!r} has no level report to hand up (levels: {', '.join(units)})")
        if not reason.strip():
            raise UserError(f"override: handing up {unit} without complete returns needs a written reason")
    # An override, once decided, stands for the occasion: a re-run or a new version after a
    # dispute hands the level up again with the reason recorded then.
    overrides = _earlier_overrides(cycle_id, occasion, url) | overrides
    returns = load_returns(cycle_id, occasion.key, url)
    tree = OrgTree.from_config(cfg)
    agg = aggregate_returns(tree, returns, occasion.key, cfg.follow_up.deviation_threshold_percent)
    issues = sync_raised_issues(cfg, cycle_id, occasion, agg, own_actions(returns), url=url)

    # A level reports on its own assessment of what came up from below: a level below that is a
    # level itself is complete once it has handed its own report back (its return is in).
    # A level that is still short of returns itself holds nobody up: its parent reports with its
    # figures as returned, as before it hands up. A level written once stays written (a new version
    # comes only after a dispute).
    returned_levels = level_returns(cycle_id, occasion, url)
    written = _written_levels(cycle_id, occasion, url)
    kids = tree.children()

    def holds_up(child: str) -> bool:
        stalled = bool(agg[child].completeness.missing) and child not in overrides
        return child in units and not stalled and child not in returned_levels

    waiting: dict[str, tuple[str, ...]] = {}
    incomplete: dict[str, tuple[str, ...]] = {}  # ready levels handed up without complete returns
    ready: list[str] = []
    for unit in units if only is None else [only]:
        missing = agg[unit].completeness.missing
        if unit not in written:
            missing += tuple(c for c in kids.get(unit, ()) if holds_up(c))
        if missing and unit not in overrides:
            if only is not None:
                raise UserError(refusal(cfg, occasion, unit, missing))
            waiting[unit] = missing
        else:
            ready.append(unit)
            if missing:
                incomplete[unit] = missing
    overridden = tuple(incomplete)

    with session_scope(url) as session:
        cycle = session.get(Cycle, cycle_id)
        assert cycle is not None
        year = cycle.year
        handoffs = [_handoff(cfg, occasion, u) for u in ready if cfg.unit(u).parent is not None]
        plans = {p.handoff.sender: p for p in plan_receipts(session, cycle_id, PHASE, handoffs)}
        known = {
            d.key: d.relpath
            for d in session.exec(
                select(Document).where(
                    Document.cycle_id == cycle_id, Document.phase == PHASE, col(Document.kind).in_((REPORT, FIGURES))
                )
            )
        }
    cyc = year_data(cfg, year)
    jobs: list[tuple[DocRequest, _ReportData]] = []
    top_rendered = False
    for unit in ready:
        version = plans[unit].version if unit in plans else 1
        reqs = [report_request(unit, occasion, kind, version) for kind in (REPORT, FIGURES)]
        todo = [
            r
            for r in reqs
            if doc_key(cfg, year, r) not in known or not (out_root / known[doc_key(cfg, year, r)]).exists()
        ]
        if not todo:
            continue
        below = [returned_levels[c] for c in kids.get(unit, ()) if c in returned_levels]
        data = _report_data(cfg, cyc, agg, occasion, unit, issues, overrides.get(unit), below)
        jobs.extend((req, data) for req in todo)
        top_rendered = top_rendered or cfg.unit(unit).parent is None
    # Writing the files is the costly part (a region has a report per level): the render pool.
    rendered = fan_out(partial(_render_job, cfg, year, occasion, out_root), jobs)
    conclusions = top_conclusions(cfg, cyc, agg, occasion, issues, returns) if top_rendered else []

    def record(session: Session) -> tuple[int, int]:
        docs = record_documents(session, cycle_id, rendered)
        created_now: list[tuple[Receipt, list[Document]]] = []
        for unit in overridden:
            _audit_override(session, cycle_id, occasion, unit, overrides[unit], incomplete[unit], actor)
        for unit, plan in plans.items():
            if not plan.needs_issue:
                continue
            keys = [
                doc_key(cfg, year, report_request(unit, occasion, kind, plan.version)) for kind in (REPORT, FIGURES)
            ]
            documents = [docs.get(k) or session.exec(select(Document).where(Document.key == k)).one() for k in keys]
            receipt, created = issue_receipt(session, cfg, cycle, plan, documents[0], actor=actor)
            if created:
                created_now.append((receipt, documents))
        if conclusions:
            _store_conclusions(session, cycle_id, occasion, conclusions)
        return len(created_now), queue_handoffs(session, cfg, created_now)

    issued, queued = with_retry(record, url)
    return HandUpResult(
        reports_rendered=len(rendered),
        levels=tuple(ready),
        waiting=waiting,
        overridden=overridden,
        receipts_issued=issued,
        notifications_queued=queued,
        conclusions=len(conclusions),
    )


def _handoff(cfg: OrgConfig, occasion: Occasion, unit: str) -> Handoff:
    u = cfg.unit(unit)
    parent = cfg.unit(u.parent or "")
    return Handoff(
        topic=hand_up_topic(occasion),
        direction=Direction.UP,
        sender=unit,
        receiver=parent.id,
        documents=(report_request(unit, occasion, REPORT), report_request(unit, occasion, FIGURES)),
        purpose=(
            f"{occasion.name}: {u.name} lämnar sin nivårapport, sammanställd ur underlaget från nivån under, "
            f"till {parent.name}. Mottagaren bekräftar att det väsentliga förs vidare och att de frågor som "
            "lyfts hit åtgärdas eller lyfts vidare."
        ),
        deadline=occasion.deadline,
    )


@dataclass(frozen=True)
class LevelReturn:
    """What a level wrote into its own level report and handed back: its assessment (Word) and its
    internal-control results and goal assessments (Excel), shown in the report of the level above."""

    unit: str
    fields: dict[str, str]
    sheets: dict[str, list[dict[str, Any]]]


def level_returns(cycle_id: int, occasion: Occasion, url: str | None = None) -> dict[str, LevelReturn]:
    """unit -> its returned level report, for the levels whose current hand-up receipt has its
    return in (acknowledged or agreed); the latest return of that version's documents."""
    with session_scope(url) as session:
        current = {
            (r.sender_unit, r.version)
            for r in session.exec(
                select(Receipt).where(
                    Receipt.cycle_id == cycle_id,
                    Receipt.topic == hand_up_topic(occasion),
                    col(Receipt.state).in_((ReceiptState.ACKNOWLEDGED, ReceiptState.AGREED)),
                )
            )
        }
        if not current:
            return {}
        rows = session.exec(
            select(Document.unit_id, Document.kind, Document.version, Submission.content)
            .join(Submission, col(Submission.document_id) == col(Document.id))
            .where(
                Document.cycle_id == cycle_id,
                Document.phase == PHASE,
                col(Document.kind).in_((REPORT, FIGURES)),
                col(Document.key).like(f"%-{occasion.key}/v%"),
            )
            .order_by(col(Submission.id))
        ).all()
    content: dict[str, dict[str, dict[str, Any]]] = {}
    for unit, kind, version, data in rows:
        if (unit, version) in current:
            content.setdefault(unit, {})[kind] = data
    return {
        u: LevelReturn(u, c.get(REPORT, {}).get("fields", {}), c.get(FIGURES, {}).get("sheets", {}))
        for u, c in content.items()
        if REPORT in c
    }


def _written_levels(cycle_id: int, occasion: Occasion, url: str | None) -> set[str]:
    """Levels whose level report of the occasion is written and stands: its latest hand-up receipt
    is not disputed (the top level, which hands nothing up: its report exists)."""
    with session_scope(url) as session:
        docs = session.exec(
            select(Document.unit_id).where(
                Document.cycle_id == cycle_id,
                Document.phase == PHASE,
                Document.kind == REPORT,
                col(Document.key).like(f"%/{REPORT}-{occasion.key}/v%"),
            )
        ).all()
        latest: dict[str, tuple[int, str]] = {}
        for sender, version, state in session.exec(
            select(Receipt.sender_unit, Receipt.version, Receipt.state).where(
                Receipt.cycle_id == cycle_id, Receipt.topic == hand_up_topic(occasion)
            )
        ):
            if sender not in latest or version > latest[sender][0]:
                latest[sender] = (version, state)
    return {u for u in docs if latest.get(u, (0, ""))[1] != ReceiptState.DISPUTED}


def _earlier_overrides(cycle_id: int, occasion: Occasion, url: str | None) -> dict[str, str]:
    prefix = f"{occasion.key}/"
    with session_scope(url) as session:
        rows = session.exec(
            select(AuditEntry.subject, AuditEntry.reason).where(
                AuditEntry.cycle_id == cycle_id,
                AuditEntry.action == "hand_up_overridden",
                col(AuditEntry.subject).startswith(prefix),
            )
        ).all()
    return {subject[len(prefix) :]: reason or "" for subject, reason in rows if subject}


def _audit_override(
    session: Session, cycle_id: int, occasion: Occasion, unit: str, reason: str, missing: tuple[str, ...], actor: str
) -> None:
    subject = f"{occasion.key}/{unit}"
    seen = session.exec(
        select(AuditEntry.id).where(
            AuditEntry.cycle_id == cycle_id, AuditEntry.action == "hand_up_overridden", AuditEntry.subject == subject
        )
    ).first()
    if seen is None:  # a re-run of the same override is not a second decision
        audit(
            session,
            actor=actor,
            action="hand_up_overridden",
            cycle_id=cycle_id,
            phase=PHASE,
            subject=subject,
            reason=reason.strip(),
            detail={"missing": list(missing)},
        )


# ---------------------------------------------------------------------------------------------
# Raised items: stored, open until acted on
# ---------------------------------------------------------------------------------------------


def _issue_key(org_id: str, year: int, occasion_key: str, origin: str, text_: str) -> str:
    """Organisation and year rather than the cycle's id, like receipt keys: a cycle imported into
    another database keeps its keys."""
    digest = hashlib.sha256(normalise(text_).encode()).hexdigest()[:16]
    return f"{org_id}/{year}/{occasion_key}/{origin}/{digest}"


def sync_raised_issues(
    cfg: OrgConfig,
    cycle_id: int,
    occasion: Occasion,
    agg: Aggregate,
    acts: Mapping[str, set[str]],
    *,
    url: str | None = None,
) -> list[IssueView]:
    """Store this occasion's raised items and where each ended (acted on, or open at the top);
    an open item of an earlier occasion is acted on when a level on its way lists it under
    "Vad gör vi själva?" now. Returns every item of the cycle. Never reopens an item."""
    found: dict[tuple[str, str], tuple[str, tuple[str, ...], str | None]] = {}
    for unit, report in agg.reports.items():
        for item in report.acted_on:
            found[(item.origin, normalise(item.text))] = (item.text, (*item.path, unit), unit)
        if cfg.unit(unit).parent is None:
            for item in report.raised:
                found.setdefault((item.origin, normalise(item.text)), (item.text, (*item.path, unit), None))

    def work(session: Session) -> list[IssueView]:
        rows = {r.key: r for r in session.exec(select(RaisedIssue).where(RaisedIssue.cycle_id == cycle_id))}
        cycle = session.get(Cycle, cycle_id)
        assert cycle is not None
        now = utcnow()
        for (origin, _), (text_, path, acted_by) in found.items():
            key = _issue_key(cycle.organisation_id, cycle.year, occasion.key, origin, text_)
            row = rows.get(key)
            if row is None:
                row = RaisedIssue(
                    key=key, cycle_id=cycle_id, occasion_key=occasion.key, origin_unit=origin, text=text_, path=[]
                )
                rows[key] = row
            elif row.state == ACTED_ON:
                continue
            row.path = list(path)
            if acted_by is not None:
                _act(row, acted_by, "uppföljningsdialog", f"Åtgärdas av {acted_by} ({occasion.name}).", now)
            row.updated_at = now
            session.add(row)
        for row in rows.values():  # earlier occasions: acted on now, by a level on the way up
            if row.occasion_key == occasion.key or row.state != OPEN:
                continue
            for unit in row.path[1:]:
                if normalise(row.text) in acts.get(unit, set()):
                    _act(row, unit, "uppföljningsdialog", f"Åtgärdas av {unit} ({occasion.name}).", now)
                    session.add(row)
                    break
        session.flush()
        return [_view(r) for r in sorted(rows.values(), key=lambda r: r.id or 0)]

    return with_retry(work, url)


def _act(row: RaisedIssue, unit: str, by: str, action: str, now: Any) -> None:
    row.state, row.acted_by_unit, row.acted_by, row.action, row.acted_at = ACTED_ON, unit, by, action, now
    row.updated_at = now


def _view(r: RaisedIssue) -> IssueView:
    return IssueView(r.id or 0, r.text, r.origin_unit, tuple(r.path), r.state, r.acted_by_unit, r.occasion_key)


def act_on_issue(
    cfg: OrgConfig, issue_id: int, unit: str, action: str, *, actor: str, url: str | None = None
) -> IssueView:
    """A level records that it acts on an item raised to it: from now on it is no longer listed
    as open in the reports above. Audited."""
    if not action.strip():
        raise UserError(f"raised item {issue_id}: acting on it needs a written action")
    with session_scope(url) as session:
        row = session.get(RaisedIssue, issue_id)
        if row is None:
            raise UserError(f"raised item: no item with id {issue_id}")
        if row.state == ACTED_ON:
            raise UserError(f"raised item {issue_id}: already acted on by {row.acted_by_unit}; nothing was changed")
        if unit not in row.path[1:]:
            reached = ", ".join(row.path[1:]) or "none"
            raise UserError(f"raised item {issue_id}: {unit!r} is not a level it reached (reached: {reached})")
        _act(row, unit, actor, action.strip(), utcnow())
        session.add(row)
        audit(
            session,
            actor=actor,
            action="raised_item_acted_on",
            cycle_id=row.cycle_id,
            phase=PHASE,
            subject=row.key,
            reason=action.strip(),
            detail={"unit": unit, "text": row.text},
        )
        session.flush()
        return _view(row)


def issues_reaching(issues: list[IssueView], unit: str, occasion_key: str) -> list[IssueView]:
    """What a level's report lists: this occasion's items that reached it, and earlier items that
    reached it and are still open."""
    return [i for i in issues if unit in i.path[1:] and (i.occasion_key == occasion_key or i.state == OPEN)]


# ---------------------------------------------------------------------------------------------
# The report's content
# ---------------------------------------------------------------------------------------------


def _pct(f: Figures) -> float | None:
    p = f.deviation_percent
    return None if p is None else round(p, 1)


def _controls_for(cfg: OrgConfig, cyc: YearData, unit: str) -> list[tuple[str, Any]]:
    """(committee id, control) of the plans a level follows up: its own (a committee), those of
    the committees below it, or its committee's (an administration)."""
    committees = {c.id for c in cfg.committees()}
    if unit in committees:
        ids = [unit]
    elif cyc.committee_of.get(unit):
        ids = [cyc.committee_of[unit]]  # type: ignore[list-item]
    else:
        ids = [c.id for c in cyc.descendants(unit) if c.id in committees]
    return [(cid, ctl) for cid in ids for ctl in cfg.unit(cid).internal_control]


def carries_internal_control(cfg: OrgConfig, occasion: Occasion) -> bool:
    return occasion.kind in ("interim", "annual") and occasion.period_end.month in cfg.follow_up.internal_control_months


@dataclass
class _ReportData:
    ctx: dict[str, Any]
    tables: dict[str, TableData]
    sheets: list[SheetSpec]
    instructions: str


def _report_data(
    cfg: OrgConfig,
    cyc: YearData,
    agg: Aggregate,
    occasion: Occasion,
    unit: str,
    issues: list[IssueView],
    override_reason: str | None,
    below_levels: list[LevelReturn] | None = None,
) -> _ReportData:
    report: LevelReport = agg[unit]
    names = cyc.names
    threshold = agg.threshold_percent
    u = cfg.unit(unit)
    flagged = {d.category for d in report.deviations}
    cats = list(report.totals)
    total = report.total

    economy_rows = tuple(
        (
            c,
            report.totals[c].budget,
            report.totals[c].outcome,
            report.totals[c].forecast,
            report.totals[c].deviation,
            None if _pct(report.totals[c]) is None else f"{text.procent(_pct(report.totals[c]))}",
            "Ja" if c in flagged else "",
        )
        for c in cats
    )
    per_unit_rows = []
    for child in report.completeness.expected:
        child_totals = agg[child].totals if child in agg.reports else {}
        for c, f in child_totals.items():
            per_unit_rows.append((child, names[child], c, f.budget, f.outcome, f.forecast))
    reaching = issues_reaching(issues, unit, occasion.key)
    issue_rows = tuple(
        (i.text, names.get(i.origin, i.origin), " → ".join(i.path), _issue_status(i, unit, names), i.occasion_key)
        for i in reaching
    )
    goal_rows = tuple(
        (g.goal_id, g.title, g.counts.get("Grön", 0), g.counts.get("Gul", 0), g.counts.get("Röd", 0))
        for g in report.goals.values()
    )
    comments = tuple(
        (g.goal_id, names.get(c.unit, c.unit), c.assessment or "", c.comment)
        for g in report.goals.values()
        for c in g.comments
        if c.assessment in ("Gul", "Röd")
    )
    controls = _controls_for(cfg, cyc, unit) if carries_internal_control(cfg, occasion) else []

    tables: dict[str, TableData] = {
        "ekonomi": TableData(
            ("Post", "Budget helår", "Utfall hittills", "Prognos helår", "Avvikelse", "Avvikelse %", "Över gräns"),
            economy_rows + (("Summa", total.budget, total.outcome, total.forecast, total.deviation, None, ""),),
            widths=(3.4, 2.4, 2.4, 2.4, 2.2, 1.8, 1.4),
            numeric=(1, 2, 3, 4, 5),
        ),
        "per_enhet": TableData(
            ("Enhet", "Post", "Budget helår", "Utfall hittills", "Prognos helår"),
            tuple((r[1], r[2], r[3], r[4], r[5]) for r in per_unit_rows),
            widths=(4.6, 3.4, 2.6, 2.6, 2.6),
            numeric=(2, 3, 4),
        ),
        "mal": TableData(
            ("Mål-id", "Mål", "Grön", "Gul", "Röd"), goal_rows, widths=(2.0, 9.8, 1.4, 1.4, 1.4), numeric=(2, 3, 4)
        ),
        "malkommentarer": TableData(
            ("Mål-id", "Enhet", "Bedömning", "Kommentar"), comments, widths=(2.0, 4.0, 2.0, 8.0)
        ),
        "fragor": TableData(
            ("Fråga", "Väckt av", "Väg uppåt", "Status", "Tillfälle"), issue_rows, widths=(5.0, 2.6, 3.4, 3.4, 1.6)
        ),
        "intern_kontroll": TableData(
            ("Nämnd", "Kontrollområde", "Risk", "Riskvärde", "Kontrollmoment", "Frekvens"),
            tuple((cid, c.area, c.risk, c.probability * c.consequence, c.control, c.frequency) for cid, c in controls),
            widths=(1.6, 2.8, 4.0, 1.6, 4.0, 2.0),
            numeric=(3,),
        ),
    }
    levels = below_levels or []
    tables["nivaernas_kontroller"] = TableData(
        ("Nivå", "Risk", "Genomförd", "Iakttagelse", "Åtgärd"),
        tuple(
            (
                names.get(lr.unit, lr.unit),
                row.get("Risk", ""),
                row.get("Genomförd", ""),
                row.get("Iakttagelse", ""),
                row.get("Åtgärd", ""),
            )
            for lr in levels
            for row in (e.get("values", {}) for e in lr.sheets.get("Intern kontroll", []))
            if any(row.get(h) for h in ("Genomförd", "Iakttagelse", "Åtgärd"))
        ),
        widths=(3.0, 4.4, 1.8, 4.4, 3.8),
    )
    parent = names.get(u.parent or "", "")
    pct = total.deviation_percent
    ctx: dict[str, Any] = {
        "unit": cyc.unit_ctx(u),
        "occasion_name": one_line(occasion.name),
        "receiver": parent,
        "below": [names[c] for c in report.completeness.expected],
        "returned": [names[c] for c in report.completeness.returned],
        "missing": [names[c] for c in report.completeness.missing],
        "override_reason": one_line(override_reason or ""),
        "total": {
            "budget": total.budget,
            "outcome": total.outcome,
            "forecast": total.forecast,
            "deviation": total.deviation,
            "percent": None if pct is None else round(pct, 1),
        },
        "threshold": threshold,
        "deviations": [
            {
                "category": d.category,
                "budget": d.figures.budget,
                "forecast": d.figures.forecast,
                "amount": d.amount,
                "percent": round(d.percent, 1),
            }
            for d in report.deviations
        ],
        "goal_comments": bool(comments),
        "issues": bool(issue_rows),
        "internal_control": bool(controls),
        "plan_committees": list(dict.fromkeys(names[cid] for cid, _ in controls)),
        "high_risk": HIGH_RISK,
        "own_section": 6 if controls else 5,
        "level_returns": [
            {
                "name": names.get(lr.unit, lr.unit),
                # One line each, and no "**": the markup is line-based and bold is marked by "**".
                "answers": [
                    (label, one_line(lr.fields[field]).replace("**", ""))
                    for field, label in LEVEL_ANSWER_LABELS
                    if lr.fields.get(field)
                ],
            }
            for lr in levels
        ],
        "level_controls": bool(tables["nivaernas_kontroller"].rows),
    }
    sheets = _sheets(threshold, economy_rows, per_unit_rows, goal_rows, issue_rows, controls)
    instructions = (
        f"# Nivårapport\n{one_line(occasion.name)} för {names[unit]}: summerat ur underlaget från nivån under.\n"
        "- Ekonomi: summan per post (tkr). Avvikelse = budget − prognos; över gränsvärdet markeras rött.\n"
        "- Per enhet: varje enhets siffror; deras summa per post är bladet Ekonomi.\n"
        "- Fyll bara i de gula cellerna: nivåns kommentar och bedömning"
        + (", och resultatet av den interna kontrollen.\n" if controls else ".\n")
    )
    return _ReportData(ctx, tables, sheets, instructions)


def _issue_status(i: IssueView, unit: str, names: Mapping[str, str]) -> str:
    if i.state == ACTED_ON and i.acted_by_unit == unit:
        return f"Åtgärdas av {names.get(unit, unit)}"
    if i.state == ACTED_ON:
        return f"Lyft vidare; åtgärdas av {names.get(i.acted_by_unit or '', i.acted_by_unit)}"
    if i.path and i.path[-1] == unit:
        return "Öppen: ingen nivå har åtgärdat frågan"
    return "Öppen: lyfts vidare till nästa nivå"


def _c(header: str, kind: str = "text", width: float = 14, **kw: Any) -> ColumnSpec:
    return ColumnSpec(header=header, kind=kind, width=width, **kw)  # type: ignore[arg-type]


def _sheets(
    threshold: float,
    economy_rows: tuple[tuple[Any, ...], ...],
    per_unit_rows: list[tuple[Any, ...]],
    goal_rows: tuple[tuple[Any, ...], ...],
    issue_rows: tuple[tuple[Any, ...], ...],
    controls: list[tuple[str, Any]],
) -> list[SheetSpec]:
    economy = SheetSpec(
        name="Ekonomi",
        columns=(
            *follow_up_figure_columns(threshold / 100, editable=False),
            _c("Över gränsvärdet", width=12),
            _c("Nivåns kommentar", width=44, editable=True),
        ),
        rows=tuple((r[0], r[1], r[2], r[3], None, None, r[6], None) for r in economy_rows),
        totals=True,
    )
    per_unit = SheetSpec(
        name="Per enhet",
        columns=(
            _c("Enhet-id", width=12),
            _c("Enhet", width=30),
            _c("Post", width=24),
            _c("Budget helår", "sek", 15),
            _c("Utfall hittills", "sek", 15),
            _c("Prognos helår", "sek", 15),
        ),
        rows=tuple(per_unit_rows),
        totals=True,
    )
    goals = SheetSpec(
        name="Mål",
        columns=(
            _c("Mål-id", width=12),
            _c("Mål", width=48),
            _c("Grön", "int", 8, total=True),
            _c("Gul", "int", 8, total=True),
            _c("Röd", "int", 8, total=True),
            _c("Nivåns bedömning", "choice", 14, choices=TRAFFIC_LIGHTS, editable=True, highlight="traffic_light"),
            _c("Kommentar", width=44, editable=True),
        ),
        rows=tuple((*r, None, None) for r in goal_rows),
        totals=True,
    )
    issues = SheetSpec(
        name="Lyfta frågor",
        columns=(
            _c("Fråga", width=44),
            _c("Väckt av", width=26),
            _c("Väg uppåt", width=30),
            _c("Status", width=36),
            _c("Tillfälle", width=20),
        ),
        rows=issue_rows,
    )
    sheets = [economy, per_unit, goals, issues]
    if controls:
        sheets.append(
            SheetSpec(
                name="Intern kontroll",
                columns=(
                    _c("Nämnd", width=10),
                    _c("Kontrollområde", width=22),
                    _c("Risk", width=34),
                    _c("Riskvärde", "int", 10, highlight="risk"),
                    _c("Kontrollmoment", width=30),
                    _c("Frekvens", width=14),
                    _c("Ansvarig", width=20),
                    _c("Genomförd", "choice", 11, choices=YES_NO, editable=True),
                    _c("Iakttagelse", width=36, editable=True),
                    _c("Åtgärd", width=30, editable=True),
                ),
                rows=tuple(
                    (
                        cid,
                        c.area,
                        c.risk,
                        c.probability * c.consequence,
                        c.control,
                        c.frequency,
                        c.owner,
                        None,
                        None,
                        None,
                    )
                    for cid, c in controls
                ),
            )
        )
    return sheets


def _render_job(
    cfg: OrgConfig, plan_year: int, occasion: Occasion, out_root: Path, job: tuple[DocRequest, _ReportData]
) -> RenderedDoc:
    """One level report file; runs in a render worker, so it takes picklable arguments."""
    req, data = job
    return _render(cfg, year_data(cfg, plan_year), occasion, req, data, out_root)


def _render(
    cfg: OrgConfig, cyc: YearData, occasion: Occasion, req: DocRequest, data: _ReportData, out_root: Path
) -> RenderedDoc:
    unit = cfg.unit(req.unit_id)
    what = "Nivårapport" if req.kind == REPORT else "Nivårapport, siffror"
    fmt = "docx" if req.kind == REPORT else "xlsx"
    meta = DocMeta(
        organisation=cfg.organisation.name,
        plan_year=cyc.plan_year,
        horizon_end=cyc.horizon_end,
        phase_id=PHASE,
        phase_name=cfg.phase(PHASE).name,
        kind=req.kind,
        title=f"{what} – {occasion.name} – {cyc.names[unit.id]}",
        unit_id=unit.id,
        recipient=cyc.names.get(unit.parent or "", cyc.names[unit.id]),
        version=req.version,
        doc_key=doc_key(cfg, cyc.plan_year, req),
        created=today_stockholm(),
    )
    root = Path(out_root)
    path = safe_path(root, str(cyc.plan_year), PHASE, file_name(req, fmt))  # type: ignore[arg-type]
    if fmt == "docx":
        markup = text.render("nivarapport.txt.j2", {"org": cyc.org, **data.ctx})
        digest = content_hash(
            {"renderer": RENDERER_VERSION, "meta": meta.hashable(), "markup": markup, "tables": data.tables}
        )
        word.write_docx(path, meta, markup, data.tables)
        spec = spec_of(meta, digest, markup=markup, tables=data.tables)
    else:
        digest = content_hash(
            {
                "renderer": RENDERER_VERSION,
                "meta": meta.hashable(),
                "sheets": data.sheets,
                "instructions": data.instructions,
            }
        )
        excel.write_xlsx(path, meta, data.sheets, data.instructions)
        spec = spec_of(meta, digest, sheets=tuple(data.sheets), instructions=data.instructions)
    return RenderedDoc(
        kind=req.kind,
        phase_id=PHASE,
        unit_id=unit.id,
        version=req.version,
        relpath=path.relative_to(root.resolve()).as_posix(),
        format=fmt,  # type: ignore[arg-type]
        content_hash=digest,
        doc_key=meta.doc_key,
        title=meta.title,
        spec=spec,
    )


# ---------------------------------------------------------------------------------------------
# Conclusions: from the top report into the next cycle's planning material
# ---------------------------------------------------------------------------------------------


def top_conclusions(
    cfg: OrgConfig,
    cyc: YearData,
    agg: Aggregate,
    occasion: Occasion,
    issues: list[IssueView],
    returns: Mapping[tuple[str, str], dict[str, Any]],
) -> list[tuple[str, str]]:
    """(topic, text) in Swedish: economy, deviations, goals not reached, items nobody acted on,
    high internal-control risks, and the executive board's lessons."""
    names = cyc.names
    root = next(u.id for u in cfg.units if u.parent is None)
    report = agg[root]
    out: list[tuple[str, str]] = []
    t = report.total
    if t.forecast is not None:
        pct = t.deviation_percent
        out.append(
            (
                "Ekonomi",
                f"Prognosen för helåret är {text.tkr(t.forecast)} mot en budget på {text.tkr(t.budget)}: "
                f"en avvikelse på {text.tkr(t.deviation)}" + (f" ({text.procent(pct)})." if pct is not None else "."),
            )
        )
    for d in report.deviations:
        out.append(
            (
                "Ekonomi",
                f"{d.category}: avvikelse {text.tkr(d.amount)} ({text.procent(d.percent)}), över gränsvärdet "
                f"{text.procent(agg.threshold_percent)}; analyseras i planeringen.",
            )
        )
    for g in report.goals.values():
        red, yellow = g.counts.get("Röd", 0), g.counts.get("Gul", 0)
        if red or yellow:
            out.append(
                (
                    "Mål",
                    f"{g.goal_id} {one_line(g.title)}: {red} röda och {yellow} gula av "
                    f"{sum(g.counts.values())} bedömningar.",
                )
            )
    for i in issues:
        if i.occasion_key == occasion.key and i.state == OPEN:
            out.append(
                ("Lyfta frågor", f"Fråga från {names.get(i.origin, i.origin)} som ingen nivå har åtgärdat: {i.text}")
            )
    if carries_internal_control(cfg, occasion):
        high = [(cid, c) for cid, c in _controls_for(cfg, cyc, root) if c.probability * c.consequence >= HIGH_RISK]
        for cid, c in high:
            out.append(
                (
                    "Intern kontroll",
                    f"{names[cid]}: {c.area} – {c.risk} (riskvärde {c.probability * c.consequence}); "
                    f"kontroll: {c.control}.",
                )
            )
    board = cfg.organisation.roles.executive_board
    story = returns.get((board, "uppfoljning_berattelse")) or {}
    for line in (story.get("fields", {}).get("lardomar") or "").splitlines():
        if line.strip():
            out.append(("Lärdomar", f"{names[board]}: {line.strip()}"))
    return out


def _store_conclusions(session: Session, cycle_id: int, occasion: Occasion, items: list[tuple[str, str]]) -> None:
    """Replace the occasion's conclusions: the top report was (re)written in this pass."""
    for old in session.exec(
        select(Conclusion).where(Conclusion.cycle_id == cycle_id, Conclusion.occasion_key == occasion.key)
    ):
        session.delete(old)
    session.flush()
    for n, (topic, text_) in enumerate(items, start=1):
        session.add(
            Conclusion(
                cycle_id=cycle_id,
                key=f"{occasion.key}/{n}",
                occasion_key=occasion.key,
                position=n,
                topic=topic,
                text=text_,
            )
        )


def conclusions_for_next_cycle(cfg: OrgConfig, plan_year: int, url: str | None = None) -> dict[str, Any] | None:
    """The conclusions the planning material of `plan_year` lists: the annual report of the year
    before, or its latest interim report while the annual report is not written yet."""
    previous = plan_year - 1
    with session_scope(url) as session:
        cycle = session.exec(
            select(Cycle).where(Cycle.organisation_id == cfg.organisation.id, Cycle.year == previous)
        ).first()
        if cycle is None:
            return None
        rows = list(session.exec(select(Conclusion).where(Conclusion.cycle_id == cycle.id)))
    if not rows:
        return None
    by_occasion = {o.key: o for o in occasions(cfg, previous)}
    keys = sorted(
        {r.occasion_key for r in rows if r.occasion_key in by_occasion}, key=lambda k: by_occasion[k].period_end
    )
    if not keys:
        return None
    chosen = by_occasion[keys[-1]]
    items = sorted((r for r in rows if r.occasion_key == chosen.key), key=lambda r: r.position)
    return {
        "source": chosen.name,
        "annual": chosen.kind == "annual",
        "items": [{"topic": r.topic, "text": r.text} for r in items],
    }


CONCLUSIONS_EXTRA = "slutsatser"


def with_conclusions(cfg: OrgConfig, plan_year: int, handoffs: list[Handoff], url: str | None = None) -> list[Handoff]:
    """The preparation handoffs with last year's conclusions carried to the planeringsunderlag
    builder (documents are built from their request, not from the database)."""
    found = conclusions_for_next_cycle(cfg, plan_year, url)
    if found is None:
        return handoffs
    payload = json.dumps(found, ensure_ascii=False, sort_keys=True)
    out = []
    for h in handoffs:
        docs = tuple(
            DocRequest(d.kind, d.phase_id, d.unit_id, d.version, (*d.extra, (CONCLUSIONS_EXTRA, payload)))
            if d.kind == "planeringsunderlag"
            else d
            for d in h.documents
        )
        out.append(Handoff(h.topic, h.direction, h.sender, h.receiver, docs, h.purpose, h.deadline))
    return out


def list_issues(
    cfg: OrgConfig, year: int, *, unit: str | None = None, open_only: bool = True, url: str | None = None
) -> list[IssueView]:
    """The items raised in a plan year's follow-up, oldest first; with `unit`, those that reached it."""
    from tasks.cycle import get_cycle

    with session_scope(url) as session:
        cycle = get_cycle(session, cfg, year)
        if cycle is None:
            raise UserError(f"--year: no cycle for {year}")
        q = select(RaisedIssue).where(RaisedIssue.cycle_id == cycle.id)
        if open_only:
            q = q.where(RaisedIssue.state != ACTED_ON)
        views = [_view(r) for r in session.exec(q.order_by(RaisedIssue.id))]
    return [v for v in views if unit is None or unit in v.path]
