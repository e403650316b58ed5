"""The follow-up calendars of both samples, checked by hand against a paper calendar.

Swedish days off in the span: 2028 Good Friday 14 April, Easter Monday 17 April, 1 May, Ascension
25 May, National Day Tuesday 6 June, midsommarafton Friday 23 June, All Saints' Saturday 4 November,
juldagen and annandag jul Monday–Tuesday 25–26 December; 2029 nyårsdagen Monday 1 January,
trettondedag jul Saturday 6 January; 2027 nyårsafton Friday 31 December, 2028 trettondedag jul
Thursday 6 January.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from config.loader import load_config
from models.errors import UserError
from tasks.calendar import add_working_days
from tasks.followup_calendar import REPORT_WORKING_DAYS, find_occasion, occasions

YEAR = 2028


def _table(name: str, year: int = YEAR) -> list[tuple[str, str, date, date]]:
    return [(o.key, o.kind, o.period_end, o.deadline) for o in occasions(load_config(name), year)]


def test_municipality_calendar_ale_and_forshaga():
    # Ale: forecasts end of February and May, interim reports 31 March and 31 August, the
    # annual report 31 December, a check every other month; Forshaga: a forecast in April.
    assert _table("municipality") == [
        # 29 Feb (Tue, leap year) → 1 Mar … 14 Mar: two full weeks
        ("prognos-2028-02-29", "forecast", date(2028, 2, 29), date(2028, 3, 14)),
        # 31 Mar (Fri) → 3–7, 10–13 April are nine; Good Friday and Easter Monday off → Tue 18 April
        ("delar-2028-03-31", "interim", date(2028, 3, 31), date(2028, 4, 18)),
        # 30 Apr (Sun), 1 May off → 2–5, 8–12 are nine → Mon 15 May
        ("prognos-2028-04-30", "forecast", date(2028, 4, 30), date(2028, 5, 15)),
        # 31 May (Wed) → 1, 2, 5, (6 June off), 7, 8, 9, 12, 13, 14 → Thu 15 June
        ("prognos-2028-05-31", "forecast", date(2028, 5, 31), date(2028, 6, 15)),
        ("manad-2028-06-30", "monthly", date(2028, 6, 30), date(2028, 7, 14)),
        ("delar-2028-08-31", "interim", date(2028, 8, 31), date(2028, 9, 14)),
        # 31 Oct (Tue) → 1–3, 6–10, 13, 14 November (All Saints' is a Saturday)
        ("manad-2028-10-31", "monthly", date(2028, 10, 31), date(2028, 11, 14)),
        # 31 Dec (Sun), nyårsdagen Mon 1 Jan → 2–5, 8–12 are nine → Mon 15 January 2029
        ("ar-2028-12-31", "annual", date(2028, 12, 31), date(2029, 1, 15)),
    ]


def test_region_calendar():
    assert _table("region") == [
        ("prognos-2028-02-29", "forecast", date(2028, 2, 29), date(2028, 3, 14)),
        ("manad-2028-03-31", "monthly", date(2028, 3, 31), date(2028, 4, 18)),
        ("delar-2028-04-30", "interim", date(2028, 4, 30), date(2028, 5, 15)),
        ("manad-2028-05-31", "monthly", date(2028, 5, 31), date(2028, 6, 15)),
        ("prognos-2028-06-30", "forecast", date(2028, 6, 30), date(2028, 7, 14)),
        ("delar-2028-08-31", "interim", date(2028, 8, 31), date(2028, 9, 14)),
        # 30 Sep (Sat) → 2–6, 9–13 October
        ("manad-2028-09-30", "monthly", date(2028, 9, 30), date(2028, 10, 13)),
        ("prognos-2028-10-31", "forecast", date(2028, 10, 31), date(2028, 11, 14)),
        ("manad-2028-11-30", "monthly", date(2028, 11, 30), date(2028, 12, 14)),
        ("ar-2028-12-31", "annual", date(2028, 12, 31), date(2029, 1, 15)),
    ]


def test_a_shared_date_keeps_the_bigger_report():
    region, municipality = load_config("region"), load_config("municipality")
    # Region: 30 April is a monthly check, a forecast and an interim report; 31 December a monthly
    # check and the annual report; February a monthly check and a forecast.
    assert 4 in region.follow_up.monthly_checks and 4 in region.follow_up.forecasts
    assert 12 in region.follow_up.monthly_checks and 2 in region.follow_up.monthly_checks
    kinds = {o.period_end: o.kind for o in occasions(region, YEAR)}
    assert kinds[date(2028, 4, 30)] == "interim"
    assert kinds[date(2028, 12, 31)] == "annual"
    assert kinds[date(2028, 2, 29)] == "forecast"
    # Municipality: August is a check and an interim report; April a check and Forshaga's forecast.
    assert {2, 4, 8} <= set(municipality.follow_up.monthly_checks)
    kinds = {o.period_end: o.kind for o in occasions(municipality, YEAR)}
    assert kinds[date(2028, 8, 31)] == "interim"
    assert kinds[date(2028, 4, 30)] == "forecast"
    assert kinds[date(2028, 2, 29)] == "forecast"
    # One occasion per date, so one key per date.
    for cfg in (region, municipality):
        found = occasions(cfg, YEAR)
        assert len({o.key for o in found}) == len({o.period_end for o in found}) == len(found)


def test_monthly_checks_as_configured():
    # Every configured check, forecast, interim report and the annual report has its month-end
    # occasion; nothing else. Region: not January and July; municipality: every other month.
    interim = {"region": {4, 8}, "municipality": {3, 8}}
    for name, checks in (("region", {2, 3, 4, 5, 6, 8, 9, 10, 11, 12}), ("municipality", {2, 4, 6, 8, 10})):
        cfg = load_config(name)
        assert set(cfg.follow_up.monthly_checks) == checks
        found = occasions(cfg, YEAR)
        months = [o.period_end.month for o in found]
        assert set(months) == checks | set(cfg.follow_up.forecasts) | interim[name] | {12}
        assert [o.period_end for o in found] == sorted(o.period_end for o in found)
        assert all((o.period_end + timedelta(days=1)).day == 1 for o in found), "every occasion closes a month"


def test_annual_report_deadline_counts_nyarsafton_nyarsdagen_and_trettondedag_jul():
    # Plan year 2027: 31 Dec is a Friday (nyårsafton, off anyway as the period end); 1–2 Jan a
    # weekend; 3, 4, 5 Jan; Thu 6 Jan trettondedag jul off; 7, 10–14 → nine; Mon 17 January 2028.
    for name in ("region", "municipality"):
        annual = occasions(load_config(name), 2027)[-1]
        assert (annual.key, annual.deadline) == ("ar-2027-12-31", date(2028, 1, 17))
    assert REPORT_WORKING_DAYS == 10


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        # Thu 14 Dec: 15, 18–22 (six); juldagen, annandag jul; 27, 28, 29 (nine); nyårsdagen → Tue 2 Jan
        (date(2028, 12, 14), date(2029, 1, 2)),
        # Fri 16 June: 19–22 (four), midsommarafton Fri 23 June off, 26–30 (nine) → Mon 3 July
        (date(2028, 6, 16), date(2028, 7, 3)),
        # Wed 17 May: 18, 19, 22, 23, 24 (five); Ascension Thu 25 May; 26, 29, 30, 31, 1 June
        (date(2028, 5, 17), date(2028, 6, 1)),
    ],
)
def test_working_days_across_holidays(start, expected):
    assert add_working_days(start, REPORT_WORKING_DAYS) == expected


def test_unknown_occasion_names_the_known_ones():
    cfg = load_config("municipality")
    assert (
        find_occasion(cfg, YEAR, "prognos-2028-04-30").name == "Budgetuppföljning med helårsprognos per 30 april 2028"
    )
    assert find_occasion(cfg, YEAR, "delar-2028-08-31").name == "Delårsrapport per 31 augusti 2028"
    with pytest.raises(UserError, match="delar-2028-03-31"):
        find_occasion(cfg, YEAR, "delar-2028-04-30")
