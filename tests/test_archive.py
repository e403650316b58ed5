"""Backup and move of a cycle: export from SQLite, import into PostgreSQL, export from there and
import into SQLite again; every row (modulo ids) and every file comes through. A damaged or altered
archive is refused before anything is written; a cycle is never imported twice."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import pg_schema
from sqlmodel import SQLModel, func, or_, select
from typer.testing import CliRunner

from config.loader import load_config
from flows import cli_archive
from models.db import get_engine, session_scope
from models.errors import UserError
from models.migrate import upgrade
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
    RaisedIssue,
    Receipt,
    ReceiptState,
    Signatory,
    Submission,
    Unit,
    utcnow,
)
from tasks import archive
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.handoffs import handoffs_for_phase
from tasks.receipts import SignRequest, acknowledge, code_for, dispute, sign

YEAR = 2028
OCCASIONS = (f"delar-{YEAR}-08-31", f"ar-{YEAR}-12-31")


@pytest.fixture(scope="module")
def cfg():
    return load_config("region")


def _sqlite(folder: Path, name: str) -> str:
    url = f"sqlite:///{folder / name}"
    upgrade(url)
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """An empty PostgreSQL schema of its own, not migrated (the import migrates it); the shared
    `db_url` fixture gives one backend per test. Skips, or fails in CI, without PostgreSQL."""
    with pg_schema(migrate=False) as url:
        yield url


# -- a cycle in many states, made by the program -----------------------------------------------------


def _signer(cfg, r: Receipt) -> str:  # type: ignore[no-untyped-def]
    return cfg.unit(r.receiver_unit).signatories[0].id


def _receipts(url: str, phase: str) -> list[Receipt]:
    with session_scope(url) as s:
        return list(s.exec(select(Receipt).where(Receipt.phase == phase).order_by(Receipt.id)))


@pytest.fixture(scope="module")
def source(cfg, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(database URL, output folder, archive) of a cycle: preparation agreed; planning prerequisites
    with one receipt disputed and superseded by version 2, one agreed on behalf, one acknowledged with
    a returned document, the rest issued; messages pending, sent and failed; the audit log."""
    folder = tmp_path_factory.mktemp("source")
    url, out = _sqlite(folder, "source.db"), folder / "output"
    cycle_id = prepare_cycle(cfg, YEAR, url)
    prep, pf = "preparation", "planning_prerequisites"
    distribute(cfg, cycle_id, prep, handoffs_for_phase(cfg, YEAR, prep), out, actor="test", url=url)
    for r in _receipts(url, prep):
        sign(cfg, SignRequest(r.id, _signer(cfg, r), code_for(r.key), actor="test"), url)
    distribute(cfg, cycle_id, pf, handoffs_for_phase(cfg, YEAR, pf), out, actor="test", url=url)
    first, second, third = _receipts(url, pf)[:3]
    dispute(cfg, SignRequest(first.id, _signer(cfg, first), code_for(first.key), comment="Ramen för 2029 saknas."), url)
    distribute(cfg, cycle_id, pf, handoffs_for_phase(cfg, YEAR, pf), out, actor="test", url=url)
    sign(cfg, SignRequest(second.id, operator_reason="Beslut i protokoll §12", actor="Eva Operatör"), url)
    with session_scope(url) as s:
        row = s.get(Receipt, third.id)
        assert row is not None and row.document_id is not None
        returned = Submission(document_id=row.document_id, unit_id=row.receiver_unit, file_hash="c0" * 32)
        returned.content = {"rader": [{"konto": "4010", "belopp": 125000.5}], "kommentar": "Åtgärd – klar"}
        s.add(returned)
        acknowledge(s, row, "registrator@norrsjo.se")
        s.add(PhaseRun(cycle_id=cycle_id, phase=prep, state="completed", attempts=1, finished_at=utcnow()))
        for occasion in OCCASIONS:  # the follow-up: a phase run per occasion
            s.add(PhaseRun(cycle_id=cycle_id, phase="follow_up", occasion=occasion, state="waiting", attempts=1))
        sent, failed = s.exec(select(Notification).order_by(Notification.id)).all()[:2]
        sent.state, sent.sent_at, sent.attempts = NotificationState.SENT, utcnow(), 1
        failed.state, failed.attempts, failed.last_error = NotificationState.FAILED, 5, "SMTP 550: mailbox unavailable"
        s.add_all([sent, failed])
        s.add(RaisedIssue(key=f"{cycle_id}/x", cycle_id=cycle_id, occasion_key="x", origin_unit="NSH", text="Fråga"))
        s.add(Conclusion(cycle_id=cycle_id, key="x/1", occasion_key="x", position=1, topic="Mål", text="Slutsats"))
    states = {r.state for r in _receipts(url, pf)}
    assert states == {ReceiptState.SUPERSEDED, ReceiptState.AGREED, ReceiptState.ACKNOWLEDGED, ReceiptState.ISSUED}
    path = archive.export_cycle(cfg, YEAR, folder, url, output_root=out)
    get_engine(url).dispose()
    return url, out, path


