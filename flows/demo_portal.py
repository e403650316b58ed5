"""The demonstration's people act in the portal, from the links in the e-mails they received.

Nobody in the demonstration types a code or calls a function of ours: an author opens the link in
its request, downloads the documents, fills them in and uploads them; a receiver's signatory opens
the link in the delivery and agrees (with the decision text of its minutes) or disputes. Everything
goes over HTTP to the portal `make demo` started, exactly as a browser would send it.
"""

from __future__ import annotations

import base64
import email.message
import json
from collections import defaultdict
from pathlib import Path

from sqlmodel import select

from config.schema import OrgConfig
from flows.demo_authors import fill_docx, fill_xlsx
from models.db import session_scope
from models.tables import HandoffMode, Receipt, ReceiptState
from portal.client import PortalClient, links_in


def link_target(link: str) -> tuple[int, str]:
    """The receipt and the address a portal link was made for (the token's body is readable; only
    its signature is secret, and the portal checks that)."""
    body = link.rsplit("/l/", 1)[1].split(".", 1)[0]
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return int(claims["r"]), str(claims["w"]).lower()


class Inbox:
    """Every portal link the local mail server received, by (receipt, address), read as mail comes."""

    def __init__(self, messages: list[email.message.EmailMessage]) -> None:
        self.messages, self.read, self.links = messages, 0, {}

    def refresh(self) -> None:
        for msg in self.messages[self.read :]:
            body = msg.get_body(preferencelist=("plain", "html"))
            for link in links_in(body.get_content() if body is not None else ""):
                self.links[link_target(link)] = link
            self.read += 1

    def link(self, receipt_ids: list[int], addresses: set[str]) -> str | None:
        self.refresh()
        for rid in receipt_ids:
            for addr in addresses:
                if (rid, addr) in self.links:
                    return self.links[(rid, addr)]
        return None


def addresses(cfg: OrgConfig, unit_id: str) -> set[str]:
    """Where a unit's messages go: its signatories and its contact addresses."""
    unit = cfg.unit(unit_id)
    return {s.email.lower() for s in unit.signatories} | {c.address.lower() for c in unit.contacts}


def hand_back_all(
    cfg: OrgConfig, cycle_id: int, year: int, phase: str, folder: Path, inbox: Inbox, *, topic_prefix: str = ""
) -> int:
    """Every author whose fill-in handoff waits for its return (of a topic) opens its request's link,
    downloads what it was sent, fills it in and uploads it; returns the files handed in. A return
    serves every receipt of the same document (an activity plan goes to each unit), so each author
    hands in once, through the link of whichever of those receipts its request carried."""
    with session_scope() as s:
        rows = s.exec(
            select(Receipt.id, Receipt.topic, Receipt.sender_unit).where(
                Receipt.cycle_id == cycle_id,
                Receipt.phase == phase,
                Receipt.mode == HandoffMode.FILL_IN,
                Receipt.state == ReceiptState.ISSUED,
            )
        ).all()
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for rid, topic, sender in sorted(rows):
        if topic.startswith(topic_prefix):
            groups[(topic, sender)].append(rid)
    count = 0
    for (topic, author), rids in groups.items():
        link = inbox.link(rids, addresses(cfg, author))
        if link is None:
            continue  # the request has not arrived yet
        name = cfg.unit(author).name
        with PortalClient.open(link) as page:
            for src in page.download(folder / "hamtat" / f"{topic}-{author}"):
                filled = folder / src.name
                if src.suffix == ".docx":
                    fill_docx(src, filled, name)
                else:
                    fill_xlsx(src, filled, name, year)
                page.upload(filled)
                count += 1
    return count
