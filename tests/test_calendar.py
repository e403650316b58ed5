"""Tests for tasks.calendar; every expected date was checked by hand against a printed calendar.

Anchors used below: 1 January 2026 is a Thursday, 1 January 2027 a Friday, and
29 February 2028 a Tuesday. Easter Sunday is 5 April 2026 and 28 March 2027.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pendulum
import pytest

from tasks.calendar import (
    RuleError,
    RuleSpec,
    add_working_days,
    is_working_day,
    next_working_day,
    parse_rule,
    previous_working_day,
    resolve_rules,
    swedish_days_off,
    today_stockholm,
)


def resolve_one(rule: str, plan_year: int, **kwargs: object) -> date:
    return resolve_rules({"x": RuleSpec(rule, **kwargs)}, plan_year)["x"]  # type: ignore[arg-type]


# --- days off ---------------------------------------------------------------


def test_days_off_2026_complete() -> None:
    # Public holidays plus the de-facto eves; ordinary Sundays must not be listed.
    assert swedish_days_off(2026) == {
        date(2026, 1, 1): "Nyårsdagen",  # Thu
        date(2026, 1, 6): "Trettondedag jul",  # Tue
        date(2026, 4, 3): "Långfredagen",  # Fri before Easter 5 April
        date(2026, 4, 4): "Påskafton",  # Sat; not public, added by us
        date(2026, 4, 5): "Påskdagen",  # Sun
        date(2026, 4, 6): "Annandag påsk",  # Mon
        date(2026, 5, 1): "Första maj",  # Fri
        date(2026, 5, 14): "Kristi himmelsfärdsdag",  # Thu, Easter + 39 days
        date(2026, 5, 24): "Pingstdagen",  # Sun, Easter + 49 days
        date(2026, 6, 6): "Nationaldagen",  # Sat
        date(2026, 6, 19): "Midsommarafton",  # Fri between 19 and 25 June
        date(2026, 6, 20): "Midsommardagen",  # Sat
        date(2026, 10, 31): "Alla helgons dag",  # Sat between 31 Oct and 6 Nov
        date(2026, 12, 24): "Julafton",  # Thu
        date(2026, 12, 25): "Juldagen",  # Fri
        date(2026, 12, 26): "Annandag jul",  # Sat
        date(2026, 12, 31): "Nyårsafton",  # Thu
    }


def test_de_facto_eves_2027() -> None:
    off = swedish_days_off(2027)
    # June 2027: the 25th is the Friday between 19 and 25 June.
    assert off[date(2027, 6, 25)] == "Midsommarafton"
    assert date(2027, 6, 18) not in off  # Friday a week earlier is an ordinary day
    assert off[date(2027, 3, 27)] == "Påskafton"  # Saturday before Easter 28 March 2027
    assert off[date(2027, 12, 24)] == "Julafton"  # Friday
    assert off[date(2027, 12, 31)] == "Nyårsafton"  # Friday
    # Whit Monday (17 May 2027) has not been a holiday since 2005.
    assert date(2027, 5, 17) not in off


def test_days_off_returns_a_copy() -> None:
    first = swedish_days_off(2026)
    first.clear()
    assert len(swedish_days_off(2026)) == 17


def test_ordinary_sunday_is_not_a_holiday_but_not_a_working_day() -> None:
    sunday = date(2026, 1, 4)  # 1 Jan Thu → 4 Jan Sun
    assert sunday.weekday() == 6
    assert sunday not in swedish_days_off(2026)
    assert not is_working_day(sunday)


# --- working days -----------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 6, 18), True),  # Thu before midsommarafton
        (date(2026, 6, 19), False),  # Fri, midsommarafton
        (date(2026, 6, 22), True),  # Mon after midsommar
        (date(2026, 12, 24), False),  # Thu, julafton
        (date(2026, 12, 23), True),  # Wed
        (date(2026, 12, 31), False),  # Thu, nyårsafton
        (date(2026, 4, 3), False),  # Good Friday
        (date(2026, 4, 6), False),  # Easter Monday
        (date(2026, 4, 7), True),  # Tue after Easter
        (date(2026, 5, 14), False),  # Ascension Thursday
        (date(2026, 5, 15), True),  # Fri after Ascension ("klämdag"): still a working day
        (date(2026, 5, 25), True),  # Mon after Pentecost: ordinary day in Sweden
        (date(2026, 6, 6), False),  # Sat, national day
        (date(2026, 6, 5), True),  # Fri
        (date(2026, 1, 6), False),  # Tue, Trettondedag jul
        (date(2026, 3, 7), False),  # ordinary Saturday
        (date(2026, 3, 9), True),  # ordinary Monday
    ],
)
def test_is_working_day(day: date, working: bool) -> None:
    assert is_working_day(day) is working


def test_is_working_day_accepts_datetime() -> None:
    assert is_working_day(datetime(2026, 6, 19, 10, 30)) is False  # midsommarafton
    assert is_working_day(datetime(2026, 6, 18, 10, 30)) is True


def test_next_and_previous_working_day() -> None:
    # Working days are returned unchanged.
    assert next_working_day(date(2026, 6, 18)) == date(2026, 6, 18)
    assert previous_working_day(date(2026, 6, 18)) == date(2026, 6, 18)
    # Julafton Thu 24 → Fri 25 juldagen, Sat 26, Sun 27 → Mon 28 December.
    assert next_working_day(date(2026, 12, 24)) == date(2026, 12, 28)
    # Sun 27 back over Sat 26, Fri 25, Thu 24 → Wed 23 December.
    assert previous_working_day(date(2026, 12, 27)) == date(2026, 12, 23)
    # Nyårsafton Thu 31 → Fri 1 Jan nyårsdagen, Sat 2, Sun 3 → Mon 4 January 2027.
    assert next_working_day(date(2026, 12, 31)) == date(2027, 1, 4)
    # Easter Monday 6 April back over Sun 5, Sat 4, Good Friday 3 → Thu 2 April.
    assert previous_working_day(date(2026, 4, 6)) == date(2026, 4, 2)


def test_add_working_days() -> None:
    assert add_working_days(date(2026, 3, 10), 0) == date(2026, 3, 10)
    # Wed 23 Dec + 1: 24, 25 off, 26-27 weekend → Mon 28 December.
    assert add_working_days(date(2026, 12, 23), 1) == date(2026, 12, 28)
    # Wed 30 Dec + 1: 31 Dec and 1 Jan off, 2-3 Jan weekend → Mon 4 January 2027.
    assert add_working_days(date(2026, 12, 30), 1) == date(2027, 1, 4)
    # ... and + 3: Tue 5 (2), Wed 6 trettondedag off, Thu 7 (3).
    assert add_working_days(date(2026, 12, 30), 3) == date(2027, 1, 7)
    # Backwards across the year boundary: Mon 4 Jan 2027 - 1 → Wed 30 Dec 2026.
    assert add_working_days(date(2027, 1, 4), -1) == date(2026, 12, 30)
    # Thu 2 April + 1 over Easter (3 Fri, 4-5 weekend, 6 Mon off) → Tue 7 April.
    assert add_working_days(date(2026, 4, 2), 1) == date(2026, 4, 7)
    # Fri 10 April - 5: Thu 9 (1), Wed 8 (2), Tue 7 (3), [6, 5, 4, 3 off], Thu 2 (4), Wed 1 (5).
    assert add_working_days(date(2026, 4, 10), -5) == date(2026, 4, 1)
    # Strictly after: starting on a day off still counts from the next working day.
    assert add_working_days(date(2026, 6, 19), 1) == date(2026, 6, 22)


# --- absolute rules ---------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("previous", date(2026, 6, 18)),  # Thu before midsommarafton
        ("next", date(2026, 6, 22)),  # Sat 20 midsommardagen, Sun 21 → Mon 22
        ("keep", date(2026, 6, 19)),
    ],
)
def test_midsommarafton_policy(policy: str, expected: date) -> None:
    assert resolve_one("19 June", 2026, if_day_off=policy) == expected


def test_day_month_on_holidays() -> None:
    assert resolve_one("24 December", 2026) == date(2026, 12, 23)  # julafton Thu → Wed 23
    assert resolve_one("24 December", 2026, if_day_off="next") == date(2026, 12, 28)
    assert resolve_one("6 June", 2026) == date(2026, 6, 5)  # national day Sat → Fri 5
    assert resolve_one("14 May", 2026) == date(2026, 5, 13)  # Ascension Thu → Wed 13
    assert resolve_one("14 May", 2026, if_day_off="next") == date(2026, 5, 15)  # → Fri 15
    assert resolve_one("3 April", 2026) == date(2026, 4, 2)  # Good Friday → Thu 2
    assert resolve_one("6 April", 2026, if_day_off="next") == date(2026, 4, 7)  # → Tue 7
    # An ordinary working day is never moved: 10 February 2026 is a Tuesday.
    assert resolve_one("10 February", 2026) == date(2026, 2, 10)


def test_end_of_month() -> None:
    # 31 May 2026 is a Sunday: previous → Fri 29, keep → 31.
    assert resolve_one("end of May", 2026) == date(2026, 5, 29)
    assert resolve_one("end of May", 2026, if_day_off="keep") == date(2026, 5, 31)
    # February 2027: 1 Feb is Monday, so 28 Feb is a Sunday → Fri 26.
    assert resolve_one("end of February", 2027) == date(2027, 2, 26)
    # 2028 is a leap year: 29 February is a Tuesday.
    assert resolve_one("end of February", 2028) == date(2028, 2, 29)


def test_first_and_last_working_day_of_month() -> None:
    # 31 May 2026 is Sunday, 30 Saturday, 29 Friday.
    assert resolve_one("last working day of May", 2026) == date(2026, 5, 29)
    # Policy does not matter: working-day rules always land on working days.
    assert resolve_one("last working day of May", 2026, if_day_off="keep") == date(2026, 5, 29)
    # 31 Dec 2026 is nyårsafton (Thu) → Wed 30.
    assert resolve_one("last working day of December", 2026) == date(2026, 12, 30)
    # 1 Jan 2026 Thu nyårsdagen → Fri 2; 1 Jan 2027 Fri → Mon 4.
    assert resolve_one("first working day of January", 2026) == date(2026, 1, 2)
    assert resolve_one("first working day of January", 2027) == date(2027, 1, 4)
    assert resolve_one("first working day of June", 2026) == date(2026, 6, 1)  # Monday


def test_year_offset() -> None:
    # Plan year 2027, rule for the autumn before: 1 October 2026 is a Thursday.
    assert resolve_one("1 October", 2027, year_offset=-1) == date(2026, 10, 1)
    # 31 October 2026 is a Saturday and Alla helgons dag → Fri 30 October 2026.
    assert resolve_one("31 October", 2027, year_offset=-1) == date(2026, 10, 30)
    assert resolve_one("last working day of December", 2027, year_offset=-1) == date(2026, 12, 30)


def test_leap_day() -> None:
    assert resolve_one("29 February", 2028) == date(2028, 2, 29)  # Tuesday
    assert resolve_one("29 februari", 2029, year_offset=-1) == date(2028, 2, 29)
    with pytest.raises(RuleError) as info:
        resolve_one("29 February", 2027)
    message = str(info.value)
    assert "date does not exist: '29 February'" in message
    assert "2027" in message
    assert "'x'" in message  # names the rule id
    assert "\n" not in message


@pytest.mark.parametrize("text", ["30 February", "31 April", "0 May", "32 January", "31 juni"])
def test_impossible_dates(text: str) -> None:
    with pytest.raises(RuleError, match=f"^date does not exist: '{text}'$"):
        parse_rule(text)
    with pytest.raises(RuleError, match=f"rule 'x': date does not exist: '{text}'"):
        resolve_one(text, 2028)


def test_swedish_month_names() -> None:
    assert resolve_one("10 februari", 2026) == date(2026, 2, 10)  # Tuesday
    assert resolve_one("31 mars", 2026) == date(2026, 3, 31)  # Tuesday
    assert resolve_one("15 oktober", 2026) == date(2026, 10, 15)  # Thursday
    # 1 May 2026 is a Friday and Första maj → Thu 30 April.
    assert resolve_one("1 maj", 2026) == date(2026, 4, 30)
    assert resolve_one("sista arbetsdagen i maj", 2026) == date(2026, 5, 29)
    assert resolve_one("30 september", 2026) == date(2026, 9, 30)  # Wednesday


def test_case_and_whitespace_are_ignored() -> None:
    assert resolve_one("  Last  Working Day Of MAY \n", 2026) == date(2026, 5, 29)
    assert resolve_one("10 FEBRUARY", 2026) == date(2026, 2, 10)


# --- relative rules ---------------------------------------------------------


def test_working_days_before_across_easter() -> None:
    specs = {
        "rs_pf": RuleSpec("8 April"),  # Wednesday after Easter
        "kallelse": RuleSpec("5 working days before meeting rs_pf"),
    }
    # Tue 7 (1), [Mon 6, Sun 5, Sat 4, Fri 3 off], Thu 2 (2), Wed 1 (3), Tue 31 Mar (4), Mon 30 (5).
    assert resolve_rules(specs, 2026) == {"rs_pf": date(2026, 4, 8), "kallelse": date(2026, 3, 30)}


def test_working_days_after_milestone() -> None:
    specs = {
        "budget": RuleSpec("12 May"),  # Tuesday
        "after": RuleSpec("3 working days after milestone budget"),
    }
    # Wed 13 (1), Thu 14 Ascension off, Fri 15 (2), weekend, Mon 18 (3).
    assert resolve_rules(specs, 2026)["after"] == date(2026, 5, 18)


def test_working_days_across_christmas_and_new_year() -> None:
    specs = {
        "x": RuleSpec("22 December"),  # Tuesday
        "y": RuleSpec("3 working days after x"),
        "z": RuleSpec("30 December"),  # Wednesday
        "w": RuleSpec("2 working days after z"),
    }
    got = resolve_rules(specs, 2026)
    # From Tue 22: Wed 23 (1), 24-27 off/weekend, Mon 28 (2), Tue 29 (3).
    assert got["y"] == date(2026, 12, 29)
    # From Wed 30: 31 and 1 Jan off, 2-3 weekend, Mon 4 (1), Tue 5 (2).
    assert got["w"] == date(2027, 1, 5)


def test_zero_working_days_lands_on_a_working_day() -> None:
    specs = {
        "nd": RuleSpec("6 June", if_day_off="keep"),  # Saturday, national day
        "before": RuleSpec("0 working days before nd"),
        "after": RuleSpec("0 working days after nd"),
    }
    got = resolve_rules(specs, 2026)
    assert got["before"] == date(2026, 6, 5)  # Fri
    assert got["after"] == date(2026, 6, 8)  # Mon


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("previous", date(2026, 6, 18)),
        ("next", date(2026, 6, 22)),
        ("keep", date(2026, 6, 19)),
    ],
)
def test_days_after_applies_policy(policy: str, expected: date) -> None:
    # Tue 9 June + 10 calendar days = Fri 19 June, midsommarafton.
    specs = {"x": RuleSpec("9 June"), "y": RuleSpec("10 days after x", if_day_off=policy)}
    assert resolve_rules(specs, 2026)["y"] == expected


def test_weeks_before_crosses_year_and_applies_policy() -> None:
    # Wed 7 Jan 2026 - 14 days = Wed 24 Dec 2025 (julafton) → previous: Tue 23 Dec 2025.
    specs = {
        "x": RuleSpec("7 January"),
        "y": RuleSpec("2 weeks before x"),
        "z": RuleSpec("2 weeks before x", if_day_off="keep"),
        "one": RuleSpec("1 week after x"),  # Wed 14 January, working day
    }
    got = resolve_rules(specs, 2026)
    assert got["x"] == date(2026, 1, 7)
    assert got["y"] == date(2025, 12, 23)
    assert got["z"] == date(2025, 12, 24)
    assert got["one"] == date(2026, 1, 14)


def test_same_day_as_and_relative_rules_ignore_year_offset() -> None:
    specs = {
        "x": RuleSpec("19 June", if_day_off="keep"),
        "same": RuleSpec("same day as x", year_offset=-1),
        "wd": RuleSpec("1 working day before x", year_offset=-1),
    }
    got = resolve_rules(specs, 2026)
    assert got["same"] == date(2026, 6, 19)
    assert got["wd"] == date(2026, 6, 18)


def test_swedish_relative_forms() -> None:
    specs = {
        "rs": RuleSpec("8 april"),
        "k": RuleSpec("5 arbetsdagar före möte rs"),
        "s": RuleSpec("samma dag som rs"),
        "v": RuleSpec("1 vecka efter rs"),  # Wed 15 April
    }
    assert resolve_rules(specs, 2026) == {
        "rs": date(2026, 4, 8),
        "k": date(2026, 3, 30),
        "s": date(2026, 4, 8),
        "v": date(2026, 4, 15),
    }


def test_result_follows_spec_order_regardless_of_dependencies() -> None:
    specs = {
        "late": RuleSpec("1 working day after early"),
        "early": RuleSpec("2 March"),  # Monday
    }
    got = resolve_rules(specs, 2026)
    assert list(got) == ["late", "early"]
    assert got == {"late": date(2026, 3, 3), "early": date(2026, 3, 2)}


# --- parsing and errors -----------------------------------------------------


def test_parse_rule_references() -> None:
    assert parse_rule("5 working days before meeting rs_pf").references == {"rs_pf"}
    assert parse_rule("2 weeks after milestone budget_2").references == {"budget_2"}
    assert parse_rule("same day as kf").references == {"kf"}
    assert parse_rule("5 WORKING DAYS BEFORE Meeting RS_PF").references == {"rs_pf"}
    assert parse_rule("10 February").references == set()
    assert parse_rule("last working day of May").references == set()


@pytest.mark.parametrize(
    "text",
    [
        "next tuesday",
        "",
        "   ",
        "February 10",
        "5 working days before",
        "five days after x",
        "-3 days after x",
        "5 working days before meeting rs-pf",
        "end of",
    ],
)
def test_unreadable_rules(text: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(text)
    message = str(info.value)
    assert message.startswith(f"cannot read date rule '{text.strip()}': expected e.g.")
    assert "\n" not in message


def test_unknown_month_is_named() -> None:
    with pytest.raises(RuleError, match="unknown month 'febtober' in date rule '10 Febtober'"):
        parse_rule("10 Febtober")


def test_unreadable_rule_in_resolve_names_the_id() -> None:
    with pytest.raises(RuleError, match=r"^rule 'x': cannot read date rule 'soon'"):
        resolve_one("soon", 2026)


def test_non_text_rule() -> None:
    with pytest.raises(RuleError, match="must be text"):
        parse_rule(42)  # type: ignore[arg-type]


def test_unknown_reference() -> None:
    specs = {"kallelse": RuleSpec("5 working days before meeting rs_pf")}
    with pytest.raises(RuleError) as info:
        resolve_rules(specs, 2026)
    message = str(info.value)
    assert "'kallelse'" in message
    assert "unknown reference 'rs_pf'" in message
    assert "'5 working days before meeting rs_pf'" in message
    assert "\n" not in message


def test_cycle_two_rules() -> None:
    specs = {"a": RuleSpec("same day as b"), "b": RuleSpec("2 days after a")}
    with pytest.raises(RuleError, match="dependency cycle a → b → a") as info:
        resolve_rules(specs, 2026)
    assert "\n" not in str(info.value)


def test_cycle_self_reference() -> None:
    with pytest.raises(RuleError, match="dependency cycle a → a"):
        resolve_rules({"a": RuleSpec("1 working day after a")}, 2026)


def test_cycle_reached_through_a_tail_shows_only_the_cycle() -> None:
    specs = {
        "c": RuleSpec("same day as a"),
        "a": RuleSpec("1 day after meeting b"),
        "b": RuleSpec("1 week before milestone a"),
    }
    with pytest.raises(RuleError) as info:
        resolve_rules(specs, 2026)
    message = str(info.value)
    assert "dependency cycle a → b → a" in message
    assert "c →" not in message


def test_invalid_policy() -> None:
    with pytest.raises(RuleError, match="invalid if_day_off 'later'"):
        RuleSpec("10 February", if_day_off="later")
    assert issubclass(RuleError, ValueError)


def test_year_out_of_range() -> None:
    with pytest.raises(RuleError, match="out of range"):
        resolve_one("1 January", 9999, year_offset=1)


# --- scale and helpers ------------------------------------------------------


def test_chain_of_100_rules() -> None:
    # r0 is Thu 15 January 2026; r_i is one working day after r_(i-1); listed
    # deepest-first so that resolution cannot rely on the order of the mapping.
    specs = {f"r{i}": RuleSpec(f"1 working day after r{i - 1}") for i in range(99, 0, -1)}
    specs["r0"] = RuleSpec("15 January")
    got = resolve_rules(specs, 2026)
    assert len(got) == 100
    # Hand count of 99 working days after Thu 15 Jan: Fri 16 Jan is 1, then ten full
    # weeks to Fri 27 Mar make 51; week of 30 Mar loses Good Friday (55); week of
    # 6 Apr loses Easter Monday (59); 64, 69; week of 27 Apr loses 1 May (73); 78;
    # week of 11 May loses Ascension (82); 87, 92 (Whit Monday is a working day),
    # 97 on Fri 5 June; Mon 8 June 98, Tue 9 June 99.
    assert got["r99"] == date(2026, 6, 9)
    assert got["r99"] == add_working_days(date(2026, 1, 15), 99)
    days = [got[f"r{i}"] for i in range(100)]
    assert all(is_working_day(d) for d in days)
    assert days == sorted(days) and len(set(days)) == 100


def test_long_chain_does_not_recurse() -> None:
    # Far deeper than Python's recursion limit; the resolver must walk iteratively.
    n = 3000
    specs = {f"r{i}": RuleSpec(f"1 day after r{i - 1}", if_day_off="keep") for i in range(1, n)}
    specs["r0"] = RuleSpec("1 January", if_day_off="keep")
    got = resolve_rules(specs, 2026)
    assert got[f"r{n - 1}"] == date(2026, 1, 1) + timedelta(days=n - 1)


def test_today_stockholm() -> None:
    today = today_stockholm()
    assert type(today) is date  # a plain date, not pendulum.Date
    expected = pendulum.now("Europe/Stockholm").date()
    # Allow for the test running across midnight.
    assert abs((today - date(expected.year, expected.month, expected.day)).days) <= 1
