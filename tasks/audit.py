"""The audit log: every trigger, override, signature and refused attempt."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from models.db import session_scope
from models.tables import AuditEntry


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    cycle_id: int | None = None,
    phase: str | None = None,
    subject: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record in the caller's transaction, so the entry stands or falls with what it describes."""
    session.add(
        AuditEntry(
            actor=actor[:200],
            action=action,
            cycle_id=cycle_id,
            phase=phase,
            subject=subject[:300] if subject else None,
            reason=reason,
            detail=detail or {},
        )
    )


def audit_refusal(url: str | None, **kwargs: Any) -> None:
    """Record a refused attempt in its own transaction: the refused change itself was rolled back."""
    with session_scope(url) as session:
        audit(session, **kwargs)
