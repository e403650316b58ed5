"""The deadline watch: reminders and escalations for milestones and receipts, queued in the outbox.

Once a day (flows/deadline_watch.py) and on demand (`styrkedja watch`), for every active cycle —
cycles overlap: plan year Y is active from its first date (preparation, October Y-2) to its last
(the end of its follow-up) — the watch looks at what is not finished:

- milestones not done (`done_at` unset, and their phase has not completed on or after their date),
  except those whose date had passed before the cycle was set up in Styrkedja;
- receipts that count (not superseded) and are not agreed.

Policy, in calendar days against the deadline D (Europe/Stockholm):

- a reminder at each of `deadlines.reminder_offsets_days` before D (14, 7 and 1 by default), one
  on D, and one every day after D, to the party who must act: a milestone's owner unit (its
  contacts); a receipt's receiving unit (its signatories by e-mail, its other channels as a note);
  for a disputed receipt the sender, who must issue a new version;
- an escalation to the superior level (the parent unit's contacts; the finance department for a
  unit without a parent) `deadlines.escalate_after_days` days after D, then once a week
  (ESCALATE_EVERY_DAYS) for as long as the item is overdue.

Each (item, stage) is queued exactly once however often the watch runs: every notification has a
deterministic key (item key / stage / channel / address) and is inserted with ON CONFLICT DO
NOTHING, so a re-run or a concurrent run creates nothing twice. A run that was missed catches up
with the latest stage only (a watch down on D-7 sends the 7-day reminder on D-6, never two
reminders at once); a receipt issued after a reminder point skips that point, because the message
that delivered it named the deadline.

Set-based: two reads per run for the items (milestones, receipts), one for the phase runs, chunked
`IN` reads for the keys already queued, and batched inserts; nothing is queried per item. Only the
notifications that are new are rendered. No Prefect here: the flow wraps it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlmodel import Session

from config.schema import OrgConfig
from models.db import get_engine, session_scope, with_retry
from models.tables import Cycle, Document, Milestone, Notification, NotificationState, Receipt, ReceiptState, utcnow
from tasks.calendar import today_stockholm
from tasks.followup_calendar import occasions
from tasks.message_skeletons import Skeletons
from tasks.messages import phase_links
from tasks.notify import render_message
from tasks.portal_tokens import LINK_PLACEHOLDER, portal_url
from tasks.progress import completion_days, milestone_done
from tasks.receipts import occasion_of, owes_next_step, waiting_for
from tasks.wheel import resolve_wheel

__all__ = [
    "ESCALATE_EVERY_DAYS",
    "DueItem",
    "Stage",
    "WatchReport",
    "active_cycles",
    "cycle_window",
    "run_watch",
    "stages_for",
]

log = logging.getLogger(__name__)

ESCALATE_EVERY_DAYS = 7
# Receipts in these states still wait for someone: the receiver (issued, acknowledged) or the sender (disputed).
OPEN_RECEIPT_STATES = (ReceiptState.ISSUED, ReceiptState.ACKNOWLEDGED, ReceiptState.DISPUTED)
# Bind parameters per IN (...) and rows per INSERT: under SQLite's and PostgreSQL's limits.
KEY_CHUNK = 900
INSERT_CHUNK = 2000
MAX_KEY = 300  # Notification.key
MAX_SUBJECT = 300  # Notification.subject
STOCKHOLM = ZoneInfo("Europe/Stockholm")


# -- stages ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stage:
    """One reminder or escalation of one item: `tag` is part of the notification key."""

    kind: str  # "reminder" | "escalation"
    tag: str  # remind-14d, remind-due, remind-overdue-3d, escalate-3d, ...
    days: int  # days left on the day of the watch (negative: overdue)


def stages_for(
    days: int,
    offsets: Sequence[int],
    escalate_after: int,
    *,
    due: date | None = None,
    created: date | None = None,
) -> list[Stage]:
    """The stages an item is at, `days` before its deadline (negative: overdue), on the watch's day.

    Before the deadline it is the latest reminder point reached (catch-up after a missed run), left
    out when the item was created after that point. Overdue: the day's reminder, and the latest
    escalation point once `escalate_after` days have passed (then every ESCALATE_EVERY_DAYS).
    """
    if days > 0:
        reached = [o for o in offsets if o >= days and o > 0]
        if not reached:
            return []
        point = min(reached)
        if created is not None and due is not None and created > due - timedelta(days=point):
            return []
        return [Stage("reminder", f"remind-{point}d", days)]
    if days == 0:
        return [Stage("reminder", "remind-due", 0)]
    late = -days
    out = [Stage("reminder", f"remind-overdue-{late}d", days)]
    if late >= escalate_after:
        point = escalate_after + (late - escalate_after) // ESCALATE_EVERY_DAYS * ESCALATE_EVERY_DAYS
        out.append(Stage("escalation", f"escalate-{point}d", days))
    return out


# -- cycles ---------------------------------------------------------------------------------------


def cycle_window(cfg: OrgConfig, year: int) -> tuple[date, date]:
    """From the first date of plan year `year` (preparation starts) to its last (follow-up ends)."""
    wheel = resolve_wheel(cfg, year)
    days = list(wheel.dates.values()) + [o.deadline for o in occasions(cfg, year)]
    return min(days), max(days)


@dataclass(frozen=True)
class ActiveCycle:
    id: int
    year: int
    start: date
    end: date
    since: date  # the day the cycle was set up in Styrkedja


def active_cycles(session: Session, cfg: OrgConfig, as_of: date) -> list[ActiveCycle]:
    """The organisation's cycles in the database whose window holds `as_of` (usually two or three)."""
    rows = session.exec(  # type: ignore[call-overload]
        select(Cycle.id, Cycle.year, Cycle.created_at)
        .where(Cycle.organisation_id == cfg.organisation.id)
        .order_by(Cycle.year)
    ).all()
    out = []
    for cycle_id, year, created_at in rows:
        start, end = cycle_window(cfg, year)
        if start <= as_of <= end:
            out.append(ActiveCycle(cycle_id, year, start, end, _local_day(created_at) or start))
    return out


