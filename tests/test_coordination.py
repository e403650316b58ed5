"""Coordination of parallel processes: other wheels checked against the master budget wheel, the
configuration that describes them, and `styrkedja calendar check`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from config.loader import SAMPLES, load_config, parse_config
from config.schema import DateRule, ParallelItem, ParallelWheel
from flows.cli_calendar import register
from models.errors import ConfigError
from tasks.coordination import check_coordination, conflict_rows, coordination_items, item_rows
from tasks.followup_calendar import occasions
from tasks.wheel import resolve_wheel

runner = CliRunner()


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.mark.parametrize("year", [2027, 2028])
def test_the_region_sample_has_its_one_deliberate_conflict_with_both_dates(year: int) -> None:
    cfg = load_config("region")
    conflicts = check_coordination(cfg, year)
    assert [(c.item.id, c.relation, c.other.id) for c in conflicts] == [
        ("hsn_verksamhetsplan", "must_precede", "vp_beslut")
    ]
    c = conflicts[0]
    wheel = resolve_wheel(cfg, year)
    assert c.other.day == wheel["vp_beslut"] == c.limit
    assert c.item.day.month == 10 and c.item.day.year == year - 1
    assert c.days == (c.item.day - wheel["vp_beslut"]).days > 0
    text = c.message()
    assert f"{c.item.day.day} okt {year - 1}" in text and f"30 sep {year - 1}" in text
    assert "för sent" in text and "Flytta det till senast" in text
    row = conflict_rows(conflicts)[0]
    assert (row["datum"], row["dess datum"], row["avvikelse (dagar)"]) == (
        c.item.day.isoformat(),
        wheel["vp_beslut"].isoformat(),
        str(c.days),
    )
    # Every other constraint of the sample holds, and is listed as ok.
    rows = item_rows(cfg, year)
    assert [r["status"] for r in rows].count("KONFLIKT") == 1
    assert len(rows) == sum(bool(i.must_precede) + bool(i.needs) for w in cfg.parallel_wheels for i in w.items)


def test_the_municipality_sample_is_in_step_with_its_master() -> None:
    cfg = load_config("municipality")
    for year in (2027, 2028, 2029):
        assert check_coordination(cfg, year) == []
    assert {r["status"] for r in item_rows(cfg, 2028)} == {"ok"}
    kinds = {w.kind for w in cfg.parallel_wheels}
    assert kinds == {"committee_meetings", "internal_control"}


def test_one_namespace_for_master_follow_up_and_parallel_items() -> None:
    cfg = load_config("region")
    items = coordination_items(cfg, 2028)
    wheel = resolve_wheel(cfg, 2028)
    # A committee meeting set relative to the master: one week after the PF decision.
    assert items["hsn_pf_information"].day == wheel["pf_rs"] + timedelta(days=7)
    # The follow-up calendar's report deadlines, as tasks.followup_calendar computes them.
    reports = [o for o in occasions(cfg, 2028) if o.kind in ("interim", "annual")]
    assert [items["followup_interim_1"].day, items["followup_interim_2"].day, items["followup_annual"].day] == [
        o.deadline for o in reports
    ]
    assert items["followup_interim_2"].name == "Delårsrapport per 31 augusti 2028 klar"
    assert items["vp_beslut"].wheel_id == "master" and items["hsn_verksamhetsplan"].wheel_id == "hsn_sammantraden"


def test_a_delivery_before_its_input_and_a_margin_are_conflicts() -> None:
    cfg = load_config("region")
    extra = ParallelWheel(
        id="revision",
        name="Revisionens granskning",
        kind="other",
        owner="RS",
        items=(
            # Needs the interim report, but is set before it is ready.
            ParallelItem(
                id="granskning_delar",
                name="Revisorernas granskning av delårsrapporten",
                date=DateRule(rule="1 September", year_offset=0),
                needs="followup_interim_2",
            ),
            # Before the decision, but not by the two weeks the documents need.
            ParallelItem(
                id="underlag_rf",
                name="Underlag till fullmäktige",
                date=DateRule(rule="1 week before rf_beslut"),
                must_precede="rf_beslut",
                margin_days=14,
            ),
        ),
    )
    cfg = cfg.model_copy(update={"parallel_wheels": (*cfg.parallel_wheels, extra)})
    found = {c.item.id: c for c in check_coordination(cfg, 2028)}
    items = coordination_items(cfg, 2028)
    needs = found["granskning_delar"]
    assert needs.relation == "needs" and needs.limit == items["followup_interim_2"].day
    assert needs.days == (items["followup_interim_2"].day - items["granskning_delar"].day).days
    assert "för tidigt" in needs.message() and "Flytta det till tidigast" in needs.message()
    margin = found["underlag_rf"]
    assert margin.limit == items["rf_beslut"].day - timedelta(days=14)
    assert margin.days == 7 and "14 dagars marginal" in margin.message()


# -- the configuration -------------------------------------------------------------------------------


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = SAMPLES["region"].read_text(encoding="utf-8")
    assert old in text, old
    path = tmp_path / "region.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "field", "value"),
    [
        (
            "must_precede: vp_beslut",
            "must_precede: vp_beslutet",
            "parallel_wheels[0].items[2].must_precede",
            "vp_beslutet",
        ),
        (
            "needs: followup_interim_2",
            "needs: followup_interim_3",
            "parallel_wheels[0].items[4].needs",
            "followup_interim_3",
        ),
        ("    owner: HSN\n    items:", "    owner: HSX\n    items:", "parallel_wheels[0].owner", "HSX"),
        ("- id: hsn_aterkoppling", "- id: pf_rs", "parallel_wheels[0].items[1].id", "pf_rs"),
        ("- id: ik_riskanalys", "- id: hsn_aterkoppling", "parallel_wheels[1].items[0].id", "hsn_aterkoppling"),
        (
            '{rule: "1 week after pf_rs"}',
            '{rule: "1 week after pf_rsx"}',
            "parallel_wheels[0].items[0].date.rule",
            "pf_rsx",
        ),
        (
            '{rule: "7 April", year_offset: -1}',
            '{rule: "7 Aprril", year_offset: -1}',
            "parallel_wheels[0].items[1].date.rule",
            "7 Aprril",
        ),
        ("needs: pf_rs", "needs: hsn_pf_information", "parallel_wheels[0].items[0].needs", "hsn_pf_information"),
        ("kind: committee_meetings", "kind: sammantraden", "parallel_wheels.0.kind", "sammantraden"),
    ],
    ids=[
        "unknown master id",
        "unknown follow-up id",
        "unknown owner",
        "clash with master",
        "duplicate",
        "rule ref",
        "bad rule",
        "self",
        "kind",
    ],
)
def test_a_broken_parallel_wheel_is_a_one_line_error_naming_file_field_and_value(
    tmp_path: Path, old: str, new: str, field: str, value: str
) -> None:
    path = _variant(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        parse_config(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and value in message
    assert info.value.field.replace("[", ".").replace("]", "") == field.replace("[", ".").replace("]", "")


def test_parallel_wheels_are_optional(tmp_path: Path) -> None:
    text = SAMPLES["region"].read_text(encoding="utf-8")
    start, end = text.index("\nparallel_wheels:"), text.index("\nbudget:")
    path = tmp_path / "plain.yaml"
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    cfg = parse_config(path)
    assert cfg.parallel_wheels == () and check_coordination(cfg, 2028) == [] and item_rows(cfg, 2028) == []


# -- the command line --------------------------------------------------------------------------------


def test_calendar_check_shows_the_conflict_and_strict_fails(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ["calendar", "check", "--year", "2028", "--config", "region"])
    assert result.exit_code == 0, result.output
    assert "KONFLIKT" in result.output and "2027-10-06" in result.output and "2027-09-30" in result.output
    assert "1 conflict(s)" in result.output and "Flytta det till senast 30 sep 2027" in result.output
    strict = runner.invoke(cli, ["calendar", "check", "--year", "2028", "--config", "region", "--strict"])
    assert strict.exit_code == 1
    clean = runner.invoke(cli, ["calendar", "check", "--year", "2028", "--config", "municipality", "--strict"])
    assert clean.exit_code == 0 and "No conflicts." in clean.output


def test_calendar_check_mistakes_are_one_line_exit_2(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ["calendar", "check", "--year", "1850", "--config", "region"])
    assert result.exit_code == 2 and "1850 is out of range" in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1
