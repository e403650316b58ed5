"""Returned documents: wrong template, tampered identity, zip bombs, files that are not documents,
macros, formulas, XML-invalid characters, 10 MB in a cell, encryption, truncation. Each is built
from a real document the phase sent (committee feedback for HSN, the activity plan for RLK)."""

from __future__ import annotations

import base64
import os
import random
import string
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import openpyxl
from docx import Document as DocxDocument
from secretary import fill_docx, fill_xlsx

from tasks.documents import catalog
from tasks.documents.model import DocRequest

YEAR = 2028


@dataclass
class Sent:
    """What the phase sent, as the corpus builds on it."""

    cfg: Any
    out: Path  # the output folder
    feedback: Path  # HSN's committee feedback (.docx, fill-in)
    feedback_key: str
    other_feedback_key: str  # RUN's
    plan: Path  # RLK's activity plan (.xlsx, fill-in)
    plan_key: str
    operational: Path  # HSN's operational plan text (.docx), another template


def _good_docx(sent: Sent, dst: Path) -> Path:
    fields = catalog.expected_fields(sent.cfg, YEAR, DocRequest("aterkoppling", "committee_feedback", "HSN"))
    fill_docx(sent.feedback, dst, {name: [f"Svar om {name}."] for name in fields}, inject=False)
    return dst


def _choices(wb: Any, ws: Any, cell: str) -> list[str]:
    for dv in ws.data_validations.dataValidation:
        if dv.type == "list" and cell in dv.sqref:
            f = dv.formula1
            if f.startswith('"'):
                return f.strip('"').split(",")
            sheet, ref = f.split("!")
            return [c.value for (c,) in wb[sheet.strip("'")][ref.replace("$", "")]]
    raise AssertionError(f"no list on {cell}")


def _plan_edits(sent: Sent) -> dict[str, dict[tuple[int, str], Any]]:
    wb = openpyxl.load_workbook(sent.plan)
    act, budget = wb["Aktiviteter"], wb["Detaljbudget"]
    goal = _choices(wb, act, "B2")[0]
    activities: dict[tuple[int, str], Any] = {}
    for r in range(2, act.max_row):  # the last row is "Summa"
        activities |= {
            (r, "Koppling till mål/åtagande"): goal,
            (r, "Aktivitet"): f"Aktivitet {r}",
            (r, "Ansvarig"): "Örjan Åström",
            (r, "Start"): date(2028, 1, 1 + r),
            (r, "Klart"): date(2028, 12, 1),
            (r, "Kostnad (tkr)"): 100 * r,
        }
    money: dict[tuple[int, str], Any] = {}
    for r in range(2, budget.max_row):
        money |= {
            (r, "Personalkostnader"): 1000 * r,
            (r, "Lokalkostnader"): 200,
            (r, "Övriga kostnader"): 55.5,
            (r, "Intäkter (anges negativt)"): -300,
        }
    return {"Aktiviteter": activities, "Detaljbudget": money}


def _xlsx(sent: Sent, dst: Path, activities: dict[tuple[int, str], Any] | None = None) -> Path:
    edits = _plan_edits(sent)
    edits["Aktiviteter"] |= activities or {}
    fill_xlsx(sent.plan, dst, edits, inject=False)
    return dst


def _zip_edit(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None], add: dict[str, bytes] | None = None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


def _in_part(part: str, old: bytes, new: bytes) -> Callable[[str, bytes], bytes]:
    def change(name: str, data: bytes) -> bytes:
        if name == part:
            assert old in data, f"{old!r} not in {part}"
            return data.replace(old, new, 1)
        return data

    return change


# -- the cases ------------------------------------------------------------------------------------


def wrong_template(sent: Sent, folder: Path) -> Path:
    """HSN's operational plan text, its identity consistently rewritten to HSN's feedback."""
    p = folder / "verksamhetsplan_som_aterkoppling.docx"
    fields = catalog.expected_fields(sent.cfg, YEAR, DocRequest("verksamhetsplan", "operational_plans", "HSN"))
    fill_docx(sent.operational, p, {n: ["svar"] for n in fields}, inject=False)
    doc = DocxDocument(p)
    cp = doc.core_properties
    cp.identifier, cp.category = sent.feedback_key, "aterkoppling"
    cp.title = DocxDocument(sent.feedback).core_properties.title
    cp.keywords = f"styrkedja; aterkoppling; committee_feedback; {YEAR}; HSN; v1"
    for row in doc.tables[0].rows:
        if row.cells[0].text == "Dokument-id":
            row.cells[1].paragraphs[0].runs[0].text = sent.feedback_key
    doc.save(p)
    return p


