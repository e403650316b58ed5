"""Swedish working days and the date rules of the annual wheel (årshjul), resolved per plan year.

A rule is a short text such as "10 February", "last working day of May" or
"5 working days before meeting rs_pf". Absolute rules take the plan year (plus an
offset); relative rules take the resolved date of another rule id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType

import pendulum

__all__ = [
    "ParsedRule",
    "RuleError",
    "RuleKind",
    "RuleSpec",
    "add_working_days",
    "is_working_day",
    "next_working_day",
    "parse_rule",
    "previous_working_day",
    "resolve_rules",
    "swedish_days_off",
    "today_stockholm",
]

STOCKHOLM = "Europe/Stockholm"
POLICIES = ("previous", "next", "keep")
# Large enough for any planning horizon, small enough that a typo cannot make a
# working-day walk run for millions of steps.
MAX_OFFSET = 9999

_ONE_DAY = timedelta(days=1)


class RuleError(ValueError):
    """A date rule that cannot be read or resolved; one-line message, callers prefix file/field."""

    def __init__(self, message: str, *, rule_id: str | None = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.rule = rule


# ---------------------------------------------------------------------------
# Days off and working days
# ---------------------------------------------------------------------------


def _easter_sunday(year: int) -> date:
    """Gregorian Easter (anonymous Gregorian algorithm); only needed for påskafton."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _midsummer_eve(year: int) -> date:
    """The Friday between 19 and 25 June (since 1953)."""
    june19 = date(year, 6, 19)
    return june19 + timedelta(days=(4 - june19.weekday()) % 7)


# Bump when the table's rules below change: the cache file names carry it.
DAYS_OFF_CACHE_VERSION = 1


@lru_cache(maxsize=256)
def _days_off_table(year: int) -> Mapping[date, str]:
    """The year's days off, from a small cache file under the application home when there is one.

    The `holidays` package imports every country it knows (~250 modules, 0.5–1 s) on the first
    lookup; every command that loads a configuration resolves its dates, so without the cache each
    start of `styrkedja status` pays for it. Keyed by the package version and DAYS_OFF_CACHE_VERSION;
    a cache that cannot be read or written is ignored."""
    import json
    from importlib import metadata

    from models.db import home

    try:
        version = metadata.version("holidays")
    except metadata.PackageNotFoundError:
        version = "unknown"
    path = home() / "cache" / f"days-off-{year}-holidays-{version}-v{DAYS_OFF_CACHE_VERSION}.json"
    try:
        raw = json.loads(path.read_text("utf-8"))
        return MappingProxyType({date.fromisoformat(k): str(v) for k, v in raw.items()})
    except (OSError, ValueError, AttributeError):
        pass
    table = _compute_days_off(year)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({d.isoformat(): n for d, n in table.items()}, ensure_ascii=False), "utf-8")
        tmp.replace(path)  # atomic: a concurrent reader sees no file or the whole file
    except OSError:
        pass
    return table


def _compute_days_off(year: int) -> Mapping[date, str]:
    # include_sundays=False: the Swedish class can list every Sunday as a holiday;
    # weekends are handled explicitly in is_working_day instead.
    # DE_FACTO holds midsommarafton, julafton and nyårsafton (days off by law, SFS 1977:480).
    import holidays  # here, not at the top: 0.2 s of import that `styrkedja status` never needs

    found = holidays.country_holidays(
        "SE",
        years=year,
        categories=("public", "de_facto"),
        language="sv",
        include_sundays=False,
    )
    table: dict[date, str] = {d: str(name) for d, name in found.items() if d.year == year}
    # Påskafton is only "optional" in the package but is a day off in practice; the
    # setdefaults also guard against package versions without the de_facto category.
    if year >= 1953:
        table.setdefault(_easter_sunday(year) - _ONE_DAY, "Påskafton")
        table.setdefault(_midsummer_eve(year), "Midsommarafton")
        table.setdefault(date(year, 12, 24), "Julafton")
        table.setdefault(date(year, 12, 31), "Nyårsafton")
    # Read-only, because the cached object is shared by every caller.
    return MappingProxyType(dict(sorted(table.items())))


