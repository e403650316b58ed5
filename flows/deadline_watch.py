"""The deadline watch as a Prefect flow, run every morning at 06:00 (Europe/Stockholm).

1. queue the day's reminders and escalations (tasks.deadlines.run_watch; idempotent by key);
2. send the outbox (a channel that is down is retried on a later run, never fails this one);
3. sweep the phases that wait for receipts: a run whose last receipt was signed before it had
   suspended would otherwise wait for ever (tasks.waiting.resume_if_ready);
4. publish, per active cycle, keyed artifacts a finance officer reads in the Prefect UI: the
   process-progression table, all receipts, a summary of the most urgent items, and the wheel.

Parameters hold no secrets (a date and a configuration name); everything that reaches a log or an
artifact comes from the database and the configuration's names, never from channel URLs.
"""

from __future__ import annotations

import base64
from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.schedules import Cron
from sqlmodel import select

from config.loader import load_config
from config.schema import OrgConfig
from models.db import output_root, session_scope
from models.tables import PhaseRun, PhaseState, ReceiptState
from tasks.calendar import today_stockholm
from tasks.deadlines import DueItem, WatchReport, run_watch
from tasks.notify import mask_secrets
from tasks.phase_steps import send_notifications
from tasks.progress import (
    DEADLINE_STATE_SV,
    artifact_key,
    days_text,
    phase_statuses,
    progression,
    receipt_rows,
    soon_days,
)
from tasks.receipts import current_receipts

DESCRIPTION = (
    "Tidsfristbevakning, varje morgon kl. 06.00: påminner om milstolpar och kvittenser som snart ska "
    "vara klara eller är försenade, eskalerar till nivån ovanför när något är försenat, och visar "
    "processens läge för varje pågående planår."
)
SCHEDULE = Cron("0 6 * * *", timezone="Europe/Stockholm")
ACTOR = "deadline-watch"
URGENT_SHOWN = 15
PHASE_STATE_SV = {
    PhaseState.RUNNING: "pågår",
    PhaseState.WAITING: "väntar på kvittenser",
    PhaseState.COMPLETED: "klar",
    PhaseState.FAILED: "misslyckades",
    "not started": "inte startad",
}

step = task(cache_policy=NO_CACHE, persist_result=False, retries=0)


@step
def watch(config: str | None, as_of: date) -> WatchReport:
    report = run_watch(load_config(config), as_of)
    get_run_logger().info(
        "%s: %d cycles active; %d milestones and %d receipts due or overdue; queued %d reminders and "
        "%d escalations (%d already queued)",
        as_of,
        len(report.cycles),
        report.milestones_due,
        report.receipts_due,
        report.reminders,
        report.escalations,
        report.already_queued,
    )
    return report


@step
def sweep_waiting(cycle_ids: list[int], config: str | None = None) -> list[str]:
    """Resume every waiting phase run that has all its receipts (or a dispute to answer); `config`
    is the watch's own configuration, for a phase started again from its deployment."""
    from tasks.waiting import resume_if_ready

    if not cycle_ids:
        return []
    with session_scope() as session:
        # One row per follow-up occasion: each waits for, and is resumed on, its own receipts.
        waiting = session.exec(
            select(PhaseRun.cycle_id, PhaseRun.phase, PhaseRun.occasion).where(
                PhaseRun.cycle_id.in_(cycle_ids),  # type: ignore[attr-defined]
                PhaseRun.state == PhaseState.WAITING,
            )
        ).all()
    resumed = []
    for cycle_id, phase, occasion in waiting:
        name = f"{phase} {occasion}".strip()
        try:
            if resume_if_ready(cycle_id, phase, ACTOR, occasion=occasion, wait_s=0, config=config):
                resumed.append(f"{cycle_id}/{phase}" + (f"/{occasion}" if occasion else ""))
        except Exception as exc:  # a stale run id must not stop the watch; say so and go on
            get_run_logger().warning("could not resume %s of cycle %d: %s", name, cycle_id, mask_secrets(str(exc)))
    if resumed:
        get_run_logger().info("resumed waiting phases: %s", ", ".join(resumed))
    return resumed


def _cell(text: object) -> str:
    """A markdown table cell: one line, no pipes."""
    return " ".join(str(text).split()).replace("|", "/")


