"""A whole demonstration year on the embedded defaults.

Every phase runs through its served deployment, exactly as the finance department would trigger
it. The people in the chain are simulated, and act in the portal from the links in the e-mails a
local mail server received (`flows.demo_portal`): authors download, fill in and upload; receivers
agree — and one of them disputes once, so a new version is issued and signed — and the last
signature resumes the waiting phase. The year ends with a deadline-watch run, as every morning.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.demo_portal import Inbox
from models.db import home, output_root
from models.errors import UserError

PHASE_TIMEOUT_S = 300
DISPUTING_PHASE = "committee_feedback"
DISPUTE_COMMENT = "Risk- och känslighetsanalysen saknar effekter av lägre statsbidrag; komplettera."


@dataclass
class MailSink:
    """A local SMTP server that keeps every message (and writes it to var/mail/ for a look)."""

    port: int
    folder: Path
    messages: list[email.message.EmailMessage] = field(default_factory=list)

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                sink.messages.append(msg)  # type: ignore[arg-type]
                sink.folder.mkdir(parents=True, exist_ok=True)
                (sink.folder / f"{len(sink.messages):05d}.eml").write_bytes(envelope.content)
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


# The paragraph numbers the simulated bodies' minutes give their decisions on the plan.
_DEMO_PARAGRAPHS = {"working_committee": 45, "executive_board": 112, "assembly": 34}


def decision_comment(cfg: Any, year: int, receipt: Any) -> str | None:
    """What a body of the decision chain writes when it agrees to the draft plan: its decision, as
    in its minutes ("§ 45 RSAU föreslår regionstyrelsen …"). Other receipts are signed without."""
    from tasks.handoffs import DECISION_CHAIN, REGIONAL_PLAN

    if receipt.phase != REGIONAL_PLAN:
        return None
    roles = cfg.organisation.roles
    stage = next((s for s in DECISION_CHAIN if s.topic == receipt.topic), None)
    if stage is None or getattr(roles, stage.receiver_role) != receipt.receiver_unit:
        return None
    region = cfg.organisation.kind == "region"
    plan = f"{'regionplan' if region else 'mål'} och budget {year}–{year + 3}"
    board, assembly = (cfg.unit(roles.executive_board).name, cfg.unit(roles.assembly).name)
    texts = {
        "working_committee": f"{roles.working_committee} föreslår {board.lower()} att föreslå {assembly.lower()} "
        f"att fastställa {plan}.",
        "executive_board": f"{board} föreslår {assembly.lower()} att fastställa {plan}.",
        "assembly": f"{assembly} fastställer {plan} i enlighet med {board.lower()}s förslag.",
    }
    return f"§ {_DEMO_PARAGRAPHS[stage.receiver_role]} {texts[stage.receiver_role]}"


def _occasions_for_demo(cfg: Any, year: int) -> list[Any]:
    """The reports that carry the internal control follow-up: the August interim report and the
    annual report. Every unit hands in a return for each, so they take a while (about 15 s each)."""
    from tasks.followup_calendar import occasions
    from tasks.level_reports import carries_internal_control

    return [o for o in occasions(cfg, year) if carries_internal_control(cfg, o)]


def run_demo(config: str, year: int, fresh: bool, console: Console) -> None:
    import os

    from config.loader import load_config
    from flows import local_server
    from models.migrate import upgrade
    from tasks.cycle import check_year

    check_year(year)
    cfg = load_config(config)
    os.environ.setdefault("STYRKEDJA_SMTP_PORT", "8025")
    port = int(os.environ["STYRKEDJA_SMTP_PORT"])
    started = time.monotonic()

    if fresh:
        local_server.stop_all()
        for p in (home() / "styrkedja.db", home() / "styrkedja.db-wal", home() / "styrkedja.db-shm"):
            p.unlink(missing_ok=True)
        shutil.rmtree(output_root() / str(year), ignore_errors=True)
        shutil.rmtree(home() / "mail", ignore_errors=True)
    upgrade()

    with console.status("Startar den lokala Prefect-servern (operatörernas gränssnitt) …"):
        local_server.ensure_server()
    os.environ["PREFECT_API_URL"] = local_server.api_url()
    # The portal first: the serving process and this one put its address into every message's link.
    with console.status("Startar kvittensportalen …"):
        local_server.ensure_portal(config)
    with console.status("Startar driftsättningarna …"):
        local_server.ensure_serving()

    sink = MailSink(port, home() / "mail")
    try:
        sink.start()
    except OSError as exc:
        raise UserError(
            f"STYRKEDJA_SMTP_PORT: porten {port} är upptagen ({exc.strerror}); ange en annan port"
        ) from None
    results: list[dict[str, Any]] = []
    inbox = Inbox(sink.messages)
    try:
        runs = [(p.id, None) for p in cfg.wheel.phases if p.id != "follow_up"]
        runs += [("follow_up", o.key) for o in _occasions_for_demo(cfg, year)]
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as bar:
            overall = bar.add_task("Demonstrationsåret", total=len(runs) + 1)
            for phase, occasion in runs:
                results.append(_run_one(cfg, config, year, phase, occasion, inbox, bar))
                bar.advance(overall)
            # The operators' views (processläge, tidsfrister, årshjulet) come from the deadline
            # watch, which runs every morning; the demonstration ends with one.
            watch = _deadline_watch(config, results[-1]["as_of"])
            bar.advance(overall)
    finally:
        sink.stop()
    operator = _demo_operator()
    _summary(cfg, year, results, watch, operator, sink, time.monotonic() - started, console)


def _deadline_watch(config: str, as_of: str) -> str:
    """One deadline-watch run through its deployment; when it ran, in Swedish."""
    from prefect.deployments import run_deployment

    fr = run_deployment(
        "deadline-watch/deadline-watch", parameters={"config": config, "as_of": as_of}, timeout=PHASE_TIMEOUT_S
    )
    if fr.state is None or not fr.state.is_completed():
        raise UserError(f"demo: tidsbevakningen slutade {fr.state.name if fr.state else '?'} (Prefect-körning {fr.id})")
    return f"per {as_of}"


def _demo_operator() -> tuple[str, str]:
    """An operator account for the portal's overview pages, with a new password for this run."""
    import secrets

    from portal.operators import add_operator

    password = secrets.token_urlsafe(12)
    add_operator("demo", "Demonstrationens operatör", password)
    return "demo", password


