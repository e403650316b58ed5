"""Receipts on a real database (SQLite and PostgreSQL): issue, sign, dispute, supersede, refuse."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlmodel import func, select

from config.loader import load_config
from flows.demo_authors import hand_back
from models.db import get_engine, session_scope
from models.errors import AuthorisationError, NotFoundError, UserError
from models.tables import AuditEntry, Document, Notification, Receipt, ReceiptState
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.handoffs import handoffs_for_phase
from tasks.receipts import SignRequest, code_for, dispute, gate_missing, sign

YEAR = 2028


@pytest.fixture(scope="module")
def cfg():
    return load_config("region")


def _distribute(cfg, url: str, out: Path, phase: str = "planning_prerequisites"):
    cycle_id = prepare_cycle(cfg, YEAR, url)
    result = distribute(cfg, cycle_id, phase, handoffs_for_phase(cfg, YEAR, phase), out, actor="test", url=url)
    return cycle_id, result


def _receipts(url: str, phase: str = "planning_prerequisites") -> list[Receipt]:
    with session_scope(url) as s:
        return list(s.exec(select(Receipt).where(Receipt.phase == phase).order_by(Receipt.id)))


def _count(url: str, model) -> int:  # type: ignore[no-untyped-def]
    with session_scope(url) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def _signer(cfg, r: Receipt) -> str:
    return cfg.unit(r.receiver_unit).signatories[0].id


def test_distribution_issues_one_receipt_per_committee_with_notifications(cfg, db_url, tmp_path):
    cycle_id, result = _distribute(cfg, db_url, tmp_path)
    committees = cfg.committees()
    rows = _receipts(db_url)
    assert result.receipts_issued == len(committees) == len(rows)
    assert {r.receiver_unit for r in rows} == {c.id for c in committees}
    assert all(r.state == ReceiptState.ISSUED and r.code_hash and r.direction == "down" for r in rows)
    # each receipt names its document and that document's content hash
    with session_scope(db_url) as s:
        for r in rows:
            doc = s.get(Document, r.document_id)
            assert doc is not None and doc.content_hash == r.content_hash
            assert (tmp_path / doc.relpath).is_file()
        n = s.exec(select(func.count()).select_from(Notification)).one()
        codes_in_outbox = [x for x in s.exec(select(Notification.body)) if any(code_for(r.key) in x for r in rows)]
    assert n == result.notifications_queued > 0
    assert codes_in_outbox == [], "the one-time code must never be stored in clear"


def test_rerun_creates_nothing_twice(cfg, db_url, tmp_path):
    _distribute(cfg, db_url, tmp_path)
    counts = [_count(db_url, m) for m in (Receipt, Document, Notification, AuditEntry)]
    _, again = _distribute(cfg, db_url, tmp_path)
    assert again.receipts_issued == 0 and again.documents_rendered == 0 and again.notifications_queued == 0
    assert [_count(db_url, m) for m in (Receipt, Document, Notification)] == counts[:3]


def test_sign_with_code_agrees_and_notifies_sender(cfg, db_url, tmp_path):
    _distribute(cfg, db_url, tmp_path)
    r = _receipts(db_url)[0]
    before = _count(db_url, Notification)
    signed = sign(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key), comment="Tydligt.", actor="t"), db_url)
    assert signed.state == ReceiptState.AGREED and signed.signed_at is not None
    assert signed.signed_by and r.receiver_unit in signed.signed_by
    with session_scope(db_url) as s:
        row = s.get(Receipt, r.id)
        assert row.code_hash is None  # single use
        assert s.exec(select(AuditEntry).where(AuditEntry.action == "receipt_agreed")).first() is not None
    assert _count(db_url, Notification) > before


REFUSALS = [
    "wrong code",
    "other unit's signatory",
    "no such receipt",
    "dispute without comment",
    "blank reason",
    "already signed",
]


def test_refusals_leave_state_unchanged_and_are_audited(cfg, db_url, tmp_path):
    _distribute(cfg, db_url, tmp_path)
    rows = _receipts(db_url)
    r, other = rows[0], rows[1]
    code = code_for(r.key)
    attempts = {
        "wrong code": (sign, SignRequest(r.id, _signer(cfg, r), "AAAAAAAA"), AuthorisationError, "wrong one-time code"),
        "other unit's signatory": (
            sign,
            SignRequest(r.id, _signer(cfg, other), code),
            AuthorisationError,
            "not a signatory",
        ),
        "no such receipt": (sign, SignRequest(999_999, _signer(cfg, r), code), NotFoundError, "no receipt with id"),
        "dispute without comment": (
            dispute,
            SignRequest(r.id, _signer(cfg, r), code, comment="  "),
            UserError,
            "comment",
        ),
        "blank reason": (sign, SignRequest(r.id, operator_reason=" "), AuthorisationError, "reason"),
        "already signed": (sign, SignRequest(r.id, _signer(cfg, r), code), UserError, "already agreed"),
    }
    for case in REFUSALS:
        if case == "already signed":
            sign(cfg, SignRequest(r.id, _signer(cfg, r), code, actor="t"), db_url)
        before = {x.id: (x.state, x.signed_by, x.code_hash) for x in _receipts(db_url)}
        audits_before = _count(db_url, AuditEntry)
        fn, req, exc_type, text = attempts[case]
        with pytest.raises(exc_type, match=text):
            fn(cfg, req, db_url)
        assert {x.id: (x.state, x.signed_by, x.code_hash) for x in _receipts(db_url)} == before, case
        assert _count(db_url, AuditEntry) == audits_before + 1, case
        with session_scope(db_url) as s:
            last = s.exec(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert last.action.startswith("refused_") and last.reason, case


def test_dispute_then_new_version_supersedes_and_links(cfg, db_url, tmp_path):
    cycle_id, _ = _distribute(cfg, db_url, tmp_path)
    r = _receipts(db_url)[0]
    dispute(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key), comment="Ramen för 2029 saknas."), db_url)
    _, again = _distribute(cfg, db_url, tmp_path)
    assert again.receipts_issued == 1 and again.documents_rendered >= 1
    rows = _receipts(db_url)
    old = next(x for x in rows if x.id == r.id)
    new = next(x for x in rows if x.supersedes_id == r.id)
    assert old.state == ReceiptState.SUPERSEDED and old.comment == "Ramen för 2029 saknas."
    assert new.version == 2 and new.state == ReceiptState.ISSUED and new.key.endswith("/v2")
    with session_scope(db_url) as s:
        assert s.get(Document, new.document_id).version == 2
    # the superseded one can no longer be signed: refused, audited, nothing changed; the new one
    # can, with its own code
    before = {x.id: (x.state, x.signed_by, x.signed_at, x.comment, x.code_hash) for x in _receipts(db_url)}
    audits_before = _count(db_url, AuditEntry)
    with pytest.raises(UserError, match="superseded"):
        sign(cfg, SignRequest(old.id, _signer(cfg, old), code_for(old.key), actor="sent"), db_url)
    assert {x.id: (x.state, x.signed_by, x.signed_at, x.comment, x.code_hash) for x in _receipts(db_url)} == before
    assert _count(db_url, AuditEntry) == audits_before + 1
    with session_scope(db_url) as s:
        last = s.exec(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert (last.action, last.actor, last.subject) == ("refused_agreed", "sent", f"receipt {old.id}")
    assert "superseded" in last.reason
    with pytest.raises(AuthorisationError):
        sign(cfg, SignRequest(new.id, _signer(cfg, new), code_for(old.key)), db_url)
    assert sign(cfg, SignRequest(new.id, _signer(cfg, new), code_for(new.key)), db_url).state == ReceiptState.AGREED


def test_operator_signs_on_behalf_with_reason(cfg, db_url, tmp_path):
    _distribute(cfg, db_url, tmp_path)
    r = _receipts(db_url)[0]
    signed = sign(
        cfg,
        SignRequest(r.id, operator_reason="Nämndsekreteraren sjuk; beslut i protokoll §12", actor="Eva Operatör"),
        db_url,
    )
    assert signed.state == ReceiptState.AGREED and "operatör" in signed.signed_by
    with session_scope(db_url) as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "receipt_agreed_on_behalf")).one()
    assert entry.actor == "Eva Operatör" and "§12" in entry.reason


def test_gate_lists_missing_receipts_until_all_agreed(cfg, db_url, tmp_path):
    cycle_id, _ = _distribute(cfg, db_url, tmp_path)
    with session_scope(db_url) as s:
        missing = gate_missing(s, cycle_id, "committee_feedback")
    assert len(missing) == len(cfg.committees())
    assert all("issued, due" in m for m in missing)
    for r in _receipts(db_url):
        sign(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key)), db_url)
    with session_scope(db_url) as s:
        assert gate_missing(s, cycle_id, "committee_feedback") == []


def test_fifty_concurrent_signings_each_recorded_once(cfg, db_url, tmp_path):
    """50 signings at once: every one recorded exactly once, none lost, no 'database is locked' to
    the user. One follow-up occasion of the sample region has 41 receipts: the last two occasions
    of the year have enough for exactly 50."""
    from tasks.followup_calendar import occasions

    cycle_id = prepare_cycle(cfg, YEAR, db_url)
    for occ in occasions(cfg, YEAR)[-2:]:
        handoffs = handoffs_for_phase(cfg, YEAR, "follow_up", occ)
        distribute(cfg, cycle_id, "follow_up", handoffs, tmp_path, actor="test", url=db_url)
    issued = _receipts(db_url, "follow_up")
    rows = issued[:50]
    assert len(rows) == 50 and len({r.topic for r in rows}) == 2  # receipts of both occasions
    for r in rows:  # a follow-up receipt is agreed on its return: each unit hands back first
        hand_back(cfg, r.id, tmp_path / "returns", url=db_url, out_root=tmp_path)
    rows = [r for r in _receipts(db_url, "follow_up") if r.id in {x.id for x in rows}]
    assert {r.state for r in rows} == {ReceiptState.ACKNOWLEDGED}
    with session_scope(db_url) as s:
        last_notification = s.exec(select(func.max(Notification.id))).one()
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(rows))

    def go(r: Receipt) -> None:
        try:
            barrier.wait()
            sign(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key), actor="c"), db_url)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(r,)) for r in rows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    signed = {r.id: r for r in rows}
    after = _receipts(db_url, "follow_up")
    # exactly the 50 agreed, each by its own signature; the others untouched
    assert sorted(x.id for x in after if x.state == ReceiptState.AGREED) == sorted(signed)
    assert all(x.state == ReceiptState.ISSUED for x in after if x.id not in signed)  # their returns not in
    assert all(x.signed_at and x.code_hash is None for x in after if x.id in signed)
    with session_scope(db_url) as s:
        agreed = s.exec(select(AuditEntry.subject).where(AuditEntry.action.startswith("receipt_agreed"))).all()  # type: ignore[attr-defined]
        refused = s.exec(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action.startswith("refused_"))
        ).one()  # type: ignore[attr-defined]
        queued = s.exec(select(Notification).where(Notification.id > last_notification)).all()
    # one audit entry per signature: 50, each receipt once
    assert sorted(agreed) == sorted(r.key for r in rows) and refused == 0
    # one decision notice per signature (every sender has one e-mail contact): 50, each receipt once,
    # to the receipt's sender
    assert sorted(n.receipt_id for n in queued) == sorted(signed)
    assert all(n.recipient_unit == signed[n.receipt_id].sender_unit for n in queued)
    assert all(n.key.startswith(f"{signed[n.receipt_id].key}/{ReceiptState.AGREED}/") for n in queued)


def test_same_receipt_signed_twice_at_once_counts_once(cfg, db_url, tmp_path):
    _distribute(cfg, db_url, tmp_path)
    r = _receipts(db_url)[0]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def go() -> None:
        barrier.wait()
        try:
            sign(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key)), db_url)
            outcomes.append("signed")
        except UserError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("signed") == 1
    assert any("already agreed" in o or "valid one-time code" in o for o in outcomes if o != "signed")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _sign_while_busy(cfg, url: str, r: Receipt, *, rival_signs: bool) -> list[BaseException]:
    """Sign `r` while the database is really busy: on SQLite another connection holds the write
    lock beyond the busy timeout ("database is locked"); on PostgreSQL another transaction holds
    the receipt's cycle and then asks for the receipt the signature has locked (a deadlock the
    server breaks by aborting the signature). The failure is observed on the engine before the
    other transaction lets go; if `rival_signs`, it agrees the receipt first (a rival signature
    that won). What the signer's call raised is returned."""
    engine = get_engine(url)
    failures: list[str] = []
    outcome: list[BaseException] = []

    def seen(ctx) -> None:  # type: ignore[no-untyped-def]
        failures.append(str(ctx.original_exception).lower())

    def short_busy_timeout(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.execute("PRAGMA busy_timeout=200")  # after models.db's 30 s: a test cannot wait that long

    def go() -> None:
        try:
            sign(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key), actor="busy"), url)
        except BaseException as exc:  # noqa: BLE001 - returned and asserted by the caller
            outcome.append(exc)

    signer = threading.Thread(target=go)
    event.listen(engine, "handle_error", seen)
    try:
        if url.startswith("sqlite"):
            event.listen(engine, "connect", short_busy_timeout)
            engine.dispose()  # pooled connections were opened with the long timeout
            rival = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
            try:
                rival.execute("BEGIN IMMEDIATE")
                signer.start()
                _wait_for(lambda: any("database is locked" in f for f in failures), "a busy failure")
                if rival_signs:
                    rival.execute("UPDATE receipt SET state = 'agreed', code_hash = NULL WHERE id = ?", (r.id,))
                rival.execute("COMMIT")
            finally:
                rival.close()
        else:
            with engine.connect() as rival:
                rival.execute(text("SET LOCAL deadlock_timeout = '60s'"))  # the signer's 1 s detects it
                me = rival.execute(text("SELECT pg_backend_pid()")).scalar()
                rival.execute(text("SELECT id FROM cycle WHERE id = :c FOR UPDATE"), {"c": r.cycle_id})
                signer.start()
                # pg_locks is live (pg_stat_activity would be a snapshot for the whole transaction)
                blocked = text("SELECT count(*) FROM pg_locks WHERE NOT granted AND :me = ANY(pg_blocking_pids(pid))")
                _wait_for(lambda: rival.execute(blocked, {"me": me}).scalar() > 0, "the signer to wait on the cycle")
                rival.execute(text("SELECT id FROM receipt WHERE id = :r FOR UPDATE"), {"r": r.id})
                # the server aborted the signature's transaction (it holds nothing now): its client sees it
                _wait_for(lambda: any("deadlock detected" in f for f in failures), "the deadlock")
                if rival_signs:
                    rival.execute(
                        text("UPDATE receipt SET state = 'agreed', code_hash = NULL WHERE id = :r"), {"r": r.id}
                    )
                rival.commit()
        signer.join(timeout=60)
        assert not signer.is_alive()
    finally:
        event.remove(engine, "handle_error", seen)
        if event.contains(engine, "connect", short_busy_timeout):
            event.remove(engine, "connect", short_busy_timeout)
    return outcome


