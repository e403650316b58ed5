"""`styrkedja items list|act`: the items units raised to the next level in the follow-up.

An item stays open, and listed in the level report of every level it reaches, until a level acts
on it. Registered on the main command line by `register(app)`; `flows.cli` is imported when a
command runs, so there is no import cycle.
"""

from __future__ import annotations

from typing import Annotated

import typer

items_app = typer.Typer(help="Items raised to the next level in the follow-up: list them, act on them.")


def register(app: typer.Typer) -> None:
    app.add_typer(items_app, name="items")


@items_app.command("list")
def list_items(
    year: Annotated[int | None, typer.Option("--year", "-y", help="Plan year; default: the current one.")] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help="Configuration file, or 'region' / 'municipality' for the samples."),
    ] = None,
    unit: Annotated[str | None, typer.Option(help="Only items that reached this level (unit id).")] = None,
    all_items: Annotated[bool, typer.Option("--all", help="Also items already acted on.")] = False,
) -> None:
    """List raised items: where they came from, the levels they reached, who acted on them."""
    from flows.cli import user_errors

    user_errors(_list)(year, config, unit, all_items)


def _list(year: int | None, config: str | None, unit: str | None, all_items: bool) -> None:
    from rich.table import Table

    from flows.cli import _cfg, _db, _year, out
    from models.errors import UserError
    from tasks.level_reports import list_issues

    cfg = _cfg(config)
    if unit is not None and unit not in {u.id for u in cfg.units}:
        raise UserError(f"--unit: unknown unit {unit!r}")
    _db()
    y = _year(cfg, year)
    rows = list_issues(cfg, y, unit=unit, open_only=not all_items)
    if not rows:
        out.print("No raised items match.")
        return
    table = Table(title=f"Raised items, plan year {y}")
    for col in ("id", "occasion", "from", "reached", "state", "acted on by", "text"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r.id), r.occasion_key, r.origin, " → ".join(r.path[1:]), r.state, r.acted_by_unit or "", r.text
        )
    out.print(table)


@items_app.command("act")
def act_on_item(
    item_id: Annotated[int, typer.Argument(help="Id of the raised item (see `styrkedja items list`).")],
    unit: Annotated[str, typer.Option(help="The level that acts on it: a unit the item has reached.")],
    action: Annotated[str, typer.Option(help="What the level does about it; written to the audit log.")],
    actor: Annotated[str, typer.Option(help="Who records it (audit log).")] = "ekonomistaben",
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help="Configuration file, or 'region' / 'municipality' for the samples."),
    ] = None,
) -> None:
    """Record that a level acts on a raised item: it is no longer listed as open in the reports above."""
    from flows.cli import user_errors

    user_errors(_act)(item_id, unit, action, actor, config)


def _act(item_id: int, unit: str, action: str, actor: str, config: str | None) -> None:
    from flows.cli import _cfg, _db, out
    from models.errors import UserError
    from tasks.level_reports import act_on_issue

    cfg = _cfg(config)
    if unit not in {u.id for u in cfg.units}:
        raise UserError(f"--unit: unknown unit {unit!r}")
    if not 0 < item_id < 2**63:
        raise UserError(f"raised item: no item with id {item_id}")
    _db()
    view = act_on_issue(cfg, item_id, unit, action, actor=actor)
    out.print(f"item {view.id} acted on by {view.acted_by_unit}: {view.text}")
