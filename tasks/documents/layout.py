"""Table layout from the text: how wide a word is in the font a reader's program uses.

Word documents are set in Calibri (the base document's theme font); LibreOffice uses Carlito,
which has the same metrics. Widths are measured with Carlito when it is installed, else with
DejaVu Sans, which is wider (LibreOffice's fallback), so a column is never too narrow for a word.
A table column must hold its longest word on one line: otherwise the program breaks the word
in the middle ("Regionledningsko/ntoret").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import ImageFont

_FONTS = {
    False: (
        "/usr/share/fonts/truetype/crosextra/Carlito-Regular.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ),
    True: (
        "/usr/share/fonts/truetype/crosextra/Carlito-Bold.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    ),
}
_SCALE = 20  # measure at 20 px per point
PT_CM = 2.54 / 72
CELL_PADDING_CM = 2 * 0.19 + 0.12  # Word's default cell margins, and a little air
# A line may break at a space or after a hyphen or dash; a no-break space keeps figures whole.
_BREAK = re.compile(r"(?<=[-–/])|[ \t\n]+")


@functools.lru_cache(maxsize=8)
def _font(bold: bool, size_pt: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in _FONTS[bold]:
        if Path(path).is_file():
            return ImageFont.truetype(path, round(size_pt * _SCALE))
    return ImageFont.load_default(size=round(size_pt * _SCALE * 1.1))


@functools.lru_cache(maxsize=20_000)
def text_cm(text: str, size_pt: float, bold: bool = False) -> float:
    """The width of `text` on one line, in centimetres."""
    return _font(bold, size_pt).getlength(text) / _SCALE * PT_CM


def pieces(text: str) -> list[str]:
    """The parts of a text no line break may split."""
    return [p for p in _BREAK.split(text) if p]


def longest_piece_cm(text: str, size_pt: float, bold: bool = False) -> float:
    return max((text_cm(p, size_pt, bold) for p in pieces(text)), default=0.0)


def fit_widths(
    hint: Sequence[float], minimum: Sequence[float], wanted: Sequence[float], total: float
) -> tuple[float, ...] | None:
    """Column widths that give every column at least its minimum (its longest word), share the
    rest like the hint and never waste width on a column whose text is shorter; None when the
    minimums do not fit in `total`."""
    n = len(hint)
    if sum(minimum) > total + 1e-9:
        return None
    scale = total / (sum(hint) or 1)
    widths = [max(h * scale, m) for h, m in zip(hint, minimum, strict=True)]
    # Columns that got more than they need (their longest line) give the surplus to the others.
    for _ in range(3):
        over = sum(widths) - total
        if over > 1e-9:
            slack = [w - m for w, m in zip(widths, minimum, strict=True)]
            room = sum(slack)
            widths = [w - over * s / room for w, s in zip(widths, slack, strict=True)]
        spare = sum(max(0.0, w - max(x, m)) for w, x, m in zip(widths, wanted, minimum, strict=True))
        needy = [i for i in range(n) if widths[i] < wanted[i]]
        if spare < 1e-9 or not needy:
            break
        widths = [min(w, max(x, m)) for w, x, m in zip(widths, wanted, minimum, strict=True)]
        need = sum(wanted[i] - widths[i] for i in needy)
        give = min(spare, need)
        for i in needy:
            widths[i] += give * (wanted[i] - widths[i]) / need
    left = total - sum(widths)
    if left > 1e-9:  # the table fills the text width
        widths = [w + left * w / sum(widths) for w in widths]
    return tuple(round(w, 3) for w in widths)
