"""A database that holds a cycle survives its migrations, on SQLite and PostgreSQL.

The cycle is made by the program itself on a scratch database (a phase distributed and signed, a
dispute answered with a second version, a returned document), then copied row by row with
SQLAlchemy Core into a database at the baseline revision — Core, because the models describe head,
not the baseline. After the upgrade every row reads back through the models unchanged, and the
program goes on working with it. A second test goes down to the baseline and up again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel, select

from config.loader import load_config
from models.db import get_engine, session_scope
from models.migrate import HEAD, alembic_config, current_revision, upgrade
from models.tables import (
    AuditEntry,
    Conclusion,
    Cycle,
    Document,
    Goal,
    Indicator,
    Meeting,
    Milestone,
    Notification,
    NotificationState,
    PhaseRun,
    PortalFailure,
    PortalOperator,
    PortalTokenUse,
    RaisedIssue,
    Receipt,
    ReceiptState,
    Signatory,
    Submission,
    Unit,
    utcnow,
)
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.handoffs import handoffs_for_phase
from tasks.receipts import SignRequest, acknowledge, code_for, dispute, sign

YEAR = 2029
MODELS: list[type[SQLModel]] = [
    Unit,
    Signatory,
    Cycle,
    PhaseRun,
    Milestone,
    Meeting,
    Document,
    Receipt,
    Notification,
    Goal,
    Indicator,
    Submission,
    AuditEntry,
    RaisedIssue,
    Conclusion,
    PortalTokenUse,
    PortalFailure,
    PortalOperator,
]
SCRIPTS = ScriptDirectory.from_config(alembic_config("sqlite://"))
BASELINE = SCRIPTS.get_base()
Rows = dict[str, list[dict[str, Any]]]


def test_every_table_is_checked():
    assert {m.__tablename__ for m in MODELS} == set(SQLModel.metadata.tables)  # type: ignore[attr-defined]
    assert HEAD != BASELINE, "a data migration test needs a revision above the baseline"


# -- the cycle, made by the program -----------------------------------------------------------------


def _signer(cfg: Any, r: Receipt) -> str:
    return cfg.unit(r.receiver_unit).signatories[0].id


def _receipts(url: str, phase: str) -> list[Receipt]:
    with session_scope(url) as s:
        return list(s.exec(select(Receipt).where(Receipt.phase == phase).order_by(Receipt.id)))


def _dump(url: str) -> Rows:
    """Every row of every table, as Core reads it (typed by the models' column types)."""
    out: Rows = {}
    with get_engine(url).connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).mappings()
            out[table.name] = [dict(r) for r in rows]
    return out


