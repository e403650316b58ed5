"""SQLModel tables: the application database is the source of truth for the cycle.

Every row a phase creates has a deterministic `key` with a unique constraint, so that a re-run,
a retry, a resume or a crash in the middle creates nothing twice. Datetimes are aware UTC (sqlmodel
stores them as UTC
on both backends); dates are plain calendar dates in Europe/Stockholm.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class ReceiptState(StrEnum):
    ISSUED = "issued"
    ACKNOWLEDGED = "acknowledged"
    AGREED = "agreed"
    DISPUTED = "disputed"
    SUPERSEDED = "superseded"


class Direction(StrEnum):
    DOWN = "down"  # planning: decisions travel down the chain
    UP = "up"  # follow-up and feedback: results travel up


class HandoffMode(StrEnum):
    """A decision handoff carries a decided document; the receiver agrees on its interpretation. A
    fill-in handoff asks the sender (the author) for content: first a request to the author, then
    the delivery of the validated return, which the receiver agrees to or disputes."""

    DECISION = "decision"
    FILL_IN = "fill_in"


class PhaseState(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"  # suspended, waiting for receipts
    COMPLETED = "completed"
    FAILED = "failed"


class NotificationState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after the maximum attempts; visible to operators


class Unit(SQLModel, table=True):
    """An organisation unit, synchronised from configuration (the configuration is the master)."""

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    level: str = Field(max_length=60)
    level_index: int
    parent_id: str | None = Field(default=None, max_length=40, index=True)


class Signatory(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("unit_id", "signatory_id"),)

    id: int | None = Field(default=None, primary_key=True)
    unit_id: str = Field(foreign_key="unit.id", max_length=40)
    signatory_id: str = Field(max_length=60)
    name: str = Field(max_length=120)
    email: str = Field(max_length=200)


class Cycle(SQLModel, table=True):
    """A plan year Y with a four-year horizon, prepared from October Y-2, followed up during Y."""

    __table_args__ = (UniqueConstraint("organisation_id", "year"),)

    id: int | None = Field(default=None, primary_key=True)
    organisation_id: str = Field(max_length=60)
    year: int
    horizon_end: int
    created_at: datetime = Field(default_factory=utcnow)


class PhaseRun(SQLModel, table=True):
    """The state of one phase in one cycle, per follow-up occasion; re-runs update the same row.

    The follow-up phase runs once per occasion (each its own flow run, each waiting for its own
    receipts), so the occasion is part of the key; other phases have the occasion "" (not NULL:
    NULLs are distinct in a unique constraint, and the constraint must hold on both backends)."""

    __table_args__ = (UniqueConstraint("cycle_id", "phase", "occasion", name="uq_phaserun_cycle_phase_occasion"),)

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="cycle.id")
    phase: str = Field(max_length=40)
    occasion: str = Field(default="", max_length=40, sa_column_kwargs={"server_default": ""})
    state: str = Field(default=PhaseState.RUNNING, max_length=20)
    attempts: int = 0
    flow_run_id: str | None = Field(default=None, max_length=40)
    as_of: date | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    overridden: bool = False


class Milestone(SQLModel, table=True):
    # The deadline watch asks "what is due in this cycle by date D" every day.
    __table_args__ = (UniqueConstraint("cycle_id", "key"), Index("ix_milestone_cycle_due", "cycle_id", "due"))

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="cycle.id")
    key: str = Field(max_length=60)
    name: str = Field(max_length=200)
    phase: str = Field(max_length=40)
    owner_unit: str = Field(max_length=40)
    due: date
    done_at: datetime | None = None


class Meeting(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("cycle_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="cycle.id")
    key: str = Field(max_length=60)
    name: str = Field(max_length=200)
    phase: str = Field(max_length=40)
    organiser: str = Field(max_length=40)
    day: date
    participants: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    purpose: str = Field(sa_column=Column(Text, nullable=False))
    goal: str = Field(sa_column=Column(Text, nullable=False))
    kind: str = Field(max_length=20)


class Document(SQLModel, table=True):
    """A generated document; `key` embeds organisation, cycle, phase, unit, kind and version."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)
    cycle_id: int = Field(foreign_key="cycle.id", index=True)
    phase: str = Field(max_length=40)
    unit_id: str = Field(max_length=40)
    kind: str = Field(max_length=60)
    version: int = 1
    format: str = Field(max_length=8)
    relpath: str = Field(max_length=500)
    content_hash: str = Field(max_length=64)
    title: str = Field(max_length=300)
    # What a return is read against when the document is not rebuilt from the configuration (a
    # level report is built from the returns below it): the canonical JSON of its content.
    spec: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class Receipt(SQLModel, table=True):
    """A handoff receipt (kvittens): sender and receiver agree on content and purpose."""

    __table_args__ = (Index("ix_receipt_cycle_phase_state", "cycle_id", "phase", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)
    cycle_id: int = Field(foreign_key="cycle.id")
    phase: str = Field(max_length=40)
    topic: str = Field(max_length=60)
    direction: str = Field(max_length=8)
    # decision | fill_in (HandoffMode); in a fill-in handoff the sender is the author.
    mode: str = Field(default=HandoffMode.DECISION, max_length=10, sa_column_kwargs={"server_default": "decision"})
    sender_unit: str = Field(max_length=40)
    receiver_unit: str = Field(max_length=40, index=True)
    document_id: int | None = Field(default=None, foreign_key="document.id")
    # The content agreed on: the document's for a decision handoff; for a fill-in handoff the
    # sent template's until the return is in, then a hash of the returned content.
    content_hash: str = Field(max_length=64)
    purpose: str = Field(sa_column=Column(Text, nullable=False))
    deadline: date
    version: int = 1
    state: str = Field(default=ReceiptState.ISSUED, max_length=20)
    supersedes_id: int | None = Field(default=None, foreign_key="receipt.id")
    acknowledged_by: str | None = Field(default=None, max_length=200)
    acknowledged_at: datetime | None = None
    signed_by: str | None = Field(default=None, max_length=200)
    signed_at: datetime | None = None
    on_behalf_reason: str | None = Field(default=None, sa_column=Column(Text))
    comment: str | None = Field(default=None, sa_column=Column(Text))
    # One-time code: only its salted hash is stored; single use, expiring.
    code_hash: str | None = Field(default=None, max_length=128)
    code_expires_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Notification(SQLModel, table=True):
    """The outbox: written in the same transaction as its cause, sent later, retried with backoff."""

    __table_args__ = (Index("ix_notification_state_next", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)
    cycle_id: int | None = Field(default=None, foreign_key="cycle.id")
    receipt_id: int | None = Field(default=None, foreign_key="receipt.id", index=True)
    recipient_unit: str = Field(max_length=40)
    channel_id: str = Field(max_length=60)
    address: str = Field(max_length=300)
    subject: str = Field(max_length=300)
    body: str = Field(sa_column=Column(Text, nullable=False))
    attachment: str | None = Field(default=None, max_length=500)
    link: str | None = Field(default=None, max_length=500)
    state: str = Field(default=NotificationState.PENDING, max_length=20)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class Goal(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("cycle_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="cycle.id")
    key: str = Field(max_length=60)
    area: str = Field(max_length=200)
    title: str = Field(sa_column=Column(Text, nullable=False))
    owner_unit: str = Field(max_length=40)
    targeted: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    opt_out_allowed: bool = False


class Indicator(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("goal_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    goal_id: int = Field(foreign_key="goal.id")
    key: str = Field(max_length=60)
    name: str = Field(max_length=300)
    target: float
    unit: str = Field(default="", max_length=40)
    kolada_id: str | None = Field(default=None, max_length=10)


class Submission(SQLModel, table=True):
    """A returned (filled-in) document, read back and validated; its content as data."""

    __table_args__ = (UniqueConstraint("document_id", "file_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(foreign_key="document.id")
    unit_id: str = Field(max_length=40, index=True)
    file_hash: str = Field(max_length=64)
    content: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The accepted file as it was read (cleaned), under the output folder: what the receiver opens.
    relpath: str | None = Field(default=None, max_length=500)
    received_at: datetime = Field(default_factory=utcnow)


class AuditEntry(SQLModel, table=True):
    """Every trigger, override, signature and refused attempt."""

    __table_args__ = (Index("ix_auditentry_cycle_phase", "cycle_id", "phase"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=60)
    cycle_id: int | None = Field(default=None, foreign_key="cycle.id")
    phase: str | None = Field(default=None, max_length=40)
    subject: str | None = Field(default=None, max_length=300)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class RaisedIssue(SQLModel, table=True):
    """An item a unit raised to the next level in a follow-up ("Vad lyfter vi till nästa nivå?").

    Open until a level acts on it; until then it appears in the report of every level on its way
    up, in this occasion and in the later occasions of the cycle. `key` is organisation/year/
    occasion/origin/digest of the normalised text, so re-running an occasion records it once."""

    __table_args__ = (Index("ix_raisedissue_cycle_state", "cycle_id", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)
    cycle_id: int = Field(foreign_key="cycle.id")
    occasion_key: str = Field(max_length=40)
    origin_unit: str = Field(max_length=40)
    text: str = Field(sa_column=Column(Text, nullable=False))
    # The levels it reached, origin first; the last one holds it (acted on it, or the top).
    path: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    state: str = Field(default="open", max_length=20)  # open | acted_on
    acted_by_unit: str | None = Field(default=None, max_length=40)
    acted_by: str | None = Field(default=None, max_length=200)
    action: str | None = Field(default=None, sa_column=Column(Text))
    acted_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Conclusion(SQLModel, table=True):
    """A conclusion of a follow-up report (the annual report's become input to the next cycle's
    preparation: plan–do–check–act)."""

    __table_args__ = (UniqueConstraint("cycle_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="cycle.id")
    key: str = Field(max_length=120)  # occasion/position
    occasion_key: str = Field(max_length=40)
    position: int
    topic: str = Field(max_length=60)  # Ekonomi | Mål | Lyfta frågor | Intern kontroll | Lärdomar
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class PortalTokenUse(SQLModel, table=True):
    """A portal link used for an action (sign, dispute, hand in a return): each link acts once.

    `token_id` is the link's own id (tasks.portal_tokens); the unique key (token, action) is the
    guarantee, so two requests racing with the same link record one use."""

    __table_args__ = (UniqueConstraint("token_id", "action", name="uq_portaltokenuse_token_action"),)

    id: int | None = Field(default=None, primary_key=True)
    token_id: str = Field(max_length=64)
    action: str = Field(max_length=20)
    receipt_id: int = Field(foreign_key="receipt.id", index=True)
    recipient: str = Field(max_length=200)
    client: str = Field(default="", max_length=100)
    used_at: datetime = Field(default_factory=utcnow)


class PortalFailure(SQLModel, table=True):
    """A refused portal link (forged, expired, another recipient's): counted for the lockout per
    receipt and per client address."""

    __table_args__ = (
        Index("ix_portalfailure_client_at", "client", "at"),
        Index("ix_portalfailure_receipt_at", "receipt_id", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    client: str = Field(max_length=100)
    receipt_id: int | None = None  # what the link claimed; no foreign key: a forged link names anything
    reason: str = Field(max_length=60)


class PortalOperator(SQLModel, table=True):
    """An operator of the portal's overview pages; only an argon2 hash of the password is kept."""

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=60, unique=True)
    name: str = Field(max_length=120)
    password_hash: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
