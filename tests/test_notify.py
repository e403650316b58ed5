"""Notifications end to end: Swedish texts, the outbox, and delivery to a real SMTP server
(aiosmtpd), a real MQTT broker (the local Mosquitto) and a real HTTP webhook, on SQLite and
PostgreSQL."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
import threading
import types
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import UndefinedError
from smtp_server import PASSWORD, SmtpServer, _free_port, local_smtp
from sqlmodel import select

from config.schema import (
    Budget,
    Channel,
    Contact,
    DateRule,
    Level,
    Milestone,
    Organisation,
    OrgConfig,
    Phase,
    Roles,
    Signatory,
    Unit,
    Wheel,
)
from models.db import session_scope
from models.tables import Cycle, Notification, NotificationState, Receipt, utcnow
from tasks import notify
from tasks.notify import (
    CODE_PLACEHOLDER,
    KEY_HEADER,
    LEASE,
    MAX_ATTEMPTS,
    apprise_url,
    backoff,
    deliver_outbox,
    mask_secrets,
    notifications_for_unit,
    queue_notification,
    render_message,
)

LINK = "http://127.0.0.1:4200/runs/flow-run/7f0c"
FROM = "styrkedja@norrsjo.example"
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    yield from local_smtp(monkeypatch, login=True)


# -- a small organisation ---------------------------------------------------------------------------


def make_config(topic_prefix: str = "styrkedja/test", hook_port: int = 9) -> OrgConfig:
    channels = (
        # Password and port from the environment at send time, never in the configuration.
        Channel(
            id="epost",
            kind="email",
            url=f"mailto://${{STYRKEDJA_SMTP_USER}}:${{STYRKEDJA_SMTP_PASS}}@127.0.0.1:${{STYRKEDJA_SMTP_PORT}}?from={FROM}",
        ),
        # The sample configuration's form: a plain local SMTP server without TLS or login.
        Channel(id="epost_lokal", kind="email", url=f"mailto://127.0.0.1:${{STYRKEDJA_SMTP_PORT}}?from={FROM}"),
        # A password variable whose name does not look secret: masked because it sits in user:pass@.
        Channel(
            id="epost_losen",
            kind="email",
            url=f"mailto://styrkedja:${{STYRKEDJA_SMTP_LOSEN}}@127.0.0.1:${{STYRKEDJA_SMTP_PORT}}?from={FROM}",
        ),
        Channel(id="mqtt", kind="mqtt", url=f"mqtt://{MQTT_HOST}:{MQTT_PORT}"),
        Channel(id="webhook", kind="webhook", url=f"json://127.0.0.1:{hook_port}/hooks"),
    )
    units = (
        Unit(
            id="RS",
            name="Regionstyrelsen",
            level="region",
            contacts=(Contact(channel="epost", address="rs@norrsjo.example"),),
        ),
        Unit(
            id="HSN",
            name="Hälso- och sjukvårdsnämnden",
            level="namnd",
            parent="RS",
            signatories=(Signatory(id="anna_berg", name="Anna Berg", email="anna.berg@norrsjo.example"),),
            contacts=(
                Contact(channel="epost", address="hsn@norrsjo.example"),
                Contact(channel="mqtt", address=f"{topic_prefix}/HSN"),
                Contact(channel="webhook", address="HSN"),
                Contact(channel="epost", address="hsn@norrsjo.example"),  # a duplicate is listed once
            ),
        ),
    )
    phase = Phase(
        id="planning_prerequisites",
        name="Planeringsförutsättningar",
        owner="RS",
        start=DateRule(rule="1 February", year_offset=-1),
        end=DateRule(rule="30 April", year_offset=-1),
        receipt_deadline="pf_klar",
        purpose="Ramar och uppdrag till nämnderna.",
    )
    milestone = Milestone(
        id="pf_klar", name="Planeringsförutsättningar klara", phase=phase.id, owner="RS", date=DateRule(rule="15 March")
    )
    return OrgConfig(
        organisation=Organisation(
            id="region_norrsjo",
            name="Region Norrsjö",
            kind="region",
            roles=Roles(assembly="RS", executive_board="RS", working_committee="RS", finance="RS"),
        ),
        levels=(
            Level(id="region", name="Region"),
            Level(id="styrelse", name="Styrelse"),
            Level(id="namnd", name="Nämnd"),
        ),
        channels=channels,
        units=units,
        wheel=Wheel(phases=(phase,), milestones=(milestone,)),
        budget=Budget(frames={"HSN": 1_000_000}),
    )


@pytest.fixture
def cfg() -> OrgConfig:
    return make_config(f"styrkedja/test-{uuid.uuid4().hex[:8]}")


# -- helpers ----------------------------------------------------------------------------------------

# The contexts tasks/messages.py passes (the same keys), so the templates stay in step with it.
DELIVERED = {
    "organisation": "Region Norrsjö",
    "unit": "Hälso- och sjukvårdsnämnden",
    "sender": "Regionstyrelsen",
    "title": "Planeringsförutsättningar 2027–2030",
    "purpose": "Underlag för nämndens verksamhetsplan och budget 2027.",
    "deadline": "2026-03-13",
    "receipt_id": 42,
    "version": 1,
    "code": "K7PQ-93XM",
    "link": LINK,
    "signatory": "Anna Berg",
    "signatory_id": "anna_berg",
}
DECISION = {
    "organisation": "Region Norrsjö",
    "unit": "Regionstyrelsen",
    "receiver": "Hälso- och sjukvårdsnämnden",
    "title": "Planeringsförutsättningar 2027–2030",
    "purpose": "Underlag för nämndens verksamhetsplan och budget 2027.",
    "comment": "Ramen saknar indexuppräkning för läkemedel.\nSe bilaga 2.",
    "signed_by": "Anna Berg",
    "receipt_id": 42,
    "version": 1,
    "link": LINK,
}


def queue(db_url: str, key: str, *, channel: str = "epost", address: str = "hsn@norrsjo.example", **kw: Any) -> int:
    subject, body = render_message("document_delivered", {**DELIVERED, **kw.pop("context", {})})
    with session_scope(db_url) as session:
        row = queue_notification(
            session,
            key=key,
            recipient_unit="HSN",
            channel_id=channel,
            address=address,
            subject=kw.pop("subject", subject),
            body=kw.pop("body", body),
            link=LINK,
            **kw,
        )
        return int(row.id)  # type: ignore[arg-type]


def rows(db_url: str) -> dict[str, Notification]:
    with session_scope(db_url) as session:
        return {n.key: n for n in session.exec(select(Notification)).all()}


def write_docx(path: Path, heading: str) -> bytes:
    import docx

    path.parent.mkdir(parents=True, exist_ok=True)
    document = docx.Document()
    document.add_heading(heading, level=1)
    document.add_paragraph("Ramar och uppdrag till nämnderna.")
    document.save(str(path))
    return path.read_bytes()


def attachments(message: EmailMessage) -> dict[str, bytes]:
    return {part.get_filename(): part.get_content() for part in message.iter_attachments()}  # type: ignore[misc]


def no_secret(text: str | None) -> None:
    from urllib.parse import quote

    assert text is not None
    for form in (PASSWORD, quote(PASSWORD, safe=""), "p@ss/w?rd", "p%40ss"):
        assert form not in text, f"password leaked: {text!r}"


# -- texts ------------------------------------------------------------------------------------------


def test_document_delivered_is_swedish_with_code_how_to_sign_and_link() -> None:
    subject, body = render_message("document_delivered", DELIVERED)
    assert subject == (
        'Regionstyrelsen har skickat "Planeringsförutsättningar 2027–2030" – kvittera senast fredag 13 mars 2026'
    )
    assert body.startswith("Hej Anna Berg,")
    assert "Syfte: Underlag för nämndens verksamhetsplan och budget 2027." in body
    assert "Kvittera senast: fredag 13 mars 2026" in body
    assert "Er engångskod: K7PQ-93XM" in body
    # Nobody in the chain is told to use the command line or the operators' Prefect UI.
    assert "styrkedja" not in body and "sign-receipt" not in body and "deployment" not in body
    assert "bestrid" in body
    assert body.endswith(f"Länk: {LINK}")
    assert "\n\n\n" not in body
    # A contact that is not a signatory gets the text without a code of its own.
    _, other = render_message(
        "document_delivered", {**DELIVERED, "signatory": "HSN", "signatory_id": "", "code": "(skickas per e-post)"}
    )
    assert "Er engångskod: (skickas per e-post)" in other and "styrkedja" not in other


def test_fill_in_request_and_delivery_texts() -> None:
    """The two steps of a fill-in handoff: the author is asked what to fill in, by when and how to
    hand it back; the receiver is told what came back, and why a version replaces the one before."""
    request = {k: v for k, v in DELIVERED.items() if k not in ("code", "signatory", "signatory_id", "sender")} | {
        "unit": "Ambulanssjukvården",
        "receiver": "Hälso- och sjukvårdsförvaltningen",
        "documents": ["Uppföljning – delårsrapport", "Uppföljningsdialog – delårsrapport"],
        "version": 2,
        "replaces_reason": "Prognosen för personalkostnader saknas.",
    }
    subject, body = render_message("return_requested", request)
    assert subject == 'Fyll i och lämna tillbaka "Planeringsförutsättningar 2027–2030" senast fredag 13 mars 2026'
    assert body.startswith("Hej Ambulanssjukvården,")
    assert "Hälso- och sjukvårdsförvaltningen behöver ert underlag" in body
    assert "  - Uppföljning – delårsrapport\n  - Uppföljningsdialog – delårsrapport" in body
    assert "Version 2 ersätter version 1 eftersom: Prognosen för personalkostnader saknas." in body
    assert "engångskod" not in body and "styrkedja" not in body and body.endswith(f"Länk: {LINK}")

    delivered = {**DELIVERED, "sender": "Ambulanssjukvården", "corrected": False, "replaces_reason": ""}
    subject, body = render_message("return_delivered", delivered)
    assert subject.startswith('Ambulanssjukvården har lämnat in "Planeringsförutsättningar 2027–2030" – granska')
    assert "har fyllt i och lämnat in" in body and "Er engångskod: K7PQ-93XM" in body and "ersätter" not in body
    _, body = render_message("return_delivered", {**delivered, "corrected": True})
    assert "rättad retur" in body


def test_decision_reminder_and_escalation_texts() -> None:
    subject, body = render_message("receipt_disputed", DECISION)
    assert (
        subject
        == 'Hälso- och sjukvårdsnämnden har bestridit "Planeringsförutsättningar 2027–2030" – en ny version behövs'
    )
    assert "  Ramen saknar indexuppräkning för läkemedel.\n  Se bilaga 2." in body
    assert "ny version" in body and body.endswith(LINK)

    subject, body = render_message("receipt_agreed", {**DECISION, "comment": ""})
    assert subject == 'Hälso- och sjukvårdsnämnden har godkänt "Planeringsförutsättningar 2027–2030"'
    assert "Undertecknad av: Anna Berg" in body and "Kommentar" not in body and body.endswith(LINK)

    base = {"organisation": "Region Norrsjö", "unit": "HSN", "title": "Verksamhetsplan 2027", "receipt_id": 7}
    subjects = {
        days: render_message("reminder", {**base, "deadline": date(2026, 3, 13), "days": days, "link": LINK})[0]
        for days in (14, 1, 0, -1, -3)
    }
    assert subjects == {
        14: 'Påminnelse: kvittera "Verksamhetsplan 2027" inom 14 dagar',
        1: 'Påminnelse: kvittera "Verksamhetsplan 2027" senast i morgon',
        0: 'Påminnelse: kvittera "Verksamhetsplan 2027" senast i dag',
        -1: 'Försenad: "Verksamhetsplan 2027" skulle ha kvitterats för 1 dag sedan',
        -3: 'Försenad: "Verksamhetsplan 2027" skulle ha kvitterats för 3 dagar sedan',
    }
    _, body = render_message("reminder", {**base, "deadline": "2026-03-13", "days": -3, "link": LINK})
    assert "är nu 3 dagar försenad" in body and body.endswith(LINK)

    subject, body = render_message(
        "escalation",
        {
            **base,
            "unit": "Regionstyrelsen",
            "overdue_unit": "HSN",
            "sender": "Regionstyrelsen",
            "deadline": "2026-03-13",
            "days_overdue": 4,
            "link": LINK,
        },
    )
    assert subject == "Eskalering: Regionstyrelsen väntar på kvittens från HSN sedan 4 dagar"
    assert "fredag 13 mars 2026" in body and body.endswith(LINK)


def test_render_message_is_strict_and_keeps_the_subject_on_one_line() -> None:
    with pytest.raises(UndefinedError):
        render_message("document_delivered", {k: v for k, v in DELIVERED.items() if k != "code"})
    with pytest.raises(ValueError):
        render_message("../../etc/passwd", {})
    subject, _ = render_message("document_delivered", {**DELIVERED, "title": "Plan\r\nBcc: alla@example.com"})
    assert "\n" not in subject and "\r" not in subject
    assert len(render_message("document_delivered", {**DELIVERED, "title": "x" * 500})[0]) == 300


# -- the outbox -------------------------------------------------------------------------------------


def test_queue_notification_is_idempotent_and_leaves_the_commit_to_the_caller(db_url: str) -> None:
    with session_scope(db_url) as session:
        first = queue_notification(
            session,
            key="k/1",
            recipient_unit="HSN",
            channel_id="epost",
            address="hsn@norrsjo.example",
            subject="Ämne ett",
            body="Text",
            attachment="2027/HSN/plan.docx",
            link=LINK,
        )
        again = queue_notification(
            session, key="k/1", recipient_unit="HSN", channel_id="epost", address="x@y.se", subject="Annat", body="B"
        )
        assert again.id == first.id and again.subject == "Ämne ett"
    with session_scope(db_url) as session:
        third = queue_notification(
            session, key="k/1", recipient_unit="HSN", channel_id="epost", address="x@y.se", subject="Tredje", body="C"
        )
        assert third.subject == "Ämne ett" and third.address == "hsn@norrsjo.example"
    stored = rows(db_url)
    assert list(stored) == ["k/1"]
    row = stored["k/1"]
    assert (row.state, row.attempts, row.attachment) == (NotificationState.PENDING, 0, "2027/HSN/plan.docx")
    assert row.next_attempt_at.tzinfo is not None

    # Inside the caller's transaction: a rollback takes the notification with it.
    with pytest.raises(RuntimeError), session_scope(db_url) as session:
        queue_notification(
            session, key="k/2", recipient_unit="HSN", channel_id="epost", address="a@b.se", subject="S", body="B"
        )
        raise RuntimeError("the event failed")
    assert "k/2" not in rows(db_url)

    with pytest.raises(ValueError), session_scope(db_url) as session:
        queue_notification(
            session, key="k/3", recipient_unit="HSN", channel_id="epost", address="a@b.se", subject="S", body="B",
            attachment="../../etc/passwd",
        )  # fmt: skip


def test_queue_notification_race_on_the_same_key_keeps_one_row(db_url: str) -> None:
    """Two transactions queue the same key; the second inserts while the first is uncommitted (on
    PostgreSQL it waits, loses on the unique key and gets the winner's row through a savepoint)."""
    a_inserted, b_started = threading.Event(), threading.Event()
    ids: dict[str, int] = {}
    errors: list[BaseException] = []
    args = {"recipient_unit": "HSN", "channel_id": "epost", "address": "hsn@norrsjo.example", "body": "B"}

    def a() -> None:
        try:
            with session_scope(db_url) as session:
                ids["a"] = int(queue_notification(session, key="race", subject="A", **args).id)  # type: ignore[arg-type]
                a_inserted.set()
                b_started.wait(10)
                threading.Event().wait(0.3)  # let B reach its insert first
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def b() -> None:
        try:
            a_inserted.wait(10)
            b_started.set()
            with session_scope(db_url) as session:
                row = queue_notification(session, key="race", subject="B", **args)
                ids["b"] = int(row.id)  # type: ignore[arg-type]
                assert row.subject == "A"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert ids["a"] == ids["b"]
    assert list(rows(db_url)) == ["race"]


def test_notifications_for_unit(cfg: OrgConfig) -> None:
    topic = cfg.unit("HSN").contacts[1].address
    assert notifications_for_unit(cfg, "HSN") == [
        ("epost", "hsn@norrsjo.example"),
        ("mqtt", topic),
        ("webhook", "HSN"),
    ]
    assert notifications_for_unit(cfg, "RS") == [("epost", "rs@norrsjo.example")]


# -- URLs and secrets -------------------------------------------------------------------------------


def test_apprise_url_forms(cfg: OrgConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYRKEDJA_SMTP_PORT", "2525")
    monkeypatch.setenv("STYRKEDJA_SMTP_USER", "styrkedja")
    monkeypatch.setenv("STYRKEDJA_SMTP_PASS", PASSWORD)
    channels = {c.id: c for c in cfg.channels}

    local = apprise_url(channels["epost_lokal"], "a+b@norrsjo.example", key="region/2027/pf/HSN/v1")
    assert local == (
        f"mailto://127.0.0.1:2525?from={FROM}&to=a%2Bb@norrsjo.example&format=text"
        f"&+{KEY_HEADER}=region%2F2027%2Fpf%2FHSN%2Fv1"
    )
    login = apprise_url(channels["epost"], "hsn@norrsjo.example")
    assert login.startswith("mailto://styrkedja:Hemligt%3Ap%40ss%2Fw%3Frd%23%25%26%2B42@127.0.0.1:2525?")
    assert mask_secrets(login).startswith("mailto://styrkedja:***@127.0.0.1:2525?")
    # A to= in the channel is replaced by the contact's address, a format= in the channel is kept.
    fixed = Channel(id="x", kind="email", url="mailtos://smtp.example.se?to=fel@example.se&format=html")
    assert apprise_url(fixed, "ratt@example.se") == "mailtos://smtp.example.se?format=html&to=ratt@example.se"
    # Defaults, and a variable that is not set.
    dflt = Channel(
        id="x", kind="email", url="mailto://${STYRKEDJA_NO_SUCH_HOST:-127.0.0.1}:${STYRKEDJA_NO_SUCH_PORT:-25}"
    )
    assert apprise_url(dflt, "a@b.se").startswith("mailto://127.0.0.1:25?to=a@b.se")
    with pytest.raises(notify.ChannelConfigError, match="STYRKEDJA_NO_SUCH_VAR"):
        apprise_url(Channel(id="x", kind="email", url="mailto://u:${STYRKEDJA_NO_SUCH_VAR}@h"), "a@b.se")

    assert apprise_url(channels["mqtt"], "styrkedja/norrsjo/HSN") == "mqtt://127.0.0.1:1883/styrkedja/norrsjo/HSN"
    prefixed = Channel(id="m", kind="mqtt", url="mqtt://127.0.0.1:1883/styrkedja/?qos=1")
    assert apprise_url(prefixed, "HSN") == "mqtt://127.0.0.1:1883/styrkedja/HSN?qos=1"
    assert apprise_url(channels["webhook"], "HSN", key="k/1") == f"json://127.0.0.1:9/hooks/HSN?+{KEY_HEADER}=k%2F1"
    other = Channel(id="t", kind="other", url="tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/{address}")
    assert apprise_url(other, "-100123") == "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123"


def test_mask_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYRKEDJA_SMTP_PASS", PASSWORD)
    cases = {
        "mailto://user:hunter22@smtp.example.se:587/?to=a@b.se": "mailto://user:***@smtp.example.se:587/?to=a@b.se",
        "mqtts://:tok3n@broker:8883/t": "mqtts://:***@broker:8883/t",
        "json://h/p?token=abc123&x=1": "json://h/p?token=***&x=1",
        "form://h/?pass=abc&user=u": "form://h/?pass=***&user=u",
        "json://h/?+Authorization=Bearer%20abcdef&a=1": "json://h/?+Authorization=***&a=1",
        "https://h/x?password=s3cret#frag": "https://h/x?password=***#frag",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9": "Authorization: Bearer ***",
        'login failed: password="hunter22"': 'login failed: password="***"',
        "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123": "tgram://123456789:***/-100123",
        "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js": "discord://4174216298/***",
        "https://hooks.slack.com/services/T0000/B0000/XXXXxxxxXXXX1234xxxxXXXX": (
            "https://hooks.slack.com/services/T0000/B0000/***"
        ),
        # Not secrets: host:port, addresses, our keys.
        f"mailto://127.0.0.1:2525?from={FROM}&to=a@b.se": f"mailto://127.0.0.1:2525?from={FROM}&to=a@b.se",
        "mqtt://127.0.0.1:1883/styrkedja/norrsjo/HSN": "mqtt://127.0.0.1:1883/styrkedja/norrsjo/HSN",
        "region_norrsjo/2027/planning_prerequisites/HSN/v1": "region_norrsjo/2027/planning_prerequisites/HSN/v1",
    }
    for text, masked in cases.items():
        assert mask_secrets(text) == masked, text
    # The value of a secret-looking environment variable, raw, percent-encoded or as bytes repr.
    from urllib.parse import quote

    reply = f"(535, {PASSWORD.encode()!r}) for {quote(PASSWORD, safe='')}"
    assert PASSWORD not in mask_secrets(reply) and quote(PASSWORD, safe="") not in mask_secrets(reply)
    assert mask_secrets("fel: abcdef-losen", extra=["abcdef-losen"]) == "fel: ***"
    monkeypatch.setenv("PWD", "/work/main/var/output")  # the working directory is no secret
    assert mask_secrets("saknas: /work/main/var/output/a.docx") == "saknas: /work/main/var/output/a.docx"
    assert mask_secrets(None) == ""


# -- delivery by e-mail -----------------------------------------------------------------------------


def test_email_arrives_once_in_swedish_with_the_docx_attached(
    db_url: str, smtp: SmtpServer, cfg: OrgConfig, tmp_path: Path
) -> None:
    out = tmp_path / "output"
    docx_bytes = write_docx(out / "2027" / "HSN" / "Planeringsforutsattningar.docx", "Planeringsförutsättningar 2027")
    queue(
        db_url,
        "pf/HSN/v1/anna",
        address="anna.berg@norrsjo.example",
        attachment="2027/HSN/Planeringsforutsattningar.docx",
    )
    queue(db_url, "pf/HSN/v1/lokal", channel="epost_lokal", address="hsn@norrsjo.example")
    t0 = utcnow()

    report = deliver_outbox(cfg, db_url, now=t0, base_dir=out)
    assert (report.sent, report.retried, report.failed, report.pending_left) == (2, 0, 0, 0)
    again = deliver_outbox(cfg, db_url, now=t0 + timedelta(days=1), base_dir=out)
    assert (again.sent, again.retried, again.failed, again.pending_left) == (0, 0, 0, 0)

    assert sorted(smtp.box.received_keys()) == ["pf/HSN/v1/anna", "pf/HSN/v1/lokal"]
    assert smtp.box.logins == [("styrkedja", PASSWORD)]  # only the channel with a login logged in
    mail = next(m for m in smtp.box.mails if m.message[KEY_HEADER] == "pf/HSN/v1/anna")
    assert mail.envelope_to == ["anna.berg@norrsjo.example"]
    assert mail.message["To"] == "anna.berg@norrsjo.example" and mail.message["From"] == FROM
    assert mail.message["Subject"] == render_message("document_delivered", DELIVERED)[0]
    text = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Er engångskod: K7PQ-93XM" in text and text.rstrip().endswith(f"Länk: {LINK}")
    assert mail.message.get_body(("html",)) is None  # plain text only
    attached = attachments(mail.message)
    assert attached == {"Planeringsforutsattningar.docx": docx_bytes}
    import docx

    assert docx.Document(io.BytesIO(attached["Planeringsforutsattningar.docx"])).paragraphs[0].text == (
        "Planeringsförutsättningar 2027"
    )
    assert attachments(next(m for m in smtp.box.mails if m.message[KEY_HEADER] == "pf/HSN/v1/lokal").message) == {}

    stored = rows(db_url)["pf/HSN/v1/anna"]
    assert (stored.state, stored.attempts, stored.last_error) == (NotificationState.SENT, 1, None)
    assert stored.sent_at == t0


def test_two_senders_at_once_deliver_each_message_exactly_once(db_url: str, smtp: SmtpServer, cfg: OrgConfig) -> None:
    keys = [f"pf/HSN/v1/{i:02d}" for i in range(40)]
    for key in keys:
        queue(db_url, key, channel="epost_lokal")
    smtp.box.delay = 0.005
    barrier = threading.Barrier(3)
    reports: list[notify.DeliveryReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            reports.append(deliver_outbox(cfg, db_url))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sum(r.sent for r in reports) == len(keys)
    assert Counter(smtp.box.received_keys()) == Counter(keys)  # each once
    assert {r.state for r in rows(db_url).values()} == {NotificationState.SENT}
    assert {r.attempts for r in rows(db_url).values()} == {1}


def test_a_run_sends_every_due_message_over_one_connection_per_channel(
    db_url: str, smtp: SmtpServer, cfg: OrgConfig
) -> None:
    keys = [f"pf/HSN/v1/{i:03d}" for i in range(60)]  # more than one claim batch
    for key in keys:
        queue(db_url, key)
    report = deliver_outbox(cfg, db_url)
    assert (report.sent, report.pending_left) == (60, 0)
    assert Counter(smtp.box.received_keys()) == Counter(keys)
    assert len(smtp.box.logins) == 1  # one connection, one login, for the whole lane


def test_a_reused_connection_the_server_closed_is_opened_again(db_url: str, smtp: SmtpServer, cfg: OrgConfig) -> None:
    keys = [f"pf/HSN/v1/{i}" for i in range(5)]
    for key in keys:
        queue(db_url, key)
    smtp.box.drop_data = {2}  # the second message's DATA, on the reused connection
    report = deliver_outbox(cfg, db_url)
    assert (report.sent, report.retried, report.pending_left) == (5, 0, 0)
    assert Counter(smtp.box.received_keys()) == Counter(keys)
    assert len(smtp.box.logins) == 2  # the first connection and the one opened again


@pytest.mark.parametrize("outage", ["stopped", "tempfail", "drop"])
def test_a_channel_that_is_down_is_retried_with_backoff_without_leaking_the_password(
    db_url: str, smtp: SmtpServer, cfg: OrgConfig, outage: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = [f"pf/HSN/v1/{i}" for i in range(4)]
    for key in keys:
        queue(db_url, key)  # the channel with user:password@
    if outage == "stopped":
        smtp.stop()
    else:
        smtp.box.mode = outage
    t0 = utcnow()

    with caplog.at_level(logging.DEBUG):
        report = deliver_outbox(cfg, db_url, now=t0)
    # Three failures in a row open the channel's breaker: the fourth waits without an attempt.
    assert (report.sent, report.retried, report.failed, report.deferred, report.pending_left) == (0, 3, 0, 1, 4)
    stored = rows(db_url)
    tried = [stored[k] for k in keys[:3]]
    assert all(r.attempts == 1 and r.next_attempt_at == t0 + timedelta(minutes=1) for r in tried)
    expected = {"stopped": "Connection refused", "tempfail": "451", "drop": "Connection unexpectedly closed"}[outage]
    for r in tried:
        assert r.state == NotificationState.PENDING
        assert r.last_error and r.last_error.startswith("attempt 1: ") and expected in r.last_error
        no_secret(r.last_error)
    waiting = stored[keys[3]]
    assert waiting.attempts == 0 and "not tried" in (waiting.last_error or "")
    assert waiting.next_attempt_at == t0 + timedelta(minutes=1)
    no_secret(caplog.text)
    assert "retry later" in caplog.text

    # Not due yet: nothing is tried.
    early = deliver_outbox(cfg, db_url, now=t0 + timedelta(seconds=59))
    assert (early.sent, early.retried, early.deferred) == (0, 0, 0)

    if outage == "stopped":
        smtp.start()
    smtp.box.mode = "ok"
    later = deliver_outbox(cfg, db_url, now=t0 + timedelta(minutes=1))
    assert (later.sent, later.retried, later.failed, later.pending_left) == (4, 0, 0, 0)
    assert Counter(smtp.box.received_keys()) == Counter(keys)
    assert deliver_outbox(cfg, db_url, now=t0 + timedelta(hours=7)).sent == 0
    assert Counter(smtp.box.received_keys()) == Counter(keys)
    stored = rows(db_url)
    assert [stored[k].attempts for k in keys] == [2, 2, 2, 1]
    assert all(stored[k].state == NotificationState.SENT for k in keys)


def test_a_server_reply_that_echoes_the_password_is_masked(
    db_url: str, smtp: SmtpServer, cfg: OrgConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The variable's name does not look secret; it is masked because it fills user:password@.
    monkeypatch.setenv("STYRKEDJA_SMTP_LOSEN", "Hemligt-Losen-99")
    smtp.box.mode = "auth_echo"
    queue(db_url, "pf/HSN/v1/echo", channel="epost_losen")
    report = deliver_outbox(cfg, db_url, now=utcnow())
    assert report.retried == 1
    assert smtp.box.logins and set(smtp.box.logins) == {("styrkedja", "Hemligt-Losen-99")}  # smtplib tries 2 ways
    error = rows(db_url)["pf/HSN/v1/echo"].last_error or ""
    assert "535" in error and "Fel l" in error
    assert "Hemligt-Losen-99" not in error and "***" in error


def test_after_eight_failed_attempts_the_notification_is_failed_and_kept(
    db_url: str, smtp: SmtpServer, cfg: OrgConfig
) -> None:
    smtp.stop()
    queue(db_url, "pf/HSN/v1/gives-up")
    at = utcnow()
    waits = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert deliver_outbox(cfg, db_url, now=at - timedelta(seconds=1)).retried == 0  # not due yet
        report = deliver_outbox(cfg, db_url, now=at)
        row = rows(db_url)["pf/HSN/v1/gives-up"]
        assert row.attempts == attempt
        if attempt < MAX_ATTEMPTS:
            assert (report.retried, report.failed, row.state) == (1, 0, NotificationState.PENDING)
            waits.append(row.next_attempt_at - at)
            at = row.next_attempt_at
        else:
            assert (report.retried, report.failed, report.pending_left) == (0, 1, 0)
            assert row.state == NotificationState.FAILED
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 64)]
    assert backoff(20) == timedelta(hours=6)  # capped
    row = rows(db_url)["pf/HSN/v1/gives-up"]
    assert row.last_error and row.last_error.startswith(f"attempt {MAX_ATTEMPTS}: ") and "refused" in row.last_error
    smtp.start()
    assert deliver_outbox(cfg, db_url, now=at + timedelta(days=1)).sent == 0  # failed rows are not sent again
    assert smtp.box.mails == [] and len(rows(db_url)) == 1


def test_a_crash_between_send_and_mark_resends_with_the_same_key_after_the_lease(
    db_url: str, smtp: SmtpServer, cfg: OrgConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue(db_url, "pf/HSN/v1/crash", channel="epost_lokal")
    t0 = utcnow()
    real_mark_sent = notify._mark_sent

    def lost_database(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(notify, "_mark_sent", lost_database)
    with pytest.raises(ConnectionError):
        deliver_outbox(cfg, db_url, now=t0)
    monkeypatch.setattr(notify, "_mark_sent", real_mark_sent)
    assert len(smtp.box.mails) == 1

    row = rows(db_url)["pf/HSN/v1/crash"]
    assert (row.state, row.attempts, row.next_attempt_at) == (NotificationState.PENDING, 1, t0 + LEASE)
    assert deliver_outbox(cfg, db_url, now=t0 + LEASE - timedelta(seconds=1)).sent == 0  # the claim still holds
    assert deliver_outbox(cfg, db_url, now=t0 + LEASE).sent == 1
    # At least once: the receiver sees the same key twice and can drop the duplicate.
    assert smtp.box.received_keys() == ["pf/HSN/v1/crash", "pf/HSN/v1/crash"]
    assert rows(db_url)["pf/HSN/v1/crash"].state == NotificationState.SENT


def test_rows_that_cannot_be_sent_never_raise(
    db_url: str, smtp: SmtpServer, cfg: OrgConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_port = _free_port()
    broken = cfg.model_copy(
        update={
            "channels": (
                *cfg.channels,
                Channel(id="no_var", kind="email", url="mailto://u:${STYRKEDJA_UNSET_PASS}@127.0.0.1:25?from=a@b.se"),
                Channel(id="dead_mqtt", kind="mqtt", url=f"mqtt://127.0.0.1:{dead_port}"),
                Channel(id="nonsense", kind="other", url="nosuchservice://whatever"),
            )
        }
    )
    monkeypatch.delenv("STYRKEDJA_UNSET_PASS", raising=False)
    queue(db_url, "bad/attachment", attachment="2027/HSN/saknas.docx")
    queue(db_url, "bad/channel", channel="removed_from_config")
    queue(db_url, "bad/variable", channel="no_var")
    queue(db_url, "bad/mqtt", channel="dead_mqtt", address="styrkedja/x")
    queue(db_url, "bad/service", channel="nonsense", address="x")
    queue(db_url, "good", channel="epost_lokal")

    report = deliver_outbox(broken, db_url, now=utcnow(), base_dir=tmp_path)
    assert (report.sent, report.retried, report.failed) == (1, 5, 0)
    errors = {k: r.last_error or "" for k, r in rows(db_url).items()}
    assert "attachment not found: 2027/HSN/saknas.docx" in errors["bad/attachment"]
    assert "unknown channel 'removed_from_config'" in errors["bad/channel"]
    assert "STYRKEDJA_UNSET_PASS is not set" in errors["bad/variable"]
    assert "Connection refused" in errors["bad/mqtt"] or "MQTT" in errors["bad/mqtt"]
    assert "could not load" in errors["bad/service"]
    assert smtp.box.received_keys() == ["good"]


@dataclass
class IssuedReceipt:
    id: int
    key: str
    cycle_id: int
    code: str


@pytest.fixture
def issued(db_url: str, monkeypatch: pytest.MonkeyPatch) -> IssuedReceipt:
    """A receipt row; its one-time code as tasks.receipts derives it."""
    try:
        from tasks.receipts import code_for
    except ImportError:  # tasks.receipts is being written by someone else; stand in for it
        import hashlib

        def code_for(key: str) -> str:
            return hashlib.sha256(key.encode()).hexdigest()[:8].upper()

        monkeypatch.setitem(sys.modules, "tasks.receipts", types.SimpleNamespace(code_for=code_for))
    monkeypatch.setenv("STYRKEDJA_SECRET_KEY", "test-secret-key-for-codes")
    with session_scope(db_url) as session:
        cycle = Cycle(organisation_id="region_norrsjo", year=2027, horizon_end=2030)
        session.add(cycle)
        session.flush()
        receipt = Receipt(
            key="region_norrsjo/2027/planning_prerequisites/pf/RS->HSN/v1",
            cycle_id=cycle.id,  # type: ignore[arg-type]
            phase="planning_prerequisites",
            topic="pf",
            direction="down",
            sender_unit="RS",
            receiver_unit="HSN",
            content_hash="0" * 64,
            purpose="Underlag",
            deadline=date(2026, 3, 13),
        )
        session.add(receipt)
        session.flush()
        return IssuedReceipt(receipt.id, receipt.key, cycle.id, code_for(receipt.key))  # type: ignore[arg-type]


def queue_with_code(db_url: str, key: str, receipt: IssuedReceipt, **kw: Any) -> None:
    queue(
        db_url,
        key,
        receipt_id=receipt.id,
        cycle_id=receipt.cycle_id,
        context={"code": CODE_PLACEHOLDER, "receipt_id": receipt.id},
        **kw,
    )


def test_the_one_time_code_is_filled_in_at_send_time_and_never_stored(
    db_url: str, smtp: SmtpServer, cfg: OrgConfig, issued: IssuedReceipt
) -> None:
    queue_with_code(db_url, "pf/HSN/v1/code", issued, channel="epost_lokal")
    assert CODE_PLACEHOLDER in rows(db_url)["pf/HSN/v1/code"].body

    assert deliver_outbox(cfg, db_url, now=utcnow()).sent == 1
    code = issued.code
    text = smtp.box.mails[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"Er engångskod: {code}" in text and CODE_PLACEHOLDER not in text
    stored = rows(db_url)["pf/HSN/v1/code"]
    assert code not in stored.body and CODE_PLACEHOLDER in stored.body


# -- delivery by MQTT and webhook -------------------------------------------------------------------


def _broker_up() -> bool:
    try:
        with socket.create_connection((MQTT_HOST, MQTT_PORT), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def broker() -> None:
    if not _broker_up():
        if os.environ.get("CI"):
            pytest.fail(f"the MQTT broker on {MQTT_HOST}:{MQTT_PORT} is required in CI")
        pytest.skip(f"no MQTT broker on {MQTT_HOST}:{MQTT_PORT} (start: mosquitto -d -c /etc/mosquitto/mosquitto.conf)")


def test_mqtt_message_arrives_on_the_units_topic(db_url: str, cfg: OrgConfig, broker: None) -> None:
    import paho.mqtt.client as mqtt

    topic = dict(notifications_for_unit(cfg, "HSN"))["mqtt"]
    got: list[tuple[str, str]] = []
    arrived, subscribed = threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_subscribe = lambda *a: subscribed.set()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        got.append((msg.topic, msg.payload.decode()))
        arrived.set()

    client.on_message = on_message
    client.connect(MQTT_HOST, MQTT_PORT)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(5)
        queue(db_url, "pf/HSN/v1/mqtt", channel="mqtt", address=topic, attachment="2027/HSN/inte-via-mqtt.docx")
        threads_before = threading.active_count()
        report = deliver_outbox(cfg, db_url, now=utcnow())
        assert report.sent == 1, rows(db_url)["pf/HSN/v1/mqtt"].last_error
        assert arrived.wait(5)
        assert threading.active_count() <= threads_before  # apprise's MQTT network thread is stopped
    finally:
        client.loop_stop()
        client.disconnect()
    assert len(got) == 1
    received_topic, payload = got[0]
    subject, body = render_message("document_delivered", DELIVERED)
    assert received_topic == topic
    assert payload.startswith(subject) and body in payload
    assert payload.rstrip().endswith("Referens: pf/HSN/v1/mqtt")


def test_the_code_in_an_mqtt_payload_never_reaches_a_debug_log(
    db_url: str, cfg: OrgConfig, broker: None, issued: IssuedReceipt, caplog: pytest.LogCaptureFixture
) -> None:
    import paho.mqtt.client as mqtt

    topic = dict(notifications_for_unit(cfg, "HSN"))["mqtt"]
    payloads: list[str] = []
    arrived, subscribed = threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = lambda _c, _u, msg: (payloads.append(msg.payload.decode()), arrived.set())
    client.connect(MQTT_HOST, MQTT_PORT)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(5)
        queue_with_code(db_url, "pf/HSN/v1/mqtt-code", issued, channel="mqtt", address=topic)
        with caplog.at_level(logging.DEBUG):  # apprise logs the MQTT payload at DEBUG
            assert deliver_outbox(cfg, db_url, now=utcnow()).sent == 1
        assert arrived.wait(5)
    finally:
        client.loop_stop()
        client.disconnect()
    assert f"Er engångskod: {issued.code}" in payloads[0]
    assert "MQTT Payload" in caplog.text  # the line was logged ...
    assert issued.code not in caplog.text  # ... without the code


def test_webhook_gets_json_with_the_key_header(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers["Content-Length"])
            received.append((self.path, dict(self.headers), json.loads(self.rfile.read(length))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = make_config(hook_port=server.server_address[1])
        queue(db_url, "pf/HSN/v1/hook", channel="webhook", address="HSN")
        assert deliver_outbox(cfg, db_url, now=utcnow()).sent == 1
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 1
    path, headers, payload = received[0]
    subject, body = render_message("document_delivered", DELIVERED)
    assert path == "/hooks/HSN"
    assert headers[KEY_HEADER] == "pf/HSN/v1/hook"
    assert payload["title"] == subject and payload["message"] == body


def test_sample_region_channels_deliver(db_url: str, smtp: SmtpServer) -> None:
    """The sample configuration's channels (config/region.yaml), if it is there."""
    from config.loader import SAMPLES, load_config

    if not SAMPLES["region"].exists():
        pytest.skip("config/region.yaml is not written yet")
    region = load_config("region")
    unit = next(u for u in region.units if any(c.channel == "epost" for c in u.contacts))
    address = dict(notifications_for_unit(region, unit.id))["epost"]
    queue(db_url, f"sample/{unit.id}", channel="epost", address=address)
    assert deliver_outbox(region, db_url, now=utcnow()).sent == 1
    assert smtp.box.mails[0].envelope_to == [address]


def test_deliver_outbox_wants_an_aware_now(sqlite_url: str, cfg: OrgConfig) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        deliver_outbox(cfg, sqlite_url, now=datetime(2027, 1, 1, 12, 0))
    assert deliver_outbox(cfg, sqlite_url) == notify.DeliveryReport()


def test_tls_context_is_reused_per_thread_and_handed_out_verifying() -> None:
    """apprise's e-mail plugin gets one TLS context per thread instead of a new one per message;
    a channel with verify=no relaxes it, and the next message gets it back verifying."""
    import ssl
    import threading

    from apprise.plugins.email import base as email_base

    from tasks.notify import _reuse_tls_contexts, _ReusedTLSContexts

    shim = _ReusedTLSContexts()
    first = shim.create_default_context()
    first.check_hostname = False
    first.verify_mode = ssl.CERT_NONE  # what the plugin does for verify=no
    again = shim.create_default_context()
    assert again is first and again.verify_mode == ssl.CERT_REQUIRED and again.check_hostname
    assert len(again.get_ca_certs()) == len(ssl.create_default_context().get_ca_certs())
    other: list[ssl.SSLContext] = []
    thread = threading.Thread(target=lambda: other.append(shim.create_default_context()))
    thread.start()
    thread.join()
    assert other and other[0] is not first
    assert shim.SSLError is ssl.SSLError  # the rest of the module is the real one
    _reuse_tls_contexts()
    assert isinstance(email_base.ssl, _ReusedTLSContexts)
