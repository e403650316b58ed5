"""Whole words in a PDF: every word LibreOffice set on a page must be a word of the source
document. A word broken across lines in a table cell ("Regionledningsko" / "ntoret") or cut at a
cell's edge shows up as a piece that is no word of the source."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from doc_text import lines, words

# Words the programs add themselves: page numbering, Excel's number format ("1 250 tkr").
ADDED = {"tkr", "Sida", "av", "Page", "of"}


def source_words(path: Path) -> set[str]:
    out: set[str] = set(ADDED)
    for line in lines(path):
        for w in words(line):
            out.add(w)
            out.update(p for p in re.split(r"[-']", w) if p)  # a line may break after a hyphen
    return out


def pdf_words(pdf: Path) -> list[tuple[int, str, str]]:
    """(page, word, its line) for every word of the PDF's text."""
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    found = []
    for page, body in enumerate(text.split("\f"), start=1):
        for line in body.splitlines():
            for w in words(line):
                found.append((page, w, line.strip()))
    return found


def broken_words(source: Path, pdf: Path) -> list[str]:
    """The PDF's words that are no word of the source (figures and dates aside)."""
    known = source_words(source)
    bad = []
    for page, w, line in pdf_words(pdf):
        if re.search(r"\d", w) or w in known or all(p in known for p in re.split(r"[-']", w) if p):
            continue
        bad.append(f"{pdf.name} page {page}: {w!r} in {line[:110]!r}")
    return bad
