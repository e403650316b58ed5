"""Word documents from rendered markup, and reading filled-in fields back.

Markup (one directive per line; the text comes from the Jinja templates):

    # Rubrik / ## Rubrik / ### Rubrik   Heading 1/2/3 (real styles, so the TOC finds them)
    - punkt                             List Bullet
    > vägledning                        guidance paragraph (style "Vägledning", italic grey)
    [[toc]]                             "Innehåll" + a TOC field (TOC \\o "1-3" \\h \\z \\u)
    [[pagebreak]]                       page break
    [[table:name]]                      the table tables[name]
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
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO

from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.section import WD_SECTION
from docx.enum.style import WD_STYLE_TYPE
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_BREAK, WD_TAB_ALIGNMENT
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor
from docx.text.paragraph import Paragraph

from models.errors import UserError
from tasks.documents.files import atomic_save
from tasks.documents.model import CellValue, DocMeta, TableData
from tasks.documents.sanitize import clean_text
from tasks.documents.text import datum, iso, tal

FIELD_BOOKMARK_PREFIX = "sk_"
ANSWER_STYLE = "Svarsfält"
GUIDANCE_STYLE = "Vägledning"
TOC_PLACEHOLDER = "Högerklicka och välj Uppdatera fält för att visa innehållsförteckningen"
TOC_INSTRUCTION = ' TOC \\o "1-3" \\h \\z \\u '

PAGE_WIDTH_CM, PAGE_HEIGHT_CM, MARGIN_CM = 21.0, 29.7, 2.5
TEXT_WIDTH_CM = PAGE_WIDTH_CM - 2 * MARGIN_CM
HEADER_FILL = "1F3864"
ANSWER_FILL = "FFF6D5"

# Word limits bookmark names to 40 characters, starting with a letter.
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,36}$")
_FIELD = re.compile(r"^\[\[field:([^|\]]*)\|([^|\]]+)(?:\|([^\]]*))?\]\]$")
_TABLE = re.compile(r"^\[\[table:([A-Za-z0-9_]+)\]\]$")
_DIRECTIVE = re.compile(r"^\[\[.*\]\]$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


# ---------------------------------------------------------------------------
# Base document: styles set once per process, in code (no binary template in the repository)
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _base_docx() -> bytes:
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
    normal.font.size = Pt(11)
    normal.paragraph_format.space_after = Pt(6)

    guidance = styles.add_style(GUIDANCE_STYLE, WD_STYLE_TYPE.PARAGRAPH)
    guidance.base_style = normal
    guidance.font.italic = True
    guidance.font.size = Pt(10)
    guidance.font.color.rgb = RGBColor(0x59, 0x59, 0x59)

    answer = styles.add_style(ANSWER_STYLE, WD_STYLE_TYPE.PARAGRAPH)
    answer.base_style = normal
    answer.next_paragraph_style = answer
    answer.paragraph_format.space_before = Pt(3)
    answer.paragraph_format.space_after = Pt(3)
    answer.paragraph_format.left_indent = Cm(0.2)
    ppr = answer.element.get_or_add_pPr()
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

    footer = styles["Footer"]
    footer.font.size = Pt(9)
    styles["Header"].font.size = Pt(9)

    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def _shading(fill: str) -> OxmlElement:
    shd = OxmlElement("w:shd")
    shd.set(qn("w:val"), "clear")
    shd.set(qn("w:color"), "auto")
    shd.set(qn("w:fill"), fill)
    return shd


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def write_docx(path: Path, meta: DocMeta, markup: str, tables: Mapping[str, TableData]) -> None:
    """Write a Word document atomically: cover page, the markup body, header/footer, properties."""
    doc = build_docx(meta, markup, tables)
    atomic_save(Path(path), doc.save)


def build_docx(meta: DocMeta, markup: str, tables: Mapping[str, TableData]) -> DocxDocument:
    doc = Document(io.BytesIO(_base_docx()))
    writer = _Writer(doc)
    _cover(writer, meta)
    writer.markup(markup, tables)
    _header_footer(doc, meta)
    _properties(doc, meta)
    return doc


class _Writer:
    def __init__(self, doc: DocxDocument) -> None:
        self.doc = doc
        self.body = doc.element.body
        # Style objects looked up once: a lookup by name walks every style in the document.
        s = doc.styles
        self.style = {
            name: s[name]
            for name in (
                "Normal", "Heading 1", "Heading 2", "Heading 3", "List Bullet", "Title",
                "Subtitle", "TOC Heading", GUIDANCE_STYLE, ANSWER_STYLE,
            )
        }  # fmt: skip
        self.table_style = s["Table Grid"]
        self.bookmark_id = 100
        self.fields: set[str] = set()

    def para(self, text: str = "", style: str = "Normal") -> Paragraph:
        p = self.doc.add_paragraph(style=self.style[style])
        if text:
            _runs(p, text)
        return p

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
                self.para(line[2:].strip(), "List Bullet")
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
            self.doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
        elif m := _TABLE.match(line):
            name = m.group(1)
            if name not in tables:
                known = ", ".join(sorted(tables)) or "none"
                raise UserError(f"document markup line {number}: unknown table {name!r} (known: {known})")
            add_table(self.doc, tables[name], self.table_style)
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

    def toc(self) -> None:
        self.para("Innehåll", "TOC Heading")
        p = self.doc.add_paragraph()
        r = p.add_run()._r
        begin = OxmlElement("w:fldChar")
        begin.set(qn("w:fldCharType"), "begin")
        # dirty: Word offers to update the field when the document is opened.
        begin.set(qn("w:dirty"), "true")
        r.append(begin)
        r = p.add_run()._r
        instr = OxmlElement("w:instrText")
        instr.set(qn("xml:space"), "preserve")
        instr.text = TOC_INSTRUCTION
        r.append(instr)
        r = p.add_run()._r
        sep = OxmlElement("w:fldChar")
        sep.set(qn("w:fldCharType"), "separate")
        r.append(sep)
        p.add_run(TOC_PLACEHOLDER).italic = True
        r = p.add_run()._r
        end = OxmlElement("w:fldChar")
        end.set(qn("w:fldCharType"), "end")
        r.append(end)

    def field(self, name: str, label: str, guide: str) -> None:
        heading = self.para(label, "Heading 2")
        self.bookmark_id += 1
        start = OxmlElement("w:bookmarkStart")
        start.set(qn("w:id"), str(self.bookmark_id))
        start.set(qn("w:name"), FIELD_BOOKMARK_PREFIX + name)
        end = OxmlElement("w:bookmarkEnd")
        end.set(qn("w:id"), str(self.bookmark_id))
        ppr = heading._p.pPr
        if ppr is not None:
            ppr.addnext(start)
        else:
            heading._p.insert(0, start)
        heading._p.append(end)
        if guide:
            self.para(guide, GUIDANCE_STYLE)
        self.para("", ANSWER_STYLE)


def _runs(p: Paragraph, text: str) -> None:
    if "**" not in text:
        p.add_run(text)
        return
    pos = 0
    for m in _BOLD.finditer(text):
        if m.start() > pos:
            p.add_run(text[pos : m.start()])
        p.add_run(m.group(1)).bold = True
        pos = m.end()
    if pos < len(text):
        p.add_run(text[pos:])


def _cell_text(value: CellValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Ja" if value else "Nej"
    if isinstance(value, int | float):
        return tal(value, 0 if float(value).is_integer() else 1)
    if isinstance(value, datetime):
        return iso(value.date())
    if hasattr(value, "isoformat"):
        return iso(value)  # type: ignore[arg-type]
    return clean_text(str(value), 32_000)


def add_table(doc: DocxDocument, data: TableData, style: object) -> None:
    n = len(data.headers)
    widths = data.widths or tuple(TEXT_WIDTH_CM / n for _ in range(n))
    if len(widths) != n:
        raise ValueError(f"table has {n} headers but {len(widths)} widths")
    numeric = set(data.numeric)
    table = doc.add_table(rows=1, cols=n)
    table.style = style
    table.autofit = False
    table.alignment = WD_TABLE_ALIGNMENT.LEFT
    tbl = table._tbl
    for grid_col, w in zip(tbl.tblGrid.gridCol_lst, widths, strict=True):
        grid_col.w = Cm(w)

    header = table.rows[0]
    trpr = header._tr.get_or_add_trPr()
    # Repeat the header row on every page; never split a row across pages.
    for tag in ("w:tblHeader", "w:cantSplit"):
        el = OxmlElement(tag)
        el.set(qn("w:val"), "true")
        trpr.append(el)
    for cell, text, w in zip(header.cells, data.headers, widths, strict=True):
        cell.width = Cm(w)
        cell._tc.get_or_add_tcPr().append(_shading(HEADER_FILL))
        run = cell.paragraphs[0].add_run(clean_text(text, 500))
        run.bold = True
        run.font.color.rgb = RGBColor(0xFF, 0xFF, 0xFF)

    for row_values in data.rows:
        if len(row_values) != n:
            raise ValueError(f"table row has {len(row_values)} cells, expected {n}: {row_values!r}")
        row = table.add_row()
        for i, (cell, value, w) in enumerate(zip(row.cells, row_values, widths, strict=True)):
            cell.width = Cm(w)
            p = cell.paragraphs[0]
            text = _cell_text(value)
            if text:
                p.add_run(text)
            if i in numeric or (isinstance(value, int | float) and not isinstance(value, bool)):
                p.alignment = WD_ALIGN_PARAGRAPH.RIGHT
    # A table directly followed by a heading looks cramped; an empty paragraph gives air.
    doc.add_paragraph()


def _cover(w: _Writer, meta: DocMeta) -> None:
    w.para(meta.organisation, "Subtitle")
    for _ in range(6):
        w.doc.add_paragraph()
    w.para(meta.title, "Title")
    w.para(meta.cycle, "Subtitle")
    w.doc.add_paragraph()
    rows = (
        ("Organisation", meta.organisation),
        ("Planeringscykel", meta.cycle),
        ("Fas", meta.phase_name),
        ("Mottagare", meta.recipient),
        ("Version", str(meta.version)),
        ("Datum", datum(meta.created)),
        ("Dokument-id", meta.doc_key),
    )
    table = w.doc.add_table(rows=0, cols=2)
    table.autofit = False
    for grid_col, width in zip(table._tbl.tblGrid.gridCol_lst, (4.0, 12.0), strict=True):
        grid_col.w = Cm(width)
    for label, value in rows:
        cells = table.add_row().cells
        cells[0].width, cells[1].width = Cm(4.0), Cm(12.0)
        cells[0].paragraphs[0].add_run(label).bold = True
        cells[1].paragraphs[0].add_run(clean_text(value, 500))
    w.doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)


def _simple_field(paragraph: Paragraph, instr: str, placeholder: str) -> None:
    fld = OxmlElement("w:fldSimple")
    fld.set(qn("w:instr"), instr)
    r = OxmlElement("w:r")
    t = OxmlElement("w:t")
    t.text = placeholder
    r.append(t)
    fld.append(r)
    paragraph._p.append(fld)


def _header_footer(doc: DocxDocument, meta: DocMeta) -> None:
    section = doc.sections[0]
    if section.start_type != WD_SECTION.NEW_PAGE:
        section.start_type = WD_SECTION.NEW_PAGE
    right = Cm(TEXT_WIDTH_CM)

    hp = section.header.paragraphs[0]
    hp.paragraph_format.tab_stops.clear_all()
    hp.paragraph_format.tab_stops.add_tab_stop(right, WD_TAB_ALIGNMENT.RIGHT)
    hp.add_run(clean_text(meta.organisation, 200))
    hp.add_run("\t" + clean_text(meta.title, 200))

    fp = section.footer.paragraphs[0]
    fp.paragraph_format.tab_stops.clear_all()
    fp.paragraph_format.tab_stops.add_tab_stop(right, WD_TAB_ALIGNMENT.RIGHT)
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
    doc = source if isinstance(source, DocxDocument) else Document(source)
    by_label = {_norm(v): k for k, v in (labels or {}).items()}
    style_names = {s.style_id: s.name for s in doc.styles if s.type == WD_STYLE_TYPE.PARAGRAPH}
    answers: dict[str, list[str]] = {}
    current: str | None = None
    for block in doc.element.body.iterchildren():
        if block.tag == qn("w:tbl"):
            if current is not None:
                answers[current].extend(_table_lines(block))
            continue
        if block.tag != qn("w:p"):
            continue
        style = style_names.get(_style_id(block), "")
        marker = _field_bookmark(block)
        text = "".join(t.text or "" for t in block.iter(qn("w:t"))).strip()
        if marker is None and _is_major_heading(style, block):
            marker = by_label.get(_norm(text), "")
        if marker is not None:
            current = marker or None
            if current is not None:
                answers.setdefault(current, [])
            continue
        if current is not None and style != GUIDANCE_STYLE and text:
            answers[current].append(text)
    return {name: "\n".join(lines).strip() for name, lines in answers.items()}


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
    "add_table",
    "build_docx",
    "fields_in_markup",
    "read_fields",
    "read_identifier",
    "write_docx",
]
