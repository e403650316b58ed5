"""The text a person reads in a generated document: every paragraph of a Word document (body,
tables, running header and footer), every value and list choice of an Excel workbook's visible
sheets. Hidden metadata (core properties, the hidden identity and list sheets) is not read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import openpyxl
from docx import Document as open_docx
from docx.oxml.ns import qn

WORD = re.compile(r"[0-9A-Za-zÀ-ÖØ-öø-ÿ_]+(?:[-'][0-9A-Za-zÀ-ÖØ-öø-ÿ_]+)*")


def _docx_lines(path: Path) -> Iterator[str]:
    doc = open_docx(path)
    parts = [doc.element.body]
    for section in doc.sections:
        parts += [section.header._element, section.footer._element]
    text, tab, br, cr = qn("w:t"), qn("w:tab"), qn("w:br"), qn("w:cr")
    for part in parts:
        for p in part.iter(qn("w:p")):
            # A tab or a line break separates words as a space does.
            yield "".join((el.text or "") if el.tag == text else " " for el in p.iter(text, tab, br, cr))


def _xlsx_lines(path: Path) -> Iterator[str]:
    wb = openpyxl.load_workbook(path)
    lists = wb["_listor"] if "_listor" in wb.sheetnames else None
    for ws in wb.worksheets:
        if ws.sheet_state != "visible":
            continue
        for row in ws.iter_rows(values_only=True):
            for value in row:
                if isinstance(value, str) and not value.startswith("="):
                    yield value
        for dv in ws.data_validations.dataValidation:
            if dv.type == "list" and dv.formula1 and dv.formula1.startswith('"'):
                yield from dv.formula1.strip('"').split(",")
    if lists is not None:  # the choices a person picks from, kept on a hidden sheet
        for row in lists.iter_rows(values_only=True):
            yield from (v for v in row if isinstance(v, str))


def lines(path: Path) -> list[str]:
    return list(_docx_lines(path) if path.suffix == ".docx" else _xlsx_lines(path))


def words(text: str) -> list[str]:
    return WORD.findall(text)
