"""Word documents from rendered markup, and reading filled-in fields back.

Markup (one directive per line; the text comes from the Jinja templates):

    # Rubrik / ## Rubrik / ### Rubrik   Heading 1/2/3 (real styles, so the TOC finds them)
    - punkt                             List Bullet ("  - punkt", indented: List Bullet 2)
    > vägledning                        guidance paragraph (style "Vägledning", italic grey)
    [[toc]]                             "Innehåll" + a TOC field (TOC \\o "1-2" \\h \\z \\u) whose
                                        result already lists the Heading 1/2 texts (below)
    [[pagebreak]]                       page break
    [[table:name]]                      the table tables[name]
    [[picture:name]]                    the picture tables[name] (a model.Picture), with its caption
    [[field:name|Rubrik]]               a fill-in section (below)
    [[field:name|Rubrik|Vägledning]]    … with guidance under the heading
    other lines                         Normal paragraphs; consecutive lines are joined,
                                        blank lines separate; **fet** makes bold runs

Fill-in fields, and how to find them in a returned document: the field heading is a Heading 2
paragraph holding the label and a bookmark named "sk_<name>" (e.g. sk_bidrag_mal). Under it
comes an optional guidance paragraph (style "Vägledning") and an empty answer paragraph in the
paragraph style "Svarsfält" (shaded; Enter keeps the style) that the secretary types into.
`read_fields` walks the body: a field starts at its bookmark (or, when the secretary has
deleted the bookmark with the heading text, at a Heading 1/2 whose text equals the field's
label) and ends at the next Heading 1/2 or the next field; the answer is every paragraph and
table in between except guidance paragraphs. Bookmarks survive editing and LibreOffice
round trips; the label fallback covers a retyped heading.

Table of contents: a real TOC field, marked dirty so that Word offers to update it (and then
adds page numbers and links), whose result is written by us: one paragraph per Heading 1 and
Heading 2 of the document, in the styles "toc 1"/"toc 2" (ids TOC1/TOC2, Word's own), with the
heading text and no page number. A PDF made by LibreOffice, and Word before the update, show
the contents instead of a placeholder. A document without headings keeps the placeholder text.
"""

from __future__ import annotations

import copy
import functools
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.style import WD_STYLE_TYPE
from docx.enum.text import WD_TAB_ALIGNMENT
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor
from docx.styles import BabelFish
from docx.text.paragraph import Paragraph

from models.errors import UserError
from tasks.documents import layout
from tasks.documents.files import atomic_save
from tasks.documents.model import CellValue, DocMeta, Picture, TableData
from tasks.documents.sanitize import clean_text
from tasks.documents.text import datum, iso, tal

FIELD_BOOKMARK_PREFIX = "sk_"
ANSWER_STYLE = "Svarsfält"
GUIDANCE_STYLE = "Vägledning"
TABLE_STYLE = "Tabelltext"
TOC_PLACEHOLDER = "Högerklicka och välj Uppdatera fält för att visa innehållsförteckningen"
TOC_INSTRUCTION = ' TOC \\o "1-2" \\h \\z \\u '
# Word's built-in names (lower case in styles.xml) and ids of the contents entry styles.
TOC_STYLES = {1: ("toc 1", "TOC1"), 2: ("toc 2", "TOC2")}

PAGE_WIDTH_CM, PAGE_HEIGHT_CM, MARGIN_CM = 21.0, 29.7, 2.5
TEXT_WIDTH_CM = PAGE_WIDTH_CM - 2 * MARGIN_CM
LANDSCAPE_TEXT_WIDTH_CM = PAGE_HEIGHT_CM - 2 * MARGIN_CM
TABLE_FONT_PT = 9.5
HEADER_TITLE_CHARS = 70
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
HEADER_FILL = "1F3864"
ANSWER_FILL = "FFF6D5"

