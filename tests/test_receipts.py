"""Receipts on a real database (SQLite and PostgreSQL): issue, sign, dispute, supersede, refuse."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlmodel import func, select

from config.loader import load_config
from models.db import session_scope
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
    # the superseded one can no longer be signed; the new one can, with its own code
    with pytest.raises(UserError, match="superseded"):
        sign(cfg, SignRequest(old.id, _signer(cfg, old), code_for(old.key)), db_url)
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
    """50 signings at once: every one recorded exactly once, no 'database is locked' to the user."""
    cycle_id = prepare_cycle(cfg, YEAR, db_url)
    from tasks.followup_calendar import occasions

    occ = occasions(cfg, YEAR)[-1]
    handoffs = handoffs_for_phase(cfg, YEAR, "follow_up", occ)
    distribute(cfg, cycle_id, "follow_up", handoffs, tmp_path, actor="test", url=db_url)
    rows = _receipts(db_url, "follow_up")[:50]
    assert len(rows) >= 40
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
    after = _receipts(db_url, "follow_up")
    assert sum(x.state == ReceiptState.AGREED for x in after) == len(rows)
    with session_scope(db_url) as s:
        n = s.exec(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "receipt_agreed")).one()
    assert n == len(rows)


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