def swedish_days_off(year: int) -> dict[date, str]:
    """Public holidays plus the de-facto ones (påsk-, midsommar-, jul-, nyårsafton), in Swedish.

    Ordinary weekends are not listed; a holiday on a weekend is.
    """
    return dict(_days_off_table(year))


def _as_date(d: date) -> date:
    # A datetime never compares equal to a date, so set lookups would silently miss.
    return d.date() if isinstance(d, datetime) else d


def is_working_day(d: date) -> bool:
    d = _as_date(d)
    return d.weekday() < 5 and d not in _days_off_table(d.year)


def next_working_day(d: date) -> date:
    """d itself if it is a working day, else the first working day after it."""
    d = _as_date(d)
    while not is_working_day(d):
        d += _ONE_DAY
    return d


def previous_working_day(d: date) -> date:
    """d itself if it is a working day, else the last working day before it."""
    d = _as_date(d)
    while not is_working_day(d):
        d -= _ONE_DAY
    return d


def add_working_days(d: date, n: int) -> date:
    """The n-th working day strictly after d (n > 0) or before d (n < 0); d itself for n == 0."""
    d = _as_date(d)
    step = _ONE_DAY if n >= 0 else -_ONE_DAY
    remaining = abs(n)
    while remaining:
        d += step
        if is_working_day(d):
            remaining -= 1
    return d


def today_stockholm() -> date:
    """Today's date in Stockholm, regardless of the server's timezone."""
    now = pendulum.now(STOCKHOLM)
    # A plain date: pendulum.Date would leak into hashing, JSON and comparisons downstream.
    return date(now.year, now.month, now.day)


# ---------------------------------------------------------------------------
# Rule grammar
# ---------------------------------------------------------------------------

_MONTHS: dict[str, int] = {}
for _num, _names in enumerate(
    (
        ("january", "januari", "jan"),
        ("february", "februari", "feb"),
        ("march", "mars", "mar"),
        ("april", "apr"),
        ("may", "maj"),
        ("june", "juni", "jun"),
        ("july", "juli", "jul"),
        ("august", "augusti", "aug"),
        ("september", "sep", "sept"),
        ("october", "oktober", "oct", "okt"),
        ("november", "nov"),
        ("december", "dec"),
    ),
    start=1,
):
    for _name in _names:
        _MONTHS[_name] = _num

# Days per month in a leap year: "29 February" is readable, its existence depends on the year.
_MAX_DAY = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_MONTH = r"(?P<month>[a-zåäö]+)\.?"
_REF = (
    r"(?:(?:meeting|milestone|möte|mötet|sammanträde|sammanträdet|milstolpe|milstolpen)\s+)?"
    r"(?P<ref>[a-z0-9_]+)"
)
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("day_month", rf"(?P<day>\d+)(?:st|nd|rd|th|:e|:a)?\s+{_MONTH}"),
        (
            "end_of_month",
            rf"(?:the\s+)?(?:end\s+of|last\s+day\s+of|slutet\s+av|sista\s+dagen\s+i)\s+{_MONTH}",
        ),
        (
            "last_working_day",
            rf"(?:the\s+)?(?:last\s+(?:working|business)\s+day\s+of|sista\s+arbetsdagen\s+i)\s+{_MONTH}",
        ),
        (
            "first_working_day",
            rf"(?:the\s+)?(?:first\s+(?:working|business)\s+day\s+of|första\s+arbetsdagen\s+i)\s+{_MONTH}",
        ),
        (
            "offset",
            r"(?P<n>\d+)\s+"
            r"(?P<unit>(?:working|business)\s+days?|days?|weeks?|arbetsdag(?:ar)?|dag(?:ar)?|veck(?:a|or))"
            rf"\s+(?P<dir>before|after|före|innan|efter)\s+{_REF}",
        ),
        ("same_day", rf"(?:the\s+)?(?:same\s+day\s+as|samma\s+dag\s+som)\s+{_REF}"),
    )
)

_UNITS = {
    "working": "working_days",
    "business": "working_days",
    "arbetsdag": "working_days",
    "day": "days",
    "dag": "days",
    "week": "weeks",
    "veck": "weeks",
}
_AFTER = {"after", "efter"}


