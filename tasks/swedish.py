"""Swedish calendar words, in one place: everything a committee reads names dates in Swedish."""

from __future__ import annotations

from datetime import date

MONTHS = (
    "januari", "februari", "mars", "april", "maj", "juni",
    "juli", "augusti", "september", "oktober", "november", "december",
)  # fmt: skip
MONTHS_SHORT = ("jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec")
WEEKDAYS = ("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag")


def long_date(d: date) -> str:
    """'13 mars 2026'."""
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def short_date(d: date) -> str:
    """'13 mar 2026'."""
    return f"{d.day} {MONTHS_SHORT[d.month - 1]} {d.year}"
