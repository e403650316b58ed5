"""The command line: helpful --help, one-line errors with exit code 2, nothing written on a mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from config.loader import SAMPLES
from flows.cli import app

runner = CliRunner()
COMMANDS = [
    [],
    ["run"],
    ["status"],
    ["validate-config"],
    ["demo"],
    ["serve"],
    ["resume"],
    ["down"],
    ["init-db"],
    ["receipt"],
    ["receipt", "list"],
    ["receipt", "show"],
    ["receipt", "sign"],
    ["receipt", "dispute"],
    ["submit"],
    ["inbox"],
    ["watch"],
    ["export"],
    ["import"],
    ["calendar"],
    ["calendar", "export"],
    ["calendar", "check"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "styrkedja")
def test_every_command_explains_itself(cmd: list[str]):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.split()) > 25


def test_validate_config_on_both_samples():
    for name in ("region", "municipality"):
        result = runner.invoke(app, ["validate-config", name])
        assert result.exit_code == 0, result.output
        assert "ok" in result.output and "Annual wheel" in result.output


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = SAMPLES["region"].read_text(encoding="utf-8")
    assert old in text
    p = tmp_path / "broken.yaml"
    p.write_text(text.replace(old, new, 1), encoding="utf-8")
    return p


def _run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STYRKEDJA_HOME": str(home), "STYRKEDJA_DATABASE_URL": f"sqlite:///{home / 'app.db'}"}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("parent: RS\n", "parent: NOPE\n", "units"),
        ('rule: "10 December"', 'rule: "30 February"', "wheel.milestones"),
        ("name: Regionfullmäktige\n", "name: [unclosed\n", "line"),
    ],
    ids=["unknown unit", "impossible date", "broken yaml"],
)
def test_bad_configuration_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, old: str, new: str, field: str):
    if old not in SAMPLES["region"].read_text(encoding="utf-8"):
        pytest.skip(f"sample changed: {old!r} not found")
    bad = _broken(tmp_path, old, new)
    home = tmp_path / "home"
    home.mkdir()
    for args in (["validate-config", str(bad)], ["run", "preparation", "--config", str(bad), "--local"]):
        proc = _run_cli(args, home)
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in proc.stderr
        assert str(bad) in lines[0] and field in lines[0]
        assert new.split(":")[-1].strip().strip('["') in lines[0] or field == "line"
    assert list(home.iterdir()) == [], "a rejected configuration must write nothing"


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["run", "budgetering", "--local"], "unknown phase 'budgetering'"),
        (["run", "preparation", "--year", "1850", "--local"], "1850 is out of range"),
        (["run", "preparation", "--override", "--local"], "--override needs --reason"),
        (["run", "preparation", "--occasion", "x", "--local"], "only the follow-up phase"),
        (["receipt", "sign", "424242", "--signatory", "x", "--code", "ABCDEFGH"], "no receipt with id 424242"),
        (["receipt", "list", "--state", "lost", "--year", "2028"], "unknown state 'lost'"),
    ],
)
def test_argument_mistakes_exit_2_with_one_line(tmp_path: Path, args: list[str], text: str):
    proc = _run_cli(args, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert text in proc.stderr and "Traceback" not in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1
