"""Configuration files: broken, ambiguous, inconsistent, impossible, enormous and not text at all."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from config.loader import SAMPLES
from hostile import Case

SAMPLE = SAMPLES["region"].read_text(encoding="utf-8")


def _replace(old: str, new: str, count: int = 1) -> str:
    assert old in SAMPLE, f"the sample changed: {old!r} not found"
    return SAMPLE.replace(old, new, count)


def _write(name: str, content: str | bytes | Callable[[], str | bytes]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        data = content() if callable(content) else content
        path = folder / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
        return path

    return make


def _laughs() -> str:
    lines = ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return SAMPLE.replace("levels:", "\n".join(lines) + "\nlevels:", 1).replace("levels:", "levels: *l9\nx_levels:", 1)


def _enormous() -> str:
    # Over the 2 MB limit with a valid configuration in front: the size is refused before parsing.
    return SAMPLE + "\n# " + "x" * 2_100_000 + "\n"


def _loop_in_rules() -> str:
    # Two milestones whose dates are defined by each other.
    loop = (
        "  milestones:\n"
        '    - {id: hostile_a, name: A, phase: preparation, owner: EKO, date: {rule: "2 days before hostile_b"}}\n'
        '    - {id: hostile_b, name: B, phase: preparation, owner: EKO, date: {rule: "2 days after hostile_a"}}\n'
    )
    return _replace("  milestones:\n", loop)


_FIRST_MILESTONE = (
    "    - id: omvarldsanalys\n"
    "      name: Omvärldsanalys och ekonomiskt utrymme sammanställda\n"
    "      phase: preparation\n"
    "      owner: EKO\n"
)


def _case_twin() -> str:
    # A second committee whose id differs from HSN only in case: one file on a Windows share.
    twin = "  - id: hsn\n    name: Hälso- och sjukvårdsnämnden (kopia)\n    level: committee\n    parent: RS\n\n"
    return _replace("  - id: RUN\n", twin + "  - id: RUN\n")


# (id, file maker, command, fragments). `validate` checks the file; `run` is what a user does next.
_SPECS: list[tuple[str, Callable[[Path], Path], str, tuple[str, ...]]] = [
    (
        "broken yaml",
        _write("c.yaml", _replace("name: Regionfullmäktige\n", "name: [unclosed\n")),
        "validate",
        ("broken YAML", "line"),
    ),
    ("tab indentation", _write("c.yaml", _replace("\n  name:", "\n\tname:")), "validate", ("broken YAML", "line")),
    (
        "duplicate key",
        _write("c.yaml", SAMPLE.replace("levels:", "organisation:\n  id: x\nlevels:", 1)),
        "validate",
        ("duplicate key 'organisation'", "line"),
    ),
    (
        "duplicate nested key",
        _write("c.yaml", _replace("parent: RS\n", "parent: RS\n    parent: RF\n")),
        "validate",
        ("duplicate key 'parent'",),
    ),
    (
        "unknown parent unit",
        _write("c.yaml", _replace("parent: RS\n", "parent: NOPE\n")),
        "validate",
        ("units[", ".parent", "'NOPE'"),
    ),
    (
        "unknown level",
        _write("c.yaml", _replace("level: committee", "level: kommittee")),
        "validate",
        ("units[", "'kommittee'"),
    ),
    (
        "unknown channel",
        _write("c.yaml", _replace("channel: epost", "channel: brevduva")),
        "validate",
        ("channel", "'brevduva'"),
    ),
    (
        "31 February",
        _write("c.yaml", _replace('rule: "10 December"', 'rule: "31 February"')),
        "validate",
        ("wheel.milestones[", "31 February"),
    ),
    (
        "30 February on run",
        _write("c.yaml", _replace('rule: "10 December"', 'rule: "30 February"')),
        "run",
        ("wheel.milestones[", "30 February"),
    ),
    (
        "nonsense date rule",
        _write("c.yaml", _replace('rule: "10 December"', 'rule: "the day after never"')),
        "validate",
        ("wheel.milestones[", "the day after never"),
    ),
    ("loop in the unit tree", _write("c.yaml", _replace("parent: RS\n", "parent: HSN\n")), "validate", ("parent",)),
    ("loop in date rules", _write("c.yaml", _loop_in_rules), "validate", ("dependency cycle", "hostile_")),
    ("billion laughs", _write("c.yaml", _laughs), "validate", ("billion laughs",)),
    (
        "deep nesting",
        _write("c.yaml", "levels: " + "[" * 50_000 + "]" * 50_000 + "\n"),
        "validate",
        ("nested more than",),
    ),
    ("enormous file", _write("c.yaml", _enormous), "validate", ("bytes; at most 2000000",)),
    ("enormous file on run", _write("c.yaml", _enormous), "run", ("bytes; at most 2000000",)),
    (
        "wrong type: levels a string",
        _write("c.yaml", SAMPLE.replace("levels:", "levels: fem\nx_levels:", 1)),
        "validate",
        ("levels", "'fem'"),
    ),
    (
        "wrong type: frame text",
        _write("c.yaml", _replace("frames:\n    HSN: ", "frames:\n    HSN: mycket # ")),
        "validate",
        ("budget.frames.HSN", "'mycket'"),
    ),
    (
        "negative frame",
        _write("c.yaml", _replace("frames:\n    HSN: ", "frames:\n    HSN: -")),
        "validate",
        ("budget.frames.HSN", "negative"),
    ),
    ("unknown field", _write("c.yaml", SAMPLE + "\nhemligt_falt: 1\n"), "validate", ("hemligt_falt",)),
    ("empty file", _write("c.yaml", ""), "validate", ("is empty",)),
    ("only a comment", _write("c.yaml", "# nothing\n"), "run", ("is empty",)),
    ("a list, not a mapping", _write("c.yaml", "- a\n- b\n"), "validate", ("expected a mapping", "list")),
    ("binary file", _write("c.yaml", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8), "validate", ("not UTF-8",)),
    ("NUL bytes", _write("c.yaml", b"organisation:\n  id: \x00\x01\n"), "validate", ("broken YAML",)),
    ("latin-1 text", _write("c.yaml", SAMPLE.encode("latin-1", "replace")), "validate", ("not UTF-8", "byte")),
    ("utf-16 text", _write("c.yaml", SAMPLE.encode("utf-16")), "validate", ("not UTF-8",)),
    (
        "python object tag",
        _write("c.yaml", "organisation: !!python/object/apply:os.system ['true']\n"),
        "validate",
        ("broken YAML", "python/object"),
    ),
    (
        "unit ids differing only in case",
        _write("c.yaml", _case_twin),
        "validate",
        ("units[", "].id", "'hsn'", "'HSN'", "only in case"),
    ),
    ("unit ids differing only in case on run", _write("c.yaml", _case_twin), "run", ("'hsn'", "'HSN'")),
    (
        "milestone in an unknown phase",
        _write("c.yaml", _replace(_FIRST_MILESTONE, _FIRST_MILESTONE.replace("preparation", "forberedelse"))),
        "validate",
        ("wheel.milestones[0].phase", "unknown phase 'forberedelse'"),
    ),
    (
        "milestone without an owner",
        _write("c.yaml", _replace(_FIRST_MILESTONE, _FIRST_MILESTONE.replace("      owner: EKO\n", ""))),
        "run",
        ("wheel.milestones[0].owner", "Field required"),
    ),
    ("missing file", lambda folder: folder / "finns-inte.yaml", "run", ("no such file",)),
    ("a folder", lambda folder: folder, "validate", ("is a folder",)),
]


def _case(case_id: str, make: Callable[[Path], Path], command: str, fragments: tuple[str, ...]) -> Case:
    def args(folder: Path) -> list[str]:
        path = make(folder)
        if command == "validate":
            return ["validate-config", str(path)]
        return ["run", "preparation", "--local", "--year", "2028", "--config", str(path)]

    return Case(f"config: {case_id}", args, fragments)


CASES = [_case(*spec) for spec in _SPECS]