def test_a_busy_database_is_retried_and_a_refusal_audited_once(cfg, db_url, tmp_path):
    """The signature's transaction runs again when the database is busy; nothing reaches the user.
    When a rival signature wins meanwhile, the user sees one clear refusal, audited once."""
    _distribute(cfg, db_url, tmp_path)
    first, second = _receipts(db_url)[:2]

    assert _sign_while_busy(cfg, db_url, first, rival_signs=False) == []
    with session_scope(db_url) as s:
        row = s.get(Receipt, first.id)
        entries = s.exec(select(AuditEntry).where(AuditEntry.subject == first.key)).all()
        notices = s.exec(select(Notification).where(Notification.key.startswith(f"{first.key}/agreed/"))).all()  # type: ignore[attr-defined]
    assert row.state == ReceiptState.AGREED and row.signed_by and row.code_hash is None
    assert [e.action for e in entries if e.action != "receipt_issued"] == ["receipt_agreed"]
    assert len(notices) == len([c for c in cfg.unit(first.sender_unit).contacts if c.channel == "epost"]) == 1

    audits_before = _count(db_url, AuditEntry)
    raised = _sign_while_busy(cfg, db_url, second, rival_signs=True)
    assert len(raised) == 1 and isinstance(raised[0], UserError), raised
    assert f"receipt {second.id}: already agreed" in str(raised[0])
    with session_scope(db_url) as s:
        row = s.get(Receipt, second.id)
        entries = s.exec(select(AuditEntry).where(AuditEntry.id > 0).order_by(AuditEntry.id)).all()[audits_before:]
    assert row.state == ReceiptState.AGREED and row.signed_by is None  # the rival's, untouched
    assert [(e.action, e.actor, e.subject) for e in entries] == [("refused_agreed", "busy", f"receipt {second.id}")]
