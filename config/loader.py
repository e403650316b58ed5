"""Load and validate a configuration file once, into typed objects.

Every problem becomes a `ConfigError` with one line naming the file, the field and the value.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from config.schema import PHASE_IDS, OrgConfig
from models.errors import ConfigError

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CONFIG_DIR = Path(__file__).resolve().parent
SAMPLES = {"region": CONFIG_DIR / "region.yaml", "municipality": CONFIG_DIR / "municipality.yaml"}
MAX_CONFIG_BYTES = 2_000_000
# A configuration nests six levels deep; hostile nesting crashes the YAML composer (a C stack).
MAX_NESTING = 32
# Nodes after expanding every alias: anchors are fine, a "billion laughs" (aliases of aliases of
# lists) is not. The samples have about 2 000 nodes.
MAX_NODES = 200_000
# Plan years the calendar rules are checked against: one leap year and one ordinary year.
CHECK_YEARS = (2027, 2028)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader, refusing duplicate keys (YAML says they are an error; PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (the same key twice in one mapping)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_shape(name: str, text: str) -> None:
    """Nesting depth and size after alias expansion, from the event stream (iterative, cheap),
    before anything builds the document."""
    depth = 0
    stack: list[tuple[str | None, int]] = []  # per open collection: its anchor, nodes so far
    sizes: dict[str, int] = {}
    total = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        count = 0
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise ConfigError(name, f"line {line}", f"nested more than {MAX_NESTING} levels deep")
            stack.append((event.anchor, 0))
            continue
        if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
            anchor, inner = stack.pop()
            count = inner + 1
            if anchor:
                sizes[anchor] = count
        elif isinstance(event, yaml.ScalarEvent):
            count = 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            count = sizes.get(event.anchor or "", 1)
        else:
            continue
        if stack:
            anchor, inner = stack[-1]
            stack[-1] = (anchor, inner + count)
        else:
            total += count
        if count > MAX_NODES or total > MAX_NODES or (stack and stack[-1][1] > MAX_NODES):
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise ConfigError(
                name,
                f"line {line}",
                f"expands to more than {MAX_NODES} values (aliases of aliases, a 'billion laughs'?)",
            )


def default_config_path() -> Path:
    return Path(os.environ.get("STYRKEDJA_CONFIG", SAMPLES["region"]))


def resolve_config_path(name_or_path: str | Path | None) -> Path:
    if name_or_path is None:
        return default_config_path()
    if str(name_or_path) in SAMPLES:
        return SAMPLES[str(name_or_path)]
    return Path(name_or_path)


def _loc(loc: tuple[object, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_config(path: str | Path | None = None) -> OrgConfig:
    p = resolve_config_path(path)
    return _load_cached(str(p.resolve()) if p.exists() else str(p), _mtime(p))


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


@lru_cache(maxsize=16)
def _load_cached(path: str, _mtime: float) -> OrgConfig:
    return parse_config(Path(path))


def parse_config(path: Path) -> OrgConfig:
    """Parse and validate a configuration; a file validated before (same bytes, same path, same
    code) comes from the validated-configuration cache instead (see `_cache_path`)."""
    cache = _cache_path(path)
    if cache is not None:
        cached = _read_cache(cache)
        if cached is not None:
            return cached
    cfg = _parse_config(path)
    if cache is not None:
        _write_cache(cache, cfg)
    return cfg


# The code that validates a configuration: a change to any of these files invalidates the cache.
_VALIDATING_SOURCES = ("config/schema.py", "config/loader.py", "tasks/calendar.py", "tasks/wheel.py")


@lru_cache(maxsize=1)
def _code_stamp() -> bytes:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for rel in _VALIDATING_SOURCES:
        try:
            digest.update((root / rel).read_bytes())
        except OSError:
            digest.update(rel.encode())
    return digest.digest()


def _cache_path(path: Path) -> Path | None:
    """Parsing and checking a large organisation (4,000 units: ~1 MB of YAML, every date rule for
    two years) takes seconds, and every command starts with it. The validated model is kept under
    the application home, keyed by the file's bytes, its path and the validating code, so an edit
    of either means a full validation again. Only files that validated are cached."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        raw = path.read_bytes()
    except OSError:
        return None
    key = hashlib.sha256(_code_stamp() + str(path.resolve()).encode() + b"\0" + raw).hexdigest()
    home = Path(os.environ.get("STYRKEDJA_HOME") or Path(__file__).resolve().parent.parent / "var")
    return home / "cache" / "config" / f"{key}.pickle"