@pytest.fixture(scope="module")
def cycle_rows(tmp_path_factory: pytest.TempPathFactory) -> Rows:
    cfg = load_config("region")
    folder = tmp_path_factory.mktemp("source")
    url = f"sqlite:///{folder / 'source.db'}"
    upgrade(url)
    cycle_id = prepare_cycle(cfg, YEAR, url)
    prep = "preparation"
    distribute(cfg, cycle_id, prep, handoffs_for_phase(cfg, YEAR, prep), folder, actor="test", url=url)
    for r in _receipts(url, prep):
        sign(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key), actor="test"), url)
    pf = "planning_prerequisites"
    distribute(cfg, cycle_id, pf, handoffs_for_phase(cfg, YEAR, pf), folder, actor="test", url=url)
    first, second = _receipts(url, pf)[:2]
    dispute(cfg, SignRequest(first.id, _signer(cfg, first), code_for(first.key), comment="Ramen saknas."), url)
    distribute(cfg, cycle_id, pf, handoffs_for_phase(cfg, YEAR, pf), folder, actor="test", url=url)  # version 2
    sign(cfg, SignRequest(second.id, operator_reason="Beslut i protokoll §4", actor="Operatör"), url)
    with session_scope(url) as s:
        third = s.exec(select(Receipt).where(Receipt.phase == pf, Receipt.state == ReceiptState.ISSUED)).first()
        assert third is not None and third.document_id is not None
        s.add(
            Submission(
                document_id=third.document_id, unit_id=third.receiver_unit, file_hash="ab" * 32, content={"s": 1}
            )
        )
        acknowledge(s, third, "registrator")
        s.add(PhaseRun(cycle_id=cycle_id, phase=prep, state="completed", attempts=1, finished_at=utcnow()))
        note = s.exec(select(Notification).order_by(Notification.id)).first()
        assert note is not None
        note.state, note.sent_at, note.attempts = NotificationState.SENT, utcnow(), 1
        s.add(note)
        s.add(
            RaisedIssue(key="k1", cycle_id=cycle_id, occasion_key="delar-2029-08-31", origin_unit="NSH", text="Fråga")
        )
        s.add(
            Conclusion(cycle_id=cycle_id, key="ar/1", occasion_key="ar-2029-12-31", position=1, topic="Mål", text="x")
        )
        # The portal's rows: a used link, a refused one, an operator account.
        s.add(PortalTokenUse(token_id="t" * 32, action="decide", receipt_id=third.id, recipient="x", client="1.2.3.4"))
        s.add(PortalFailure(client="1.2.3.4", receipt_id=third.id, reason="forged"))
        s.add(PortalOperator(username="eva", name="Eva", password_hash="$argon2id$x"))
    rows = _dump(url)
    get_engine(url).dispose()
    assert {r["state"] for r in rows["receipt"]} == {"agreed", "superseded", "issued", "acknowledged"}
    assert all(rows[m.__tablename__] for m in MODELS), "every table holds rows"  # type: ignore[attr-defined]
    return rows


# -- moving between revisions -----------------------------------------------------------------------


def _downgrade(url: str, revision: str) -> None:
    cfg = alembic_config(url)
    with get_engine(url).connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        conn.commit()


def _schema_tables(conn: sa.Connection) -> dict[str, sa.Table]:
    """The tables as the database has them now, with the models' column types where a column is
    known to the models (so dates, aware datetimes and JSON are bound the way the program binds them)."""
    reflected = sa.MetaData()
    reflected.reflect(conn)
    out = {}
    for name, db_table in reflected.tables.items():
        if name == "alembic_version":
            continue
        model_cols = SQLModel.metadata.tables[name].columns if name in SQLModel.metadata.tables else {}
        cols = [
            sa.Column(c.name, model_cols[c.name].type if c.name in model_cols else c.type) for c in db_table.columns
        ]
        out[name] = sa.Table(name, sa.MetaData(), *cols)
    return out


def _columns(url: str) -> set[str]:
    """The columns the database has now, as 'table.column'."""
    with get_engine(url).connect() as conn:
        return {f"{t.name}.{c.name}" for t in _schema_tables(conn).values() for c in t.columns}


def _insert(url: str, rows: Rows) -> None:
    """Insert the rows into the schema the database has now (only the columns it has)."""
    with get_engine(url).begin() as conn:
        tables = _schema_tables(conn)
        for model_table in SQLModel.metadata.sorted_tables:  # parents before children
            if model_table.name not in tables or not rows[model_table.name]:
                continue  # a table a later revision adds
            table = tables[model_table.name]
            names = set(table.columns.keys())
            conn.execute(table.insert(), [{k: v for k, v in r.items() if k in names} for r in rows[table.name]])
        if conn.dialect.name == "postgresql":
            # Explicit ids do not move a serial's sequence; the program's next insert must not collide.
            for model_table in SQLModel.metadata.sorted_tables:
                if model_table.name in tables and isinstance(model_table.c.id.type, sa.Integer):
                    conn.execute(
                        sa.text(
                            f"SELECT setval(pg_get_serial_sequence('{model_table.name}', 'id'), "
                            f"(SELECT max(id) FROM {model_table.name}))"
                        )
                    )


def _read_through_models(url: str) -> Rows:
    out: Rows = {}
    with session_scope(url) as s:
        for model in MODELS:
            pk = next(iter(model.__table__.primary_key.columns))  # type: ignore[attr-defined]
            out[model.__tablename__] = [m.model_dump() for m in s.exec(select(model).order_by(pk))]  # type: ignore[attr-defined]
    return out


