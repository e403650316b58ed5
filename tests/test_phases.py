"""Every phase flow against a real Prefect API: documents, receipts, gates, idempotency."""

from __future__ import annotations

from pathlib import Path

import docx
import openpyxl
import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from sqlmodel import func, select

from config.loader import load_config
from flows.demo_authors import hand_back_all
from flows.registry import PHASE_FLOWS
from models.db import output_root, session_scope
from models.errors import GateNotMetError
from models.tables import AuditEntry, Document, Milestone, Notification, PhaseRun, Receipt
from tasks.followup_calendar import occasions
from tasks.receipts import SIGNABLE, SignRequest, code_for, sign

YEAR = 2028
ORDER = list(PHASE_FLOWS)


def _sign_all(cfg, phase: str) -> int:
    """Every author hands back what it was asked for, then every receiver signs what came back
    (or, for a decision handoff, what was sent)."""
    with session_scope() as s:
        cycle_id = s.exec(select(Receipt.cycle_id).where(Receipt.phase == phase)).first()
    hand_back_all(cfg, cycle_id, phase, output_root() / "returns-typed")
    with session_scope() as s:
        rows = list(s.exec(select(Receipt).where(Receipt.phase == phase, Receipt.state.in_(SIGNABLE))))  # type: ignore[attr-defined]
    for r in rows:
        signer = cfg.unit(r.receiver_unit).signatories[0].id
        sign(cfg, SignRequest(r.id, signer, code_for(r.key), actor="test"))
    return len(rows)


def _deadline_met(cfg, phase: str) -> bool:
    """Whether the phase's receipt-deadline milestone is marked done."""
    key = cfg.phase(phase).receipt_deadline
    with session_scope() as s:
        return s.exec(select(Milestone).where(Milestone.key == key)).one().done_at is not None


def _counts() -> dict[str, int]:
    with session_scope() as s:
        return {
            m.__name__: s.exec(select(func.count()).select_from(m)).one() for m in (Document, Receipt, Notification)
        }


def test_whole_year_phase_by_phase(prefect_api, app_env: Path):
    cfg = load_config("region")
    for phase in ORDER:
        flow_obj = PHASE_FLOWS[phase]
        if phase == "follow_up":
            # An interim occasion completes on its own receipts; the phase's receipt deadline (the
            # annual report to the board) stays open until the annual report's run completes.
            interim = next(o for o in occasions(cfg, YEAR) if o.kind == "interim")
            flow_obj(year=YEAR, config="region", wait=False, occasion=interim.key)
            # Level by level: each pass hands up the levels whose level below has handed back.
            passes = 0
            while _sign_all(cfg, phase):
                done = flow_obj(year=YEAR, config="region", wait=False, occasion=interim.key)
                passes += 1
                assert passes < 8
            assert passes > 1 and done["state"] == "completed" and done["occasion"] == interim.key
            assert _deadline_met(cfg, phase) is False
        first = flow_obj(year=YEAR, config="region", wait=False)
        assert first["state"] == "waiting", phase
        assert first["receipts_total"] > 0 and first["receipts_agreed"] == 0
        assert _sign_all(cfg, phase) == first["receipts_total"]
        if phase == "follow_up":  # the annual report's levels, level by level
            while (first := flow_obj(year=YEAR, config="region", wait=False))["state"] == "waiting":
                _sign_all(cfg, phase)
        if phase == "regional_plan":
            # Staged: the draft to RSAU, then RS, then RF, each run issuing the next stage once the
            # last is agreed; the decided plan reaches the committees only after RF has agreed.
            assert first["receipts_total"] == 1
            for total in (2, 3, 3 + len(cfg.committees())):
                stage = flow_obj(year=YEAR, config="region", wait=False)
                assert stage["state"] == "waiting" and stage["receipts_total"] == total
                assert stage["receipts_agreed"] == total - (len(cfg.committees()) if total > 3 else 1)
                _sign_all(cfg, phase)
            first = stage
        before = _counts()
        second = flow_obj(year=YEAR, config="region", wait=False)
        # the re-run finds everything agreed, creates nothing and completes the phase
        assert second["state"] == "completed", phase
        assert second["receipts_agreed"] == second["receipts_total"] == first["receipts_total"]
        assert second["documents_rendered"] == 0 and _counts() == before

    with session_scope() as s:
        runs = {r.phase: r for r in s.exec(select(PhaseRun))}
        docs = list(s.exec(select(Document)))
    assert set(runs) == set(ORDER) and all(r.state == "completed" for r in runs.values())
    assert all(_deadline_met(cfg, phase) for phase in ORDER)
    assert {d.phase for d in docs} == set(ORDER)
    # every document is a real file that python-docx / openpyxl opens, carrying its identifier
    for d in docs:
        path = output_root() / d.relpath
        assert path.is_file() and path.resolve().is_relative_to(output_root().resolve())
        if d.format == "docx":
            assert docx.Document(str(path)).core_properties.identifier == d.key
        else:
            wb = openpyxl.load_workbook(path)
            assert wb.properties.identifier == d.key

    # the Prefect API lists a completed run for every phase flow
    with get_client(sync_client=True) as client:
        for phase, flow_obj in PHASE_FLOWS.items():
            flow_runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_obj.name])))
            assert any(fr.state and fr.state.is_completed() for fr in flow_runs), phase


