"""The `styrkedja` command line: for the finance department, secretaries and operators.

A user's mistake prints one line and exits 2; heavy imports (Prefect) happen inside the commands
that need them, so `status` and `receipt list` answer quickly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from models.errors import UserError

app = typer.Typer(
    help=(
        "Styrkedja orchestrates the yearly planning and budget cycle of a Swedish region or municipality: "
        "each phase is a Prefect flow, every handoff between levels a signed receipt (kvittens)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
receipt_app = typer.Typer(help="List, show, sign and dispute handoff receipts (kvittenser).", no_args_is_help=True)
app.add_typer(receipt_app, name="receipt")

# Wide enough for the tables when the output is a file or a CI log (Rich would assume 80).
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 400)
F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="Configuration file, or 'region' / 'municipality' for the samples."),
]
YearOpt = Annotated[
    int | None, typer.Option("--year", "-y", help="Plan year; default: the latest cycle (or next year).")
]


def user_errors(fn: F) -> F:
    """Turn a user's mistake into one line on stderr and exit code 2, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _cfg(config: str | None) -> Any:
    from config.loader import load_config

    return load_config(config)


def _db() -> None:
    from models.migrate import upgrade

    upgrade()


def _year(cfg: Any, year: int | None) -> int:
    from sqlmodel import select

    from models.db import session_scope
    from models.tables import Cycle
    from tasks.cycle import check_year

    if year is not None:
        return check_year(year)
    _db()
    with session_scope() as s:
        latest = s.exec(
            select(Cycle).where(Cycle.organisation_id == cfg.organisation.id).order_by(Cycle.year.desc())  # type: ignore[attr-defined]
        ).first()
    return latest.year if latest else date.today().year + 1


def _phase_id(name: str) -> str:
    from config.schema import PHASE_IDS

    pid = name.replace("-", "_").lower()
    if pid not in PHASE_IDS:
        raise UserError(f"phase: unknown phase {name!r} (known: {', '.join(p.replace('_', '-') for p in PHASE_IDS)})")
    return pid


@app.command("validate-config")
@user_errors
def validate_config(
    path: Annotated[
        str | None, typer.Argument(help="File to check, or 'region' / 'municipality'; default: the active one.")
    ] = None,
) -> None:
    """Check a configuration file: structure, references, and every date rule resolved for two years.

    Prints a summary when valid; a one-line error naming file, field and value (exit 2) when not.
    Nothing is written.
    """
    from config.loader import resolve_config_path
    from tasks.wheel import resolve_wheel

    cfg = _cfg(path)
    wheel = resolve_wheel(cfg, date.today().year + 1)
    out.print(f"[green]ok[/green] {resolve_config_path(path)}: {cfg.organisation.name}")
    t = Table("level", "units", title="Organisation")
    for lv in cfg.levels:
        t.add_row(lv.name, str(len(cfg.units_at(lv.id))))
    out.print(t)
    t = Table("phase", "from", "to", "receipts due", title=f"Annual wheel, plan year {wheel.plan_year}")
    for p in cfg.wheel.phases:
        start, end = wheel.phase_window(p.id)
        t.add_row(p.name, str(start), str(end), str(wheel[p.receipt_deadline]))
    out.print(t)


