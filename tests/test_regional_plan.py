"""The regional plan: preparation and the RSAU → RS → RF decision, stage by stage.

The draft travels the decision chain as handoffs with receipts; each stage is issued only when the
receipt before it is agreed (the receiving body's decision, its comment the decision text), and
the decided plan goes to the committees only once the assembly has agreed, carrying the three
decisions. On a real database (SQLite and PostgreSQL) and through the phase flow against the real
Prefect API."""

from __future__ import annotations

from datetime import UTC, date
from pathlib import Path
from zoneinfo import ZoneInfo

import docx
import pytest
from sqlmodel import func, select

from config.loader import load_config
from config.schema import OrgConfig
from flows.registry import PHASE_FLOWS
from models.db import get_engine, output_root, session_scope
from models.errors import UserError
from models.tables import Cycle, Document, Notification, Receipt, ReceiptState, Signatory, Unit
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.documents.catalog import documents_for_phase
from tasks.handoffs import DECISION_CHAIN, handoffs_for_phase, planned_decision_day, split_decision
from tasks.receipts import SignRequest, code_for, dispute, sign

YEAR = 2028
PHASE = "regional_plan"
STOCKHOLM = ZoneInfo("Europe/Stockholm")
RSAU_TEXT = "§ 45 RSAU föreslår regionstyrelsen att föreslå regionfullmäktige att fastställa regionplanen."
RS_TEXT = "§ 112 Regionstyrelsen föreslår regionfullmäktige att fastställa regionplan och budget 2028–2031."
RF_TEXT = "§ 34 Regionfullmäktige fastställer regionplan och budget 2028–2031."


@pytest.fixture(scope="module")
def region() -> OrgConfig:
    return load_config("region")


def _receipts(url: str) -> list[Receipt]:
    with session_scope(url) as s:
        return list(s.exec(select(Receipt).where(Receipt.phase == PHASE).order_by(Receipt.id)))


def _current(url: str) -> dict[tuple[str, str, str], Receipt]:
    return {(r.topic, r.sender_unit, r.receiver_unit): r for r in _receipts(url) if r.state != ReceiptState.SUPERSEDED}


def _counts(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        return {
            m.__name__: s.exec(select(func.count()).select_from(m)).one() for m in (Document, Receipt, Notification)
        }


def _pass(cfg: OrgConfig, cycle_id: int, url: str, out: Path):  # type: ignore[no-untyped-def]
    """One pass of the phase: what distribute_phase does on a run and on every resume."""
    return distribute(cfg, cycle_id, PHASE, handoffs_for_phase(cfg, YEAR, PHASE, url=url), out, actor="test", url=url)


def _signer(cfg: OrgConfig, r: Receipt) -> str:
    return cfg.unit(r.receiver_unit).signatories[0].id


def _agree(cfg: OrgConfig, r: Receipt, comment: str | None, url: str) -> Receipt:
    return sign(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key), comment=comment, actor="test"), url)  # type: ignore[arg-type]


def _decision_table(path: Path) -> list[tuple[str, ...]]:
    """The decision record as the committee reads it: the table headed Instans | Datum | Paragraf |
    Beslut | Status, reopened with python-docx."""
    document = docx.Document(str(path))
    for table in document.tables:
        rows = [tuple(c.text.strip() for c in row.cells) for row in table.rows]
        if rows and rows[0] == ("Instans", "Datum", "Paragraf", "Beslut", "Status"):
            return rows[1:]
    raise AssertionError(f"no decision table in {path}")


def _doc_path(url: str, out: Path, kind: str, unit: str, version: int = 1) -> Path:
    with session_scope(url) as s:
        d = s.exec(
            select(Document).where(Document.kind == kind, Document.unit_id == unit, Document.version == version)
        ).one()
    return out / d.relpath


def _day(r: Receipt) -> str:
    at = r.signed_at
    assert at is not None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(STOCKHOLM).date().isoformat()