def _assert_same(expected: Rows, actual: Rows, held: set[str]) -> None:
    for name, rows in expected.items():
        if not any(h.startswith(f"{name}.") for h in held):
            continue  # a table the older revision does not have: its rows go with it
        want = [{k: v for k, v in r.items() if f"{name}.{k}" in held} for r in rows]
        got = [{k: v for k, v in r.items() if f"{name}.{k}" in held} for r in actual[name]]
        assert got == want, f"table {name} changed in the migration"


def _assert_schema_is_head(url: str) -> None:
    assert current_revision(url) == HEAD
    with get_engine(url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("milestone")}
    assert "ix_milestone_cycle_due" in indexes


def _program_still_works(url: str) -> None:
    """The upgraded data is the program's: an issued receipt is signed with its code, new rows get new ids."""
    cfg = load_config("region")
    open_receipt = next(r for r in _receipts(url, "planning_prerequisites") if r.state == ReceiptState.ISSUED)
    signed = sign(cfg, SignRequest(open_receipt.id, _signer(cfg, open_receipt), code_for(open_receipt.key)), url)
    assert signed.state == ReceiptState.AGREED
    with session_scope(url) as s:
        assert s.exec(select(AuditEntry).where(AuditEntry.subject == open_receipt.key)).first() is not None


def test_upgrade_from_baseline_keeps_the_cycle(db_url: str, cycle_rows: Rows, tmp_path: Path):
    _downgrade(db_url, "base")
    upgrade(db_url, BASELINE)
    assert current_revision(db_url) == BASELINE
    _insert(db_url, cycle_rows)
    held = _columns(db_url)

    upgrade(db_url)

    _assert_schema_is_head(db_url)
    _assert_same(cycle_rows, _read_through_models(db_url), held)
    # 0004: a phase run per follow-up occasion; the rows from before have none ("").
    assert "phaserun.occasion" not in held
    assert [r["occasion"] for r in _read_through_models(db_url)["phaserun"]] == [""] * len(cycle_rows["phaserun"])
    _program_still_works(db_url)


def test_downgrade_from_phase_runs_per_occasion_keeps_the_latest_run_of_a_phase(db_url: str, cycle_rows: Rows):
    """Below 0004 a phase has one run: of two follow-up occasions the later row stays; up again, it
    has the occasion ""."""
    _insert(db_url, cycle_rows)
    cycle_id = cycle_rows["cycle"][0]["id"]
    with session_scope(db_url) as s:
        for occasion in (f"delar-{YEAR}-08-31", f"ar-{YEAR}-12-31"):
            s.add(PhaseRun(cycle_id=cycle_id, phase="follow_up", occasion=occasion, state="waiting", attempts=1))
    with session_scope(db_url) as s:
        latest = max(r.id for r in s.exec(select(PhaseRun).where(PhaseRun.phase == "follow_up")))  # type: ignore[type-var]

    _downgrade(db_url, "0003")
    upgrade(db_url)

    _assert_schema_is_head(db_url)
    with session_scope(db_url) as s:
        rows = {(r.id, r.phase, r.occasion) for r in s.exec(select(PhaseRun))}
    assert rows == {(r["id"], r["phase"], "") for r in cycle_rows["phaserun"]} | {(latest, "follow_up", "")}


def test_downgrade_to_baseline_and_back_keeps_the_cycle(db_url: str, cycle_rows: Rows):
    _insert(db_url, cycle_rows)  # the fixture's database is at head

    _downgrade(db_url, BASELINE)
    assert current_revision(db_url) == BASELINE
    held = _columns(db_url)  # what the baseline keeps is what must come back
    with get_engine(db_url).connect() as conn:
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("milestone")}
        present = set(sa.inspect(conn).get_table_names())
        counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in cycle_rows if t in present}
    assert "ix_milestone_cycle_due" not in indexes
    assert counts == {t: len(rows) for t, rows in cycle_rows.items() if t in present}

    upgrade(db_url)

    _assert_schema_is_head(db_url)
    _assert_same(cycle_rows, _read_through_models(db_url), held)
    _program_still_works(db_url)
