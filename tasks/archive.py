"""Backup and move of one cycle: every row that belongs to it and its documents' files, in one zip.

    manifest.json          format and version, schema revision, organisation, year, row counts,
                           the sha256 of every other member, files missing at export
    tables/<table>.json    the rows of each table as a JSON list, columns by name, ids as in the source
    files/<relpath>        the documents (and message attachments) from the output folder

What is in it: the cycle, its phase runs, milestones, meetings, goals and indicators, documents,
receipts (with the salted hash of an open receipt's one-time code, so that a restored receipt can
still be signed under the same STYRKEDJA_SECRET_KEY), returned documents, the outbox and the audit
log of the cycle, and the organisation's units and signatories. What is not: channel URLs and their
secrets (they live in the configuration and the environment, never in the database), the one-time
codes themselves (derived from the secret key when a message is sent), Prefect's runs (a phase
run's `flow_run_id` is kept as history).

An import goes into a database that does not hold the cycle and holds no other organisation (a
database is one organisation's; the archive's units are matched to the database's by id): it
verifies every member's hash before it touches anything, inserts all rows in one transaction with
new ids (foreign keys remapped), and moves the files into the output folder only after that
transaction committed, each by an atomic rename. Ids inside audit-log details (`receipt_id`,
`supersedes`) are kept as recorded: the audit log is history. A receipt's `key`, which the audit
log names as its subject, is the same everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session, SQLModel, select

from config.schema import OrgConfig
from models import db
from models.errors import UserError
from models.migrate import HEAD, upgrade
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
    PhaseRun,
    RaisedIssue,
    Receipt,
    Signatory,
    Submission,
    Unit,
)
from tasks.audit import audit

FORMAT = "styrkedja-cycle-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 1 << 20

# Parents before children: the order of export, verification and insertion.
MODELS: list[type[SQLModel]] = [
    Unit,
    Signatory,
    Cycle,
    PhaseRun,
    Milestone,
    Meeting,
    Goal,
    Indicator,
    Document,
    Receipt,
    Submission,
    Notification,
    AuditEntry,
    RaisedIssue,
    Conclusion,
]
TABLES = [m.__tablename__ for m in MODELS]  # type: ignore[attr-defined]
# Already compressed (docx and xlsx are zip files): stored as they are.
_STORED_SUFFIXES = {".docx", ".xlsx", ".pdf", ".zip", ".png", ".jpg"}


def _table(model: type[SQLModel]) -> sa.Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]


def _cycle_rows(conn: sa.Connection, cycle_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every row of the cycle, read in the caller's transaction (one snapshot)."""
    t = {m.__tablename__: _table(m) for m in MODELS}  # type: ignore[attr-defined]
    goal_ids = sa.select(t["goal"].c.id).where(t["goal"].c.cycle_id == cycle_id)
    doc_ids = sa.select(t["document"].c.id).where(t["document"].c.cycle_id == cycle_id)
    receipt_ids = sa.select(t["receipt"].c.id).where(t["receipt"].c.cycle_id == cycle_id)
    n = t["notification"].c
    where: dict[str, Any] = {
        "unit": sa.true(),  # the organisation: the configuration is its master, but a restore needs it
        "signatory": sa.true(),
        "cycle": t["cycle"].c.id == cycle_id,
        "indicator": t["indicator"].c.goal_id.in_(goal_ids),
        "submission": t["submission"].c.document_id.in_(doc_ids),
        "notification": sa.or_(n.cycle_id == cycle_id, n.receipt_id.in_(receipt_ids)),
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for name, table in t.items():
        condition = where.get(name, table.c.cycle_id == cycle_id if "cycle_id" in table.c else None)
        assert condition is not None, f"no rule for which rows of {name} belong to a cycle"
        query = sa.select(table).where(condition).order_by(*table.primary_key.columns)
        out[name] = [{k: _encode(v) for k, v in row.items()} for row in conn.execute(query).mappings()]
    return out


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):  # before date: a datetime is a date
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _decode(column: sa.Column[Any], value: Any) -> Any:
    if value is None:
        return None
    type_ = column.type
    if isinstance(type_, sa.types.TypeDecorator):  # UTCDateTime: its python_type is `object`
        type_ = type_.impl_instance
    try:
        kind = type_.python_type
    except NotImplementedError:
        return value
    if kind is datetime:
        return datetime.fromisoformat(value)
    if kind is date:
        return date.fromisoformat(value)
    return value


def _safe_relpath(relpath: str) -> str:
    """A path relative to the output folder that stays inside it, in POSIX form."""
    p = PurePosixPath(relpath.replace("\\", "/"))
    if not relpath or p.is_absolute() or ".." in p.parts or p.parts[0].endswith(":"):
        raise UserError(f"archive: file path {relpath!r} is not inside the output folder")
    return p.as_posix()