# -- comparing two databases modulo ids --------------------------------------------------------------


def _snapshot(url: str, org: str, year: int = YEAR) -> dict[str, list[str]]:
    """Every row of the cycle as canonical JSON: ids dropped, references replaced by natural keys."""
    with session_scope(url) as s:
        cycle = s.exec(select(Cycle).where(Cycle.organisation_id == org, Cycle.year == year)).one()
        goals = {g.id: g.key for g in s.exec(select(Goal).where(Goal.cycle_id == cycle.id))}
        docs = {d.id: d.key for d in s.exec(select(Document).where(Document.cycle_id == cycle.id))}
        receipts = {r.id: r.key for r in s.exec(select(Receipt).where(Receipt.cycle_id == cycle.id))}
        refs = {
            "cycle_id": {cycle.id: "the cycle"},
            "goal_id": goals,
            "document_id": docs,
            "receipt_id": receipts,
            "supersedes_id": receipts,
        }

        def canon(obj: SQLModel) -> str:
            d: dict[str, Any] = obj.model_dump(mode="json")
            if isinstance(d.get("id"), int):
                del d["id"]
            for k, known in refs.items():
                if d.get(k) is not None:
                    d[k] = known[d[k]]  # a KeyError here: a reference that points outside the cycle
            return json.dumps(d, sort_keys=True, ensure_ascii=False)

        def rows(model: type[SQLModel], *where: Any) -> list[str]:
            return sorted(canon(o) for o in s.exec(select(model).where(*where)))

        return {
            "unit": rows(Unit),
            "signatory": rows(Signatory),
            "cycle": [canon(cycle)],
            **{
                m.__tablename__: rows(m, m.cycle_id == cycle.id)  # type: ignore[attr-defined]
                for m in (PhaseRun, Milestone, Meeting, Goal, Document, Receipt, AuditEntry, RaisedIssue, Conclusion)
            },
            "indicator": rows(Indicator, Indicator.goal_id.in_(list(goals))),  # type: ignore[attr-defined]
            "submission": rows(Submission, Submission.document_id.in_(list(docs))),  # type: ignore[attr-defined]
            "notification": rows(
                Notification,
                or_(Notification.cycle_id == cycle.id, Notification.receipt_id.in_(list(receipts))),  # type: ignore[union-attr]
            ),
        }


