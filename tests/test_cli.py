"""The command line: helpful --help, one-line errors with exit code 2, nothing written on a mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_tables import table_rows
from typer.testing import CliRunner

from config.loader import SAMPLES
from flows.cli import app

runner = CliRunner()
COMMANDS = [
    [],
    ["run"],
    ["status"],
    ["validate-config"],
    ["demo"],
    ["serve"],
    ["resume"],
    ["down"],
    ["init-db"],
    ["receipt"],
    ["receipt", "list"],
    ["receipt", "show"],
    ["receipt", "sign"],
    ["receipt", "dispute"],
    ["submit"],
    ["inbox"],
    ["watch"],
    ["export"],
    ["import"],
    ["calendar"],
    ["calendar", "export"],
    ["calendar", "check"],
    ["outbox"],
    ["outbox", "list"],
    ["outbox", "send"],
    ["outbox", "retry"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "styrkedja")
def test_every_command_explains_itself(cmd: list[str]):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.split()) > 25


def test_validate_config_on_both_samples():
    for name in ("region", "municipality"):
        result = runner.invoke(app, ["validate-config", name])
        assert result.exit_code == 0, result.output
        assert "ok" in result.output and "Annual wheel" in result.output


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = SAMPLES["region"].read_text(encoding="utf-8")
    assert old in text
    p = tmp_path / "broken.yaml"
    p.write_text(text.replace(old, new, 1), encoding="utf-8")
    return p


def _run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STYRKEDJA_HOME": str(home), "STYRKEDJA_DATABASE_URL": f"sqlite:///{home / 'app.db'}"}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("parent: RS\n", "parent: NOPE\n", "units"),
        ('rule: "10 December"', 'rule: "30 February"', "wheel.milestones"),
        ("name: Regionfullmäktige\n", "name: [unclosed\n", "line"),
    ],
    ids=["unknown unit", "impossible date", "broken yaml"],
)
def test_bad_configuration_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, old: str, new: str, field: str):
    if old not in SAMPLES["region"].read_text(encoding="utf-8"):
        pytest.skip(f"sample changed: {old!r} not found")
    bad = _broken(tmp_path, old, new)
    home = tmp_path / "home"
    home.mkdir()
    for args in (["validate-config", str(bad)], ["run", "preparation", "--config", str(bad), "--local"]):
        proc = _run_cli(args, home)
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in proc.stderr
        assert str(bad) in lines[0] and field in lines[0]
        assert new.split(":")[-1].strip().strip('["') in lines[0] or field == "line"
    assert list(home.iterdir()) == [], "a rejected configuration must write nothing"


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["run", "budgetering", "--local"], "unknown phase 'budgetering'"),
        (["run", "preparation", "--year", "1850", "--local"], "1850 is out of range"),
        (["run", "preparation", "--override", "--local"], "--override needs --reason"),
        (["run", "preparation", "--occasion", "x", "--local"], "only the follow-up phase"),
        (["receipt", "sign", "424242", "--signatory", "x", "--code", "ABCDEFGH"], "no receipt with id 424242"),
        (["receipt", "list", "--state", "lost", "--year", "2028"], "unknown state 'lost'"),
    ],
)
def test_argument_mistakes_exit_2_with_one_line(tmp_path: Path, args: list[str], text: str):
    proc = _run_cli(args, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert text in proc.stderr and "Traceback" not in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1


# -- receipts on the command line, against the application database -----------------------------

YEAR = 2028


@pytest.fixture
def issued(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The planning prerequisites handed to every committee of the sample region: the receipt ids."""
    from sqlmodel import select

    from config.loader import load_config
    from models.db import session_scope
    from models.tables import Receipt
    from tasks.cycle import prepare_cycle
    from tasks.distribution import distribute
    from tasks.handoffs import handoffs_for_phase

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # no Prefect server: nothing to resume
    cfg = load_config("region")
    cycle_id = prepare_cycle(cfg, YEAR)
    phase = "planning_prerequisites"
    distribute(cfg, cycle_id, phase, handoffs_for_phase(cfg, YEAR, phase), app_env / "output", actor="test")
    with session_scope() as s:
        return [r.id for r in s.exec(select(Receipt).order_by(Receipt.id))]  # type: ignore[misc]