def test_gate_stops_a_phase_and_override_is_audited(prefect_api, app_env: Path):
    cfg = load_config("region")
    PHASE_FLOWS["preparation"](year=2029, config="region", wait=False)
    state = PHASE_FLOWS["planning_prerequisites"](year=2029, config="region", wait=False, return_state=True)
    assert state.is_failed()
    with pytest.raises(GateNotMetError) as exc:
        state.result()
    assert "preparation/planeringsunderlag EKO→RS is issued" in str(exc.value)
    with session_scope() as s:
        assert s.exec(select(Receipt).where(Receipt.phase == "planning_prerequisites")).first() is None
        assert s.exec(select(AuditEntry).where(AuditEntry.action == "gate_refused")).first() is not None

    # an override without a reason is refused; with a reason it proceeds and is audited
    state = PHASE_FLOWS["planning_prerequisites"](
        year=2029, config="region", wait=False, override=True, return_state=True
    )
    assert state.is_failed()
    result = PHASE_FLOWS["planning_prerequisites"](
        year=2029, config="region", wait=False, override=True, reason="RS beslutade PF vid extra sammanträde"
    )
    assert result["overridden"] and result["receipts_total"] == len(cfg.committees())
    with session_scope() as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "gate_overridden")).one()
    assert entry.reason == "RS beslutade PF vid extra sammanträde" and entry.phase == "planning_prerequisites"


def test_sign_receipt_flow_signs_and_refuses_like_the_cli(prefect_api, app_env: Path):
    """The sign-receipt deployment's flow: the UI form's path to the same receipt rules."""
    from flows.sign_receipt import sign_receipt
    from models.errors import AuthorisationError

    cfg = load_config("region")
    PHASE_FLOWS["preparation"](year=2032, config="region", wait=False)
    with session_scope() as s:
        r = s.exec(select(Receipt).where(Receipt.phase == "preparation")).one()
    signer = cfg.unit(r.receiver_unit).signatories[0].id
    refused = sign_receipt(receipt_id=r.id, signatory=signer, code="WRONGCOD", config="region", return_state=True)
    assert refused.is_failed()
    with pytest.raises(AuthorisationError, match="wrong one-time code"):
        refused.result()
    result = sign_receipt(
        receipt_id=r.id, signatory=signer, code=code_for(r.key), comment="Bra underlag.", config="region"
    )
    assert result == {"receipt_id": r.id, "state": "agreed", "phase_resumed": False}
    with session_scope() as s:
        assert s.get(Receipt, r.id).comment == "Bra underlag."
        refusals = s.exec(select(AuditEntry).where(AuditEntry.action == "refused_agreed")).all()
    assert len(refusals) == 1 and "wrong one-time code" in refusals[0].reason
