"""The render pool: large batches go to other processes, small ones stay in the flow's process,
and a document rendered by a pool worker is the same document, byte for byte in content, as one
rendered in the flow's own process."""

from __future__ import annotations

import os
from pathlib import Path

import openpyxl
from docx import Document as open_docx

from config.loader import load_config
from tasks.documents.catalog import documents_for_phase
from tasks.rendering import DOCS_PER_WORKER_THRESHOLD, fan_out, render_batch

YEAR = 2028


def _pid(item: int) -> tuple[int, int]:
    return item, os.getpid()


def test_large_batches_fan_out_small_ones_stay_in_process() -> None:
    me = os.getpid()
    n = 2 * DOCS_PER_WORKER_THRESHOLD
    pooled = fan_out(_pid, list(range(n)), workers=2)  # type: ignore[arg-type]
    assert [i for i, _ in pooled] == list(range(n))  # every item once, in order
    assert me not in {pid for _, pid in pooled} and len({pid for _, pid in pooled}) >= 1
    small = fan_out(_pid, list(range(n - 1)), workers=2)  # type: ignore[arg-type]
    assert {pid for _, pid in small} == {me}
    one = fan_out(_pid, list(range(n)), workers=1)  # type: ignore[arg-type]
    assert {pid for _, pid in one} == {me}


def test_pool_writes_the_same_documents_as_one_process(tmp_path: Path) -> None:
    cfg = load_config(Path("config/region.yaml"))
    phases = ("preparation", "planning_prerequisites", "committee_feedback", "regional_plan", "operational_plans")
    requests = [r for phase in phases for r in documents_for_phase(cfg, YEAR, phase)]
    assert len(requests) >= 2 * DOCS_PER_WORKER_THRESHOLD  # enough for the pool
    one = render_batch(cfg, YEAR, requests, tmp_path / "one", workers=1)
    pool = render_batch(cfg, YEAR, requests, tmp_path / "pool", workers=2)
    assert [(d.doc_key, d.relpath, d.content_hash) for d in pool] == [
        (d.doc_key, d.relpath, d.content_hash) for d in one
    ]
    for d in {d.relpath: d for d in pool}.values():
        a, b = tmp_path / "one" / d.relpath, tmp_path / "pool" / d.relpath
        if d.format == "docx":
            assert [p.text for p in open_docx(a).paragraphs] == [p.text for p in open_docx(b).paragraphs]
        else:
            wa, wb = openpyxl.load_workbook(a), openpyxl.load_workbook(b)
            assert wa.sheetnames == wb.sheetnames
            for name in wa.sheetnames:
                assert [list(r) for r in wa[name].iter_rows(values_only=True)] == [
                    list(r) for r in wb[name].iter_rows(values_only=True)
                ]
