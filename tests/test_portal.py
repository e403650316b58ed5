"""The portal over HTTP on a real database (SQLite and PostgreSQL): a secretary's and a signatory's
actions from the links in their messages, every hostile input refused with a clear Swedish message
and nothing changed, the lockout, and 50 concurrent signatures through a real uvicorn."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from docx import Document as DocxDocument
from fastapi.testclient import TestClient
from portal_world import FEEDBACK, YEAR, World, build
from secretary import fill_docx
from sqlmodel import func, select

from config.loader import load_config
from flows import demo_authors
from flows.demo_portal import link_target
from models.db import session_scope
from models.tables import AuditEntry, PortalTokenUse, Receipt, ReceiptState, Submission
from portal.app import create_app
from portal.client import PortalClient, PortalError, message_of
from portal.logs import RedactTokens, redact
from portal.security import csrf_token
from tasks.distribution import distribute
from tasks.handoffs import handoffs_for_phase
from tasks.portal_tokens import CLIENT_LIMIT, RECEIPT_LIMIT, link_at_send, make_token, portal_link

BASE = "http://testserver"


@pytest.fixture(scope="module")
def cfg():
    return load_config("region")


@pytest.fixture
def world(cfg, db_url, tmp_path, monkeypatch) -> World:
    out = tmp_path / "out"
    monkeypatch.setenv("STYRKEDJA_DATABASE_URL", db_url)
    monkeypatch.setenv("STYRKEDJA_OUTPUT", str(out))
    monkeypatch.setenv("STYRKEDJA_PORTAL_URL", BASE)
    return build(cfg, db_url, out)


@pytest.fixture
def app(world):
    return create_app("region")


def browser(app) -> TestClient:
    return TestClient(app, base_url=BASE)


def snapshot(url: str) -> dict[str, list]:
    with session_scope(url) as s:
        return {
            "receipts": [
                (r.id, r.state, r.signed_by, r.comment, r.acknowledged_by)
                for r in s.exec(select(Receipt).order_by(Receipt.id))
            ],
            "submissions": [(x.id, x.document_id, x.file_hash) for x in s.exec(select(Submission))],
            "uses": [(u.token_id, u.action) for u in s.exec(select(PortalTokenUse))],
        }


def audits(url: str, action: str) -> list[AuditEntry]:
    with session_scope(url) as s:
        return list(s.exec(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def filled(world: World, receipt: Receipt, dst: Path, answers=None) -> Path:
    fill_docx(world.out / world.document(receipt).relpath, dst, answers or FEEDBACK, inject=False)
    return dst


# ---------------------------------------------------------------------------------------------


def test_secretary_hands_in_and_the_board_signs(world, app, tmp_path):
    cfg = world.cfg
    hsn = world.receipt("committee_feedback", sender="HSN")
    assert hsn.receiver_unit == "RS" and hsn.state == ReceiptState.ISSUED
    secretary_link = portal_link(cfg, hsn, "hsn@norrsjo.example")
    assert secretary_link.startswith(BASE + "/l/")
    # the link's token is deterministic (a message written twice carries the same link), and the
    # outbox's sender derives the same one from the row's receipt and address
    assert portal_link(cfg, hsn, "hsn@norrsjo.example") == secretary_link
    assert link_target(secretary_link) == (hsn.id, "hsn@norrsjo.example")  # what the demo's people read
    with session_scope(world.url) as s:
        assert link_at_send(s, hsn.id, "hsn@norrsjo.example", cfg.deadlines.code_valid_days) == secretary_link

    with browser(app) as http, PortalClient.open(secretary_link, client=http) as sec:
        # the token is in the cookie now, not in the page's URL
        assert sec.path == f"/kvittens/{hsn.id}" and "/l/" not in sec.html
        page = sec.html
        for text in ("Hälso- och sjukvårdsnämnden", "Regionstyrelsen", hsn.content_hash, "Lämna in", "Historik"):
            assert text in page, text
        assert "Godkänn" not in page  # the author hands in; the receiver signs
        [doc_path] = sec.download(tmp_path / "ner")
        assert doc_path.read_bytes() == (world.out / world.document(hsn).relpath).read_bytes()
        DocxDocument(doc_path)  # a real Word document
        # a refused file: the page says why in Swedish, nothing is stored, the link still works
        before = snapshot(world.url)
        broken = tmp_path / "trasig.docx"
        broken.write_bytes(doc_path.read_bytes()[:5000])
        with pytest.raises(PortalError) as exc:
            sec.upload(broken)
        assert exc.value.status == 400 and "trasig.docx" in str(exc.value) and "Inget sparades" in str(exc.value)
        assert snapshot(world.url) == before
        # the filled-in return
        msg = sec.upload(filled(world, hsn, tmp_path / "aterkoppling.docx"))
        assert "inlämnat och mottaget" in msg
        assert "Vi avstår inget mål." in sec.html and "Digitala vårdbesök" in sec.html
        # headed text, by the document's own headings, not field ids
        assert "bidrag_mal" not in sec.html
        # single use: a second hand-in with the same link is refused
        assert "redan lämnat in" in sec.reload()

    with session_scope(world.url) as s:
        [sub] = s.exec(select(Submission)).all()
        assert sub.content["fields"]["utvecklingsinsatser"] == "Digitala vårdbesök i hela länet."
        assert s.get(Receipt, hsn.id).state == ReceiptState.ACKNOWLEDGED
    [entry] = audits(world.url, "portal_return")
    assert (
        entry.detail["client"] == "testclient"
        and entry.actor == "Hälso- och sjukvårdsnämnden, hsn@norrsjo.example (HSN)"
    )

    signer = cfg.unit("RS").signatories[0]
    with browser(app) as http, PortalClient.open(portal_link(cfg, hsn, signer.id), client=http) as board:
        assert "Digitala vårdbesök i hela länet." in board.html and "Godkänn" in board.html
        assert "Lämna in" not in board.html
        msg = board.agree("§ 12 Regionstyrelsen godkänner återkopplingen.")
        assert "godkänt" in msg
        assert "§ 12 Regionstyrelsen" in board.html  # in the history
    with session_scope(world.url) as s:
        r = s.get(Receipt, hsn.id)
    assert r.state == ReceiptState.AGREED and signer.name in r.signed_by
    assert r.comment == "§ 12 Regionstyrelsen godkänner återkopplingen."
    [agreed] = audits(world.url, "receipt_agreed")
    assert agreed.detail["receipt_id"] == hsn.id and agreed.detail["client"] == "testclient"
    assert agreed.detail["via"] == "portalen" and agreed.actor == f"{signer.name} (RS)"
    # the unit page: reached from the link's cookie, everything RS still owes, with days late
    with browser(app) as http, PortalClient.open(portal_link(cfg, hsn, signer.id), client=http):
        unit = http.get("/enhet/RS")
        assert unit.status_code == 200 and "Regionstyrelsen" in unit.text
        assert http.get("/enhet/HSN").status_code == 401  # not this link's unit


def test_a_handoff_with_two_documents_is_handed_in_through_its_one_link(world, app, tmp_path):
    """An operational plan asks for a Word plan and an Excel budget: one link hands in each once."""
    cfg = world.cfg
    [vp] = [h for h in handoffs_for_phase(cfg, YEAR, "operational_plans") if h.sender == "HSN"]
    distribute(cfg, world.cycle_id, "operational_plans", [vp], world.out, actor="test", url=world.url)
    receipt = world.receipt("operational_plans", sender="HSN")
    link = portal_link(cfg, receipt, "hsn@norrsjo.example")
    with browser(app) as http, PortalClient.open(link, client=http) as sec:
        got = sec.download(tmp_path / "ner")
        assert sorted(p.suffix for p in got) == [".docx", ".xlsx"]
        filled = []
        for src in got:
            dst = tmp_path / src.name
            if src.suffix == ".docx":
                demo_authors.fill_docx(src, dst, "Hälso- och sjukvårdsnämnden")
            else:
                demo_authors.fill_xlsx(src, dst, "Hälso- och sjukvårdsnämnden", YEAR)
            filled.append(dst)
        assert "inlämnat och mottaget" in sec.upload(filled[0])
        assert "Lämna in" in sec.html  # the other document is still to come
        # the same document again through the same link: refused, nothing stored
        before = snapshot(world.url)
        with pytest.raises(PortalError) as exc:
            sec.upload(filled[0])
        assert exc.value.status == 409 and "redan använts" in str(exc.value)
        assert snapshot(world.url) == before
        sec.reload()
        sec.upload(filled[1])
        assert "redan lämnat in" in sec.reload()
    with session_scope(world.url) as s:
        subs = s.exec(select(Submission)).all()
        assert len(subs) == 2
        assert s.get(Receipt, receipt.id).state == ReceiptState.ACKNOWLEDGED


def test_dispute_needs_a_comment_and_decision_handoffs(world, app):
    cfg = world.cfg
    pf = world.receipt("planning_prerequisites", receiver="HSN")
    signer = cfg.unit("HSN").signatories[1]
    with browser(app) as http, PortalClient.open(portal_link(cfg, pf, signer.email), client=http) as p:
        assert "Godkänn" in p.html and "Lämna in" not in p.html  # a decided document: nothing to fill in
        before = snapshot(world.url)
        with pytest.raises(PortalError, match="kräver en kommentar") as exc:
            p.dispute("   ")
        assert exc.value.status == 400 and snapshot(world.url) == before
        csrf = p._csrf()
        assert "bestridande är registrerat" in p.dispute("Ramen för 2029 saknas i bilaga 2.")
        assert "Läge: väntar på ny version" in p.html and "Ramen för 2029 saknas i bilaga 2." in p.html
        # the same link once more: used
        r = http.post(f"/kvittens/{pf.id}/godkann", data={"csrf": csrf})
        assert r.status_code == 409 and "redan använts" in message_of(r.text)
    with session_scope(world.url) as s:
        r = s.get(Receipt, pf.id)
    assert r.state == ReceiptState.DISPUTED and r.comment == "Ramen för 2029 saknas i bilaga 2."
    assert len(audits(world.url, "receipt_disputed")) == 1


def test_hostile_links_are_refused_and_change_nothing(world, app, cfg):
    hsn = world.receipt("committee_feedback", sender="HSN")
    run = world.receipt("committee_feedback", sender="RUN")
    pf = world.receipt("planning_prerequisites", receiver="HSN")
    signer = cfg.unit("RS").signatories[0]
    good = portal_link(cfg, hsn, signer.id).rsplit("/", 1)[-1]
    body, mac = good.split(".")
    before = snapshot(world.url)
    cases = {
        "forged": (body + "." + mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB"), "inte giltig"),
        "garbage": ("x" * 40, "inte giltig"),
        "expired": (make_token(hsn.id, signer.id, "act", datetime.now(UTC) - timedelta(minutes=1)), "gällde till"),
        "not a party": (make_token(hsn.id, "someone@example.org", "act", datetime.now(UTC) + timedelta(days=1)),
                        "gäller inte dig"),
        "unknown receipt": (make_token(10**9, signer.id, "act", datetime.now(UTC) + timedelta(days=1)), "finns inte"),
    }  # fmt: skip
    with browser(app) as http:
        for case, (token, text) in cases.items():
            r = http.get(f"/l/{token}")
            assert r.status_code == 403, case
            assert text in message_of(r.text), (case, message_of(r.text))
            assert not any(c.startswith("kv_r") for c in http.cookies), case
        # a genuine link of another receipt presented as this one's cookie
        http.cookies.set(f"kv_r{run.id}", good)
        r = http.get(f"/kvittens/{run.id}")
        assert r.status_code == 403 and "annan kvittens" in message_of(r.text)
        # no cookie at all: a page saying to open the link, no data
        assert http.get(f"/kvittens/{pf.id}").status_code == 401
    assert snapshot(world.url) == before
    refused = audits(world.url, "portal_link_refused")
    assert len(refused) == len(cases) + 1 and all(e.detail["client"] == "testclient" for e in refused)

    # another recipient's link: the HSN secretary's link cannot sign, a view link cannot act,
    # a form without its CSRF token is refused
    with browser(app) as http:
        sec = PortalClient.open(portal_link(cfg, hsn, "hsn@norrsjo.example"), client=http)
        r = http.post(f"/kvittens/{hsn.id}/godkann", data={"csrf": sec._csrf(), "kommentar": "x"})
        assert r.status_code == 403 and "firmatecknare" in message_of(r.text)
    with browser(app) as http:
        viewer = PortalClient.open(portal_link(cfg, hsn, signer.id, purpose="view"), client=http)
        assert "Godkänn" not in viewer.html
        r = http.post(f"/kvittens/{hsn.id}/godkann", data={"csrf": csrf_token(http.cookies["kv_csrf"])})
        assert r.status_code == 403 and "bara för att läsa" in message_of(r.text)
    with browser(app) as http:
        PortalClient.open(portal_link(cfg, pf, cfg.unit("HSN").signatories[0].id), client=http)
        r = http.post(f"/kvittens/{pf.id}/godkann", data={"kommentar": "utan säkerhetskod"})
        assert r.status_code == 403 and "säkerhetskod" in message_of(r.text)
        r = http.post(f"/kvittens/{pf.id}/godkann", data={"csrf": "0" * 64})
        assert r.status_code == 403
    assert len(audits(world.url, "portal_csrf_refused")) == 2
    assert snapshot(world.url) == before


def test_hostile_uploads_are_refused_with_a_clear_message(world, app, cfg, tmp_path):
    hsn = world.receipt("committee_feedback", sender="HSN")
    run = world.receipt("committee_feedback", sender="RUN")
    src = world.out / world.document(hsn).relpath
    # a zip bomb: document.xml inflates to 1 GB
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename != "word/document.xml":
                zout.writestr(info, zin.read(info))
        with zout.open("word/document.xml", "w", force_zip64=True) as fh:
            for _ in range(1024):
                fh.write(b"\0" * (1 << 20))
    # macros: a VBA project inside, and a workbook saved as .xlsm
    macro = tmp_path / "svar.docx"
    good = filled(world, hsn, tmp_path / "bra.docx")
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(macro, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr("word/vbaProject.bin", b"\xd0\xcf\x11\xe0" + b"\0" * 512)
    xlsm = tmp_path / "svar.xlsm"
    shutil.copy(good, xlsm)
    # another unit's return: RUN's genuine, filled-in feedback handed in on HSN's handoff
    other = filled(world, run, tmp_path / "aterkoppling_RUN.docx")
    huge = tmp_path / "stor.docx"
    with huge.open("wb") as fh:
        fh.write(b"PK" + b"\0" * (50 * 1024 * 1024))
    cases = [
        (bomb, 400, "zip-bomb"),
        (macro, 400, "vbaProject.bin"),
        (xlsm, 400, ".xlsm"),
        (other, 400, "Regionala utvecklingsnämnden"),
        (huge, 413, "högst 20 MB"),
    ]
    before = snapshot(world.url)
    with browser(app) as http, PortalClient.open(portal_link(cfg, hsn, "hsn@norrsjo.example"), client=http) as sec:
        for path, status, text in cases:
            with pytest.raises(PortalError) as exc:
                sec.upload(path)
            assert exc.value.status == status, (path.name, exc.value)
            assert text in str(exc.value), (path.name, str(exc.value))
            assert snapshot(world.url) == before, path.name
        # still usable for the right file afterwards
        assert "mottaget" in sec.upload(good)
    assert len(audits(world.url, "portal_return_refused")) == len(cases)


def test_lockout_per_receipt_and_per_address(world, app, cfg):
    hsn = world.receipt("committee_feedback", sender="HSN")
    signer = cfg.unit("RS").signatories[0]
    stale = make_token(hsn.id, signer.id, "act", datetime.now(UTC) - timedelta(seconds=5))
    with browser(app) as http:
        for _ in range(RECEIPT_LIMIT):
            assert http.get(f"/l/{stale}").status_code == 403
        # now even the genuine link of this receipt waits
        r = http.get(portal_link(cfg, hsn, signer.id).removeprefix(BASE))
        assert r.status_code == 429 and "För många" in message_of(r.text)
        for _ in range(CLIENT_LIMIT - RECEIPT_LIMIT):
            http.get("/l/" + "y" * 30)
        pf = world.receipt("planning_prerequisites", receiver="HSN")
        r = http.get(portal_link(cfg, pf, cfg.unit("HSN").signatories[0].id).removeprefix(BASE))
        assert r.status_code == 429 and "din adress" in message_of(r.text)
    assert audits(world.url, "portal_locked_out")


def test_headers_and_the_access_log_hold_no_secret(world, app, cfg):
    hsn = world.receipt("committee_feedback", sender="HSN")
    link = portal_link(cfg, hsn, "hsn@norrsjo.example")
    with browser(app) as http:
        r = http.get(link.removeprefix(BASE))
    csp = r.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    token = link.rsplit("/", 1)[-1]
    assert token not in redact(f'127.0.0.1 - "GET {link.removeprefix(BASE)} HTTP/1.1" 200')
    record = logging.LogRecord("uvicorn.access", 20, "", 0, '%s - "%s %s HTTP/%s" %d', (
        "127.0.0.1", "GET", link.removeprefix(BASE), "1.1", 200), None)  # fmt: skip
    RedactTokens().filter(record)
    assert token not in record.getMessage() and "/l/…" in record.getMessage()


# -- operators ------------------------------------------------------------------------------------


def test_operator_login_overdue_progress_and_audit(world, app, cfg):
    from portal.operators import add_operator

    assert add_operator("eva", "Eva Operatör", "ett långt lösenord", world.url)
    with browser(app) as http:
        assert http.get("/operator", follow_redirects=False).status_code == 303
        form = http.get("/operator/logga-in")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        bad = http.post("/operator/logga-in", data={"csrf": csrf, "anvandarnamn": "eva", "losenord": "fel"})
        assert bad.status_code == 401 and "Fel användarnamn" in bad.text
        ok = http.post(
            "/operator/logga-in",
            data={"csrf": csrf, "anvandarnamn": "eva", "losenord": "ett långt lösenord"},
            follow_redirects=False,
        )
        assert ok.status_code == 303
        page = http.get("/operator")
        assert page.status_code == 200 and "Försenade överlämningar" in page.text
        assert http.get(f"/operator/framsteg?ar={YEAR}").status_code == 200
        log = http.get("/operator/logg", params={"ar": YEAR, "fas": "committee_feedback", "enhet": "HSN"})
        assert log.status_code == 200 and "Kvittensen utfärdades" in log.text
    with session_scope(world.url) as s:
        assert s.exec(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "portal_login")).one()


# -- 50 concurrent signatures through a real uvicorn ----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(app) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_fifty_concurrent_signatures_each_recorded_once(world, served, cfg, monkeypatch):
    """50 receivers sign at the same moment, each from their own link: every receipt agreed once,
    one audit entry and one used link each, none lost."""
    from tasks.distribution import distribute
    from tasks.followup_calendar import occasions
    from tasks.handoffs import handoffs_for_phase
    from tasks.receipts import acknowledge

    monkeypatch.setenv("STYRKEDJA_PORTAL_URL", served)
    for occ in occasions(cfg, YEAR)[-2:]:
        distribute(cfg, world.cycle_id, "follow_up", handoffs_for_phase(cfg, YEAR, "follow_up", occ), world.out,
                   actor="test", url=world.url)  # fmt: skip
    with session_scope(world.url) as s:
        rows = list(s.exec(select(Receipt).where(Receipt.phase == "follow_up").order_by(Receipt.id)))[:50]
        for r in rows:  # their returns are in (as `submit` leaves them)
            acknowledge(s, r, by="test")
    assert len(rows) == 50
    links = {r.id: portal_link(cfg, r, cfg.unit(r.receiver_unit).signatories[0].id) for r in rows}
    clients = {rid: PortalClient.open(link) for rid, link in links.items()}
    barrier = threading.Barrier(len(clients))
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def go(rid: int) -> None:
        try:
            barrier.wait()
            results[rid] = clients[rid].agree(f"Godkänt {rid}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(rid,)) for rid in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in clients.values():
        c.http.close()
    assert not errors, errors[:3]
    assert len(results) == 50 and all("godkänt" in m for m in results.values())
    with session_scope(world.url) as s:
        got = {r.id: r for r in s.exec(select(Receipt).where(Receipt.id.in_(list(links))))}
        entries = s.exec(select(AuditEntry).where(AuditEntry.action == "receipt_agreed")).all()
        uses = s.exec(select(PortalTokenUse)).all()
    assert all(r.state == ReceiptState.AGREED and r.comment == f"Godkänt {r.id}" for r in got.values())
    assert sorted(e.detail["receipt_id"] for e in entries) == sorted(links)
    assert len(uses) == 50 and len({u.receipt_id for u in uses}) == 50
    # and a page under load answers
    with httpx.Client() as http:
        assert http.get(f"{served}/halsa").json() == {"status": "ok"}
    assert json.dumps(sorted(results)) == json.dumps(sorted(links))


def test_a_trusted_proxy_header_names_the_operator(world, monkeypatch):
    monkeypatch.setenv("STYRKEDJA_PORTAL_OPERATOR_HEADER", "X-Remote-User")
    with browser(create_app("region")) as http:
        assert http.get("/operator", follow_redirects=False).status_code == 303  # no header: log in
        page = http.get("/operator", headers={"X-Remote-User": "olle.operator"})
        assert page.status_code == 200 and "Logga ut olle.operator" in page.text
