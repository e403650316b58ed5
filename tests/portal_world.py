"""A plan year with handoffs to act on in the portal, shared by the portal's HTTP, browser and
bench code: the committees' feedback (HSN and RUN fill in, the executive board signs) and the
planning prerequisites (decided documents the committees agree on)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from config.schema import OrgConfig
from models.db import session_scope
from models.tables import Document, Receipt
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.handoffs import handoffs_for_phase

YEAR = 2028
FEEDBACK = {
    "bidrag_mal": ["Nämnden bidrar till målen genom nära vård i Åsele och Överkalix.", "Vi avstår inget mål."],
    "utvecklingsinsatser": ["Digitala vårdbesök i hela länet."],
    "kompetensforsorjning": ["Fler specialistsjuksköterskor genom betald utbildning."],
    "hallbar_ekonomi": ["Ekonomi i balans; ÅÄÖ åäö é ü."],
    "investeringar": ["Inga nya behov utöver investeringsplanen."],
    "ovriga_synpunkter": ["Inga."],
    "risk_kanslighet": ["Löneökningar över 3 % ryms inte; statsbidragen är osäkra."],
}


@dataclass
class World:
    cfg: OrgConfig
    url: str
    out: Path
    cycle_id: int

    def receipt(self, phase: str, sender: str | None = None, receiver: str | None = None) -> Receipt:
        with session_scope(self.url) as s:
            q = select(Receipt).where(Receipt.phase == phase)
            if sender:
                q = q.where(Receipt.sender_unit == sender)
            if receiver:
                q = q.where(Receipt.receiver_unit == receiver)
            return s.exec(q.order_by(Receipt.id.desc())).first()  # type: ignore[union-attr]

    def document(self, receipt: Receipt) -> Document:
        with session_scope(self.url) as s:
            return s.get(Document, receipt.document_id)


def build(cfg: OrgConfig, url: str, out: Path, feedback_from: tuple[str, ...] = ("HSN", "RUN")) -> World:
    cycle_id = prepare_cycle(cfg, YEAR, url)
    pf = handoffs_for_phase(cfg, YEAR, "planning_prerequisites")
    distribute(cfg, cycle_id, "planning_prerequisites", pf, out, actor="test", url=url)
    fb = [h for h in handoffs_for_phase(cfg, YEAR, "committee_feedback") if h.sender in feedback_from]
    distribute(cfg, cycle_id, "committee_feedback", fb, out, actor="test", url=url)
    return World(cfg, url, out, cycle_id)