@app.command()
@user_errors
def run(
    phase: Annotated[
        str,
        typer.Argument(
            help="preparation, planning-prerequisites, committee-feedback, regional-plan, "
            "operational-plans, activity-plans or follow-up."
        ),
    ],
    year: YearOpt = None,
    config: ConfigOpt = None,
    occasion: Annotated[
        str | None, typer.Option(help="Follow-up occasion, e.g. delar-2028-08-31 (follow-up only).")
    ] = None,
    override: Annotated[bool, typer.Option(help="Start although the previous phase's receipts are missing.")] = False,
    reason: Annotated[str, typer.Option(help="Why the override is needed; written to the audit log.")] = "",
    override_level: Annotated[
        list[str] | None,
        typer.Option(
            help="Follow-up: a level (unit id) that hands its report up although returns from below are "
            "missing; repeatable; needs --reason (audited)."
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Through a deployment: suspend until all receipts are signed.")] = True,
    local: Annotated[bool, typer.Option(help="Run in this process instead of through the served deployment.")] = False,
    actor: Annotated[str, typer.Option(help="Who triggers the phase (audit log).")] = "ekonomistaben",
) -> None:
    """Trigger a phase for a plan year.

    The phase first checks its gate: the receipts the previous phase must have collected. Missing
    receipts stop it with a list (exit 2) unless --override --reason "..." is given (audited).
    Through the served deployment (default when `styrkedja serve` runs) the run suspends while it
    waits for receipts and resumes when the last one is signed; with --local it runs here and
    records the phase as waiting.
    """
    cfg = _cfg(config)
    pid = _phase_id(phase)
    if override and not reason.strip():
        raise UserError('--override needs --reason "..." saying why')
    if pid != "follow_up" and occasion:
        raise UserError(f"--occasion: only the follow-up phase has occasions (phase: {phase})")
    if override_level:
        if pid != "follow_up":
            raise UserError(f"--override-level: only the follow-up phase hands level reports up (phase: {phase})")
        if not reason.strip():
            raise UserError('--override-level needs --reason "..." saying why')
        known = {u.id for u in cfg.units}
        for level in override_level:
            if level not in known:
                raise UserError(f"--override-level: unknown unit {level!r}")
    y = _year(cfg, year)
    if occasion:
        from tasks.followup_calendar import find_occasion

        find_occasion(cfg, y, occasion)
    _check_templates(cfg, y, pid, occasion)
    _db()
    from flows import local_server

    params: dict[str, Any] = {
        "year": y,
        "override": override,
        "reason": reason,
        "wait": wait,
        "config": config,
        "actor": actor,
    }
    if pid == "follow_up":
        params["occasion"] = occasion
        params["override_levels"] = override_level or None
    if not local and local_server.is_healthy() and local_server.deployments_registered():
        from prefect.deployments import run_deployment

        from flows.registry import PHASE_FLOWS, deployment_name

        _check_gate_before_trigger(cfg, y, pid, override, actor)
        fr = run_deployment(deployment_name(PHASE_FLOWS[pid]), parameters=params, timeout=0)
        out.print(f"triggered {pid} for {y}: flow run {fr.id}\n{local_server.ui_url()}/runs/flow-run/{fr.id}")
        return
    from flows.registry import PHASE_FLOWS

    params["wait"] = False
    result = _run_flow_reporting_user_errors(PHASE_FLOWS[pid], params)
    _print_summary([result])


def _check_gate_before_trigger(cfg: Any, year: int, pid: str, override: bool, actor: str) -> None:
    """Through a deployment the phase would refuse in the serving process, where the user never
    sees it: check the gate here first and refuse the same way as a run in this process (the same
    list of missing receipts, the same audit entry, exit 2). An override (with its reason, checked
    before) goes on to the deployment, whose run audits it."""
    from models.db import session_scope
    from models.errors import GateNotMetError
    from tasks.audit import audit
    from tasks.cycle import get_cycle
    from tasks.receipts import gate_missing

    with session_scope() as s:
        cycle = get_cycle(s, cfg, year)
        # No cycle yet: nothing is issued, so every required phase is missing (ids start at 1).
        missing = gate_missing(s, cycle.id if cycle is not None and cycle.id is not None else 0, pid)
        if not missing or override:
            return
        audit(
            s,
            actor=actor,
            action="gate_refused",
            cycle_id=cycle.id if cycle is not None else None,
            phase=pid,
            detail={"missing": missing[:200]},
        )
    raise GateNotMetError(pid, missing)


def _check_templates(cfg: Any, year: int, pid: str, occasion: str | None) -> None:
    """The organisation's own templates (STYRKEDJA_TEMPLATE_DIR) must render before the phase
    touches the database or writes a file: a broken one is one line and exit 2, nothing written."""
    import os

    from tasks.documents.text import TEMPLATE_DIR_ENV, check_overrides

    if not os.environ.get(TEMPLATE_DIR_ENV, "").strip():
        return
    if pid == "follow_up" and occasion is None:
        from tasks.followup_calendar import occasions

        occasion = occasions(cfg, year)[-1].key  # what the phase does without --occasion
    check_overrides(cfg, year, pid, occasion if pid == "follow_up" else None)


def _run_flow_reporting_user_errors(flow_obj: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Run a flow here; a UserError inside it (a gate not met) reaches the user as one line."""
    state = flow_obj(**params, return_state=True)
    if state.is_completed():
        return state.result()
    try:
        state.result()
    except UserError:
        raise
    except Exception as exc:  # a real failure: say where to look, keep the type
        raise SystemExit(f"phase failed: {type(exc).__name__}: {exc}") from exc
    raise SystemExit(f"phase ended in state {state.type}")


def _print_summary(results: list[dict[str, Any]]) -> None:
    t = Table("phase", "occasion", "state", "documents", "receipts agreed", "notifications sent", title="Phases")
    for r in results:
        t.add_row(
            r["phase_name"],
            r.get("occasion") or "",
            r["state"],
            str(r["documents_total"]),
            f"{r['receipts_agreed']} / {r['receipts_total']}",
            str(r["notifications_sent"]),
        )
    out.print(t)


@app.command()
@user_errors
def status(
    year: YearOpt = None,
    config: ConfigOpt = None,
    phase: Annotated[str | None, typer.Option(help="Show this phase's receipts one by one.")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The day the milestone states are for, e.g. 2027-03-01 (as `watch --as-of`); default: today.",
        ),
    ] = None,
) -> None:
    """Where the cycle stands: each phase's window, state and receipts, and every milestone's state on
    a day (the same rows as the UI artifacts; the deadline watch's `processlage` for the same --as-of)."""
    from flows.cli_calendar import _parse_day, print_progression
    from models.db import session_scope
    from tasks.calendar import today_stockholm
    from tasks.cycle import get_cycle
    from tasks.progress import phase_statuses, progression, receipt_rows

    day = _parse_day(as_of, "--as-of")
    cfg = _cfg(config)
    pid = _phase_id(phase) if phase else None
    _db()
    y = _year(cfg, year)
    with session_scope() as s:
        cycle = get_cycle(s, cfg, y)
        if cycle is None:
            out.print(f"No cycle for {y} yet: start it with `styrkedja run preparation --year {y}`.")
            return
        statuses = phase_statuses(s, cfg, cycle.id, y)  # type: ignore[arg-type]
        rows = receipt_rows(s, cfg, cycle.id, pid) if pid else []  # type: ignore[arg-type]
        today = day or today_stockholm()
        milestones = progression(s, cfg, cycle.id, today)  # type: ignore[arg-type]
    t = Table(
        "phase",
        "window",
        "state",
        "receipts agreed",
        "väntar på retur",
        "väntar på kvittens",
        title=f"{cfg.organisation.name}, plan year {y}",
    )
    for st in statuses:
        colour = {"completed": "green", "waiting": "yellow", "failed": "red"}.get(st.state, "white")
        t.add_row(
            st.name,
            f"{st.window[0]} – {st.window[1]}",
            f"[{colour}]{st.state}[/{colour}]",
            f"{st.agreed} / {st.total}",
            str(st.awaiting_return),
            str(st.awaiting_signature),
        )
    out.print(t)
    print_progression(out, milestones, f"Milestones on {today}")
    if rows:
        _receipt_table(rows, f"Receipts: {phase}")


def _receipt_table(rows: list[dict[str, str]], title: str) -> None:
    t = Table(title=title)
    for name in rows[0]:
        # Names, states and dates whole on one line; the free text (who signed, comment) wraps.
        wraps = name in {"signerad av", "kommentar"}
        t.add_column(name, no_wrap=not wraps, overflow="fold", ratio=1 if wraps else None)
    for r in rows:
        t.add_row(*r.values())
    out.print(t)


@receipt_app.command("list")
@user_errors
def receipt_list(
    year: YearOpt = None,
    config: ConfigOpt = None,
    phase: Annotated[str | None, typer.Option(help="Only this phase.")] = None,
    unit: Annotated[str | None, typer.Option(help="Only receipts this unit sends or receives.")] = None,
    state: Annotated[str | None, typer.Option(help="issued, acknowledged, agreed, disputed or superseded.")] = None,
) -> None:
    """List the current receipts of a cycle (superseded versions with --state superseded)."""
    from sqlmodel import select

    from models.db import session_scope
    from models.tables import Receipt, ReceiptState
    from tasks.cycle import get_cycle
    from tasks.progress import _row

    cfg = _cfg(config)
    if unit is not None and unit not in {u.id for u in cfg.units}:
        raise UserError(f"--unit: unknown unit {unit!r}")
    _db()
    y = _year(cfg, year)
    if state is not None and state not in {s.value for s in ReceiptState}:
        raise UserError(f"--state: unknown state {state!r} (known: {', '.join(s.value for s in ReceiptState)})")
    with session_scope() as s:
        cycle = get_cycle(s, cfg, y)
        if cycle is None:
            raise UserError(f"--year: no cycle for {y}")
        q = select(Receipt).where(Receipt.cycle_id == cycle.id)
        if phase:
            q = q.where(Receipt.phase == _phase_id(phase))
        if unit:
            q = q.where((Receipt.sender_unit == unit) | (Receipt.receiver_unit == unit))
        q = q.where(Receipt.state == state) if state else q.where(Receipt.state != ReceiptState.SUPERSEDED)
        rows = [_row(cfg, r) for r in s.exec(q.order_by(Receipt.id))]
    if not rows:
        out.print("No receipts match.")
        return
    _receipt_table(rows, f"Receipts, plan year {y}")


@receipt_app.command("show")
@user_errors
def receipt_show(receipt_id: Annotated[int, typer.Argument(help="Receipt id.")], config: ConfigOpt = None) -> None:
    """Everything about one receipt: handoff, document, purpose, state, signature and history."""
    from sqlmodel import select

    from models.db import session_scope
    from models.tables import AuditEntry, Document
    from tasks.receipts import get_receipt

    _cfg(config)
    _db()
    with session_scope() as s:
        r = get_receipt(s, receipt_id)
        doc = s.get(Document, r.document_id) if r.document_id else None
        history = list(s.exec(select(AuditEntry).where(AuditEntry.subject == r.key).order_by(AuditEntry.at)))
    t = Table(show_header=False, title=f"Receipt {r.id}")
    for k, v in [
        ("key", r.key),
        ("handoff", f"{r.sender_unit} → {r.receiver_unit} ({r.direction})"),
        ("phase", r.phase),
        ("version", str(r.version) + (f" (replaces receipt {r.supersedes_id})" if r.supersedes_id else "")),
        ("document", f"{doc.title} — {doc.relpath}" if doc else "-"),
        ("content hash", r.content_hash),
        ("purpose", r.purpose),
        ("deadline", str(r.deadline)),
        ("state", str(r.state)),
        ("signed by", f"{r.signed_by or '-'} {r.signed_at:%Y-%m-%d %H:%M}" if r.signed_at else r.signed_by or "-"),
        ("on behalf, reason", r.on_behalf_reason or "-"),
        ("comment", r.comment or "-"),
    ]:
        t.add_row(k, v)
    out.print(t)
    for h in history:
        out.print(f"  {h.at:%Y-%m-%d %H:%M} {h.action} by {h.actor}" + (f" — {h.reason}" if h.reason else ""))


def _decide(
    receipt_id: int,
    signatory: str | None,
    code: str | None,
    comment: str | None,
    on_behalf: bool,
    reason: str,
    actor: str,
    config: str | None,
    dispute: bool,
) -> None:
    from tasks import receipts

    cfg = _cfg(config)
    _db()
    if on_behalf and not reason.strip():
        raise UserError('--on-behalf needs --reason "..." (recorded in the audit log)')
    req = receipts.SignRequest(
        receipt_id=receipt_id,
        signatory=signatory,
        code=code,
        comment=comment,
        actor=actor or signatory or "operatör",
        operator_reason=reason if on_behalf else None,
    )
    r = receipts.dispute(cfg, req) if dispute else receipts.sign(cfg, req)
    out.print(f"receipt {r.id}: [bold]{r.state}[/bold] by {r.signed_by}")
    from flows import local_server
    from tasks.waiting import resume_after_decision

    # The run of this receipt's follow-up occasion; the user's --config, for a phase started again.
    resumed = resume_after_decision(r, req.actor, prefect_up=local_server.is_healthy, config=config)
    if resumed:
        out.print(f"phase {resumed} resumed")


SignatoryOpt = Annotated[str | None, typer.Option(help="Your signatory id in the receiving unit.")]
CodeOpt = Annotated[str | None, typer.Option(help="The one-time code from the e-mail that delivered the document.")]
OnBehalfOpt = Annotated[bool, typer.Option(help="Operator: sign on the receiving unit's behalf (needs --reason).")]
ReasonOpt = Annotated[str, typer.Option(help="Why an operator signs on the unit's behalf (audit log).")]
ActorOpt = Annotated[str, typer.Option(help="Your name, for the audit log.")]


@receipt_app.command("sign")
@user_errors
def receipt_sign(
    receipt_id: Annotated[int, typer.Argument(help="Receipt id.")],
    signatory: SignatoryOpt = None,
    code: CodeOpt = None,
    comment: Annotated[str | None, typer.Option(help="Optional comment.")] = None,
    on_behalf: OnBehalfOpt = False,
    reason: ReasonOpt = "",
    actor: ActorOpt = "",
    config: ConfigOpt = None,
) -> None:
    """Agree on a receipt's content and purpose, as a signatory of the receiving unit.

    The last signature of a phase resumes its waiting run.
    """
    _decide(receipt_id, signatory, code, comment, on_behalf, reason, actor, config, dispute=False)


@receipt_app.command("dispute")
@user_errors
def receipt_dispute(
    receipt_id: Annotated[int, typer.Argument(help="Receipt id.")],
    # Optional here so that a dispute without a comment reaches the receipt rules, which refuse it
    # in one line and record the attempt in the audit log (a missing option would not be audited).
    comment: Annotated[str | None, typer.Option(help="What the sender must change (required).")] = None,
    signatory: SignatoryOpt = None,
    code: CodeOpt = None,
    on_behalf: OnBehalfOpt = False,
    reason: ReasonOpt = "",
    actor: ActorOpt = "",
    config: ConfigOpt = None,
) -> None:
    """Dispute a receipt: the sender is asked for a new version, whose receipt supersedes this one."""
    _decide(receipt_id, signatory, code, comment, on_behalf, reason, actor, config, dispute=True)


@app.command()
@user_errors
def resume(
    phase: Annotated[str, typer.Argument(help="The waiting phase.")],
    reason: Annotated[str, typer.Option(help="Why the phase goes on without all receipts (required, audited).")],
    year: YearOpt = None,
    config: ConfigOpt = None,
    actor: ActorOpt = "operatör",
    occasion: Annotated[
        str | None,
        typer.Option(help="The waiting follow-up occasion, e.g. delar-2028-08-31 (needed when several wait)."),
    ] = None,
) -> None:
    """Operator override: resume a phase that waits for receipts, with a reason."""
    from models.db import session_scope
    from tasks.cycle import get_cycle
    from tasks.waiting import resume_if_ready

    cfg = _cfg(config)
    pid = _phase_id(phase)
    if pid != "follow_up" and occasion:
        raise UserError(f"--occasion: only the follow-up phase has occasions (phase: {phase})")
    _db()
    y = _year(cfg, year)
    if not reason.strip():
        raise UserError("--reason: a reason is required")
    with session_scope() as s:
        cycle = get_cycle(s, cfg, y)
        if cycle is not None and occasion is None:
            occasion = _waiting_occasion(s, cycle.id, pid)  # type: ignore[arg-type]
    if cycle is None:
        raise UserError(f"--year: no cycle for {y}")
    if not resume_if_ready(cycle.id, pid, actor, occasion=occasion or "", force_reason=reason, config=config):  # type: ignore[arg-type]
        raise UserError(f"phase {phase}{' ' + occasion if occasion else ''}: no suspended run to resume for {y}")
    out.print(f"phase {phase}{' ' + occasion if occasion else ''} resumed")


def _waiting_occasion(session: Any, cycle_id: int, phase: str) -> str:
    """The one waiting run's occasion ("" for a phase without occasions); several: --occasion is needed."""
    from sqlmodel import select

    from models.tables import PhaseRun, PhaseState

    waiting = session.exec(
        select(PhaseRun.occasion).where(
            PhaseRun.cycle_id == cycle_id, PhaseRun.phase == phase, PhaseRun.state == PhaseState.WAITING
        )
    ).all()
    if len(waiting) > 1:
        raise UserError(f"--occasion: {len(waiting)} occasions wait, name one ({', '.join(sorted(waiting))})")
    return waiting[0] if waiting else ""


@app.command()
def serve() -> None:
    """Serve every deployment (phases and sign-receipt) to the Prefect API; runs until stopped."""
    from prefect import serve as prefect_serve

    from flows.registry import deployments

    _db()
    prefect_serve(*deployments(), limit=8)


@app.command()
@user_errors
def demo(
    config: ConfigOpt = "region",
    year: Annotated[int, typer.Option(help="Plan year of the demonstration.")] = 2028,
    fresh: Annotated[bool, typer.Option(help="Start from an empty application database and output folder.")] = False,
) -> None:
    """Run a whole demonstration year: every phase and follow-up through the served deployments;
    simulated committees and units act in the portal from the links in the e-mails a local mail
    server received (download, fill in, upload, agree or dispute); a deadline-watch run ends it.

    Starts the local Prefect server (with its UI), the portal (STYRKEDJA_PORTAL_PORT, default
    8400) and the serving process if they are not running, and leaves them up for browsing;
    `styrkedja down` stops them.
    """
    from flows.demo import run_demo

    run_demo(config or "region", year, fresh, out)


@app.command()
def down() -> None:
    """Stop the local Prefect server, the serving process and the portal started by `demo`."""
    from flows.local_server import stop_all

    names = {"portal": "portalen", "serve": "driftsättningarna", "prefect-server": "Prefect-servern"}
    stopped = [names.get(n, n) for n in stop_all()]
    out.print("Stoppade: " + ", ".join(stopped) if stopped else "Inget var igång.")


@app.command("init-db")
@user_errors
def init_db() -> None:
    """Create or upgrade the application database (Alembic migrations) at STYRKEDJA_DATABASE_URL."""
    from models.db import database_url

    _db()
    out.print(f"database at head: {database_url().split('@')[-1]}")


def _register_extensions() -> None:
    """Commands that live in their own modules: returns, calendars and deadlines, archives, raised items."""
    from flows import cli_archive, cli_calendar, cli_followup, cli_outbox, cli_portal, cli_returns

    for module in (cli_returns, cli_calendar, cli_archive, cli_followup, cli_outbox, cli_portal):
        module.register(app)


_register_extensions()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in {"--version", "-V"}:
        print("styrkedja 0.1.0")
        return
    sys.exit(_main_one_line_usage_errors(sys.argv[1:]))


def _main_one_line_usage_errors(args: list[str]) -> int:
    """Run the command line; a usage mistake (unknown option, a year that is not a number) is one
    line and exit 2 like every other user error, instead of the framed multi-line message."""
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=args, prog_name="styrkedja", standalone_mode=False)
    except typer.Abort:
        err.print("interrupted")
        return 130
    except typer.TyperException as exc:  # Typer's own (vendored Click) usage and parameter errors
        if type(exc).__name__ == "NoArgsIsHelpError":  # `styrkedja receipt`: the help, as before
            exc.show()  # type: ignore[attr-defined]
            return 2
        ctx = getattr(exc, "ctx", None)
        where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        formatted = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err.print(f"[red]error:[/red] {' '.join(formatted.split())}{where}", highlight=False, soft_wrap=True)
        return int(getattr(exc, "exit_code", 2))
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    main()