# Word limits bookmark names to 40 characters, starting with a letter.
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,36}$")
_FIELD = re.compile(r"^\[\[field:([^|\]]*)\|([^|\]]+)(?:\|([^\]]*))?\]\]$")
_TABLE = re.compile(r"^\[\[table:([A-Za-z0-9_]+)\]\]$")
_PICTURE = re.compile(r"^\[\[picture:([A-Za-z0-9_]+)\]\]$")
_DIRECTIVE = re.compile(r"^\[\[.*\]\]$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


# ---------------------------------------------------------------------------
# Base document: styles set once per process, in code (no binary template in the repository)
# ---------------------------------------------------------------------------

# Styles the writer uses; everything else in python-docx's default template is dropped so that
# every document parses and saves quickly (its styles.xml alone is 350 kB).
_KEEP_STYLES = {
    "Normal", "Default Paragraph Font", "Normal Table", "No List", "Table Grid",
    "Heading 1", "Heading 2", "Heading 3", "Title", "Subtitle", "List Bullet", "List Bullet 2", "List Paragraph",
    "TOC Heading", "Header", "Footer", GUIDANCE_STYLE, ANSWER_STYLE, TABLE_STYLE,
    *(name for name, _ in TOC_STYLES.values()),
}  # fmt: skip
_DROP_RELS = ("stylesWithEffects", "customXml", "thumbnail")


@dataclass(frozen=True)
class _Base:
    data: bytes
    style_ids: dict[str, str]  # style name -> style id


@functools.lru_cache(maxsize=1)
def _base() -> _Base:
    doc = Document()
    section = doc.sections[0]
    section.page_width, section.page_height = Cm(PAGE_WIDTH_CM), Cm(PAGE_HEIGHT_CM)
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Cm(MARGIN_CM))
    section.header_distance = section.footer_distance = Cm(1.25)

    styles = doc.styles
    # Swedish proofing language for the whole document.
    for lang in styles.element.iter(qn("w:lang")):
        lang.set(qn("w:val"), "sv-SE")
    normal = styles["Normal"]
    # Calibri for body and tables (the template's theme gives Cambria): LibreOffice sets it in the
    # metric-compatible Carlito, so the widths tasks/documents/layout.py measures hold in both.
    normal.font.name = "Calibri"
    normal.font.size = Pt(11)
    normal.paragraph_format.space_after = Pt(6)

    guidance = styles.add_style(GUIDANCE_STYLE, WD_STYLE_TYPE.PARAGRAPH)
    guidance.style_id = "Vagledning"  # ASCII ids, as Word itself writes them
    guidance.base_style = normal
    guidance.font.italic = True
    guidance.font.size = Pt(10)
    guidance.font.color.rgb = RGBColor(0x59, 0x59, 0x59)

    table_text = styles.add_style(TABLE_STYLE, WD_STYLE_TYPE.PARAGRAPH)
    table_text.base_style = normal
    table_text.font.size = Pt(TABLE_FONT_PT)
    table_text.paragraph_format.space_before = Pt(1)
    table_text.paragraph_format.space_after = Pt(1)

    answer = styles.add_style(ANSWER_STYLE, WD_STYLE_TYPE.PARAGRAPH)
    answer.style_id = "Svarsfalt"
    answer.base_style = normal
    answer.next_paragraph_style = answer
    ppr = answer.element.get_or_add_pPr()
    # Border and shading first: python-docx inserts spacing and indent after them, in schema order.
    borders = OxmlElement("w:pBdr")
    for side in ("top", "left", "bottom", "right"):
        b = OxmlElement(f"w:{side}")
        b.set(qn("w:val"), "single")
        b.set(qn("w:sz"), "4")
        b.set(qn("w:space"), "4")
        b.set(qn("w:color"), "BF9000")
        borders.append(b)
    ppr.append(borders)
    ppr.append(_shading(ANSWER_FILL))
    answer.paragraph_format.space_before = Pt(3)
    answer.paragraph_format.space_after = Pt(3)
    answer.paragraph_format.left_indent = Cm(0.2)

    for level, (name, style_id) in TOC_STYLES.items():
        toc = styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
        toc.style_id = style_id
        # A built-in style of Word's, not a custom one: Word fills it when it updates the field.
        toc.element.attrib.pop(qn("w:customStyle"), None)
        toc.base_style = normal
        toc.next_paragraph_style = normal
        toc.paragraph_format.space_after = Pt(3 if level == 1 else 2)
        toc.paragraph_format.left_indent = Cm(0.4 * (level - 1))
        toc.font.bold = level == 1

    for name in ("Header", "Footer"):
        # One right-aligned tab at the text edge (the template's are for US Letter).
        style = styles[name]
        style.font.size = Pt(9)
        style.paragraph_format.tab_stops.clear_all()
        style.paragraph_format.tab_stops.add_tab_stop(Cm(TEXT_WIDTH_CM), WD_TAB_ALIGNMENT.RIGHT)

    # Keep the styles in use and what they are based on or linked to.
    by_id = {s.get(qn("w:styleId")): s for s in styles.element.findall(qn("w:style"))}
    keep: set[str] = set()
    todo = [sid for sid, el in by_id.items() if _style_name(el) in _KEEP_STYLES]
    while todo:
        sid = todo.pop()
        if sid in keep or sid not in by_id:
            continue
        keep.add(sid)
        for tag in ("w:basedOn", "w:link", "w:next"):
            ref = by_id[sid].find(qn(tag))
            if ref is not None:
                todo.append(ref.get(qn("w:val")))
    for sid, el in by_id.items():
        if sid not in keep:
            styles.element.remove(el)
    for rel_id, rel in list(doc.part.rels.items()):
        if rel.reltype.endswith(_DROP_RELS):
            doc.part.rels.pop(rel_id)
    package_rels = doc.part.package.rels
    for rel_id, rel in list(package_rels.items()):
        if rel.reltype.endswith(_DROP_RELS):
            package_rels.pop(rel_id)

    style_ids = {_style_name(by_id[sid]): sid for sid in keep}
    buf = io.BytesIO()
    doc.save(buf)
    return _Base(buf.getvalue(), style_ids)