def urgent_rows(cfg: OrgConfig, items: list[DueItem], limit: int = URGENT_SHOWN) -> list[dict[str, str]]:
    """The most urgent items as plain rows (Swedish): what, kind, who must act, deadline, how late."""
    names = {u.id: u.name for u in cfg.units}
    out = []
    for item in items[:limit]:
        if item.kind == "milestone":
            what, kind = item.name, "milstolpe"
        else:
            kind = "kvittens, bestriden" if item.disputed else "kvittens"
            what = f"{item.name} ({names.get(item.receiver or '', item.receiver)})"
        late = -item.days
        state = f"{late} {'dag' if late == 1 else 'dagar'} försenad" if late > 0 else days_text(item.days)
        out.append(
            {
                "vad": what,
                "typ": kind,
                "vem ska agera": names.get(item.actor, item.actor),
                "sista dag": item.due.isoformat(),
                "läge": state,
            }
        )
    return out


@step
def publish_cycle(
    config: str | None,
    cycle_id: int,
    year: int,
    as_of: date,
    urgent: list[dict[str, str]],
    urgent_total: int,
    queued: dict[str, int],
) -> dict[str, Any]:
    """The cycle's artifacts: progression table, receipts, summary and wheel (keyed: the UI keeps history)."""
    from tasks.coordination import check_coordination

    cfg = load_config(config)
    org = cfg.organisation.id
    with session_scope() as session:
        rows = progression(session, cfg, cycle_id, as_of)
        receipts = receipt_rows(session, cfg, cycle_id)
        statuses = phase_statuses(session, cfg, cycle_id, year)
        open_receipts = [r for r in current_receipts(session, cycle_id) if r.state != ReceiptState.AGREED]
    counts = {state: sum(1 for r in rows if r.state == state) for state in DEADLINE_STATE_SV}
    day = as_of.isoformat()
    soon = soon_days(cfg)

    create_table_artifact(
        table=[r.as_row() for r in rows] or [{"status": "inga milstolpar"}],
        key=artifact_key("processlage", org, year),
        description=(
            f"Processens läge för planår {year} den {day}: varje milstolpe i årshjulet med ansvarig, sista dag "
            f"och status. Klar: {counts['done']}, försenad: {counts['overdue']}, snart (inom {soon} dagar): "
            f"{counts['due_soon']}, kommande: {counts['upcoming']}."
        ),
    )
    agreed = sum(1 for r in receipts if r["status"] == "överens")
    create_table_artifact(
        table=receipts or [{"status": "inga kvittenser"}],
        key=artifact_key("kvittenser", org, year),
        description=(
            f"Alla kvittenser för planår {year} den {day}: {agreed} av {len(receipts)} överens. "
            "En kvittens är mottagarens bekräftelse av att innehåll och syfte är uppfattade som avsändaren avsett."
        ),
    )

    conflicts = check_coordination(cfg, year)
    md = [
        f"# Tidsfrister – {cfg.organisation.name}, planår {year}",
        "",
        f"Läget den {day}. Bevakningen körs varje morgon kl. 06.00 och påminner den som ska agera "
        f"{', '.join(str(d) for d in cfg.deadlines.reminder_offsets_days)} dagar före sista dag, på dagen och "
        f"varje dag efter. Efter {cfg.deadlines.escalate_after_days} dagars försening går en eskalering till "
        "nivån ovanför, sedan en gång i veckan.",
        "",
        f"- Milstolpar: {counts['overdue']} försenade, {counts['due_soon']} inom {soon} dagar, "
        f"{counts['done']} klara av {len(rows)}",
        f"- Kvittenser: {len(open_receipts)} väntar (varav "
        f"{sum(1 for r in open_receipts if r.deadline < as_of)} försenade), {agreed} av {len(receipts)} överens",
        f"- I dag köade påminnelser: {queued['reminders']}, eskaleringar: {queued['escalations']} "
        "(alla pågående planår)",
        f"- Meddelanden skickade: {queued['sent']}, väntar på nytt försök: {queued['retried']}, "
        f"misslyckade: {queued['failed']}",
        "",
        "## Mest brådskande",
        "",
    ]
    if urgent:
        md += ["| " + " | ".join(urgent[0]) + " |", "|" + "---|" * len(urgent[0])]
        md += ["| " + " | ".join(_cell(v) for v in row.values()) + " |" for row in urgent]
    else:
        md += ["Inget är försenat eller förfaller inom de närmaste dagarna."]
    if urgent_total > len(urgent):
        md += ["", f"… och {urgent_total - len(urgent)} till; se tabellerna över processens läge och kvittenserna."]
    md += [
        "",
        "## Faserna",
        "",
        "| Fas | Period | Status | Kvittenser överens | Väntar på retur | Väntar på kvittens |",
        "|---|---|---|---|---|---|",
    ]
    for st in statuses:
        md.append(
            f"| {_cell(st.name)} | {st.window[0].isoformat()} – {st.window[1].isoformat()} | "
            f"{PHASE_STATE_SV.get(st.state, st.state)} | {st.agreed} av {st.total} | {st.awaiting_return} | "
            f"{st.awaiting_signature} |"
        )
    md += ["", "## Samordning med andra processer", ""]
    md += [f"- {_cell(c.message())}" for c in conflicts] or ["Inga konflikter mellan årshjulen."]
    md += ["", "## Årshjulet", "", f"Bilden finns som artefakten `{artifact_key('arshjul', org, year)}`", ""]
    png_path = _write_wheel(cfg, year)
    md += [f"och som fil: `{png_path}` (SVG bredvid)."]
    create_markdown_artifact(
        markdown="\n".join(md),
        key=artifact_key("tidsfrister", org, year),
        description=f"Sammanfattning av tidsfristerna för planår {year} den {day}: det mest brådskande först.",
    )
    return {"year": year, "milestones": counts, "receipts_open": len(open_receipts), "conflicts": len(conflicts)}


