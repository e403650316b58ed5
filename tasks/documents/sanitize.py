"""Cleaning of untrusted strings before they reach a document or the file system.

Spreadsheet formula prefixes: `cell_text` returns the cleaned string unchanged in content,
and the Excel writer stores every string that `looks_like_formula` as an explicit string
cell (`data_type = "s"`, written as an inline string, never as `<f>`) with the `quotePrefix`
cell style. We chose this over prefixing an apostrophe or a zero-width character because
openpyxl reads the value back as exactly the same string (returns can be compared with what
we sent), LibreOffice and Excel show it as text and never evaluate it, and quotePrefix keeps
it text even when a secretary edits the cell and presses Enter.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath

from models.errors import UserError

ELLIPSIS = "…"
# Excel's limit for one cell's text.
MAX_CELL_CHARS = 32_767
MAX_FILENAME = 120
# Hex digits of the original's SHA-256 appended to a file name that cleaning changed.
_HASH_CHARS = 10

# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
# \r is legal XML but we normalise line ends first, so it is dropped with the rest.
# Lone surrogates and U+FFFE/U+FFFF are what breaks lxml besides the C0 controls.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_FILENAME_BAD = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"COM{i}" for i in "123456789¹²³"]
    + [f"LPT{i}" for i in "123456789¹²³"]
)


def clean_text(s: str, max_len: int = 32_000) -> str:
    """Drop characters XML 1.0 cannot hold (keeping tab and newline), normalise line ends to
    \\n and cut at max_len characters, marking the cut with "…"."""
    if not isinstance(s, str):
        s = str(s)
    if "\r" in s:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
    s = _XML_INVALID.sub("", s)
    if len(s) > max_len:
        s = s[: max(max_len - 1, 0)] + ELLIPSIS if max_len > 0 else ""
    return s


def looks_like_formula(s: str) -> bool:
    """True when a spreadsheet could read the string as a formula (CSV/formula injection)."""
    return s.startswith(FORMULA_PREFIXES)


def cell_text(s: str) -> str:
    """Text for one spreadsheet cell: cleaned and within Excel's cell limit.

    The content is not altered; the writer marks formula-like strings as text (module doc).
    """
    return clean_text(s, MAX_CELL_CHARS)


def safe_filename(name: str) -> str:
    """One file name component: no separators, traversal, control or reserved characters,
    no reserved Windows device name, at most 120 characters, never empty.

    Distinct inputs give distinct names: a name that passes unchanged is kept as it is, and one
    that cleaning had to change (a character replaced, dots merged, a prefix added, cut to
    length) gets "-" and 10 hex digits of the SHA-256 of the original before its extension, so
    that `A__B` and `A_B`, or `CON` and `_CON`, can never land on the same file. Names that
    differ only in case (a collision on Windows and macOS shares) are not made distinct here:
    the configuration refuses unit ids that differ only in case, and every other part of a
    document's file name is a lower-case constant.
    """
    original = name if isinstance(name, str) else str(name)
    s = unicodedata.normalize("NFC", clean_text(original, 4 * MAX_FILENAME))
    s = _FILENAME_BAD.sub("_", s)
    # Runs of dots collapse, so ".." can never survive, wherever it stands. Runs of underscores
    # stay: unit ids may hold "__", and merging them made distinct ids share a file.
    s = re.sub(r"\.{2,}", ".", s)
    s = re.sub(r"\s+", " ", s).strip(" ._")
    if not s or not s.strip("_"):
        s = "dokument"
    if s.split(".", 1)[0].strip().upper() in _WINDOWS_RESERVED:
        s = "_" + s
    if s == original and len(s) <= MAX_FILENAME:
        return s
    digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    stem, dot, ext = s.rpartition(".")
    if not (dot and stem and 0 < len(ext) <= 10 and " " not in ext):
        stem, ext = s, ""
    suffix = f"-{digest}" + (f".{ext}" if ext else "")
    return stem[: MAX_FILENAME - len(suffix)].rstrip(" .") + suffix


def safe_path(root: Path, *parts: str) -> Path:
    """root/parts…, guaranteed to stay inside root (after resolving symlinks).

    Raises UserError naming the offending value; nothing is created.
    """
    base = Path(root).resolve()
    for part in parts:
        text = str(part)
        if (
            not text
            or "\x00" in text
            or PurePosixPath(text).is_absolute()
            or PureWindowsPath(text).is_absolute()
            or PureWindowsPath(text).drive
            or ".." in PurePosixPath(text.replace("\\", "/")).parts
        ):
            raise UserError(f"unsafe path component {text!r}: must be a relative name without '..'")
    target = base.joinpath(*parts).resolve()
    if not target.is_relative_to(base) or target == base:
        shown = "/".join(str(p) for p in parts)
        raise UserError(f"unsafe path {shown!r}: it would leave the output folder {str(base)!r}")
    return target
