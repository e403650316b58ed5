"""Returns: committees fill in the documents they received and send them back; the answers become data.

A returned file is untrusted input. It is checked in this order, and the first problem stops it
with one `UserError` line naming the file, the place (field, sheet, cell) and the value:

1. The file itself, before python-docx or openpyxl sees it: at most 20 MB, a zip, no zip bomb
   (the sum of the uncompressed sizes and each large member's compression ratio, from the
   central directory: Python's zipfile never inflates a member past its declared size and checks
   its CRC, so the declared sizes bound what the readers can be made to unpack), no macros
   (vbaProject.bin, ActiveX, .docm/.xlsm content types), no DTDs (entity expansion), and the
   characters XML 1.0 cannot hold removed from every XML part.
2. Its identity: the document id embedded at rendering (Word: core property `identifier`;
   Excel: the hidden sheet "_styrkedja" and the workbook properties) names organisation, plan
   year, phase, unit, kind and version. Every other place that repeats a part of it (keywords,
   category, the cover table, the title) must agree, or the file is refused as tampered with: a
   unit cannot hand in another unit's document by editing one property.
3. The database: the Document row with that key, and the receipts of the handoffs that carry
   it. A version that a dispute has replaced is refused, naming both versions.
4. The content, against what `catalog.expected` says the document holds: Word fields present,
   none unknown, none empty; Excel sheets and headers as sent, locked cells unchanged, numbers
   numbers within their bounds, dates dates, choices from the list, required columns filled and
   every "Summa" (and row sum) equal to our own sum of the data cells. openpyxl does not compute
   formulas, so we add up ourselves and compare with whatever value the file carries there: a
   number typed over the formula, or the result Excel/LibreOffice cached when saving.
5. One transaction: a Submission (the answers as entered, cleaned) and, when every fill-in
   document of a handoff is in, its receipt moves issued → acknowledged, each with an audit entry.
   A refusal stores nothing at all.

Re-submission policy. The same file again is a no-op that returns the first Submission. A changed
file for the same document is a new Submission that replaces the earlier one (the newest counts)
as long as the receiver has not decided: its receipts are issued or acknowledged. Once a receipt
of that version is agreed, a changed file is refused: the receiver signed on what it read, so a
change needs a dispute and a new version. A disputed version is refused until the new version
arrives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import re
import stat
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from docx import Document as open_docx
from lxml import etree
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import from_excel
from sqlmodel import Session, select

from config.schema import OrgConfig
from models.db import output_root, session_scope, with_retry
from models.errors import UserError
from models.tables import Document, HandoffMode, Receipt, ReceiptState, Submission, utcnow
from tasks.audit import audit
from tasks.documents import catalog, word
from tasks.documents.catalog import DocRequest, Expected
from tasks.documents.excel import INSTRUCTIONS_SHEET, META_SHEET, sheet_title
from tasks.documents.files import atomic_save
from tasks.documents.model import ColumnSpec, Fixed, SheetSpec, content_hash
from tasks.documents.returned import Returned
from tasks.documents.sanitize import MAX_CELL_CHARS, clean_text, safe_filename, safe_path
from tasks.followup_calendar import find_occasion
from tasks.handoffs import handoffs_for_phase, topic_kind
from tasks.messages import queue_delivery
from tasks.receipts import acknowledge, occasion_of

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_UNCOMPRESSED_BYTES = 100 * 1024 * 1024
MAX_MEMBERS = 2_000
# Above this size a member may be compressed at most MAX_RATIO:1; small XML parts compress
# well and are harmless whatever their ratio.
RATIO_MIN_BYTES = 1024 * 1024
MAX_RATIO = 100
MAX_FIELD_CHARS = 50_000  # one answer in a Word field: about 25 pages

DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
XLSX_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
_CT_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"
_SUFFIX = {"docx": ".docx", "xlsx": ".xlsx"}
_FORMAT_SV = {"docx": "ett Word-dokument", "xlsx": "en Excel-arbetsbok"}
_MAGIC = (
    (b"\x89PNG", "en PNG-bild"),
    (b"\xff\xd8\xff", "en JPEG-bild"),
    (b"GIF8", "en GIF-bild"),
    (b"%PDF", "en PDF-fil"),
    (b"{\\rtf", "ett RTF-dokument"),
    # OLE compound file: an encrypted (password-protected) Office file or the old .doc/.xls format.
    (b"\xd0\xcf\x11\xe0", "ett lösenordsskyddat dokument eller en fil i det gamla formatet (.doc/.xls)"),
)

# XML 1.0 cannot hold these. In UTF-8 the bytes 0x00-0x1F are always these ASCII characters, so
# removing them byte-wise is safe; U+FFFE/U+FFFF and encoded surrogates likewise.
_BAD_XML_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]|\xef\xbf[\xbe\xbf]|\xed[\xa0-\xbf][\x80-\xbf]")
_BAD_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")
_CHAR_REF_TEXT = re.compile(r"&#(?:[xX][0-9a-fA-F]{1,8}|[0-9]{1,10});")
# OOXML escapes characters XML cannot hold in spreadsheet strings as _xHHHH_ (ECMA-376 ST_Xstring).
_XSTRING_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_DOC_KEY = re.compile(
    r"^(?P<org>[^/]+)/(?P<year>\d{4})/(?P<phase>[a-z_]+)/(?P<unit>[A-Za-z0-9][A-Za-z0-9_-]*)/"
    r"(?P<kind>[a-z_]+)(?:-(?P<occasion>[a-z0-9-]+))?/v(?P<version>\d{1,4})$"
)
_NUMBER = re.compile(r"^[+-]?(\d+)([.,]\d+)?$")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmissionResult:
    submission_id: int
    document_key: str
    document_title: str
    kind: str
    unit_id: str
    version: int
    file_hash: str
    created: bool  # False: this exact file was recorded before; nothing changed
    replaces: int | None  # the earlier submission of the same document this one replaces
    acknowledged: tuple[str, ...]  # receipt keys moved issued → acknowledged by this submission
    waiting_for: tuple[str, ...]  # documents of the handoff still to come before its receipt is acknowledged
    content: dict[str, Any]


def _fail(name: str, where: str, problem: str) -> UserError:
    return UserError(f"{name}: {where}: {problem}" if where else f"{name}: {problem}")


def _show(value: object, limit: int = 60) -> str:
    """A value for a one-line message: quoted, on one line, cut when long."""
    if isinstance(value, datetime | date):
        value = value.isoformat()[:10]
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"'{text}'"


# ---------------------------------------------------------------------------------------------
# 1. The file: size, zip structure, bombs, macros, DTDs, XML-invalid characters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """A file that passed the package checks: its format and bytes that are safe to open."""

    name: str
    format: str  # "docx" | "xlsx"
    data: bytes
    removed_chars: int  # characters XML cannot hold, removed from the XML parts


def read_limited(path: Path) -> bytes:
    name = path.name
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise _fail(name, "", "filen finns inte") from None
    if not path.is_file() or path.is_symlink():
        raise _fail(name, "", "är ingen vanlig fil (en mapp eller en länk tas inte emot)")
    if st.st_size > MAX_FILE_BYTES:
        raise _fail(name, "", f"filen är {_mb(st.st_size)}; högst {_mb(MAX_FILE_BYTES)} tas emot")
    # The name may be swapped for a FIFO, device or link between the checks above and the open:
    # open without following links and without blocking, then judge what was really opened.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _fail(name, "", "filen finns inte") from None
    except OSError:
        raise _fail(name, "", "är ingen vanlig fil (en mapp eller en länk tas inte emot)") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise _fail(name, "", "är ingen vanlig fil (en mapp eller en länk tas inte emot)")
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise _fail(name, "", f"filen är större än {_mb(MAX_FILE_BYTES)}")
    return data


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB".replace(".", ",") if n < 1024**3 else f"{n / 1024**3:.1f} GB".replace(".", ",")


def inspect_package(data: bytes, name: str) -> Package:
    """Check a file before any document library opens it; see the module doc, step 1."""
    suffix = Path(name).suffix.lower()
    if suffix in (".docm", ".xlsm", ".dotm", ".xltm"):
        raise _fail(name, "", f"filer med makron ({suffix}) tas inte emot; spara som .docx eller .xlsx")
    if len(data) > MAX_FILE_BYTES:
        raise _fail(name, "", f"filen är {_mb(len(data))}; högst {_mb(MAX_FILE_BYTES)} tas emot")
    if not data.startswith(b"PK"):
        what = next((w for magic, w in _MAGIC if data.startswith(magic)), None)
        if what is None:
            what = "tom" if not data else "text eller ett annat format"
            raise _fail(name, "", f"är inte ett Word- eller Excel-dokument (innehållet är {what})")
        raise _fail(name, "", f"är {what}, inte ett Word- eller Excel-dokument (.docx/.xlsx)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            _check_members(name, infos)
            fmt = _format(name, zf, {i.filename for i in infos})
            parts, removed = _read_parts(name, zf, infos)
        _check_active(name, parts)
    except UserError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, KeyError) as exc:
        raise _fail(name, "", f"filen är skadad eller avkortad och kan inte läsas ({_zip_problem(exc)})") from None
    if suffix != _SUFFIX[fmt]:
        raise _fail(name, "", f"filändelsen {suffix or '(ingen)'} stämmer inte med innehållet ({_FORMAT_SV[fmt]})")
    if removed:
        data = _rezip(infos, parts)
    return Package(name, fmt, data, removed)


def _zip_problem(exc: BaseException) -> str:
    text = str(exc)
    if "not a zip file" in text.lower():
        return "zip-arkivets innehållsförteckning saknas"
    if "crc" in text.lower():
        return "kontrollsumman stämmer inte"
    return type(exc).__name__


def _check_members(name: str, infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) > MAX_MEMBERS:
        raise _fail(name, "", f"innehåller {len(infos)} delar; högst {MAX_MEMBERS} (inte ett normalt dokument)")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise _fail(name, "", f"innehåller delen {_show(dup)} två gånger (tvetydigt innehåll)")
    total = sum(i.file_size for i in infos)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise _fail(
            name,
            "",
            f"packas upp till {_mb(total)}, högst {_mb(MAX_UNCOMPRESSED_BYTES)} tillåts "
            "(en zip-bomb eller ett onormalt stort dokument)",
        )
    for i in infos:
        if i.flag_bits & 0x1:
            raise _fail(name, i.filename, "delen är krypterad (lösenordsskyddad); spara utan lösenord")
        if i.file_size > RATIO_MIN_BYTES and i.file_size > MAX_RATIO * max(i.compress_size, 1):
            ratio = i.file_size // max(i.compress_size, 1)
            raise _fail(name, i.filename, f"komprimerad {ratio}:1, högst {MAX_RATIO}:1 tillåts (en zip-bomb)")
        lower = i.filename.lower()
        if lower.endswith(("vbaproject.bin", "vbadata.xml")) or "/activex/" in lower:
            raise _fail(name, i.filename, "dokumentet innehåller makron eller ActiveX, som aldrig tas emot")
        if lower.startswith("xl/macrosheets/"):
            raise _fail(name, i.filename, "arbetsboken innehåller Excel 4.0-makroblad, som aldrig tas emot")
        if lower.startswith(("word/embeddings/", "xl/embeddings/")):
            raise _fail(name, i.filename, "dokumentet innehåller inbäddade objekt, som aldrig tas emot")
        if lower.startswith("xl/externallinks/"):
            raise _fail(name, i.filename, "arbetsboken länkar till en annan arbetsbok, vilket aldrig tas emot")


def _format(name: str, zf: zipfile.ZipFile, names: set[str]) -> str:
    if "[Content_Types].xml" not in names:
        raise _fail(name, "", "är inte ett Word- eller Excel-dokument ([Content_Types].xml saknas)")
    raw, _ = _safe_xml(name, "[Content_Types].xml", zf.read("[Content_Types].xml"))
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError:
        raise _fail(name, "[Content_Types].xml", "är skadad (ogiltig XML)") from None
    types = {
        (el.get("PartName") or "").lstrip("/"): el.get("ContentType") or "" for el in root.iter(f"{_CT_NS}Override")
    }
    defaults = {el.get("Extension", "").lower(): el.get("ContentType", "") for el in root.iter(f"{_CT_NS}Default")}
    every = list(types.values()) + list(defaults.values())
    if any("macroenabled" in t.lower() or "vbaproject" in t.lower() for t in every):
        raise _fail(name, "", "dokumentet är makroaktiverat (.docm/.xlsm), vilket aldrig tas emot")
    if types.get("word/document.xml") == DOCX_MAIN:
        return "docx"
    if types.get("xl/workbook.xml") == XLSX_MAIN:
        return "xlsx"
    if any("template.main" in t for t in every):
        raise _fail(name, "", "är en dokumentmall (.dotx/.xltx); lämna in det ifyllda dokumentet (.docx/.xlsx)")
    raise _fail(name, "", "är inte ett Word- eller Excel-dokument (okänd innehållstyp)")


def _safe_xml(name: str, part: str, raw: bytes) -> tuple[bytes, int]:
    """An XML part without a DTD and without the characters XML 1.0 cannot hold, raw or as
    character references; (bytes, characters removed). UTF-8 byte-wise, UTF-16 as text."""
    removed = 0

    def ref(m: re.Match[Any]) -> Any:
        nonlocal removed
        text = m.group(0)
        keep = _keep_ref(text if isinstance(text, bytes) else text.encode())
        removed += keep == b""
        return keep if isinstance(text, bytes) else keep.decode()

    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = raw.decode("utf-16")
        _no_dtd(name, part, text.encode("utf-8", "replace"))
        cleaned, removed = _BAD_XML_CHARS.subn("", text)
        cleaned = _CHAR_REF_TEXT.sub(ref, cleaned)
        return (cleaned.encode("utf-16"), removed) if removed else (raw, 0)
    _no_dtd(name, part, raw)
    data, removed = _BAD_XML_BYTES.subn(b"", raw)
    return _CHAR_REF.sub(ref, data), removed


def _no_dtd(name: str, part: str, raw: bytes) -> None:
    # OOXML never declares a DTD; one can only be there to expand entities (a "billion laughs").
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise _fail(name, part, "innehåller en DTD (<!DOCTYPE>/<!ENTITY>), vilket Office-dokument aldrig gör")


def _read_parts(name: str, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> tuple[dict[str, bytes], int]:
    """Every member read once (which also verifies its CRC); XML parts made safe."""
    parts: dict[str, bytes] = {}
    removed = 0
    for info in infos:
        raw = zf.read(info)
        if info.filename.lower().endswith((".xml", ".rels", ".vml")):
            raw, n = _safe_xml(name, info.filename, raw)
            removed += n
        parts[info.filename] = raw
    return parts, removed


# Relationships that make Word or Excel fetch or run something from outside when the file opens.
# Hyperlinks stay allowed (the project's own documents link to what they concern), unless they
# point at a file share, where opening them hands the reader's Windows credentials to that host.
_FETCHED_TYPES = ("attachedtemplate", "image", "oleobject", "externallinkpath", "frame", "subdocument", "package")
_AUTO_NAMES = re.compile(r"^(_xlnm\.)?auto_(open|close|activate|deactivate)", re.IGNORECASE)


def _check_active(name: str, parts: dict[str, bytes]) -> None:
    """Refuse remote templates, images and objects, links to file shares and auto-run names."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    for part, raw in parts.items():
        lower = part.lower()
        if lower.endswith(".rels"):
            for rel in etree.fromstring(raw, parser).iter("{*}Relationship"):
                target = (rel.get("Target") or "").strip()
                kind = (rel.get("Type") or "").rsplit("/", 1)[-1].lower()
                share = target.startswith(("\\\\", "//")) or target.lower().startswith("file:")
                if (rel.get("TargetMode") or "").lower() == "external" and (kind in _FETCHED_TYPES or share):
                    what = "en nätverksresurs" if share else "en extern adress"
                    raise _fail(
                        name, part, f"dokumentet hämtar innehåll från {what} ({target[:80]}), vilket aldrig tas emot"
                    )
        elif lower == "xl/workbook.xml":
            for dn in etree.fromstring(raw, parser).iter("{*}definedName"):
                if _AUTO_NAMES.match(dn.get("name") or ""):
                    raise _fail(
                        name,
                        part,
                        f"arbetsboken har namnet {dn.get('name')}, som startar makron, vilket aldrig tas emot",
                    )