def _style_name(el: Any) -> str:
    name = el.find(qn("w:name"))
    raw = name.get(qn("w:val")) if name is not None else ""
    # styles.xml spells built-in names in lower case ("heading 1"); python-docx shows "Heading 1".
    return BabelFish.internal2ui(raw)


def _shading(fill: str) -> Any:
    shd = OxmlElement("w:shd")
    shd.set(qn("w:val"), "clear")
    shd.set(qn("w:color"), "auto")
    shd.set(qn("w:fill"), fill)
    return shd


def _el(tag: str, parent: Any = None, **attrs: str) -> Any:
    el = OxmlElement(tag)
    for key, value in attrs.items():
        el.set(qn(f"w:{key}"), value)
    if parent is not None:
        parent.append(el)
    return el


def _run(text: str, *, bold: bool = False, italic: bool = False, color: str | None = None) -> Any:
    """A w:r with text; \n becomes a line break and \t a tab, as Word expects."""
    r = OxmlElement("w:r")
    if bold or italic or color:
        rpr = _el("w:rPr", r)
        if bold:
            _el("w:b", rpr)
        if italic:
            _el("w:i", rpr)
        if color:
            _el("w:color", rpr, val=color)
    for i, line in enumerate(text.split("\n")):
        if i:
            _el("w:br", r)
        for j, chunk in enumerate(line.split("\t")):
            if j:
                _el("w:tab", r)
            if chunk:
                t = _el("w:t", r)
                t.text = chunk
                t.set(XML_SPACE, "preserve")
    return r


def _twips(cm: float) -> str:
    return str(round(cm * 567))


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def write_docx(path: Path, meta: DocMeta, markup: str, tables: Mapping[str, TableData]) -> None:
    """Write a Word document atomically: cover page, the markup body, header/footer, properties."""
    doc = build_docx(meta, markup, tables)
    atomic_save(Path(path), doc.save)


def build_docx(meta: DocMeta, markup: str, tables: Mapping[str, TableData]) -> DocxDocument:
    base = _base()
    doc = Document(io.BytesIO(base.data))
    writer = _Writer(doc, base.style_ids)
    _cover(writer, meta)
    writer.markup(markup, tables)
    writer.finish_toc()
    _header_footer(doc, meta)
    _share_header_footer(doc)
    _properties(doc, meta)
    return doc