class RuleKind(StrEnum):
    DAY_MONTH = "day_month"
    END_OF_MONTH = "end_of_month"
    FIRST_WORKING_DAY = "first_working_day"
    LAST_WORKING_DAY = "last_working_day"
    WORKING_DAYS = "working_days"
    DAYS = "days"
    WEEKS = "weeks"
    SAME_DAY = "same_day"


_ABSOLUTE = {
    RuleKind.DAY_MONTH,
    RuleKind.END_OF_MONTH,
    RuleKind.FIRST_WORKING_DAY,
    RuleKind.LAST_WORKING_DAY,
}


@dataclass(frozen=True)
class ParsedRule:
    text: str  # as written (stripped), for messages
    kind: RuleKind
    month: int | None = None
    day: int | None = None
    count: int = 0  # how many days/weeks/working days
    after: bool = True  # direction of count; kept apart so that "0 ... before" keeps its meaning
    ref: str | None = None

    @property
    def offset(self) -> int:
        """The signed offset: negative means before the reference."""
        return self.count if self.after else -self.count

    @property
    def is_absolute(self) -> bool:
        return self.kind in _ABSOLUTE

    @property
    def references(self) -> set[str]:
        """Rule ids this rule depends on (a fresh set, safe to mutate)."""
        return {self.ref} if self.ref is not None else set()

    def resolve(self, plan_year: int, year_offset: int, if_day_off: str, ref_date: date | None) -> date:
        """The date of this rule; raises RuleError for dates that do not exist or overflow."""
        try:
            return self._resolve(plan_year, year_offset, if_day_off, ref_date)
        except RuleError:
            raise
        except (OverflowError, ValueError):
            # Years outside 1..9999 or offsets walking past them.
            raise RuleError(f"date out of range for date rule '{self.text}'", rule=self.text) from None

    def _resolve(self, plan_year: int, year_offset: int, if_day_off: str, ref_date: date | None) -> date:
        kind = self.kind
        if kind in _ABSOLUTE:
            year = plan_year + year_offset
            if not MINYEAR <= year <= MAXYEAR:
                raise RuleError(f"year {year} out of range for date rule '{self.text}'", rule=self.text)
            assert self.month is not None
            if kind is RuleKind.DAY_MONTH:
                assert self.day is not None
                try:
                    day = date(year, self.month, self.day)
                except ValueError:
                    # Only 29 February gets this far: it exists in leap years.
                    raise RuleError(f"date does not exist: '{self.text}' in {year}", rule=self.text) from None
                return _apply_policy(day, if_day_off)
            last = _last_of_month(year, self.month)
            if kind is RuleKind.END_OF_MONTH:
                return _apply_policy(last, if_day_off)
            if kind is RuleKind.LAST_WORKING_DAY:
                return previous_working_day(last)
            return next_working_day(date(year, self.month, 1))
        if ref_date is None:
            raise RuleError(f"date rule '{self.text}' needs the date of '{self.ref}'", rule=self.text)
        if kind is RuleKind.SAME_DAY:
            return ref_date
        if kind is RuleKind.WORKING_DAYS:
            if self.count == 0:
                # "0 working days before X" still has to land on a working day.
                return next_working_day(ref_date) if self.after else previous_working_day(ref_date)
            return add_working_days(ref_date, self.offset)
        days = self.offset * 7 if kind is RuleKind.WEEKS else self.offset
        return _apply_policy(ref_date + timedelta(days=days), if_day_off)


def _last_of_month(year: int, month: int) -> date:
    # No stdlib `calendar` here: this module is itself named calendar.
    first_next = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return first_next - _ONE_DAY


def _apply_policy(d: date, if_day_off: str) -> date:
    if if_day_off == "previous":
        return previous_working_day(d)
    if if_day_off == "next":
        return next_working_day(d)
    if if_day_off == "keep":
        return d
    raise RuleError(f"invalid if_day_off '{if_day_off}': expected 'previous', 'next' or 'keep'")


def _unreadable(text: str) -> RuleError:
    return RuleError(
        f"cannot read date rule '{text}': expected e.g. '10 February', 'last working day of May', "
        "'5 working days before meeting X'",
        rule=text,
    )