def identifier_of_another_unit(sent: Sent, folder: Path) -> Path:
    p = _good_docx(sent, folder / "hsn_som_run.docx")
    doc = DocxDocument(p)
    doc.core_properties.identifier = sent.other_feedback_key
    doc.save(p)
    return p


def identifier_of_another_year(sent: Sent, folder: Path) -> Path:
    p = _good_docx(sent, folder / "fel_ar.docx")
    doc = DocxDocument(p)
    doc.core_properties.identifier = sent.feedback_key.replace(f"/{YEAR}/", "/2029/")
    doc.save(p)
    return p


def identifier_garbage(sent: Sent, folder: Path) -> Path:
    p = _good_docx(sent, folder / "skrap_id.docx")
    doc = DocxDocument(p)
    doc.core_properties.identifier = "../../etc/passwd"
    doc.save(p)
    return p


def identifier_removed(sent: Sent, folder: Path) -> Path:
    p = _good_docx(sent, folder / "utan_id.docx")
    doc = DocxDocument(p)
    doc.core_properties.identifier = ""
    doc.save(p)
    return p


def keywords_tampered(sent: Sent, folder: Path) -> Path:
    p = _good_docx(sent, folder / "nyckelord.docx")
    doc = DocxDocument(p)
    doc.core_properties.keywords = f"styrkedja; aterkoppling; committee_feedback; {YEAR}; RUN; v1"
    doc.save(p)
    return p


def bookmark_renamed(sent: Sent, folder: Path) -> Path:
    good = _good_docx(sent, folder / "bokmarke_orig.docx")
    return _zip_edit(
        good, folder / "bokmarke.docx", _in_part("word/document.xml", b'w:name="sk_bidrag_mal"', b'w:name="sk_x"')
    )


def workbook_meta_tampered(sent: Sent, folder: Path) -> Path:
    p = _xlsx(sent, folder / "manipulerad.xlsx")
    book = openpyxl.load_workbook(p)
    meta = book["_styrkedja"]
    for r in range(1, meta.max_row + 1):
        if meta.cell(r, 1).value == "doc_key":
            meta.cell(r, 2).value = sent.plan_key.replace("/RLK/", "/HSF/")
        if meta.cell(r, 1).value == "unit":
            meta.cell(r, 2).value = "HSF"
    book.save(p)
    return p


def zip_bomb_ratio(sent: Sent, folder: Path) -> Path:
    """document.xml inflating to 60 MB of zeros (60 kB on disk, 1000:1), written streaming."""
    bomb = folder / "bomb.docx"
    with zipfile.ZipFile(sent.feedback) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename != "word/document.xml":
                zout.writestr(info, zin.read(info))
        chunk = b"\0" * (1 << 20)
        with zout.open("word/document.xml", "w", force_zip64=True) as fh:
            for _ in range(60):
                fh.write(chunk)
    return bomb


def zip_bomb_members(sent: Sent, folder: Path) -> Path:
    """Thousands of small members: no single ratio is suspicious, their number is."""
    return _zip_edit(
        sent.feedback,
        folder / "manga_delar.docx",
        lambda _n, d: d,
        {f"word/media/x{i}.xml": b"<a/>" for i in range(2500)},
    )


def zip_bomb_total(sent: Sent, folder: Path) -> Path:
    """Members of 0.9 MB each (under the ratio check's size), 120 of them: 108 MB unpacked."""
    rng = random.Random(9)
    blob = bytes(rng.getrandbits(8) for _ in range(4096)) * 230  # compresses, but not past 100:1
    return _zip_edit(
        sent.feedback, folder / "stor_total.docx", lambda _n, d: d, {f"word/media/m{i}.bin": blob for i in range(120)}
    )


def truncated(sent: Sent, folder: Path) -> Path:
    p = folder / "avkortad.docx"
    data = _good_docx(sent, folder / "hel.docx").read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def crc_broken(sent: Sent, folder: Path) -> Path:
    good = _good_docx(sent, folder / "crc_orig.docx")
    p = folder / "crc.docx"
    p.write_bytes(good.read_bytes())
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("word/document.xml")
    data = bytearray(p.read_bytes())
    # Flip one byte inside the compressed document.xml: the CRC (or inflate) no longer agrees.
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 40
    data[start] ^= 0xFF
    p.write_bytes(bytes(data))
    return p


def _bytes(name: str, data: bytes) -> Callable[[Sent, Path], Path]:
    def make(sent: Sent, folder: Path) -> Path:
        p = folder / name
        p.write_bytes(data)
        return p

    return make


