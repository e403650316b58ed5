"""The deadline watch's messages rendered from skeletons are the same texts as rendered in full."""

from __future__ import annotations

import itertools
import random
from datetime import date, timedelta

import pytest

from tasks.message_skeletons import Skeletons
from tasks.notify import render_message

NAMES = ["Hälso- och sjukvårdsnämnden", "Regionstyrelsen", "Tandvårdsnämnden  (TVN)", "Kultur\tnämnden", "Å"]
TITLES = ["Planeringsförutsättningar 2028–2031", 'Budget "ram" {{ x }} %s', "  Indragen titel", "X" * 320]
TEMPLATES = {
    "reminder": ("days",),
    "escalation": ("days_overdue",),
    "return_reminder": ("days",),
    "return_escalation": ("days_overdue",),
    "dispute_reminder": ("days",),
    "dispute_escalation": ("days_overdue",),
    "milestone_reminder": ("days",),
    "milestone_escalation": ("days_overdue",),
}


def _context(rng: random.Random, name: str) -> dict[str, object]:
    steer = TEMPLATES[name][0]
    return {
        "organisation": rng.choice(["Region Norrsjö", "Älvbacka kommun"]),
        "title": rng.choice(TITLES),
        "unit": rng.choice(NAMES),
        "receiver": rng.choice(NAMES),
        "overdue_unit": rng.choice(NAMES),
        "sender": rng.choice(NAMES),
        "link": rng.choice(["http://127.0.0.1:4200/runs", "⟦LÄNK⟧", "https://portal.example/kvittens/7"]),
        "receipt_id": rng.randint(1, 100_000),
        "milestone_key": rng.choice(["budget-klar", "pf-beslut"]),
        "phase": rng.choice(["Planeringsförutsättningar", "Verksamhetsplaner"]),
        "year": rng.choice([2028, 2029]),
        "version": rng.choice([1, 2, 3]),
        "deadline": date(2028, 3, 1) + timedelta(days=rng.randint(0, 300)),
        steer: rng.choice([-30, -2, -1, 0, 1, 2, 14]) if steer == "days" else rng.choice([1, 2, 45]),
    }


def test_a_sample_of_messages_is_identical_to_the_full_rendering() -> None:
    rng = random.Random(17)
    skeletons = Skeletons()
    for name, _ in itertools.product(TEMPLATES, range(150)):
        context = _context(rng, name)
        assert skeletons.render(name, context) == render_message(name, context), (name, context)


@pytest.mark.parametrize("odd", ["", "rad ett\nrad två", "slutar med mellanslag ", "\x00kod\x00", "\r"])
def test_values_the_clean_up_could_change_are_rendered_in_full(odd: str) -> None:
    context = _context(random.Random(1), "escalation") | {"overdue_unit": odd, "link": odd}
    assert Skeletons().render("escalation", context) == render_message("escalation", context)


def test_a_missing_field_is_still_an_error() -> None:
    context = _context(random.Random(2), "reminder")
    del context["title"]
    with pytest.raises(Exception, match="title"):
        Skeletons().render("reminder", context)
