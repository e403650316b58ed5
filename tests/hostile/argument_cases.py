"""Command-line arguments: traversal in names and paths, unknown phases and occasions, years out of
range, empty strings, values of the wrong type. The database holds a plan year 2028 with receipts
(receipt 1 exists), so a refusal cannot hide behind "nothing there"."""

from __future__ import annotations

from pathlib import Path

from hostile import Case

YEAR = "2028"


def _static(*args: str) -> object:
    def make(folder: Path) -> list[str]:
        return list(args)

    return make


def _traversal_file(folder: Path) -> list[str]:
    return ["submit", str(folder / ("../" * 30) / "etc" / "passwd")]


def _traversal_folder(folder: Path) -> list[str]:
    return ["submit", str(folder / ".." / "..")]


_SPECS: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("unknown phase", ["run", "budgetering", "--local"], ("unknown phase 'budgetering'",)),
    ("phase is a path", ["run", "../../etc", "--local"], ("unknown phase '../../etc'",)),
    ("empty phase", ["run", "", "--local"], ("unknown phase ''",)),
    ("year 0", ["run", "preparation", "--year", "0", "--local"], ("0 is out of range",)),
    ("year 99999", ["run", "preparation", "--year", "99999", "--local"], ("99999 is out of range",)),
    ("year -1", ["run", "preparation", "--year", "-1", "--local"], ("-1 is out of range",)),
    ("year not a number", ["run", "preparation", "--year", "tjugo", "--local"], ("--year", "valid integer")),
    ("year empty", ["run", "preparation", "--year", "", "--local"], ("--year",)),
    ("misspelt option", ["run", "preparation", "--yeer", YEAR], ("No such option: --yeer",)),
    ("unknown command", ["budgetera"], ("No such command 'budgetera'",)),
    (
        "unknown occasion",
        ["run", "follow-up", "--occasion", "nope", "--year", YEAR, "--local"],
        ("unknown follow-up occasion 'nope'",),
    ),
    (
        "occasion is a path",
        ["run", "follow-up", "--occasion", "../../etc/passwd", "--year", YEAR, "--local"],
        ("'../../etc/passwd'",),
    ),
    (
        "occasion on another phase",
        ["run", "preparation", "--occasion", "ar-2028-12-31", "--local"],
        ("only the follow-up phase",),
    ),
    (
        "override without reason",
        ["run", "preparation", "--override", "--reason", "   ", "--local"],
        ("--override needs --reason",),
    ),
    ("config is a path", ["validate-config", "../../../../../../etc/passwd"], ("/etc/passwd", "expected a mapping")),
    (
        "unit is a path (calendar)",
        ["calendar", "export", "--unit", "../../etc", "--year", YEAR],
        ("unknown unit '../../etc'",),
    ),
    (
        "unit is a path (receipts)",
        ["receipt", "list", "--unit", "../../etc", "--year", YEAR],
        ("unknown unit '../../etc'",),
    ),
    ("empty unit", ["calendar", "export", "--unit", "", "--year", YEAR], ("unknown unit ''",)),
    (
        "signatory is a path",
        ["receipt", "sign", "1", "--signatory", "../../etc", "--code", "ABCDEFGH"],
        ("'../../etc' is not a signatory",),
    ),
    ("empty code", ["receipt", "sign", "1", "--signatory", "x", "--code", ""], ("receipt 1",)),
    (
        "receipt id negative",
        ["receipt", "sign", "-5", "--signatory", "x", "--code", "ABCDEFGH"],
        ("No such option: -5",),
    ),
    ("receipt id huge", ["receipt", "show", "99999999999999999999"], ("no receipt with id",)),
    ("receipt id not a number", ["receipt", "show", "../1"], ("receipt_id", "valid integer")),
    ("unknown receipt state", ["receipt", "list", "--state", "stulen", "--year", YEAR], ("unknown state 'stulen'",)),
    ("milestone is a path", ["calendar", "done", "../../etc", "--year", YEAR], ("unknown milestone '../../etc'",)),
    ("impossible --as-of", ["watch", "--as-of", "2027-02-31"], ("--as-of", "'2027-02-31'")),
    ("export year 0", ["export", "--year", "0", "--out", "x.zip"], ("0 is out of range",)),
    ("import a non-archive", ["import", "/etc/passwd"], ("passwd", "not a readable Styrkedja cycle archive")),
    (
        "resume with an empty reason",
        ["resume", "preparation", "--reason", " ", "--year", YEAR],
        ("a reason is required",),
    ),
]

AUDITED = {"signatory is a path", "empty code"}

CASES = [
    Case(f"argument: {case_id}", _static(*args), fragments, audited=case_id in AUDITED)
    for case_id, args, fragments in _SPECS
] + [
    Case("argument: file path traversal", _traversal_file, ("passwd", "inte ett Word- eller Excel-dokument")),
    Case("argument: folder instead of a file", _traversal_folder, ("ingen vanlig fil",)),
]