def _read_cache(cache: Path) -> OrgConfig | None:
    try:
        cfg = pickle.loads(cache.read_bytes())  # noqa: S301 - written by this program under its own home
    except Exception:  # a missing, truncated or stale cache is only a cache miss
        return None
    return cfg if isinstance(cfg, OrgConfig) else None


def _write_cache(cache: Path, cfg: OrgConfig) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, cache)  # atomic: a reader sees the old file or the whole new one
    except OSError:
        pass  # read-only home: validate every time


def _parse_config(path: Path) -> OrgConfig:
    name = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError(name, "(file)", "no such file") from None
    except OSError as exc:
        raise ConfigError(name, "(file)", f"cannot be read: {exc.strerror}") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(name, "(file)", f"is {size} bytes; at most {MAX_CONFIG_BYTES} allowed")
    try:
        raw_text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "(file)", f"is not UTF-8 text (byte {exc.start})") from None
    except IsADirectoryError:
        raise ConfigError(name, "(file)", "is a folder, not a file") from None
    try:
        _check_shape(name, raw_text)
        data = yaml.load(raw_text, Loader=_Loader)  # noqa: S506 - a safe loader, C-accelerated when available
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(name, where, f"broken YAML: {problem}") from None
    if data is None:
        raise ConfigError(name, "(file)", "is empty")
    if not isinstance(data, dict):
        raise ConfigError(name, "(top level)", f"expected a mapping, got {type(data).__name__}")
    try:
        cfg = OrgConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(name, _loc(tuple(err["loc"])), f"{err['msg']} (value: {_short(err.get('input'))})") from None
    check_references(cfg, name)
    check_calendar(cfg, name)
    check_parallel_wheels(cfg, name)
    return cfg


