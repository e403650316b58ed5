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