def test_the_chain_stage_by_stage_then_the_decided_plan(region: OrgConfig, db_url: str, tmp_path: Path) -> None:
    cfg, url, out = region, db_url, tmp_path / "output"
    cycle_id = prepare_cycle(cfg, YEAR, url)
    committees = [c.id for c in cfg.committees()]

    # First pass: only finance's draft to the working committee.
    first = _pass(cfg, cycle_id, url, out)
    assert (first.receipts_issued, first.receipts_total) == (1, 1)
    assert set(_current(url)) == {("plan_beredning", "EKO", "RSAU")}
    # Passes while RSAU has not decided add nothing (a resume after a signature elsewhere, a re-run).
    before = _counts(url)
    again = _pass(cfg, cycle_id, url, out)
    assert (again.receipts_issued, again.documents_rendered) == (0, 0) and _counts(url) == before

    # RSAU decides: the draft goes to RS, carrying RSAU's decision; RF and the committees still wait.
    rsau = _agree(cfg, _current(url)["plan_beredning", "EKO", "RSAU"], RSAU_TEXT, url)
    assert _pass(cfg, cycle_id, url, out).receipts_issued == 1
    assert set(_current(url)) == {("plan_beredning", "EKO", "RSAU"), ("plan_forslag", "RSAU", "RS")}
    rs_draft = _decision_table(_doc_path(url, out, "regionplan_forslag", "RS"))
    assert rs_draft[0][1:] == (_day(rsau), "§ 45", RSAU_TEXT.removeprefix("§ 45 "), "Beslutat")
    assert [r[4] for r in rs_draft[1:]] == ["Planerat", "Planerat"]

    # RS disputes: a new draft version goes to RS (v2 supersedes v1), nothing to RF yet.
    v1 = _current(url)["plan_forslag", "RSAU", "RS"]
    dispute(
        cfg,
        SignRequest(v1.id, _signer(cfg, v1), code_for(v1.key), comment="Investeringsramen för 2029 saknas.", actor="t"),  # type: ignore[arg-type]
        url,
    )
    assert _pass(cfg, cycle_id, url, out).receipts_issued == 1
    current = _current(url)
    v2 = current["plan_forslag", "RSAU", "RS"]
    assert v2.version == 2 and v2.supersedes_id == v1.id and ("plan_beslut", "RS", "RF") not in current
    assert _doc_path(url, out, "regionplan_forslag", "RS", version=2).is_file()

    # RS agrees to v2: the draft goes to RF; the decided plan still reaches no committee.
    rs = _agree(cfg, v2, RS_TEXT, url)
    assert _pass(cfg, cycle_id, url, out).receipts_issued == 1
    assert ("plan_beslut", "RS", "RF") in _current(url)
    assert not [r for r in _receipts(url) if r.topic == "plan_beslutad"]
    with session_scope(url) as s:
        assert s.exec(select(Document).where(Document.kind == "regionplan_beslutad")).first() is None
    rf_draft = _decision_table(_doc_path(url, out, "regionplan_forslag", "RF"))
    planned_rf = planned_decision_day(cfg, YEAR, "RF")
    assert [r[4] for r in rf_draft] == ["Beslutat", "Beslutat", "Planerat"]
    assert rf_draft[2][1] == planned_rf.isoformat() == "2027-06-16"  # type: ignore[union-attr]

    # RF decides: the decided plan goes to every committee, with the three decisions in it.
    rf = _agree(cfg, _current(url)["plan_beslut", "RS", "RF"], RF_TEXT, url)
    result = _pass(cfg, cycle_id, url, out)
    assert result.receipts_issued == len(committees) and result.receipts_total == 3 + len(committees)
    decided = {r.receiver_unit: r for r in _receipts(url) if r.topic == "plan_beslutad"}
    assert set(decided) == set(committees) and all(r.sender_unit == "RF" for r in decided.values())
    names = {u.id: u.name for u in cfg.units}
    for committee in committees:
        table = _decision_table(_doc_path(url, out, "regionplan_beslutad", committee))
        assert table == [
            (names["RSAU"], _day(rsau), "§ 45", RSAU_TEXT.removeprefix("§ 45 "), "Beslutat"),
            (names["RS"], _day(rs), "§ 112", RS_TEXT.removeprefix("§ 112 "), "Beslutat"),
            (names["RF"], _day(rf), "§ 34", RF_TEXT.removeprefix("§ 34 "), "Beslutat"),
        ], committee

    # Re-running the phase now creates nothing twice.
    before = _counts(url)
    again = _pass(cfg, cycle_id, url, out)
    assert (again.receipts_issued, again.documents_rendered, again.receipts_total) == (0, 0, 3 + len(committees))
    assert _counts(url) == before
    get_engine(url).dispose()