class _Writer:
    """Appends body elements as raw WordprocessingML: python-docx's style setter looks up the
    default style by scanning every style, which made a document ten times slower."""

    def __init__(self, doc: DocxDocument, style_ids: Mapping[str, str]) -> None:
        self.doc = doc
        self.anchor = doc.element.body.get_or_add_sectPr()
        self.style_ids = style_ids
        self.bookmark_id = 100
        self.fields: set[str] = set()
        self.toc_slots: list[Any] = []  # paragraphs the contents replace once the body is written

    def add(self, el: Any) -> Any:
        self.anchor.addprevious(el)
        return el

    def para(self, text: str = "", style: str | None = None) -> Any:
        p = self.add(OxmlElement("w:p"))
        if style and style != "Normal":
            ppr = _el("w:pPr", p)
            _el("w:pStyle", ppr, val=self.style_ids[style])
        if text:
            _runs(p, text)
        return p

    def page_break(self) -> None:
        p = self.add(OxmlElement("w:p"))
        r = _el("w:r", p)
        _el("w:br", r, type="page")

    def markup(self, markup: str, tables: Mapping[str, TableData]) -> None:
        pending: list[str] = []

        def flush() -> None:
            if pending:
                self.para(" ".join(pending))
                pending.clear()

        for number, raw in enumerate(clean_text(markup, 10_000_000).split("\n"), start=1):
            line = raw.strip()
            if not line:
                flush()
                continue
            if line.startswith("[[") and _DIRECTIVE.match(line):
                flush()
                self.directive(line, number, tables)
            elif line.startswith(("# ", "## ", "### ")):
                flush()
                level = len(line) - len(line.lstrip("#"))
                self.para(line[level:].strip(), f"Heading {level}")
            elif line.startswith("- "):
                flush()
                # An indented "- " is the second list level.
                self.para(line[2:].strip(), "List Bullet 2" if raw.startswith((" ", "\t")) else "List Bullet")
            elif line.startswith("> "):
                flush()
                self.para(line[2:].strip(), GUIDANCE_STYLE)
            else:
                pending.append(line)
        flush()

    def directive(self, line: str, number: int, tables: Mapping[str, TableData]) -> None:
        if line == "[[toc]]":
            self.toc()
        elif line == "[[pagebreak]]":
            self.page_break()
        elif m := _TABLE.match(line):
            name = m.group(1)
            if not isinstance(tables.get(name), TableData):
                known = ", ".join(sorted(k for k, v in tables.items() if isinstance(v, TableData))) or "none"
                raise UserError(f"document markup line {number}: unknown table {name!r} (known: {known})")
            self.table(tables[name])
        elif m := _PICTURE.match(line):
            picture = tables.get(m.group(1))
            if not isinstance(picture, Picture):
                raise UserError(f"document markup line {number}: unknown picture {m.group(1)!r}")
            self.picture(picture)
        elif m := _FIELD.match(line):
            name, label, guide = m.group(1).strip(), m.group(2).strip(), (m.group(3) or "").strip()
            if not FIELD_NAME.match(name):
                raise UserError(
                    f"document markup line {number}: field name {name!r} must be letters, "
                    "digits and _ (at most 37, starting with a letter)"
                )
            if name in self.fields:
                raise UserError(f"document markup line {number}: field {name!r} appears twice")
            self.fields.add(name)
            self.field(name, label, guide)
        else:
            raise UserError(f"document markup line {number}: unknown directive {line[:60]!r}")

    def picture(self, picture: Picture) -> None:
        # python-docx's add_picture appends at the end of the body, which is where this writer is.
        run = Paragraph(self.para(), self.doc._body).add_run()
        run.add_picture(io.BytesIO(picture.png), width=Cm(min(picture.width_cm, TEXT_WIDTH_CM)))
        if picture.caption:
            self.para(picture.caption, GUIDANCE_STYLE)

    def toc(self) -> None:
        self.para("Innehåll", "TOC Heading")
        self.toc_slots.append(self.para())

    def finish_toc(self) -> None:
        """Replace each [[toc]] slot with the TOC field, its result the document's Heading 1/2 texts."""
        if not self.toc_slots:
            return
        levels = {self.style_ids[f"Heading {n}"]: n for n in TOC_STYLES}
        entries = [
            (levels[sid], text)
            for p in self.doc.element.body.iterchildren(qn("w:p"))
            if (sid := _style_id(p)) in levels and (text := " ".join(_paragraph_text(p).split()))
        ]
        for slot in self.toc_slots:
            for p in _toc_paragraphs(entries):
                slot.addprevious(p)
            slot.getparent().remove(slot)
        self.toc_slots.clear()

    def field(self, name: str, label: str, guide: str) -> None:
        heading = self.para("", "Heading 2")
        self.bookmark_id += 1
        _el("w:bookmarkStart", heading, id=str(self.bookmark_id), name=FIELD_BOOKMARK_PREFIX + name)
        _runs(heading, label)
        _el("w:bookmarkEnd", heading, id=str(self.bookmark_id))
        if guide:
            self.para(guide, GUIDANCE_STYLE)
        self.para("", ANSWER_STYLE)

    def section_break(self, landscape: bool) -> None:
        """End the section so far: portrait (before a wide table) or landscape (after it)."""
        p = self.add(OxmlElement("w:p"))
        sect = _el("w:sectPr", _el("w:pPr", p))
        w, h = (PAGE_HEIGHT_CM, PAGE_WIDTH_CM) if landscape else (PAGE_WIDTH_CM, PAGE_HEIGHT_CM)
        attrs = {"w": _twips(w), "h": _twips(h)} | ({"orient": "landscape"} if landscape else {})
        _el("w:pgSz", sect, **attrs)
        m = _twips(MARGIN_CM)
        _el("w:pgMar", sect, top=m, right=m, bottom=m, left=m, header=_twips(1.25), footer=_twips(1.25), gutter="0")

    def table(self, data: TableData, *, header: bool = True, borders: bool = True) -> None:
        n = len(data.headers)
        hint = data.widths or tuple(TEXT_WIDTH_CM / n for _ in range(n))
        if len(hint) != n:
            raise ValueError(f"table has {n} headers but {len(hint)} widths")
        # Widths from the text: every column holds its longest word on one line. A table whose
        # words do not fit the page's width is set on a landscape page of its own.
        size = TABLE_FONT_PT
        minimum, wanted = [], []
        for i in range(n):
            cells = [_cell_text(r[i]) for r in data.rows]
            head = clean_text(data.headers[i], 500) if header else ""
            bold_first = not header and i == 0
            minimum.append(
                max(
                    layout.longest_piece_cm(head, size, bold=True),
                    *(layout.longest_piece_cm(c, size, bold=bold_first) for c in cells),
                    0.6,
                )
                + layout.CELL_PADDING_CM
            )
            wanted.append(
                max(
                    layout.text_cm(head, size, bold=True),
                    *(max((layout.text_cm(x, size) for x in c.split("\n")), default=0.0) for c in cells),
                    0.6,
                )
                + layout.CELL_PADDING_CM
            )
        total = sum(hint) if sum(hint) < TEXT_WIDTH_CM - 1e-6 else TEXT_WIDTH_CM
        fitted = layout.fit_widths(hint, minimum, wanted, total) or layout.fit_widths(
            hint, minimum, wanted, TEXT_WIDTH_CM
        )
        landscape = fitted is None
        if landscape:
            fitted = layout.fit_widths(hint, minimum, wanted, LANDSCAPE_TEXT_WIDTH_CM) or tuple(minimum)
            self.section_break(landscape=False)
        widths = fitted
        numeric = set(data.numeric)
        tbl = self.add(OxmlElement("w:tbl"))
        tblpr = _el("w:tblPr", tbl)
        if borders:
            _el("w:tblStyle", tblpr, val=self.style_ids["Table Grid"])
        _el("w:tblW", tblpr, w=_twips(sum(widths)), type="dxa")
        _el("w:tblLayout", tblpr, type="fixed")
        _el(
            "w:tblLook",
            tblpr,
            val="04A0",
            firstRow="1",
            lastRow="0",
            firstColumn="1",
            lastColumn="0",
            noHBand="0",
            noVBand="1",
        )
        grid = _el("w:tblGrid", tbl)
        tw = [_twips(w) for w in widths]
        for w in tw:
            _el("w:gridCol", grid, w=w)
        if header:
            tr = _el("w:tr", tbl)
            trpr = _el("w:trPr", tr)
            # Repeat the header row on every page; never split it across pages.
            _el("w:cantSplit", trpr)
            _el("w:tblHeader", trpr)
            for text_, w in zip(data.headers, tw, strict=True):
                tc = _el("w:tc", tr)
                tcpr = _el("w:tcPr", tc)
                _el("w:tcW", tcpr, w=w, type="dxa")
                tcpr.append(_shading(HEADER_FILL))
                p = _el("w:p", tc)
                self.cell_style(p)
                p.append(_run(clean_text(text_, 500), bold=True, color="FFFFFF"))
        for row_values in data.rows:
            if len(row_values) != n:
                raise ValueError(f"table row has {len(row_values)} cells, expected {n}: {row_values!r}")
            tr = _el("w:tr", tbl)
            for i, (value, w) in enumerate(zip(row_values, tw, strict=True)):
                tc = _el("w:tc", tr)
                _el("w:tcW", _el("w:tcPr", tc), w=w, type="dxa")
                p = _el("w:p", tc)
                right = i in numeric or (isinstance(value, int | float) and not isinstance(value, bool))
                self.cell_style(p, right=right)
                cell = _cell_text(value)
                if cell:
                    p.append(_run(cell, bold=not header and i == 0))
        # A table directly followed by a heading looks cramped; an empty paragraph gives air.
        self.para()
        if landscape:
            self.section_break(landscape=True)

    def cell_style(self, p: Any, *, right: bool = False) -> None:
        ppr = _el("w:pPr", p)
        _el("w:pStyle", ppr, val=self.style_ids[TABLE_STYLE])
        if right:
            _el("w:jc", ppr, val="right")


