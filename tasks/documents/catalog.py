"""The document set of the planning cycle: which documents each phase sends, and rendering one.

`documents_for_phase` lists requests (kind, phase, unit, version); `render` turns one request
into a file under out_root/<plan year>/<phase>/ and returns what the caller records.
What each kind contains lives in builders.py (context, tables, sheets) and templates/docs/
(text); what a plan year shares across documents lives in yeardata.py, computed once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from config.schema import OrgConfig, Unit
from models.errors import UserError
from tasks.calendar import today_stockholm
from tasks.documents import excel, word
from tasks.documents.builders import DOCX_BUILDERS, XLSX_BUILDERS, context
from tasks.documents.model import (
    DocMeta,
    DocRequest,
    Format,
    RenderedDoc,
    RiskMatrixSpec,
    SheetSpec,
    TableData,
    canonical,
    content_hash,
    from_canonical,
)
from tasks.documents.sanitize import safe_filename, safe_path
from tasks.documents.yeardata import YearData, year_data
from tasks.followup_calendar import find_occasion
from tasks.handoffs import DECIDED_KIND, DRAFT_KIND, regional_plan_recipients

__all__ = [
    "KINDS",
    "DocRequest",
    "Expected",
    "RenderedDoc",
    "doc_key",
    "documents_for_phase",
    "expected",
    "expected_fields",
    "file_name",
    "kinds_for_phase",
    "render",
]

# Bump when the writers change what a document looks like: the content hash changes with it.
RENDERER_VERSION = 1
# Documents built from the returns below a level (tasks.level_reports) rather than from the
# configuration: they are read back against the spec stored with them (`expected_from_spec`).
LEVEL_REPORT_KINDS = ("nivarapport", "nivarapport_siffror")


@dataclass(frozen=True)
class KindSpec:
    kind: str
    phase: str
    format: Format
    title: Callable[[YearData, Unit, DocRequest], str]
    recipients: Callable[[YearData], list[Unit]]


def _board(cyc: YearData) -> list[Unit]:
    return [cyc.cfg.unit(cyc.cfg.organisation.roles.executive_board)]


def _plan_recipients(kind: str) -> Callable[[YearData], list[Unit]]:
    """The regional plan's recipients as its handoffs name them (tasks.handoffs): the draft goes
    to each body of the decision chain in turn, the decided plan to every committee."""

    def recipients(cyc: YearData) -> list[Unit]:
        return [cyc.cfg.unit(u) for u in regional_plan_recipients(cyc.cfg)[kind]]

    return recipients


def _committees(cyc: YearData) -> list[Unit]:
    return cyc.committees()


def _administrations(cyc: YearData) -> list[Unit]:
    return cyc.administrations()


def _follow_up_units(cyc: YearData) -> list[Unit]:
    # Every unit reports to its parent (the assembly has none; the working committee only
    # prepares): each level assesses with the level below's reports and hands a summary upwards.
    wc = cyc.cfg.organisation.roles.working_committee
    return [u for u in cyc.cfg.units if u.parent is not None and u.id != wc]


def occasion_key(req: DocRequest) -> str | None:
    """The follow-up occasion a request belongs to ("delar-2028-08-31"), from extra
    "occasion_key", else a slug of "occasion"; None outside follow-up occasions."""
    key = req.get("occasion_key")
    if key is None and req.get("occasion"):
        key = re.sub(
            r"[^a-z0-9]+",
            "-",
            unicodedata.normalize("NFKD", req.get("occasion", "")).encode("ascii", "ignore").decode().lower(),
        ).strip("-")
    return key or None


def _follow_up_title(what: str, c: YearData, u: Unit, r: DocRequest) -> str:
    occasion = r.get("occasion")
    return f"{what} – {occasion} – {c.names[u.id]}" if occasion else f"{what} {c.plan_year} – {c.names[u.id]}"


KINDS: dict[str, KindSpec] = {
    k.kind: k
    for k in (
        KindSpec(
            "planeringsunderlag",
            "preparation",
            "docx",
            lambda c, u, r: f"Planeringsunderlag inför {c.org['plan_name']} {c.span}",
            _board,
        ),
        KindSpec(
            "investeringsprioritering",
            "preparation",
            "xlsx",
            lambda c, u, r: f"Investeringsprioritering {c.invest_years[0]}–{c.invest_years[-1]}",
            _board,
        ),
        KindSpec(
            "planeringsforutsattningar",
            "planning_prerequisites",
            "docx",
            lambda c, u, r: f"Planeringsförutsättningar {c.span}",
            _committees,
        ),
        KindSpec(
            "pf_bilagor",
            "planning_prerequisites",
            "xlsx",
            lambda c, u, r: f"Planeringsförutsättningar {c.span} – bilagor",
            _committees,
        ),
        KindSpec(
            "aterkoppling",
            "committee_feedback",
            "docx",
            lambda c, u, r: f"Återkoppling på planeringsförutsättningarna {c.span} – {c.names[u.id]}",
            _committees,
        ),
        KindSpec(
            "regionplan_forslag",
            "regional_plan",
            "docx",
            lambda c, u, r: f"Förslag till {c.org['plan_name']} {c.span}",
            _plan_recipients(DRAFT_KIND),
        ),
        KindSpec(
            "regionplan_beslutad",
            "regional_plan",
            "docx",
            lambda c, u, r: f"{c.org['Plan_name']} {c.span} – beslutad",
            _plan_recipients(DECIDED_KIND),
        ),
        KindSpec(
            "verksamhetsplan",
            "operational_plans",
            "docx",
            lambda c, u, r: f"Verksamhetsplan {c.span} – {c.names[u.id]}",
            _committees,
        ),
        KindSpec(
            "verksamhetsplan_mall",
            "operational_plans",
            "xlsx",
            lambda c, u, r: f"Verksamhetsplan {c.span} – mål, åtaganden och intern kontroll",
            _committees,
        ),
        KindSpec(
            "aktivitetsplan",
            "activity_plans",
            "xlsx",
            lambda c, u, r: f"Aktivitetsplan och detaljbudget {c.plan_year} – {c.names[u.id]}",
            _administrations,
        ),
        KindSpec(
            "uppfoljning",
            "follow_up",
            "xlsx",
            lambda c, u, r: _follow_up_title("Uppföljning", c, u, r),
            _follow_up_units,
        ),
        KindSpec(
            "uppfoljning_berattelse",
            "follow_up",
            "docx",
            lambda c, u, r: _follow_up_title("Uppföljningsdialog", c, u, r),
            _follow_up_units,
        ),
    )
}


def kinds_for_phase(phase_id: str) -> list[str]:
    return [k.kind for k in KINDS.values() if k.phase == phase_id]


def documents_for_phase(
    cfg: OrgConfig, plan_year: int, phase_id: str, *, version: int = 1, occasion: str | None = None
) -> list[DocRequest]:
    """Every document the phase sends, recipient by recipient, in a stable order.

    `occasion` (follow_up only) is an occasion key of tasks.followup_calendar, e.g.
    "delar-2028-08-31"; its name and key are carried in each request's extra, as the
    follow-up handoffs do.
    """
    kinds = kinds_for_phase(phase_id)
    if not kinds:
        raise UserError(f"unknown phase {phase_id!r}: expected one of {', '.join(phase_ids())}")
    cyc = year_data(cfg, plan_year)
    extra: tuple[tuple[str, str], ...] = ()
    if occasion:
        if phase_id != "follow_up":
            raise UserError(f"occasion: only the follow-up phase has occasions (phase: {phase_id})")
        found = find_occasion(cfg, plan_year, occasion)
        extra = (("occasion", found.name), ("occasion_key", found.key))
    out: list[DocRequest] = []
    for kind in kinds:
        for unit in KINDS[kind].recipients(cyc):
            out.append(DocRequest(kind, phase_id, unit.id, version, extra))
    return out


def phase_ids() -> list[str]:
    return list(dict.fromkeys(k.phase for k in KINDS.values()))


def doc_key(cfg: OrgConfig, plan_year: int, req: DocRequest) -> str:
    """org/plan year/phase/unit/kind/v<version>. A follow-up occasion extends the kind segment
    ("uppfoljning-delar-2028-08-31"): one plan year has several occasions per unit and kind, and
    the key must stay unique. Kinds use "_", occasion keys "-", so the split is unambiguous."""
    occasion = occasion_key(req)
    kind = f"{req.kind}-{occasion}" if occasion else req.kind
    return f"{cfg.organisation.id}/{plan_year}/{req.phase_id}/{req.unit_id}/{kind}/v{req.version}"


def _check(cfg: OrgConfig, req: DocRequest) -> tuple[KindSpec, Unit]:
    spec = KINDS.get(req.kind)
    if spec is None:
        raise UserError(f"unknown document kind {req.kind!r}: expected one of {', '.join(KINDS)}")
    if spec.phase != req.phase_id:
        raise UserError(f"document kind {req.kind!r} belongs to phase {spec.phase!r}, not {req.phase_id!r}")
    if not isinstance(req.version, int) or req.version < 1:
        raise UserError(f"document version must be a whole number ≥ 1, got {req.version!r}")
    try:
        unit = cfg.unit(req.unit_id)
    except KeyError:
        raise UserError(f"unknown unit {req.unit_id!r} in document request {req.kind!r}") from None
    return spec, unit


def _meta(cyc: YearData, spec: KindSpec, unit: Unit, req: DocRequest, created: date) -> DocMeta:
    cfg = cyc.cfg
    try:
        phase_name = cfg.phase(req.phase_id).name
    except KeyError:
        phase_name = req.phase_id
    return DocMeta(
        organisation=cfg.organisation.name,
        plan_year=cyc.plan_year,
        horizon_end=cyc.horizon_end,
        phase_id=req.phase_id,
        phase_name=phase_name,
        kind=req.kind,
        title=spec.title(cyc, unit, req),
        unit_id=unit.id,
        recipient=cyc.names[unit.id],
        version=req.version,
        doc_key=doc_key(cfg, cyc.plan_year, req),
        created=created,
    )


def file_name(req: DocRequest, fmt: Format) -> str:
    occasion = occasion_key(req)
    parts = [req.unit_id, req.kind, *([occasion] if occasion else []), f"v{req.version}"]
    return safe_filename("_".join(parts) + "." + fmt)


@dataclass(frozen=True)
class _Content:
    digest: str
    markup: str | None = None  # docx
    tables: dict[str, TableData] = field(default_factory=dict)
    sheets: tuple[SheetSpec | RiskMatrixSpec, ...] = ()  # xlsx
    instructions: str = ""


def _content(cyc: YearData, spec: KindSpec, unit: Unit, req: DocRequest, meta: DocMeta) -> _Content:
    """The document's content and its hash; shared by `render` and `expected`, so that a return
    is read against exactly what was (or would be) written."""
    ctx = context(cyc, unit, req, meta)
    if spec.format == "docx":
        markup, tables = DOCX_BUILDERS[req.kind](cyc, unit, req, ctx)
        digest = content_hash(
            {"renderer": RENDERER_VERSION, "meta": meta.hashable(), "markup": markup, "tables": tables}
        )
        return _Content(digest, markup=markup, tables=tables)
    sheets, instructions = XLSX_BUILDERS[req.kind](cyc, unit, req, ctx)
    digest = content_hash(
        {
            "renderer": RENDERER_VERSION,
            "meta": meta.hashable(),
            "sheets": sheets,
            "instructions": instructions,
        }
    )
    return _Content(digest, sheets=tuple(sheets), instructions=instructions)


def render(
    cfg: OrgConfig, plan_year: int, req: DocRequest, out_root: Path, *, created: date | None = None
) -> RenderedDoc:
    """Render one document to out_root/<plan_year>/<phase>/<file> and describe it.

    The file is written to a temporary name in the same folder and renamed into place.
    `created` (the date on the cover) defaults to today in Stockholm; it is not part of the
    content hash, so re-rendering unchanged content on another day keeps the hash.
    """
    spec, unit = _check(cfg, req)
    cyc = year_data(cfg, plan_year)
    meta = _meta(cyc, spec, unit, req, created or today_stockholm())
    root = Path(out_root)
    path = safe_path(root, str(plan_year), req.phase_id, file_name(req, spec.format))
    content = _content(cyc, spec, unit, req, meta)
    if content.markup is not None:
        word.write_docx(path, meta, content.markup, content.tables)
    else:
        excel.write_xlsx(path, meta, content.sheets, content.instructions)
    return RenderedDoc(
        kind=req.kind,
        phase_id=req.phase_id,
        unit_id=unit.id,
        version=req.version,
        relpath=path.relative_to(root.resolve()).as_posix(),
        format=spec.format,
        content_hash=content.digest,
        doc_key=meta.doc_key,
        title=meta.title,
    )


def expected_fields(cfg: OrgConfig, plan_year: int, req: DocRequest) -> dict[str, str]:
    """The fill-in fields (name -> heading) of a Word document, for reading a return back
    with `word.read_fields(path, labels=...)`. Renders the text only, writes nothing."""
    spec, unit = _check(cfg, req)
    if spec.format != "docx":
        return {}
    cyc = year_data(cfg, plan_year)
    meta = _meta(cyc, spec, unit, req, today_stockholm())
    markup, _ = DOCX_BUILDERS[req.kind](cyc, unit, req, context(cyc, unit, req, meta))
    return word.fields_in_markup(markup)


@dataclass(frozen=True)
class Expected:
    """What `render` writes for a request, without writing it: for reading a return back."""

    kind: str
    format: Format
    title: str
    recipient: str  # the receiving unit's name, as on the cover
    content_hash: str  # equals the Document's hash while the configuration is unchanged
    fields: dict[str, str]  # docx: fill-in field name -> heading
    sheets: tuple[SheetSpec | RiskMatrixSpec, ...]  # xlsx
    meta: DocMeta
    markup: str | None = None
    tables: dict[str, TableData] = field(default_factory=dict)
    instructions: str = ""  # xlsx: the text of the "Instruktioner" sheet

    def sent_field_paragraphs(self) -> dict[str, list[str]]:
        """What the document itself holds inside each fill-in field's section when it is sent (a
        template line or table between a field and the next heading), read the way a return is
        read: a return's answer is what it has beyond this. Builds the document in memory."""
        if self.markup is None:
            return {}
        return word.read_field_paragraphs(word.build_docx(self.meta, self.markup, self.tables), self.fields)

    @property
    def fill_in(self) -> bool:
        """True when the document has something to fill in: a Word field or an open Excel cell."""
        if self.format == "docx":
            return bool(self.fields)
        return any(
            isinstance(s, SheetSpec) and (s.blank_rows > 0 or any(c.editable for c in s.columns)) for s in self.sheets
        )