def test_the_municipality_follows_the_same_chain_with_its_roles(sqlite_url: str, tmp_path: Path) -> None:
    cfg, url, out = load_config("municipality"), sqlite_url, tmp_path / "output"
    cycle_id = prepare_cycle(cfg, YEAR, url)
    seen: list[tuple[str, str, str]] = []
    for _ in DECISION_CHAIN:
        _pass(cfg, cycle_id, url, out)
        opened = [r for r in _receipts(url) if r.state == ReceiptState.ISSUED]
        assert len(opened) == 1 and opened[0].topic != "plan_beslutad"
        seen.append((opened[0].topic, opened[0].sender_unit, opened[0].receiver_unit))
        _agree(cfg, opened[0], None, url)  # agreed without a comment: decided, with the default wording
    assert seen == [("plan_beredning", "EKO", "KSAU"), ("plan_forslag", "KSAU", "KS"), ("plan_beslut", "KS", "KF")]
    _pass(cfg, cycle_id, url, out)
    decided = [r for r in _receipts(url) if r.topic == "plan_beslutad"]
    assert {r.receiver_unit for r in decided} == {c.id for c in cfg.committees()}
    table = _decision_table(_doc_path(url, out, "regionplan_beslutad", decided[0].receiver_unit))
    assert [(r[0], r[2], r[4]) for r in table] == [
        (cfg.unit("KSAU").name, "", "Beslutat"),
        (cfg.unit("KS").name, "", "Beslutat"),
        (cfg.unit("KF").name, "", "Beslutat"),
    ]
    assert table[2][3] == "Fastställer mål och budget 2028–2031."
    get_engine(url).dispose()


@pytest.mark.parametrize("name", ["region", "municipality"])
def test_the_catalog_names_the_recipients_the_handoffs_use(name: str) -> None:
    cfg = load_config(name)
    from_catalog = {(d.kind, d.unit_id) for d in documents_for_phase(cfg, YEAR, PHASE)}
    from_handoffs = {
        (d.kind, d.unit_id) for h in handoffs_for_phase(cfg, YEAR, PHASE, every_stage=True) for d in h.documents
    }
    assert from_catalog == from_handoffs
    roles = cfg.organisation.roles
    drafts = [u for k, u in sorted(from_catalog) if k == "regionplan_forslag"]
    assert sorted(drafts) == sorted([roles.working_committee, roles.executive_board, roles.assembly])
    # Every stage's receipt is decided by the body that receives that stage's draft.
    for h in handoffs_for_phase(cfg, YEAR, PHASE, every_stage=True):
        assert h.documents[0].unit_id == h.receiver


def test_a_decision_comment_splits_into_paragraph_and_text() -> None:
    assert split_decision("§ 45 RSAU föreslår regionstyrelsen …") == ("§ 45", "RSAU föreslår regionstyrelsen …")
    assert split_decision("  §12:  Fastställer\nplanen.") == ("§ 12", "Fastställer planen.")
    assert split_decision("Fastställer planen.") == ("", "Fastställer planen.")
    assert split_decision(None) == ("", "")


def test_the_phase_flow_walks_the_chain_against_the_prefect_api(prefect_api, app_env: Path) -> None:
    """Run by run as an operator would without a served deployment (wait=False): each run issues the
    next stage once the last one is agreed, waits while anything is open, completes at the end."""
    cfg = load_config("region")
    committees = len(cfg.committees())
    run = PHASE_FLOWS[PHASE]
    kwargs = {"year": YEAR, "config": "region", "wait": False, "override": True, "reason": "test: grinden prövas ej"}
    comments = iter([RSAU_TEXT, RS_TEXT, RF_TEXT])
    totals = []
    for _ in range(4):
        summary = run(**kwargs)
        assert summary["state"] == "waiting"
        totals.append(summary["receipts_total"])
        with session_scope() as s:
            opened = list(s.exec(select(Receipt).where(Receipt.phase == PHASE, Receipt.state == ReceiptState.ISSUED)))
        for r in opened:
            sign(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key), comment=next(comments, None), actor="t"))  # type: ignore[arg-type]
    assert totals == [1, 2, 3, 3 + committees]
    with session_scope() as s:
        before = {m.__name__: s.exec(select(func.count()).select_from(m)).one() for m in (Document, Receipt)}
    final = run(**kwargs)
    assert final["state"] == "completed" and final["receipts_agreed"] == final["receipts_total"] == 3 + committees
    assert final["documents_rendered"] == 0
    with session_scope() as s:
        assert {m.__name__: s.exec(select(func.count()).select_from(m)).one() for m in (Document, Receipt)} == before
        doc = s.exec(select(Document).where(Document.kind == "regionplan_beslutad", Document.unit_id == "HSN")).one()
    table = _decision_table(output_root() / doc.relpath)
    assert [(r[2], r[4]) for r in table] == [("§ 45", "Beslutat"), ("§ 112", "Beslutat"), ("§ 34", "Beslutat")]
    assert table[2][3] == RF_TEXT.removeprefix("§ 34 ")


