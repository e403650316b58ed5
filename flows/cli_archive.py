"""`styrkedja export` and `styrkedja import`: one cycle to an archive file and back.

Registered on the main command line by `register(app)`. `flows.cli` is imported when a command
runs, not when this module is imported, so `flows.cli` may import this module wherever it likes
(including at its top) without an import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("export")(export_cycle)
    app.command("import")(import_cycle)


def export_cycle(
    year: Annotated[int, typer.Option("--year", "-y", help="Plan year of the cycle to export.")],
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="Archive file to write (.zip), or an existing folder to put it in.")
    ],
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help="Configuration file, or 'region' / 'municipality' for the samples."),
    ] = None,
) -> None:
    """Export one cycle to an archive: every row of the cycle (receipts, documents, outbox, audit log, ...)
    as JSON, the documents' files, and a manifest with the sha256 of each.

    The archive holds names, e-mail addresses and the hashes of open one-time codes: keep it like a
    database backup. Channel URLs and secrets are not in it (they are not in the database).
    """
    from flows.cli import user_errors

    user_errors(_export)(year, out_file, config)


def _export(year: int, out_file: Path, config: str | None) -> None:
    from config.loader import load_config
    from flows.cli import out
    from models.migrate import upgrade
    from tasks import archive
    from tasks.cycle import check_year

    cfg = load_config(config)
    check_year(year)
    upgrade()
    path = archive.export_cycle(cfg, year, out_file)
    manifest = archive.read_manifest(path)
    rows = sum(manifest["counts"].values())
    files = sum(1 for m in manifest["sha256"] if m.startswith("files/"))
    out.print(f"exported {cfg.organisation.name} {year}: {rows} rows, {files} files → {path}")
    if manifest["missing_files"]:
        shown = ", ".join(manifest["missing_files"][:5])
        out.print(f"[yellow]warning:[/yellow] {len(manifest['missing_files'])} document file(s) were missing: {shown}")


def import_cycle(
    archive: Annotated[Path, typer.Argument(help="Archive written by `styrkedja export`.")],
) -> None:
    """Import a cycle archive into the database at STYRKEDJA_DATABASE_URL and the output folder.

    The database must not hold that cycle yet. Every file's sha256 is checked before anything is
    written; the rows go in as one transaction (new ids), the files are moved in after it.
    """
    from flows.cli import user_errors

    user_errors(_import)(archive)


def _import(archive: Path) -> None:
    from flows.cli import out
    from models.db import database_url, output_root
    from tasks.archive import import_cycle as restore

    result = restore(archive)
    rows = sum(result.counts.values())
    where = database_url().split("@")[-1]  # never print a password
    out.print(
        f"imported {result.organisation_id} {result.year} as cycle {result.cycle_id}: {rows} rows into {where},"
        f" {result.files} files into {output_root()}"
    )
    if result.missing_files:
        shown = ", ".join(result.missing_files[:5])
        out.print(f"[yellow]warning:[/yellow] {len(result.missing_files)} file(s) were missing at export: {shown}")