def _toc_paragraphs(entries: list[tuple[int, str]]) -> list[Any]:
    """The TOC field as paragraphs: begin, instruction and separator open the first, one entry
    per paragraph (style TOC1/TOC2), the end closes the last; the placeholder without entries."""
    paragraphs = []
    for level, text in entries or [(1, "")]:
        p = OxmlElement("w:p")
        _el("w:pStyle", _el("w:pPr", p), val=TOC_STYLES[level][1])
        p.append(_run(text) if entries else _run(TOC_PLACEHOLDER, italic=True))
        paragraphs.append(p)
    # dirty: Word offers to update the field when the document is opened (page numbers, links).
    begin = _el("w:r")
    _el("w:fldChar", begin, fldCharType="begin", dirty="true")
    instr_run = _el("w:r")
    instr = _el("w:instrText", instr_run)
    instr.set(XML_SPACE, "preserve")
    instr.text = TOC_INSTRUCTION
    separate = _el("w:r")
    _el("w:fldChar", separate, fldCharType="separate")
    paragraphs[0].find(qn("w:pPr")).addnext(begin)
    begin.addnext(instr_run)
    instr_run.addnext(separate)
    _el("w:fldChar", _el("w:r", paragraphs[-1]), fldCharType="end")
    return paragraphs


