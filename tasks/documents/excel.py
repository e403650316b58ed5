"""Excel workbooks for committees to fill in, and reading their identity back.

Layout of every workbook: the sheet "Instruktioner" (how to fill in, in Swedish, plus the
document's metadata), then one sheet per `SheetSpec` (header on row 1, frozen, autofilter,
data from row 2, an optional "Summa" row with SUM formulas right below the data), optional
risk matrices, a hidden sheet "_listor" for long choice lists and the hidden sheet
"_styrkedja" with key/value rows (doc_key, kind, cycle, phase, unit, version, …) by which a
returned workbook is recognised.

Cells the secretary fills in are unlocked and highlighted (pale yellow); everything else is
locked by sheet protection without a password (it prevents mistakes, not intent).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import IO

from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import Cell
from openpyxl.formatting.rule import CellIsRule, FormulaRule
from openpyxl.styles import Alignment, Border, Font, NamedStyle, PatternFill, Protection, Side
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from tasks.documents import layout
from tasks.documents.files import atomic_save
from tasks.documents.model import (
    CellValue,
    ColumnKind,
    ColumnSpec,
    DocMeta,
    Fixed,
    RiskMatrixSpec,
    SheetSpec,
)
from tasks.documents.sanitize import cell_text, clean_text, looks_like_formula

META_SHEET = "_styrkedja"
LISTS_SHEET = "_listor"
INSTRUCTIONS_SHEET = "Instruktioner"

FMT_SEK = '#,##0 "tkr"'
FMT_INT = "#,##0"
FMT_PERCENT = "0.0%"
FMT_DATE = "yyyy-mm-dd"

FONT = "Calibri"
LINE_HEIGHT = 15.0  # points per text line at 11 pt
FILL_INPUT = "FFF6D5"
FILL_HEADER = "1F3864"
GREEN, YELLOW, ORANGE, RED = "C6EFCE", "FFEB9C", "F8CBAD", "FFC7CE"

PROBABILITY = ("1 – Osannolik", "2 – Mindre sannolik", "3 – Möjlig", "4 – Sannolik")
CONSEQUENCE = ("1 – Försumbar", "2 – Lindrig", "3 – Kännbar", "4 – Allvarlig")

_NUMBER_FORMAT = {"sek": FMT_SEK, "int": FMT_INT, "number": "General", "percent": FMT_PERCENT, "date": FMT_DATE}
_SHEET_BAD = str.maketrans({c: "_" for c in "[]:*?/\\"})


def _named_styles() -> list[NamedStyle]:
    # Fresh objects per workbook: a NamedStyle binds to the workbook it is added to.
    thin = Side(style="thin", color="BFBFBF")
    grid = Border(left=thin, right=thin, top=thin, bottom=thin)
    locked, unlocked = Protection(locked=True), Protection(locked=False)
    input_fill = PatternFill("solid", fgColor=FILL_INPUT)
    top = Alignment(vertical="top", wrap_text=True)
    plain = Font(name=FONT, size=11)
    styles = [
        NamedStyle(
            "sk_header",
            font=Font(name=FONT, bold=True, color="FFFFFF"),
            fill=PatternFill("solid", fgColor=FILL_HEADER),
            alignment=Alignment(vertical="center", wrap_text=True),
            border=grid,
            protection=locked,
        ),
        NamedStyle(
            "sk_total",
            font=Font(name=FONT, bold=True),
            number_format=FMT_SEK,
            border=Border(top=Side(style="medium"), bottom=Side(style="double")),
            protection=locked,
        ),
        NamedStyle(
            "sk_total_text",
            font=Font(name=FONT, bold=True),
            border=Border(top=Side(style="medium"), bottom=Side(style="double")),
            protection=locked,
        ),
        NamedStyle("sk_title", font=Font(name=FONT, bold=True, size=14), protection=locked),
        NamedStyle("sk_label", font=Font(name=FONT, bold=True), alignment=top, protection=locked),
    ]
    for kind in ("text", "sek", "int", "number", "percent", "date"):
        fmt = _NUMBER_FORMAT.get(kind, "General")
        align = top if kind == "text" else Alignment(vertical="top")
        styles.append(
            NamedStyle(f"sk_{kind}", font=plain, number_format=fmt, alignment=align, border=grid, protection=locked)
        )
        styles.append(
            NamedStyle(
                f"sk_input_{kind}",
                font=plain,
                number_format=fmt,
                alignment=align,
                border=grid,
                fill=input_fill,
                protection=unlocked,
            )
        )
    return styles


def _style_kind(col: ColumnSpec) -> str:
    kind: ColumnKind = col.result if col.kind == "formula" else col.kind
    return "text" if kind in ("text", "choice", "formula") else kind


def sheet_title(name: str) -> str:
    """A valid worksheet name: at most 31 characters, none of []:*?/\\."""
    title = clean_text(name, 200).replace("\n", " ").translate(_SHEET_BAD).strip("' ")
    return (title or "Blad")[:31]


def put(cell: Cell, value: CellValue) -> None:
    """Write a value; strings are cleaned and formula-like ones forced to stay text."""
    if isinstance(value, str):
        text = cell_text(value)
        cell.value = text
        if looks_like_formula(text):
            # See sanitize: an explicit string cell plus quotePrefix is never evaluated.
            cell.data_type = "s"
            cell.quotePrefix = True
    elif isinstance(value, datetime):
        cell.value = value.date()
    else:
        cell.value = value


class _Refs(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise KeyError(f"formula refers to unknown column key {key!r}")


def _protect(ws: Worksheet) -> None:
    p = ws.protection
    p.sheet = True
    # False = allowed while protected: resize columns/rows, filter and sort.
    p.formatColumns = p.formatRows = p.autoFilter = p.sort = False


def _print_setup(ws: Worksheet, meta: DocMeta, landscape: bool = True) -> None:
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    # "&" starts a header/footer code; a literal one is doubled.
    ws.oddHeader.left.text = clean_text(meta.organisation, 100).replace("&", "&&")
    ws.oddHeader.right.text = clean_text(meta.title, 100).replace("&", "&&")
    ws.oddFooter.left.text = f"{meta.cycle} · Version {meta.version}".replace("&", "&&")
    ws.oddFooter.right.text = "Sida &P av &N"


class _Builder:
    def __init__(self, meta: DocMeta) -> None:
        self.meta = meta
        self.wb = Workbook()
        for style in _named_styles():
            self.wb.add_named_style(style)
        self.lists: Worksheet | None = None
        self.list_col = 0
        self.list_refs: dict[tuple[str, ...], str] = {}
        # requested sheet name -> (actual title, column key -> letter, first and last data row)
        self.layout: dict[str, tuple[str, dict[str, str], int, int]] = {}
        self.titles: set[str] = set()

    def unique_title(self, name: str) -> str:
        base = sheet_title(name)
        title, n = base, 2
        while title.casefold() in self.titles:
            suffix = f" ({n})"
            title, n = base[: 31 - len(suffix)] + suffix, n + 1
        self.titles.add(title.casefold())
        return title

    # -- instructions ---------------------------------------------------------

    def instructions(self, text: str) -> None:
        ws = self.wb.active
        ws.title = self.unique_title(INSTRUCTIONS_SHEET)
        ws.column_dimensions["A"].width = 22
        ws.column_dimensions["B"].width = 100
        ws.sheet_view.showGridLines = False
        meta = self.meta
        ws["A1"].style = "sk_title"
        put(ws["A1"], meta.title)
        put(ws["A2"], meta.cycle)
        rows: list[tuple[str, CellValue]] = [
            ("Organisation", meta.organisation),
            ("Mottagare", meta.recipient),
            ("Fas", meta.phase_name),
            ("Version", meta.version),
            ("Datum", meta.created),
        ]
        r = 4
        for label, value in rows:
            ws.cell(r, 1).style = "sk_label"
            put(ws.cell(r, 1), label)
            cell = ws.cell(r, 2)
            put(cell, value)
            if isinstance(value, date):
                cell.number_format = FMT_DATE
            cell.alignment = Alignment(horizontal="left")
            r += 1
        r += 1
        for raw in clean_text(text, 200_000).split("\n"):
            line = raw.rstrip()
            if line.startswith("#"):
                cell = ws.cell(r, 1)
                cell.style = "sk_label"
                put(cell, line.lstrip("#").strip())
            elif line.strip():
                cell = ws.cell(r, 2)
                cell.alignment = Alignment(wrap_text=True, vertical="top")
                value = "• " + line.strip()[2:] if line.lstrip().startswith("- ") else line.strip()
                put(cell, value)
                if len(value) > 95:
                    ws.row_dimensions[r].height = LINE_HEIGHT * min(-(-len(value) // 95), 12)
            r += 1
        _protect(ws)
        _print_setup(ws, meta, landscape=False)

    # -- data sheets ----------------------------------------------------------

    def data_sheet(self, spec: SheetSpec) -> None:
        ws = self.wb.create_sheet(self.unique_title(spec.name))
        cols = _fitted_columns(spec)
        letters = [get_column_letter(i) for i in range(1, len(cols) + 1)]
        keys = {c.key: letters[i] for i, c in enumerate(cols) if c.key}

        for i, col in enumerate(cols):
            cell = ws.cell(1, i + 1)
            cell.style = "sk_header"
            put(cell, col.header)
            ws.column_dimensions[letters[i]].width = col.width
        # Header text wraps; give the row room for the longest header.
        header_lines = max(-(-len(c.header) // max(int(c.width * 1.1) - 1, 1)) for c in cols)
        ws.row_dimensions[1].height = LINE_HEIGHT * max(2, min(header_lines, 5)) + 2

        n_rows = len(spec.rows) + spec.blank_rows
        first, last = 2, 1 + n_rows
        locked_styles = [f"sk_{_style_kind(c)}" for c in cols]
        input_styles = [
            locked_styles[i] if c.kind == "formula" else f"sk_input_{_style_kind(c)}" for i, c in enumerate(cols)
        ]
        styles = [input_styles[i] if c.editable else locked_styles[i] for i, c in enumerate(cols)]
        # Blank rows are rows to fill: every column except formulas is open there.
        first_blank = first + len(spec.rows)
        fixed_cells: list[set[int]] = [set() for _ in cols]
        base_refs = {f"{k}_col": v for k, v in keys.items()} | {"first": str(first), "last": str(last)}
        blank: tuple[CellValue, ...] = tuple(None for _ in cols)

        for offset in range(n_rows):
            r = first + offset
            values = spec.rows[offset] if offset < len(spec.rows) else blank
            if offset < len(spec.rows):
                _fit_height(ws, r, values, cols)
            if len(values) != len(cols):
                raise ValueError(f"sheet {spec.name!r} row {offset + 1}: {len(values)} values, {len(cols)} columns")
            refs = _Refs(base_refs, row=str(r))
            refs.update({k: f"{v}{r}" for k, v in keys.items()})
            for i, (col, value) in enumerate(zip(cols, values, strict=True)):
                cell = ws.cell(r, i + 1)
                if isinstance(value, Fixed):
                    cell.style = locked_styles[i]
                    put(cell, value.value)
                    fixed_cells[i].add(r)
                    continue
                cell.style = input_styles[i] if r >= first_blank else styles[i]
                if col.kind == "formula" and col.formula and value is None:
                    cell.value = col.formula.format_map(refs)
                else:
                    put(cell, value)
                if col.number_format:
                    cell.number_format = col.number_format

        if spec.totals and n_rows:
            total_row = last + 1
            for i, col in enumerate(cols):
                cell = ws.cell(total_row, i + 1)
                wants_total = col.total if col.total is not None else _style_kind(col) == "sek"
                if i == 0:
                    cell.style = "sk_total_text"
                    cell.value = "Summa"
                elif wants_total:
                    cell.style = "sk_total"
                    kind = _style_kind(col)
                    if kind != "sek":
                        cell.number_format = _NUMBER_FORMAT.get(kind, "General")
                    cell.value = f"=SUM({letters[i]}{first}:{letters[i]}{last})"
                else:
                    cell.style = "sk_total_text"

        ws.freeze_panes = "A2"
        ws.auto_filter.ref = f"A1:{letters[-1]}{max(last, 1)}"
        if n_rows:
            for i, col in enumerate(cols):
                start = first if col.editable else first_blank
                if col.kind != "formula" and start <= last:
                    self.validate(ws, col, letters[i], start, last, fixed_cells[i])
                self.highlight(ws, col, letters[i], first, last)
        self.layout[spec.name] = (ws.title, keys, first, last)
        _protect(ws)
        _print_setup(ws, self.meta)
        ws.print_title_rows = "1:1"

    def choice_formula(self, choices: tuple[str, ...]) -> str:
        inline = ",".join(choices)
        if len(inline) <= 200 and not any(set(c) & {",", '"'} for c in choices):
            return f'"{inline}"'
        # Excel caps inline lists at 255 characters and cannot escape commas: use a range.
        if choices in self.list_refs:
            return self.list_refs[choices]
        if self.lists is None:
            self.lists = self.wb.create_sheet(LISTS_SHEET)
            self.lists.sheet_state = "hidden"
            _protect(self.lists)
        self.list_col += 1
        letter = get_column_letter(self.list_col)
        for r, choice in enumerate(choices, start=1):
            put(self.lists.cell(r, self.list_col), choice)
        ref = f"{quote_sheetname(LISTS_SHEET)}!${letter}$1:${letter}${len(choices)}"
        self.list_refs[choices] = ref
        return ref

    def validate(self, ws: Worksheet, col: ColumnSpec, letter: str, first: int, last: int, skip: set[int]) -> None:
        dv: DataValidation | None = None
        if col.kind == "choice" and col.choices:
            dv = DataValidation(type="list", formula1=self.choice_formula(col.choices), allow_blank=True)
            dv.error = "Välj ett av värdena i listan."
        elif col.kind == "int":
            lo, hi = col.bounds or (-(10**12), 10**12)
            dv = DataValidation(
                type="whole", operator="between", formula1=str(int(lo)), formula2=str(int(hi)), allow_blank=True
            )
            dv.error = f"Ange ett heltal mellan {int(lo)} och {int(hi)}." if col.bounds else "Ange ett heltal."
            if col.bounds:
                dv.promptTitle, dv.prompt = col.header[:32], f"Heltal {int(lo)}–{int(hi)}"
        elif col.kind in ("sek", "number", "percent"):
            lo, hi = col.bounds or (-1e12, 1e12)
            dv = DataValidation(
                type="decimal", operator="between", formula1=repr(lo), formula2=repr(hi), allow_blank=True
            )
            dv.error = {
                "sek": "Ange ett belopp i tusentals kronor (tkr).",
                "percent": "Ange en procentsats, t.ex. 5 %.",
            }.get(col.kind, "Ange ett tal.")
        elif col.kind == "date":
            # Excel serial numbers of 1 January 2000 and 31 December 2099.
            dv = DataValidation(type="date", operator="between", formula1="36526", formula2="73050", allow_blank=True)
            dv.error = "Ange ett datum som ÅÅÅÅ-MM-DD."
        if dv is None:
            return
        dv.errorTitle = "Ogiltigt värde"
        dv.showErrorMessage = True
        dv.showInputMessage = bool(dv.prompt)
        if skip:
            for r in range(first, last + 1):
                if r not in skip:
                    dv.add(f"{letter}{r}")
        else:
            dv.add(f"{letter}{first}:{letter}{last}")
        if dv.sqref:
            ws.add_data_validation(dv)

    def highlight(self, ws: Worksheet, col: ColumnSpec, letter: str, first: int, last: int) -> None:
        if col.highlight is None:
            return
        ref = f"{letter}{first}:{letter}{last}"
        cf = ws.conditional_formatting
        fill = _fill
        if col.highlight == "traffic_light":
            for value, colour in (("Grön", GREEN), ("Gul", YELLOW), ("Röd", RED)):
                cf.add(ref, CellIsRule(operator="equal", formula=[f'"{value}"'], fill=fill(colour)))
        elif col.highlight == "risk":
            for lo, hi, colour in ((1, 2, GREEN), (3, 4, YELLOW), (5, 8, ORANGE), (9, 16, RED)):
                cf.add(ref, CellIsRule(operator="between", formula=[str(lo), str(hi)], fill=fill(colour)))
        elif col.highlight == "deviation" and col.threshold is not None:
            top = f"{letter}{first}"
            rule = FormulaRule(formula=[f"AND(ISNUMBER({top}),ABS({top})>{col.threshold!r})"], fill=fill(RED))
            cf.add(ref, rule)

    # -- risk matrix ------------------------------------------------------------

    def risk_matrix(self, spec: RiskMatrixSpec) -> None:
        ws = self.wb.create_sheet(self.unique_title(spec.name))
        title, keys, first, last = self.layout[spec.source_sheet]
        src = quote_sheetname(title)
        p_col, c_col = keys[spec.prob_column], keys[spec.cons_column]
        p_rng = f"{src}!${p_col}${first}:${p_col}${last}"
        c_rng = f"{src}!${c_col}${first}:${c_col}${last}"
        ws.sheet_view.showGridLines = False
        ws["A1"].style = "sk_title"
        put(ws["A1"], "Riskmatris – antal risker per sannolikhet och konsekvens")
        put(ws["A2"], f"Räknas fram ur bladet {spec.source_sheet}; fyll i risker där, inte här.")
        ws.column_dimensions["A"].width = 14
        ws.column_dimensions["B"].width = 22
        for letter in "CDEF":
            ws.column_dimensions[letter].width = 16
        ws["C4"].style = "sk_label"
        put(ws["C4"], "Konsekvens →")
        for j, label in enumerate(CONSEQUENCE):
            cell = ws.cell(5, 3 + j)
            cell.style = "sk_header"
            put(cell, label)
        ws["A6"].style = "sk_label"
        put(ws["A6"], "Sannolikhet ↓")
        thin = Side(style="thin", color="7F7F7F")
        box = Border(left=thin, right=thin, top=thin, bottom=thin)
        for i, prob in enumerate(range(4, 0, -1)):
            r = 6 + i
            cell = ws.cell(r, 2)
            cell.style = "sk_header"
            put(cell, PROBABILITY[prob - 1])
            ws.row_dimensions[r].height = 36
            for cons in range(1, 5):
                cell = ws.cell(r, 2 + cons)
                cell.value = f"=COUNTIFS({p_rng},{prob},{c_rng},{cons})"
                cell.fill = _fill(_risk_colour(prob * cons))
                cell.border = box
                cell.font = Font(bold=True, size=12)
                cell.alignment = Alignment(horizontal="center", vertical="center")
        put(ws["B11"], "Riskvärde = sannolikhet × konsekvens")
        for i, (label, colour) in enumerate(
            (
                ("1–2 Låg risk", GREEN),
                ("3–4 Måttlig risk", YELLOW),
                ("6–8 Hög risk", ORANGE),
                ("9–16 Mycket hög risk", RED),
            )
        ):
            cell = ws.cell(12 + i, 2)
            put(cell, label)
            cell.fill = _fill(colour)
        _protect(ws)
        _print_setup(ws, self.meta)

    # -- identity -------------------------------------------------------------

    def identity(self) -> None:
        meta = self.meta
        ws = self.wb.create_sheet(META_SHEET)
        for r, (key, value) in enumerate(meta_rows(meta), start=1):
            put(ws.cell(r, 1), key)
            put(ws.cell(r, 2), value)
        ws.sheet_state = "hidden"
        _protect(ws)
        props = self.wb.properties
        props.title = clean_text(meta.title, 255)
        props.subject = clean_text(f"{meta.phase_name} – {meta.cycle}", 255)
        props.creator = clean_text(meta.organisation, 255)
        props.lastModifiedBy = "Styrkedja"
        props.identifier = meta.doc_key
        props.version = str(meta.version)
        props.category = meta.kind
        props.language = "sv-SE"
        props.description = clean_text(f"Mottagare: {meta.recipient}", 255)
        props.keywords = "; ".join(
            ("styrkedja", meta.kind, meta.phase_id, str(meta.plan_year), meta.unit_id, f"v{meta.version}")
        )
        props.created = props.modified = datetime(meta.created.year, meta.created.month, meta.created.day)
        # openpyxl stores no cached results; make Excel compute every formula on opening.
        self.wb.calculation.fullCalcOnLoad = True


# Calibri 11 (the workbook's font; Carlito in LibreOffice): one width unit is about one digit.
_DIGIT_CM = layout.text_cm("0", 11)


def _fitted_columns(spec: SheetSpec) -> tuple[ColumnSpec, ...]:
    """The columns, each at least as wide as its longest word (header in bold, and the text it
    is sent with), so that wrapped text breaks between words, never inside one."""
    out = []
    for i, col in enumerate(spec.columns):
        texts = [str(v.value if isinstance(v, Fixed) else v) for r in spec.rows if isinstance((v := r[i]), str | Fixed)]
        need = max(
            layout.longest_piece_cm(col.header, 11, bold=True),
            *(layout.longest_piece_cm(t, 11) for t in texts if t and t != "None"),
            0.0,
        )
        units = need / _DIGIT_CM + 1.5
        out.append(col if units <= col.width else dataclasses.replace(col, width=round(units, 1)))
    return tuple(out)


def _fit_height(ws: Worksheet, row: int, values: Sequence[object], cols: Sequence[ColumnSpec]) -> None:
    # Neither Excel nor LibreOffice grows a row for wrapped text in a file they did not save,
    # so the height is estimated from the text length and the column width.
    lines = 1
    for value, col in zip(values, cols, strict=True):
        if isinstance(value, Fixed):
            value = value.value
        if isinstance(value, str) and len(value) > col.width:
            lines = max(lines, sum(-(-max(len(part), 1) // max(int(col.width * 1.1), 1)) for part in value.split("\n")))
    if lines > 1:
        ws.row_dimensions[row].height = LINE_HEIGHT * min(lines, 12)


def _fill(colour: str) -> PatternFill:
    return PatternFill("solid", fgColor=colour, bgColor=colour)


def _risk_colour(value: int) -> str:
    return GREEN if value <= 2 else YELLOW if value <= 4 else ORANGE if value <= 8 else RED


def meta_rows(meta: DocMeta) -> list[tuple[str, str]]:
    return [
        ("doc_key", meta.doc_key),
        ("kind", meta.kind),
        ("cycle", str(meta.plan_year)),
        ("horizon_end", str(meta.horizon_end)),
        ("phase", meta.phase_id),
        ("unit", meta.unit_id),
        ("version", str(meta.version)),
        ("organisation", meta.organisation),
        ("created", meta.created.isoformat()),
        ("format", "1"),
    ]


def build_xlsx(meta: DocMeta, sheets: Sequence[SheetSpec | RiskMatrixSpec], instructions: str) -> Workbook:
    b = _Builder(meta)
    b.instructions(instructions)
    for spec in sheets:
        if isinstance(spec, RiskMatrixSpec):
            b.risk_matrix(spec)
        else:
            b.data_sheet(spec)
    b.identity()
    b.wb.active = 0
    return b.wb


def write_xlsx(path: Path, meta: DocMeta, sheets: Sequence[SheetSpec | RiskMatrixSpec], instructions: str) -> None:
    """Write the workbook atomically (temporary file in the same folder, then rename)."""
    wb = build_xlsx(meta, sheets, instructions)
    atomic_save(Path(path), wb.save)


def read_xlsx_meta(source: str | Path | IO[bytes]) -> dict[str, str]:
    """The key/value rows of the hidden "_styrkedja" sheet ({} when the sheet is missing)."""
    wb = load_workbook(source, read_only=True, data_only=True)
    try:
        if META_SHEET not in wb.sheetnames:
            return {}
        out: dict[str, str] = {}
        for key, value, *_ in wb[META_SHEET].iter_rows(min_col=1, max_col=2, values_only=True):
            if isinstance(key, str) and value is not None:
                out[key] = str(value)
        return out
    finally:
        wb.close()


__all__ = [
    "INSTRUCTIONS_SHEET",
    "META_SHEET",
    "build_xlsx",
    "meta_rows",
    "put",
    "read_xlsx_meta",
    "sheet_title",
    "write_xlsx",
]
