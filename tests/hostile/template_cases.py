"""Organisation templates (STYRKEDJA_TEMPLATE_DIR): sandbox escapes, runaway loops, output bombs,
undefined variables, broken markup. `styrkedja run` renders them in memory before the phase
touches the database, so each is one line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

from hostile import Case

# The text of the preparation phase's document (planeringsunderlag) and of the follow-up.
PREPARATION = "planeringsunderlag.txt.j2"

_SPECS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("sandbox escape via __mro__", PREPARATION, "{{ ''.__class__.__mro__ }}", ("unsafe", "__class__")),
    ("sandbox escape via globals", PREPARATION, "{{ cycler.__init__.__globals__.os }}", ("unsafe",)),
    ("runaway loop", PREPARATION, "{% for i in range(10**9) %}x{% endfor %}", ("range() of 1000000000",)),
    ("output size bomb", PREPARATION, "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", ("output larger",)),
    ("string multiplication bomb", PREPARATION, "{{ 'x' * 100000000 }}", ("repeating",)),
    ("exponent bomb", PREPARATION, "{{ 9 ** 9999999 }}", ("exponent",)),
    ("undefined variable", PREPARATION, "# Rubrik\n\n{{ hemlig_variabel }}\n", ("'hemlig_variabel' is undefined",)),
    ("syntax error", PREPARATION, "{% for %}", ("line 1",)),
    ("recursion", PREPARATION, "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", ("recursion",)),
    ("unknown table in markup", PREPARATION, "[[table:finns_inte]]", ("unknown table 'finns_inte'",)),
]


def _case(case_id: str, name: str, source: str, fragments: tuple[str, ...]) -> Case:
    def make(folder: Path) -> list[str]:
        templates = folder / "mallar"
        templates.mkdir()
        (templates / name).write_text(source, encoding="utf-8")
        return ["run", "preparation", "--local", "--year", "2028", "--config", "region"]

    return Case(f"template: {case_id}", make, (name if "markup" not in case_id else "mallar", *fragments))


CASES = [_case(*spec) for spec in _SPECS]
