"""The deadline watch: reminders and escalations walking day by day through the deadlines, each
exactly once; delivered to a real SMTP server (down first, then back) and the local Mosquitto; the
artifacts read back through the Prefect API; the sweep of waiting phases; secrets kept out."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from smtp_server import PASSWORD, SmtpServer, local_smtp
from sqlalchemy import event, update
from sqlmodel import select
from typer.testing import CliRunner

from config.loader import load_config
from config.schema import OrgConfig
from models.db import get_engine, session_scope
from models.tables import (
    Cycle,
    Document,
    Milestone,
    Notification,
    NotificationState,
    PhaseRun,
    PhaseState,
    Receipt,
    ReceiptState,
    utcnow,
)
from tasks.cycle import prepare_cycle
from tasks.deadlines import ESCALATE_EVERY_DAYS, cycle_window, run_watch, stages_for
from tasks.portal_tokens import LINK_PLACEHOLDER, portal_url
from tasks.progress import progression_rows, receipt_rows
from tasks.wheel import resolve_wheel

YEAR = 2030
ORG = "region_testby"
D = date(2029, 3, 22)  # the receipts' deadline in the walk (a Thursday)
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
PF_TITLE = "Planeringsförutsättningar 2030–2033"
runner = CliRunner()


# -- a small organisation, as a configuration file -----------------------------------------------------


def _unit(uid: str, name: str, level: str, parent: str | None, contacts: list[tuple[str, str]], signatories=()):  # type: ignore[no-untyped-def]
    out: dict[str, Any] = {"id": uid, "name": name, "level": level}
    if parent:
        out["parent"] = parent
    out["contacts"] = [{"channel": c, "address": a} for c, a in contacts]
    out["signatories"] = [{"id": s, "name": n, "email": e} for s, n, e in signatories]
    return out


def _phase(pid: str, name: str, owner: str, start: tuple[str, int], end: tuple[str, int], deadline: str):  # type: ignore[no-untyped-def]
    return {
        "id": pid,
        "name": name,
        "owner": owner,
        "start": {"rule": start[0], "year_offset": start[1]},
        "end": {"rule": end[0], "year_offset": end[1]},
        "receipt_deadline": deadline,
        "purpose": f"{name}: syftet med fasen.",
    }


def config_data(topic: str) -> dict[str, Any]:
    ms = [
        ("underlag", "Planeringsunderlag klart", "preparation", "EKO", "15 January", -1),
        (
            "pf_klar",
            "Planeringsförutsättningarna behandlade i nämnden",
            "planning_prerequisites",
            "HSN",
            "15 March",
            -1,
        ),
        ("aterkoppling", "Nämndernas återkoppling", "committee_feedback", "RS", "16 April", -1),
        ("plan_beslut", "Fullmäktige beslutar plan och budget", "regional_plan", "RF", "16 June", -1),
        ("vp_klar", "Verksamhetsplan beslutad", "operational_plans", "HSN", "30 September", -1),
        ("ap_klar", "Aktivitetsplaner klara", "activity_plans", "EKO", "15 December", -1),
        ("ar_klar", "Årsredovisningen beslutad", "follow_up", "RS", "end of February", 1),
    ]
    return {
        "organisation": {
            "id": ORG,
            "name": "Region Testby",
            "kind": "region",
            "roles": {"assembly": "RF", "executive_board": "RS", "working_committee": "RS", "finance": "EKO"},
            "ui_url": "http://127.0.0.1:4200",
        },
        "levels": [
            {"id": "assembly", "name": "Regionfullmäktige"},
            {"id": "executive_board", "name": "Regionstyrelse"},
            {"id": "committee", "name": "Nämnd"},
            {"id": "administration", "name": "Förvaltning"},
        ],
        "channels": [
            {
                "id": "epost",
                "kind": "email",
                # Login and port from the environment at send time: never in the file or the database.
                "url": "mailto://${STYRKEDJA_SMTP_USER}:${STYRKEDJA_SMTP_PASS}@127.0.0.1:${STYRKEDJA_SMTP_PORT}"
                "?from=styrkedja@testby.example",
            },
            {"id": "mqtt", "kind": "mqtt", "url": f"mqtt://{MQTT_HOST}:{MQTT_PORT}"},
        ],
        "units": [
            _unit("RF", "Regionfullmäktige", "assembly", None, [("epost", "rf@testby.example")]),
            _unit("RS", "Regionstyrelsen", "executive_board", "RF", [("epost", "rs@testby.example")]),
            _unit("EKO", "Ekonomistaben", "administration", "RS", [("epost", "eko@testby.example")]),
            _unit(
                "HSN",
                "Hälso- och sjukvårdsnämnden",
                "committee",
                "RS",
                [("epost", "hsn@testby.example"), ("mqtt", topic)],
                [("anna", "Anna Berg", "anna@testby.example"), ("per", "Per Ek", "per@testby.example")],
            ),
            _unit(
                "HSF",
                "Hälso- och sjukvårdsförvaltningen",
                "administration",
                "HSN",
                [("epost", "hsf@testby.example")],
                [("mikael", "Mikael Ö", "mikael@testby.example")],
            ),
        ],
        "wheel": {
            "phases": [
                _phase("preparation", "Förberedelser", "EKO", ("1 October", -2), ("31 January", -1), "underlag"),
                _phase(
                    "planning_prerequisites", "PF", "RS", ("1 February", -1), ("31 March", -1), "pf_klar"
                ),  # fmt: skip
                _phase("committee_feedback", "Återkoppling", "RS", ("1 April", -1), ("30 April", -1), "aterkoppling"),
                _phase("regional_plan", "Plan och budget", "RS", ("1 May", -1), ("30 June", -1), "plan_beslut"),
                _phase(
                    "operational_plans", "Verksamhetsplaner", "HSN", ("1 July", -1), ("30 September", -1), "vp_klar"
                ),
                _phase("activity_plans", "Aktivitetsplaner", "EKO", ("1 October", -1), ("31 December", -1), "ap_klar"),
                _phase("follow_up", "Uppföljning", "EKO", ("1 January", 0), ("end of February", 1), "ar_klar"),
            ],
            "milestones": [
                {"id": i, "name": n, "phase": p, "owner": o, "date": {"rule": r, "year_offset": y}}
                for i, n, p, o, r, y in ms
            ],
        },
        "deadlines": {"reminder_offsets_days": [14, 7, 1], "escalate_after_days": 3},
        "budget": {"frames": {"HSN": 1_000_000}},
    }


@pytest.fixture
def topic() -> str:
    return f"styrkedja/test-{os.getpid()}-{time.monotonic_ns()}/HSN"


@pytest.fixture
def config_path(tmp_path: Path, topic: str) -> Path:
    path = tmp_path / "testby.yaml"
    path.write_text(yaml.safe_dump(config_data(topic), allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def cfg(config_path: Path) -> OrgConfig:
    return load_config(config_path)


def setup_cycle(cfg: OrgConfig, url: str | None) -> int:
    """The cycle with its milestones (the preparation's already done) and the walk's receipts."""
    cycle_id = prepare_cycle(cfg, YEAR, url)
    created = datetime(2029, 1, 2, 8, 0, tzinfo=UTC)
    with session_scope(url) as s:
        cycle = s.get(Cycle, cycle_id)
        assert cycle is not None
        cycle.created_at = datetime(2028, 9, 1, tzinfo=UTC)
        s.add(cycle)
        s.exec(update(Milestone).where(Milestone.key == "underlag").values(done_at=created))  # type: ignore[call-overload]
        doc = Document(
            key=f"{ORG}/{YEAR}/planning_prerequisites/HSN/planeringsforutsattningar/v1",
            cycle_id=cycle_id,
            phase="planning_prerequisites",
            unit_id="HSN",
            kind="planeringsforutsattningar",
            format="docx",
            relpath="2030/planning_prerequisites/HSN.docx",
            content_hash="0" * 64,
            title=PF_TITLE,
        )
        s.add(doc)
        s.flush()

        def receipt(phase: str, topic: str, sender: str, receiver: str, state: str, **kw: Any) -> None:
            s.add(
                Receipt(
                    key=f"{ORG}/{YEAR}/{phase}/{topic}/{sender}->{receiver}/v{kw.get('version', 1)}",
                    cycle_id=cycle_id,
                    phase=phase,
                    topic=topic,
                    direction="down",
                    sender_unit=sender,
                    receiver_unit=receiver,
                    content_hash="0" * 64,
                    purpose="Gemensam tolkning.",
                    deadline=kw.pop("deadline", D),
                    state=state,
                    created_at=kw.pop("created_at", created),
                    **kw,
                )
            )

        receipt("planning_prerequisites", "planeringsforutsattningar", "RS", "HSN", "issued", document_id=doc.id)
        receipt("committee_feedback", "aterkoppling", "HSN", "RS", "disputed")  # the sender must act
        receipt("planning_prerequisites", "pf_forvaltning", "HSN", "HSF", "acknowledged", deadline=D + timedelta(2))
        receipt("planning_prerequisites", "klar", "RS", "EKO", "agreed")
        receipt("planning_prerequisites", "gammal", "RS", "HSF", "superseded")
    return cycle_id


def outbox(url: str | None) -> dict[str, Notification]:
    with session_scope(url) as s:
        return {n.key: n for n in s.exec(select(Notification))}


def rkey(phase: str, topic: str, sender: str, receiver: str) -> str:
    return f"{ORG}/{YEAR}/{phase}/{topic}/{sender}->{receiver}/v1"


R1 = rkey("planning_prerequisites", "planeringsforutsattningar", "RS", "HSN")
R2 = rkey("committee_feedback", "aterkoppling", "HSN", "RS")
R3 = rkey("planning_prerequisites", "pf_forvaltning", "HSN", "HSF")
PF = f"{ORG}/{YEAR}/milestone/pf_klar"


def split(key: str) -> tuple[str, str, str]:
    """(item key, stage tag, recipient) of a watch notification key."""
    for base in (R1, R2, R3, PF, f"{ORG}/{YEAR}/milestone/aterkoppling"):
        if key.startswith(base + "/"):
            tag, channel, address = key[len(base) + 1 :].split("/", 2)
            return base, tag, f"{channel}/{address}"
    return "", "", ""


def expected_stages(first: date, last: date, due: date) -> dict[str, date]:
    """Stage tag -> the day it is due, for a walk from `first` to `last` (policy 14/7/1, escalation 3)."""
    out: dict[str, date] = {}
    day = first
    while day <= last:
        for stage in stages_for((due - day).days, (14, 7, 1), 3):
            out.setdefault(stage.tag, day)
        day += timedelta(days=1)
    return out


# -- the policy ---------------------------------------------------------------------------------------


def test_the_stages_of_the_policy() -> None:
    def tags(days: int, **kw: Any) -> list[str]:
        return [s.tag for s in stages_for(days, (14, 7, 1), 3, **kw)]

    assert tags(15) == [] and tags(14) == ["remind-14d"] and tags(8) == ["remind-14d"]
    assert tags(7) == ["remind-7d"] and tags(2) == ["remind-7d"] and tags(1) == ["remind-1d"]
    assert tags(0) == ["remind-due"]
    assert tags(-1) == ["remind-overdue-1d"] and tags(-2) == ["remind-overdue-2d"]
    assert tags(-3) == ["remind-overdue-3d", "escalate-3d"]
    assert tags(-9) == ["remind-overdue-9d", "escalate-3d"]
    assert tags(-3 - ESCALATE_EVERY_DAYS) == ["remind-overdue-10d", "escalate-10d"]
    # Created after a reminder point: that point is skipped (the delivery named the deadline).
    due = date(2029, 3, 22)
    assert tags(10, due=due, created=due - timedelta(days=12)) == []
    assert tags(10, due=due, created=due - timedelta(days=14)) == ["remind-14d"]
    assert tags(5, due=due, created=due - timedelta(days=12)) == ["remind-7d"]


# -- walking through the deadlines, day by day ---------------------------------------------------------


def test_walking_day_by_day_every_reminder_and_escalation_exactly_once(db_url: str, cfg: OrgConfig) -> None:
    setup_cycle(cfg, db_url)
    pf_due = resolve_wheel(cfg, YEAR)["pf_klar"]
    first, last = D - timedelta(days=30), D + timedelta(days=20)
    seen: dict[str, date] = {}
    day = first
    while day <= last:
        report = run_watch(cfg, day, db_url)
        assert report.cycles and report.cycles[0][1] == YEAR
        keys = outbox(db_url)
        new = {k: day for k in keys if k not in seen}
        seen.update(new)
        # The same day again (a retry, a second trigger): nothing new.
        again = run_watch(cfg, day, db_url)
        assert (again.reminders, again.escalations, again.notifications) == (0, 0, 0)
        assert again.already_queued == report.queued + report.already_queued
        assert len(outbox(db_url)) == len(keys)
        day += timedelta(days=1)

    by_item: dict[str, dict[str, set[str]]] = {}
    tag_day: dict[tuple[str, str], set[date]] = {}
    for key, when in seen.items():
        base, tag, recipient = split(key)
        by_item.setdefault(base, {}).setdefault(tag, set()).add(recipient)
        tag_day.setdefault((base, tag), set()).add(when)
    # Every recipient of a stage got it the same day, the day the policy says.
    receipt_stages = expected_stages(first, last, D)
    assert {tag: next(iter(tag_day[(R1, tag)])) for tag in by_item[R1]} == receipt_stages
    assert all(len(days) == 1 for days in tag_day.values())
    assert len(receipt_stages) == 4 + 20 + 3  # 14, 7, 1 days and the day; 20 overdue days; 3 escalations

    signatories = {"epost/anna@testby.example", "epost/per@testby.example"}
    hsn_mqtt = f"mqtt/{cfg.unit('HSN').contacts[1].address}"
    for tag, recipients in by_item[R1].items():
        # The receiver's signatories by e-mail and its MQTT channel; escalations to its superior.
        assert recipients == ({"epost/rs@testby.example"} if tag.startswith("escalate") else signatories | {hsn_mqtt})
    # Disputed: the sender (HSN) must issue a new version; escalations to the sender's superior.
    assert set(by_item[R2]) == set(receipt_stages)
    for tag, recipients in by_item[R2].items():
        assert recipients == (
            {"epost/rs@testby.example"} if tag.startswith("escalate") else {"epost/hsn@testby.example", hsn_mqtt}
        )
    # Acknowledged but not agreed, due two days later: its stages shift by two days; escalation to HSN.
    assert {t: next(iter(tag_day[(R3, t)])) for t in by_item[R3]} == expected_stages(first, last, D + timedelta(2))
    assert by_item[R3]["remind-7d"] == {"epost/mikael@testby.example"}
    assert by_item[R3]["escalate-3d"] == {"epost/hsn@testby.example", hsn_mqtt}
    # The milestone: its owner's contacts, escalated to the owner's parent.
    assert {t: next(iter(tag_day[(PF, t)])) for t in by_item[PF]} == expected_stages(first, last, pf_due)
    assert by_item[PF]["remind-due"] == {"epost/hsn@testby.example", hsn_mqtt}
    assert by_item[PF]["escalate-3d"] == {"epost/rs@testby.example"}
    # Agreed and superseded receipts and a milestone already done: nothing, ever.
    assert not [k for k in seen if "/klar/" in k or "/gammal/" in k or "/milestone/underlag/" in k]
    assert all(split(k)[0] for k in seen), [k for k in seen if not split(k)[0]]

    rows = outbox(db_url)
    r1_day = rows[f"{R1}/remind-1d/epost/anna@testby.example"]
    assert r1_day.subject == f'Påminnelse: kvittera "{PF_TITLE}" senast i morgon'
    assert r1_day.body.startswith("Hej Hälso- och sjukvårdsnämnden,") and r1_day.receipt_id is not None
    # The stored body holds the link's placeholder (each recipient's portal link is made at send
    # time: no token in the outbox); the row keeps the handoff's page without a token.
    assert r1_day.body.endswith(f"Länk: {LINK_PLACEHOLDER}") and r1_day.state == NotificationState.PENDING
    assert r1_day.link == f"{portal_url()}/kvittens/{r1_day.receipt_id}"
    esc = rows[f"{R1}/escalate-10d/epost/rs@testby.example"]
    # The escalation names who waits for whom (the document in the body).
    assert (
        esc.subject == "Eskalering: Regionstyrelsen väntar på kvittens från Hälso- och sjukvårdsnämnden sedan 10 dagar"
    )
    assert PF_TITLE in esc.body
    dispute = rows[f"{R2}/remind-overdue-2d/epost/hsn@testby.example"]
    assert dispute.subject == 'Försenad: ny version av "aterkoppling" skulle ha kvitterats för 2 dagar sedan'
    assert "Regionstyrelsen har bestridit" in dispute.body
    ms = rows[f"{PF}/remind-7d/epost/hsn@testby.example"]
    assert ms.subject == 'Påminnelse: "Planeringsförutsättningarna behandlade i nämnden" ska vara klar inom 7 dagar'
    assert "styrkedja calendar done pf_klar --year 2030" in ms.body


def test_a_missed_run_catches_up_with_the_latest_stage_only(db_url: str, cfg: OrgConfig) -> None:
    setup_cycle(cfg, db_url)
    for offset in (-10, -3, 5, 12):
        run_watch(cfg, D + timedelta(days=offset), db_url)
    tags = sorted({split(k)[1] for k in outbox(db_url) if split(k)[0] == R1})
    assert tags == sorted(
        ["remind-14d", "remind-7d", "remind-overdue-5d", "escalate-3d", "remind-overdue-12d", "escalate-10d"]
    )


def test_what_needs_no_reminder(db_url: str, cfg: OrgConfig) -> None:
    cycle_id = setup_cycle(cfg, db_url)
    wheel = resolve_wheel(cfg, YEAR)
    with session_scope(db_url) as s:
        # A receipt issued after its 14-day point; a milestone whose phase completed after its date
        # (a simulated day: the run's as_of); a milestone marked done.
        s.add(
            Receipt(
                key=rkey("committee_feedback", "sen", "RS", "HSF"),
                cycle_id=cycle_id,
                phase="committee_feedback",
                topic="sen",
                direction="down",
                sender_unit="RS",
                receiver_unit="HSF",
                content_hash="0" * 64,
                purpose="p",
                deadline=D,
                created_at=datetime(2029, 3, 11, 12, tzinfo=UTC),
            )
        )
        s.add(
            PhaseRun(
                cycle_id=cycle_id,
                phase="planning_prerequisites",
                state=PhaseState.COMPLETED,
                as_of=wheel["pf_klar"] + timedelta(days=1),
                finished_at=utcnow(),
            )
        )
        s.exec(update(Milestone).where(Milestone.key == "aterkoppling").values(done_at=utcnow()))  # type: ignore[call-overload]
    for offset in range(-14, 10):
        run_watch(cfg, D + timedelta(days=offset), db_url)
    keys = list(outbox(db_url))
    late = [k for k in keys if "/sen/" in k]
    assert not [k for k in late if "remind-14d" in k] and [k for k in late if "remind-7d" in k]
    assert not [k for k in keys if "/milestone/pf_klar/" in k or "/milestone/aterkoppling/" in k]
    # A plan year whose window does not hold the day: no cycle is active, nothing happens.
    quiet = run_watch(cfg, date(2031, 6, 1), db_url)
    assert quiet.cycles == [] and quiet.queued == 0


def test_a_milestone_dated_before_the_cycle_was_set_up_is_shown_but_not_chased(db_url: str, cfg: OrgConfig) -> None:
    cycle_id = setup_cycle(cfg, db_url)
    pf_due = resolve_wheel(cfg, YEAR)["pf_klar"]
    with session_scope(db_url) as s:
        s.exec(update(Cycle).where(Cycle.id == cycle_id).values(created_at=datetime(2029, 3, 20, tzinfo=UTC)))  # type: ignore[call-overload]
        rows = progression_rows(s, cfg, cycle_id, D)
    assert next(r for r in rows if r["milstolpe"].startswith("Planeringsförutsättningarna"))["status"] == "försenad"
    run_watch(cfg, pf_due + timedelta(days=7), db_url)
    assert not [k for k in outbox(db_url) if k.startswith(PF)]


def test_escalation_without_a_parent_goes_to_the_finance_department(db_url: str, cfg: OrgConfig) -> None:
    setup_cycle(cfg, db_url)
    due = resolve_wheel(cfg, YEAR)["plan_beslut"]  # owned by the assembly, the top of the tree
    run_watch(cfg, due + timedelta(days=3), db_url)
    keys = [k for k in outbox(db_url) if k.startswith(f"{ORG}/{YEAR}/milestone/plan_beslut/")]
    assert sorted(keys) == [
        f"{ORG}/{YEAR}/milestone/plan_beslut/escalate-3d/epost/eko@testby.example",
        f"{ORG}/{YEAR}/milestone/plan_beslut/remind-overdue-3d/epost/rf@testby.example",
    ]


def test_progression_states(db_url: str, cfg: OrgConfig) -> None:
    cycle_id = setup_cycle(cfg, db_url)
    with session_scope(db_url) as s:
        rows = {r["milstolpe"]: r for r in progression_rows(s, cfg, cycle_id, date(2029, 3, 12))}
    assert [(r["status"], r["dagar"]) for r in rows.values()][:3] == [
        ("klar", ""),  # underlag: marked done
        ("snart", "om 3 dagar"),  # pf_klar, 15 March
        ("kommande", "om 35 dagar"),  # återkoppling, 16 April
    ]
    assert list(next(iter(rows.values()))) == ["fas", "milstolpe", "ansvarig", "sista dag", "status", "dagar"]
    assert rows["Nämndernas återkoppling"]["ansvarig"] == "Regionstyrelsen"
    with session_scope(db_url) as s:
        late = {r["milstolpe"]: r for r in progression_rows(s, cfg, cycle_id, date(2029, 3, 16))}
    assert (
        late["Planeringsförutsättningarna behandlade i nämnden"]["status"],
        late["Planeringsförutsättningarna behandlade i nämnden"]["dagar"],
    ) == ("försenad", "för 1 dag sedan")


# -- overlapping cycles: a whole calendar year -------------------------------------------------------

# Plan year Y is watched from its first date (preparation, 1 October Y-2, on a working day) to its
# last (the annual report, end of February Y+1): in 2030 the cycles 2029 (until February), 2030,
# 2031 and 2032 (from October) are all active at some point, up to three at once.
WINDOWS = {
    2029: (date(2027, 10, 1), date(2030, 2, 28)),
    2030: (date(2028, 9, 29), date(2031, 2, 28)),  # 1 October 2028 is a Sunday
    2031: (date(2029, 10, 1), date(2032, 2, 27)),
    2032: (date(2030, 10, 1), date(2033, 2, 28)),
}
WALK = (date(2030, 1, 1), date(2030, 12, 31))
# Plan year 2031's milestones fall in 2030: done this many days after their date (None: never).
DONE_AFTER = {"underlag": -2, "pf_klar": 5, "aterkoppling": 0, "plan_beslut": 12, "vp_klar": -1, "ap_klar": None}
# (plan year, phase, topic, sender, receiver, state, deadline, agreed on, created on). Deadlines of
# different cycles interleave; three fall on one day, two of them the same handoff in two cycles.
OVERLAP_RECEIPTS = [
    (2029, "follow_up", "arsredovisning", "RS", "RF", "issued", date(2030, 2, 10), None, None),  # outlives its cycle
    (
        2030,
        "operational_plans",
        "verksamhetsplan",
        "HSN",
        "HSF",
        "disputed",
        date(2029, 12, 20),
        date(2030, 1, 10),
        None,
    ),
    (2030, "follow_up", "delar", "HSN", "RS", "issued", date(2030, 3, 20), date(2030, 3, 25), None),
    (2031, "follow_up", "delar", "HSN", "RS", "issued", date(2030, 3, 20), date(2030, 3, 22), None),
    (2031, "planning_prerequisites", "pf", "RS", "HSN", "issued", date(2030, 3, 20), date(2030, 3, 19), None),
    (
        2031,
        "committee_feedback",
        "aterkoppling",
        "HSN",
        "RS",
        "acknowledged",
        date(2030, 4, 22),
        date(2030, 5, 2),
        None,
    ),
    (2032, "preparation", "underlag", "EKO", "RS", "issued", date(2030, 10, 20), None, date(2030, 10, 10)),
]


def _overlapping_cycles(cfg: OrgConfig, url: str) -> tuple[dict[int, int], dict[tuple[int, str], date], dict]:  # type: ignore[type-arg]
    """Four cycles, what each item is keyed by, when each is due, and what is resolved on which day."""
    cycle_ids = {year: prepare_cycle(cfg, year, url) for year in WINDOWS}
    due: dict[tuple[int, str], date] = {}  # (plan year, notification key prefix) -> deadline
    resolved: dict[date, list[tuple[str, int, str]]] = {}  # day -> (kind, plan year, key)
    with session_scope(url) as s:
        s.exec(update(Cycle).values(created_at=datetime(2027, 6, 1, tzinfo=UTC)))  # type: ignore[call-overload]
        for year, cycle_id in cycle_ids.items():
            for key, when in resolve_wheel(cfg, year).dates.items():
                if not any(m.id == key for m in cfg.wheel.milestones):
                    continue
                base = f"{ORG}/{year}/milestone/{key}"
                if when > WALK[0] or (year == 2031 and key in DONE_AFTER):
                    due[(year, base)] = when
                else:  # already done before the walk
                    s.exec(  # type: ignore[call-overload]
                        update(Milestone)
                        .where(Milestone.cycle_id == cycle_id, Milestone.key == key)
                        .values(done_at=datetime(2029, 12, 31, tzinfo=UTC))
                    )
                if year == 2031 and key in DONE_AFTER and DONE_AFTER[key] is not None:
                    resolved.setdefault(when + timedelta(days=DONE_AFTER[key]), []).append(("milestone", year, key))
        for year, phase, topic, sender, receiver, state, deadline, agreed, created in OVERLAP_RECEIPTS:
            key = f"{ORG}/{year}/{phase}/{topic}/{sender}->{receiver}/v1"
            s.add(
                Receipt(
                    key=key,
                    cycle_id=cycle_ids[year],
                    phase=phase,
                    topic=topic,
                    direction="up" if receiver in ("RS", "RF") else "down",
                    sender_unit=sender,
                    receiver_unit=receiver,
                    content_hash="0" * 64,
                    purpose="Gemensam tolkning.",
                    deadline=deadline,
                    state=state,
                    created_at=datetime.combine(created or date(2029, 6, 1), datetime.min.time(), UTC),
                )
            )
            due[(year, key)] = deadline
            if agreed is not None:
                resolved.setdefault(agreed, []).append(("receipt", year, key))
    return cycle_ids, due, resolved


def test_overlapping_cycles_walked_through_a_whole_year(db_url: str, cfg: OrgConfig) -> None:
    """Every day of 2030, with the cycles of four plan years in one database: each cycle's reminders
    and escalations are queued once, on the day the policy says, keyed to that cycle and only while
    it is active; the progression, receipt and urgency tables of a cycle hold only its own items."""
    assert {year: cycle_window(cfg, year) for year in WINDOWS} == WINDOWS
    cycle_ids, due, resolved = _overlapping_cycles(cfg, db_url)
    year_of = {cycle_id: year for year, cycle_id in cycle_ids.items()}
    created = {(r[0], f"{ORG}/{r[0]}/{r[1]}/{r[2]}/{r[3]}->{r[4]}/v1"): r[8] for r in OVERLAP_RECEIPTS}
    open_items = dict(due)
    expected: dict[tuple[int, str, str], date] = {}  # (plan year, item, stage tag) -> the day it is due
    seen: dict[tuple[int, str, str], date] = {}
    last_id = 0
    day = WALK[0]
    while day <= WALK[1]:
        for kind, year, key in resolved.get(day, []):  # done / agreed in the morning, before the watch
            with session_scope(db_url) as s:
                if kind == "milestone":
                    s.exec(  # type: ignore[call-overload]
                        update(Milestone)
                        .where(Milestone.cycle_id == cycle_ids[year], Milestone.key == key)
                        .values(done_at=datetime.combine(day, datetime.min.time(), UTC))
                    )
                    open_items.pop((year, f"{ORG}/{year}/milestone/{key}"))
                else:
                    s.exec(update(Receipt).where(Receipt.key == key).values(state=ReceiptState.AGREED))  # type: ignore[call-overload]
                    open_items.pop((year, key))
        active = [year for year, (start, end) in WINDOWS.items() if start <= day <= end]
        for (year, item), deadline in open_items.items():
            if year in active:
                when = created.get((year, item))
                for stage in stages_for((deadline - day).days, (14, 7, 1), 3, due=deadline, created=when):
                    expected.setdefault((year, item, stage.tag), day)

        report = run_watch(cfg, day, db_url)
        assert [year for _, year in report.cycles] == active, day
        assert all(cycle_id == cycle_ids[year] for cycle_id, year in report.cycles)
        for cycle_id, items in report.urgent.items():
            assert {(i.cycle_id, i.year) for i in items} == {(cycle_id, year_of[cycle_id])}, day
        with session_scope(db_url) as s:
            new = s.exec(  # type: ignore[call-overload]
                select(Notification.id, Notification.key, Notification.cycle_id, Notification.receipt_id)
                .where(Notification.id > last_id)
                .order_by(Notification.id)
            ).all()
            receipt_of = {r.id: (r.cycle_id, r.key) for r in s.exec(select(Receipt))}
        for nid, key, cycle_id, receipt_id in new:
            year = year_of[cycle_id]
            item = next((i for (y, i) in due if y == year and key.startswith(i + "/")), None)
            assert item is not None, f"{key}: queued for cycle {year}, but no item of that cycle has this key"
            if receipt_id is not None:
                assert receipt_of[receipt_id] == (cycle_id, item)
            tag = key[len(item) + 1 :].split("/", 1)[0]
            assert seen.setdefault((year, item, tag), day) == day, (
                f"{key} queued on {seen[(year, item, tag)]} and {day}"
            )
            last_id = nid
        if day.day in (1, 15) or day == WALK[1]:
            again = run_watch(cfg, day, db_url)  # a second trigger the same day: nothing new
            assert (again.queued, again.notifications) == (0, 0)
            with session_scope(db_url) as s:
                for year in active:
                    rows = progression_rows(s, cfg, cycle_ids[year], day)
                    wheel = resolve_wheel(cfg, year)
                    assert {(r["milstolpe"], r["sista dag"]) for r in rows} == {
                        (m.name, wheel[m.id].isoformat()) for m in cfg.wheel.milestones
                    }, (year, day)
                    mine = {k for (y, k) in due if y == year and "/milestone/" not in k}
                    assert {r["id"] for r in receipt_rows(s, cfg, cycle_ids[year])} == {
                        str(rid) for rid, (cid, _) in receipt_of.items() if cid == cycle_ids[year]
                    }
                    assert {receipt_of[int(r["id"])][1] for r in receipt_rows(s, cfg, cycle_ids[year])} == mine
        day += timedelta(days=1)

    assert seen == expected
    # The walk reached every cycle and every kind of stage; the examples below are the policy by hand.
    assert {year for year, _, _ in seen} == set(WINDOWS)
    pf = f"{ORG}/2031/milestone/pf_klar"  # 15 March 2030, done five days late
    assert {t: d for (y, i, t), d in seen.items() if i == pf} == {
        "remind-14d": date(2030, 3, 1),
        "remind-7d": date(2030, 3, 8),
        "remind-1d": date(2030, 3, 14),
        "remind-due": date(2030, 3, 15),
        **{f"remind-overdue-{n}d": date(2030, 3, 15 + n) for n in range(1, 5)},
        "escalate-3d": date(2030, 3, 18),
    }
    old = f"{ORG}/2029/follow_up/arsredovisning/RS->RF/v1"  # overdue when its cycle closes on 28 February
    assert max(d for (y, i, _), d in seen.items() if i == old) == date(2030, 2, 28)
    assert (2029, old, "remind-overdue-18d") in seen and (2029, old, "remind-overdue-19d") not in seen
    same_day = {i for (y, i, t) in seen if t == "remind-due" and due[(y, i)] == date(2030, 3, 20)}
    assert same_day == {
        f"{ORG}/2030/follow_up/delar/HSN->RS/v1",
        f"{ORG}/2031/follow_up/delar/HSN->RS/v1",
    }  # the third one due that day was agreed the day before
    late_start = f"{ORG}/2032/preparation/underlag/EKO->RS/v1"  # issued after its 14-day point
    assert (2032, late_start, "remind-14d") not in seen and (2032, late_start, "remind-7d") in seen


# -- concurrency and scale ------------------------------------------------------------------------------


def test_concurrent_watches_queue_each_notification_once(db_url: str, cfg: OrgConfig) -> None:
    setup_cycle(cfg, db_url)
    day = D + timedelta(days=3)
    barrier = threading.Barrier(4)
    reports: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            reports.append(run_watch(cfg, day, db_url))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    rows = outbox(db_url)
    # Between them the runs queued every stage once: the counts add up to one run's worth.
    assert sum(r.notifications for r in reports) == len(rows)
    assert sum(r.queued for r in reports) == len({(split(k)[0], split(k)[1]) for k in rows})
    assert all(r.queued + r.already_queued == reports[0].queued + reports[0].already_queued for r in reports)
    assert run_watch(cfg, day, db_url).queued == 0


def _statements(url: str, fn: Any) -> int:
    engine = get_engine(url)
    count = 0

    def on_execute(*_args: Any) -> None:
        nonlocal count
        count += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    return count


def test_the_watch_is_set_based(db_url: str, cfg: OrgConfig) -> None:
    """The number of statements does not grow with the number of items (timing is for the benchmarks)."""
    cycle_id = setup_cycle(cfg, db_url)

    def add(n: int, start: int) -> None:
        with session_scope(db_url) as s:
            for i in range(start, start + n):
                s.add(
                    Receipt(
                        key=rkey("planning_prerequisites", f"mass{i}", "RS", "HSN"),
                        cycle_id=cycle_id,
                        phase="planning_prerequisites",
                        topic=f"mass{i}",
                        direction="down",
                        sender_unit="RS",
                        receiver_unit="HSN",
                        content_hash="0" * 64,
                        purpose="p",
                        # Spread over the reminder points and overdue days.
                        deadline=D + timedelta(days=(i % 30) - 15),
                        created_at=datetime(2029, 1, 1, tzinfo=UTC),
                    )
                )

    add(20, 0)
    small_first = _statements(db_url, lambda: run_watch(cfg, D, db_url))
    small_again = _statements(db_url, lambda: run_watch(cfg, D, db_url))
    add(380, 20)  # twenty times as many items: up to 3 recipients each, under one insert batch
    big_first = _statements(db_url, lambda: run_watch(cfg, D, db_url))
    big_again = _statements(db_url, lambda: run_watch(cfg, D, db_url))
    assert big_first == small_first and big_again == small_again, (small_first, big_first, small_again, big_again)
    assert big_first <= 16 and big_again <= 12
    assert len(outbox(db_url)) > 400


# -- the flow, end to end ---------------------------------------------------------------------------------


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    yield from local_smtp(monkeypatch, start=False, login=True)


class Subscriber:
    """The unit's MQTT topic on the local Mosquitto, as a dashboard would follow it."""

    def __init__(self, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.payloads: list[str] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self._got(msg.payload.decode())
        self.client.connect(MQTT_HOST, MQTT_PORT)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _got(self, payload: str) -> None:
        with self.lock:
            self.payloads.append(payload)

    def references(self, expected: int, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.payloads) >= expected:
                    break
            time.sleep(0.05)
        time.sleep(0.2)  # anything extra (a duplicate) would arrive now
        with self.lock:
            return [p.rstrip().rsplit("Referens: ", 1)[-1] for p in self.payloads]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber(topic: str) -> Iterator[Subscriber]:
    try:
        with socket.create_connection((MQTT_HOST, MQTT_PORT), timeout=2):
            pass
    except OSError:
        if os.environ.get("CI"):
            pytest.fail(f"the MQTT broker on {MQTT_HOST}:{MQTT_PORT} is required in CI")
        pytest.skip(f"no MQTT broker on {MQTT_HOST}:{MQTT_PORT}")
    sub = Subscriber(topic)
    yield sub
    sub.close()


def _artifact(key: str) -> Any:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC, limit=1
        )
    assert found, f"no artifact {key}"
    return found[0]


def _table(key: str) -> list[dict[str, str]]:
    data = _artifact(key).data
    return json.loads(data) if isinstance(data, str) else data


def _cli_rows(output: str, first_column: set[str]) -> list[list[str]]:
    """The rows of a Rich table printed by the CLI (their first line), found by their first cell."""
    rows = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] in first_column:
            rows.append(cells)
    return rows


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log line of the run, formatted, from Prefect's loggers and ours. A handler on the
    loggers themselves: Prefect's console handler may still write to a stream an earlier test
    captured, so reading stdout would depend on test order."""
    # The first `from prefect import flow` of a process configures Prefect's logging (dictConfig),
    # which drops handlers added before it: let that happen now, not in the middle of the test.
    import prefect.main  # noqa: F401

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect(level=logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("prefect", "tasks", "apprise")]
    for lg in loggers:
        lg.addHandler(handler)
    yield lines
    for lg in loggers:
        lg.removeHandler(handler)


def test_the_flow_reminds_escalates_delivers_and_shows_the_same_states_everywhere(
    prefect_api: None,
    app_env: Path,
    config_path: Path,
    cfg: OrgConfig,
    smtp: SmtpServer,
    subscriber: Subscriber,
    log_lines: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from flows import cli as main_cli
    from flows.cli_calendar import register
    from flows.deadline_watch import PHASE_STATE_SV, deadline_watch, deadline_watch_deployment

    cycle_id = setup_cycle(cfg, None)
    with session_scope() as s:
        s.add(PhaseRun(cycle_id=cycle_id, phase="preparation", state=PhaseState.COMPLETED, finished_at=utcnow()))
        s.add(PhaseRun(cycle_id=cycle_id, phase="planning_prerequisites", state=PhaseState.WAITING))
    config = str(config_path)
    caplog.set_level(logging.DEBUG, logger="apprise")  # the most talkative about URLs; restored afterwards

    # 1. The mail server is down: the e-mails wait in the outbox, MQTT goes out.
    first = deadline_watch(as_of=D - timedelta(days=14), config=config)
    assert first["cycles"] == [YEAR] and first["sent"] >= 1 and first["retried"] >= 1
    assert smtp.box.mails == []
    pending = {k: n for k, n in outbox(None).items() if n.state == NotificationState.PENDING}
    assert pending and all(n.channel_id == "epost" for n in pending.values())
    assert all(PASSWORD not in (n.last_error or "") and "p@ss" not in (n.last_error or "") for n in pending.values())

    # 2. Time passes (the backoff runs out) and the server is back: nothing lost, nothing twice.
    with session_scope() as s:
        s.exec(update(Notification).values(next_attempt_at=utcnow() - timedelta(seconds=1)))  # type: ignore[call-overload]
    smtp.start()
    second = deadline_watch(as_of=D - timedelta(days=7), config=config)
    assert second["failed"] == 0 and second["retried"] == 0
    again = deadline_watch(as_of=D - timedelta(days=7), config=config)
    assert (again["reminders"], again["escalations"], again["sent"]) == (0, 0, 0)

    # 3. Three days late: the reminder of the day and the escalation to the superior level.
    app = typer.Typer()
    register(app)
    late_day = D + timedelta(days=3)
    result = runner.invoke(app, ["watch", "--as-of", late_day.isoformat(), "--config", config])
    assert result.exit_code == 0, result.output
    assert "queued" in result.output and f"{late_day}: plan years {YEAR}" in result.output

    rows = outbox(None)
    assert {n.state for n in rows.values()} == {NotificationState.SENT}
    email_keys = sorted(k for k, n in rows.items() if n.channel_id == "epost")
    assert Counter(smtp.box.received_keys()) == Counter(email_keys)  # each e-mail exactly once
    assert {login for login, _password in smtp.box.logins} == {"styrkedja"}
    mqtt_keys = sorted(k for k, n in rows.items() if n.channel_id == "mqtt")
    assert Counter(subscriber.references(len(mqtt_keys))) == Counter(mqtt_keys)  # each MQTT message once
    tags = {split(k)[:2] for k in rows}
    assert {(R1, "remind-14d"), (R1, "remind-7d"), (R1, "remind-overdue-3d"), (R1, "escalate-3d")} <= tags
    escalation = smtp.find(f"{R1}/escalate-3d/epost/rs@testby.example")
    assert str(escalation["Subject"]) == (
        "Eskalering: Regionstyrelsen väntar på kvittens från Hälso- och sjukvårdsnämnden sedan 3 dagar"
    )
    assert str(escalation["To"]) == "rs@testby.example"
    text = escalation.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hej Regionstyrelsen," in text and "torsdag 22 mars 2029" in text
    assert f"Länk: {portal_url()}/l/" in text and LINK_PLACEHOLDER not in text

    # 4. The artifacts, read back through the API, hold the same rows as the database.
    with session_scope() as s:
        expected = progression_rows(s, cfg, cycle_id, late_day)
        from tasks.progress import phase_statuses, receipt_rows

        receipts = receipt_rows(s, cfg, cycle_id)
        statuses = phase_statuses(s, cfg, cycle_id, YEAR)
    assert _table(f"processlage-region-testby-{YEAR}") == expected
    assert _table(f"kvittenser-region-testby-{YEAR}") == receipts
    summary = _artifact(f"tidsfrister-region-testby-{YEAR}")
    md = summary.data
    assert md.startswith(f"# Tidsfrister – Region Testby, planår {YEAR}")
    assert f"| {PF_TITLE} (Hälso- och sjukvårdsnämnden) | kvittens | Hälso- och sjukvårdsnämnden |" in md
    assert "| 3 dagar försenad |" in md and "kvittens, bestriden" in md
    image = _artifact(f"arshjul-region-testby-{YEAR}")
    assert image.type == "image" and image.data.startswith("data:image/png;base64,")

    # `styrkedja watch` printed the artifact's states; `styrkedja status` the summary's phase states.
    printed = _cli_rows(result.output, {r["fas"] for r in expected})
    assert [(row[0], row[3], row[4], row[5]) for row in printed] == [
        (r["fas"], r["sista dag"], r["status"], r["dagar"]) for r in expected
    ], result.output
    status = runner.invoke(main_cli.app, ["status", "--year", str(YEAR), "--config", config])
    assert status.exit_code == 0, status.output
    phase_table = status.output.split("Milestones on")[0]  # the milestone table follows it
    assert "Milestones on" in status.output
    cli_states = {cells[0]: cells[2] for cells in _cli_rows(phase_table, {p.name for p in cfg.wheel.phases})}
    assert cli_states == {st.name: st.state for st in statuses}
    for st in statuses:
        assert f"| {st.name} | {st.window[0]} – {st.window[1]} | {PHASE_STATE_SV[st.state]} |" in md

    # 5. No secret in logs, parameters or artifacts.
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["deadline-watch"])))
        artifacts = client.read_artifacts()
    assert len(runs) >= 4
    # The log records hold the flow's own lines and the failed SMTP attempts, masked.
    logs = "\n".join(log_lines)
    assert "cycles active" in logs and "retry later" in logs and "Connection refused" in logs
    seen = logs + json.dumps([r.parameters for r in runs], default=str)
    seen += json.dumps([[a.data, a.description] for a in artifacts], default=str)
    seen += json.dumps([n.last_error for n in outbox(None).values()])
    for secret in (PASSWORD, "p@ss/w?rd", "p%40ss", "Hemligt"):
        assert secret not in seen

    deployment = deadline_watch_deployment()
    assert deployment.name == "deadline-watch" and deployment.schedules[0].schedule.cron == "0 6 * * *"
    assert deployment.schedules[0].schedule.timezone == "Europe/Stockholm"


def test_the_sweep_resumes_a_phase_whose_last_receipt_came_before_it_paused(
    prefect_api: None, app_env: Path, config_path: Path, cfg: OrgConfig, smtp: SmtpServer
) -> None:
    from uuid import UUID

    from prefect import flow, get_client
    from prefect.client.schemas.objects import StateType
    from prefect.context import FlowRunContext
    from prefect.flow_runs import pause_flow_run

    from flows.deadline_watch import deadline_watch
    from tasks.waiting import ResumeInput

    cycle_id = setup_cycle(cfg, None)
    ids: list[str] = []
    outcome: list[str] = []

    @flow(name="phase-that-waits")
    def waiting_phase() -> str:
        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None
        ids.append(str(ctx.flow_run.id))
        got = pause_flow_run(wait_for_input=ResumeInput, timeout=60, poll_interval=1, key="receipts-test")
        return got.reason if got else ""

    thread = threading.Thread(target=lambda: outcome.append(waiting_phase()), daemon=True)
    thread.start()

    def paused() -> bool:
        if not ids:
            return False
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(ids[0])).state
        return state is not None and state.type == StateType.PAUSED

    deadline = time.monotonic() + 30
    while not paused() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert paused(), "the phase run did not pause"
    with session_scope() as s:
        # Every receipt of the phase is agreed, but the last signature came while the run was still on
        # its way to pausing: nobody resumed it. The morning's watch must.
        s.exec(
            update(Receipt)  # type: ignore[call-overload]
            .where(Receipt.phase == "planning_prerequisites", Receipt.state != ReceiptState.SUPERSEDED)
            .values(state=ReceiptState.AGREED)
        )
        s.add(PhaseRun(cycle_id=cycle_id, phase="planning_prerequisites", state=PhaseState.WAITING, flow_run_id=ids[0]))
    result = deadline_watch(as_of=D, config=str(config_path))
    thread.join(timeout=60)
    assert result["resumed"] == [f"{cycle_id}/planning_prerequisites"]
    assert outcome == ["Alla kvittenser är signerade"]
    # Nothing left to resume: a second watch leaves it alone.
    with session_scope() as s:
        s.exec(update(PhaseRun).where(PhaseRun.cycle_id == cycle_id).values(state=PhaseState.COMPLETED))  # type: ignore[call-overload]
    assert deadline_watch(as_of=D, config=str(config_path))["resumed"] == []


def test_the_flow_publishes_each_overlapping_cycle_its_own_artifacts(
    prefect_api: None, app_env: Path, config_path: Path, cfg: OrgConfig, smtp: SmtpServer
) -> None:
    """One morning with three plan years active: one progression table, receipt table and summary per
    plan year, each holding only its own cycle's milestones, receipts and urgent items."""
    from flows.deadline_watch import deadline_watch

    cycle_ids, _, _ = _overlapping_cycles(cfg, None)  # nothing resolved yet: every cycle has something late
    smtp.start()
    day = date(2030, 2, 26)
    result = deadline_watch(as_of=day, config=str(config_path))
    assert result["cycles"] == [2029, 2030, 2031] and result["reminders"] > 0 and result["escalations"] > 0
    urgent = {  # what each cycle has due on that day: its own and nothing else
        2029: {"arsredovisning (Regionfullmäktige)", "Årsredovisningen beslutad"},
        2030: {"verksamhetsplan (Hälso- och sjukvårdsförvaltningen)"},
        2031: {"Planeringsunderlag klart"},
    }
    everything = set().union(*urgent.values())
    with session_scope() as s:
        for year in result["cycles"]:
            cycle_id = cycle_ids[year]
            progression = _table(f"processlage-region-testby-{year}")
            assert progression == progression_rows(s, cfg, cycle_id, day)
            wheel = resolve_wheel(cfg, year)
            assert {r["sista dag"] for r in progression} == {wheel[m.id].isoformat() for m in cfg.wheel.milestones}
            receipts = _table(f"kvittenser-region-testby-{year}")
            assert receipts == receipt_rows(s, cfg, cycle_id)
            own = {r.id for r in s.exec(select(Receipt).where(Receipt.cycle_id == cycle_id))}
            assert {int(r["id"]) for r in receipts} == own and own
            md = _artifact(f"tidsfrister-region-testby-{year}").data
            assert md.startswith(f"# Tidsfrister – Region Testby, planår {year}")
            for what in urgent[year]:
                assert f"| {what} |" in md, (year, what)
            for what in everything - urgent[year]:
                assert f"| {what} |" not in md, (year, what)
        keyed = {(n.cycle_id, n.key.split("/")[1]) for n in s.exec(select(Notification))}
    assert keyed == {(cycle_ids[year], str(year)) for year in (2029, 2030, 2031)}
