"""Every generated document of a demonstration year reads as Swedish for people: names, never
configuration codes, and words a Swedish spell checker (hunspell with Debian's sv_SE dictionary)
knows or that the reviewed word list (tests/ordlista.txt: names of the sample organisations,
abbreviations they use, terms of the planning process) holds.

Two years are generated: the sample region's, every document of every phase with the August
interim report's follow-up templates and level reports (nothing returned: the documents as sent
first); and the trimmed sample municipality's year with a return at every handoff
(tests/test_content_chain.run_chain), so that the text carried from returns is read too."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from doc_text import lines, words
from pdf_words import broken_words
from test_content_chain import run_chain
from test_documents import _pdf_pages, _soffice

from config.loader import load_config
from config.schema import OrgConfig
from models.migrate import upgrade
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.documents.catalog import KINDS, documents_for_phase, phase_ids, render
from tasks.followup_calendar import occasions
from tasks.handoffs import handoffs_for_phase
from tasks.level_reports import hand_up_levels

YEAR = 2028
WORD_LIST = Path(__file__).with_name("ordlista.txt")
# Kolada's key figure ids (U70448, N02267): references a reader looks up, not words.
KOLADA_ID = re.compile(r"^[A-Z]\d{5}$")

pytestmark = pytest.mark.slow


def _region_year(out: Path) -> OrgConfig:
    cfg = load_config("region")
    for phase in phase_ids():
        if phase != "follow_up":
            for req in documents_for_phase(cfg, YEAR, phase):
                render(cfg, YEAR, req, out)
    url = f"sqlite:///{out / 'app.db'}"
    upgrade(url)
    occasion = next(o for o in occasions(cfg, YEAR) if o.key == f"delar-{YEAR}-08-31")
    cycle_id = prepare_cycle(cfg, YEAR, url)
    handoffs = handoffs_for_phase(cfg, YEAR, "follow_up", occasion)
    distribute(cfg, cycle_id, "follow_up", handoffs, out, actor="test", url=url)
    levels = {cfg.units_at("administration")[0].id: "Test av läsbarheten."}
    hand_up_levels(cfg, cycle_id, occasion, out, actor="test", overrides=levels, url=url)
    return cfg


@pytest.fixture(scope="module")
def years(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[OrgConfig, list[Path]]]:
    region_out = tmp_path_factory.mktemp("region") / "out"
    region = _region_year(region_out)
    tmp = tmp_path_factory.mktemp("kommun")
    url = f"sqlite:///{tmp / 'app.db'}"
    upgrade(url)
    municipality = run_chain(url, tmp / "out", tmp)
    found = []
    for cfg, out in ((region, region_out), (municipality, tmp / "out")):
        files = sorted(out.rglob("*.docx")) + sorted(out.rglob("*.xlsx"))
        found.append((cfg, files))
    kinds = {f.name.split("_", 1)[1].rsplit("_v", 1)[0].split("_delar")[0] for f in found[0][1]}
    assert set(KINDS) <= kinds, set(KINDS) - kinds  # every kind of the catalog is read
    return found


def _configured_keys(cfg: OrgConfig) -> dict[str, str]:
    """Every id and key of the configuration a document could leak: units, goals, indicators,
    phases, milestones, meetings, follow-up occasions, document kinds."""
    keys: dict[str, str] = {u.id: "enhet" for u in cfg.units}
    for g in cfg.goals:
        keys[g.id] = "mål"
        keys |= {i.id: "indikator" for i in g.indicators}
    keys |= {p.id: "fas" for p in cfg.wheel.phases}
    keys |= {m.id: "milstolpe" for m in cfg.wheel.milestones}
    keys |= {m.id: "möte" for m in cfg.wheel.meetings}
    keys |= {o.key: "uppföljningstillfälle" for o in occasions(cfg, YEAR)}
    keys |= {k: "dokumenttyp" for k in KINDS}
    return keys


def _reviewed_words() -> set[str]:
    out = set()
    for line in WORD_LIST.read_text(encoding="utf-8").splitlines():
        word = line.split("#", 1)[0].strip()
        if word:
            out.add(word)
    return out


def _unknown(candidates: list[str]) -> set[str]:
    result = subprocess.run(
        ["hunspell", "-d", "sv_SE", "-l"], input="\n".join(candidates), capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def _swedish_words(ids: list[str]) -> set[str]:
    """Ids that are themselves Swedish words ("verksamhetsplan", "marknadsandel"): their text is a
    word a person reads, not a code."""
    plain = [i for i in ids if re.fullmatch(r"[a-zåäö]+", i)]
    return set(plain) - _unknown(plain) if plain else set()


def test_no_document_shows_a_configuration_id(years: list[tuple[OrgConfig, list[Path]]]) -> None:
    """A code is an id with "_", "-" or a digit (vard_i_tid, delar-2028-08-31,
    planning_prerequisites), a unit's code (PAT, HSF), or a lowercase id that is no Swedish word.
    The abbreviations the organisations write in their own texts (RS, RF, RSAU) are on the reviewed
    list; so are no other unit codes."""
    reviewed = _reviewed_words()
    found: list[str] = []
    for cfg, files in years:
        keys = _configured_keys(cfg)
        allowed = reviewed | _swedish_words(list(keys))
        codes = sorted((k for k in keys if k not in allowed), key=len, reverse=True)
        pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, codes)) + r")(?![\w-])")
        for f in files:
            for line in lines(f):
                for m in pattern.finditer(line):
                    found.append(f"{f.name}: {keys[m.group(1)]} {m.group(1)!r} in {line[:100]!r}")
    assert not found, "\n".join(found[:30])


def test_every_word_is_swedish_or_reviewed(years: list[tuple[OrgConfig, list[Path]]]) -> None:
    if shutil.which("hunspell") is None or not Path("/usr/share/hunspell/sv_SE.dic").is_file():
        pytest.skip("hunspell with the Swedish dictionary (hunspell-sv) is not installed")
    seen: Counter[str] = Counter()
    where: dict[str, str] = {}
    for _, files in years:
        for f in files:
            for line in lines(f):
                # "hälso- och sjukvård", "löne- och prisutveckling": the first part of a shared
                # compound is not a word on its own.
                line = re.sub(r"\w+-(?=\s+(och|eller|till)\s)", " ", line)
                for w in words(line):
                    if re.search(r"\d", w) and not re.fullmatch(r"\d+-\w+", w):
                        continue  # figures, dates, Kolada ids
                    seen[w] += 1
                    where.setdefault(w, f"{f.name}: {line[:90]!r}")
    reviewed = _reviewed_words()
    unknown = sorted(w for w in _unknown(sorted(seen)) if w not in reviewed and not KOLADA_ID.match(w))
    assert not unknown, "\n".join(f"{w} ({seen[w]}×) {where[w]}" for w in unknown[:40])
    # The reviewed list holds no word the dictionary already knows (but for the unit codes it
    # allows as the organisations' own abbreviations, RF and KF among them).
    unit_codes = {u.id for cfg, _ in years for u in cfg.units}
    redundant = sorted(reviewed - _unknown(sorted(reviewed)) - unit_codes)
    assert not redundant, f"in the dictionary already, remove from {WORD_LIST.name}: {redundant}"


def _kind_of(path: Path) -> str:
    stem = path.stem.rsplit("_v", 1)[0]
    kind = stem.split("_", 1)[1]
    return re.sub(r"_(delar|ar|bu|man)-\d{4}-\d{2}-\d{2}$", "", kind)


@pytest.mark.libreoffice
def test_pdf_of_every_kind_has_no_broken_word(years: list[tuple[OrgConfig, list[Path]]], tmp_path: Path) -> None:
    """One document of each kind, from the municipality's year with its returns (the tables carry
    what came back), converted by LibreOffice; every word on every page of the PDF is a whole word
    of the document: no table cell breaks a word or cuts it at its edge."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    _, files = years[1]
    one: dict[str, Path] = {}
    for f in files:
        one.setdefault(_kind_of(f), f)
    assert set(KINDS) | {"nivarapport", "nivarapport_siffror"} <= set(one), set(one)
    out = tmp_path / "pdf"
    _soffice(tmp_path, out, "pdf", list(one.values()))
    broken: list[str] = []
    for kind, f in sorted(one.items()):
        pdf = out / (f.stem + ".pdf")
        assert pdf.is_file() and _pdf_pages(pdf) >= 1, kind
        broken += broken_words(f, pdf)
    assert not broken, "\n".join(broken[:30])


def test_every_audited_action_has_a_swedish_name_on_the_operators_page():
    """The audit page names each event in Swedish: every action the code audits is in ACTION_SV."""
    import re
    from pathlib import Path

    from models.tables import PhaseState
    from portal.views import ACTION_SV

    root = Path(__file__).resolve().parent.parent
    found: set[str] = set()
    for path in [*root.glob("tasks/**/*.py"), *root.glob("flows/*.py"), *root.glob("portal/*.py")]:
        found |= set(re.findall(r'action="([a-z_]+)"', path.read_text(encoding="utf-8")))
    found |= {f"phase_{s}" for s in PhaseState}  # tasks.phase_steps audits f"phase_{state}"
    for verb in ("agreed", "disputed"):  # tasks.receipts: the decision, on behalf, refused
        found |= {f"receipt_{verb}", f"receipt_{verb}_on_behalf", f"refused_{verb}"}
    assert len(found) > 20
    missing = sorted(a for a in found if a not in ACTION_SV)
    assert not missing, f"no Swedish name for {missing}"