# -- items ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class DueItem:
    """A milestone or receipt that is due soon or overdue on the watch's day (not frozen: a frozen
    dataclass's __init__ costs a third of the read at 100,000 items)."""

    kind: str  # "milestone" | "receipt"
    cycle_id: int
    year: int
    phase: str
    key: str  # the milestone key or the receipt key
    name: str  # the milestone's name or the document's title
    due: date
    days: int  # due - as_of
    actor: str  # the unit that must act
    receipt_id: int | None = None
    receiver: str | None = None  # receipts: the receiving unit
    version: int = 1
    disputed: bool = False
    created: date | None = None
    org: str = ""
    occasion: str = ""  # receipts of a follow-up occasion: the occasion (its run is the link)
    sender: str | None = None  # receipts: the sending unit (a fill-in handoff's author)
    step: str = ""  # receipts: what is awaited (tasks.receipts.waiting_for): retur, kvittens, ny version

    @property
    def base_key(self) -> str:
        """The prefix of its notification keys: a receipt's own key (it names organisation and
        year), or organisation/year/milestone/<key>; a fill-in handoff's return has its own series
        of reminders (to the author) before the receiver's (to sign)."""
        if self.kind != "receipt":
            return f"{self.org}/{self.year}/milestone/{self.key}"
        return f"{self.key}/retur" if self.step == "retur" else self.key


def _local_day(at: datetime | None) -> date | None:
    if at is None:
        return None
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return aware.astimezone(STOCKHOLM).date()


