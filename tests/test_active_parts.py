"""Macro sheets, embedded objects and links to other workbooks are refused, naming the part."""

from __future__ import annotations

import io
import zipfile

import pytest
from docx import Document as DocxDocument

from models.errors import UserError
from tasks.returns import inspect_package


def _with(part: str) -> bytes:
    buf = io.BytesIO()
    DocxDocument().save(buf)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr(part, b"\xd0\xcf\x11\xe0" + b"\0" * 64)
    return out.getvalue()


@pytest.mark.parametrize(
    ("part", "words"),
    [
        ("xl/macrosheets/sheet1.xml", "Excel 4.0-makroblad"),
        ("word/embeddings/oleObject1.bin", "inbäddade objekt"),
        ("xl/embeddings/Package1.bin", "inbäddade objekt"),
        ("xl/externalLinks/externalLink1.xml", "länkar till en annan arbetsbok"),
    ],
)
def test_active_part_refused(part: str, words: str) -> None:
    with pytest.raises(UserError) as err:
        inspect_package(_with(part), "svar.docx")
    assert str(err.value).startswith(f"svar.docx: {part}: ") and words in str(err.value)


R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _rels(rel_type: str, target: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId99" Type="{R}/{rel_type}" Target="{target}" TargetMode="External"/>'
        "</Relationships>"
    ).encode()


@pytest.mark.parametrize(
    ("rel_type", "target", "words"),
    [
        ("attachedTemplate", "https://angripare.example/mall.dotm", "en extern adress"),
        ("image", "http://angripare.example/bild.png", "en extern adress"),
        ("oleObject", "https://angripare.example/objekt.bin", "en extern adress"),
        ("hyperlink", "\\\\filserver\\delning\\x.docx", "en nätverksresurs"),
        ("hyperlink", "file:///C:/Windows/system32", "en nätverksresurs"),
    ],
)
def test_fetched_content_refused(rel_type: str, target: str, words: str) -> None:
    with pytest.raises(UserError) as err:
        inspect_package(_with_part("word/_rels/settings.xml.rels", _rels(rel_type, target)), "svar.docx")
    assert str(err.value).startswith("svar.docx: word/_rels/settings.xml.rels: ") and words in str(err.value)


def test_web_hyperlink_is_kept() -> None:
    data = _with_part("word/_rels/settings.xml.rels", _rels("hyperlink", "https://www.regionen.se/plan"))
    assert inspect_package(data, "svar.docx").format == "docx"


@pytest.mark.parametrize("defined", ["Auto_Open", "_xlnm.Auto_Open", "auto_close1"])
def test_auto_run_name_refused(defined: str) -> None:
    from openpyxl import Workbook
    from openpyxl.workbook.defined_name import DefinedName

    wb = Workbook()
    wb.defined_names[defined] = DefinedName(defined, attr_text="Sheet!$A$1")
    buf = io.BytesIO()
    wb.save(buf)
    with pytest.raises(UserError) as err:
        inspect_package(buf.getvalue(), "svar.xlsx")
    assert str(err.value).startswith("svar.xlsx: xl/workbook.xml: ") and defined in str(err.value)


def _with_part(part: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    DocxDocument().save(buf)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename != part:
                zout.writestr(info, zin.read(info))
        zout.writestr(part, content)
    return out.getvalue()
