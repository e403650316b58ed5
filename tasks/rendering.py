"""Render a batch of documents, fanned out over processes when the batch is large.

Rendering is CPU-bound (python-docx and openpyxl are pure Python), so a process pool is what
uses more than one core. The pool size is configuration (STYRKEDJA_RENDER_WORKERS), not code.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from config.schema import OrgConfig
from tasks.documents.catalog import DocRequest, render
from tasks.documents.model import RenderedDoc
from tasks.faults import crash_point

# A pool costs about a second to start (forkserver, imports); a document takes 20–120 ms.
# Below this many documents per worker the pool costs more than it saves.
DOCS_PER_WORKER_THRESHOLD = 15


def render_workers() -> int:
    value = os.environ.get("STYRKEDJA_RENDER_WORKERS")
    if value and value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1


def _render_chunk(cfg: OrgConfig, plan_year: int, requests: Sequence[DocRequest], out_root: Path) -> list[RenderedDoc]:
    done = []
    for r in requests:
        done.append(render(cfg, plan_year, r, out_root))
        crash_point("during_render")  # some files written, nothing recorded yet
    return done


def render_batch(
    cfg: OrgConfig, plan_year: int, requests: Sequence[DocRequest], out_root: Path, workers: int | None = None
) -> list[RenderedDoc]:
    """Render every request; results in request order."""
    workers = workers or render_workers()
    if workers <= 1 or len(requests) < workers * DOCS_PER_WORKER_THRESHOLD:
        return _render_chunk(cfg, plan_year, requests, out_root)
    # Contiguous chunks keep each worker's template caches warm; a few chunks per worker balance load.
    n_chunks = min(len(requests), workers * 4)
    size = -(-len(requests) // n_chunks)
    chunks = [requests[i : i + size] for i in range(0, len(requests), size)]
    # forkserver: the flow process has threads (Prefect's), and forking a threaded process is unsafe.
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_render_chunk, cfg, plan_year, chunk, out_root) for chunk in chunks]
        return [doc for f in futures for doc in f.result()]
