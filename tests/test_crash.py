"""Crash and re-run: the process running a phase is killed (SIGKILL) at several points; running the
phase again leaves every document, receipt and notification exactly once, and every message is
delivered (at least once, with a stable key the receiver de-duplicates on)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from smtp_server import SmtpServer, local_smtp
from sqlmodel import func, select

from config.loader import load_config
from flows.registry import PHASE_FLOWS
from models.db import output_root, session_scope
from models.tables import Document, Notification, NotificationState, Receipt, utcnow
from tasks.notify import deliver_outbox
from tasks.receipts import SignRequest, code_for, sign

ROOT = Path(__file__).resolve().parent.parent
YEAR = 2031
pytestmark = pytest.mark.slow


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    yield from local_smtp(monkeypatch)


def _run(phase: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop("STYRKEDJA_FAULT", None)
    if fault:
        env["STYRKEDJA_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", phase, "--local", "--config", "region", "--year", str(YEAR)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _rows(model) -> list:  # type: ignore[no-untyped-def]
    with session_scope() as s:
        return list(s.exec(select(model).where(model.phase == "planning_prerequisites")))


@pytest.mark.parametrize("fault", ["during_render", "after_record", "after_send"])
def test_killed_phase_reruns_to_exactly_once(prefect_api, app_env: Path, smtp: SmtpServer, fault: str):
    cfg = load_config("region")
    PHASE_FLOWS["preparation"](year=YEAR, config="region", wait=False)
    with session_scope() as s:
        prepared = list(s.exec(select(Receipt).where(Receipt.phase == "preparation")))
    for r in prepared:
        sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)))

    sent_before = len(smtp.box.received_keys())
    crashed = _run("planning-prerequisites", fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    receipts_after_crash = _rows(Receipt)
    if fault == "during_render":
        assert receipts_after_crash == [] and _rows(Document) == []  # files only, nothing recorded
    else:
        assert len(receipts_after_crash) == len(cfg.committees())
    with session_scope() as s:
        pending = s.exec(select(func.count()).select_from(Notification).where(Notification.state == "pending")).one()
    if fault == "after_record":
        assert pending > 0 and smtp.box.received_keys()[sent_before:] == []
    with session_scope() as s:
        marked = set(s.exec(select(Notification.key).where(Notification.state == NotificationState.SENT)))
    in_flight = len([k for k in smtp.box.received_keys()[sent_before:] if k not in marked])
    if fault == "after_send":
        # Sent, then killed before it was marked. The channels send in parallel lanes, so the message
        # in flight is an e-mail (it arrived, unmarked) or the MQTT note (every e-mail that arrived is marked).
        assert in_flight in (0, 1)

    again = _run("planning-prerequisites")
    assert again.returncode == 0, again.stderr[-2000:]

    committees = {c.id for c in cfg.committees()}
    receipts = _rows(Receipt)
    assert sorted(r.receiver_unit for r in receipts) == sorted(committees)
    documents = _rows(Document)
    assert len(documents) == len({d.key for d in documents}) == 2 * len(committees)
    for d in documents:
        assert (output_root() / d.relpath).is_file()
    leftovers = list((output_root() / str(YEAR)).rglob("*.tmp"))
    assert leftovers == [], f"a crash left temporary files: {leftovers}"
    if fault == "after_send":
        # The message in flight keeps its lease (10 minutes) so that no second sender races it;
        # once the lease runs out the next delivery sends it again, under the same key.
        deliver_outbox(cfg, now=utcnow() + timedelta(minutes=11))
    with session_scope() as s:
        outbox = list(s.exec(select(Notification)))
    assert {n.receipt_id for n in outbox} >= {r.id for r in receipts}
    assert all(n.state == NotificationState.SENT for n in outbox)
    assert len(outbox) == len({n.key for n in outbox})
    # every e-mail arrived exactly once, except the one in flight at an after-send crash: it
    # arrived twice, with the same key, for the receiver to de-duplicate
    emailed = sorted(n.key for n in outbox if n.channel_id == "epost")
    duplicates = sorted({k for k in smtp.box.received_keys() if smtp.box.received_keys().count(k) > 1})
    assert sorted(set(smtp.box.received_keys())) == emailed
    assert len(duplicates) == (in_flight if fault == "after_send" else 0)
    assert len(smtp.box.received_keys()) == len(emailed) + len(duplicates)