def _assert_same_cycle(before: dict[str, list[str]], after: dict[str, list[str]]) -> None:
    assert set(before) == set(after) == set(archive.TABLES)
    for table in before:
        if table == "auditentry":
            continue
        assert before[table], f"{table}: the source cycle should hold rows of every kind"
        assert after[table] == before[table], f"{table} differs after the import"
    # The import adds exactly one entry to the audit log: its own.
    added = Counter(after["auditentry"]) - Counter(before["auditentry"])
    assert not Counter(before["auditentry"]) - Counter(after["auditentry"]), "audit entries lost"
    assert [json.loads(a)["action"] for a in added.elements()] == ["cycle_imported"]


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def _row_counts(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        return {t.name: s.exec(select(func.count()).select_from(t)).one() for t in SQLModel.metadata.sorted_tables}


# -- tests -------------------------------------------------------------------------------------------


# The portal's security state (used links, refused links, operator accounts with password hashes)
# belongs to the installation, not to a plan year: it never travels in an archive.
NOT_ARCHIVED = {"portaltokenuse", "portalfailure", "portaloperator"}


def test_every_table_belongs_to_the_archive():
    assert set(archive.TABLES) == set(SQLModel.metadata.tables) - NOT_ARCHIVED


def test_manifest_and_no_secrets(cfg, source):
    url, out, path = source
    manifest = archive.read_manifest(path)
    assert manifest["organisation"]["id"] == cfg.organisation.id and manifest["year"] == YEAR
    assert manifest["schema_revision"] and manifest["missing_files"] == []
    with session_scope(url) as s:
        docs = list(s.exec(select(Document)))
        keys = [r.key for r in s.exec(select(Receipt))]
    assert manifest["counts"]["document"] == len(docs) and manifest["counts"]["receipt"] == len(keys)
    with zipfile.ZipFile(path) as zf:
        for d in docs:
            data = zf.read(f"files/{d.relpath}")
            assert hashlib.sha256(data).hexdigest() == manifest["sha256"][f"files/{d.relpath}"]
            assert data == (out / d.relpath).read_bytes()
        blob = b"".join(zf.read(n) for n in zf.namelist()).decode("utf-8", errors="replace")
    assert "source.db" not in blob and "sqlite:///" not in blob, "no database URL"
    for channel in cfg.channels:
        assert channel.url not in blob, f"channel {channel.id}'s URL must not be exported"
    assert not any(code_for(k) in blob for k in keys), "no one-time code"


@pytest.mark.postgres
def test_sqlite_to_postgres_and_back(cfg, source, pg_url: str, tmp_path: Path):
    src_url, src_out, first = source
    org = cfg.organisation.id

    pg_out = tmp_path / "pg-output"
    result = archive.import_cycle(first, pg_url, pg_out)
    assert (result.organisation_id, result.year, result.files) == (org, YEAR, len(_files(src_out)))
    _assert_same_cycle(_snapshot(src_url, org), _snapshot(pg_url, org))
    assert _files(pg_out) == _files(src_out)  # every file, byte for byte, and no temporary left behind

    # The reverse: from PostgreSQL into an empty SQLite database.
    second = archive.export_cycle(cfg, YEAR, tmp_path / "from-pg.zip", pg_url, output_root=pg_out)
    back_url, back_out = _sqlite(tmp_path, "back.db"), tmp_path / "back-output"
    archive.import_cycle(second, back_url, back_out)
    _assert_same_cycle(_snapshot(pg_url, org), _snapshot(back_url, org))
    assert _files(back_out) == _files(src_out)

    # The restored cycle is alive: an open receipt is signed with the code its e-mail carried.
    issued = next(r for r in _receipts(back_url, "planning_prerequisites") if r.state == ReceiptState.ISSUED)
    assert sign(cfg, SignRequest(issued.id, _signer(cfg, issued), code_for(issued.key)), back_url).state == "agreed"
    v2 = next(r for r in _receipts(back_url, "planning_prerequisites") if r.version == 2)
    with session_scope(back_url) as s:
        old = s.get(Receipt, v2.supersedes_id)
        assert old is not None and old.state == ReceiptState.SUPERSEDED and old.comment == "Ramen för 2029 saknas."
        assert s.get(Document, v2.document_id).version == 2  # type: ignore[union-attr]
    get_engine(back_url).dispose()


def _same_files(a: Path, b: Path) -> None:
    """The same relative paths, every file byte for byte, and nothing else (no temporary left)."""
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert names and names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for rel in names:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_sqlite_to_sqlite_and_again(cfg, source, tmp_path: Path):
    """Without PostgreSQL: a restore into an empty SQLite database, and a restore of that one's export."""
    src_url, src_out, first = source
    org = cfg.organisation.id

    url, out = _sqlite(tmp_path, "restored.db"), tmp_path / "restored-output"
    result = archive.import_cycle(first, url, out)
    assert (result.organisation_id, result.year, result.missing_files) == (org, YEAR, [])
    assert result.files == len(_files(src_out))
    _assert_same_cycle(_snapshot(src_url, org), _snapshot(url, org))
    _same_files(src_out, out)

    second = archive.export_cycle(cfg, YEAR, tmp_path / "again.zip", url, output_root=out)
    again_url, again_out = _sqlite(tmp_path, "again.db"), tmp_path / "again-output"
    archive.import_cycle(second, again_url, again_out)
    _assert_same_cycle(_snapshot(url, org), _snapshot(again_url, org))
    _same_files(src_out, again_out)
    get_engine(url).dispose()
    get_engine(again_url).dispose()


def _as_written_before_occasions(src: Path, dest: Path) -> None:
    """The archive as a version before phase runs per follow-up occasion wrote it: one run per phase,
    no occasion field, schema 0003; the manifest's hashes and counts match it."""
    manifest = archive.read_manifest(src)
    buf = io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "tables/phaserun.json":
                rows = [{k: v for k, v in r.items() if k != "occasion"} for r in json.loads(data) if not r["occasion"]]
                data = json.dumps(rows).encode()
                manifest["sha256"][info.filename] = hashlib.sha256(data).hexdigest()
                manifest["counts"]["phaserun"] = len(rows)
            if info.filename != archive.MANIFEST:
                zout.writestr(info.filename, data)
        zout.writestr(archive.MANIFEST, json.dumps({**manifest, "schema_revision": "0003"}))
    dest.write_bytes(buf.getvalue())


def test_an_archive_from_before_phase_runs_per_occasion_imports(cfg, source, db_url: str, tmp_path: Path):
    _, _, path = source
    old = tmp_path / "old.zip"
    _as_written_before_occasions(path, old)
    archive.import_cycle(old, db_url, tmp_path / "output")
    with session_scope(db_url) as s:
        runs = [(r.phase, r.occasion, r.state) for r in s.exec(select(PhaseRun))]
    assert runs == [("preparation", "", "completed")]


def test_an_archive_of_another_organisation_is_refused(cfg, source, db_url: str, tmp_path: Path):
    """Units are matched by id (the municipality has a KS too): a database of another organisation
    would silently get the archive's cycle hung on its own units. Refused, nothing written."""
    _, _, path = source
    other = load_config("municipality")
    assert other.organisation.id != cfg.organisation.id
    prepare_cycle(other, YEAR, db_url)
    out = tmp_path / "output"
    before = _row_counts(db_url)
    with pytest.raises(UserError) as err:
        archive.import_cycle(path, db_url, out)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path.name}: ")
    assert repr(cfg.organisation.id) in message and repr(other.organisation.id) in message
    assert "nothing was imported" in message
    assert _row_counts(db_url) == before
    assert not out.exists() or _files(out) == {}