def parse_rule(text: str) -> ParsedRule:
    """Read a rule text; raises RuleError naming the text when it cannot be read."""
    if not isinstance(text, str):
        raise RuleError(f"date rule must be text, got {type(text).__name__}: {text!r}")
    return _parse(text.strip())


@lru_cache(maxsize=4096)
def _parse(text: str) -> ParsedRule:
    # Cached by the stripped text as written, so messages keep the author's spelling.
    norm = " ".join(text.lower().split())
    for kind_name, pattern in _PATTERNS:
        match = pattern.fullmatch(norm)
        if match is None:
            continue
        groups = match.groupdict()
        if kind_name == "offset":
            n = int(groups["n"])
            if n > MAX_OFFSET:
                raise RuleError(f"offset too large in date rule '{text}': at most {MAX_OFFSET}", rule=text)
            unit = _UNITS[next(k for k in _UNITS if groups["unit"].startswith(k))]
            after = groups["dir"] in _AFTER
            return ParsedRule(text, RuleKind(unit), count=n, after=after, ref=groups["ref"])
        if kind_name == "same_day":
            return ParsedRule(text, RuleKind.SAME_DAY, ref=groups["ref"])
        month = _MONTHS.get(groups["month"])
        if month is None:
            raise RuleError(f"unknown month '{groups['month']}' in date rule '{text}'", rule=text)
        if kind_name == "day_month":
            day = int(groups["day"])
            if not 1 <= day <= _MAX_DAY[month - 1]:
                raise RuleError(f"date does not exist: '{text}'", rule=text)
            return ParsedRule(text, RuleKind.DAY_MONTH, month=month, day=day)
        return ParsedRule(text, RuleKind(kind_name), month=month)
    raise _unreadable(text)


# ---------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    rule: str
    year_offset: int = 0  # relative to the plan year; used by absolute rules only
    if_day_off: str = "previous"  # "previous" | "next" | "keep"

    def __post_init__(self) -> None:
        if self.if_day_off not in POLICIES:
            raise RuleError(
                f"invalid if_day_off '{self.if_day_off}' for date rule '{self.rule}': "
                "expected 'previous', 'next' or 'keep'",
                rule=self.rule,
            )


def _error(rule_id: str, spec: RuleSpec, message: str) -> RuleError:
    # The id is quoted so callers can map the message back to a config field.
    return RuleError(f"rule '{rule_id}': {message}", rule_id=rule_id, rule=spec.rule)


def resolve_rules(specs: Mapping[str, RuleSpec], plan_year: int) -> dict[str, date]:
    """Resolve every rule id to a date for the plan year, in the order of `specs`.

    Raises RuleError for unreadable rules, unknown references, dependency cycles and
    dates that do not exist.
    """
    parsed: dict[str, ParsedRule] = {}
    for rule_id, spec in specs.items():
        try:
            rule = parse_rule(spec.rule)
        except RuleError as exc:
            raise _error(rule_id, spec, str(exc)) from None
        for ref in sorted(rule.references):
            if ref not in specs:
                raise _error(rule_id, spec, f"unknown reference '{ref}' in date rule '{spec.rule}'")
        parsed[rule_id] = rule

    resolved: dict[str, date] = {}
    for root in specs:
        # Each rule has at most one reference, so dependencies form chains: walk the
        # chain down to something already known (iteratively; chains can be long).
        chain: list[str] = []
        position: dict[str, int] = {}
        node: str | None = root
        while node is not None and node not in resolved:
            if node in position:
                cycle = " → ".join([*chain[position[node] :], node])
                spec = specs[node]
                raise _error(node, spec, f"dependency cycle {cycle} in date rule '{spec.rule}'")
            position[node] = len(chain)
            chain.append(node)
            node = parsed[node].ref
        for rule_id in reversed(chain):
            rule, spec = parsed[rule_id], specs[rule_id]
            ref_date = resolved[rule.ref] if rule.ref is not None else None
            try:
                resolved[rule_id] = rule.resolve(plan_year, spec.year_offset, spec.if_day_off, ref_date)
            except RuleError as exc:
                raise _error(rule_id, spec, str(exc)) from None
    return {rule_id: resolved[rule_id] for rule_id in specs}
