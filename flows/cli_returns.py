"""Commands for returns: `styrkedja submit FILE` and `styrkedja inbox FOLDER`.

`register(app)` adds them to the main Typer app (flows/cli.py). flows.cli is imported inside the
commands, not here, so that flows.cli may import this module at any point of its own import.
Help texts are English like the rest of the command line; what a secretary reads about her
document (results, refusals) is Swedish, the same text that goes into an inbox's .fel.txt.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="Configuration file, or 'region' / 'municipality' for the samples."),
]
ActorOpt = Annotated[
    str, typer.Option("--actor", help="Who hands the document in, for the audit log; default: your login name.")
]


def _user_errors(fn: F) -> F:
    """flows.cli.user_errors, looked up when the command runs (see the module doc)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from flows.cli import user_errors

        return user_errors(fn)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _actor(actor: str) -> str:
    if actor.strip():
        return actor.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a container
        return "okänd"


def register(app: typer.Typer) -> None:
    """Add `submit` and `inbox` to the command line."""

    @app.command("submit")
    @_user_errors
    def submit(
        file: Annotated[Path, typer.Argument(help="The filled-in .docx or .xlsx, as the committee returns it.")],
        config: ConfigOpt = None,
        actor: ActorOpt = "",
    ) -> None:
        """Hand in a filled-in document (a return): read it back, validate it, store the answers.

        The file is recognised by the document id embedded when it was sent (kind, version, plan
        year and unit), then checked: a real Word/Excel file without macros, the current version
        of the handoff, the unit it was sent to, every required section filled in, numbers that
        are numbers and sums that add up. Accepted, the answers are stored as data and the
        handoff's receipt is acknowledged; the same file twice is recorded once. Refused, one
        line (in Swedish) names the file, the place and the value, exit code 2, and nothing is
        stored.
        """
        from flows.cli import _cfg, _db, out
        from tasks.returns import read_limited, submit_file

        cfg = _cfg(config)
        read_limited(file)  # a missing or oversized file is refused before the database is touched
        _db()
        result = submit_file(cfg, file, actor=_actor(actor))
        if not result.created:
            out.print(f"[yellow]redan mottagen[/yellow] {file.name}: samma fil lämnades in tidigare; inget ändrades")
            return
        out.print(f"[green]mottagen[/green] {file.name}")
        out.print(_table(result))
        _deliver_now(cfg)

    @app.command("inbox")
    @_user_errors
    def inbox(
        folder: Annotated[Path, typer.Argument(help="The folder returned documents are dropped into.")],
        once: Annotated[
            bool,
            typer.Option("--once/--watch", help="Process what is there now and stop, or keep watching the folder."),
        ] = True,
        interval: Annotated[
            float, typer.Option(min=0.2, help="Seconds between looks at the folder when watching.")
        ] = 5.0,
        config: ConfigOpt = None,
        actor: ActorOpt = "inkorgen",
    ) -> None:
        """Process the returns dropped into a folder, like `submit` for each file.

        Each accepted file moves to FOLDER/processed/; each refused one to FOLDER/rejected/ with
        <name>.fel.txt beside it giving the reason in Swedish. A file is taken only when its size
        is the same on two looks (so one still being copied in waits), and a file handled before
        (same content) is never processed twice. If the database cannot be reached, the file
        stays in the folder for the next look. One process watches a folder at a time; stop
        watching with Ctrl-C.
        """
        from flows.cli import _cfg, _db, out
        from models.errors import UserError
        from tasks.returns import InboxResult, watch_inbox

        cfg = _cfg(config)
        if not folder.is_dir():
            raise UserError(f"{folder}: inkorgen finns inte eller är ingen mapp")
        _db()
        counts = {"processed": 0, "rejected": 0, "waiting": 0, "error": 0}

        def show(res: InboxResult) -> None:
            counts[res.outcome] = counts.get(res.outcome, 0) + 1
            colour, word = {
                "processed": ("green", "mottagen"),
                "rejected": ("red", "avvisad"),
                "waiting": ("yellow", "väntar"),
                "error": ("red", "fel"),
            }[res.outcome]
            out.print(f"[{colour}]{word}[/{colour}] {res.name}: {res.message}", highlight=False, soft_wrap=True)

        if not once:
            out.print(f"Bevakar {folder} (var {interval:g}:e sekund); avsluta med Ctrl-C.")
        try:
            watch_inbox(cfg, folder, once=once, actor=_actor(actor), interval=interval, on_result=show)
        except KeyboardInterrupt:
            out.print("Bevakningen avslutad.")
        if counts["processed"]:
            _deliver_now(cfg)
        out.print(
            f"{counts['processed']} mottagna, {counts['rejected']} avvisade, "
            f"{counts['waiting']} väntar, {counts['error']} lämnade kvar efter fel"
        )


def _deliver_now(cfg: Any) -> None:
    """A return completes a handoff's first step: its delivery to the receiver goes out now, not at
    the next phase run or morning watch. A channel that is down keeps the message in the outbox."""
    from flows.cli import out
    from models.db import output_root
    from tasks.notify import deliver_outbox

    report = deliver_outbox(cfg, base_dir=output_root())
    waiting = report.retried + report.failed + report.deferred
    if report.sent or waiting:
        out.print(f"{report.sent} meddelanden skickade, {waiting} väntar kvar i utkorgen")


def _table(result: Any) -> Any:
    from rich.table import Table

    t = Table(show_header=False, title="Inlämnat dokument")
    t.add_row("Dokument", result.document_title)
    t.add_row("Dokument-id", result.document_key)
    t.add_row("Enhet", result.unit_id)
    t.add_row("Version", str(result.version))
    if "fields" in result.content:
        t.add_row("Ifyllda avsnitt", str(len(result.content["fields"])))
    else:
        rows = sum(len(v) for v in result.content.get("sheets", {}).values())
        t.add_row("Ifyllda rader", str(rows))
    if result.replaces:
        t.add_row("Ersätter", f"inlämning {result.replaces}")
    t.add_row("Lämnad till mottagaren", "\n".join(result.acknowledged) or "–")
    if result.waiting_for:
        t.add_row("Väntar på", "\n".join(result.waiting_for))
    return t