def _unique(items: list[str], what: str, file: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item in seen:
            raise ConfigError(file, f"{what}[{i}].id", f"duplicate id {item!r}")
        seen.add(item)


def _unique_ignoring_case(items: list[str], what: str, file: str) -> None:
    """Ids name files (`HSN_aterkoppling_v1.docx`): on a Windows or macOS share `hsn` and `HSN`
    would be one file, so ids that differ only in case are refused."""
    seen: dict[str, str] = {}
    for i, item in enumerate(items):
        other = seen.setdefault(item.casefold(), item)
        if other != item:
            raise ConfigError(
                file, f"{what}[{i}].id", f"id {item!r} differs from {other!r} only in case (they would share files)"
            )


def check_references(cfg: OrgConfig, file: str) -> None:
    level_ids = [lv.id for lv in cfg.levels]
    unit_ids = {u.id for u in cfg.units}
    channel_ids = {c.id for c in cfg.channels}
    _unique(level_ids, "levels", file)
    _unique([u.id for u in cfg.units], "units", file)
    _unique_ignoring_case([u.id for u in cfg.units], "units", file)
    _unique([c.id for c in cfg.channels], "channels", file)
    _unique([p.id for p in cfg.wheel.phases], "wheel.phases", file)
    _unique([g.id for g in cfg.goals], "goals", file)
    dated = [m.id for m in cfg.wheel.milestones] + [m.id for m in cfg.wheel.meetings]
    _unique(dated, "wheel.milestones/meetings", file)

    for i, u in enumerate(cfg.units):
        here = f"units[{i}]"
        if u.level not in level_ids:
            raise ConfigError(file, f"{here}.level", f"unknown level {u.level!r}")
        for j, c in enumerate(u.contacts):
            if c.channel not in channel_ids:
                raise ConfigError(file, f"{here}.contacts[{j}].channel", f"unknown channel {c.channel!r}")
        if u.parent is None:
            if level_ids.index(u.level) != 0:
                raise ConfigError(file, f"{here}.parent", f"unit {u.id!r} below the top level needs a parent")
            continue
        if u.parent not in unit_ids:
            raise ConfigError(file, f"{here}.parent", f"unknown unit {u.parent!r}")
        parent = cfg.unit(u.parent)
        if level_ids.index(parent.level) > level_ids.index(u.level):
            raise ConfigError(file, f"{here}.parent", f"{u.parent!r} is on a lower level than {u.id!r}")
    _check_tree_acyclic(cfg, file)

    roles = cfg.organisation.roles
    for role in ("assembly", "executive_board", "working_committee", "finance"):
        uid = getattr(roles, role)
        if uid not in unit_ids:
            raise ConfigError(file, f"organisation.roles.{role}", f"unknown unit {uid!r}")

    phase_ids = [p.id for p in cfg.wheel.phases]
    for i, p in enumerate(cfg.wheel.phases):
        if p.id not in PHASE_IDS:
            raise ConfigError(
                file,
                f"wheel.phases[{i}].id",
                f"unknown phase {p.id!r} (known: {', '.join(PHASE_IDS)})",
            )
        if p.owner not in unit_ids:
            raise ConfigError(file, f"wheel.phases[{i}].owner", f"unknown unit {p.owner!r}")
        if p.receipt_deadline not in dated:
            raise ConfigError(
                file,
                f"wheel.phases[{i}].receipt_deadline",
                f"unknown milestone {p.receipt_deadline!r}",
            )
    for pid in PHASE_IDS:
        if pid not in phase_ids:
            raise ConfigError(file, "wheel.phases", f"phase {pid!r} is missing")

    reserved = {f"{p}_{edge}" for p in PHASE_IDS for edge in ("start", "end")}
    for what, items in (("milestones", cfg.wheel.milestones), ("meetings", cfg.wheel.meetings)):
        for i, item in enumerate(items):
            if item.id in reserved:
                raise ConfigError(file, f"wheel.{what}[{i}].id", f"id {item.id!r} is reserved for a phase window")
    for i, m in enumerate(cfg.wheel.milestones):
        if m.phase not in phase_ids:
            raise ConfigError(file, f"wheel.milestones[{i}].phase", f"unknown phase {m.phase!r}")
        if m.owner not in unit_ids:
            raise ConfigError(file, f"wheel.milestones[{i}].owner", f"unknown unit {m.owner!r}")
    for i, mt in enumerate(cfg.wheel.meetings):
        if mt.phase not in phase_ids:
            raise ConfigError(file, f"wheel.meetings[{i}].phase", f"unknown phase {mt.phase!r}")
        if mt.organiser not in unit_ids:
            raise ConfigError(file, f"wheel.meetings[{i}].organiser", f"unknown unit {mt.organiser!r}")
        for j, part in enumerate(mt.participants):
            if part not in unit_ids:
                raise ConfigError(file, f"wheel.meetings[{i}].participants[{j}]", f"unknown unit {part!r}")

    committee_ids = {u.id for u in cfg.committees()}
    for i, g in enumerate(cfg.goals):
        for j, t in enumerate(g.targeted):
            if t not in committee_ids:
                raise ConfigError(file, f"goals[{i}].targeted[{j}]", f"unknown committee {t!r}")
    for uid in cfg.budget.frames:
        if uid not in committee_ids:
            raise ConfigError(file, f"budget.frames.{uid}", f"unknown committee {uid!r}")
        if cfg.budget.frames[uid] < 0:
            raise ConfigError(file, f"budget.frames.{uid}", f"negative frame {cfg.budget.frames[uid]}")
    for field, months in (
        ("monthly_checks", cfg.follow_up.monthly_checks),
        ("forecasts", cfg.follow_up.forecasts),
    ):
        for j, month in enumerate(months):
            if not 1 <= month <= 12:
                raise ConfigError(file, f"follow_up.{field}[{j}]", f"month must be 1–12, got {month}")


def _check_tree_acyclic(cfg: OrgConfig, file: str) -> None:
    parent = {u.id: u.parent for u in cfg.units}
    for i, u in enumerate(cfg.units):
        seen = [u.id]
        cur = parent[u.id]
        while cur is not None:
            if cur in seen:
                raise ConfigError(file, f"units[{i}].parent", f"loop in the tree: {' → '.join([*seen, cur])}")
            seen.append(cur)
            cur = parent[cur]


def check_calendar(cfg: OrgConfig, file: str) -> None:
    """Resolve every date rule for two sample years so that a rule that cannot work fails now."""
    # The calendar and the wheel are pure functions of the config; importing them here adds no cycle.
    from tasks.calendar import RuleError, RuleSpec, parse_rule, resolve_rules
    from tasks.wheel import rule_fields, rule_specs

    fields = rule_fields(cfg)
    for key, field in fields.items():
        try:
            parse_rule(rule_specs(cfg)[key].rule)
        except RuleError as exc:
            raise ConfigError(file, field, str(exc)) from None
    followup = {f"interim_{j}": text for j, text in enumerate(cfg.follow_up.interim_reports)}
    followup["annual"] = cfg.follow_up.annual_report
    followup_fields = {
        f"interim_{j}": f"follow_up.interim_reports[{j}]" for j in range(len(cfg.follow_up.interim_reports))
    }
    followup_fields["annual"] = "follow_up.annual_report"
    for key, text in followup.items():
        try:
            parse_rule(text)
        except RuleError as exc:
            raise ConfigError(file, followup_fields[key], str(exc)) from None
    followup_specs = {k: RuleSpec(t, 0, "keep") for k, t in followup.items()}
    for year in CHECK_YEARS:
        for specs, where in ((rule_specs(cfg), fields), (followup_specs, followup_fields)):
            try:
                resolve_rules(specs, year)
            except RuleError as exc:
                field = where.get(exc.rule_id or "", "wheel")
                raise ConfigError(file, field, f"{exc} (plan year {year})") from None


def check_parallel_wheels(cfg: OrgConfig, file: str) -> None:
    """The optional parallel wheels: unique ids, known units and references, date rules that resolve."""
    if not cfg.parallel_wheels:
        return
    # Pure functions of the config, like the calendar above; imported here to keep the loader light.
    from tasks.calendar import RuleError, parse_rule, resolve_rules
    from tasks.coordination import followup_ids, namespace_specs
    from tasks.wheel import rule_specs

    unit_ids = {u.id for u in cfg.units}
    taken = set(rule_specs(cfg)) | set(followup_ids(cfg)) | {f"{f}_period" for f in followup_ids(cfg)}
    _unique([w.id for w in cfg.parallel_wheels], "parallel_wheels", file)
    fields: dict[str, str] = {}
    for i, wheel in enumerate(cfg.parallel_wheels):
        if wheel.owner not in unit_ids:
            raise ConfigError(file, f"parallel_wheels[{i}].owner", f"unknown unit {wheel.owner!r}")
        for j, item in enumerate(wheel.items):
            here = f"parallel_wheels[{i}].items[{j}]"
            if item.id in taken or item.id in fields:
                raise ConfigError(file, f"{here}.id", f"duplicate id {item.id!r} (ids are shared with the wheel)")
            fields[item.id] = here
            if item.owner is not None and item.owner not in unit_ids:
                raise ConfigError(file, f"{here}.owner", f"unknown unit {item.owner!r}")
            try:
                parse_rule(item.date.rule)
            except RuleError as exc:
                raise ConfigError(file, f"{here}.date.rule", str(exc)) from None
    known = taken | set(fields)
    for item_id, here in fields.items():
        item = next(it for w in cfg.parallel_wheels for it in w.items if it.id == item_id)
        for name in ("must_precede", "needs"):
            ref = getattr(item, name)
            if ref is None:
                continue
            if ref == item.id:
                raise ConfigError(file, f"{here}.{name}", f"{ref!r} refers to the item itself")
            if ref not in known:
                raise ConfigError(file, f"{here}.{name}", f"unknown id {ref!r}")
    specs = namespace_specs(cfg)
    for year in CHECK_YEARS:
        try:
            resolve_rules(specs, year)
        except RuleError as exc:
            field = fields.get(exc.rule_id or "", "parallel_wheels")
            raise ConfigError(
                file, f"{field}.date.rule" if exc.rule_id in fields else field, f"{exc} (plan year {year})"
            ) from None
