"""Sphinx extension: execute the chapters that need it side by side, before Sphinx reads them.

MyST-NB's ``cache`` mode executes each notebook when Sphinx reads it, one after another. On
a 2-core machine one chapter keeps both cores only part of the time (imports, plotting and
Python-level work run on one), so the book builds faster with two chapters executing at
once, each kernel with its share of the cores. This extension runs on
``env-before-read-docs``: it finds the notebooks about to be read whose code has no
executed copy in MyST-NB's cache, executes them in a pool of worker processes (longest
recorded run first, else later chapters first), and stores each executed notebook in the
cache exactly as MyST-NB would. Sphinx then reads every chapter from the cache.

A chapter that fails here is left out of the cache, so MyST-NB executes it again while
reading and reports the error with its traceback, as a serial build would. The number of
chapters executed at once is ``VITLENS_BOOK_JOBS`` (default: one per core, as many as the
free memory holds at 3 GiB each, at most the number of chapters); ``VITLENS_BOOK_JOBS=1``
leaves every chapter to MyST-NB, serially, in reading order. Each kernel gets
``cores // jobs`` (at least 1) OpenMP threads unless ``OMP_NUM_THREADS`` is set.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path, PurePosixPath

import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution
from sphinx.util import logging

logger = logging.getLogger(__name__)


KERNEL_MEMORY_GIB = 3.0
"""Memory one chapter's kernel may take: the heaviest chapter (2b, the heatmap's
jackknifed comparisons) peaks at about 2.9 GiB on the tiny profile
(``scripts/chapter_times.py`` reports each chapter's peak)."""


def meminfo_available_gib(meminfo: str) -> float | None:
    """``MemAvailable`` of a ``/proc/meminfo`` text in GiB (``None`` where it has no such
    line): the free memory plus what the kernel can reclaim, such as the page cache."""
    match = re.search(r"^MemAvailable:\s+(\d+) kB$", meminfo, flags=re.MULTILINE)
    return None if match is None else int(match.group(1)) / 2**20


def available_memory_gib() -> float:
    """Memory the operating system can still give, in GiB: Linux's ``MemAvailable``, else
    the free pages (which leave out the page cache), else ``inf`` where nothing says."""
    try:
        available = meminfo_available_gib(Path("/proc/meminfo").read_text())
    except OSError:
        available = None
    if available is not None:
        return available
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError, AttributeError):
        return float("inf")


def worker_count(pending: int, cores: int | None = None, memory_gib: float | None = None) -> int:
    """Chapters to execute at once: ``VITLENS_BOOK_JOBS``, else one per core and no more
    than the free memory holds (:data:`KERNEL_MEMORY_GIB` each), at most ``pending``; a
    value that is not a positive integer is refused."""
    value = os.environ.get("VITLENS_BOOK_JOBS")
    if value is not None:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"VITLENS_BOOK_JOBS must be a positive integer, got {value!r}")
        jobs = int(value)
    else:
        memory = available_memory_gib() if memory_gib is None else memory_gib
        jobs = min(cores or os.cpu_count() or 1, int(memory // KERNEL_MEMORY_GIB))
    return max(1, min(jobs, pending))


def threads_per_kernel(jobs: int, cores: int | None = None) -> int:
    """OpenMP threads for each of ``jobs`` kernels sharing ``cores`` cores (at least 1)."""
    return max(1, (cores or os.cpu_count() or 1) // jobs)


def cell_seconds(cell) -> float:
    """Wall seconds between a cell's ``execute_input`` and its ``execute_reply`` (0 if the
    cell did not run)."""
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if start is None or end is None:
        return 0.0
    parse = datetime.fromisoformat
    return (parse(end.rstrip("Z")) - parse(start.rstrip("Z"))).total_seconds()


def _execute(path: str, timeout: int | None, allow_errors: bool, threads: str) -> tuple:
    """Execute one notebook in a worker process.

    Returns ``(path, notebook or None, seconds, error, cell seconds)``: the notebook as
    MyST-NB would cache it (the per-cell times, recorded while it ran, are taken out of the
    cells' metadata, which the cache's match would otherwise not find, and returned beside).
    """
    os.environ["OMP_NUM_THREADS"] = threads  # read by the kernel this process starts
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    result = single_nb_execution(
        notebook,
        cwd=str(Path(path).parent),
        timeout=timeout,
        allow_errors=allow_errors,
        meta_override=True,
        record_timing=True,
    )
    seconds = time.perf_counter() - started
    if result.err is not None:
        return path, None, seconds, f"{type(result.err).__name__}: {result.err}", []
    cells = [cell_seconds(cell) for cell in notebook.cells]
    for cell in notebook.cells:
        cell.get("metadata", {}).pop("execution", None)
    return path, notebook, result.time, None, cells


def execute_missing(app, env, docnames) -> None:
    """Execute, side by side, every notebook in ``docnames`` that the cache lacks."""
    config = env.mystnb_config  # MyST-NB's settings, its cache path resolved
    if config.execution_mode != "cache" or not docnames:
        return
    cache = get_cache(config.execution_cache_path)
    pending = []
    for docname in docnames:
        path = Path(env.doc2path(docname))
        excluded = any(
            PurePosixPath(path.as_posix()).match(pattern)
            for pattern in config.execution_excludepatterns
        )
        if path.suffix != ".ipynb" or excluded:
            continue
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            pending.append(path)
    if len(pending) < 2:
        return  # nothing to overlap: MyST-NB executes it while reading
    jobs = worker_count(len(pending))
    if jobs == 1:
        return
    threads = os.environ.get("OMP_NUM_THREADS") or str(threads_per_kernel(jobs))
    # longest first; without a record, later chapters first (the book's heavier half)
    pending.sort(key=lambda path: (_recorded_seconds(cache, path), str(path)), reverse=True)
    logger.info(f"executing {len(pending)} notebooks, {jobs} at a time ({threads} thread(s) each)")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [
            pool.submit(
                _execute,
                str(path),
                config.execution_timeout,
                config.execution_allow_errors,
                threads,
            )
            for path in pending
        ]
        for future in futures:
            path, notebook, seconds, error, cells = future.result()
            if error is not None:
                logger.info(f"{path}: failed ({error}); it executes again while read")
                continue
            record = cache.add_nb_to_project(path)
            cache.cache_notebook_bundle(
                CacheBundleIn(
                    notebook,
                    record.uri,
                    data={"execution_seconds": seconds, "cell_seconds": cells},
                ),
                check_validity=False,
                overwrite=True,
            )
            logger.info(f"{path}: executed in {seconds:.1f} s")


def _recorded_seconds(cache, path: Path) -> float:
    """The last recorded execution seconds of a notebook at ``path`` (0 if none)."""
    times = [
        record.data.get("execution_seconds") or 0.0
        for record in cache.list_cache_records()
        if Path(record.uri) == path
    ]
    return max(times, default=0.0)


def setup(app):
    app.connect("env-before-read-docs", execute_missing)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
