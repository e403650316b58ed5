"""A fill-in handoff as people meet it, through the served follow-up deployment, a real Prefect API
and a real SMTP server: each unit is asked for its own return (the template by e-mail), the
parent cannot sign before the return is in, reminders go to whoever owes the next step (the unit
before its return, the parent after), the return is delivered to the parent with its code, and
the last signature resumes the waiting run, which climbs the chain level by level to completion."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL
from prefect_server import deployed, run_state, start_serving, stop, wait_for
from smtp_server import SmtpServer, local_smtp
from sqlmodel import select
from test_follow_up_chain import _trimmed_config
from test_suspend_resume import _up_the_chain
from typer.testing import CliRunner

from config.loader import load_config
from flows.cli import app
from flows.demo_authors import fill_docx, fill_xlsx, hand_back_all
from flows.registry import PHASE_FLOWS, deployment_name
from models.db import output_root, session_scope
from models.tables import AuditEntry, Notification, Receipt, ReceiptState
from tasks.deadlines import run_watch
from tasks.followup_calendar import find_occasion
from tasks.notify import KEY_HEADER, deliver_outbox
from tasks.receipts import SignRequest, code_for, current_receipts, sign
from tasks.returns import exchange_counts, fill_in_documents

YEAR = 2030
pytestmark = pytest.mark.slow
_CODE = re.compile(r"Er engångskod: ([A-Z0-9]{8})")


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    yield from local_smtp(monkeypatch)


def _mails_to(smtp: SmtpServer, address: str) -> list:  # type: ignore[type-arg]
    return [m.message for m in smtp.box.mails if address in m.envelope_to]


def _text(message) -> str:  # type: ignore[no-untyped-def]
    return message.get_body(("plain",)).get_content()


def _about(message, receipt_id: int) -> bool:  # type: ignore[no-untyped-def]
    return re.search(rf"Kvittens-id: {receipt_id}\b", _text(message)) is not None


def _receipt(rid: int) -> Receipt:
    with session_scope() as s:
        return s.get(Receipt, rid)  # type: ignore[return-value]


def test_a_follow_up_occasion_asks_each_unit_and_agrees_on_what_came_back(
    prefect_api, app_env: Path, monkeypatch: pytest.MonkeyPatch, smtp: SmtpServer
):
    config = str(_trimmed_config(app_env))
    cfg = load_config(config)
    occasion = find_occasion(cfg, YEAR, f"delar-{YEAR}-08-31")
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "1", "STYRKEDJA_RENDER_WORKERS": "1"}
    log = app_env / "serve.log"
    serving = start_serving(env, log)
    try:
        wait_for(deployed, 90, "deployments to register", log)
        params = {"year": YEAR, "config": config, "occasion": occasion.key, "override": True}
        fr = run_deployment(
            deployment_name(PHASE_FLOWS["follow_up"]),
            parameters={**params, "reason": "Aktivitetsplanerna beslutades på papper i december"},
            timeout=0,
        )
        wait_for(lambda: run_state(fr.id) == StateType.PAUSED, 120, "the occasion to suspend", log, fr.id)
        with session_scope() as s:
            receipts = current_receipts(s, _receipt_cycle(), "follow_up", occasion.key)
            asked = {r.id: [d.relpath for d in fill_in_documents(s, r)] for r in receipts}
        assert receipts and all(r.mode == "fill_in" and r.state == ReceiptState.ISSUED for r in receipts)

        # 1. The request: each unit gets its own two templates, at its own address; no parent has
        #    been sent anything to sign yet.
        for r in receipts:
            unit = cfg.unit(r.sender_unit)
            [request] = [m for m in _mails_to(smtp, unit.contacts[0].address) if r.key.split("->")[0] in m[KEY_HEADER]]
            assert str(request["Subject"]).startswith("Fyll i och lämna tillbaka")
            names = sorted(part.get_filename() for part in request.iter_attachments())
            assert names == sorted(Path(p).name for p in asked[r.id]) and len(names) == 2
            assert all(n.startswith(f"{unit.id}_") for n in names)
            assert "engångskod" not in _text(request) and "styrkedja" not in _text(request)
        assert not [m for m in smtp.box.mails if "Er engångskod" in _text(m.message)]

        # 2. The parent's early signature is refused, naming what is missing; nothing changes.
        r = next(x for x in receipts if cfg.unit(x.sender_unit).parent not in (None, cfg.organisation.roles.assembly))
        parent = cfg.unit(r.receiver_unit)
        before = _receipt(r.id)
        args = ["receipt", "sign", str(r.id), "--signatory", parent.signatories[0].id, "--code", "ABCDEFGH"]
        refused = CliRunner().invoke(app, [*args, "--config", config])
        assert refused.exit_code == 2 and "wrong one-time code" in refused.output  # a guess is refused first
        right = [*args[:-1], code_for(r.key), "--config", config]
        refused = CliRunner().invoke(app, right)
        assert refused.exit_code == 2, refused.output
        assert "väntar på retur från" in refused.output and cfg.unit(r.sender_unit).name in refused.output
        assert "Traceback" not in refused.output
        after = _receipt(r.id)
        assert (after.state, after.signed_by, after.code_hash, after.updated_at) == (
            before.state,
            before.signed_by,
            before.code_hash,
            before.updated_at,
        )
        with session_scope() as s:
            assert s.exec(select(AuditEntry).where(AuditEntry.action == "refused_agreed")).all()

        # 3. Before the return: the reminder goes to the unit that owes it, not to the parent.
        week_before = occasion.deadline - timedelta(days=7)
        run_watch(cfg, as_of=week_before)
        with session_scope() as s:
            reminders = list(s.exec(select(Notification).where(Notification.receipt_id == r.id)))
        due = [n for n in reminders if "/remind-7d/" in n.key]
        assert due and {n.recipient_unit for n in due} == {r.sender_unit}
        assert all(n.subject.startswith("Påminnelse: lämna tillbaka") for n in due)

        # The unit fills in its two documents and hands them back on the command line: the return is
        # stored, the receipt now names the returned content, and the parent receives it with a code.
        folder = app_env / "typed"
        folder.mkdir()
        unit_name = cfg.unit(r.sender_unit).name
        for relpath in asked[r.id]:
            src, dst = output_root() / relpath, folder / Path(relpath).name
            (fill_docx if dst.suffix == ".docx" else lambda a, b, n: fill_xlsx(a, b, n, YEAR))(src, dst, unit_name)
            handed = CliRunner().invoke(app, ["submit", str(dst), "--config", config])
            assert handed.exit_code == 0, handed.output
        returned = _receipt(r.id)
        assert returned.state == ReceiptState.ACKNOWLEDGED and returned.content_hash != before.content_hash
        deliveries = [m for m in _mails_to(smtp, parent.signatories[0].email) if _about(m, r.id)]
        assert deliveries and "har lämnat in" in str(deliveries[-1]["Subject"])
        code = _CODE.search(_text(deliveries[-1])).group(1)  # type: ignore[union-attr]
        assert {p.get_filename() for p in deliveries[-1].iter_attachments()} == {
            Path(p).name for p in _returned_files(r.id)
        }

        # After the return: the reminder goes to the parent, who must now sign.
        run_watch(cfg, as_of=occasion.deadline - timedelta(days=1))
        with session_scope() as s:
            reminders = list(
                s.exec(
                    select(Notification).where(Notification.receipt_id == r.id, Notification.key.like("%remind-1d%"))
                )  # type: ignore[attr-defined]
            )
        assert reminders and {n.recipient_unit for n in reminders} == {r.receiver_unit}
        assert all(n.subject.startswith("Påminnelse: kvittera") for n in reminders)
        deliver_outbox(cfg, base_dir=output_root())

        # 4. Everyone else hands in, every parent signs with the code from its e-mail; the last
        #    signature (this one, on the command line) resumes the run.
        cycle_id = returned.cycle_id
        hand_back_all(cfg, cycle_id, "follow_up", folder, topic_prefix=f"uppfoljning-{occasion.key}")
        deliver_outbox(cfg, base_dir=output_root())
        for x in receipts:
            if x.id == r.id:
                continue
            signer = cfg.unit(x.receiver_unit).signatories[0]
            mail = [m for m in _mails_to(smtp, signer.email) if _about(m, x.id)][-1]
            mailed = _CODE.search(_text(mail)).group(1)  # type: ignore[union-attr]
            sign(cfg, SignRequest(x.id, signer.id, mailed, actor=f"test:{signer.id}"))
        assert run_state(fr.id) == StateType.PAUSED  # one receipt still open: nobody resumed it
        last = CliRunner().invoke(
            app,
            ["receipt", "sign", str(r.id), "--signatory", parent.signatories[0].id, "--code", code, "--config", config],
        )
        assert last.exit_code == 0 and f"phase follow_up {occasion.key} resumed" in last.output, last.output
        assert _up_the_chain(cfg, cycle_id, occasion.key, fr.id, folder, log, config) >= 2
        with session_scope() as s:
            exchange = exchange_counts(s, cycle_id, "follow_up", occasion.key)
            assert all(x.state == ReceiptState.AGREED for x in current_receipts(s, cycle_id, "follow_up", occasion.key))
        assert exchange.agreed_without_return == 0 and exchange.returns >= 2 * exchange.requests
    finally:
        stop(serving)


def _receipt_cycle() -> int:
    with session_scope() as s:
        return s.exec(select(Receipt.cycle_id)).first()  # type: ignore[return-value]


def _returned_files(receipt_id: int) -> list[str]:
    from models.tables import Submission

    with session_scope() as s:
        r = s.get(Receipt, receipt_id)
        docs = fill_in_documents(s, r)  # type: ignore[arg-type]
        out = []
        for d in docs:
            sub = s.exec(
                select(Submission).where(Submission.document_id == d.id).order_by(Submission.id.desc())
            ).first()  # type: ignore[attr-defined]
            out.append(sub.relpath)  # type: ignore[union-attr]
    return out
