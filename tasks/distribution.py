"""Distribute a phase: render the documents each handoff needs, record them, issue receipts and
queue their notifications — idempotently, so a re-run, a resume or a crash creates nothing twice.

Order matters for crashes: files are written first (atomically, by rename), then one transaction
records documents, receipts and notifications together. A crash before the commit leaves files
that the next run overwrites with identical content; a crash after it leaves nothing to redo.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, select

from config.schema import OrgConfig
from models.db import session_scope, with_retry
from models.tables import Cycle, Document, Receipt
from tasks.documents.catalog import DocRequest, doc_key
from tasks.documents.model import RenderedDoc
from tasks.handoffs import Handoff
from tasks.messages import queue_handoffs
from tasks.receipts import PlannedReceipt, issue_receipt, plan_receipts
from tasks.rendering import render_batch


@dataclass(frozen=True)
class DistributionResult:
    documents_rendered: int
    documents_total: int
    receipts_issued: int
    receipts_total: int
    notifications_queued: int


def _versioned(plan: PlannedReceipt) -> list[DocRequest]:
    return [dataclasses.replace(d, version=plan.version) for d in plan.handoff.documents]


def distribute(
    cfg: OrgConfig,
    cycle_id: int,
    phase: str,
    handoffs: list[Handoff],
    out_root: Path,
    *,
    actor: str,
    url: str | None = None,
) -> DistributionResult:
    with session_scope(url) as session:
        cycle = session.get(Cycle, cycle_id)
        assert cycle is not None
        plans = plan_receipts(session, cycle_id, phase, handoffs)
        to_issue = [p for p in plans if p.needs_issue]
        wanted: dict[str, DocRequest] = {}
        for p in to_issue:
            for req in _versioned(p):
                wanted.setdefault(doc_key(cfg, cycle.year, req), req)
        known = {
            d.key: d
            for d in session.exec(select(Document).where(Document.cycle_id == cycle_id, Document.phase == phase))
        }
    # Render what is not recorded yet, or whose file went missing.
    missing = [req for key, req in wanted.items() if key not in known or not (out_root / known[key].relpath).exists()]
    rendered = render_batch(cfg, cycle.year, missing, out_root)

    def record(session: Session) -> tuple[int, int]:
        docs = record_documents(session, cycle_id, rendered)
        created_now: list[tuple[Receipt, list[Document]]] = []
        for p in to_issue:
            keys = [doc_key(cfg, cycle.year, req) for req in _versioned(p)]
            documents = [docs.get(k) or session.exec(select(Document).where(Document.key == k)).one() for k in keys]
            receipt, created = issue_receipt(session, cfg, cycle, p, documents[0], actor=actor)
            if created:
                created_now.append((receipt, documents))
        return len(created_now), queue_handoffs(session, cfg, created_now)

    issued, queued = with_retry(record, url)
    return DistributionResult(
        documents_rendered=len(rendered),
        documents_total=len(wanted),
        receipts_issued=issued,
        receipts_total=len(plans),
        notifications_queued=queued,
    )


def record_documents(session: Session, cycle_id: int, rendered: list[RenderedDoc]) -> dict[str, Document]:
    keys = [r.doc_key for r in rendered]
    existing = {d.key: d for d in session.exec(select(Document).where(Document.key.in_(keys)))} if keys else {}  # type: ignore[attr-defined]
    out: dict[str, Document] = {}
    for r in rendered:
        row = existing.get(r.doc_key)
        if row is None:
            row = Document(
                key=r.doc_key,
                cycle_id=cycle_id,
                phase=r.phase_id,
                unit_id=r.unit_id,
                kind=r.kind,
                version=r.version,
                format=r.format,
                relpath=r.relpath,
                content_hash=r.content_hash,
                title=r.title,
                spec=r.spec,
            )
        else:
            row.relpath, row.content_hash, row.title, row.spec = r.relpath, r.content_hash, r.title, r.spec
        session.add(row)
        out[r.doc_key] = row
    session.flush()
    return out
