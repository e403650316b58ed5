"""The portal in a real browser: Playwright (PyPI) driving Debian's chromium. A secretary opens the
link from an e-mail the local SMTP server received, downloads the template, sees a refused file's
message, hands in the filled-in return; the board's signatory signs; the operator sees the overdue
list change. axe-core (npm, injected by the test) finds no WCAG 2.1 A/AA violation on any page.
Screenshots go to tests/out/portal/."""

from __future__ import annotations

import shutil
import smtplib
import socket
import threading
import time
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest
import uvicorn
from portal_world import build
from secretary import fill_docx
from smtp_server import local_smtp

from config.loader import load_config
from models.db import session_scope
from models.tables import Receipt, ReceiptState
from portal.app import create_app
from portal.client import links_in
from portal.operators import add_operator
from tasks.portal_tokens import portal_link

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).resolve().parent.parent / ".cache" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = Path(__file__).resolve().parent / "out" / "portal"
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or not AXE.exists(), reason="needs chromium and axe-core (make chromium axe)"
)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def smtp(monkeypatch):
    yield from local_smtp(monkeypatch)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _axe(page, name: str) -> None:
    # The contexts bypass the CSP (which allows no script at all) only so that axe can be injected.
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
    )
    problems = [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]]
    assert problems == [], (name, problems)


def _mail(smtp, to: str, link: str) -> str:
    """Send a message with the link through the local SMTP server; return what it received."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "styrkedja@norrsjo.example", to, "Återkoppling att fylla i"
    msg.set_content(f"Hej!\n\nÖppna överlämningen här:\n{link}\n")
    with smtplib.SMTP("127.0.0.1", smtp.port) as s:
        s.send_message(msg)
    return smtp.box.mails[-1].message.get_content()


def test_secretary_board_and_operator_in_a_browser(browser, smtp, db_url, tmp_path, monkeypatch):
    cfg = load_config("region")
    out = tmp_path / "out"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("STYRKEDJA_DATABASE_URL", db_url)
    monkeypatch.setenv("STYRKEDJA_OUTPUT", str(out))
    monkeypatch.setenv("STYRKEDJA_PORTAL_URL", base)
    world = build(cfg, db_url, out)
    add_operator("eva", "Eva Operatör", "ett långt lösenord", db_url)
    hsn = world.receipt("committee_feedback", sender="HSN")
    server = uvicorn.Server(uvicorn.Config(create_app("region"), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    # The portal's clock on a day in June of the plan year: the committees' feedback is late.
    monkeypatch.setattr("portal.app.today_stockholm", lambda: date(2028, 6, 1))
    try:
        # the operator logs in and sees both committees' feedback overdue
        op = browser.new_context(bypass_csp=True, locale="sv-SE", viewport={"width": 1280, "height": 900})
        page = op.new_page()
        page.goto(f"{base}/operator")
        _axe(page, "01-operator-login")
        page.get_by_label("Användarnamn").fill("eva")
        page.get_by_label("Lösenord").fill("ett långt lösenord")
        page.get_by_role("button", name="Logga in").click()
        page.wait_for_url(f"{base}/operator")
        run = world.receipt("committee_feedback", sender="RUN")
        assert page.locator(f'a[href="/kvittens/{hsn.id}"]').count() == 1
        assert page.locator(f'a[href="/kvittens/{run.id}"]').count() == 1
        _axe(page, "02-operator-overdue")

        # the secretary opens the e-mail's link (a phone's screen)
        text = _mail(smtp, "hsn@norrsjo.example", portal_link(cfg, hsn, "hsn@norrsjo.example"))
        [link] = links_in(text)
        sec = browser.new_context(
            bypass_csp=True, locale="sv-SE", viewport={"width": 390, "height": 844}, accept_downloads=True
        )
        s = sec.new_page()
        s.goto(link)
        s.wait_for_url(f"{base}/kvittens/{hsn.id}")
        assert s.get_by_role("heading", name="Lämna in det ifyllda dokumentet").is_visible()
        _axe(s, "03-secretary-handoff-phone")
        with s.expect_download() as dl:
            s.get_by_role("link", name="Ladda ner").first.click()
        template = tmp_path / "mall.docx"
        dl.value.save_as(template)
        macro = tmp_path / "aterkoppling.xlsm"
        shutil.copy(template, macro)
        s.get_by_label("Fil (Word eller Excel, högst 20 MB)").set_input_files(str(macro))
        s.get_by_role("button", name="Lämna in").click()
        assert s.get_by_role("alert").filter(has_text="makron").is_visible()
        _axe(s, "04-secretary-refused-file")
        answers = {k: v for k, v in world_feedback().items()}
        filled = tmp_path / "aterkoppling_HSN.docx"
        fill_docx(template, filled, answers, inject=False)
        s.get_by_label("Fil (Word eller Excel, högst 20 MB)").set_input_files(str(filled))
        s.get_by_role("button", name="Lämna in").click()
        assert s.get_by_role("status").filter(has_text="inlämnat och mottaget").is_visible()
        _axe(s, "05-secretary-handed-in")
        s.get_by_role("link", name="Allt som din enhet ska göra eller väntar på").click()
        assert s.get_by_role("heading", name="Hälso- och sjukvårdsnämnden").is_visible()
        _axe(s, "06-unit-page")

        # the board's signatory reads the return and agrees
        signer = cfg.unit("RS").signatories[0]
        board = browser.new_context(bypass_csp=True, locale="sv-SE", viewport={"width": 1280, "height": 900}).new_page()
        board.goto(_mail(smtp, signer.email, portal_link(cfg, hsn, signer.id)).split("\n")[3].strip())
        board.wait_for_url(f"{base}/kvittens/{hsn.id}")
        assert board.get_by_text("Digitala vårdbesök i hela länet.").is_visible()
        _axe(board, "07-board-handoff")
        board.get_by_label("Beslutstext eller kommentar (frivillig)").fill("§ 12 Godkänd.")
        board.get_by_role("button", name="Godkänn").click()
        assert board.get_by_role("status").filter(has_text="godkänt").is_visible()
        _axe(board, "08-board-agreed")

        # the operator's list no longer has HSN's feedback; progress and the log show it
        page.reload()
        assert page.locator(f'a[href="/kvittens/{hsn.id}"]').count() == 0
        assert page.locator(f'a[href="/kvittens/{run.id}"]').count() == 1
        _axe(page, "09-operator-overdue-after")
        page.goto(f"{base}/operator/framsteg")
        _axe(page, "10-operator-progress")
        page.goto(f"{base}/operator/logg?fas=committee_feedback")
        assert page.get_by_text("Mottagaren godkände").count() >= 1
        _axe(page, "11-operator-audit")
        page.goto(f"{base}/kvittens/{hsn.id}")
        _axe(page, "12-operator-handoff")
    finally:
        server.should_exit = True
        thread.join(10)
    with session_scope(db_url) as s:
        assert s.get(Receipt, hsn.id).state == ReceiptState.AGREED


def world_feedback() -> dict[str, list[str]]:
    from portal_world import FEEDBACK

    return FEEDBACK
