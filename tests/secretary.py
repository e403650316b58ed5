"""The committee secretary of the tests: fills in returned documents with python-docx and openpyxl,
as a person would, optionally leaving characters XML cannot hold in the saved file."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import openpyxl
from docx import Document as DocxDocument
from docx.oxml.ns import qn

from tasks.documents import word

CTRL = "QQCTRLQQ"  # replaced in the saved file by characters XML cannot hold; the return must lose them


def inject_raw(path: Path, replacement: bytes) -> None:
    """Put raw bytes where CTRL stands in the saved file: what python-docx and openpyxl refuse to write."""
    with zipfile.ZipFile(path) as zin:
        parts = [(i, zin.read(i)) for i in zin.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info, data in parts:
            zout.writestr(info, data.replace(CTRL.encode(), replacement))


def answer_paragraphs(doc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    current = None
    for p in doc.paragraphs:
        marks = [b.get(qn("w:name")) for b in p._p.iter(qn("w:bookmarkStart"))]
        prefix = word.FIELD_BOOKMARK_PREFIX
        fields = [m[len(prefix) :] for m in marks if m and m.startswith(prefix)]
        if fields:
            current = fields[0]
        elif current and p.style.name == word.ANSWER_STYLE and current not in out:
            out[current] = p
    return out


def fill_docx(src: Path, dst: Path, answers: dict[str, list[str]], *, inject: bool = True) -> dict[str, str]:
    """Type each answer into its yellow field, paragraph by paragraph ("\\n" inside one is
    Shift+Enter); returns what the database must hold."""
    doc = DocxDocument(src)
    paragraphs = answer_paragraphs(doc)
    for name, texts in answers.items():
        p = paragraphs[name]
        for text in texts[:-1]:
            p.insert_paragraph_before(text, style=word.ANSWER_STYLE)
        p.add_run(texts[-1])  # python-docx turns "\n" into a line break
    doc.save(dst)
    if inject:  # after this, python-docx can no longer open the file; the return reader must
        inject_raw(dst, b"\x01\x02&#x7;&#8;\x1f")
    return {name: "\n".join(texts).replace(CTRL, "") for name, texts in answers.items()}


def headers(ws: Any) -> dict[str, int]:
    return {c.value: c.column for c in ws[1] if c.value}


def fill_xlsx(src: Path, dst: Path, edits: dict[str, dict[tuple[int, str], Any]], *, inject: bool = True) -> None:
    """edits: sheet -> (row, header) -> value, typed into the workbook as a secretary would."""
    wb = openpyxl.load_workbook(src)
    for sheet, cells in edits.items():
        ws = wb[sheet]
        cols = headers(ws)
        for (row, header), value in cells.items():
            ws.cell(row, cols[header]).value = value
    wb.save(dst)
    if inject:
        inject_raw(dst, b"\x01_x0002_&#x7;\x08")
