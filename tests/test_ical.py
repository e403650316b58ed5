"""Calendars: the iCalendar export of the annual wheel (organisation and unit), the picture of the
wheel (SVG, PNG, and in the PF document), and their commands."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import typer
from icalendar import Calendar
from typer.testing import CliRunner

from config.loader import load_config
from config.schema import DateRule, OrgConfig
from flows.cli_calendar import register
from tasks.followup_calendar import occasions
from tasks.ical import calendar_entries, calendar_ics, event_uid
from tasks.wheel import resolve_wheel
from tasks.wheel_picture import MONTHS_SV, PALETTE, wheel_png, wheel_svg

YEAR = 2028
runner = CliRunner()


@pytest.fixture(scope="module")
def region() -> OrgConfig:
    return load_config("region")


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _events(data: bytes) -> dict[str, object]:
    cal = Calendar.from_ical(data)
    return {str(ev["UID"]): ev for ev in cal.walk("VEVENT")}


def _uid(cfg: OrgConfig, ident: str) -> str:
    return event_uid(cfg, YEAR, ident)


# -- iCalendar ----------------------------------------------------------------------------------------


def test_the_organisation_calendar_matches_the_wheel_day_by_day(region: OrgConfig) -> None:
    data = calendar_ics(region, YEAR)
    events = _events(data)
    wheel = resolve_wheel(region, YEAR)
    follow_ups = occasions(region, YEAR)
    expected = len(region.wheel.phases) + len(region.wheel.milestones) + len(region.wheel.meetings) + len(follow_ups)
    assert len(events) == expected
    for item in (*region.wheel.milestones, *region.wheel.meetings):
        ev = events[_uid(region, item.id)]
        start, end = ev["DTSTART"].dt, ev["DTEND"].dt  # type: ignore[index]
        # All-day: plain dates (VALUE=DATE), the end the day after.
        assert type(start) is date and type(end) is date, item.id
        assert start == wheel[item.id] and end == wheel[item.id] + timedelta(days=1), item.id
        assert str(ev["SUMMARY"]) == item.name  # type: ignore[index]
    for p in region.wheel.phases:
        ev = events[_uid(region, f"fas-{p.id}")]
        first, last = wheel.phase_window(p.id)
        assert (ev["DTSTART"].dt, ev["DTEND"].dt) == (first, last + timedelta(days=1))  # type: ignore[index]
    for o in follow_ups:
        assert events[_uid(region, f"uppfoljning-{o.key}")]["DTSTART"].dt == o.deadline  # type: ignore[index]
    assert b"DTSTART;VALUE=DATE:" in data and b"DTSTART:" not in data


def test_meetings_carry_purpose_goal_participants_and_kind(region: OrgConfig) -> None:
    events = _events(calendar_ics(region, YEAR))
    kickoff = next(m for m in region.wheel.meetings if m.id == "kickoff")
    text = str(events[_uid(region, "kickoff")]["DESCRIPTION"])  # type: ignore[index]
    assert f"Syfte: {' '.join(kickoff.purpose.split())}" in text
    assert f"Mål: {' '.join(kickoff.goal.split())}" in text
    names = [region.unit(u).name for u in kickoff.participants]
    assert "Deltagare: " + ", ".join(names) in text
    assert "Typ: information" in text and "Arrangör: Regionstyrelsen" in text
    assert "Hälso- och sjukvårdsnämnden" in text  # names, not ids


def test_uids_and_stamps_are_stable_so_a_reimport_updates(region: OrgConfig) -> None:
    first = calendar_ics(region, YEAR)
    # The same data from another configuration object (a reload) gives the same bytes ...
    assert calendar_ics(region.model_copy(deep=True), YEAR) == first
    # ... and icalendar reads and writes it back byte for byte.
    assert Calendar.from_ical(first).to_ical() == first
    events = _events(first)
    assert all(re.fullmatch(r"region_norrsjo-2028-[a-z0-9_-]+@styrkedja", uid) for uid in events)
    stamps = {ev["DTSTAMP"].dt for ev in events.values()}  # type: ignore[index]
    assert stamps == {datetime(YEAR - 2, 1, 1, tzinfo=UTC)}
    assert {int(ev["SEQUENCE"]) for ev in events.values()} == {0}  # type: ignore[index]

    # A meeting moved in the configuration keeps its UID: a calendar updates it, no duplicate.
    meetings = tuple(
        m.model_copy(update={"date": DateRule(rule="12 February", year_offset=-1)}) if m.id == "kickoff" else m
        for m in region.wheel.meetings
    )
    moved = region.model_copy(update={"wheel": region.wheel.model_copy(update={"meetings": meetings})})
    after = _events(calendar_ics(moved, YEAR))
    assert set(after) == set(events)
    assert after[_uid(region, "kickoff")]["DTSTART"].dt == date(YEAR - 1, 2, 12)  # type: ignore[index]
    # Another plan year is another set of events.
    assert not set(_events(calendar_ics(region, YEAR + 1))) & set(events)


def test_a_committees_calendar_holds_what_concerns_it(region: OrgConfig) -> None:
    ids = {e.ident for e in calendar_entries(region, YEAR, "HSN")}
    # Meetings it attends, its own steering dialogue but not another committee's.
    assert {"kickoff", "presidier_pf", "styrdialog_hsn", "info_regionplan"} <= ids
    assert "styrdialog_run" not in ids and "clg_omvarld" not in ids
    # Its superiors' milestones in phases it takes part in (RS decides the PF it receives) ...
    assert {"pf_rs", "namnd_aterkoppling", "rf_beslut"} <= ids
    # ... and the receipt deadlines of its handoffs, whoever owns them.
    assert {"pf_kvittens", "regionplan_kvittens", "vp_beslut"} <= ids
    # Not the finance department's own preparation work, in a phase HSN has no part in.
    assert not {"omvarldsanalys", "investeringsprioritering", "fas-preparation"} & ids
    data = calendar_ics(region, YEAR, "HSN")
    assert b"X-WR-CALNAME:\xc3\x85rshjul 2028 \xe2\x80\x93 H\xc3\xa4lso- och sjukv\xc3\xa5rdsn\xc3\xa4mnden" in data
    assert set(_events(data)) <= set(_events(calendar_ics(region, YEAR)))  # same UIDs as the whole calendar


def test_a_units_calendar_at_the_bottom_of_the_chain(region: OrgConfig) -> None:
    ids = {e.ident for e in calendar_entries(region, YEAR, "NSH")}
    # A hospital receives its activity plan and reports follow-up upwards.
    assert {"fas-activity_plans", "aktivitetsplaner_godkanda", "fas-follow_up"} <= ids
    assert {f"uppfoljning-{o.key}" for o in occasions(region, YEAR)} <= ids
    assert not {"kickoff", "pf_rs", "styrdialog_hsn", "fas-planning_prerequisites"} & ids


def test_calendar_export_command(cli: typer.Typer, tmp_path: Path) -> None:
    target = tmp_path / "ut" / "hsn.ics"
    result = runner.invoke(cli, ["calendar", "export", "--unit", "HSN", "--year", "2028", "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == calendar_ics(load_config(), YEAR, "HSN")
    again = runner.invoke(cli, ["calendar", "export", "--unit", "HSN", "--year", "2028", "--out", str(target)])
    assert again.exit_code == 0 and target.read_bytes() == calendar_ics(load_config(), YEAR, "HSN")

    bad = runner.invoke(
        cli, ["calendar", "export", "--unit", "NOPE", "--year", "2028", "--out", str(tmp_path / "x.ics")]
    )
    assert bad.exit_code == 2 and "unknown unit 'NOPE'" in bad.output
    assert len([ln for ln in bad.output.splitlines() if ln.strip()]) == 1 and not (tmp_path / "x.ics").exists()
    folder = runner.invoke(cli, ["calendar", "export", "--year", "2028", "--out", str(tmp_path)])
    assert folder.exit_code == 2 and "is a folder" in folder.output


# -- the picture --------------------------------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"


def test_the_svg_wheel_has_months_phases_and_every_milestone(region: OrgConfig) -> None:
    svg = wheel_svg(region, YEAR)
    root = ET.fromstring(svg.encode())
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert all(m in texts for m in MONTHS_SV)
    assert texts.count(str(YEAR)) == 1 and f"Årshjul {YEAR} – Region Norrsjö" in texts
    # One coloured ring or arc per phase (on top of its grey track) and one legend swatch.
    colours = PALETTE[: len(region.wheel.phases)]
    strokes = [el.get("stroke") for el in root if el.tag in (f"{SVG}path", f"{SVG}circle") and el.get("fill") == "none"]
    assert [s for s in strokes if s in colours] == list(colours)
    # The follow-up window is longer than a year: a whole ring.
    follow_up = colours[[p.id for p in region.wheel.phases].index("follow_up")]
    assert any(el.tag == f"{SVG}circle" and el.get("stroke") == follow_up for el in root)
    # Milestones: a numbered mark each on the wheel and a line each in the legend, in date order.
    wheel = resolve_wheel(region, YEAR)
    ordered = sorted(region.wheel.milestones, key=lambda m: (wheel[m.id], m.id))
    numbers = [t for t in texts if t.isdigit() and t != str(YEAR)]
    assert numbers == [str(i) for i in range(1, len(ordered) + 1)] * 2
    first = ordered[0]
    assert any(t.startswith(f"{wheel[first.id].day} nov {wheel[first.id].year}  Omvärldsanalys") for t in texts)
    # Every label in full (a long one wraps onto the next line), none cut with "…".
    joined = " ".join(texts)
    assert all(m.name in joined for m in ordered) and not any("…" in t for t in texts)


def test_the_png_wheel_is_deterministic_and_readable(region: OrgConfig) -> None:
    from PIL import Image

    png = wheel_png(region, YEAR)
    assert wheel_png(region.model_copy(deep=True), YEAR) == png  # drawn again from scratch: same bytes
    image = Image.open(io.BytesIO(png))
    # As tall as the legend needs: every milestone's name in full, none cut with "…".
    assert image.format == "PNG" and image.size[0] == 1600 and image.size[1] >= 1000
    rgb = image.convert("RGB")
    # The follow-up ring is drawn in its colour at the top of the wheel (January, outermost ring).
    colour = PALETTE[[p.id for p in region.wheel.phases].index("follow_up")]
    expected = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    from tasks.wheel_picture import CX, CY, INNER, OUTER

    ring = (OUTER - INNER) / len(region.wheel.phases)
    pixel = rgb.getpixel((int(CX + 6), int(CY - (OUTER - ring / 2))))
    assert all(abs(a - b) <= 24 for a, b in zip(pixel, expected, strict=True)), pixel


def test_calendar_picture_command_and_the_pf_document_carries_the_wheel(
    cli: typer.Typer, region: OrgConfig, tmp_path: Path
) -> None:
    result = runner.invoke(cli, ["calendar", "picture", "--year", "2028", "--out", str(tmp_path / "bild")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bild" / "arshjul-region_norrsjo-2028.png").read_bytes() == wheel_png(load_config(), YEAR)
    assert (tmp_path / "bild" / "arshjul-region_norrsjo-2028.svg").read_text(encoding="utf-8") == wheel_svg(
        region, YEAR
    )

    import docx

    from tasks.documents.catalog import DocRequest, render

    doc = render(region, YEAR, DocRequest("planeringsforutsattningar", "planning_prerequisites", "HSN"), tmp_path)
    document = docx.Document(tmp_path / doc.relpath)
    assert len(document.inline_shapes) == 1
    shape = document.inline_shapes[0]
    from PIL import Image

    w, h = Image.open(io.BytesIO(wheel_png(region, YEAR))).size
    assert abs(shape.width.cm - 16.0) < 0.01 and abs(shape.height.cm - 16.0 * h / w) < 0.02
    blob = document.part.related_parts[shape._inline.graphic.graphicData.pic.blipFill.blip.embed].blob
    assert blob == wheel_png(region, YEAR)
    # In appendix 1, between its heading and the timetable.
    # Headings only: the table of contents repeats their text before them.
    paragraphs = document.paragraphs
    headings = {p.text: i for i, p in enumerate(paragraphs) if p.style and p.style.name.startswith("Heading")}
    picture_at = next(i for i, p in enumerate(paragraphs) if p._p.xpath(".//pic:pic"))
    assert headings["Bilaga 1 Detaljerad tidplan"] < picture_at
    assert picture_at < headings["Bilaga 2 Detaljerade ramberäkningar per nämnd"]