def _run_one(
    cfg: Any, config: str, year: int, phase: str, occasion: str | None, inbox: Inbox, bar: Progress
) -> dict[str, Any]:
    from uuid import UUID

    from prefect import get_client
    from prefect.deployments import run_deployment

    from flows.demo_portal import hand_back_all
    from flows.registry import PHASE_FLOWS, deployment_name
    from models.db import session_scope
    from portal.client import PortalClient
    from tasks.cycle import get_cycle
    from tasks.followup_calendar import find_occasion
    from tasks.notify import deliver_outbox
    from tasks.receipts import current_receipts, waiting_for
    from tasks.returns import exchange_counts
    from tasks.waiting import resume_if_ready
    from tasks.wheel import resolve_wheel

    name = cfg.phase(phase).name + (f" – {find_occasion(cfg, year, occasion).name}" if occasion else "")
    as_of: date = resolve_wheel(cfg, year)[cfg.phase(phase).receipt_deadline]
    params: dict[str, Any] = {"year": year, "config": config, "as_of": as_of.isoformat(), "actor": "demo"}
    if occasion:
        params["occasion"] = occasion
    fr = run_deployment(deployment_name(PHASE_FLOWS[phase]), parameters=params, timeout=0)
    task = bar.add_task(f"  {name}", total=None)
    disputed, decided = False, set()
    handed_in = occasion is None  # follow-up: the units hand in their returns before anyone signs
    returns_folder = home() / "demo-returns"
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(UUID(str(fr.id))).state
            if state is not None and state.is_final():
                break
            if time.monotonic() > deadline:
                raise UserError(f"demo: {name} blev inte klar inom {PHASE_TIMEOUT_S} s (Prefect-körning {fr.id})")
            with session_scope() as s:
                cycle = get_cycle(s, cfg, year)
                rows = current_receipts(s, cycle.id, phase, occasion or "") if cycle else []
            if cycle is None:
                time.sleep(0.5)
                continue
            bar.update(task, total=len(rows) or None, completed=sum(r.state == "agreed" for r in rows))
            if not handed_in:
                if not rows:
                    time.sleep(0.5)
                    continue
                bar.update(task, description=f"  {name}: enheterna lämnar in sina returer i portalen")
                handed_in = _units_hand_in(cfg, config, year, occasion, rows, inbox, returns_folder)  # type: ignore[arg-type]
                bar.update(task, description=f"  {name}")
            # Every author asked for content fills in and hands back what it received (the level
            # reports of a follow-up as they come); the deliveries then reach the receivers.
            if hand_back_all(cfg, cycle.id, year, phase, returns_folder, inbox, topic_prefix=_fill_in_prefix(occasion)):
                deliver_outbox(cfg, base_dir=output_root())
                continue
            for r in rows:
                if waiting_for(r.mode, r.state) != "kvittens" or r.id in decided:
                    continue
                signatory = cfg.unit(r.receiver_unit).signatories[0]
                link = inbox.link([r.id], {signatory.email.lower()})
                if link is None:
                    continue  # the e-mail has not arrived yet
                with PortalClient.open(link) as page:
                    if phase == DISPUTING_PHASE and not disputed and r.version == 1:
                        page.dispute(DISPUTE_COMMENT)
                        disputed = True
                    else:
                        page.agree(decision_comment(cfg, year, r) or "")
                decided.add(r.id)
            resume_if_ready(cycle.id, phase, "demo", occasion=occasion or "", wait_s=0, config=config)  # type: ignore[arg-type]
            time.sleep(0.5)
        final = client.read_flow_run(UUID(str(fr.id)))
    bar.remove_task(task)
    ok = final.state is not None and final.state.is_completed()
    if not ok:
        raise UserError(f"demo: {name} slutade {final.state.name if final.state else '?'} (Prefect-körning {fr.id})")
    with session_scope() as s:
        cycle = get_cycle(s, cfg, year)
        rows = current_receipts(s, cycle.id, phase, occasion or "")  # type: ignore[union-attr]
    unagreed = _planned_without_agreement(cfg, year, phase, occasion, rows)
    if unagreed:
        raise UserError(
            f"demo: {name} blev klar, men {len(unagreed)} planerade överlämningar saknar godkänd kvittens: "
            + ", ".join(unagreed[:5])
        )
    with session_scope() as s:
        exchange = exchange_counts(s, cycle.id, phase, occasion or "")  # type: ignore[union-attr]
    if exchange.agreed_without_return:
        raise UserError(
            f"demo: {name}: {exchange.agreed_without_return} ifyllnadskvittenser godkända utan sparad retur"
        )
    return {
        "phase": phase,
        "name": name,
        "as_of": as_of.isoformat(),
        "flow_run": str(fr.id),
        "state": final.state.name,  # type: ignore[union-attr]
        "receipts": len(rows),
        "agreed": sum(r.state == "agreed" for r in rows),
        "versions": max((r.version for r in rows), default=0),
        "requests": exchange.requests,
        "returns": exchange.returns,
        "without_return": exchange.agreed_without_return,
    }