def _collect(session: Session, cfg: OrgConfig, cycles: list[ActiveCycle], as_of: date) -> list[DueItem]:
    """Milestones and receipts due by as_of + the earliest reminder, or overdue: two reads in all."""
    if not cycles:
        return []
    ids = [c.id for c in cycles]
    year = {c.id: c.year for c in cycles}
    since = {c.id: c.since for c in cycles}
    horizon = as_of + timedelta(days=max((o for o in cfg.deadlines.reminder_offsets_days if o > 0), default=0))
    org = cfg.organisation.id
    completed = completion_days(session, ids)
    items: list[DueItem] = []

    ms = session.exec(  # type: ignore[call-overload]
        select(
            Milestone.cycle_id, Milestone.phase, Milestone.key, Milestone.name, Milestone.owner_unit, Milestone.due
        ).where(Milestone.cycle_id.in_(ids), Milestone.done_at.is_(None), Milestone.due <= horizon)  # type: ignore[attr-defined, union-attr]
    ).all()
    for cycle_id, phase, key, name, owner, due in ms:
        # A date that had passed before the cycle was set up here was kept (or not) outside the
        # system: the progression table shows it, the watch does not chase it.
        if due < since[cycle_id] or milestone_done(None, due, completed.get((cycle_id, phase))):
            continue
        days = (due - as_of).days
        items.append(DueItem("milestone", cycle_id, year[cycle_id], phase, key, name, due, days, owner, org=org))

    rs = session.exec(  # type: ignore[call-overload]
        select(
            Receipt.id,
            Receipt.cycle_id,
            Receipt.phase,
            Receipt.key,
            Receipt.topic,
            Receipt.sender_unit,
            Receipt.receiver_unit,
            Receipt.mode,
            Receipt.deadline,
            Receipt.state,
            Receipt.version,
            Receipt.created_at,
            Document.title,
        )
        .outerjoin(Document, Document.id == Receipt.document_id)  # type: ignore[arg-type]
        .where(
            Receipt.cycle_id.in_(ids),  # type: ignore[attr-defined]
            Receipt.state.in_(OPEN_RECEIPT_STATES),  # type: ignore[attr-defined]
            Receipt.deadline <= horizon,
        )
    ).all()
    for rid, cycle_id, phase, key, topic, sender, receiver, mode, due, state, version, created_at, title in rs:
        disputed = state == ReceiptState.DISPUTED
        days = (due - as_of).days
        step = waiting_for(mode, state)
        items.append(
            DueItem(
                "receipt",
                cycle_id,
                year[cycle_id],
                phase,
                key,
                title or topic,
                due,
                days,
                owes_next_step(mode, state, sender, receiver),
                receipt_id=rid,
                receiver=receiver,
                version=version,
                disputed=disputed,
                # Only a reminder before the deadline looks at it: skip the conversion otherwise.
                created=_local_day(created_at) if days > 0 else None,
                occasion=occasion_of(topic),
                sender=sender,
                step=step,
            )
        )
    return items


# -- recipients -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    unit: str
    channel: str
    address: str


class _Recipients:
    """Who hears about what, from the configuration; computed once per unit and run."""

    def __init__(self, cfg: OrgConfig) -> None:
        self.cfg = cfg
        self.units = {u.id: u for u in cfg.units}
        self.kinds = {c.id: c.kind for c in cfg.channels}
        self._cache: dict[tuple[str, str], list[Recipient]] = {}

    def contacts(self, unit_id: str) -> list[Recipient]:
        unit = self.units.get(unit_id)
        if unit is None:
            return []
        return _dedupe(Recipient(unit.id, c.channel, c.address) for c in unit.contacts)

    def signatories(self, unit_id: str) -> list[Recipient]:
        """The unit's signatories by e-mail (the unit's first e-mail channel), plus its other channels."""
        unit = self.units.get(unit_id)
        if unit is None:
            return []
        email = [c.channel for c in unit.contacts if self.kinds.get(c.channel) == "email"]
        if not (email and unit.signatories):
            return self.contacts(unit_id)
        out = [Recipient(unit.id, email[0], s.email) for s in unit.signatories]
        out += [Recipient(unit.id, c.channel, c.address) for c in unit.contacts if self.kinds.get(c.channel) != "email"]
        return _dedupe(out)

    def superior(self, unit_id: str) -> str | None:
        """The parent unit; the finance department (the process owner) for a unit without one."""
        unit = self.units.get(unit_id)
        if unit is None:
            return None
        up = unit.parent or self.cfg.organisation.roles.finance
        return up if up != unit_id else None

    def for_stage(self, item: DueItem, stage: Stage) -> tuple[str | None, list[Recipient]]:
        """(the unit addressed, its recipients) for one stage of one item."""
        target = self.superior(item.actor) if stage.kind == "escalation" else item.actor
        if target is None:
            return None, []
        # The receiver's signatories are reminded to sign; an author (or a disputed receipt's
        # sender) is reminded through the unit's contacts, who fill in and hand back.
        signs = item.kind == "receipt" and item.step == "kvittens"
        how = "signatories" if stage.kind == "reminder" and signs else "contacts"
        cached = self._cache.get((target, how))
        if cached is None:
            cached = self.signatories(target) if how == "signatories" else self.contacts(target)
            self._cache[(target, how)] = cached
        return target, cached

    def name(self, unit_id: str) -> str:
        unit = self.units.get(unit_id)
        return unit.name if unit is not None else unit_id