def _runs(p: Any, text: str) -> None:
    if "**" not in text:
        p.append(_run(text))
        return
    pos = 0
    for m in _BOLD.finditer(text):
        if m.start() > pos:
            p.append(_run(text[pos : m.start()]))
        p.append(_run(m.group(1), bold=True))
        pos = m.end()
    if pos < len(text):
        p.append(_run(text[pos:]))


def _cell_text(value: CellValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Ja" if value else "Nej"
    if isinstance(value, int | float):
        return tal(value, 0 if float(value).is_integer() else 1)
    if isinstance(value, datetime):
        return iso(value.date())
    if isinstance(value, date):
        return iso(value)
    return clean_text(str(value), 32_000)


def _cover(w: _Writer, meta: DocMeta) -> None:
    w.para(meta.organisation, "Subtitle")
    for _ in range(6):
        w.para()
    w.para(meta.title, "Title")
    w.para(meta.cycle, "Subtitle")
    w.para()
    rows = (
        ("Organisation", meta.organisation),
        ("Planeringscykel", meta.cycle),
        ("Fas", meta.phase_name),
        ("Mottagare", meta.recipient),
        ("Version", str(meta.version)),
        ("Datum", datum(meta.created)),
    )
    # The document id is metadata (core properties), not text a reader needs.
    w.table(TableData(("", ""), rows, widths=(4.0, 12.0)), header=False, borders=False)
    w.page_break()


def _share_header_footer(doc: DocxDocument) -> None:
    """Give every section (a landscape table's, the portrait one before it) the document's header
    and footer: a section without its own references has none in the first section."""
    body = doc.element.body
    last = body.get_or_add_sectPr()
    refs = [el for el in last if el.tag in (qn("w:headerReference"), qn("w:footerReference"))]
    for sect in body.iter(qn("w:sectPr")):
        if sect is last:
            continue
        for ref in reversed(refs):
            sect.insert(0, copy.deepcopy(ref))


def _simple_field(paragraph: Paragraph, instr: str, placeholder: str) -> None:
    fld = _el("w:fldSimple", paragraph._p, instr=instr)
    fld.append(_run(placeholder))


def _header_footer(doc: DocxDocument, meta: DocMeta) -> None:
    section = doc.sections[0]
    hp = section.header.paragraphs[0]
    hp.add_run(clean_text(meta.organisation, 200))
    # The whole title: a long one wraps to a second header line rather than being cut.
    hp.add_run("\t" + " ".join(clean_text(meta.title, 255).split()))

    fp = section.footer.paragraphs[0]
    fp.add_run(f"{meta.cycle} · Version {meta.version}\tSida ")
    _simple_field(fp, "PAGE", "1")
    fp.add_run(" av ")
    _simple_field(fp, "NUMPAGES", "1")


def _properties(doc: DocxDocument, meta: DocMeta) -> None:
    cp = doc.core_properties
    cp.title = clean_text(meta.title, 255)
    cp.subject = clean_text(f"{meta.phase_name} – {meta.cycle}", 255)
    cp.author = clean_text(meta.organisation, 255)
    cp.last_modified_by = "Styrkedja"
    cp.identifier = meta.doc_key
    cp.version = str(meta.version)
    cp.revision = meta.version
    cp.category = meta.kind
    cp.comments = clean_text(f"Mottagare: {meta.recipient}", 255)
    cp.keywords = "; ".join(
        ("styrkedja", meta.kind, meta.phase_id, str(meta.plan_year), meta.unit_id, f"v{meta.version}")
    )
    cp.language = "sv-SE"
    stamp = datetime(meta.created.year, meta.created.month, meta.created.day)
    cp.created = cp.modified = stamp


# ---------------------------------------------------------------------------
# Reading returns
# ---------------------------------------------------------------------------


def fields_in_markup(markup: str) -> dict[str, str]:
    """The fill-in fields a markup text declares: name -> label, in order."""
    found: dict[str, str] = {}
    for raw in markup.split("\n"):
        m = _FIELD.match(raw.strip())
        if m:
            found[m.group(1).strip()] = m.group(2).strip()
    return found


def read_identifier(source: str | Path | IO[bytes]) -> str:
    """The doc_key embedded in a Word document's core properties ("" if missing)."""
    return Document(source).core_properties.identifier or ""


def read_fields(
    source: str | Path | IO[bytes] | DocxDocument, labels: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The text the secretary wrote under each fill-in field: name -> text (stripped).

    `labels` (name -> heading text, e.g. from `fields_in_markup`) finds fields whose bookmark
    was deleted. Guidance paragraphs are skipped; tables become " | "-joined lines.
    """
    return {name: "\n".join(lines).strip() for name, lines in read_field_paragraphs(source, labels).items()}


def read_field_paragraphs(
    source: str | Path | IO[bytes] | DocxDocument, labels: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """`read_fields` paragraph by paragraph (a table row counts as one): name -> texts."""
    doc = source if isinstance(source, DocxDocument) else Document(source)
    by_label = {_norm(v): k for k, v in (labels or {}).items()}
    style_names = {s.style_id: s.name for s in doc.styles if s.type == WD_STYLE_TYPE.PARAGRAPH}
    answers: dict[str, list[str]] = {}
    current: str | None = None
    for block in _blocks(doc.element.body):
        if block.tag == qn("w:tbl"):
            if current is not None:
                answers[current].extend(_table_lines(block))
            continue
        if block.tag != qn("w:p"):
            continue
        style = style_names.get(_style_id(block), "")
        marker = _field_bookmark(block)
        text = _paragraph_text(block).strip()
        if marker is None and _is_major_heading(style, block):
            marker = by_label.get(_norm(text), "")
        if marker is not None:
            current = marker or None
            if current is not None:
                answers.setdefault(current, [])
            continue
        if current is not None and style != GUIDANCE_STYLE and text:
            answers[current].append(text)
    return answers


_BREAKS = {qn("w:br"): "\n", qn("w:cr"): "\n", qn("w:tab"): "\t", qn("w:noBreakHyphen"): "-"}


def _paragraph_text(p: Any) -> str:
    """A paragraph's text as typed: a manual line break (Shift+Enter) stays a line break and a
    tab a tab, instead of gluing the lines together. Deleted tracked changes are left out."""
    parts: list[str] = []
    for r in p.iter(qn("w:r")):
        if r.getparent().tag == qn("w:del"):
            continue
        for child in r:
            if child.tag == qn("w:t"):
                parts.append(child.text or "")
            elif child.tag in _BREAKS:
                parts.append(_BREAKS[child.tag])
    return "".join(parts)


def _blocks(parent: Any) -> Iterable[Any]:
    """Body paragraphs and tables in order, looking inside content controls (w:sdt) that
    Word or another tool may have wrapped around them."""
    for child in parent.iterchildren():
        if child.tag == qn("w:sdt"):
            content = child.find(qn("w:sdtContent"))
            if content is not None:
                yield from _blocks(content)
        else:
            yield child


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _style_id(p: object) -> str:
    ppr = p.find(qn("w:pPr"))  # type: ignore[attr-defined]
    if ppr is None:
        return "Normal"
    ps = ppr.find(qn("w:pStyle"))
    return ps.get(qn("w:val")) if ps is not None else "Normal"


def _field_bookmark(p: object) -> str | None:
    for bm in p.iter(qn("w:bookmarkStart")):  # type: ignore[attr-defined]
        name = bm.get(qn("w:name")) or ""
        if name.startswith(FIELD_BOOKMARK_PREFIX):
            return name[len(FIELD_BOOKMARK_PREFIX) :]
    return None


def _is_major_heading(style_name: str, p: object) -> bool:
    if style_name in ("Heading 1", "Heading 2", "Title"):
        return True
    ppr = p.find(qn("w:pPr"))  # type: ignore[attr-defined]
    lvl = ppr.find(qn("w:outlineLvl")) if ppr is not None else None
    return lvl is not None and lvl.get(qn("w:val")) in ("0", "1")


def _table_lines(tbl: object) -> Iterable[str]:
    for tr in tbl.iter(qn("w:tr")):  # type: ignore[attr-defined]
        cells = ["".join(t.text or "" for t in tc.iter(qn("w:t"))).strip() for tc in tr.iter(qn("w:tc"))]
        if any(cells):
            yield " | ".join(cells)


__all__ = [
    "ANSWER_STYLE",
    "FIELD_BOOKMARK_PREFIX",
    "GUIDANCE_STYLE",
    "TOC_PLACEHOLDER",
    "build_docx",
    "fields_in_markup",
    "read_field_paragraphs",
    "read_fields",
    "read_identifier",
    "write_docx",
]
