"""Command-line commands for calendars and deadlines: `calendar export|picture|check|done` and `watch`.

flows/cli.py calls `register(app)`. The shared helpers (`user_errors`, `out`, `err`) are imported
inside `register`, when flows.cli has defined them, so importing this module never depends on
where flows.cli imports it; heavy imports happen inside the commands.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from models.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="Configuration file, or 'region' / 'municipality' for the samples."),
]
PlanYearOpt = Annotated[int | None, typer.Option("--year", "-y", help="Plan year; default: next year.")]
STATE_COLOURS = {"done": "green", "due_soon": "yellow", "overdue": "red", "upcoming": "white"}


def _plan_year(year: int | None) -> int:
    from tasks.calendar import today_stockholm
    from tasks.cycle import check_year

    return check_year(year) if year is not None else today_stockholm().year + 1


def _parse_day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"{option}: expected a date like 2027-03-01, got {text!r}") from None


def _write_target(path: Path, option: str) -> Path:
    """A file the user named: its folder is created; a folder or an unwritable place is a one-line error."""
    if path.exists() and path.is_dir():
        raise UserError(f"{option}: {path} is a folder; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{option}: cannot create folder {path.parent}: {exc.strerror}") from None
    return path


def print_progression(out: Console, rows: list[Any], title: str) -> None:
    """The process-progression table (tasks.progress.progression) in the terminal, states coloured:
    the same rows and states as the `processlage` artifact. For `styrkedja status` too."""
    from rich.table import Table

    from tasks.progress import PROGRESSION_HEADERS

    t = Table(*PROGRESSION_HEADERS, title=title)
    for r in rows:
        values = list(r.as_row().values())
        colour = STATE_COLOURS.get(r.state, "white")
        values[4] = f"[{colour}]{values[4]}[/{colour}]"
        t.add_row(*values)
    out.print(t)


def register(app: typer.Typer) -> None:
    """Add `calendar ...` and `watch` to the command line."""
    from flows.cli import _cfg, _db, err, out, user_errors  # defined before flows.cli calls this

    calendar_app = typer.Typer(
        help="The annual wheel as calendars and pictures, its coordination with other processes, milestones done.",
        no_args_is_help=True,
    )
    app.add_typer(calendar_app, name="calendar")

    @calendar_app.command("export")
    @user_errors
    def calendar_export(
        unit: Annotated[str | None, typer.Option(help="Only what concerns this unit (its id, e.g. HSN).")] = None,
        year: PlanYearOpt = None,
        out_file: Annotated[
            Path | None,
            typer.Option("--out", help="The .ics file; default: <output>/<year>/kalender/arshjul-<org>-<year>.ics"),
        ] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Export the annual wheel as an iCalendar file (.ics) for Outlook, Google or Apple calendars.

        Milestones, meetings (with purpose, goal and participants), phase windows and follow-up
        deadlines as all-day events. Event ids are stable: importing a newer export again updates
        the events instead of duplicating them. With --unit: the unit's own milestones, its
        superiors' milestones in the phases it takes part in, its receipt deadlines and its meetings.
        """
        from models.db import output_root
        from tasks.ical import calendar_entries, default_path, write_calendar

        cfg = _cfg(config)
        y = _plan_year(year)
        entries = calendar_entries(cfg, y, unit)  # checks --unit before anything is written
        target = _write_target(out_file, "--out") if out_file else default_path(cfg, y, unit, output_root())
        write_calendar(cfg, y, target, unit)
        out.print(f"{len(entries)} events for plan year {y} written to {target}")

    @calendar_app.command("picture")
    @user_errors
    def calendar_picture(
        year: PlanYearOpt = None,
        out_dir: Annotated[
            Path | None, typer.Option("--out", help="Folder for the .svg and .png; default: <output>/<year>/arshjul")
        ] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Draw the annual wheel of a plan year as SVG and PNG: phases as rings, milestones numbered."""
        from models.db import output_root
        from tasks.wheel_picture import font_path, write_wheel

        cfg = _cfg(config)
        y = _plan_year(year)
        folder = out_dir or output_root() / str(y) / "arshjul"
        if folder.exists() and not folder.is_dir():
            raise UserError(f"--out: {folder} is a file; name a folder")
        try:
            svg, png = write_wheel(cfg, y, folder)
        except OSError as exc:
            raise UserError(f"--out: cannot write to {folder}: {exc.strerror}") from None
        out.print(f"wrote {svg}\nwrote {png}")
        if font_path() is None:
            err.print("note: no TrueType font with å, ä, ö found (e.g. DejaVu Sans); the PNG spells them a, a, o")

    @calendar_app.command("check")
    @user_errors
    def calendar_check(
        year: PlanYearOpt = None,
        config: ConfigOpt = None,
        strict: Annotated[bool, typer.Option(help="Exit with code 1 when there is a conflict.")] = False,
    ) -> None:
        """Check other processes' wheels against the budget process (the master): conflicts with both dates.

        The parallel wheels of the configuration (committee meetings, internal control, ...) and the
        follow-up calendar; `must_precede` and `needs` say what each item must come before or after.
        """
        from rich.table import Table

        from tasks.coordination import check_coordination, conflict_rows, item_rows

        cfg = _cfg(config)
        y = _plan_year(year)
        rows = item_rows(cfg, y)
        if not rows:
            out.print("No parallel wheels configured (parallel_wheels: in the configuration).")
            return
        t = Table(*rows[0].keys(), title=f"Coordination with the budget process, plan year {y}")
        for r in rows:
            values = list(r.values())
            values[-1] = "[red]KONFLIKT[/red]" if values[-1] == "KONFLIKT" else "[green]ok[/green]"
            t.add_row(*values)
        out.print(t)
        conflicts = check_coordination(cfg, y)
        if not conflicts:
            out.print("[green]No conflicts.[/green]")
            return
        t = Table(*conflict_rows(conflicts)[0].keys(), title=f"{len(conflicts)} conflict(s)")
        for r in conflict_rows(conflicts):
            t.add_row(*r.values())
        out.print(t)
        for c in conflicts:
            out.print(f"[red]•[/red] {c.message()}", highlight=False)
        if strict:
            raise typer.Exit(1)

    @calendar_app.command("done")
    @user_errors
    def calendar_done(
        milestone: Annotated[str, typer.Argument(help="The milestone's id, e.g. omvarldsanalys.")],
        year: Annotated[int, typer.Option("--year", "-y", help="Plan year of the cycle.")],
        actor: Annotated[str, typer.Option(help="Who marks it done (audit log).")] = "ekonomistaben",
        config: ConfigOpt = None,
    ) -> None:
        """Mark a milestone done: its reminders and escalations stop (audited)."""
        from sqlmodel import select

        from models.db import with_retry
        from models.tables import Milestone, utcnow
        from tasks.audit import audit
        from tasks.cycle import check_year, get_cycle

        cfg = _cfg(config)
        _db()
        y = check_year(year)

        def work(session: Any) -> str:
            cycle = get_cycle(session, cfg, y)
            if cycle is None:
                raise UserError(f"--year: no cycle for {y}")
            row = session.exec(
                select(Milestone).where(Milestone.cycle_id == cycle.id, Milestone.key == milestone)
            ).first()
            if row is None:
                raise UserError(f"milestone: unknown milestone {milestone!r} in plan year {y}")
            if row.done_at is not None:
                return f"already done on {row.done_at:%Y-%m-%d}"
            row.done_at = utcnow()
            session.add(row)
            audit(session, actor=actor, action="milestone_done", cycle_id=cycle.id, phase=row.phase, subject=row.key)
            return "done"

        out.print(f"{milestone} ({y}): {with_retry(work)}")

    @app.command("watch")
    @user_errors
    def watch(
        as_of: Annotated[
            str | None, typer.Option("--as-of", help="The day to watch for, e.g. 2027-03-01; default: today.")
        ] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Run the deadline watch once, here: queue and send the day's reminders and escalations,
        resume phases whose receipts are all signed, and publish the artifacts (as the daily
        06:00 deployment does). Prints where every active plan year stands."""
        from models.db import session_scope
        from tasks.progress import progression

        cfg = _cfg(config)
        day = _parse_day(as_of, "--as-of")
        _db()
        from flows.cli import _run_flow_reporting_user_errors
        from flows.deadline_watch import deadline_watch

        result = _run_flow_reporting_user_errors(deadline_watch, {"as_of": day, "config": config})
        with session_scope() as s:
            from tasks.cycle import get_cycle

            for y in result["cycles"]:
                cycle = get_cycle(s, cfg, y)
                if cycle is not None:
                    rows = progression(s, cfg, cycle.id, date.fromisoformat(result["as_of"]))  # type: ignore[arg-type]
                    print_progression(out, rows, f"{cfg.organisation.name}, plan year {y}, {result['as_of']}")
        out.print(
            f"{result['as_of']}: plan years {', '.join(map(str, result['cycles'])) or 'none active'}; "
            f"queued {result['reminders']} reminders and {result['escalations']} escalations; "
            f"sent {result['sent']}, to retry {result['retried']}, failed {result['failed']}"
            + (f"; resumed {', '.join(result['resumed'])}" if result["resumed"] else "")
        )