def _snapshot_engine(url: str) -> sa.Engine:
    engine = db.get_engine(url)
    if engine.dialect.name == "postgresql":
        # One snapshot for all tables: a phase writing meanwhile cannot half-appear in the archive.
        return engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    return engine  # SQLite: the engine begins every transaction IMMEDIATE, which excludes writers


def export_cycle(
    cfg: OrgConfig, year: int, dest: Path, url: str | None = None, *, output_root: Path | None = None
) -> Path:
    """Write the cycle of `year` to one archive; `dest` is the file, or a folder to put it in."""
    url = url or db.database_url()
    out_root = Path(output_root or db.output_root())
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / f"styrkedja-{cfg.organisation.id}-{year}.zip"
    if not dest.parent.is_dir():
        raise UserError(f"--out: folder {str(dest.parent)!r} does not exist")
    engine = _snapshot_engine(url)
    with engine.connect() as conn, conn.begin():
        cycle_id = conn.execute(
            sa.select(_table(Cycle).c.id).where(
                _table(Cycle).c.organisation_id == cfg.organisation.id, _table(Cycle).c.year == year
            )
        ).scalar()
        if cycle_id is None:
            raise UserError(f"--year: no cycle for {year} of {cfg.organisation.id} in the database")
        rows = _cycle_rows(conn, cycle_id)

    relpaths = sorted(
        {_safe_relpath(d["relpath"]) for d in rows["document"]}
        | {_safe_relpath(s["relpath"]) for s in rows["submission"] if s.get("relpath")}
        | {_safe_relpath(p) for n in rows["notification"] if n["attachment"] for p in n["attachment"].split("\n")}
    )
    hashes: dict[str, str] = {}
    missing: list[str] = []
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".~{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in TABLES:
                data = json.dumps(rows[name], ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
                member = f"tables/{name}.json"
                zf.writestr(member, data)
                hashes[member] = hashlib.sha256(data).hexdigest()
            for rel in relpaths:
                src = out_root / rel
                if not src.is_file():
                    missing.append(rel)  # recorded in the manifest, not fatal: a backup without one file beats none
                    continue
                member = f"files/{rel}"
                hashes[member] = _copy_into_zip(zf, src, member)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "schema_revision": HEAD,
                "organisation": {"id": cfg.organisation.id, "name": cfg.organisation.name},
                "year": year,
                "exported_at": datetime.now().astimezone().isoformat(timespec="seconds"),
                "source_database": engine.dialect.name,  # never the URL: it may hold a password
                "counts": {name: len(rows[name]) for name in TABLES},
                "sha256": hashes,
                "missing_files": missing,
            }
            zf.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # holds names, e-mail addresses and code hashes: like a database dump
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


def _copy_into_zip(zf: zipfile.ZipFile, src: Path, member: str) -> str:
    info = zipfile.ZipInfo.from_file(src, member)
    info.compress_type = zipfile.ZIP_STORED if src.suffix.lower() in _STORED_SUFFIXES else zipfile.ZIP_DEFLATED
    h = hashlib.sha256()
    with src.open("rb") as fh, zf.open(info, "w") as out:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


def read_manifest(archive: Path) -> dict[str, Any]:
    """The manifest of an archive, checked for format and version (hashes are checked by import)."""
    name = Path(archive).name
    try:
        with zipfile.ZipFile(archive) as zf:
            manifest = json.loads(zf.read(MANIFEST))
    except FileNotFoundError:
        raise UserError(f"{archive}: no such file") from None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise UserError(f"{name}: not a readable Styrkedja cycle archive ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{name}: manifest.json: format is not {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{name}: manifest.json: format_version {manifest.get('format_version')!r} is not supported"
            f" (this version reads {FORMAT_VERSION})"
        )
    for key, kind in (("sha256", dict), ("counts", dict), ("organisation", dict), ("year", int)):
        if not isinstance(manifest.get(key), kind):
            raise UserError(f"{name}: manifest.json: {key} is missing or malformed")
    return manifest


@dataclass
class ImportResult:
    organisation_id: str
    year: int
    cycle_id: int
    counts: dict[str, int]
    files: int
    missing_files: list[str] = field(default_factory=list)