def _dedupe(items: Iterable[Recipient]) -> list[Recipient]:
    return list(dict.fromkeys(items))


def notification_key(base: str, stage: Stage, recipient: Recipient) -> str:
    """Deterministic and unique per item, stage and recipient; hashed at the end if too long."""
    key = f"{base}/{stage.tag}/{recipient.channel}/{recipient.address}"
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return f"{key[: MAX_KEY - 26]}/~{digest}"


# -- messages -------------------------------------------------------------------------------------


def _message(
    cfg: OrgConfig,
    names: _Recipients,
    item: DueItem,
    stage: Stage,
    target: str,
    link: str,
    skeletons: Skeletons | None = None,
) -> tuple[str, str]:
    render = skeletons.render if skeletons is not None else render_message
    common: dict[str, Any] = {
        "organisation": cfg.organisation.name,
        "title": item.name,
        "deadline": item.due,
        "link": link,
    }
    if item.kind == "milestone":
        try:
            phase = cfg.phase(item.phase).name
        except KeyError:
            phase = item.phase
        common |= {"phase": phase, "year": item.year}
        if stage.kind == "reminder":
            return render(
                "milestone_reminder",
                common | {"unit": names.name(target), "days": stage.days, "milestone_key": item.key},
            )
        return render(
            "milestone_escalation",
            common | {"unit": names.name(target), "overdue_unit": names.name(item.actor), "days_overdue": -stage.days},
        )
    common["receipt_id"] = item.receipt_id
    if item.disputed:
        receiver = names.name(item.receiver or "")
        if stage.kind == "reminder":
            return render(
                "dispute_reminder",
                common
                | {"unit": names.name(target), "receiver": receiver, "days": stage.days, "version": item.version},
            )
        return render(
            "dispute_escalation",
            common
            | {
                "unit": names.name(target),
                "overdue_unit": names.name(item.actor),
                "receiver": receiver,
                "days_overdue": -stage.days,
            },
        )
    if item.step == "retur":
        receiver = names.name(item.receiver or "")
        if stage.kind == "reminder":
            return render(
                "return_reminder", common | {"unit": names.name(target), "receiver": receiver, "days": stage.days}
            )
        return render(
            "return_escalation",
            common
            | {
                "unit": names.name(target),
                "overdue_unit": names.name(item.actor),
                "receiver": receiver,
                "days_overdue": -stage.days,
            },
        )
    if stage.kind == "reminder":
        return render("reminder", common | {"unit": names.name(target), "days": stage.days})
    return render(
        "escalation",
        common
        | {
            "unit": names.name(target),
            "overdue_unit": names.name(item.actor),
            "sender": names.name(item.sender or ""),
            "days_overdue": -stage.days,
        },
    )


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class WatchReport:
    """What one watch did. `reminders`/`escalations`: notifications queued by this run (one per
    item and stage, however many recipients); `already_queued`: stages found in the outbox from an
    earlier or a concurrent run."""

    as_of: date
    cycles: list[tuple[int, int]] = field(default_factory=list)  # (cycle id, plan year)
    milestones_due: int = 0
    receipts_due: int = 0
    reminders: int = 0
    escalations: int = 0
    already_queued: int = 0
    notifications: int = 0  # rows added to the outbox (one per recipient)
    urgent: dict[int, list[DueItem]] = field(default_factory=dict)  # per cycle id, most urgent first

    @property
    def queued(self) -> int:
        return self.reminders + self.escalations


