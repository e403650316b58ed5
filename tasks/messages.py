"""Which notifications a receipt event causes, queued in the outbox in the event's own transaction."""

from __future__ import annotations

from sqlmodel import Session, select

from config.schema import OrgConfig
from models.tables import Document, PhaseRun, Receipt, ReceiptState

# The stored body holds CODE_PLACEHOLDER where the one-time code goes; the code is derived and
# filled in only when the message is sent, so the outbox never holds it.
from tasks.notify import CODE_PLACEHOLDER, queue_notification, render_message
from tasks.phase_runs import find_phase_run
from tasks.receipts import occasion_of


def phase_link(session: Session, cfg: OrgConfig, cycle_id: int, phase: str, occasion: str = "") -> str:
    """The phase run (of the follow-up occasion) in the Prefect UI, where its receipt table is an artifact."""
    run = find_phase_run(session, cycle_id, phase, occasion)
    base = cfg.organisation.ui_url.rstrip("/")
    if run is not None and run.flow_run_id:
        return f"{base}/runs/flow-run/{run.flow_run_id}"
    return f"{base}/runs"


def _email_channels(cfg: OrgConfig, unit_id: str) -> list[str]:
    return [c.channel for c in cfg.unit(unit_id).contacts if _kind(cfg, c.channel) == "email"]


def _kind(cfg: OrgConfig, channel_id: str) -> str:
    return next(c.kind for c in cfg.channels if c.id == channel_id)


def queue_delivery(session: Session, cfg: OrgConfig, receipt: Receipt, document: Document) -> int:
    """The document to the receiving unit: to each signatory by e-mail with the code, and a short
    note on the unit's other channels. Returns the number of messages queued (or already there)."""
    unit = cfg.unit(receipt.receiver_unit)
    sender = cfg.unit(receipt.sender_unit)
    link = phase_link(session, cfg, receipt.cycle_id, receipt.phase, occasion_of(receipt.topic))
    count = 0
    context = {
        "organisation": cfg.organisation.name,
        "unit": unit.name,
        "sender": sender.name,
        "title": document.title,
        "purpose": receipt.purpose,
        "deadline": receipt.deadline.isoformat(),
        "receipt_id": receipt.id,
        "version": receipt.version,
        "code": CODE_PLACEHOLDER,
        "link": link,
    }
    email_channels = _email_channels(cfg, unit.id)
    for s in unit.signatories:
        for channel in email_channels[:1]:
            subject, body = render_message("document_delivered", {**context, "signatory": s.name, "signatory_id": s.id})
            queue_notification(
                session,
                key=f"{receipt.key}/delivered/{s.id}",
                recipient_unit=unit.id,
                channel_id=channel,
                address=s.email,
                subject=subject,
                body=body,
                cycle_id=receipt.cycle_id,
                receipt_id=receipt.id,
                attachment=document.relpath,
                link=link,
            )
            count += 1
    for c in unit.contacts:
        if _kind(cfg, c.channel) == "email":
            continue
        subject, body = render_message(
            "document_delivered",
            {**context, "signatory": unit.name, "signatory_id": "", "code": "(skickas per e-post)"},
        )
        queue_notification(
            session,
            key=f"{receipt.key}/delivered/{c.channel}/{c.address}",
            recipient_unit=unit.id,
            channel_id=c.channel,
            address=c.address,
            subject=subject,
            body=body,
            cycle_id=receipt.cycle_id,
            receipt_id=receipt.id,
            link=link,
        )
        count += 1
    return count


def queue_decision_notice(session: Session, cfg: OrgConfig, receipt: Receipt) -> None:
    """Tell the sender that the receiver agreed or disputed (a dispute asks for a new version)."""
    sender = cfg.unit(receipt.sender_unit)
    name = "receipt_disputed" if receipt.state == ReceiptState.DISPUTED else "receipt_agreed"
    link = phase_link(session, cfg, receipt.cycle_id, receipt.phase, occasion_of(receipt.topic))
    document = session.get(Document, receipt.document_id) if receipt.document_id else None
    subject, body = render_message(
        name,
        {
            "organisation": cfg.organisation.name,
            "unit": sender.name,
            "receiver": cfg.unit(receipt.receiver_unit).name,
            "title": document.title if document else receipt.topic,
            "purpose": receipt.purpose,
            "comment": receipt.comment or "",
            "signed_by": receipt.signed_by or "",
            "receipt_id": receipt.id,
            "version": receipt.version,
            "link": link,
        },
    )
    for c in sender.contacts:
        if _kind(cfg, c.channel) != "email":
            continue
        queue_notification(
            session,
            key=f"{receipt.key}/{receipt.state}/{c.channel}/{c.address}",
            recipient_unit=sender.id,
            channel_id=c.channel,
            address=c.address,
            subject=subject,
            body=body,
            cycle_id=receipt.cycle_id,
            receipt_id=receipt.id,
            link=link,
        )


def phase_links(session: Session, cfg: OrgConfig, cycle_ids: list[int]) -> dict[tuple[int, str, str], str]:
    """`phase_link` for every phase run of many cycles in one query: (cycle id, phase, follow-up
    occasion) → link. A phase without a run links to the run list, as `phase_link` does; (cycle id,
    phase, "") of the follow-up phase, for what belongs to no one occasion (its milestones), links
    to the occasion's run started last."""
    base = cfg.organisation.ui_url.rstrip("/")
    links = {(c, p.id, ""): f"{base}/runs" for c in cycle_ids for p in cfg.wheel.phases}
    if cycle_ids:
        query = (
            select(PhaseRun.cycle_id, PhaseRun.phase, PhaseRun.occasion, PhaseRun.flow_run_id)
            .where(PhaseRun.cycle_id.in_(cycle_ids))  # type: ignore[attr-defined]
            .order_by(PhaseRun.occasion == "", PhaseRun.started_at, PhaseRun.id)  # a run without occasion wins ""
        )
        for cycle_id, phase, occasion, flow_run_id in session.exec(query):
            if flow_run_id:
                link = f"{base}/runs/flow-run/{flow_run_id}"
                links[(cycle_id, phase, occasion)] = links[(cycle_id, phase, "")] = link
    return links
