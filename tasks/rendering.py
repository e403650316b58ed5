"""Render a batch of documents, fanned out over processes when the batch is large.

Rendering is CPU-bound (python-docx and openpyxl are pure Python), so a process pool is what
uses more than one core. The pool size is configuration (STYRKEDJA_RENDER_WORKERS), not code,
and every kind of document goes through `fan_out`: the phases' documents and the level reports.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from config.schema import OrgConfig
from tasks.documents.catalog import DocRequest, render, returned_for
from tasks.documents.model import RenderedDoc
from tasks.documents.returned import Returned
from tasks.faults import crash_point

# A pool costs about a second to start (forkserver, imports); a document takes 20–120 ms.
# Below this many documents per worker the pool costs more than it saves.
DOCS_PER_WORKER_THRESHOLD = 15

Item = TypeVar("Item")


def render_workers() -> int:
    value = os.environ.get("STYRKEDJA_RENDER_WORKERS")
    if value and value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1


def _run_chunk(fn: Callable[[Item], RenderedDoc], items: Sequence[Item]) -> list[RenderedDoc]:
    done = []
    for item in items:
        done.append(fn(item))
        crash_point("during_render")  # some files written, nothing recorded yet
    return done


def fan_out(fn: Callable[[Item], RenderedDoc], items: Sequence[Item], workers: int | None = None) -> list[RenderedDoc]:
    """`fn(item)` for every item, results in item order; in a process pool when the batch is large.

    `fn` must pickle (a module-level function, or a `functools.partial` of one)."""
    workers = workers or render_workers()
    if workers <= 1 or len(items) < workers * DOCS_PER_WORKER_THRESHOLD:
        return _run_chunk(fn, items)
    # Contiguous chunks keep each worker's template caches warm; a few chunks per worker balance load.
    n_chunks = min(len(items), workers * 4)
    size = -(-len(items) // n_chunks)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    # forkserver: the flow process has threads (Prefect's), and forking a threaded process is unsafe.
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_run_chunk, fn, chunk) for chunk in chunks]
        return [doc for f in futures for doc in f.result()]


def _render_request(
    cfg: OrgConfig, plan_year: int, out_root: Path, returned: Returned, request: DocRequest
) -> RenderedDoc:
    return render(cfg, plan_year, request, out_root, returned=returned)


def render_batch(
    cfg: OrgConfig,
    plan_year: int,
    requests: Sequence[DocRequest],
    out_root: Path,
    workers: int | None = None,
    *,
    url: str | None = None,
) -> list[RenderedDoc]:
    """Render every request of a phase; results in request order. The returns the documents
    read (earlier phases' content) are loaded once, from the database at `url`."""
    if not requests:
        return []
    returned = returned_for(cfg, plan_year, sorted({r.kind for r in requests}), url)
    return fan_out(partial(_render_request, cfg, plan_year, out_root, returned), requests, workers)
