"""Plain data passed between the document catalog and the Word/Excel writers.

Frozen dataclasses of tuples, strings, numbers and dates only: cheap to build, safe to share
between documents (nothing is copied), picklable for a process pool, and trivially turned
into canonical JSON for the content hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

ColumnKind = Literal["text", "sek", "int", "number", "percent", "date", "choice", "formula"]
Format = Literal["docx", "xlsx"]
Highlight = Literal["traffic_light", "risk", "deviation"]
CellValue = str | int | float | date | None


@dataclass(frozen=True)
class DocMeta:
    organisation: str
    plan_year: int
    horizon_end: int
    phase_id: str
    phase_name: str
    kind: str
    title: str
    unit_id: str
    recipient: str  # the receiving unit's name, shown on the cover
    version: int
    doc_key: str
    created: date

    @property
    def cycle(self) -> str:
        return f"Planår {self.plan_year}, planperiod {self.plan_year}–{self.horizon_end}"

    def hashable(self) -> dict[str, object]:
        """Every field except `created`: re-rendering the same content tomorrow keeps the hash."""
        data = dataclasses.asdict(self)
        del data["created"]
        return data


@dataclass(frozen=True)
class TableData:
    headers: tuple[str, ...]
    rows: tuple[tuple[CellValue, ...], ...]
    # Column widths in centimetres; None lets Word share the text width equally.
    widths: tuple[float, ...] | None = None
    # Columns to right-align (numbers).
    numeric: tuple[int, ...] = ()


@dataclass(frozen=True)
class Picture:
    """A PNG placed in a Word document by a [[picture:name]] line, `width_cm` wide (the height follows)."""

    png: bytes
    width_cm: float
    caption: str = ""


@dataclass(frozen=True)
class Fixed:
    """A cell value that stays locked and unvalidated even in an editable column.

    Used where one row of a fill-in column does not apply, e.g. "Avstår" on a goal that
    may not be opted out of.
    """

    value: CellValue


@dataclass(frozen=True)
class ColumnSpec:
    header: str
    kind: ColumnKind = "text"
    width: float = 14.0  # Excel character units
    choices: tuple[str, ...] | None = None
    editable: bool = False
    # Identifier used by formula templates of other columns, e.g. "prob".
    key: str | None = None
    # For kind "formula": a template such as "={prob}*{cons}"; {key} becomes the cell of that
    # column on the same row, {key_col} its column letter, {row} the row number and
    # {first}/{last} the first and last data rows. Literal braces are doubled.
    formula: str | None = None
    # Number format of a formula's result: one of the non-formula kinds.
    result: ColumnKind = "int"
    # Whole-number (int) or decimal (sek, number, percent) bounds enforced by data validation.
    bounds: tuple[float, float] | None = None
    # Overrides the kind's number format, e.g. "0.00" for a weighted score.
    number_format: str | None = None
    # Sum in the totals row; None means automatic (SEK columns and SEK formulas).
    total: bool | None = None
    highlight: Highlight | None = None
    # For highlight "deviation": absolute fraction (0.05 = 5 %) above which a cell turns red.
    threshold: float | None = None


def follow_up_figure_columns(threshold: float, *, editable: bool) -> tuple[ColumnSpec, ...]:
    """Post, budget, outcome, forecast and the deviation in SEK and per cent, flagged beyond
    `threshold` (a fraction): one definition for a unit's return and a level's report, so the
    deviation a unit sees is the one its level sums."""

    def col(header: str, kind: str = "text", width: float = 14, **kw: object) -> ColumnSpec:
        return ColumnSpec(header=header, kind=kind, width=width, **kw)  # type: ignore[arg-type]

    return (
        col("Post", width=24),
        col("Budget helår", "sek", 15, editable=editable, key="b"),
        col("Utfall hittills", "sek", 15, editable=editable),
        col("Prognos helår", "sek", 15, editable=editable, key="f"),
        col("Avvikelse", "formula", 14, formula='=IF(N({f})=0,"",{b}-{f})', result="sek"),
        col(
            "Avvikelse %",
            "formula",
            12,
            formula='=IF(OR(N({b})=0,N({f})=0),"",({b}-{f})/ABS({b}))',
            result="percent",
            highlight="deviation",
            threshold=threshold,
        ),
    )


@dataclass(frozen=True)
class SheetSpec:
    name: str
    columns: tuple[ColumnSpec, ...]
    rows: tuple[tuple[CellValue | Fixed, ...], ...] = ()
    totals: bool = False
    # Extra empty rows the secretary fills in (formulas and validation included).
    blank_rows: int = 0


@dataclass(frozen=True)
class RiskMatrixSpec:
    """A 4×4 probability × consequence matrix that counts the risks of another sheet."""

    name: str
    source_sheet: str
    prob_column: str  # key of the probability column in the source sheet
    cons_column: str  # key of the consequence column


@dataclass(frozen=True)
class RenderedDoc:
    kind: str
    phase_id: str
    unit_id: str
    version: int
    relpath: str  # posix, relative to the output root
    format: Format
    content_hash: str
    doc_key: str
    title: str
    # Canonical JSON of what a return is read against, for documents built from data rather than
    # from the configuration alone (level reports); None for the catalog's documents.
    spec: dict[str, object] | None = None


@dataclass(frozen=True)
class DocRequest:
    kind: str
    phase_id: str
    unit_id: str
    version: int = 1
    # Phase-specific data as sorted (key, value) pairs, e.g. (("occasion", "delår 31 augusti"),).
    extra: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        # Accept a mapping or unsorted pairs but store one canonical, hashable form.
        extra = self.extra
        if isinstance(extra, Mapping):
            extra = tuple(extra.items())
        object.__setattr__(self, "extra", tuple(sorted((str(k), str(v)) for k, v in extra)))

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.extra:
            if k == key:
                return v
        return default


def _canonical(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__type": type(value).__name__, **data}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):  # a picture: its digest stands for it
        return {"sha256": hashlib.sha256(value).hexdigest()}
    return value


def canonical(value: object) -> object:
    """`value` as the JSON the content hash is taken of (dataclasses tagged with their type)."""
    return _canonical(value)


_DECODABLE = {c.__name__: c for c in (DocMeta, TableData, ColumnSpec, SheetSpec, RiskMatrixSpec, Fixed)}


def from_canonical(value: object) -> object:
    """The inverse of `canonical` for the writers' data (not pictures): tagged dicts become their
    dataclasses, lists tuples, and DocMeta's date a date again."""
    if isinstance(value, list):
        return tuple(from_canonical(v) for v in value)
    if not isinstance(value, dict):
        return value
    kind = value.get("__type")
    if kind is None:
        return {k: from_canonical(v) for k, v in value.items()}
    cls = _DECODABLE.get(str(kind))
    if cls is None:
        raise ValueError(f"cannot rebuild a {kind} from stored JSON")
    data = {k: from_canonical(v) for k, v in value.items() if k != "__type"}
    if cls is DocMeta:
        data["created"] = date.fromisoformat(str(data["created"]))
    return cls(**data)


def content_hash(payload: object) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace) of the inputs of one document."""
    text = json.dumps(_canonical(payload), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