def _keep_ref(ref: bytes) -> bytes:
    m = _CHAR_REF.match(ref)
    if m is None:
        return ref
    value = int(m.group(1), 16) if m.group(1) else int(m.group(2))
    bad = (value < 0x20 and value not in (0x9, 0xA, 0xD)) or 0xD800 <= value <= 0xDFFF or value in (0xFFFE, 0xFFFF)
    return b"" if bad or value > 0x10FFFF else ref


def _rezip(infos: list[zipfile.ZipInfo], parts: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for info in infos:
            out.writestr(info.filename, parts[info.filename])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# 2. Identity
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    doc_key: str
    org: str
    year: int
    phase: str
    unit: str
    kind: str
    occasion: str | None
    version: int


def parse_doc_key(name: str, key: str) -> Identity:
    m = _DOC_KEY.match(key.strip())
    if m is None:
        raise _fail(name, "dokument-id", f"{_show(key)} känns inte igen som ett dokument från Styrkedja")
    return Identity(
        doc_key=key.strip(),
        org=m["org"],
        year=int(m["year"]),
        phase=m["phase"],
        unit=m["unit"],
        kind=m["kind"],
        occasion=m["occasion"],
        version=int(m["version"]),
    )


# A claim: (where in the file, which part of the identity, the value found there).
Claim = tuple[str, str, str]


def _keyword_claims(where: str, keywords: str | None) -> list[Claim]:
    parts = [p.strip() for p in (keywords or "").split(";")]
    if len(parts) != 6 or parts[0] != "styrkedja":
        return []
    kind, phase, year, unit, version = parts[1:]
    found = {"kind": kind, "phase": phase, "year": year, "unit": unit, "version": version.removeprefix("v")}
    return [(where, what, value) for what, value in found.items()]


def _check_claims(name: str, ident: Identity, claims: list[Claim]) -> None:
    values = {
        "doc_key": ident.doc_key,
        "kind": ident.kind,
        "phase": ident.phase,
        "year": str(ident.year),
        "unit": ident.unit,
        "version": str(ident.version),
    }
    labels = {"doc_key": "dokument-id", "kind": "dokumenttyp", "phase": "fas", "year": "planår", "unit": "enhet"}
    for where, what, found in claims:
        if found is None or str(found).strip() == "":
            continue
        if str(found).strip() != values[what]:
            raise _fail(
                name,
                where,
                f"dokumentet är manipulerat: {labels.get(what, what)} {_show(found)} stämmer inte med "
                f"dokument-id {_show(ident.doc_key, 120)}; lämna in dokumentet som det skickades ut",
            )


# ---------------------------------------------------------------------------------------------
# Opening the document (after the package checks)
# ---------------------------------------------------------------------------------------------


@dataclass
class _Opened:
    pkg: Package
    identity: Identity
    claims: list[Claim]
    recipient: str | None  # the receiving unit's name as the file shows it
    title: str | None
    docx: Any = None
    formulas: Any = None  # openpyxl workbook, formulas as written
    values: Any = None  # the same workbook, the values an application cached when saving

    def close(self) -> None:
        for wb in (self.formulas, self.values):
            if wb is not None:
                with contextlib.suppress(Exception):
                    wb.close()


def _open(pkg: Package) -> _Opened:
    name = pkg.name
    try:
        if pkg.format == "docx":
            doc = open_docx(io.BytesIO(pkg.data))
        else:
            formulas = load_workbook(io.BytesIO(pkg.data), read_only=True, data_only=False)
            values = load_workbook(io.BytesIO(pkg.data), read_only=True, data_only=True)
    except Exception as exc:  # untrusted input: whatever the library trips on, the file is broken
        what = "Word-dokumentet" if pkg.format == "docx" else "Excel-arbetsboken"
        raise _fail(name, "", f"filen är skadad: {what} kan inte läsas ({type(exc).__name__})") from None
    if pkg.format == "docx":
        return _open_docx(pkg, doc)
    try:
        ident, claims, recipient = _xlsx_identity(name, formulas)
    except BaseException:
        formulas.close()
        values.close()
        raise
    return _Opened(pkg, ident, claims, recipient, formulas.properties.title or None, formulas=formulas, values=values)


def _open_docx(pkg: Package, doc: Any) -> _Opened:
    name = pkg.name
    cp = doc.core_properties
    key = (cp.identifier or "").strip()
    if not key:
        raise _fail(
            name,
            "egenskapen Identifierare",
            "saknar dokument-id: dokumentet kommer inte från Styrkedja eller egenskapen har tagits bort",
        )
    ident = parse_doc_key(name, key)
    claims: list[Claim] = [("egenskapen Kategori", "kind", cp.category or "")]
    claims += [("egenskapen Version", "version", cp.version or "")]
    claims += _keyword_claims("egenskapen Nyckelord", cp.keywords)
    cover = _cover_rows(doc)
    claims.append(("försättsbladets Dokument-id", "doc_key", cover.get("Dokument-id", "")))
    claims.append(("försättsbladets Version", "version", cover.get("Version", "")))
    return _Opened(pkg, ident, claims, cover.get("Mottagare"), cp.title or None, docx=doc)


def _cover_rows(doc: Any) -> dict[str, str]:
    """Label -> value of the cover table (the first table of the body)."""
    w = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
    tbl = next(doc.element.body.iter(f"{w}tbl"), None)
    out: dict[str, str] = {}
    if tbl is None:
        return out
    for tr in tbl.iter(f"{w}tr"):
        cells = ["".join(t.text or "" for t in tc.iter(f"{w}t")).strip() for tc in tr.iter(f"{w}tc")]
        if len(cells) == 2 and cells[0]:
            out[cells[0]] = cells[1]
    return out


def _xlsx_identity(name: str, wb: Any) -> tuple[Identity, list[Claim], str | None]:
    meta: dict[str, str] = {}
    if META_SHEET in wb.sheetnames:
        for row in wb[META_SHEET].iter_rows(min_row=1, max_row=50, max_col=2, values_only=True):
            if row and isinstance(row[0], str) and len(row) > 1 and row[1] is not None:
                meta[row[0]] = str(row[1])
    props = wb.properties
    key = (meta.get("doc_key") or props.identifier or "").strip()
    if not key:
        raise _fail(
            name,
            f"bladet {META_SHEET}",
            "saknar dokument-id: arbetsboken kommer inte från Styrkedja eller det dolda bladet har tagits bort",
        )
    ident = parse_doc_key(name, key)
    sheet = f"det dolda bladet {META_SHEET}"
    claims: list[Claim] = [
        (sheet, "kind", meta.get("kind", "")),
        (sheet, "year", meta.get("cycle", "")),
        (sheet, "phase", meta.get("phase", "")),
        (sheet, "unit", meta.get("unit", "")),
        (sheet, "version", meta.get("version", "")),
        ("egenskapen Identifierare", "doc_key", props.identifier or ""),
        ("egenskapen Kategori", "kind", props.category or ""),
        ("egenskapen Version", "version", props.version or ""),
    ]
    claims += _keyword_claims("egenskapen Nyckelord", props.keywords)
    recipient = None
    if INSTRUCTIONS_SHEET in wb.sheetnames:
        for row in wb[INSTRUCTIONS_SHEET].iter_rows(min_row=4, max_row=12, max_col=2, values_only=True):
            label = row[0] if row else None
            value = row[1] if len(row) > 1 else None
            if label == "Dokument-id":
                claims.append((f"bladet {INSTRUCTIONS_SHEET}, Dokument-id", "doc_key", str(value or "")))
            elif label == "Version":
                claims.append((f"bladet {INSTRUCTIONS_SHEET}, Version", "version", _int_text(value)))
            elif label == "Mottagare":
                recipient = str(value) if value is not None else None
    return ident, claims, recipient


def _int_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


# ---------------------------------------------------------------------------------------------
# 3. Which document, which receipts
# ---------------------------------------------------------------------------------------------


def _request(cfg: OrgConfig, ident: Identity, name: str) -> tuple[DocRequest, Any]:
    """The DocRequest the key was rendered from (with the follow-up occasion), and the occasion."""
    if ident.org != cfg.organisation.id:
        raise _fail(
            name,
            "dokument-id",
            f"dokumentet tillhör organisationen {_show(ident.org)}, inte {_show(cfg.organisation.id)}",
        )
    if ident.kind not in catalog.KINDS and ident.kind not in catalog.LEVEL_REPORT_KINDS:
        raise _fail(name, "dokument-id", f"okänd dokumenttyp {_show(ident.kind)}")
    occasion = None
    extra: tuple[tuple[str, str], ...] = ()
    if ident.occasion:
        try:
            occasion = find_occasion(cfg, ident.year, ident.occasion)
        except UserError:
            raise _fail(name, "dokument-id", f"okänt uppföljningstillfälle {_show(ident.occasion)}") from None
        extra = (("occasion", occasion.name), ("occasion_key", occasion.key))
    req = DocRequest(ident.kind, ident.phase, ident.unit, ident.version, extra)
    if catalog.doc_key(cfg, ident.year, req) != ident.doc_key:
        raise _fail(name, "dokument-id", f"{_show(ident.doc_key, 120)} känns inte igen")
    return req, occasion


@dataclass(frozen=True)
class _Route:
    """One handoff that carries the document: its receipt triple and the handoff's fill-in
    documents (keys at the document's version) that must all be in before it is acknowledged."""

    topic: str
    sender: str
    receiver: str
    fill_in_keys: tuple[str, ...]


def _routes(cfg: OrgConfig, year: int, req: DocRequest, occasion: Any, key: str) -> list[_Route]:
    if req.kind in catalog.LEVEL_REPORT_KINDS:
        # A level report goes to the level's parent (tasks.level_reports); the top level's is not handed on.
        parent = cfg.unit(req.unit_id).parent
        if parent is None or occasion is None:
            return []
        keys = tuple(catalog.doc_key(cfg, year, dataclasses.replace(req, kind=k)) for k in catalog.LEVEL_REPORT_KINDS)
        return [_Route(f"{catalog.LEVEL_REPORT_KINDS[0]}-{occasion.key}", req.unit_id, parent, keys)]
    try:
        handoffs = handoffs_for_phase(cfg, year, req.phase_id, occasion)
    except (KeyError, ValueError):
        return []
    out: list[_Route] = []
    fill_in: dict[str, bool] = {}
    for h in handoffs:
        keys = [catalog.doc_key(cfg, year, dataclasses.replace(d, version=req.version)) for d in h.documents]
        if key not in keys:
            continue
        needed = []
        for d, k in zip(h.documents, keys, strict=True):
            if k not in fill_in:
                fill_in[k] = catalog.expected(
                    cfg, year, dataclasses.replace(d, version=req.version), returned=Returned()
                ).fill_in
            if fill_in[k]:
                needed.append(k)
        out.append(_Route(h.topic, h.sender, h.receiver, tuple(needed)))
    return out


# ---------------------------------------------------------------------------------------------
# 4a. Word content
# ---------------------------------------------------------------------------------------------


def _docx_content(opened: _Opened, exp: Expected) -> dict[str, Any]:
    name = opened.pkg.name
    answers = word.read_field_paragraphs(opened.docx, labels=exp.fields)
    unknown = [k for k in answers if k not in exp.fields]
    if unknown:
        raise _fail(
            name,
            f"fältet {_show(unknown[0])}",
            f"hör inte till mallen {_show(exp.kind)}: fel mall för dokument-id {_show(opened.identity.doc_key, 120)}",
        )
    # A template may put its own text or a table inside a field's section (between the field and
    # the next heading); the answer is what the return holds beyond what was sent there.
    sent = exp.sent_field_paragraphs()
    fields: dict[str, str] = {}
    for field_name, label in exp.fields.items():
        where = f"avsnittet {_show(label, 80)}"
        if field_name not in answers:
            raise _fail(name, where, "rubriken saknas i dokumentet; ändra inte rubrikerna, bara svaren under dem")
        paragraphs = list(answers[field_name])
        for line in sent.get(field_name, []):
            if line in paragraphs:
                paragraphs.remove(line)
        raw = "\n".join(paragraphs)
        text = clean_text(raw, len(raw) + 1).strip()
        if not text:
            raise _fail(name, where, "är tomt; skriv svaret under rubriken")
        if len(text) > MAX_FIELD_CHARS:
            raise _fail(name, where, f"svaret är {len(text):,} tecken; högst {MAX_FIELD_CHARS:,}".replace(",", " "))
        fields[field_name] = text
    return {"fields": fields}


# ---------------------------------------------------------------------------------------------
# 4b. Excel content
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SheetRule:
    """Which columns a secretary must fill in on a sheet (by header).

    every_row: on every row the document was sent with; otherwise only on rows where anything
    was entered. unless: (header, value) exempts a row, e.g. a goal the committee opts out of.
    """

    required: tuple[str, ...]
    every_row: bool = False
    unless: tuple[str, str] | None = None


# Builders define the sheets; this is what makes a return complete. A rule whose header is not in
# the sheet is a programming error (tests check every rule against the catalog).
REQUIRED: dict[str, dict[str, SheetRule]] = {
    "investeringsprioritering": {
        "Kriterier": SheetRule(("Vikt",), every_row=True),
        "Investeringar": SheetRule(("Nämnd/styrelse", "Investeringsobjekt", "Utgift totalt", "Startår")),
    },
    "pf_bilagor": {"Investeringsplan": SheetRule(("Nämnd/styrelse", "Investeringsobjekt"))},
    "verksamhetsplan_mall": {
        "Fullmäktiges mål": SheetRule(
            ("Nämndens bidrag och åtaganden",), every_row=True, unless=("Avstår (Ja/Nej)", "Ja")
        ),
        "Indikatorer": SheetRule(("Nämndens målvärde",), every_row=True),
        "Egna mål": SheetRule(("Målområde", "Nämndens mål")),
        "Åtaganden": SheetRule(("Åtagande", "Koppling till mål", "Ansvarig förvaltning")),
        "Intern kontroll": SheetRule(
            ("Risk", "Sannolikhet (1–4)", "Konsekvens (1–4)", "Kontrollmoment"), every_row=True
        ),
    },
    "aktivitetsplan": {
        "Aktiviteter": SheetRule(("Aktivitet", "Ansvarig")),
        "Detaljbudget": SheetRule(("Personalkostnader", "Lokalkostnader", "Övriga kostnader"), every_row=True),
    },
    "uppfoljning": {
        "Ekonomi": SheetRule(("Post", "Budget helår", "Utfall hittills", "Prognos helår"), every_row=True),
        "Mål": SheetRule(("Bedömning",), every_row=True),
        "Investeringar": SheetRule(("Projekt", "Budget", "Prognos")),
    },
}

# How far beyond a table a return is searched for stray values.
OUTSIDE_ROWS, OUTSIDE_COLS = 50, 10
_SUM_RANGE = re.compile(r"^=SUM\(\{(\w+)\}:\{(\w+)\}\)$")
_NUMERIC = ("sek", "int", "number", "percent")


@dataclass
class _Cell:
    written: Any  # the value as stored: a formula's text for a formula cell
    is_formula: bool
    cached: Any  # the value an application computed and saved (None when openpyxl wrote it)


class _Refs(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _sheet_titles(exp: Expected) -> dict[str, str]:
    # The same names the Excel builder gives its sheets: the instructions first, then in order,
    # made unique case-insensitively with " (2)", " (3)".
    used = {sheet_title(INSTRUCTIONS_SHEET).casefold()}
    out: dict[str, str] = {}
    for spec in exp.sheets:
        base = sheet_title(spec.name)
        title, n = base, 2
        while title.casefold() in used:
            suffix = f" ({n})"
            title, n = base[: 31 - len(suffix)] + suffix, n + 1
        used.add(title.casefold())
        out[spec.name] = title
    return out


def _grid(opened: _Opened, title: str, n_rows: int, n_cols: int) -> list[list[_Cell]]:
    wf, wv = opened.formulas[title], opened.values[title]
    grid: list[list[_Cell]] = []
    rows_f = wf.iter_rows(min_row=1, max_row=n_rows, min_col=1, max_col=n_cols)
    rows_v = wv.iter_rows(min_row=1, max_row=n_rows, min_col=1, max_col=n_cols, values_only=True)
    for row_f, row_v in zip(rows_f, rows_v, strict=False):
        cells = []
        for i in range(n_cols):
            cf = row_f[i] if i < len(row_f) else None
            is_formula = getattr(cf, "data_type", None) == "f"
            cells.append(_Cell(getattr(cf, "value", None), is_formula, row_v[i] if i < len(row_v) else None))
        grid.append(cells)
    while len(grid) < n_rows:  # read-only mode stops at the last row the sheet stores
        grid.append([_Cell(None, False, None) for _ in range(n_cols)])
    return grid


def _text(value: str) -> str:
    """A spreadsheet string as entered: OOXML _xHHHH_ escapes decoded, XML-invalid characters dropped."""
    if "_x" in value:
        value = _XSTRING_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    return clean_text(value, len(value) + 1).strip()


def _plain(value: Any) -> Any:
    """A cell value for comparison and JSON: dates as ISO text, strings cleaned, empty as None."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        text = _text(value)
        return text or None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.split()) == " ".join(b.split())
    if _is_number(a) and _is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a == b


class _SheetReader:
    def __init__(self, name: str, opened: _Opened, spec: SheetSpec, title: str, trust_locked: bool) -> None:
        self.name, self.spec, self.title, self.trust_locked = name, spec, title, trust_locked
        cols = spec.columns
        self.letters = [get_column_letter(i + 1) for i in range(len(cols))]
        self.n_rows = len(spec.rows) + spec.blank_rows
        self.first, self.last = 2, 1 + self.n_rows
        self.first_blank = self.first + len(spec.rows)
        self.total_row = self.last + 1 if spec.totals and self.n_rows else None
        self.grid = _grid(opened, title, self.total_row or self.last, len(cols))
        self.keys = {c.key: self.letters[i] for i, c in enumerate(cols) if c.key}
        self.index = {c.key: i for i, c in enumerate(cols) if c.key}
        headers = [c.header for c in cols]
        self.names = [h if headers.count(h) == 1 else f"{h} ({self.letters[i]})" for i, h in enumerate(headers)]

    def where(self, r: int, i: int | None = None) -> str:
        cell = f" cell {self.letters[i]}{r}" if i is not None else f" rad {r}"
        col = f" ({self.spec.columns[i].header})" if i is not None else ""
        return f"bladet {_show(self.title)}{cell}{col}"

    def fail(self, r: int, i: int | None, problem: str) -> UserError:
        return _fail(self.name, self.where(r, i), problem)

    def read(self) -> tuple[list[dict[str, Any]], set[int], dict[int, dict[int, Any]]]:
        """(the rows for the content, the rows where something was changed, every row's values
        by column index for the checks).

        The content holds every row with a value in an open (yellow) cell, as the cells stand in
        the return: typed, or sent pre-filled and kept; "context" holds the row's locked cells."""
        spec, cols = self.spec, self.spec.columns
        for i, col in enumerate(cols):
            found = self.grid[0][i].written
            if not _same(found, col.header):
                raise self.fail(
                    1, i, f"kolumnrubriken är {_show(found)}, väntade {_show(col.header)}: fel mall eller ändrad mall"
                )
        rows: list[dict[str, Any]] = []
        changed_rows: set[int] = set()
        table: dict[int, dict[int, Any]] = {}
        blank: tuple[Any, ...] = tuple(None for _ in cols)
        for r in range(self.first, self.last + 1):
            sent = spec.rows[r - self.first] if r < self.first_blank else blank
            cells = self.grid[r - 1]
            row_values: dict[int, Any] = {}
            values: dict[str, Any] = {}
            context: dict[str, Any] = {}
            changed = False
            for i, col in enumerate(cols):
                cell, was = cells[i], sent[i]
                if col.kind == "formula":
                    row_values[i] = self.formula_cell(r, i, cell)
                    continue
                editable = r >= self.first_blank or (col.editable and not isinstance(was, Fixed))
                if not editable:
                    expected_value = was.value if isinstance(was, Fixed) else was
                    if cell.is_formula or (self.trust_locked and not _same(cell.written, expected_value)):
                        raise self.fail(
                            r,
                            i,
                            f"cellen är låst men har ändrats från {_show(_plain(expected_value))} "
                            f"till {_show(_plain(cell.written))}",
                        )
                    row_values[i] = _plain(cell.written)
                    if row_values[i] is not None:
                        context[self.names[i]] = row_values[i]
                    continue
                value = self.parse(r, i, col, cell)
                row_values[i] = value
                if value is not None:
                    values[self.names[i]] = value
                if not _same(value, was):
                    changed = True
            table[r] = row_values
            if changed:
                changed_rows.add(r)
            if values:
                rows.append({"row": r, "context": context, "values": values})
        return rows, changed_rows, table

    def check_outside(self, ws: Any) -> None:
        """A value typed outside the table (below it, or right of it, after lifting the sheet
        protection) would silently be lost: refuse it instead."""
        end, n = self.total_row or self.last, len(self.spec.columns)
        rows = ws.iter_rows(min_row=1, max_row=end + OUTSIDE_ROWS, max_col=n + OUTSIDE_COLS, values_only=True)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if (r <= end and c <= n) or value is None or (isinstance(value, str) and not value.strip()):
                    continue
                raise _fail(
                    self.name,
                    f"bladet {_show(self.title)} cell {get_column_letter(c)}{r}",
                    f"{_show(value)} står utanför tabellen och kan inte läsas in; skriv bara i de gula cellerna "
                    f"(tabellen har plats för {self.n_rows} rader)",
                )

    def formula_cell(self, r: int, i: int, cell: _Cell) -> Any:
        col = self.spec.columns[i]
        if cell.is_formula:
            return cell.cached if isinstance(cell.cached, int | float) and not isinstance(cell.cached, bool) else None
        if _SUM_RANGE.match(col.formula or "") and isinstance(cell.written, int | float):
            return cell.written  # a number typed over a row sum: compared with our own sum below
        raise self.fail(r, i, f"ska räknas fram av en formel men har skrivits över med {_show(cell.written)}")

    def parse(self, r: int, i: int, col: ColumnSpec, cell: _Cell) -> Any:
        kind = col.kind
        raw = cell.written
        if cell.is_formula:
            if kind in _NUMERIC or kind == "date":
                if cell.cached is None or isinstance(cell.cached, str):
                    raise self.fail(
                        r, i, f"innehåller formeln {_show(raw)} utan beräknat värde; skriv in värdet i stället"
                    )
                raw = cell.cached
            else:
                # A formula typed into a text cell is kept as the text it is, never evaluated.
                return self.text(r, i, col, str(raw))
        if raw is None or (isinstance(raw, str) and not _text(raw)):
            return None
        if kind in _NUMERIC:
            return self.number(r, i, col, raw)
        if kind == "date":
            return self.date(r, i, raw)
        if isinstance(raw, str):
            return self.text(r, i, col, raw)
        if kind == "choice":
            return self.text(r, i, col, str(_plain(raw)))
        return _plain(raw)

    def text(self, r: int, i: int, col: ColumnSpec, raw: str) -> str | None:
        if len(raw) > MAX_CELL_CHARS:
            n = f"{len(raw):,}".replace(",", " ")
            raise self.fail(r, i, f"texten är {n} tecken; högst {MAX_CELL_CHARS:,} får plats".replace(",", " "))
        value = _text(raw)
        if col.kind == "choice" and col.choices and value not in col.choices:
            shown = ", ".join(col.choices[:6]) + (" …" if len(col.choices) > 6 else "")
            raise self.fail(r, i, f"{_show(value)} finns inte i listan; välj ett av: {shown}")
        return value or None

    def number(self, r: int, i: int, col: ColumnSpec, raw: Any) -> int | float:
        value: float | None = None
        if isinstance(raw, bool):
            value = None
        elif isinstance(raw, int | float):
            value = float(raw)
        elif isinstance(raw, str):
            value = _parse_number(raw, col.kind)
        if value is None or not math.isfinite(value):
            what = {"int": "ett heltal", "sek": "ett belopp i tkr", "percent": "en procentsats"}.get(
                col.kind, "ett tal"
            )
            raise self.fail(r, i, f"{_show(raw)} är inte {what}")
        if col.kind == "int" and not value.is_integer():
            raise self.fail(r, i, f"{_show(raw)} ska vara ett heltal")
        if col.bounds is not None:
            lo, hi = col.bounds
            if not lo <= value <= hi:
                raise self.fail(r, i, f"{_show(raw)} ligger utanför det tillåtna {_num(lo)}–{_num(hi)}")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value

    def date(self, r: int, i: int, raw: Any) -> str:
        if isinstance(raw, datetime):
            return raw.date().isoformat()
        if isinstance(raw, date):
            return raw.isoformat()
        if isinstance(raw, int | float) and not isinstance(raw, bool) and 36526 <= raw <= 73050:
            return from_excel(raw).date().isoformat()  # a date that lost its date format
        if isinstance(raw, str):
            with contextlib.suppress(ValueError):
                return date.fromisoformat(_text(raw)).isoformat()
        raise self.fail(r, i, f"{_show(raw)} är inte ett datum; skriv ÅÅÅÅ-MM-DD")

    def check_sums(self, table: dict[int, dict[int, Any]]) -> None:
        cols = self.spec.columns
        for i, col in enumerate(cols):
            m = _SUM_RANGE.match(col.formula or "") if col.kind == "formula" else None
            if m is None or m.group(1) not in self.index or m.group(2) not in self.index:
                continue
            lo, hi = self.index[m.group(1)], self.index[m.group(2)]
            for r in range(self.first, self.last + 1):
                cell = self.grid[r - 1][i]
                if cell.is_formula:
                    refs = _Refs({k: f"{v}{r}" for k, v in self.keys.items()})
                    self.check_formula(r, i, cell, (col.formula or "").format_map(refs))
                shown = table[r][i]
                if shown is None:
                    continue
                own = sum(v for j in range(lo, hi + 1) if isinstance(v := table[r][j], int | float))
                self.compare(r, i, shown, own, f"summan av {self.letters[lo]}{r}:{self.letters[hi]}{r}")
        if self.total_row is None:
            return
        r = self.total_row
        label = self.grid[r - 1][0].written
        if not _same(label, "Summa"):
            raise self.fail(r, 0, f"summaraden är flyttad eller ändrad (väntade 'Summa', fann {_show(label)})")
        for i, col in enumerate(cols):
            kind = col.result if col.kind == "formula" else col.kind
            wants = col.total if col.total is not None else kind == "sek"
            if i == 0 or not wants:
                continue
            cell = self.grid[r - 1][i]
            data = [table[x][i] for x in range(self.first, self.last + 1)]
            own = sum(v for v in data if isinstance(v, int | float) and not isinstance(v, bool))
            if cell.is_formula:
                self.check_formula(r, i, cell, f"=SUM({self.letters[i]}{self.first}:{self.letters[i]}{self.last})")
                shown = cell.cached
                if col.kind == "formula" and any(
                    self.grid[x - 1][i].is_formula and self.grid[x - 1][i].cached is None
                    for x in range(self.first, self.last + 1)
                ):
                    continue  # the rows' own results were not saved: nothing to add up
            else:
                shown = cell.written
                if shown is None:
                    raise self.fail(r, i, "summan har tagits bort")
            if shown is None or isinstance(shown, str) and not shown.strip():
                continue
            if isinstance(shown, str):
                parsed = _parse_number(shown, kind)
                if parsed is None:
                    raise self.fail(r, i, f"summan {_show(shown)} är inte ett tal")
                shown = parsed
            first, last = self.letters[i] + str(self.first), self.letters[i] + str(self.last)
            self.compare(r, i, shown, own, f"raderna {first}:{last}")

    def check_formula(self, r: int, i: int, cell: _Cell, expected_formula: str) -> None:
        def norm(f: str) -> str:
            return re.sub(r"[\s$]", "", f).upper()

        if norm(str(cell.written)) != norm(expected_formula):
            raise self.fail(r, i, f"formeln har ändrats till {_show(cell.written)} (ska vara {expected_formula})")

    def compare(self, r: int, i: int, shown: Any, own: float, what: str) -> None:
        kind = self.spec.columns[i].result if self.spec.columns[i].kind == "formula" else self.spec.columns[i].kind
        tol = 0.5 if kind in ("sek", "int") else 1e-6 * max(1.0, abs(own))
        if not isinstance(shown, int | float) or isinstance(shown, bool) or abs(float(shown) - own) > tol:
            raise self.fail(
                r, i, f"summan är {_show(_num(shown))} men {what} blir {_num(own)}: siffrorna går inte ihop"
            )


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}".replace(",", " ")
    return f"{value:,.2f}".replace(",", " ").replace(".", ",")


def _parse_number(text: str, kind: str) -> float | None:
    """A number as a Swede types it into a text cell: "1 234,5", "-12", "12 tkr", "5 %"."""
    s = _text(text).replace("\u2212", "-").replace("\u00a0", "").replace("\u202f", "").replace(" ", "")
    percent = kind == "percent" and s.endswith("%")
    s = s.removesuffix("%")
    if kind == "sek":
        s = s.removesuffix("tkr").removesuffix("kr")
    if not _NUMBER.match(s):
        return None
    value = float(s.replace(",", "."))
    return value / 100 if percent else value


def _xlsx_content(opened: _Opened, exp: Expected, trust_locked: bool) -> dict[str, Any]:
    name = opened.pkg.name
    titles = _sheet_titles(exp)
    rules = REQUIRED.get(exp.kind, {})
    sheets: dict[str, list[dict[str, Any]]] = {}
    anything = False
    for spec in exp.sheets:
        if not isinstance(spec, SheetSpec) or not (spec.blank_rows or any(c.editable for c in spec.columns)):
            continue
        title = titles[spec.name]
        if title not in opened.formulas.sheetnames:
            raise _fail(name, f"bladet {_show(title)}", "saknas i arbetsboken: fel mall eller borttaget blad")
        reader = _SheetReader(name, opened, spec, title, trust_locked)
        rows, changed, table = reader.read()
        reader.check_outside(opened.formulas[title])
        reader.check_sums(table)
        rule = rules.get(spec.name)
        if rule is not None:
            _check_required(reader, rule, changed, table)
        sheets[spec.name] = rows
        anything = anything or bool(changed)
    if not anything:
        raise _fail(name, "", "ingenting är ifyllt; fyll i de gula cellerna och lämna in arbetsboken igen")
    return {"sheets": sheets}


def _check_required(reader: _SheetReader, rule: SheetRule, changed: set[int], table: dict) -> None:
    headers = [c.header for c in reader.spec.columns]
    for h in (*rule.required, *(rule.unless[:1] if rule.unless else ())):
        if h not in headers:
            raise ValueError(f"rule for sheet {reader.spec.name!r}: no column {h!r}")
    rows = set(changed)
    if rule.every_row:
        rows |= set(range(reader.first, reader.first_blank))
    for r in sorted(rows):
        values = table[r]
        if rule.unless is not None and values[headers.index(rule.unless[0])] == rule.unless[1]:
            continue
        for h in rule.required:
            i = headers.index(h)
            if values[i] is None:
                label = next((v for v in values.values() if isinstance(v, str)), None)
                row = f" (raden {_show(label, 40)})" if label else ""
                raise reader.fail(r, i, f"är inte ifylld{row}; kolumnen måste fyllas i")


# ---------------------------------------------------------------------------------------------
# 5. Submitting
# ---------------------------------------------------------------------------------------------


def submit_file(cfg: OrgConfig, path: Path, *, url: str | None = None, actor: str) -> SubmissionResult:
    """Read a filled-in .docx/.xlsx back, validate it and record it; see the module doc.

    Raises UserError (one line: file, place, value) on any problem; then nothing is stored.
    """
    path = Path(path)
    return submit_bytes(cfg, path.name, read_limited(path), url=url, actor=actor)


def submit_bytes(
    cfg: OrgConfig,
    name: str,
    data: bytes,
    *,
    url: str | None = None,
    actor: str,
    check: Callable[[Document], None] | None = None,
) -> SubmissionResult:
    """`submit_file` for bytes already read (the inbox hashes exactly what it processes).

    `check`, given the sent document the file claims to be, raises UserError when this caller does
    not take it (the portal: another unit's return), before anything is stored."""
    file_hash = hashlib.sha256(data).hexdigest()
    pkg = inspect_package(data, name)
    opened = _open(pkg)
    try:
        ident = opened.identity
        _check_claims(name, ident, opened.claims)
        req, occasion = _request(cfg, ident, name)
        with session_scope(url) as session:
            doc = session.exec(select(Document).where(Document.key == ident.doc_key)).first()
        if doc is None:
            raise _fail(
                name, "dokument-id", f"{_show(ident.doc_key, 120)} finns inte: dokumentet har aldrig skickats ut"
            )
        if (doc.kind, doc.unit_id, doc.version, doc.phase) != (ident.kind, ident.unit, ident.version, ident.phase):
            raise _fail(name, "dokument-id", "stämmer inte med det utskickade dokumentet (manipulerat)")
        if check is not None:
            check(doc)
        try:
            # A document built from data (a level report) is read against what was sent, as stored;
            # a catalog document against the returns it carried when it was sent.
            exp = (
                catalog.expected_from_spec(doc.spec)
                if doc.spec
                else catalog.expected(cfg, ident.year, req, url=url, as_of=doc.created_at)
            )
        except UserError as exc:  # the configuration no longer has the unit or the kind
            raise _fail(name, "dokument-id", str(exc)) from None
        if exp.format != pkg.format or doc.format != pkg.format:
            raise _fail(name, "", f"dokument-id anger {_FORMAT_SV[doc.format]} men filen är {_FORMAT_SV[pkg.format]}")
        if not exp.fill_in:
            raise _fail(
                name,
                f"dokumenttypen {_show(exp.kind)}",
                "har inget att fylla i och lämnas inte tillbaka (fel mall?)",
            )
        if opened.title is not None and _squash(opened.title) != _squash(clean_text(doc.title, 255)):
            raise _fail(
                name, "egenskapen Rubrik", f"dokumentet är manipulerat: rubriken {_show(opened.title)} är ändrad"
            )
        # The configuration may have changed since the document was sent (another goal, a renamed
        # unit): then what we would write now is not what was sent, and the recipient's name and
        # the locked cells are not compared, only the layout.
        trust_locked = exp.content_hash == doc.content_hash
        if trust_locked and opened.recipient is not None and _squash(opened.recipient) != _squash(exp.recipient):
            raise _fail(
                name,
                "mottagaren",
                f"dokumentet är manipulerat: {_show(opened.recipient)} är inte {_show(exp.recipient)}",
            )
        content = _docx_content(opened, exp) if pkg.format == "docx" else _xlsx_content(opened, exp, trust_locked)
    finally:
        opened.close()
    routes = _routes(cfg, ident.year, req, occasion, ident.doc_key)
    kept = _keep_file(doc, pkg, file_hash)

    def record(session: Session) -> SubmissionResult:
        return _record(session, cfg, name, doc.id, routes, file_hash, content, pkg, actor, kept)  # type: ignore[arg-type]

    return with_retry(record, url)


def content_labels(cfg: OrgConfig, doc: Document) -> tuple[dict[str, str], dict[str, str]]:
    """What a reader calls the parts of a return of the sent document: (Word field name → its
    heading, Excel sheet name → the sheet's title). Renders the expected content in memory."""
    if doc.spec:
        exp = catalog.expected_from_spec(doc.spec)
    else:
        ident = parse_doc_key(doc.key, doc.key)
        req, _ = _request(cfg, ident, doc.key)
        exp = catalog.expected(cfg, ident.year, req)
    return dict(exp.fields), _sheet_titles(exp)


RETURNED_FOLDER = "inkommet"


def _keep_file(doc: Document, pkg: Package, file_hash: str) -> str:
    """Keep the accepted file as it was read (cleaned) beside the sent document, for the receiver to
    open: <phase folder>/inkommet/<sent name>_<hash>.<ext>. Written before the transaction (a
    crash leaves a file the retry writes again under the same name, never a row without one)."""
    root = output_root()
    sent = Path(doc.relpath)
    name = safe_filename(f"{sent.stem}_{file_hash[:12]}.{pkg.format}")
    path = safe_path(root, *sent.parent.parts, RETURNED_FOLDER, name)
    if not path.exists():
        atomic_save(path, lambda fh: fh.write(pkg.data))
    return path.relative_to(root.resolve()).as_posix()


def fill_in_documents(session: Session, receipt: Receipt) -> list[Document]:
    """What a fill-in receipt's author is asked to fill in and hand back: the author's documents of
    the receipt's phase and version (of its follow-up occasion; a level's report apart from its own
    follow-up return), in a stable order."""
    topic = topic_kind(receipt.topic)
    occasion = occasion_of(receipt.topic)
    docs = session.exec(
        select(Document).where(
            Document.cycle_id == receipt.cycle_id,
            Document.phase == receipt.phase,
            Document.unit_id == receipt.sender_unit,
            Document.version == receipt.version,
        )
    ).all()
    level = topic == catalog.LEVEL_REPORT_KINDS[0]
    return sorted(
        (
            d
            for d in docs
            if (d.kind in catalog.LEVEL_REPORT_KINDS) == level
            and (f"-{occasion}/" in d.key if occasion else True)
            and (level or catalog.KINDS[d.kind].phase == receipt.phase)
        ),
        key=lambda d: d.id or 0,
    )


@dataclass(frozen=True)
class Exchange:
    """The two steps of a phase's fill-in handoffs, counted: `requests` sent to authors (every
    version), `returns` handed back (accepted files), and fill-in receipts agreed although one of
    their documents has no stored return (which the rules make impossible: always 0)."""

    requests: int
    returns: int
    agreed_without_return: int


def exchange_counts(session: Session, cycle_id: int, phase: str, occasion: str = "") -> Exchange:
    receipts = [
        r
        for r in session.exec(
            select(Receipt).where(
                Receipt.cycle_id == cycle_id, Receipt.phase == phase, Receipt.mode == HandoffMode.FILL_IN
            )
        )
        if occasion_of(r.topic) == occasion
    ]
    asked = {(r.topic, r.sender_unit, r.version): fill_in_documents(session, r) for r in receipts}
    doc_ids = [d.id for docs in asked.values() for d in docs]
    in_docs = Submission.document_id.in_(doc_ids)  # type: ignore[attr-defined]
    subs = session.exec(select(Submission.document_id).where(in_docs)).all()
    with_return = set(subs)
    without = 0
    for r in receipts:
        docs = asked[(r.topic, r.sender_unit, r.version)]
        if r.state == ReceiptState.AGREED and not (docs and all(d.id in with_return for d in docs)):
            without += 1
    return Exchange(len(asked), len(subs), without)


def latest_returns(session: Session, keys: tuple[str, ...]) -> dict[str, Submission]:
    """The latest return of each document key that has one."""
    latest: dict[str, Submission] = {}
    rows = session.exec(
        select(Document.key, Submission)
        .join(Submission, Submission.document_id == Document.id)  # type: ignore[arg-type]
        .where(Document.key.in_(keys))  # type: ignore[attr-defined]
        .order_by(Submission.id)  # type: ignore[arg-type]
    ).all()
    for key, sub in rows:
        latest[key] = sub
    return latest


def returned_content_hash(returns: dict[str, Submission]) -> str:
    """The hash of a fill-in handoff's returned content, what the receiver agrees to: the latest
    return of each of its fill-in documents, by document key."""
    return content_hash({k: returns[k].content for k in sorted(returns)})


def _squash(text: str) -> str:
    return " ".join(text.split())


def _record(
    session: Session,
    cfg: OrgConfig,
    name: str,
    document_id: int,
    routes: list[_Route],
    file_hash: str,
    content: dict[str, Any],
    pkg: Package,
    actor: str,
    relpath: str,
) -> SubmissionResult:
    doc = session.get(Document, document_id)
    assert doc is not None
    existing = session.exec(
        select(Submission).where(Submission.document_id == doc.id, Submission.file_hash == file_hash)
    ).first()
    if existing is not None:
        return _result(doc, existing, created=False, replaces=None, acknowledged=(), waiting=())
    receipts = _receipts_for(session, doc, routes)
    triples = {(r.topic, r.sender_unit, r.receiver_unit) for r in receipts}
    latest = {t: max(r.version for r in receipts if (r.topic, r.sender_unit, r.receiver_unit) == t) for t in triples}
    current = sorted((r for r in receipts if r.version == doc.version and latest[_triple(r)] == doc.version), key=_id)
    if not current:
        newest = max(latest.values(), default=doc.version)
        if newest > doc.version:
            raise _fail(
                name,
                f"version {doc.version}",
                f"är inaktuell: kvittensen bestreds och version {newest} har skickats ut; "
                f"fyll i och lämna in version {newest} i stället för version {doc.version}",
            )
        raise _fail(name, "dokument-id", "dokumentet har ingen kvittens att lämna svar på")
    for r in current:
        if doc.unit_id not in (r.sender_unit, r.receiver_unit):
            raise _fail(name, "enhet", f"{_show(doc.unit_id)} är inte part i kvittensen {r.key}")
    for r in current:
        if r.state in (ReceiptState.DISPUTED, ReceiptState.SUPERSEDED):
            raise _fail(
                name,
                f"version {doc.version}",
                f"kvittensen är bestriden ({_show(r.comment or '', 80)}); vänta på version {doc.version + 1} "
                "och fyll i den",
            )
    previous = session.exec(
        select(Submission).where(Submission.document_id == doc.id).order_by(Submission.id.desc())  # type: ignore[attr-defined]
    ).first()
    agreed = [r for r in current if r.state == ReceiptState.AGREED]
    if agreed:
        raise _fail(
            name,
            f"version {doc.version}",
            f"är redan godkänd av {agreed[0].signed_by or agreed[0].receiver_unit}; en ändrad fil tas inte emot "
            "efter godkännandet – mottagaren får bestrida kvittensen så att en ny version skickas",
        )
    now = utcnow()
    sub = Submission(
        document_id=doc.id,  # type: ignore[arg-type]
        unit_id=doc.unit_id,
        file_hash=file_hash,
        content=content,
        relpath=relpath,
        received_at=now,
    )
    session.add(sub)
    session.flush()
    sub_key = doc.key
    acknowledged: list[str] = []
    waiting: list[str] = []
    have = _submitted_keys(session, {k for route in routes for k in route.fill_in_keys})
    for r in current:
        route = next((x for x in routes if (x.topic, x.sender, x.receiver) == _triple(r)), None)
        missing = [k for k in (route.fill_in_keys if route else ()) if k not in have]
        if missing:
            waiting.extend(k for k in missing if k not in waiting)
            continue
        was_issued = r.state == ReceiptState.ISSUED
        returns = latest_returns(session, route.fill_in_keys) if route and route.fill_in_keys else {sub_key: sub}
        if not acknowledge(session, r, by=actor, content_hash=returned_content_hash(returns)):
            continue
        if r.mode == HandoffMode.FILL_IN:
            # The delivery: the receiver is asked to agree to what came back (again, if corrected).
            main = session.get(Document, r.document_id) if r.document_id else doc
            queue_delivery(session, cfg, r, main or doc, returned=list(returns.values()))
        if not was_issued:
            continue
        audit(
            session,
            actor=actor,
            action="receipt_acknowledged",
            cycle_id=r.cycle_id,
            phase=r.phase,
            subject=r.key,
            detail={"submission_id": sub.id, "document": doc.key},
        )
        acknowledged.append(r.key)
    audit(
        session,
        actor=actor,
        action="return_received",
        cycle_id=doc.cycle_id,
        phase=doc.phase,
        subject=doc.key,
        detail={
            "submission_id": sub.id,
            "file": clean_text(name, 300),
            "file_hash": file_hash,
            "replaces": previous.id if previous else None,
            "receipts_acknowledged": acknowledged,
            "waiting_for": waiting,
            "removed_characters": pkg.removed_chars,
        },
    )
    return _result(
        doc,
        sub,
        created=True,
        replaces=previous.id if previous else None,
        acknowledged=tuple(acknowledged),
        waiting=tuple(waiting),
    )


def _triple(r: Receipt) -> tuple[str, str, str]:
    return r.topic, r.sender_unit, r.receiver_unit


def _id(r: Receipt) -> int:
    return r.id or 0


def _receipts_for(session: Session, doc: Document, routes: list[_Route]) -> list[Receipt]:
    """Every version of the receipts of the handoffs that carry the document, locked for update.

    The handoffs come from the configuration; a receipt that names the document directly counts
    too, so that a unit renamed in the configuration does not hide its receipt."""
    rows = session.exec(select(Receipt).where(Receipt.cycle_id == doc.cycle_id, Receipt.phase == doc.phase)).all()
    wanted = {(x.topic, x.sender, x.receiver) for x in routes}
    wanted |= {_triple(r) for r in rows if r.document_id == doc.id}
    ids = sorted(r.id for r in rows if _triple(r) in wanted and r.id is not None)
    # Lock in id order: a signature or dispute of the same receipt waits for us, or we for it.
    return [r for i in ids if (r := session.get(Receipt, i, with_for_update=True, populate_existing=True)) is not None]


def _submitted_keys(session: Session, keys: set[str]) -> set[str]:
    if not keys:
        return set()
    rows = session.exec(
        select(Document.key).join(Submission, Submission.document_id == Document.id).where(Document.key.in_(keys))  # type: ignore[attr-defined]
    ).all()
    return set(rows)


def _result(
    doc: Document,
    sub: Submission,
    *,
    created: bool,
    replaces: int | None,
    acknowledged: tuple[str, ...],
    waiting: tuple[str, ...],
) -> SubmissionResult:
    return SubmissionResult(
        submission_id=sub.id or 0,
        document_key=doc.key,
        document_title=doc.title,
        kind=doc.kind,
        unit_id=doc.unit_id,
        version=doc.version,
        file_hash=sub.file_hash,
        created=created,
        replaces=replaces,
        acknowledged=acknowledged,
        waiting_for=waiting,
        content=sub.content,
    )


# ---------------------------------------------------------------------------------------------
# The inbox: a folder secretaries (or a mail gateway) drop returns into
# ---------------------------------------------------------------------------------------------

PROCESSED, REJECTED = "processed", "rejected"
LEDGER = ".styrkedja-inkorg.jsonl"
LOCK = ".styrkedja-inkorg.lock"
_IGNORED_SUFFIXES = (".tmp", ".part", ".crdownload", ".fel.txt", ".partial")


@dataclass(frozen=True)
class InboxResult:
    name: str
    outcome: str  # "processed" | "rejected" | "waiting" (still being written) | "error" (left in place)
    message: str
    moved_to: Path | None = None
    submission: SubmissionResult | None = None


def watch_inbox(
    cfg: OrgConfig,
    folder: Path,
    *,
    once: bool,
    url: str | None = None,
    actor: str = "inkorgen",
    interval: float = 5.0,
    settle: float = 1.0,
    on_result: Callable[[InboxResult], None] | None = None,
    stop: threading.Event | None = None,
) -> list[InboxResult]:
    """Process new files in `folder`: each goes to processed/ or rejected/ (with <name>.fel.txt).

    A file is taken only when its size and modification time are the same on two looks `settle`
    seconds apart (once) or one `interval` apart (watching), so a file still being copied in is
    left for the next look. A ledger of file hashes (.styrkedja-inkorg.jsonl) makes a file that
    was handled before go where it went then, without being processed again; the database's
    (document, file hash) key makes a crash between recording and moving harmless too. An
    unexpected error (the database unreachable) leaves the file where it is, for the next look.
    One process watches a folder at a time (a lock file). Watching runs until `stop` is set or
    the process is interrupted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: inkorgen finns inte eller är ingen mapp")
    for sub in (PROCESSED, REJECTED):
        (folder / sub).mkdir(exist_ok=True)
    results: list[InboxResult] = []

    def emit(res: InboxResult) -> None:
        results.append(res)
        if on_result is not None:
            on_result(res)

    with _folder_lock(folder):
        seen = _look(folder)
        while True:
            # Two looks apart: a file whose size or time changed in between is still being written.
            if stop is not None:
                if stop.wait(settle if once else interval):
                    return results
            else:
                time.sleep(settle if once else interval)
            now = _look(folder)
            ledger = _ledger(folder)
            for path, signature in sorted(now.items()):
                if seen.get(path) != signature:
                    new = path not in seen
                    emit(InboxResult(path.name, "waiting", "ny fil" if new else "filen skrivs fortfarande"))
                    continue
                res = _process(cfg, folder, path, signature, ledger, url=url, actor=actor)
                if res is not None:
                    emit(res)
            if once:
                return results
            seen = now


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{folder}: inkorgen bevakas redan av en annan process ({LOCK})") from None
        yield
    finally:
        os.close(fd)


def _look(folder: Path) -> dict[Path, tuple[int, int]]:
    out: dict[Path, tuple[int, int]] = {}
    for entry in os.scandir(folder):
        name = entry.name
        if name.startswith((".", "~$")) or name.lower().endswith(_IGNORED_SUFFIXES):
            continue  # hidden, Office lock files, partial downloads, our own notes
        try:
            if entry.is_dir(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        out[Path(entry.path)] = (st.st_size, st.st_mtime_ns)
    return out


def _process(
    cfg: OrgConfig,
    folder: Path,
    path: Path,
    signature: tuple[int, int],
    ledger: dict[str, dict[str, str]],
    *,
    url: str | None,
    actor: str,
) -> InboxResult | None:
    name = path.name
    if path.is_symlink():  # never followed: it could point anywhere on the machine
        digest = hashlib.sha256(f"länk:{name}:{os.readlink(path)}".encode()).hexdigest()
        return _finish(folder, path, REJECTED, f"{name}: är en länk; lägg in själva filen", digest, ledger)
    try:
        data, digest = _read_for_inbox(path)
        st = path.lstat()
    except FileNotFoundError:
        return None  # taken away meanwhile: not ours to report
    if (st.st_size, st.st_mtime_ns) != signature:
        return InboxResult(name, "waiting", "filen ändrades under läsningen")
    known = ledger.get(digest)
    if known is not None:
        note = "samma fil har redan lämnats in och behandlats"
        return _finish(folder, path, known["outcome"], known.get("reason", ""), digest, ledger, note=note)
    if data is None:
        return _finish(folder, path, REJECTED, _fail(name, "", _too_big(st.st_size)).args[0], digest, ledger)
    try:
        result = submit_bytes(cfg, name, data, url=url, actor=actor)
    except UserError as exc:
        return _finish(folder, path, REJECTED, str(exc), digest, ledger)
    except Exception as exc:  # the database unreachable, a bug: keep the file for the next look
        log.exception("inbox: %s could not be processed; left in place", name)
        first = (str(exc).splitlines() or [""])[0][:200]
        return InboxResult(name, "error", f"{type(exc).__name__}: {first}; filen ligger kvar till nästa titt")
    message = "redan mottagen (samma fil)" if not result.created else _summary(result)
    return _finish(folder, path, PROCESSED, message, digest, ledger, submission=result)


def _too_big(size: int) -> str:
    return f"filen är {_mb(size)}; högst {_mb(MAX_FILE_BYTES)} tas emot"


def _read_for_inbox(path: Path) -> tuple[bytes | None, str]:
    """(bytes, sha256); bytes None when the file is too large to process (hashed streaming)."""
    h = hashlib.sha256()
    chunks: list[bytes] = []
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            h.update(chunk)
            size += len(chunk)
            if size <= MAX_FILE_BYTES:
                chunks.append(chunk)
    return (b"".join(chunks) if size <= MAX_FILE_BYTES else None), h.hexdigest()


def _summary(r: SubmissionResult) -> str:
    parts = [f"mottagen: {r.document_title} (version {r.version})"]
    if r.acknowledged:
        parts.append(f"{len(r.acknowledged)} kvittens(er) kvitterade")
    if r.waiting_for:
        parts.append("väntar på " + ", ".join(k.rsplit("/", 2)[-2] for k in r.waiting_for))
    return "; ".join(parts)


def _finish(
    folder: Path,
    path: Path,
    outcome: str,
    message: str,
    digest: str,
    ledger: dict[str, dict[str, str]],
    *,
    note: str | None = None,
    submission: SubmissionResult | None = None,
) -> InboxResult:
    # Ledger first, then the move: after a crash in between, the next look finds the hash in the
    # ledger and finishes the move. A file is only ever renamed, never deleted or overwritten.
    if digest not in ledger:
        entry = {"sha256": digest, "name": path.name, "outcome": outcome, "reason": message}
        _append_ledger(folder, entry)
        ledger[digest] = entry
    target = _free_name(folder / outcome, path.name)
    os.replace(path, target)
    if outcome == REJECTED:
        _write_reason(target, message, digest, note)
    shown = f"{message} ({note})" if note else message
    return InboxResult(path.name, outcome, shown, target, submission)


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 2
    while target.exists() or target.is_symlink() or Path(str(target) + ".fel.txt").exists():
        target = folder / f"{stem} ({n}){suffix}"
        n += 1
    return target


def _write_reason(target: Path, message: str, digest: str, note: str | None) -> None:
    from tasks.calendar import today_stockholm

    lines = [
        f"Filen {target.name} kunde inte tas emot.",
        "",
        f"Skäl: {message}",
        *([f"Obs: {note}."] if note else []),
        "",
        "Rätta dokumentet och lämna in det igen. Ändra inte rubrikerna, de låsta cellerna eller",
        "dokumentets egenskaper: de visar vilket dokument det är och vem det skickades till.",
        "",
        f"Datum: {today_stockholm().isoformat()}",
        f"Kontrollsumma (SHA-256): {digest}",
        "",
    ]
    text = "\n".join(lines).encode("utf-8")
    atomic_save(Path(str(target) + ".fel.txt"), lambda fh: fh.write(text))


def _ledger(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / LEDGER
    out: dict[str, dict[str, str]] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and "sha256" in entry and entry.get("outcome") in (PROCESSED, REJECTED):
                    out[entry["sha256"]] = entry
    return out


def _append_ledger(folder: Path, entry: dict[str, str]) -> None:
    from datetime import UTC

    line = json.dumps({**entry, "at": datetime.now(UTC).isoformat(timespec="seconds")}, ensure_ascii=False)
    with (folder / LEDGER).open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


__all__ = [
    "MAX_FILE_BYTES",
    "REQUIRED",
    "InboxResult",
    "Package",
    "SheetRule",
    "SubmissionResult",
    "inspect_package",
    "submit_bytes",
    "submit_file",
    "watch_inbox",
]