def test_an_unreachable_postgres_skips_locally_and_fails_where_it_is_required(monkeypatch: pytest.MonkeyPatch):
    import conftest

    monkeypatch.setattr(conftest, "PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:1/test")  # nobody there
    for name in ("STYRKEDJA_REQUIRE_POSTGRES", "CI"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(pytest.skip.Exception, match="not reachable"), pg_schema():
        pass
    for name, value in (("STYRKEDJA_REQUIRE_POSTGRES", "1"), ("CI", "true")):
        monkeypatch.setenv(name, value)
        with pytest.raises(pytest.fail.Exception, match="required here .* not reachable"), pg_schema():
            pass
        monkeypatch.delenv(name)


def _flip_byte_in_stored_file(src: Path, dest: Path) -> None:
    """One byte changed in a document's data inside the zip: the zip's own CRC no longer matches."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = next(i for i in zf.infolist() if i.filename.startswith("files/") and i.compress_type == 0)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0x01
    dest.write_bytes(bytes(data))


def _alter_member_keep_manifest(src: Path, dest: Path) -> None:
    """A well-formed zip in which one table's JSON has one byte changed; the manifest is the old one."""
    buf = io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "tables/receipt.json":
                i = data.index(b"Ramen")
                data = data[:i] + b"r" + data[i + 1 :]
            zout.writestr(info.filename, data)
    dest.write_bytes(buf.getvalue())


@pytest.mark.parametrize("tamper", [_flip_byte_in_stored_file, _alter_member_keep_manifest], ids=["crc", "sha256"])
def test_altered_archive_is_refused_and_nothing_is_written(source, db_url: str, tmp_path: Path, tamper):
    _, _, good = source
    bad = tmp_path / "bad.zip"
    tamper(good, bad)
    out = tmp_path / "output"
    before = _row_counts(db_url)
    with pytest.raises(UserError) as err:
        archive.import_cycle(bad, db_url, out)
    message = str(err.value)
    assert "\n" not in message and "bad.zip" in message
    assert ("sha256 does not match" in message) if tamper is _alter_member_keep_manifest else ("damaged" in message)
    assert _row_counts(db_url) == before
    assert not out.exists() or _files(out) == {}


def test_a_cycle_is_not_imported_twice_and_a_failed_import_leaves_nothing(cfg, source, db_url: str, tmp_path: Path):
    _, _, path = source
    out = tmp_path / "output"
    archive.import_cycle(path, db_url, out)
    before, files = _row_counts(db_url), _files(out)
    with pytest.raises(UserError, match="already exists in this database; nothing was imported"):
        archive.import_cycle(path, db_url, out)
    assert _row_counts(db_url) == before and _files(out) == files

    # Past the check, a row that collides (a document key) halfway through: all or nothing.
    with session_scope(db_url) as s:
        cycle = s.exec(select(Cycle).where(Cycle.year == YEAR)).one()
        cycle.year = 2099
        s.add(cycle)
    with pytest.raises(UserError, match="do not fit this database"):
        archive.import_cycle(path, db_url, out)
    assert _row_counts(db_url) == before and _files(out) == files  # no temporary file left either


def test_command_line_export_and_import(cfg, source, app_env: Path):
    app = typer.Typer()
    cli_archive.register(app)
    app.command("noop")(lambda: None)  # a group, as the real command line is, so the names are commands
    runner = CliRunner()
    _, _, path = source

    result = runner.invoke(app, ["import", str(path)])
    assert result.exit_code == 0, result.output
    assert f"imported {cfg.organisation.id} {YEAR}" in result.output
    assert _files(app_env / "output")

    out_file = app_env / "again.zip"
    result = runner.invoke(app, ["export", "--year", str(YEAR), "--out", str(out_file), "--config", "region"])
    assert result.exit_code == 0, result.output
    assert "exported" in result.output and out_file.is_file()
    counts = archive.read_manifest(out_file)["counts"]
    assert counts["auditentry"] == archive.read_manifest(path)["counts"]["auditentry"] + 1  # the import, audited

    result = runner.invoke(app, ["import", str(out_file)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "already exists" in result.output

    result = runner.invoke(app, ["export", "--year", "2035", "--out", str(out_file), "--config", "region"])
    assert result.exit_code == 2 and "no cycle for 2035" in result.output