def docm_suffix(sent: Sent, folder: Path) -> Path:
    p = folder / "svar.docm"
    p.write_bytes(_good_docx(sent, folder / "svar.docx").read_bytes())
    return p


def macro_project(sent: Sent, folder: Path) -> Path:
    return _zip_edit(
        _good_docx(sent, folder / "m.docx"),
        folder / "makro.docx",
        lambda _n, d: d,
        {"word/vbaProject.bin": b"\xd0\xcf\x11\xe0" + b"\0" * 512},
    )


def macro_content_type(sent: Sent, folder: Path) -> Path:
    return _zip_edit(
        _good_docx(sent, folder / "m.docx"),
        folder / "makroaktiverad.docx",
        _in_part(
            "[Content_Types].xml",
            b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            b"application/vnd.ms-word.document.macroEnabled.main+xml",
        ),
    )


def activex(sent: Sent, folder: Path) -> Path:
    return _zip_edit(
        _good_docx(sent, folder / "m.docx"),
        folder / "activex.docx",
        lambda _n, d: d,
        {"word/activeX/activeX1.xml": b"<a/>"},
    )


def dtd_entities(sent: Sent, folder: Path) -> Path:
    laughs = b'<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'

    def change(name: str, data: bytes) -> bytes:
        return data.replace(b"?>", b"?>" + laughs, 1) if name == "word/document.xml" else data

    return _zip_edit(_good_docx(sent, folder / "d.docx"), folder / "dtd.docx", change)


def encrypted_member(sent: Sent, folder: Path) -> Path:
    p = _good_docx(sent, folder / "krypterad.docx")
    data = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as zf:
        infos = zf.infolist()
    for info in infos:  # set the "encrypted" flag in each local header and central directory entry
        data[info.header_offset + 6] |= 0x1
    cd = data.rfind(b"PK\x05\x06")
    offset = int.from_bytes(data[cd + 16 : cd + 20], "little")
    while data[offset : offset + 4] == b"PK\x01\x02":
        data[offset + 8] |= 0x1
        n, m, k = (int.from_bytes(data[offset + i : offset + i + 2], "little") for i in (28, 30, 32))
        offset += 46 + n + m + k
    p.write_bytes(bytes(data))
    return p


def template_file(sent: Sent, folder: Path) -> Path:
    return _zip_edit(
        _good_docx(sent, folder / "t.docx"),
        folder / "mall.docx",
        _in_part(
            "[Content_Types].xml",
            b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            b"application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
        ),
    )


def suffix_mismatch(sent: Sent, folder: Path) -> Path:
    p = folder / "ordbehandlat.xlsx"
    p.write_bytes(_good_docx(sent, folder / "o.docx").read_bytes())
    return p


def deep_xml(sent: Sent, folder: Path) -> Path:
    deep = b"<w:r>" * 20_000 + b"</w:r>" * 20_000
    return _zip_edit(
        _good_docx(sent, folder / "x.docx"),
        folder / "djup.docx",
        _in_part("word/document.xml", b"<w:body>", b"<w:body>" + deep),
    )


def invalid_chars_only(sent: Sent, folder: Path) -> Path:
    """A required answer made only of characters XML cannot hold: cleaned away, the field is empty."""
    p = folder / "styrtecken.docx"
    fields = catalog.expected_fields(sent.cfg, YEAR, DocRequest("aterkoppling", "committee_feedback", "HSN"))
    answers = {name: [f"Svar om {name}."] for name in fields}
    answers["ovriga_synpunkter"] = ["QQCTRLQQ"]
    fill_docx(sent.feedback, p, answers, inject=True)
    return p


def formula_in_number(formula: str, name: str) -> Callable[[Sent, Path], Path]:
    def make(sent: Sent, folder: Path) -> Path:
        return _xlsx(sent, folder / name, {(3, "Kostnad (tkr)"): formula})

    return make


def formula_in_locked(sent: Sent, folder: Path) -> Path:
    p = _xlsx(sent, folder / "formel_last.xlsx")
    book = openpyxl.load_workbook(p)
    book["Detaljbudget"]["A2"] = '=HYPERLINK("http://evil.example","Klicka")'
    book.save(p)
    return p


def ten_mb_in_a_cell(sent: Sent, folder: Path) -> Path:
    huge = base64.b64encode(os.urandom(7_500_000))  # 10 000 000 characters that do not compress
    p = _xlsx(sent, folder / "jattecell_liten.xlsx", {(2, "Aktivitet"): "QQHUGEQQ"})
    return _zip_edit(p, folder / "jattecell.xlsx", lambda _n, data: data.replace(b"QQHUGEQQ", huge))


