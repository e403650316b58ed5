"""Database contention on SQLite and PostgreSQL: signings, returned documents and deadline watches
all at once, from threads started together. No write is lost, none is made twice, and nothing a
user would see fails ("database is locked" and lost races are retried inside models.db)."""

from __future__ import annotations

import threading
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from secretary import fill_docx
from sqlmodel import select

from config.loader import load_config
from flows.demo_authors import hand_back
from models.db import session_scope
from models.tables import AuditEntry, Document, Notification, Receipt, ReceiptState, Submission
from tasks.cycle import prepare_cycle
from tasks.deadlines import run_watch
from tasks.distribution import distribute
from tasks.documents import catalog
from tasks.documents.model import DocRequest
from tasks.handoffs import handoffs_for_phase
from tasks.receipts import SignRequest, code_for, sign
from tasks.returns import submit_file

YEAR = 2028
WATCHERS = 3


def _all_at_once(jobs: list[Callable[[], object]]) -> list[str]:
    """Run every job in its own thread, released together; the tracebacks of any that failed."""
    barrier = threading.Barrier(len(jobs))
    failures: list[str] = []

    def run(job: Callable[[], object]) -> None:
        barrier.wait()
        try:
            job()
        except BaseException:  # noqa: BLE001 - every failure is a finding
            failures.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return failures


def test_signings_submissions_and_watches_at_once(db_url: str, tmp_path: Path) -> None:
    cfg = load_config("region")
    out = tmp_path / "out"
    cycle_id = prepare_cycle(cfg, YEAR, db_url)
    for phase in ("planning_prerequisites", "committee_feedback"):
        distribute(cfg, cycle_id, phase, handoffs_for_phase(cfg, YEAR, phase), out, actor="test", url=db_url)
    with session_scope(db_url) as s:
        to_sign = list(s.exec(select(Receipt).where(Receipt.phase == "planning_prerequisites")))
        feedback = list(s.exec(select(Document).where(Document.kind == "aterkoppling")))
    assert len(to_sign) >= 5 and len(feedback) >= 5

    returns: list[Path] = []
    for doc in feedback:
        fields = catalog.expected_fields(cfg, YEAR, DocRequest("aterkoppling", "committee_feedback", doc.unit_id))
        path = tmp_path / f"{doc.unit_id}_svar.docx"
        fill_docx(out / doc.relpath, path, {n: [f"{doc.unit_id} svarar om {n}."] for n in fields}, inject=False)
        returns.append(path)
    # Reminders are due on the planning receipts' deadline: the watches have work to queue.
    as_of = min(r.deadline for r in to_sign)

    jobs: list[Callable[[], object]] = []
    for r in to_sign:
        signer = cfg.unit(r.receiver_unit).signatories[0].id
        jobs.append(lambda r=r, signer=signer: sign(cfg, SignRequest(r.id, signer, code_for(r.key)), url=db_url))
    for path in returns:
        jobs.append(lambda path=path: submit_file(cfg, path, url=db_url, actor="sekreterare"))
    reports: list[object] = []
    jobs += [lambda: reports.append(run_watch(cfg, as_of=as_of, url=db_url)) for _ in range(WATCHERS)]

    failures = _all_at_once(jobs)
    assert failures == [], "\n".join(failures)

    with session_scope(db_url) as s:
        signed = {r.id: r for r in s.exec(select(Receipt).where(Receipt.phase == "planning_prerequisites"))}
        agreed = Counter(a.subject for a in s.exec(select(AuditEntry).where(AuditEntry.action == "receipt_agreed")))
        submissions = list(s.exec(select(Submission)))
        received = Counter(a.subject for a in s.exec(select(AuditEntry).where(AuditEntry.action == "return_received")))
        fb_receipts = list(s.exec(select(Receipt).where(Receipt.phase == "committee_feedback")))
        outbox = list(s.exec(select(Notification)))
    # every signing stored, exactly once
    assert all(r.state == ReceiptState.AGREED and r.signed_by for r in signed.values())
    assert agreed == Counter({r.key: 1 for r in to_sign})
    # every return stored, exactly once, and its handoff acknowledged
    assert sorted(x.document_id for x in submissions) == sorted(d.id for d in feedback)
    assert len(received) == len(feedback) and set(received.values()) == {1}
    assert {r.state for r in fb_receipts} == {ReceiptState.ACKNOWLEDGED}
    # the watches: each reminder queued once however many ran, and a later run adds nothing
    assert len(reports) == WATCHERS
    assert sum(rep.reminders + rep.escalations for rep in reports) > 0
    keys = [n.key for n in outbox]
    assert len(keys) == len(set(keys))
    again = run_watch(cfg, as_of=as_of, url=db_url)
    assert again.reminders == again.escalations == 0
    with session_scope(db_url) as s:
        assert len(list(s.exec(select(Notification)))) == len(outbox)


@pytest.mark.parametrize("rounds", [2])
def test_the_same_signature_and_file_from_many_threads_count_once(db_url: str, tmp_path: Path, rounds: int) -> None:
    """The lost-race path: everyone signs the same receipt and hands in the same file at once."""
    cfg = load_config("region")
    out = tmp_path / "out"
    cycle_id = prepare_cycle(cfg, YEAR, db_url)
    distribute(
        cfg,
        cycle_id,
        "committee_feedback",
        handoffs_for_phase(cfg, YEAR, "committee_feedback")[:2],
        out,
        actor="t",
        url=db_url,
    )
    with session_scope(db_url) as s:
        docs = list(s.exec(select(Document).order_by(Document.id)))
        receipts = list(s.exec(select(Receipt).order_by(Receipt.id)))
    path = tmp_path / "svar.docx"
    fields = catalog.expected_fields(cfg, YEAR, DocRequest("aterkoppling", "committee_feedback", docs[0].unit_id))
    fill_docx(out / docs[0].relpath, path, {n: ["Svar."] for n in fields}, inject=False)
    target = receipts[1]
    hand_back(cfg, target.id, tmp_path / "returns", url=db_url, out_root=out)  # agreed on its return
    signer = cfg.unit(target.receiver_unit).signatories[0].id
    outcomes: list[str] = []

    def sign_once() -> None:
        try:
            sign(cfg, SignRequest(target.id, signer, code_for(target.key)), url=db_url)
            outcomes.append("signed")
        except Exception as exc:  # the losers must get the one-line "already agreed", nothing else
            assert "already agreed" in str(exc), exc
            outcomes.append("already")

    jobs: list[Callable[[], object]] = [sign_once] * (4 * rounds)
    jobs += [lambda: submit_file(cfg, path, url=db_url, actor="s")] * (4 * rounds)
    assert _all_at_once(jobs) == []
    assert outcomes.count("signed") == 1 and outcomes.count("already") == 4 * rounds - 1
    with session_scope(db_url) as s:
        assert len(list(s.exec(select(Submission).where(Submission.document_id == docs[0].id)))) == 1
        assert len(list(s.exec(select(AuditEntry).where(AuditEntry.action == "receipt_agreed")))) == 1
