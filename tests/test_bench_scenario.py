"""The benchmark's scenario generator: deterministic, and what it writes is a valid configuration."""

from __future__ import annotations

import json
from pathlib import Path

from bench import scenario
from config.loader import load_config
from tasks.aggregation import NARRATIVE, WORKBOOK, OrgTree, aggregate_returns


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = scenario.write(50, tmp_path / "a", seed=7)
    b = scenario.write(50, tmp_path / "b", seed=7)
    c = scenario.write(50, tmp_path / "c", seed=8)
    assert a.config.read_bytes() == b.config.read_bytes()
    assert a.returns.read_bytes() == b.returns.read_bytes()
    assert a.config.read_bytes() != c.config.read_bytes()
    assert a.returns.read_bytes() != c.returns.read_bytes()


def test_a_50_unit_scenario_loads_with_the_promised_counts(tmp_path: Path) -> None:
    s = scenario.write(50, tmp_path)
    cfg = load_config(s.config)
    levels = {lv.id: sum(u.level == lv.id for u in cfg.units) for lv in cfg.levels}
    n_comm = scenario.committees_for(50)
    assert len(cfg.units) == 50
    assert levels["committee"] == n_comm == 4
    assert levels["administration"] == n_comm + 1  # one per committee, and the executive office
    assert all(u.signatories and u.contacts for u in cfg.units)
    assert set(cfg.budget.frames) == {u.id for u in cfg.committees()}
    assert len(cfg.goals) == 8 and all(len(g.indicators) == 2 for g in cfg.goals)

    returns = json.loads(s.returns.read_text("utf-8"))
    reporting = {u.id for u in cfg.units if u.parent is not None and u.id != cfg.organisation.roles.working_committee}
    assert set(returns) == reporting  # every unit that reports up, each with both documents
    assert all(set(r) == {WORKBOOK, NARRATIVE} for r in returns.values())

    # The returns are in the shape aggregation reads: the assembly's totals are the leaves' sums.
    flat = {(u, kind): content for u, docs in returns.items() for kind, content in docs.items()}
    agg = aggregate_returns(OrgTree.from_config(cfg), flat, "bench", cfg.follow_up.deviation_threshold_percent)
    top = agg[cfg.organisation.roles.assembly]
    assert top.completeness.complete
    leaves = reporting - {u.parent for u in cfg.units}
    expected = sum(row["values"]["Budget helår"] for u in leaves for row in returns[u][WORKBOOK]["sheets"]["Ekonomi"])
    assert abs(top.total.budget - expected) < 1e-6


def test_the_large_scenario_has_40_committees() -> None:
    assert scenario.committees_for(4000) == 40
    assert scenario.committees_for(500) == 14