def _receipt(receipt_id: int):  # type: ignore[no-untyped-def]
    from models.db import session_scope
    from models.tables import Receipt

    with session_scope() as s:
        r = s.get(Receipt, receipt_id)
        assert r is not None
        s.expunge(r)
        return r


def _audit(action: str) -> list:  # type: ignore[type-arg]
    from sqlmodel import select

    from models.db import session_scope
    from models.tables import AuditEntry

    with session_scope() as s:
        rows = list(s.exec(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))
        for row in rows:
            s.expunge(row)
        return rows


def _signatory(receipt_id: int) -> tuple[str, str]:
    from config.loader import load_config

    signatory = load_config("region").unit(_receipt(receipt_id).receiver_unit).signatories[0]
    return signatory.id, signatory.name


def test_receipt_sign_with_the_signatory_and_one_time_code(issued: list[int]) -> None:
    from tasks.receipts import code_for

    rid = issued[0]
    r = _receipt(rid)
    signatory, name = _signatory(rid)
    result = runner.invoke(
        app, ["receipt", "sign", str(rid), "--signatory", signatory, "--code", code_for(r.key), "--config", "region"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"receipt {rid}: agreed by {name} ({r.receiver_unit})"
    after = _receipt(rid)
    assert (after.state, after.signed_by, after.code_hash) == ("agreed", f"{name} ({r.receiver_unit})", None)
    assert [(a.subject, a.actor) for a in _audit("receipt_agreed")] == [(r.key, f"{name} ({r.receiver_unit})")]

    # The code is single use: the same command again is refused in one line, nothing changes.
    again = runner.invoke(
        app, ["receipt", "sign", str(rid), "--signatory", signatory, "--code", code_for(r.key), "--config", "region"]
    )
    assert again.exit_code == 2 and again.stdout == ""
    assert again.stderr.strip() == f"error: receipt {rid}: already agreed; nothing was changed"
    assert _receipt(rid).signed_at == after.signed_at


def test_receipt_dispute_needs_a_comment_refused_and_audited_without_one(issued: list[int]) -> None:
    from tasks.receipts import code_for

    rid = issued[1]
    r = _receipt(rid)
    signatory, name = _signatory(rid)
    base = ["receipt", "dispute", str(rid), "--signatory", signatory, "--code", code_for(r.key), "--config", "region"]

    refused = runner.invoke(app, base)
    assert refused.exit_code == 2 and refused.stdout == ""
    message = f"receipt {rid}: a dispute needs a comment saying what must change"
    assert refused.stderr.strip() == f"error: {message}"
    assert _receipt(rid).state == "issued" and _receipt(rid).code_hash == r.code_hash  # unchanged, code unused
    assert [(a.subject, a.reason) for a in _audit("refused_disputed")] == [(f"receipt {rid}", message)]
    assert _audit("receipt_disputed") == []

    disputed = runner.invoke(app, [*base, "--comment", "Ramen saknar indexuppräkning för läkemedel."])
    assert disputed.exit_code == 0, disputed.output
    assert disputed.output.strip() == f"receipt {rid}: disputed by {name} ({r.receiver_unit})"
    after = _receipt(rid)
    assert (after.state, after.comment) == ("disputed", "Ramen saknar indexuppräkning för läkemedel.")
    assert [a.detail["comment"] for a in _audit("receipt_disputed")] == [after.comment]


def test_sign_dispute_and_resume_hand_the_users_configuration_to_the_resume(
    issued: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume may start the phase again from its deployment: with the --config the user gave
    (before: the default configuration), and for the occasion of the receipt ("" outside the follow-up)."""
    from flows import local_server
    from tasks import waiting
    from tasks.receipts import code_for

    calls: list[tuple[str, dict[str, object]]] = []

    def resume_if_ready(cycle_id: int, phase: str, actor: str, **kwargs: object) -> bool:
        calls.append((phase, kwargs))
        return True

    monkeypatch.setattr(waiting, "resume_if_ready", resume_if_ready)
    monkeypatch.setattr(local_server, "is_healthy", lambda *a, **k: True)
    signed, disputed = issued[:2]

    def by_signatory(rid: int) -> list[str]:
        return ["--signatory", _signatory(rid)[0], "--code", code_for(_receipt(rid).key)]

    commands = [
        ["receipt", "sign", str(signed), *by_signatory(signed)],
        ["receipt", "dispute", str(disputed), *by_signatory(disputed), "--comment", "Fel ram."],
        ["resume", "planning-prerequisites", "--reason", "Beslut i RS § 4", "--year", str(YEAR)],
    ]
    for args in commands:
        result = runner.invoke(app, [*args, "--config", "region"])
        assert result.exit_code == 0, result.output
        assert "resumed" in result.output
    assert [(phase, kw["config"], kw["occasion"]) for phase, kw in calls] == [
        ("planning_prerequisites", "region", "")
    ] * 3


def test_receipt_list_and_show_print_what_the_database_holds(issued: list[int], monkeypatch) -> None:
    from config.loader import load_config
    from flows import cli
    from tasks.receipts import SignRequest, code_for, dispute, sign, step_text

    monkeypatch.setattr(cli.out, "width", 200)  # the parser reads whole cells: no header wraps
    cfg = load_config("region")
    agreed, disputed = issued[0], issued[1]
    sign(cfg, SignRequest(agreed, _signatory(agreed)[0], code_for(_receipt(agreed).key), comment="Tydligt."))
    dispute(cfg, SignRequest(disputed, _signatory(disputed)[0], code_for(_receipt(disputed).key), comment="Fel ram."))

    listed = runner.invoke(app, ["receipt", "list", "--year", str(YEAR), "--config", "region"])
    assert listed.exit_code == 0, listed.output
    shown = table_rows(listed.output)
    expected = []
    for rid in issued:
        r = _receipt(rid)
        expected.append(
            {
                "id": str(r.id),
                "fas": "Planeringsförutsättningar",
                "ämne": r.topic,
                "från": r.sender_unit,
                "till": r.receiver_unit,
                "version": "1",
                "status": step_text(r.mode, r.state),
                "sista dag": r.deadline.isoformat(),
                "signerad av": r.signed_by or "",
                "kommentar": r.comment or "",
            }
        )
    assert shown == expected
    # Planning prerequisites are a decision handoff: an open receipt waits for the receiver's signature.
    assert [row["status"] for row in shown[:2]] == ["godkänd", "väntar på ny version"]
    assert {row["status"] for row in shown[2:]} == {"väntar på kvittens"} and len(shown) > 2

    only_agreed = table_rows(runner.invoke(app, ["receipt", "list", "--state", "agreed", "--config", "region"]).output)
    assert [row["id"] for row in only_agreed] == [str(agreed)]
    unit = _receipt(disputed).receiver_unit
    of_unit = table_rows(runner.invoke(app, ["receipt", "list", "--unit", unit, "--config", "region"]).output)
    assert [row["id"] for row in of_unit] == [str(disputed)]

    r = _receipt(disputed)
    show = runner.invoke(app, ["receipt", "show", str(disputed), "--config", "region"])
    assert show.exit_code == 0, show.output
    fields = {
        cells[0]: cells[1]
        for cells in (ln.strip("│ ").split("│") for ln in show.output.splitlines())
        if len(cells) == 2
    }
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["key"] == r.key
    assert fields["handoff"] == f"{r.sender_unit} → {r.receiver_unit} (down)"
    assert (fields["phase"], fields["version"], fields["state"]) == ("planning_prerequisites", "1", "disputed")
    assert fields["content hash"] == r.content_hash and fields["deadline"] == r.deadline.isoformat()
    assert fields["signed by"].startswith(r.signed_by) and fields["comment"] == "Fel ram."
    assert fields["document"].endswith(".docx") and r.receiver_unit in fields["document"]
    history = [ln.split(" by ")[0].split()[-1] for ln in show.output.splitlines() if ln.startswith("  20")]
    assert history == ["receipt_issued", "receipt_disputed"]


# -- the gate, when the phase is triggered through its deployment -----------------------------------


def _flow_runs(deployment_id: object) -> list:  # type: ignore[type-arg]
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def test_run_through_the_deployment_refuses_a_gate_not_met_like_a_run_here(
    prefect_api: None, issued: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`styrkedja run` with deployments registered takes the deployment path; the gate is checked
    before anything is triggered, with the same one-line list of missing receipts as --local."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL

    from config.loader import load_config
    from flows import local_server
    from flows.registry import OTHER_FLOWS, PHASE_FLOWS
    from models.db import session_scope
    from tasks.receipts import SignRequest, code_for, gate_missing, sign

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the CLI finds this server
    flows = (OTHER_FLOWS["sign_receipt"], PHASE_FLOWS["committee_feedback"])
    deployment_ids = [f.to_deployment(name=f.name).apply() for f in flows]
    assert local_server.is_healthy() and local_server.deployments_registered()
    cfg = load_config("region")
    agreed = _receipt(issued[0])
    sign(cfg, SignRequest(agreed.id, _signatory(agreed.id)[0], code_for(agreed.key)))  # type: ignore[arg-type]
    with session_scope() as s:
        missing = gate_missing(s, agreed.cycle_id, "committee_feedback")
    assert len(missing) == len(issued) - 1 and all(" is issued, due 2027-03-23" in m for m in missing)

    try:
        args = ["run", "committee-feedback", "--year", str(YEAR), "--config", "region"]
        through = runner.invoke(app, args)
        assert through.exit_code == 2, through.output
        assert through.stdout == "" and "triggered" not in through.output
        lines = through.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"error: phase 'committee_feedback' cannot start: {len(missing)} receipt(s) missing: "
        )
        assert all(m in lines[0] for m in missing) and lines[0].endswith(
            '(use --override --reason "..." to proceed anyway)'
        )
        assert _flow_runs(deployment_ids[1]) == []  # nothing triggered
        refusals = _audit("gate_refused")
        assert [(a.phase, a.cycle_id, a.detail["missing"]) for a in refusals] == [
            ("committee_feedback", agreed.cycle_id, missing)
        ]

        # The same refusal as the phase gives in this process.
        here = runner.invoke(app, [*args, "--local"])
        assert here.exit_code == 2, here.output
        assert here.stderr == through.stderr
        assert len(_audit("gate_refused")) == 2

        # A plan year without a cycle: every receipt of the phase before is missing.
        fresh = runner.invoke(app, ["run", "committee-feedback", "--year", str(YEAR + 1), "--config", "region"])
        assert fresh.exit_code == 2
        assert fresh.stderr.strip() == (
            "error: phase 'committee_feedback' cannot start: 1 receipt(s) missing: planning_prerequisites: no "
            "receipts issued yet (run phase 'planning_prerequisites' first) "
            '(use --override --reason "..." to proceed anyway)'
        )
        assert [(a.phase, a.cycle_id) for a in _audit("gate_refused")][2:] == [("committee_feedback", None)]

        # With an override and a reason the deployment is triggered; its run audits the override.
        overridden = runner.invoke(app, [*args, "--override", "--reason", "Beslut i RS 2027-04-02", "--no-wait"])
        assert overridden.exit_code == 0, overridden.output
        assert overridden.output.startswith(f"triggered committee_feedback for {YEAR}: flow run ")
        runs = _flow_runs(deployment_ids[1])
        assert len(runs) == 1 and str(runs[0].id) in overridden.output
        assert runs[0].parameters["override"] is True and runs[0].parameters["reason"] == "Beslut i RS 2027-04-02"
        assert len(_audit("gate_refused")) == 3  # the override is no refusal
    finally:
        with get_client(sync_client=True) as client:  # nobody serves these: leave no run behind
            for run in _flow_runs(deployment_ids[1]):
                client.delete_flow_run(run.id)
            for deployment_id in deployment_ids:
                client.delete_deployment(deployment_id)