def _verified(zf: zipfile.ZipFile, manifest: dict[str, Any], name: str) -> dict[str, list[dict[str, Any]]]:
    """Check every member against the manifest without writing anything; return the tables' rows."""
    hashes: dict[str, str] = manifest["sha256"]
    members = {i.filename for i in zf.infolist() if not i.is_dir()}
    expected = set(hashes) | {MANIFEST}
    if members != expected:
        odd = sorted(members ^ expected)[:5]
        raise UserError(f"{name}: members do not match manifest.json: {', '.join(odd)}")
    tables: dict[str, list[dict[str, Any]]] = {}
    for member, want in hashes.items():
        if not (member.startswith("files/") or (member.startswith("tables/") and member.endswith(".json"))):
            raise UserError(f"{name}: unexpected member {member!r}")
        if member.startswith("files/"):
            _safe_relpath(member.removeprefix("files/"))
            got = _sha256_member(zf, member)
        else:
            data = zf.read(member)
            got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise UserError(f"{name}: {member}: sha256 does not match manifest.json (the archive was altered)")
        if member.startswith("tables/"):
            tables[member.removeprefix("tables/").removesuffix(".json")] = json.loads(data)
    if set(tables) != set(TABLES):
        raise UserError(f"{name}: tables do not match this version's: {sorted(set(tables) ^ set(TABLES))}")
    for table, rows in tables.items():
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise UserError(f"{name}: tables/{table}.json: not a list of rows")
        if manifest["counts"].get(table) != len(rows):
            said = manifest["counts"].get(table)
            raise UserError(f"{name}: tables/{table}.json: {len(rows)} rows, manifest.json says {said}")
    for model in MODELS:
        known = set(_table(model).c.keys())
        for row in tables[model.__tablename__]:  # type: ignore[attr-defined]
            unknown = set(row) - known
            if unknown:
                raise UserError(
                    f"{name}: tables/{model.__tablename__}.json: columns {sorted(unknown)} are unknown to this"  # type: ignore[attr-defined]
                    f" version (archive schema {manifest.get('schema_revision')}, this version {HEAD}); upgrade"
                )
    return tables


def _sha256_member(zf: zipfile.ZipFile, member: str, sink: IO[bytes] | None = None) -> str:
    h = hashlib.sha256()
    with zf.open(member) as src:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            h.update(chunk)
            if sink is not None:
                sink.write(chunk)
    return h.hexdigest()


def import_cycle(archive: Path, url: str | None = None, output_root: Path | None = None) -> ImportResult:
    """Restore an archive into a database that does not hold its cycle; all or nothing."""
    url = url or db.database_url()
    out_root = Path(output_root or db.output_root())
    archive = Path(archive)
    name = archive.name
    manifest = read_manifest(archive)
    org_id, year = str(manifest["organisation"].get("id")), int(manifest["year"])
    with zipfile.ZipFile(archive) as zf:
        with _reading(name):
            tables = _verified(zf, manifest, name)
        upgrade(url)
        with db.session_scope(url) as s:
            _refuse_if_present(s, org_id, year, name)
        staged = _stage_files(zf, manifest["sha256"], out_root, name)
    try:
        with db.session_scope(url) as s:
            _refuse_if_present(s, org_id, year, name)
            cycle_id = _insert(s, tables)
            audit(
                s,
                actor="styrkedja import",
                action="cycle_imported",
                cycle_id=cycle_id,
                subject=name[:300],
                detail={
                    "exported_at": manifest.get("exported_at"),
                    "source_database": manifest.get("source_database"),
                    "schema_revision": manifest.get("schema_revision"),
                    "counts": manifest["counts"],
                },
            )
    except (IntegrityError, DataError) as exc:
        _discard(staged)
        raise UserError(f"{name}: the rows do not fit this database: {str(exc.orig).splitlines()[0]}") from None
    except BaseException:
        _discard(staged)
        raise
    for tmp, final in staged:  # after the commit: the database never names a file that is not there
        os.replace(tmp, final)
    return ImportResult(
        organisation_id=org_id,
        year=year,
        cycle_id=cycle_id,
        counts=dict(manifest["counts"]),
        files=len(staged),
        missing_files=list(manifest.get("missing_files") or []),
    )


