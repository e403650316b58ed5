"""Authorisation beyond tests/test_receipts.py: one-time codes expire, a code signs only its own
receipt, a signatory of another unit signs nothing, an operator needs a reason (also on the
command line), and a channel password from the environment never reaches the logs, the
database, the outbox's error text or a cycle export."""

from __future__ import annotations

import dataclasses
import logging
import socket
import zipfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hostile import db_dump
from sqlmodel import select
from typer.testing import CliRunner

from config.loader import SAMPLES, load_config
from models.db import session_scope
from models.errors import AuthorisationError
from models.tables import AuditEntry, Cycle, Document, Receipt, ReceiptState, utcnow
from tasks import archive, notify
from tasks.calendar import today_stockholm
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.handoffs import handoffs_for_phase
from tasks.notify import deliver_outbox
from tasks.receipts import PlannedReceipt, SignRequest, code_expiry, code_for, issue_receipt, sign

YEAR = 2028
PHASE = "planning_prerequisites"
SECRET = "Hemligt-Losen-7f3a9c"
STOCKHOLM = ZoneInfo("Europe/Stockholm")


def _end_of_day(day: date) -> datetime:
    """Midnight after `day` in Stockholm, in UTC: the first moment `day` is over."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=STOCKHOLM).astimezone(UTC)


@pytest.fixture(scope="module")
def cfg():
    return load_config("region")


def _issue(cfg, url: str, out: Path) -> list[Receipt]:
    cycle_id = prepare_cycle(cfg, YEAR, url)
    distribute(cfg, cycle_id, PHASE, handoffs_for_phase(cfg, YEAR, PHASE), out, actor="test", url=url)
    with session_scope(url) as s:
        return list(s.exec(select(Receipt).where(Receipt.phase == PHASE).order_by(Receipt.id)))


def _state(url: str, receipt_id: int) -> tuple:
    with session_scope(url) as s:
        r = s.get(Receipt, receipt_id)
        return r.state, r.signed_by, r.code_hash


def _refusals(url: str) -> list[AuditEntry]:
    with session_scope(url) as s:
        return list(s.exec(select(AuditEntry).where(AuditEntry.action.startswith("refused_"))))  # type: ignore[attr-defined]


def test_an_expired_code_is_refused_and_audited(cfg, db_url, tmp_path):
    r = _issue(cfg, db_url, tmp_path)[0]
    signer = cfg.unit(r.receiver_unit).signatories[0].id
    days = timedelta(days=cfg.deadlines.code_valid_days)
    with session_scope(db_url) as s:
        row = s.get(Receipt, r.id)
        assert row.code_expires_at is not None  # every issued code has an expiry
        # the configured validity, counted from the end of the deadline day (or from issue if later)
        expected = max(_end_of_day(row.deadline + days), row.created_at + days)
        assert abs(row.code_expires_at - expected) < timedelta(minutes=1)
        assert row.code_expires_at >= _end_of_day(row.deadline + days)
        row.code_expires_at = utcnow() - timedelta(minutes=1)
        s.add(row)
    before = _state(db_url, r.id)
    with pytest.raises(AuthorisationError, match="expired"):
        sign(cfg, SignRequest(r.id, signer, code_for(r.key)), url=db_url)
    assert _state(db_url, r.id) == before and before[0] == ReceiptState.ISSUED
    assert [a.action for a in _refusals(db_url)] == ["refused_agreed"]


def test_code_expiry_counts_from_the_end_of_the_deadline_day_in_stockholm():
    issued = datetime(2027, 10, 1, 9, 30, tzinfo=UTC)
    # summer time: the end of 15 July in Stockholm is 22:00 UTC
    assert code_expiry(date(2028, 6, 15), issued, 30) == datetime(2028, 7, 15, 22, 0, tzinfo=UTC)
    # winter time: 23:00 UTC; a deadline 241 days after issue, far beyond 30 days of validity
    assert code_expiry(date(2028, 1, 10), issued, 30) == datetime(2028, 2, 9, 23, 0, tzinfo=UTC)
    # a version issued after its deadline (a late dispute) still gets its days from issue
    assert code_expiry(date(2027, 9, 1), issued, 30) == issued + timedelta(days=30)


def _issue_at(cfg, url: str, index: int, *, issued: datetime, deadline: date) -> Receipt:
    """Issue one receipt of the phase as if at `issued`, with `deadline`: the code's validity is
    counted by `issue_receipt` itself, signing checks it against the real clock."""
    cycle_id = prepare_cycle(cfg, YEAR, url)
    handoff = dataclasses.replace(handoffs_for_phase(cfg, YEAR, PHASE)[index], deadline=deadline)
    with session_scope(url) as s:
        document = Document(
            key=f"test/{handoff.receiver}",
            cycle_id=cycle_id,
            phase=PHASE,
            unit_id=handoff.receiver,
            kind="planeringsforutsattningar",
            format="docx",
            relpath=f"{handoff.receiver}.docx",
            content_hash="0" * 64,
            title="Planeringsförutsättningar",
        )
        s.add(document)
        s.flush()
        plan = PlannedReceipt(handoff, 1, None, True)
        receipt, created = issue_receipt(s, cfg, s.get(Cycle, cycle_id), plan, document, actor="test", now=issued)
        assert created
    return receipt


def test_a_code_signs_until_code_valid_days_after_the_deadline(cfg, db_url):
    valid = timedelta(days=cfg.deadlines.code_valid_days)
    now, today = utcnow(), today_stockholm()
    # issued 40 days ago (beyond the validity counted from issue), deadline in 10 days: accepted
    in_time = _issue_at(cfg, db_url, 0, issued=now - valid - timedelta(days=10), deadline=today + timedelta(days=10))
    signer = cfg.unit(in_time.receiver_unit).signatories[0].id
    assert sign(cfg, SignRequest(in_time.id, signer, code_for(in_time.key)), url=db_url).state == ReceiptState.AGREED
    # deadline + code_valid_days is today: the code still signs until the end of the day
    last_day = _issue_at(cfg, db_url, 1, issued=now - valid - timedelta(days=200), deadline=today - valid)
    signer = cfg.unit(last_day.receiver_unit).signatories[0].id
    assert sign(cfg, SignRequest(last_day.id, signer, code_for(last_day.key)), url=db_url).state == ReceiptState.AGREED
    assert _refusals(db_url) == []

    # deadline + code_valid_days was yesterday: the right code is refused as expired, audited
    late = _issue_at(
        cfg, db_url, 2, issued=now - valid - timedelta(days=400), deadline=today - valid - timedelta(days=1)
    )
    signer = cfg.unit(late.receiver_unit).signatories[0].id
    before = _state(db_url, late.id)
    with pytest.raises(AuthorisationError, match="expired"):
        sign(cfg, SignRequest(late.id, signer, code_for(late.key), actor="sen"), url=db_url)
    assert _state(db_url, late.id) == before and before[0] == ReceiptState.ISSUED and before[2] is not None
    refusals = _refusals(db_url)
    assert [(a.action, a.actor, a.subject) for a in refusals] == [("refused_agreed", "sen", f"receipt {late.id}")]
    assert "expired" in refusals[0].reason


def test_a_code_signs_only_its_own_receipt(cfg, db_url, tmp_path):
    first, second = _issue(cfg, db_url, tmp_path)[:2]
    assert code_for(first.key) != code_for(second.key)
    signer = cfg.unit(second.receiver_unit).signatories[0].id
    with pytest.raises(AuthorisationError, match="wrong one-time code"):
        sign(cfg, SignRequest(second.id, signer, code_for(first.key)), url=db_url)
    assert _state(db_url, second.id)[0] == ReceiptState.ISSUED
    # its own code still works afterwards: a refused attempt does not use it up
    assert sign(cfg, SignRequest(second.id, signer, code_for(second.key)), url=db_url).state == ReceiptState.AGREED


def test_a_signatory_of_another_unit_cannot_sign_even_with_the_right_code(cfg, db_url, tmp_path):
    first, second = _issue(cfg, db_url, tmp_path)[:2]
    assert first.receiver_unit != second.receiver_unit
    outsider = cfg.unit(second.receiver_unit).signatories[0].id
    assert outsider not in {s.id for s in cfg.unit(first.receiver_unit).signatories}
    with pytest.raises(AuthorisationError, match="not a signatory of the receiving unit"):
        sign(cfg, SignRequest(first.id, outsider, code_for(first.key)), url=db_url)
    assert _state(db_url, first.id)[0] == ReceiptState.ISSUED
    assert len(_refusals(db_url)) == 1


def test_operator_override_without_reason_is_refused(cfg, db_url, tmp_path):
    r = _issue(cfg, db_url, tmp_path)[0]
    for reason in ("", "   \n"):
        with pytest.raises(AuthorisationError, match="reason"):
            sign(cfg, SignRequest(r.id, actor="Eva", operator_reason=reason), url=db_url)
    assert _state(db_url, r.id)[0] == ReceiptState.ISSUED


def test_operator_override_without_reason_on_the_command_line(cfg, app_env, sqlite_url):
    from flows.cli import app

    r = _issue(cfg, sqlite_url, app_env / "output")[0]
    before = db_dump(sqlite_url)
    result = CliRunner().invoke(app, ["receipt", "sign", str(r.id), "--on-behalf", "--config", "region"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--on-behalf needs --reason" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert db_dump(sqlite_url) == before
    done = CliRunner().invoke(
        app, ["receipt", "sign", str(r.id), "--on-behalf", "--reason", "Ordföranden är sjuk", "--actor", "Eva"]
    )
    assert done.exit_code == 0, done.output
    with session_scope(sqlite_url) as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "receipt_agreed_on_behalf")).one()
    assert entry.actor == "Eva" and entry.reason == "Ordföranden är sjuk"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_channel_password_never_leaks(app_env, sqlite_url, monkeypatch, caplog, capfd):
    """The password is in the environment only; the channel URL names it. Sending fails (nothing
    listens on the port), which is where a URL would most likely end up in an error text."""
    text = SAMPLES["region"].read_text(encoding="utf-8")
    old = "mailto://127.0.0.1:${STYRKEDJA_SMTP_PORT}?"
    assert old in text
    config = app_env / "secret.yaml"
    config.write_text(text.replace(old, "mailto://styrkedja:${HEMLIGT_LOSEN}@127.0.0.1:${STYRKEDJA_SMTP_PORT}?"))
    monkeypatch.setenv("HEMLIGT_LOSEN", SECRET)
    monkeypatch.setenv("STYRKEDJA_SMTP_PORT", str(_closed_port()))
    caplog.set_level(logging.DEBUG)
    cfg = load_config(config)
    assert SECRET not in repr(cfg)  # the configuration holds the name, not the value
    # ... and the URL a message goes out on carries the value: there is something to leak
    assert SECRET in notify.apprise_url(cfg.channels[0], "x@norrsjo.example")
    _issue(cfg, sqlite_url, app_env / "output")
    result = deliver_outbox(cfg, url=sqlite_url)
    assert result.failed + result.retried > 0, result  # the failure path really ran
    with session_scope(sqlite_url) as s:
        from models.tables import Notification

        errors = [n.last_error for n in s.exec(select(Notification)) if n.last_error]
    assert errors, "no send failed: the test proves nothing"

    exported = archive.export_cycle(cfg, YEAR, app_env / "export.zip")
    with zipfile.ZipFile(exported) as zf:
        archived = b"".join(zf.read(name) for name in zf.namelist())
    logged = "\n".join(r.getMessage() for r in caplog.records) + capfd.readouterr().err
    dumped = repr(db_dump(sqlite_url))
    for where, content in (("logs", logged), ("database", dumped), ("outbox errors", "".join(errors))):
        assert SECRET not in content, f"the password is in the {where}"
    assert SECRET.encode() not in archived, "the password is in the export"


def test_stored_code_hashes_need_the_secret_key_and_old_hashes_still_sign(cfg, db_url, tmp_path, monkeypatch):
    import hashlib

    from tasks import receipts

    first, second = _issue(cfg, db_url, tmp_path)[:2]
    code = code_for(first.key)
    assert code not in first.code_hash and first.code_hash.startswith("h1$")
    # Under another secret key the same code hashes differently: the database alone gives nothing away.
    with monkeypatch.context() as m:
        m.setenv("STYRKEDJA_SECRET_KEY", "another-secret")
        assert receipts._hash_code(first.key, code) != first.code_hash

    # A receipt stored before the HMAC scheme keeps its PBKDF2 hash and still signs with its code.
    legacy = hashlib.pbkdf2_hmac("sha256", code_for(second.key).encode(), second.key.encode(), 20_000).hex()
    with session_scope(db_url) as s:
        row = s.get(Receipt, second.id)
        row.code_hash = legacy
        s.add(row)
    signer = cfg.unit(second.receiver_unit).signatories[0].id
    with pytest.raises(AuthorisationError):
        sign(cfg, SignRequest(second.id, signer, code_for(first.key)), url=db_url)
    sign(cfg, SignRequest(second.id, signer, code_for(second.key).lower()), url=db_url)
    state, signed_by, _ = _state(db_url, second.id)
    assert state == ReceiptState.AGREED and signed_by.startswith(cfg.unit(second.receiver_unit).signatories[0].name)