@dataclass(slots=True)
class _Planned:
    item: DueItem
    stage: Stage
    target: str
    recipients: list[Recipient]
    first_key: str  # the first recipient's key: stands for the stage in existence checks


def run_watch(cfg: OrgConfig, as_of: date | None = None, url: str | None = None) -> WatchReport:
    """Queue every reminder and escalation due on `as_of` (default: today in Stockholm) that is not
    in the outbox yet. Safe to run any number of times, also concurrently. Sends nothing: the outbox
    is delivered by tasks.notify.deliver_outbox."""
    day = as_of or today_stockholm()
    report = WatchReport(as_of=day)
    offsets = tuple(cfg.deadlines.reminder_offsets_days)
    escalate_after = cfg.deadlines.escalate_after_days
    names = _Recipients(cfg)

    # 1. Read: the active cycles, what is due, the links, and which stages are already queued.
    with session_scope(url) as session:
        cycles = active_cycles(session, cfg, day)
        items = _collect(session, cfg, cycles, day)
        links = phase_links(session, cfg, [c.id for c in cycles])
        planned: list[_Planned] = []
        for item in items:
            base = item.base_key
            for stage in stages_for(item.days, offsets, escalate_after, due=item.due, created=item.created):
                target, recipients = names.for_stage(item, stage)
                if target is not None and recipients:
                    planned.append(
                        _Planned(item, stage, target, recipients, notification_key(base, stage, recipients[0]))
                    )
        # One key per (item, stage) stands for all its recipients: a run inserts them together.
        existing = _existing_keys(session, [p.first_key for p in planned])
    report.cycles = [(c.id, c.year) for c in cycles]
    report.milestones_due = sum(1 for i in items if i.kind == "milestone")
    report.receipts_due = len(items) - report.milestones_due
    report.urgent = _urgent(items)

    # 2. Render only what is new, outside any transaction (an SQLite writer holds the lock).
    fresh = [p for p in planned if p.first_key not in existing]
    report.already_queued = len(planned) - len(fresh)
    fallback_link = cfg.organisation.ui_url.rstrip("/") + "/runs"
    rows: list[tuple[Any, ...]] = []
    now = utcnow()
    skeletons = Skeletons()  # each template rendered once per kind, filled in per item
    for p in fresh:
        link = links.get((p.item.cycle_id, p.item.phase, p.item.occasion)) or links.get(
            (p.item.cycle_id, p.item.phase, ""), fallback_link
        )
        if p.item.receipt_id is not None:
            # A receipt's reminder opens its page in the portal: the link is made per recipient at
            # send time (tasks.notify); the row keeps the page without a token.
            subject, body = _message(cfg, names, p.item, p.stage, p.target, LINK_PLACEHOLDER, skeletons)
            link = f"{portal_url()}/kvittens/{p.item.receipt_id}"
        else:
            subject, body = _message(cfg, names, p.item, p.stage, p.target, link, skeletons)
        subject = " ".join(subject.split())[:MAX_SUBJECT]
        base = p.item.base_key
        for r in p.recipients:
            key = notification_key(base, p.stage, r)
            rows.append((key, p.item.cycle_id, p.item.receipt_id, r.unit, r.channel, r.address, subject, body, link))

    # 3. Write: insert, skipping keys another run inserted meanwhile; count what this run added.
    if rows:
        # In key order: two concurrent runs then take the unique-index locks in the same order and
        # wait for each other instead of deadlocking (PostgreSQL).
        rows.sort(key=lambda row: row[0])
        added = _insert_new(rows, now, url)
        report.notifications = added
        if added != len(rows):
            # Lost a race with a concurrent run for some rows: ask the outbox which stages are ours.
            # (Rare; the rows themselves are right either way, this only corrects the counts.)
            with session_scope(url) as session:
                ours = _existing_keys(session, [p.first_key for p in fresh], created_at=now)
            report.already_queued += sum(1 for p in fresh if p.first_key not in ours)
            fresh = [p for p in fresh if p.first_key in ours]
    report.reminders = sum(1 for p in fresh if p.stage.kind == "reminder")
    report.escalations = len(fresh) - report.reminders
    log.info(
        "deadline watch %s: %d cycles, %d milestones and %d receipts due, %d reminders and %d escalations queued",
        day,
        len(cycles),
        report.milestones_due,
        report.receipts_due,
        report.reminders,
        report.escalations,
    )
    return report


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _existing_keys(session: Session, keys: list[str], created_at: datetime | None = None) -> set[str]:
    """Which of `keys` are in the outbox (with `created_at`: queued at that instant, by that run).

    One statement for all keys where the backend takes a list as one parameter (PostgreSQL: an
    array; SQLite: a JSON array read with json_each), else one per chunk; never one per key.
    """
    unique = sorted(set(keys))
    if not unique:
        return set()
    dialect = session.get_bind().dialect.name
    if created_at is None and dialect == "postgresql":
        query = text("SELECT key FROM notification WHERE key = ANY(:keys)")
        return set(session.exec(query, params={"keys": unique}).scalars())  # type: ignore[call-overload]
    if created_at is None and dialect == "sqlite":
        query = text("SELECT key FROM notification WHERE key IN (SELECT value FROM json_each(:keys))")
        return set(session.exec(query, params={"keys": json.dumps(unique)}).scalars())  # type: ignore[call-overload]
    found: set[str] = set()
    base = select(Notification.key)
    if created_at is not None:
        base = base.where(Notification.created_at == created_at)
    for chunk in _chunks(unique, KEY_CHUNK):
        found.update(session.exec(base.where(Notification.key.in_(chunk))).scalars())  # type: ignore[attr-defined, call-overload]
    return found