def _units_hand_in(
    cfg: Any, config: str, year: int, occasion: str, rows: list[Any], inbox: Inbox, folder: Path
) -> bool:
    """The follow-up's units hand in their returns through their request's link, as the requests
    arrive; True when none is left to hand in."""
    from flows.demo_portal import addresses
    from flows.demo_returns import hand_in_all, not_returned
    from tasks.notify import deliver_outbox

    waiting = not_returned(occasion)
    links = {}
    for r in rows:
        if r.topic == f"uppfoljning-{occasion}" and r.sender_unit in waiting:
            link = inbox.link([r.id], addresses(cfg, r.sender_unit))
            if link is not None:
                links[r.sender_unit] = link
    if links:
        hand_in_all(config, year, occasion, folder, links=links)
        deliver_outbox(cfg, base_dir=output_root())
    return not (waiting - set(links))


def _fill_in_prefix(occasion: str | None) -> str:
    """Which fill-in receipts the generic authors answer: in a follow-up occasion the levels' reports
    (the units' returns, with figures that add up the chain, come from flows.demo_returns)."""
    return f"nivarapport-{occasion}" if occasion else ""


def _planned_without_agreement(cfg: Any, year: int, phase: str, occasion: str | None, rows: list[Any]) -> list[str]:
    """The phase's planned handoffs (every stage of a staged phase) that no agreed receipt covers:
    a run that says Completed must have carried each of them through."""
    from tasks.followup_calendar import find_occasion
    from tasks.handoffs import handoffs_for_phase

    occ = find_occasion(cfg, year, occasion) if occasion else None
    agreed = {(r.topic, r.sender_unit, r.receiver_unit) for r in rows if r.state == "agreed"}
    planned = handoffs_for_phase(cfg, year, phase, occ, every_stage=True)
    return [
        f"{cfg.unit(h.sender).name} → {cfg.unit(h.receiver).name}"
        for h in planned
        if (h.topic, h.sender, h.receiver) not in agreed
    ]


