"""Which notifications a receipt event causes, queued in the outbox in the event's own transaction."""

from __future__ import annotations

from sqlmodel import Session, select

from config.schema import OrgConfig
from models.tables import Document, HandoffMode, Notification, PhaseRun, Receipt, ReceiptState, Submission

# The stored body holds CODE_PLACEHOLDER where the one-time code goes; the code is derived and
# filled in only when the message is sent, so the outbox never holds it.
from tasks.notify import ATTACHMENT_SEPARATOR, CODE_PLACEHOLDER, queue_notification, render_message
from tasks.phase_runs import find_phase_run
from tasks.portal_tokens import LINK_PLACEHOLDER, portal_url
from tasks.receipts import replaced_because


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


def handoff_link(session: Session, cfg: OrgConfig, receipt: Receipt) -> str:
    """Where the people of a handoff open it: the handoff's page in the portal, through a link made
    for each recipient when the message is sent (tasks.notify; the outbox never holds a token)."""
    return LINK_PLACEHOLDER


def page_link(receipt: Receipt) -> str:
    """The handoff's page without a token (it asks for the link from the message, or a login)."""
    return f"{portal_url()}/kvittens/{receipt.id}"


def _common(session: Session, cfg: OrgConfig, receipt: Receipt, title: str) -> dict[str, object]:
    return {
        "organisation": cfg.organisation.name,
        "title": title,
        "purpose": receipt.purpose,
        "deadline": receipt.deadline.isoformat(),
        "receipt_id": receipt.id,
        "version": receipt.version,
        "replaces_reason": replaced_because(session, receipt.document_id) or "",
        "link": handoff_link(session, cfg, receipt),
    }


def _attachments(relpaths: list[str]) -> str | None:
    return ATTACHMENT_SEPARATOR.join(dict.fromkeys(relpaths)) or None


def queue_handoffs(session: Session, cfg: OrgConfig, issued: list[tuple[Receipt, list[Document]]]) -> int:
    """The first messages of newly issued handoffs: for fill-in handoffs the request to the author
    (once per author and document, however many receive it: an activity plan goes to every unit of
    the administration), for decision handoffs the delivery of the main document to the receiver.
    Returns the number of messages queued (or already there)."""
    requests: dict[tuple[str, str, int], list[tuple[Receipt, list[Document]]]] = {}
    count = 0
    for receipt, documents in issued:
        if receipt.mode == HandoffMode.FILL_IN:
            requests.setdefault((receipt.topic, receipt.sender_unit, receipt.version), []).append((receipt, documents))
        else:
            count += queue_delivery(session, cfg, receipt, documents[0])
    for group in requests.values():
        count += queue_request(session, cfg, [r for r, _ in group], group[0][1])
    return count


def queue_request(session: Session, cfg: OrgConfig, receipts: list[Receipt], documents: list[Document]) -> int:
    """Ask the author (the sender's contacts) to fill in and hand back the documents of one or more
    receipts of the same handoff, author and version."""
    first = receipts[0]
    author = cfg.unit(first.sender_unit)
    receivers = [cfg.unit(r.receiver_unit).name for r in receipts]
    context = _common(session, cfg, first, documents[0].title) | {
        "unit": author.name,
        "receiver": receivers[0] if len(receivers) == 1 else ", ".join(receivers[:-1]) + " och " + receivers[-1],
        "documents": [d.title for d in documents],
    }
    subject, body = render_message("return_requested", context)
    files = _attachments([d.relpath for d in documents])
    base = first.key.replace(f"->{first.receiver_unit}/", "/")  # the request is the author's, not per receiver
    count = 0
    for c in author.contacts:
        email = _kind(cfg, c.channel) == "email"
        queue_notification(
            session,
            key=f"{base}/requested/{c.channel}/{c.address}",
            recipient_unit=author.id,
            channel_id=c.channel,
            address=c.address,
            subject=subject,
            body=body,
            cycle_id=first.cycle_id,
            receipt_id=first.id,
            attachment=files if email else None,
            link=page_link(first),
        )
        count += 1
    return count


def queue_delivery(
    session: Session, cfg: OrgConfig, receipt: Receipt, document: Document, returned: list[Submission] | None = None
) -> int:
    """The content to the receiving unit, to agree or dispute: a decision handoff's document, or a
    fill-in handoff's validated return (`returned`: the latest return of each of its documents). To each
    signatory by e-mail with the one-time code, and a short note on the unit's other channels.
    A corrected return is delivered again (its key names the returned content)."""
    unit = cfg.unit(receipt.receiver_unit)
    sender = cfg.unit(receipt.sender_unit)
    context = _common(session, cfg, receipt, document.title) | {
        "unit": unit.name,
        "sender": sender.name,
        "code": CODE_PLACEHOLDER,
    }
    if returned is not None:
        template, step = "return_delivered", f"delivered-{receipt.content_hash[:12]}"
        files = _attachments([r.relpath for r in returned if r.relpath])
        earlier = session.exec(
            select(Notification.id).where(
                Notification.receipt_id == receipt.id,
                Notification.key.like(f"{receipt.key}/delivered-%"),  # type: ignore[attr-defined]
            )
        ).first()
        context["corrected"] = earlier is not None
    else:
        template, step, files = "document_delivered", "delivered", document.relpath
    count = 0
    email_channels = _email_channels(cfg, unit.id)
    for s in unit.signatories:
        for channel in email_channels[:1]:
            subject, body = render_message(template, {**context, "signatory": s.name, "signatory_id": s.id})
            queue_notification(
                session,
                key=f"{receipt.key}/{step}/{s.id}",
                recipient_unit=unit.id,
                channel_id=channel,
                address=s.email,
                subject=subject,
                body=body,
                cycle_id=receipt.cycle_id,
                receipt_id=receipt.id,
                attachment=files,
                link=page_link(receipt),
            )
            count += 1
    for c in unit.contacts:
        if _kind(cfg, c.channel) == "email":
            continue
        subject, body = render_message(
            template, {**context, "signatory": unit.name, "signatory_id": "", "code": "(skickas per e-post)"}
        )
        queue_notification(
            session,
            key=f"{receipt.key}/{step}/{c.channel}/{c.address}",
            recipient_unit=unit.id,
            channel_id=c.channel,
            address=c.address,
            subject=subject,
            body=body,
            cycle_id=receipt.cycle_id,
            receipt_id=receipt.id,
            link=page_link(receipt),
        )
        count += 1
    return count


def queue_decision_notice(session: Session, cfg: OrgConfig, receipt: Receipt) -> None:
    """Tell the sender that the receiver agreed or disputed (a dispute asks for a new version)."""
    sender = cfg.unit(receipt.sender_unit)
    name = "receipt_disputed" if receipt.state == ReceiptState.DISPUTED else "receipt_agreed"
    link = handoff_link(session, cfg, receipt)
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
