"""A whole demonstration year on the embedded defaults.

Every phase runs through its served deployment, exactly as the finance department would trigger
it. Receivers are simulated: they read the one-time codes from the e-mails a local mail server
received, sign — and one of them disputes once, so a new version is issued and signed — and the
last signature resumes the waiting phase.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from models.db import home, output_root
from models.errors import UserError

PHASE_TIMEOUT_S = 300
DISPUTING_PHASE = "committee_feedback"
_RECEIPT_RE = re.compile(r"Kvittens(?:-id)?:\s*(\d+)", re.IGNORECASE)
_CODE_RE = re.compile(r"(?i:engångskod|kod):\s*([A-Z0-9]{8})\b")


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

    def codes(self) -> dict[tuple[int, str], str]:
        """(receipt id, recipient address) → code, from every message received so far."""
        found: dict[tuple[int, str], str] = {}
        for msg in list(self.messages):
            body = msg.get_body(preferencelist=("plain", "html"))
            text = body.get_content() if body is not None else ""
            rid, code = _RECEIPT_RE.search(text), _CODE_RE.search(text)
            if rid and code:
                for addr in str(msg.get("To", "")).split(","):
                    found[(int(rid.group(1)), addr.strip().lower())] = code.group(1)
        return found


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

    with console.status("Starting the local Prefect server (UI) …"):
        local_server.ensure_server()
    os.environ["PREFECT_API_URL"] = local_server.api_url()
    with console.status("Serving the deployments …"):
        local_server.ensure_serving()

    sink = MailSink(port, home() / "mail")
    try:
        sink.start()
    except OSError as exc:
        raise UserError(f"STYRKEDJA_SMTP_PORT: port {port} is taken ({exc.strerror}); set another port") from None
    results: list[dict[str, Any]] = []
    try:
        runs = [(p.id, None) for p in cfg.wheel.phases if p.id != "follow_up"]
        runs += [("follow_up", o.key) for o in _occasions_for_demo(cfg, year)]
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as bar:
            overall = bar.add_task("Demonstration year", total=len(runs))
            for phase, occasion in runs:
                results.append(_run_one(cfg, config, year, phase, occasion, sink, bar))
                bar.advance(overall)
    finally:
        sink.stop()
    _summary(cfg, year, results, sink, time.monotonic() - started, console)


def _run_one(
    cfg: Any, config: str, year: int, phase: str, occasion: str | None, sink: MailSink, bar: Progress
) -> dict[str, Any]:
    from uuid import UUID

    from prefect import get_client
    from prefect.deployments import run_deployment

    from flows.demo_authors import hand_back_all
    from flows.registry import PHASE_FLOWS, deployment_name
    from models.db import session_scope
    from tasks.cycle import get_cycle
    from tasks.notify import deliver_outbox
    from tasks.receipts import SignRequest, current_receipts, dispute, sign, waiting_for
    from tasks.returns import exchange_counts
    from tasks.waiting import resume_if_ready
    from tasks.wheel import resolve_wheel

    name = cfg.phase(phase).name + (f" ({occasion})" if occasion else "")
    as_of: date = resolve_wheel(cfg, year)[cfg.phase(phase).receipt_deadline]
    params: dict[str, Any] = {"year": year, "config": config, "as_of": as_of.isoformat(), "actor": "demo"}
    if occasion:
        params["occasion"] = occasion
    fr = run_deployment(deployment_name(PHASE_FLOWS[phase]), parameters=params, timeout=0)
    task = bar.add_task(f"  {name}", total=None)
    disputed = False
    handed_in = occasion is None  # follow-up: the units hand in their returns before anyone signs
    returns_folder = home() / "demo-returns"
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(UUID(str(fr.id))).state
            if state is not None and state.is_final():
                break
            if time.monotonic() > deadline:
                raise UserError(f"demo: phase {phase} did not finish within {PHASE_TIMEOUT_S} s (flow run {fr.id})")
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
                from flows.demo_returns import hand_in_all

                bar.update(task, description=f"  {name}: the units hand in their returns")
                hand_in_all(config, year, occasion, returns_folder)  # type: ignore[arg-type]
                deliver_outbox(cfg, base_dir=output_root())
                bar.update(task, description=f"  {name}")
                handed_in = True
            # Every author asked for content fills in and hands back what it received (the level
            # reports of a follow-up as they come); the deliveries then reach the receivers.
            if hand_back_all(cfg, cycle.id, phase, returns_folder, topic_prefix=_fill_in_prefix(occasion)):
                deliver_outbox(cfg, base_dir=output_root())
                continue
            codes = sink.codes()
            for r in rows:
                if waiting_for(r.mode, r.state) != "kvittens":
                    continue
                signatory = cfg.unit(r.receiver_unit).signatories[0]
                code = codes.get((r.id, signatory.email.lower()))
                if code is None:
                    continue  # the e-mail has not arrived yet
                req = SignRequest(r.id, signatory.id, code, actor=f"demo:{signatory.id}")
                if phase == DISPUTING_PHASE and not disputed and r.version == 1:
                    dispute(
                        cfg,
                        SignRequest(
                            r.id,
                            signatory.id,
                            code,
                            actor=req.actor,
                            comment="Risk- och känslighetsanalysen saknar effekter av lägre statsbidrag; komplettera.",
                        ),
                    )
                    disputed = True
                else:
                    sign(cfg, dataclasses.replace(req, comment=decision_comment(cfg, year, r)))
            resume_if_ready(cycle.id, phase, "demo", occasion=occasion or "", wait_s=0, config=config)  # type: ignore[arg-type]
            time.sleep(0.5)
        final = client.read_flow_run(UUID(str(fr.id)))
    bar.remove_task(task)
    ok = final.state is not None and final.state.is_completed()
    if not ok:
        raise UserError(f"demo: phase {phase} ended {final.state.name if final.state else '?'} (flow run {fr.id})")
    with session_scope() as s:
        cycle = get_cycle(s, cfg, year)
        rows = current_receipts(s, cycle.id, phase, occasion or "")  # type: ignore[union-attr]
    unagreed = _planned_without_agreement(cfg, year, phase, occasion, rows)
    if unagreed:
        raise UserError(
            f"demo: phase {phase} completed, but {len(unagreed)} planned handoff(s) have no agreed receipt: "
            + ", ".join(unagreed[:5])
        )
    with session_scope() as s:
        exchange = exchange_counts(s, cycle.id, phase, occasion or "")  # type: ignore[union-attr]
    if exchange.agreed_without_return:
        raise UserError(
            f"demo: phase {phase}: {exchange.agreed_without_return} fill-in receipt(s) agreed without a stored return"
        )
    return {
        "phase": phase,
        "name": name,
        "flow_run": str(fr.id),
        "state": final.state.name,  # type: ignore[union-attr]
        "receipts": len(rows),
        "agreed": sum(r.state == "agreed" for r in rows),
        "versions": max((r.version for r in rows), default=0),
        "requests": exchange.requests,
        "returns": exchange.returns,
        "without_return": exchange.agreed_without_return,
    }


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
    return [f"{h.topic} {h.sender}→{h.receiver}" for h in planned if (h.topic, h.sender, h.receiver) not in agreed]


def _returns_count() -> int:
    from sqlmodel import func, select

    from models.db import session_scope
    from models.tables import Submission

    with session_scope() as s:
        return int(s.exec(select(func.count()).select_from(Submission)).one())


def _summary(
    cfg: Any, year: int, results: list[dict[str, Any]], sink: MailSink, seconds: float, console: Console
) -> None:
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
            r["state"],
            str(r["requests"]),
            str(r["returns"]),
            f"{r['agreed']} / {r['receipts']}",
            str(r["without_return"]),
            str(r["versions"]),
        )
    console.print(t)
    console.print(f"Ifyllnadskvittenser godkända utan inlämnad retur: {sum(r['without_return'] for r in results)}")
    folder = output_root() / str(year)
    docs = sorted(p for p in folder.rglob("*") if p.suffix in (".docx", ".xlsx"))
    levels = [p for p in docs if "_nivarapport_" in p.name and p.suffix == ".docx"]
    console.print(f"Phases run: {len(results)} ({len({r['phase'] for r in results})} phases incl. follow-up)")
    console.print(f"Documents written: {len(docs)} under {folder}")
    console.print(f"Receipts signed: {sum(r['agreed'] for r in results)}")
    console.print(
        f"Level reports written: {len(levels)} (Word, each with its Excel figures) for "
        f"{len({p.name.split('_')[0] for p in levels})} levels, from {_returns_count()} returned documents"
    )
    console.print(f"E-mails received by the local mail server: {len(sink.messages)} (in {sink.folder})")
    console.print(f"Prefect UI: {local_server.ui_url()}  (stop with `make down`)")
    console.print(f"Time: {seconds:.0f} s")
