"""Reading back the Rich tables the command line prints, as a user reads them."""

from __future__ import annotations


def table_rows(output: str) -> list[dict[str, str]]:
    """The rows of a Rich table printed by the CLI: the header row (┃) names the cells; a row
    folded over several lines (empty first cell) is joined back, cell by cell, with spaces."""
    header: list[str] = []
    rows: list[dict[str, str]] = []
    for line in output.splitlines():
        if line.startswith("┃"):
            header = [c.strip() for c in line.strip("┃").split("┃")]
            continue
        if not header or not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        if cells[0]:
            rows.append(dict.fromkeys(header, ""))
        if rows:
            for name, cell in zip(header, cells, strict=True):
                if cell:
                    rows[-1][name] = f"{rows[-1][name]} {cell}".strip()
    return rows


def rows_by_first_column(output: str) -> dict[str, dict[str, str]]:
    """The same rows keyed by their first cell (an id)."""
    return {next(iter(row.values())): row for row in table_rows(output)}