def _returns_count() -> int:
    from sqlmodel import func, select

    from models.db import session_scope
    from models.tables import Submission

    with session_scope() as s:
        return int(s.exec(select(func.count()).select_from(Submission)).one())


def _summary(
    cfg: Any,
    year: int,
    results: list[dict[str, Any]],
    watch: str,
    operator: tuple[str, str],
    sink: MailSink,
    seconds: float,
    console: Console,
) -> None:
    import os

    from flows import local_server

    t = Table(
        "Fas",
        "Prefect-körning",
        "Status",
        "Förfrågningar",
        "Returer",
        "Kvittenser godkända",
        "Godkända utan retur",
        "Högsta version",
        title=f"{cfg.organisation.name}, planår {year}",
    )
    for r in results:
        t.add_row(
            r["name"],
            r["flow_run"][:8],
            "klar" if r["state"] == "Completed" else r["state"],
            str(r["requests"]),
            str(r["returns"]),
            f"{r['agreed']} / {r['receipts']}",
            str(r["without_return"]),
            str(r["versions"]),
        )
    console.print(t)
    console.print(f"Ifyllnadskvittenser godkända utan inlämnad retur: {sum(r['without_return'] for r in results)}")
    folder = output_root() / str(year)
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".docx", ".xlsx"))
    docs = [p for p in files if p.parent.name != "inkommet"]  # what came back is counted apart
    levels = [p for p in docs if "_nivarapport_" in p.name and p.suffix == ".docx"]
    console.print(f"Körda faser: {len(results)} ({len({r['phase'] for r in results})} faser, uppföljningen inräknad)")
    console.print(f"Skrivna dokument: {len(docs)} i {folder} (och {len(files) - len(docs)} inlämnade returer)")
    console.print(f"Godkända kvittenser: {sum(r['agreed'] for r in results)}")
    console.print(
        f"Nivårapporter: {len(levels)} (Word, var och en med sina siffror i Excel) för "
        f"{len({p.name.split('_')[0] for p in levels})} nivåer, av {_returns_count()} inlämnade dokument"
    )
    console.print(f"E-post till den lokala e-postservern: {len(sink.messages)} (i {sink.folder})")
    console.print(
        f"Tidsbevakningen: körd ({watch}); processläge, tidsfrister och årshjul finns som artefakter i Prefect"
    )
    console.print(f"Kvittensportalen: {os.environ.get('STYRKEDJA_PORTAL_URL', '')}")
    console.print(
        f"  operatörssidor: {os.environ.get('STYRKEDJA_PORTAL_URL', '')}/operator "
        f"(användare {operator[0]}, lösenord {operator[1]})"
    )
    console.print(f"Prefect (operatörernas gränssnitt): {local_server.ui_url()}  (stoppa med `make down`)")
    console.print(f"Tid: {seconds:.0f} s")