def test_a_second_organisation_in_one_database_is_refused(region: OrgConfig, db_url: str) -> None:
    """Units carry no organisation: the municipality's KS, EKO, … would rename the region's. Refused
    with one line naming both organisations; every table unchanged."""
    other = load_config("municipality")
    prepare_cycle(region, YEAR, db_url)

    def snapshot() -> tuple[list[tuple[str, str, str | None]], list[tuple[str, str]], list[tuple[str, int]]]:
        with session_scope(db_url) as s:
            units = sorted((u.id, u.name, u.parent_id) for u in s.exec(select(Unit)))
            sigs = sorted((x.unit_id, x.email) for x in s.exec(select(Signatory)))
            cycles = sorted((c.organisation_id, c.year) for c in s.exec(select(Cycle)))
        return units, sigs, cycles

    before = snapshot()
    shared = {u.id for u in region.units} & {u.id for u in other.units}
    assert shared  # the reason it matters: the two samples share unit ids
    with pytest.raises(UserError) as err:
        prepare_cycle(other, YEAR + 1, db_url)
    message = str(err.value)
    assert "\n" not in message and "nothing was written" in message
    assert repr(region.organisation.id) in message and repr(other.organisation.id) in message
    assert snapshot() == before
    # The organisation the database holds goes on as before.
    assert prepare_cycle(region, YEAR + 1, db_url) > 0
    get_engine(db_url).dispose()


def test_before_the_cycle_exists_the_whole_plan_is_listed(region: OrgConfig, sqlite_url: str, tmp_path: Path) -> None:
    """A database without the schema (a calendar exported before `init-db`) or without the plan year's
    cycle stages nothing: every stage is listed, decision record planned. Once the cycle exists (a
    phase run prepares it first) the plan is at its first stage."""
    every = [(h.topic, h.receiver) for h in handoffs_for_phase(region, YEAR, PHASE, every_stage=True)]
    assert every[:3] == [("plan_beredning", "RSAU"), ("plan_forslag", "RS"), ("plan_beslut", "RF")]
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert [(h.topic, h.receiver) for h in handoffs_for_phase(region, YEAR, PHASE, url=empty)] == every
    assert [(h.topic, h.receiver) for h in handoffs_for_phase(region, YEAR, PHASE, url=sqlite_url)] == every
    prepare_cycle(region, YEAR, sqlite_url)
    staged = handoffs_for_phase(region, YEAR, PHASE, url=sqlite_url)
    assert [(h.topic, h.receiver) for h in staged] == [("plan_beredning", "RSAU")]
    assert staged[0].deadline == planned_decision_day(region, YEAR, "RSAU") == date(2027, 5, 17)
    for url in (empty, sqlite_url):
        get_engine(url).dispose()


@pytest.mark.parametrize("stage_already_issued", [False, True], ids=["issued-by-this-run", "issued-by-a-run-before"])
def test_stages_agreed_before_the_run_looks_do_not_end_the_phase_early(
    prefect_api, app_env: Path, monkeypatch: pytest.MonkeyPatch, stage_already_issued: bool
) -> None:
    """A body that signs within a second (between the run's distribution and its look at the
    receipts) must not complete the regional plan at that stage: the same run issues the next
    stage, and so on until the decided plan has reached the committees. Also when the stage signed
    was issued by an earlier run, so this run's own distribution issued nothing."""
    from tasks import phase_steps

    cfg = load_config("region")
    kwargs = {"year": YEAR, "config": "region", "wait": False, "override": True, "reason": "test: snabba beslut"}
    if stage_already_issued:
        assert PHASE_FLOWS[PHASE](**kwargs)["receipts_total"] == 1
    committees = len(cfg.committees())
    comments = iter([RSAU_TEXT, RS_TEXT, RF_TEXT])
    send = phase_steps.send_notifications

    def send_then_sign_at_once(config: str | None) -> dict[str, int]:
        sent = send(config)
        with session_scope() as s:
            opened = list(s.exec(select(Receipt).where(Receipt.phase == PHASE, Receipt.state == ReceiptState.ISSUED)))
        for r in opened:
            sign(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key), comment=next(comments, None), actor="t"))  # type: ignore[arg-type]
        return sent

    monkeypatch.setattr(phase_steps, "send_notifications", send_then_sign_at_once)
    summary = PHASE_FLOWS[PHASE](**kwargs)
    assert summary["state"] == "completed"
    assert summary["receipts_agreed"] == summary["receipts_total"] == 3 + committees
    with session_scope() as s:
        topics = {r.topic for r in s.exec(select(Receipt).where(Receipt.phase == PHASE))}
    assert topics == {*(stage.topic for stage in DECISION_CHAIN), "plan_beslutad"}
