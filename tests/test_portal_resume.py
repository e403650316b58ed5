"""The last signature in the portal resumes the waiting phase, as `styrkedja receipt sign` does:
a real Prefect API, the phase served as a deployment and suspended, the receivers sign through the
portal's HTTP endpoints, and the suspended run completes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL
from prefect_server import deployed, run_state, start_serving, stop, wait_for
from sqlmodel import select

from config.loader import load_config
from flows.registry import PHASE_FLOWS, deployment_name
from models.db import session_scope
from models.tables import AuditEntry, Receipt, ReceiptState
from portal.app import create_app
from portal.client import PortalClient
from tasks.portal_tokens import portal_link
from tasks.receipts import SignRequest, code_for, sign

YEAR = 2031
pytestmark = pytest.mark.slow


def _receipts(phase: str) -> list[Receipt]:
    with session_scope() as s:
        return list(s.exec(select(Receipt).where(Receipt.phase == phase).order_by(Receipt.id)))


def test_the_last_signature_in_the_portal_resumes_the_phase(prefect_api, app_env: Path, monkeypatch):
    cfg = load_config("region")
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    monkeypatch.setenv("STYRKEDJA_PORTAL_URL", "http://testserver")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = app_env / "serve.log"
    PHASE_FLOWS["preparation"](year=YEAR, config="region", wait=False)
    for r in _receipts("preparation"):
        sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)))
    serving = start_serving(env, log)
    try:
        wait_for(deployed, 90, "deployments to register", log)
        fr = run_deployment(
            deployment_name(PHASE_FLOWS["planning_prerequisites"]),
            parameters={"year": YEAR, "config": "region"},
            timeout=0,
        )
        wait_for(lambda: run_state(fr.id) == StateType.PAUSED, 120, "the phase to suspend", log)
        rows = _receipts("planning_prerequisites")
        assert rows and all(r.state == ReceiptState.ISSUED for r in rows)
        app = create_app("region")
        for i, r in enumerate(rows):
            with TestClient(app, base_url="http://testserver") as http:
                p = PortalClient.open(portal_link(cfg, r, cfg.unit(r.receiver_unit).signatories[0].id), client=http)
                assert "godkänt" in p.agree(f"Godkänd av nämnden, § {i + 1}")
            if i < len(rows) - 1:
                assert run_state(fr.id) == StateType.PAUSED  # not before the last one
        wait_for(lambda: run_state(fr.id) == StateType.COMPLETED, 180, "the resumed phase to complete", log, fr.id)
    finally:
        stop(serving)
    with session_scope() as s:
        entries = s.exec(select(AuditEntry).where(AuditEntry.action == "receipt_agreed")).all()
    assert len([e for e in entries if e.detail.get("via") == "portalen"]) == len(rows)
    assert all(r.state == ReceiptState.AGREED for r in _receipts("planning_prerequisites"))
