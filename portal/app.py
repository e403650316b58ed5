"""The portal's web application: routes, authorisation and actions.

A recipient opens `/l/<token>` from their message; the page stores the token in an HttpOnly,
SameSite=Strict cookie for that receipt and sends the browser on to `/kvittens/<id>` (no secret in
any later URL; the access log writes the token path as /l/…). Each action is a form with a CSRF
token, checked, run through the same task function as the command line, and audited with who and
from which address. Operators log in (argon2) or, where configured, are named by a trusted
reverse proxy's header.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from config.loader import load_config
from models.db import output_root, read_session, with_retry
from models.errors import UserError
from models.tables import Document, Receipt, ReceiptState, Submission
from portal import security, views
from portal.operators import check_password
from tasks.audit import audit
from tasks.calendar import today_stockholm
from tasks.portal_tokens import (
    Claims,
    Recipient,
    TokenError,
    author_unit,
    claim_use,
    locked_out,
    read_token,
    recipient_of,
    record_failure,
    release_use,
    uses,
)
from tasks.receipts import MAX_COMMENT, SignRequest, code_for, step_text
from tasks.returns import MAX_FILE_BYTES, content_labels

HERE = Path(__file__).resolve().parent
OPERATOR_HOURS = 8
# The multipart envelope around a file of MAX_FILE_BYTES: form fields and boundaries.
ENVELOPE = 64 * 1024


class Refused(Exception):
    """A request the portal turns down with a page (status, Swedish message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def create_app(config: str | None = None) -> FastAPI:
    """The application for the configuration `config` (default: STYRKEDJA_CONFIG or the sample
    region) over the database at STYRKEDJA_DATABASE_URL."""
    config = config or os.environ.get("STYRKEDJA_CONFIG") or None
    cfg = load_config(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The first people after a (re)start should not pay for compiling the pages and opening
        # the database connections: do both before the worker takes requests.
        await run_in_threadpool(_warm_up, templates)
        yield

    app = FastAPI(title="Kvittensportalen", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(security.SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["datum"] = _date_sv
    templates.env.filters["tid"] = _time_sv
    templates.env.filters["dagar"] = _days_sv
    labels_cache: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    trusted_header = os.environ.get("STYRKEDJA_PORTAL_OPERATOR_HEADER", "").strip()

    def labels(doc: Document) -> tuple[dict[str, str], dict[str, str]]:
        if doc.key not in labels_cache:
            try:
                labels_cache[doc.key] = content_labels(cfg, doc)
            except (UserError, KeyError):
                labels_cache[doc.key] = ({}, {})
        return labels_cache[doc.key]

    # -- rendering ----------------------------------------------------------------------------

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        seed, new = security.csrf_seed(request)
        ctx = {
            "organisation": cfg.organisation.name,
            "csrf": security.csrf_token(seed),
            "operator": operator_of(request),
            **context,
        }
        response = templates.TemplateResponse(request, name, ctx, status_code=status)
        if new:
            security.set_cookie(response, request, security.CSRF_COOKIE, seed)
        return response

    def refused(request: Request, exc: Refused) -> HTMLResponse:
        return page(request, "message.html", {"heading": "Det gick inte", "text": exc.message}, exc.status)

    # -- who is asking ------------------------------------------------------------------------

    def operator_of(request: Request) -> str | None:
        if trusted_header:
            name = request.headers.get(trusted_header, "").strip()
            if name:
                return name[:120]
        return security.read_operator_session(request.cookies.get(security.OPERATOR_COOKIE), int(time.time()))

    def client(request: Request) -> str:
        return security.client_address(request)

    def check_token(request: Request, token: str, receipt_id: int | None) -> tuple[Claims, Receipt, Recipient]:
        """A genuine, unexpired link of a party to this receipt; refusals counted for the lockout."""
        addr = client(request)
        claims: Claims | None = None
        error: TokenError | None = None
        receipt: Receipt | None = None
        who: Recipient | None = None
        try:
            claims = read_token(token)
        except TokenError as exc:
            error = exc
        claimed = claims.receipt_id if claims else error.receipt_id if error else None
        with read_session() as session:  # one read: the lockout, the receipt, its document
            why = locked_out(session, addr, receipt_id if receipt_id is not None else claimed)
            if why:
                raise Refused(429, why)
            if claims is not None and receipt_id is not None and claims.receipt_id != receipt_id:
                error = TokenError("other_receipt", "Länken gäller en annan kvittens.", receipt_id)
            elif claims is not None:
                receipt = session.get(Receipt, claims.receipt_id) if 0 < claims.receipt_id < 2**63 else None
                if receipt is None:
                    error = TokenError("unknown_receipt", "Kvittensen i länken finns inte.", None)
                else:
                    doc = session.get(Document, receipt.document_id) if receipt.document_id else None
                    who = recipient_of(cfg, receipt, doc, claims.recipient)
                    if who is None:
                        error = TokenError(
                            "not_a_party", "Länken gäller inte dig för den här överlämningen.", claims.receipt_id
                        )
        if error is not None or claims is None or receipt is None or who is None:
            assert error is not None
            record_failure(addr, error)
            raise Refused(403, str(error))
        return claims, receipt, who

    def from_cookie(request: Request, receipt_id: int) -> tuple[Claims, Receipt, Recipient] | None:
        token = request.cookies.get(security.receipt_cookie(receipt_id))
        if not token:
            return None
        return check_token(request, token, receipt_id)

    def check_csrf(request: Request, given: str | None, what: str) -> None:
        if security.csrf_ok(request, given):
            return

        def work(session: Session) -> None:
            audit(
                session,
                actor=f"portalen ({client(request)})",
                action="portal_csrf_refused",
                subject=what,
                detail={"client": client(request), "path": request.url.path},
            )

        with_retry(work)
        raise Refused(403, "Formuläret saknar sin säkerhetskod (eller den är gammal). Ladda om sidan och försök igen.")

    # -- the link -----------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def start(request: Request) -> HTMLResponse:
        return page(request, "start.html", {})

    @app.get("/halsa")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/l/{token}", response_class=HTMLResponse)
    def open_link(request: Request, token: str) -> HTMLResponse:
        try:
            claims, receipt, _ = check_token(request, token, None)
        except Refused as exc:
            return refused(request, exc)
        target = f"/kvittens/{receipt.id}"
        response = page(request, "landing.html", {"target": target})
        security.set_cookie(response, request, security.receipt_cookie(receipt.id or 0), token, claims.expires)
        return response

    # -- the handoff page ---------------------------------------------------------------------

    def handoff_context(
        request: Request, receipt_id: int
    ) -> tuple[dict[str, Any], Claims | None, Receipt, Recipient | None]:
        auth = from_cookie(request, receipt_id)
        if auth is None:
            if operator_of(request) is None:
                raise Refused(
                    401, "Öppna länken i ditt e-postmeddelande för att se den här överlämningen (sidan kräver den)."
                )
            with read_session() as session:
                receipt = session.get(Receipt, receipt_id) if 0 < receipt_id < 2**63 else None
            if receipt is None:
                raise Refused(404, "Kvittensen finns inte.")
            claims, who = None, None
        else:
            claims, receipt, who = auth
        with read_session() as session:
            receipt = session.get(Receipt, receipt_id)
            assert receipt is not None
            ctx = views.handoff(session, cfg, receipt, who, today_stockholm(), labels)
            if claims is not None:
                done = uses(session, claims)
                fill = [d.id for d in ctx.get("documents", [])]
                ctx["used"] = {
                    "decide": "decide" in done,
                    "upload": bool(fill) and all(f"upload:{i}" in done for i in fill),
                }
                ctx["view_only"] = claims.purpose != "act"
            else:
                ctx["used"], ctx["view_only"] = {}, True
        ctx["done"] = request.query_params.get("klart", "")
        return ctx, claims, receipt, who

    @app.get("/kvittens/{receipt_id}", response_class=HTMLResponse)
    def show_handoff(request: Request, receipt_id: int) -> HTMLResponse:
        try:
            ctx, *_ = handoff_context(request, receipt_id)
        except Refused as exc:
            return refused(request, exc)
        return page(request, "handoff.html", ctx)

    @app.get("/kvittens/{receipt_id}/dokument/{document_id}")
    def download(request: Request, receipt_id: int, document_id: int) -> Response:
        try:
            ctx, *_ = handoff_context(request, receipt_id)
        except Refused as exc:
            return refused(request, exc)
        doc = next((d for d in ctx["documents"] if d.id == document_id), None)
        if doc is None:
            return refused(request, Refused(404, "Dokumentet hör inte till den här överlämningen."))
        return _file(request, doc.relpath)

    @app.get("/kvittens/{receipt_id}/inlamnat/{submission_id}")
    def download_return(request: Request, receipt_id: int, submission_id: int) -> Response:
        try:
            ctx, *_ = handoff_context(request, receipt_id)
        except Refused as exc:
            return refused(request, exc)
        with read_session() as session:
            sub = session.get(Submission, submission_id) if 0 < submission_id < 2**63 else None
        if sub is None or not sub.relpath or sub.document_id not in {d.id for d in ctx["documents"]}:
            return refused(request, Refused(404, "Den inlämnade filen hör inte till den här överlämningen."))
        return _file(request, sub.relpath)

    def _file(request: Request, relpath: str) -> Response:
        root = output_root().resolve()
        path = (root / relpath).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return refused(request, Refused(404, "Filen finns inte längre; kontakta ekonomistaben."))
        media = {
            ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=media, filename=path.name)

    def act(request: Request, receipt_id: int, form: dict[str, Any], action: str) -> tuple[Claims, Receipt, Recipient]:
        check_csrf(request, form.get("csrf"), f"receipt {receipt_id}")
        auth = from_cookie(request, receipt_id)
        if auth is None:
            raise Refused(401, "Öppna länken i ditt e-postmeddelande igen; sidan vet inte vem du är.")
        claims, receipt, who = auth
        if claims.purpose != "act":
            raise Refused(403, "Din länk är bara för att läsa; den som ska agera har fått en egen länk.")
        return claims, receipt, who

    def decide(
        request: Request, receipt_id: int, form: dict[str, Any], dispute: bool, background: BackgroundTasks
    ) -> Any:
        from tasks import receipts

        try:
            claims, receipt, who = act(request, receipt_id, form, "decide")
            comment = str(form.get("kommentar") or "").strip()
            if who.role != "receiver" or not who.signatory:
                raise Refused(403, "Bara en firmatecknare hos mottagaren kan godkänna eller bestrida.")
            problem = _decision_problem(receipt, comment, dispute)
            if problem:
                raise Refused(400, problem)
            addr = client(request)
            claim_use(claims, "decide", addr)
            try:
                r = (receipts.dispute if dispute else receipts.sign)(
                    cfg,
                    SignRequest(
                        receipt_id,
                        who.signatory,
                        code_for(receipt.key),
                        comment or None,
                        actor=f"{who.label} via portalen ({addr})",
                        via={"via": "portalen", "client": addr, "token": claims.token_id},
                    ),
                )
            except UserError as exc:
                release_use(claims, "decide")
                with read_session() as session:
                    now = session.get(Receipt, receipt_id)
                raise Refused(400, _decision_refusal(now, exc)) from None
        except TokenError as exc:
            return refused(request, Refused(409, str(exc)))
        except Refused as exc:
            if exc.status == 400:
                ctx, *_ = handoff_context(request, receipt_id)
                return page(request, "handoff.html", {**ctx, "error": exc.message, "form": form}, 400)
            return refused(request, exc)

        # The signature's own audit entry names the client and the link (SignRequest.via).
        background.add_task(_resume, r, who.label, config)
        return RedirectResponse(f"/kvittens/{receipt_id}?klart={'bestridd' if dispute else 'godkand'}", 303)

    @app.post("/kvittens/{receipt_id}/godkann")
    async def agree(request: Request, receipt_id: int, background: BackgroundTasks) -> Any:
        form = dict(await request.form(max_files=0, max_fields=10))
        return await run_in_threadpool(decide, request, receipt_id, form, False, background)

    @app.post("/kvittens/{receipt_id}/bestrid")
    async def dispute(request: Request, receipt_id: int, background: BackgroundTasks) -> Any:
        form = dict(await request.form(max_files=0, max_fields=10))
        return await run_in_threadpool(decide, request, receipt_id, form, True, background)

    @app.post("/kvittens/{receipt_id}/retur")
    async def upload(request: Request, receipt_id: int) -> Any:
        limit = MAX_FILE_BYTES + ENVELOPE
        too_big = Refused(
            413, f"Filen är för stor: högst {MAX_FILE_BYTES // (1024 * 1024)} MB tas emot. Inget sparades."
        )
        try:
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise too_big
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise too_big
            request._body = bytes(body)  # the form parser reads this instead of the stream
            form = await request.form(max_files=1, max_fields=5)
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            upload = form.get("fil")
            if upload is None or isinstance(upload, str) or not upload.filename:
                check_csrf(request, fields.get("csrf"), f"receipt {receipt_id}")
                raise Refused(400, "Välj en fil att lämna in.")
            data = await upload.read()
            name = Path(upload.filename).name
        except Refused as exc:
            if exc.status == 413:
                await run_in_threadpool(_audit_upload_refused, request, receipt_id, "", exc.message)
            return await run_in_threadpool(_upload_refused, request, receipt_id, exc, {})
        return await run_in_threadpool(hand_in, request, receipt_id, fields, name, data)

    def _audit_upload_refused(request: Request, receipt_id: int, name: str, message: str) -> None:
        def work(session: Session) -> None:
            audit(
                session,
                actor=f"portalen ({client(request)})",
                action="portal_return_refused",
                subject=f"receipt {receipt_id}",
                reason=message,
                detail={"client": client(request), "file": name[:200]},
            )

        with_retry(work)

    def _upload_refused(request: Request, receipt_id: int, exc: Refused, form: dict[str, Any]) -> HTMLResponse:
        if exc.status in (400, 413):
            try:
                ctx, *_ = handoff_context(request, receipt_id)
            except Refused as other:
                return refused(request, other)
            return page(request, "handoff.html", {**ctx, "upload_error": exc.message}, exc.status)
        return refused(request, exc)

    def hand_in(request: Request, receipt_id: int, form: dict[str, str], name: str, data: bytes) -> Any:
        from tasks.returns import submit_bytes

        try:
            claims, receipt, who = act(request, receipt_id, form, "upload")
            if who.role != "author":
                raise Refused(403, "Bara den enhet som fyller i dokumentet kan lämna in det.")
            if receipt.state not in (ReceiptState.ISSUED, ReceiptState.ACKNOWLEDGED):
                raise Refused(400, f"Överlämningen är {step_text(receipt.mode, receipt.state)}; inget tas emot.")
            addr = client(request)
            claimed: list[str] = []
            own = _own_return(receipt, name)

            def check(doc: Document) -> None:
                # Single use per document, not per link: a handoff with several templates (a
                # follow-up's workbook and report) is handed back through the one link it came with.
                own(doc)
                claim_use(claims, f"upload:{doc.id}", addr)
                claimed.append(f"upload:{doc.id}")

            try:
                result = submit_bytes(cfg, name, data, actor=f"{who.label} via portalen ({addr})", check=check)
            except TokenError:
                raise
            except UserError as exc:
                for action in claimed:
                    release_use(claims, action)
                _audit_upload_refused(request, receipt_id, name, str(exc))
                raise Refused(400, f"Filen togs inte emot: {str(exc).rstrip('.')}. Inget sparades.") from None
        except TokenError as exc:
            return refused(request, Refused(409, str(exc)))
        except Refused as exc:
            return _upload_refused(request, receipt_id, exc, form)

        def work(session: Session) -> None:
            audit(
                session,
                actor=who.label,
                action="portal_return",
                cycle_id=receipt.cycle_id,
                phase=receipt.phase,
                subject=result.document_key,
                detail={"client": addr, "receipt_id": receipt_id, "file": name[:200], "created": result.created},
            )

        with_retry(work)
        return RedirectResponse(f"/kvittens/{receipt_id}?klart={'retur' if result.created else 'samma'}", 303)

    def _own_return(receipt: Receipt, name: str) -> Any:
        def check(doc: Document) -> None:
            with read_session() as session:
                main = session.get(Document, receipt.document_id) if receipt.document_id else None
            author = author_unit(receipt, main)
            if author is None:
                raise UserError(f"{name}: den här överlämningen har inget dokument att fylla i")
            if (doc.cycle_id, doc.phase, doc.unit_id) != (receipt.cycle_id, receipt.phase, author):
                raise UserError(
                    f"{name}: dokument-id: filen är {views.unit_name(cfg, doc.unit_id)}s dokument "
                    f"'{doc.title}'; här tas bara {views.unit_name(cfg, author)}s svar på den här överlämningen emot"
                )

        return check

    # -- the unit page ------------------------------------------------------------------------

    @app.get("/enhet/{unit_id}", response_class=HTMLResponse)
    def unit_page(request: Request, unit_id: str) -> HTMLResponse:
        allowed = operator_of(request) is not None
        if not allowed:
            for name, token in request.cookies.items():
                if not name.startswith("kv_r") or not name[4:].isdigit():
                    continue
                try:
                    _, _, who = check_token(request, token, int(name[4:]))
                except Refused as exc:
                    return refused(request, exc)
                if who.unit_id == unit_id:
                    allowed = True
                    break
        if not allowed:
            return refused(request, Refused(401, "Öppna en länk till en av enhetens överlämningar först."))
        with read_session() as session:
            items = views.unit_items(session, cfg, unit_id, today_stockholm())
        return page(request, "unit.html", {"unit": views.unit_name(cfg, unit_id), **items})

    # -- operators ----------------------------------------------------------------------------

    def require_operator(request: Request) -> str:
        who = operator_of(request)
        if who is None:
            raise Refused(401, "")
        return who

    def to_login(request: Request) -> RedirectResponse:
        return RedirectResponse("/operator/logga-in?till=" + quote(request.url.path), 303)

    @app.get("/operator/logga-in", response_class=HTMLResponse)
    def login_form(request: Request) -> HTMLResponse:
        return page(request, "login.html", {"next": _local(request.query_params.get("till"))})

    @app.post("/operator/logga-in")
    async def login(request: Request) -> Any:
        form = dict(await request.form(max_files=0, max_fields=5))
        return await run_in_threadpool(_login, request, form)

    def _login(request: Request, form: dict[str, Any]) -> Any:
        try:
            check_csrf(request, form.get("csrf"), "operator login")
        except Refused as exc:
            return refused(request, exc)
        username = str(form.get("anvandarnamn") or "").strip().lower()[:60]
        addr = client(request)
        with read_session() as session:
            why = locked_out(session, addr, None)
            row = None if why else check_password(session, username, str(form.get("losenord") or ""))
        if row is None:
            if not why:
                record_failure(addr, TokenError("login", f"fel användarnamn eller lösenord för {username!r}"))
            msg = why or "Fel användarnamn eller lösenord."
            return page(request, "login.html", {"error": msg, "next": _local(form.get("till"))}, 429 if why else 401)

        def work(session: Session) -> None:
            audit(session, actor=row.name, action="portal_login", detail={"client": addr, "username": username})

        with_retry(work)
        response = RedirectResponse(_local(form.get("till")) or "/operator", 303)
        expires = int(time.time()) + OPERATOR_HOURS * 3600
        security.set_cookie(
            response,
            request,
            security.OPERATOR_COOKIE,
            security.operator_session(row.name, expires),
            datetime.fromtimestamp(expires, UTC),
        )
        return response

    @app.post("/operator/logga-ut")
    async def logout(request: Request) -> Any:
        form = dict(await request.form(max_files=0, max_fields=5))
        try:
            check_csrf(request, form.get("csrf"), "operator logout")
        except Refused as exc:
            return refused(request, exc)
        response = RedirectResponse("/", 303)
        response.delete_cookie(security.OPERATOR_COOKIE, path="/")
        return response

    @app.get("/operator", response_class=HTMLResponse)
    def overdue_page(request: Request) -> Any:
        try:
            require_operator(request)
        except Refused:
            return to_login(request)
        with read_session() as session:
            rows, total = views.overdue(session, cfg, today_stockholm())
        return page(request, "overdue.html", {"rows": rows, "total": total, "section": "forsenat"})

    @app.get("/operator/framsteg", response_class=HTMLResponse)
    def progress_page(request: Request) -> Any:
        try:
            require_operator(request)
        except Refused:
            return to_login(request)
        with read_session() as session:
            all_cycles = views.cycles(session, cfg)
            cycle = _pick_cycle(all_cycles, request.query_params.get("ar"))
            data = views.progress(session, cfg, cycle) if cycle else {"phases": [], "units": []}
        return page(
            request,
            "progress.html",
            {"cycles": all_cycles, "cycle": cycle, **data, "section": "framsteg"},
        )

    @app.get("/operator/logg", response_class=HTMLResponse)
    def audit_page(request: Request) -> Any:
        try:
            require_operator(request)
        except Refused:
            return to_login(request)
        q = request.query_params
        phase = q.get("fas") or None
        unit = q.get("enhet") or None
        phase = phase if phase in {p.id for p in cfg.wheel.phases} else None
        unit = unit if unit in {u.id for u in cfg.units} else None
        with read_session() as session:
            all_cycles = views.cycles(session, cfg)
            cycle = _pick_cycle(all_cycles, q.get("ar"), default_latest=False)
            rows = views.audit_log(session, cfg, cycle=cycle, phase=phase, unit=unit)
        return page(
            request,
            "audit.html",
            {
                "rows": rows,
                "cycles": all_cycles,
                "cycle": cycle,
                "phases": [(p.id, p.name) for p in cfg.wheel.phases],
                "units": [(u.id, u.name) for u in cfg.units],
                "phase": phase,
                "unit": unit,
                "section": "logg",
            },
        )

    return app


# -- helpers --------------------------------------------------------------------------------------


WARM_CONNECTIONS = 4  # about what a worker's thread pool uses at once under load


def _warm_up(templates: Jinja2Templates) -> None:
    for name in templates.env.list_templates(filter_func=lambda n: n.endswith(".html")):
        templates.env.get_template(name)
    with ExitStack() as stack:
        for _ in range(WARM_CONNECTIONS):
            stack.enter_context(read_session()).connection()


def _resume(receipt: Receipt, actor: str, config: str | None) -> None:
    """After the response: resume the waiting phase run as `styrkedja receipt sign` does."""
    from flows import local_server
    from tasks.waiting import resume_after_decision

    resume_after_decision(receipt, actor, prefect_up=local_server.is_healthy, config=config)


def _decision_problem(receipt: Receipt, comment: str, dispute: bool) -> str | None:
    if dispute and not comment:
        return "Skriv vad som behöver ändras: ett bestridande kräver en kommentar."
    if len(comment) > MAX_COMMENT:
        return f"Kommentaren är {len(comment)} tecken; högst {MAX_COMMENT} får plats."
    return None


def _decision_refusal(receipt: Receipt | None, exc: UserError) -> str:
    """The receipt module's refusals are for the command line; the page says it in Swedish."""
    if receipt is None:
        return "Kvittensen finns inte."
    state = step_text(receipt.mode, receipt.state)
    if receipt.state not in (ReceiptState.ISSUED, ReceiptState.ACKNOWLEDGED):
        extra = " (en nyare version ersätter den)" if receipt.state == ReceiptState.SUPERSEDED else ""
        who = f" av {receipt.signed_by}" if receipt.signed_by else ""
        return f"Kvittensen är redan {state}{who}{extra}; inget ändrades."
    if "expired" in str(exc):
        return "Tiden för att signera har gått ut; en operatör kan signera för enheten med en motivering."
    return "Kvittensen kunde inte signeras; inget ändrades. Kontakta ekonomistaben."


def _local(path: Any) -> str:
    """Only a path on this site (no open redirect)."""
    text = str(path or "")
    return text if text.startswith("/") and not text.startswith("//") and "\\" not in text else ""


def _pick_cycle(cycles: list[Any], year: str | None, default_latest: bool = True) -> Any:
    if year and year.isdigit():
        for c in cycles:
            if c.year == int(year):
                return c
    return cycles[0] if cycles and default_latest else None


MONTHS = ("januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september", "oktober",
          "november", "december")  # fmt: skip


def _date_sv(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = _local_time(value).date()
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"


def _local_time(value: datetime) -> datetime:
    from tasks.handoffs import STOCKHOLM

    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(STOCKHOLM)


def _time_sv(value: datetime | None) -> str:
    if value is None:
        return ""
    local = _local_time(value)
    return f"{_date_sv(local.date())} kl. {local:%H:%M}"


def _days_sv(n: int) -> str:
    return "1 dag" if n == 1 else f"{n} dagar"
