"""Deterministic, seeded scenarios for the year benchmark: an organisation of N units with goals,
indicators, budgets and filled-in follow-up returns.

    python -m bench.scenario --units 50 --out /tmp/scenario   # writes org.yaml and returns.json

The annual wheel, the follow-up calendar and the deadlines are the sample region's
(config/region.yaml): the scenario changes the organisation, not the process. Meetings keep only
the participants that exist in the scenario; other processes' wheels are left out.

Shape: assembly RF, executive board RS with its working committee RSAU, the finance department EKO
under the executive office RLK; C committees, each with one administration; the remaining units
spread over the administrations (4,000 units: 40 committees, 40 administrations under them plus
RLK, 3,915 units).
Every unit has one signatory and an e-mail contact.

Returns are in the stored shape tasks/aggregation.py reads (`Submission.content`): the workbook
as {"sheets": {sheet: [{"values": {...}, "context": {...}}, ...]}}, the narrative as
{"fields": {field: text}}, one pair per reporting unit. Same seed and size → the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from config.loader import load_config
from tasks.documents.content import FOLLOW_UP_ROWS

SIZES = (50, 500, 4000)
DEFAULT_SEED = 2028
TOP = ("RF", "RS", "RSAU", "RLK", "EKO")  # the fixed top of every scenario
PLACES = (
    "Norrfors", "Åsele", "Vilhelmina", "Dorotea", "Storuman", "Sorsele", "Malå", "Lycksele", "Vindeln",
    "Bjurholm", "Nordmaling", "Robertsfors", "Skellefteå", "Norsjö", "Vännäs", "Holmsund", "Hörnefors",
    "Burträsk", "Byske", "Jörn", "Boliden", "Kåge", "Ursviken", "Tärnaby", "Hemavan", "Örträsk",
)  # fmt: skip
AREAS = ("Hälso- och sjukvård", "Tandvård", "Kollektivtrafik", "Kultur", "Regional utveckling", "Fastigheter")
ACTIVITIES = ("Vårdcentral", "Avdelning", "Mottagning", "Enhet", "Verksamhet", "Team", "Kansli", "Depå")
TRAFFIC = ("Grön", "Grön", "Grön", "Gul", "Gul", "Röd")
RAISES = (
    "Bemanningen under sommaren räcker inte",
    "Lokalerna behöver renoveras",
    "Nytt journalsystem försenar arbetet",
    "Upphandlingen av transporter måste samordnas",
)
NARRATIVE_FIELDS = ("sammanfattning", "mal", "ekonomi", "personal", "risker")


@dataclass(frozen=True)
class Scenario:
    units: int
    seed: int
    config: Path
    returns: Path


def committees_for(units: int) -> int:
    """40 committees at 4,000 units (the issue's large region); 14 at 500, 4 at 50 (about √units)."""
    return max(2, min(40, round(0.633 * units**0.5)))


def organisation(units: int, seed: int) -> dict[str, Any]:
    """The configuration as plain data, ready for YAML."""
    if units < len(TOP) + 4:
        raise ValueError(f"a scenario needs at least {len(TOP) + 4} units")
    rng = random.Random(f"org/{units}/{seed}")
    base = load_config("region").model_dump(mode="json", exclude_defaults=False)
    n_comm = committees_for(units)
    out_units: list[dict[str, Any]] = []

    def add(uid: str, name: str, level: str, parent: str | None) -> None:
        tag = uid.lower().replace("-", "_")
        out_units.append(
            {
                "id": uid,
                "name": name,
                "level": level,
                "parent": parent,
                "signatories": [
                    {"id": f"chef_{tag}", "name": f"Chef {name}"[:120], "email": f"chef.{tag}@bench.example"}
                ],
                "contacts": [{"channel": "epost", "address": f"{tag}@bench.example"}],
            }
        )

    add("RF", "Regionfullmäktige", "assembly", None)
    add("RS", "Regionstyrelsen", "executive_board", "RF")
    add("RSAU", "Regionstyrelsens arbetsutskott", "executive_board", "RS")
    add("RLK", "Regionledningskontoret", "administration", "RS")
    add("EKO", "Ekonomistaben", "unit", "RLK")
    admins: list[str] = []
    for c in range(1, n_comm + 1):
        area = AREAS[(c - 1) % len(AREAS)]
        add(f"N{c:02d}", f"{area}snämnd {c}", "committee", "RS")
        add(f"F{c:02d}", f"{area}sförvaltning {c}", "administration", f"N{c:02d}")
        admins.append(f"F{c:02d}")
    remaining = units - len(out_units)
    # Uneven administrations, as real ones are: weights 1–3, every administration at least one unit.
    weights = [rng.randint(1, 3) for _ in admins]
    shares = [1 + (remaining - len(admins)) * w // sum(weights) for w in weights]
    shares[-1] += remaining - sum(shares)
    n = 0
    for admin, share in zip(admins, shares, strict=True):
        for _ in range(share):
            n += 1
            place = PLACES[rng.randrange(len(PLACES))]
            add(f"E{n:04d}", f"{ACTIVITIES[rng.randrange(len(ACTIVITIES))]} {place} {n}", "unit", admin)
    ids = {u["id"] for u in out_units}
    committees = [u["id"] for u in out_units if u["level"] == "committee"]

    wheel = base["wheel"]
    meetings = []
    for m in wheel["meetings"]:
        parts = [p for p in m["participants"] if p in ids]
        if m["organiser"] in ids and parts:
            meetings.append(m | {"participants": parts})
    goals = []
    for g in range(1, 9):
        targeted = sorted(rng.sample(committees, k=min(len(committees), rng.randint(1, 3)))) if g % 3 == 0 else []
        goals.append(
            {
                "id": f"mal_{g}",
                "area": AREAS[g % len(AREAS)],
                "title": f"Övergripande mål {g}: {AREAS[g % len(AREAS)].lower()} för alla i länet",
                "targeted": targeted,
                "opt_out_allowed": g % 4 == 0,
                "indicators": [
                    {
                        "id": f"ind_{g}_{i}",
                        "name": f"Indikator {i} för mål {g}",
                        "target": rng.randint(50, 95),
                        "unit": "%",
                    }
                    for i in range(1, 3)
                ],
            }
        )
    return {
        "organisation": base["organisation"] | {"id": f"bench_{units}", "name": f"Region Bench {units}"},
        "vision": base["vision"],
        "levels": base["levels"],
        "channels": [
            {
                "id": "epost",
                "kind": "email",
                "url": "mailto://127.0.0.1:${STYRKEDJA_SMTP_PORT}?from=bench@bench.example",
            }
        ],
        "units": out_units,
        "wheel": wheel | {"meetings": meetings},
        "follow_up": base["follow_up"],
        "deadlines": base["deadlines"],
        "goals": goals,
        "budget": {"frames": {c: rng.randint(50, 5000) * 1000 for c in committees}, "growth_percent": 2.5},
    }


def returns(org: dict[str, Any], seed: int) -> dict[str, dict[str, Any]]:
    """unit id → {"uppfoljning": workbook content, "uppfoljning_berattelse": narrative content}."""
    rng = random.Random(f"returns/{len(org['units'])}/{seed}")
    skip = org["organisation"]["roles"]["working_committee"]
    goals = org["goals"]
    out: dict[str, dict[str, Any]] = {}
    for u in org["units"]:
        if u["parent"] is None or u["id"] == skip:
            continue
        economy = []
        for post in FOLLOW_UP_ROWS:
            budget = float(rng.randint(100, 20_000) * (-1 if post == "Intäkter" else 1))
            forecast = round(budget * rng.uniform(0.94, 1.06), 0)
            values = {"Budget helår": budget, "Utfall hittills": round(budget * 0.66, 0), "Prognos helår": forecast}
            economy.append({"values": values, "context": {"Post": post}})
        goal_rows = [
            {
                "values": {
                    "Bedömning": TRAFFIC[rng.randrange(len(TRAFFIC))],
                    "Kommentar och analys": f"Bedömt av {u['id']}.",
                },
                "context": {"Mål-id": g["id"], "Mål": g["title"]},
            }
            for g in goals
            if not g["targeted"]
        ]
        investments = []
        if rng.random() < 0.1:
            budget = float(rng.randint(1_000, 50_000))
            values = {"Projekt": f"Investering {u['id']}", "Budget": budget, "Utfall hittills": budget / 2}
            investments.append({"values": values | {"Prognos": budget}, "context": {}})
        raise_line = RAISES[rng.randrange(len(RAISES))] if rng.random() < 0.2 else "Inget."
        fields = {f: f"{f.capitalize()} för {u['name']}." for f in NARRATIVE_FIELDS}
        fields |= {"lyfter_vidare": raise_line, "gor_sjalva": "Vi följer upp månadsvis."}
        out[u["id"]] = {
            "uppfoljning": {"sheets": {"Ekonomi": economy, "Mål": goal_rows, "Investeringar": investments}},
            "uppfoljning_berattelse": {"fields": fields},
        }
    return out


def write(units: int, folder: Path, seed: int = DEFAULT_SEED) -> Scenario:
    """org.yaml and returns.json for one size under `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    org = organisation(units, seed)
    config = folder / "org.yaml"
    text = yaml.safe_dump(org, allow_unicode=True, sort_keys=False, width=200, default_flow_style=None)
    config.write_text(f"# Generated by bench.scenario: {units} units, seed {seed}. Do not edit.\n{text}", "utf-8")
    data = folder / "returns.json"
    data.write_text(json.dumps(returns(org, seed), ensure_ascii=False, sort_keys=True), "utf-8")
    return Scenario(units, seed, config, data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scenario", description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=50, help="number of units (at least 9)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, required=True, help="folder for org.yaml and returns.json")
    args = parser.parse_args(argv)
    s = write(args.units, args.out, args.seed)
    print(f"{s.config} ({s.config.stat().st_size:,} bytes), {s.returns} ({s.returns.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