def ten_mb_in_a_field(sent: Sent, folder: Path) -> Path:
    fields = catalog.expected_fields(sent.cfg, YEAR, DocRequest("aterkoppling", "committee_feedback", "HSN"))
    answers = {name: [f"Svar om {name}."] for name in fields}
    answers["ovriga_synpunkter"] = ["QQHUGEQQ"]
    p = folder / "jattefalt_liten.docx"
    fill_docx(sent.feedback, p, answers, inject=False)
    rng = random.Random(5)  # random letters: a text, not a zip bomb
    huge = "".join(rng.choices(string.ascii_letters + " ", k=1_000_000)).encode()
    return _zip_edit(p, folder / "jattefalt.docx", lambda _n, data: data.replace(b"QQHUGEQQ", huge))


def too_big(sent: Sent, folder: Path) -> Path:
    p = folder / "for_stor.docx"
    with p.open("wb") as fh:  # sparse: 25 MB on paper, nothing on disk
        fh.write(b"PK\x03\x04")
        fh.truncate(25 * 1024 * 1024)
    return p


_PNG = b"\x89PNG\r\n\x1a\n" + bytes(random.Random(1).getrandbits(8) for _ in range(2000))

# (id, maker, fragments of the one-line refusal; the file name is always checked as well)
CASES: list[tuple[str, Callable[[Sent, Path], Path], tuple[str, ...]]] = [
    ("wrong template", wrong_template, ("hör inte till mallen",)),
    ("identifier of another unit", identifier_of_another_unit, ("manipulerat",)),
    ("identifier of another year", identifier_of_another_year, ("2029",)),
    ("identifier is a path", identifier_garbage, ("'../../etc/passwd'", "känns inte igen")),
    ("identifier removed", identifier_removed, ("dokument-id",)),
    ("keywords name another unit", keywords_tampered, ("manipulerat", "'RUN'")),
    ("bookmark renamed", bookmark_renamed, ("fältet 'x'", "hör inte till mallen")),
    ("workbook identity tampered", workbook_meta_tampered, ("manipulerat",)),
    ("zip bomb (ratio)", zip_bomb_ratio, ("komprimerad", "zip-bomb")),
    ("zip bomb (members)", zip_bomb_members, ("delar", "högst 2000")),
    ("zip bomb (total size)", zip_bomb_total, ("packas upp till", "zip-bomb")),
    ("truncated zip", truncated, ("skadad eller avkortad",)),
    ("broken CRC", crc_broken, ("skadad",)),
    ("plain text", _bytes("text.docx", "Hej!\nDet här är text.".encode()), ("inte ett Word- eller Excel-dokument",)),
    ("empty file", _bytes("tom.docx", b""), ("tom",)),
    ("PNG image", _bytes("bild.docx", _PNG), ("PNG-bild",)),
    ("PDF", _bytes("svar.docx", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), ("PDF-fil",)),
    (
        "encrypted (OLE, password)",
        _bytes("losen.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 4096),
        ("lösenordsskyddat",),
    ),
    ("encrypted zip members", encrypted_member, ("krypterad",)),
    (".docm file", docm_suffix, (".docm", "makron")),
    ("macro project", macro_project, ("vbaProject.bin", "makron")),
    ("macro-enabled content type", macro_content_type, ("makroaktiverat",)),
    ("ActiveX control", activex, ("ActiveX",)),
    ("DTD with entities", dtd_entities, ("DTD",)),
    ("template (.dotx) content", template_file, ("dokumentmall",)),
    ("suffix does not match", suffix_mismatch, ("filändelsen .xlsx",)),
    ("XML nested 20 000 deep", deep_xml, ("skadad",)),
    ("XML-invalid characters only", invalid_chars_only, ("'Övriga synpunkter'", "är tomt")),
    (
        "=HYPERLINK in a number cell",
        formula_in_number('=HYPERLINK("http://evil.example","x")', "hyperlank.xlsx"),
        ("cell G3",),
    ),
    ("=cmd| DDE in a number cell", formula_in_number("=cmd|' /C calc'!A0", "dde.xlsx"), ("cell G3",)),
    ("formula in a locked cell", formula_in_locked, ("cell A2", "låst")),
    ("10 MB of text in a cell", ten_mb_in_a_cell, ("cell C2", "10 000 000 tecken")),
    ("1 MB of text in a Word field", ten_mb_in_a_field, ("Övriga synpunkter",)),
    ("file over 20 MB", too_big, ("högst 20,0 MB",)),
]