@contextlib.contextmanager
def _reading(name: str) -> Iterator[None]:
    """A damaged member (CRC, deflate stream, JSON) is the user's problem to fix: one line."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise UserError(f"{name}: damaged archive ({type(exc).__name__}: {exc})") from None


def _refuse_if_present(session: Session, org_id: str, year: int, name: str) -> None:
    """Refuse a database that holds another organisation (its units would be taken for the
    archive's: units are matched by id and skipped when present) or already holds this cycle."""
    others = sorted(set(session.exec(select(Cycle.organisation_id).where(Cycle.organisation_id != org_id).distinct())))
    if others:
        raise UserError(
            f"{name}: the archive is of organisation {org_id!r} but this database holds organisation"
            f" {', '.join(repr(o) for o in others)}; nothing was imported"
        )
    if session.exec(select(Cycle.id).where(Cycle.organisation_id == org_id, Cycle.year == year)).first() is not None:
        raise UserError(f"import: the cycle {year} of {org_id} already exists in this database; nothing was imported")


def _stage_files(zf: zipfile.ZipFile, hashes: dict[str, str], out_root: Path, name: str) -> list[tuple[Path, Path]]:
    """Each file to a temporary name beside its target, verified again as it is written."""
    root = out_root.resolve()
    staged: list[tuple[Path, Path]] = []
    try:
        for member, want in sorted(hashes.items()):
            if not member.startswith("files/"):
                continue
            final = root / _safe_relpath(member.removeprefix("files/"))
            if root not in final.resolve().parents:
                raise UserError(f"{name}: {member}: outside the output folder")
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".~" + final.name[:40] + ".", suffix=".tmp")
            staged.append((Path(tmp), final))
            os.chmod(tmp, 0o644)
            with os.fdopen(fd, "wb") as fh, _reading(name):
                got = _sha256_member(zf, member, fh)
                fh.flush()
                os.fsync(fh.fileno())
            if got != want:
                raise UserError(f"{name}: {member}: sha256 does not match manifest.json (the archive was altered)")
    except BaseException:
        _discard(staged)
        raise
    return staged


def _discard(staged: Iterable[tuple[Path, Path]]) -> None:
    for tmp, _ in staged:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _insert(session: Session, tables: dict[str, list[dict[str, Any]]]) -> int:
    """Insert every row with a new id; foreign keys follow through the old→new id maps."""
    new_ids: dict[str, dict[Any, Any]] = {}  # only for tables whose ids are renumbered
    for model in MODELS:
        table = _table(model)
        name = table.name
        rows = tables[name]
        renumbered = _renumbered(table)
        deferred = [c.name for c in table.c if any(fk.column.table is table for fk in c.foreign_keys)]
        existing = _existing_keys(session, model)
        objects: list[tuple[Any, SQLModel, dict[str, Any]]] = []
        for row in rows:
            values = {k: _decode(table.c[k], v) for k, v in row.items()}
            natural = _natural_key(model, values)
            if natural is not None and natural in existing:
                continue  # units and signatories already there: the configuration is their master
            for col in table.c:
                if col.name in deferred or values.get(col.name) is None:
                    continue
                for fk in col.foreign_keys:
                    target = fk.column.table.name
                    if target in new_ids:
                        values[col.name] = _mapped(new_ids[target], values[col.name], f"{name}.{col.name}")
            old_id = values.pop("id") if renumbered else values.get("id")
            for col_name in deferred:
                values[col_name] = None
            obj = model(**values)
            objects.append((old_id, obj, row))
        session.add_all([o for _, o, _ in objects])
        session.flush()
        if renumbered:
            new_ids[name] = {old: obj.id for old, obj, _ in objects}  # type: ignore[attr-defined]
        if deferred:  # references within the table (a receipt's earlier version): now that all have ids
            for _, obj, row in objects:
                for col_name in deferred:
                    if row.get(col_name) is not None:
                        setattr(obj, col_name, _mapped(new_ids[name], row[col_name], f"{name}.{col_name}"))
            session.flush()
    cycle_ids = list(new_ids["cycle"].values())
    if len(cycle_ids) != 1:
        raise UserError(f"archive: expected one cycle, found {len(cycle_ids)}")
    return int(cycle_ids[0])


def _renumbered(table: sa.Table) -> bool:
    pk = list(table.primary_key.columns)
    return len(pk) == 1 and pk[0].name == "id" and isinstance(pk[0].type, sa.Integer)


def _mapped(ids: dict[Any, Any], old: Any, where: str) -> Any:
    try:
        return ids[old]
    except KeyError:
        raise UserError(f"archive: {where} = {old!r} refers to a row that is not in the archive") from None


_NATURAL_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "unit": lambda v: v["id"],
    "signatory": lambda v: (v["unit_id"], v["signatory_id"]),
}


def _natural_key(model: type[SQLModel], values: dict[str, Any]) -> Any:
    key = _NATURAL_KEYS.get(model.__tablename__)  # type: ignore[attr-defined]
    return key(values) if key else None


def _existing_keys(session: Session, model: type[SQLModel]) -> set[Any]:
    if model is Unit:
        return set(session.exec(select(Unit.id)))
    if model is Signatory:
        return {(s.unit_id, s.signatory_id) for s in session.exec(select(Signatory))}
    return set()