_INSERT_COLUMNS = (
    "key", "cycle_id", "receipt_id", "recipient_unit", "channel_id", "address", "subject", "body", "link",
    "attachment", "state", "attempts", "last_error", "sent_at", "next_attempt_at", "created_at",
)  # fmt: skip


def _insert_new(rows: list[tuple[Any, ...]], now: datetime, url: str | None) -> int:
    """INSERT ... ON CONFLICT (key) DO NOTHING, batched through the driver, in one transaction;
    returns how many rows were added.

    The driver is used directly because SQLAlchemy's per-row parameter processing costs more than
    the insert itself at this volume; the only typed values (the two timestamps, equal for every
    row) go through the column type's own bind processor once, so they are stored exactly as the
    ORM stores them.
    """
    engine = get_engine(url)
    dialect = engine.dialect
    column = Notification.__table__.c.created_at  # type: ignore[attr-defined]
    process = column.type.bind_processor(dialect)
    stamp = process(now) if process is not None else now
    fixed = (None, NotificationState.PENDING.value, 0, None, None, stamp, stamp)
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO notification ({', '.join(_INSERT_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(_INSERT_COLUMNS))}) ON CONFLICT (key) DO NOTHING"
    )

    def work(session: Session) -> int:
        connection = session.connection()
        added = 0
        for chunk in _chunks(rows, INSERT_CHUNK):
            result = connection.exec_driver_sql(sql, [row + fixed for row in chunk])
            added += max(result.rowcount, 0)
        return added

    return with_retry(work, url)


def _urgent(items: list[DueItem]) -> dict[int, list[DueItem]]:
    """Per cycle: overdue first (the longest overdue first), then by deadline."""
    out: dict[int, list[DueItem]] = {}
    for item in sorted(items, key=lambda i: (i.days, i.kind, i.key)):
        out.setdefault(item.cycle_id, []).append(item)
    return out