def spec_of(
    meta: DocMeta,
    digest: str,
    *,
    markup: str | None = None,
    tables: dict[str, TableData] | None = None,
    sheets: tuple[SheetSpec | RiskMatrixSpec, ...] = (),
    instructions: str = "",
) -> dict[str, object]:
    """What `expected_from_spec` rebuilds an `Expected` from: stored with a document built from data."""
    data = {"meta": meta, "digest": digest, "markup": markup, "tables": tables or {}, "sheets": sheets}
    return canonical({**data, "instructions": instructions})  # type: ignore[return-value]


def expected_from_spec(spec: dict[str, object]) -> Expected:
    """The `Expected` of a document whose spec was stored when it was sent (see `spec_of`)."""
    data: dict[str, Any] = from_canonical(spec)  # type: ignore[assignment]
    meta: DocMeta = data["meta"]
    markup = data["markup"]
    fmt: Format = "docx" if markup is not None else "xlsx"
    fields = word.fields_in_markup(markup) if markup is not None else {}
    return Expected(
        meta.kind,
        fmt,
        meta.title,
        meta.recipient,
        data["digest"],
        fields,
        tuple(data["sheets"]),
        meta,
        markup,
        dict(data["tables"]),
        data["instructions"],
    )


def expected(cfg: OrgConfig, plan_year: int, req: DocRequest) -> Expected:
    """The content `render` would write for this request now. Renders in memory, writes nothing."""
    spec, unit = _check(cfg, req)
    cyc = year_data(cfg, plan_year)
    meta = _meta(cyc, spec, unit, req, today_stockholm())
    content = _content(cyc, spec, unit, req, meta)
    fields = word.fields_in_markup(content.markup) if content.markup is not None else {}
    return Expected(
        req.kind,
        spec.format,
        meta.title,
        meta.recipient,
        content.digest,
        fields,
        content.sheets,
        meta,
        content.markup,
        content.tables,
        content.instructions,
    )


assert set(DOCX_BUILDERS) | set(XLSX_BUILDERS) == set(KINDS), "every kind needs a builder"
