"""`styrkedja outbox list|send|retry`: what the outbox holds, and failed notifications sent again.

A channel that is down is retried with backoff by every phase run and deadline watch; after the
last attempt a notification is `failed` and kept. Here an operator sees both (last error with
secrets masked) and, once the channel is back, puts failed ones back in the queue (audited).
Registered on the main command line by `register(app)`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer

if TYPE_CHECKING:
    from tasks.notify import DeliveryReport, OutboxEntry

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="Configuration file, or 'region' / 'municipality' for the samples."),
]
ActorOpt = Annotated[str, typer.Option(help="Your name, for the audit log.")]
STOCKHOLM = ZoneInfo("Europe/Stockholm")
STATE_COLOURS = {"pending": "yellow", "failed": "red", "sent": "green"}


def _when(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "-"
    if at <= now:
        return "due now"
    return f"{at.astimezone(STOCKHOLM):%Y-%m-%d %H:%M}"


def outbox_table(entries: list[OutboxEntry], title: str, now: datetime) -> Any:
    """The outbox rows as a Rich table: id, unit, channel (kind), subject, state, attempts, next
    attempt (Stockholm time), last error (masked)."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("id", justify="right")
    t.add_column("unit")
    t.add_column("channel")
    t.add_column("subject", overflow="fold", ratio=3)
    t.add_column("state")
    t.add_column("attempts", justify="right")
    t.add_column("next attempt")
    t.add_column("last error", overflow="fold", ratio=3)
    for e in entries:
        colour = STATE_COLOURS.get(e.state, "white")
        t.add_row(
            str(e.id),
            e.unit,
            f"{e.channel_id} ({e.channel_kind})",
            e.subject,
            f"[{colour}]{e.state}[/{colour}]",
            str(e.attempts),
            _when(e.next_attempt_at, now),
            e.last_error or "-",
        )
    return t


def report_line(report: DeliveryReport) -> str:
    return (
        f"sent {report.sent}, to be retried {report.retried}, failed {report.failed}, "
        f"deferred {report.deferred}; pending now {report.pending_left}"
    )


def register(app: typer.Typer) -> None:
    """Add `outbox list|send|retry` to the command line."""
    from flows.cli import _cfg, _db, out, user_errors  # defined before flows.cli calls this

    outbox_app = typer.Typer(
        help="The outbox of notifications: list it (failures and their errors), send what is due, retry failed ones.",
        no_args_is_help=True,
    )
    app.add_typer(outbox_app, name="outbox")

    @outbox_app.command("list")
    @user_errors
    def outbox_list(
        state: Annotated[str | None, typer.Option(help="Only this state: pending, failed or sent.")] = None,
        unit: Annotated[str | None, typer.Option(help="Only notifications to this unit (its id, e.g. HSN).")] = None,
        limit: Annotated[int, typer.Option(min=1, help="Show at most the latest N rows.")] = 200,
        config: ConfigOpt = None,
    ) -> None:
        """List the notifications and their delivery state.

        Unit, channel, subject, state, attempts, next attempt and the last error (passwords and
        tokens masked). A pending one with an error is being retried with backoff; a failed one
        gave up after the last attempt and waits for `styrkedja outbox retry`.
        """
        from models.errors import UserError
        from models.tables import NotificationState, utcnow
        from tasks.notify import list_outbox

        cfg = _cfg(config)
        states = [s.value for s in NotificationState]
        if state is not None and state not in states:
            raise UserError(f"--state: unknown state {state!r} (known: {', '.join(states)})")
        if unit is not None and unit not in {u.id for u in cfg.units}:
            raise UserError(f"--unit: unknown unit {unit!r}")
        _db()
        entries, total = list_outbox(cfg, state=state, unit=unit, limit=limit)
        if not entries:
            out.print("No notifications match.")
            return
        shown = f"the latest {len(entries)} of {total}" if total > len(entries) else f"{total}"
        out.print(outbox_table(entries, f"Outbox: {shown}", utcnow()))

    @outbox_app.command("send")
    @user_errors
    def outbox_send(
        limit: Annotated[int | None, typer.Option(min=1, help="Send at most this many (default: all due).")] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Send the notifications that are due now (what every phase run and deadline watch does)."""
        from tasks.notify import deliver_outbox

        cfg = _cfg(config)
        _db()
        out.print(report_line(deliver_outbox(cfg, limit=limit)))

    @outbox_app.command("retry")
    @user_errors
    def outbox_retry(
        ids: Annotated[
            list[int] | None,
            typer.Argument(metavar="ID", help="Id(s) of failed notifications (see `styrkedja outbox list`)."),
        ] = None,
        all_failed: Annotated[bool, typer.Option("--all-failed", help="Every failed notification.")] = False,
        send: Annotated[
            bool, typer.Option(help="Send them now (--no-send: the next run or `outbox send` does).")
        ] = True,
        reason: Annotated[str, typer.Option(help="Why, for the audit log (e.g. 'the mail server is back').")] = "",
        actor: ActorOpt = "operatör",
        config: ConfigOpt = None,
    ) -> None:
        """Put failed notifications back in the queue and send them.

        Each gets a fresh series of attempts with backoff; the requeue is in the audit log.
        """
        from models.errors import UserError
        from models.tables import utcnow
        from tasks.notify import deliver_outbox, list_outbox, requeue_failed

        if bool(ids) == all_failed:
            raise UserError("outbox retry: name the notification id(s) or give --all-failed (not both)")
        cfg = _cfg(config)
        _db()
        requeued = requeue_failed(cfg, ids=None if all_failed else ids, actor=actor or "operatör", reason=reason)
        if not requeued:
            out.print("No failed notifications.")
            return
        out.print(f"requeued {len(requeued)}: " + ", ".join(str(r.id) for r in requeued))
        if not send:
            return
        report = deliver_outbox(cfg)
        out.print(report_line(report))
        entries, _ = list_outbox(cfg, ids=[r.id for r in requeued][-200:])
        shown = f"the latest {len(entries)} of {len(requeued)}" if len(requeued) > len(entries) else f"{len(entries)}"
        out.print(outbox_table(entries, f"Retried: {shown}", utcnow()))