def _write_wheel(cfg: OrgConfig, year: int) -> str:
    """The wheel as files, and as an image artifact when the picture changed since the last one."""
    from prefect.artifacts import Artifact

    from tasks.wheel_picture import wheel_png, write_wheel

    _, png_path = write_wheel(cfg, year, output_root() / str(year) / "arshjul")
    png = wheel_png(cfg, year)
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    key = artifact_key("arshjul", cfg.organisation.id, year)
    latest = Artifact.get(key)
    # A data URI of ~200 kB a day per cycle would fill Prefect's database: publish changes only.
    if latest is None or latest.data != url:
        create_image_artifact(
            image_url=url,
            key=key,
            description=f"Årshjulet för planår {year}: faserna som ringar, milstolparna numrerade med datum.",
        )
    return str(png_path)


@flow(name="deadline-watch", description=DESCRIPTION, persist_result=False, validate_parameters=True)
def deadline_watch(as_of: date | None = None, config: str | None = None) -> dict[str, Any]:
    """Påminn, eskalera och visa läget för alla pågående planår.

    Args:
        as_of: Dagens datum för bevakningen (tomt = i dag i Stockholm); ett annat datum simulerar.
        config: Konfigurationsfil eller 'region'/'municipality'; tomt = standard.
    """
    day = as_of or today_stockholm()
    cfg = load_config(config)
    report = watch(config, day)
    sent = send_notifications(config)
    resumed = sweep_waiting([c for c, _ in report.cycles], config)
    queued = {"reminders": report.reminders, "escalations": report.escalations, **sent}
    cycles = []
    for cycle_id, year in report.cycles:
        # Only what the summary shows travels as a task parameter, not the whole report.
        items = report.urgent.get(cycle_id, [])
        cycles.append(publish_cycle(config, cycle_id, year, day, urgent_rows(cfg, items), len(items), queued))
    return {
        "as_of": day.isoformat(),
        "cycles": [year for _, year in report.cycles],
        "reminders": report.reminders,
        "escalations": report.escalations,
        "already_queued": report.already_queued,
        "sent": sent["sent"],
        "retried": sent["retried"],
        "failed": sent["failed"],
        "resumed": resumed,
        "per_cycle": cycles,
    }


def deadline_watch_deployment() -> Any:
    """The served deployment: every morning at 06:00 Stockholm time (summer and winter time alike)."""
    return deadline_watch.to_deployment(
        name="deadline-watch", schedule=SCHEDULE, description=DESCRIPTION, tags=["styrkedja"]
    )
