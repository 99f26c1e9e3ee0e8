"""The book's side-by-side chapter execution (book/_ext/parallel_execution.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from jupyter_cache import get_cache

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
import parallel_execution


def test_worker_count_takes_the_environment_and_never_exceeds_the_chapters(monkeypatch):
    monkeypatch.delenv("VITLENS_BOOK_JOBS", raising=False)
    assert parallel_execution.worker_count(10, cores=2, memory_gib=24) == 2
    assert parallel_execution.worker_count(1, cores=4, memory_gib=24) == 1
    assert parallel_execution.worker_count(10, cores=16, memory_gib=10) == 3  # 3 GiB each
    assert parallel_execution.worker_count(10, cores=16, memory_gib=1) == 1
    monkeypatch.setenv("VITLENS_BOOK_JOBS", "3")
    assert parallel_execution.worker_count(10, cores=2) == 3
    for bad in ("0", "-1", "two", ""):
        monkeypatch.setenv("VITLENS_BOOK_JOBS", bad)
        with pytest.raises(ValueError, match="VITLENS_BOOK_JOBS must be a positive integer"):
            parallel_execution.worker_count(10, cores=2)


def test_available_memory_counts_what_the_kernel_can_reclaim():
    # A busy machine with a warm page cache: 2 GiB free, 10 GiB available.
    meminfo = "MemTotal:       25165824 kB\nMemFree:         2097152 kB\n"
    assert parallel_execution.meminfo_available_gib(meminfo) is None
    meminfo += "MemAvailable:   10485760 kB\nBuffers:          123456 kB\n"
    assert parallel_execution.meminfo_available_gib(meminfo) == 10.0
    assert parallel_execution.worker_count(10, cores=2, memory_gib=10.0) == 2
    assert parallel_execution.available_memory_gib() > 0


def test_threads_share_the_cores_between_kernels():
    assert parallel_execution.threads_per_kernel(2, cores=2) == 1
    assert parallel_execution.threads_per_kernel(2, cores=8) == 4
    assert parallel_execution.threads_per_kernel(4, cores=2) == 1


def _notebook(path: Path, *sources: str) -> Path:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in sources],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    nbformat.write(notebook, path)
    return path


def _env(pages: dict[str, Path], cache: Path, **settings) -> SimpleNamespace:
    """A Sphinx environment as the extension reads it: page paths and MyST-NB's settings."""
    config = SimpleNamespace(
        execution_mode="cache",
        execution_cache_path=str(cache),
        execution_timeout=120,
        execution_allow_errors=False,
        execution_excludepatterns=[],
    )
    vars(config).update(settings)
    return SimpleNamespace(doc2path=lambda name: str(pages[name]), mystnb_config=config)


def test_missing_chapters_are_executed_into_the_cache_that_myst_nb_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("VITLENS_BOOK_JOBS", "2")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    pages = {
        "first": _notebook(
            tmp_path / "first.ipynb", "import os", "print(os.environ['OMP_NUM_THREADS'])"
        ),
        "second": _notebook(tmp_path / "second.ipynb", "print(6 * 7)"),
        "broken": _notebook(tmp_path / "broken.ipynb", "raise RuntimeError('chapter bug')"),
        "prose": tmp_path / "prose.md",
    }
    pages["prose"].write_text("# Not a notebook\n")
    env = _env(pages, tmp_path / "cache")
    parallel_execution.execute_missing(None, env, set(pages))

    cache = get_cache(str(tmp_path / "cache"))
    executed = {}
    for name in ("first", "second"):
        record = cache.match_cache_notebook(nbformat.read(pages[name], as_version=4))
        assert record.data["execution_seconds"] > 0
        executed[name] = cache.get_cache_bundle(record.pk).nb
    threads = parallel_execution.threads_per_kernel(2)  # the cores shared by 2 kernels
    assert executed["first"].cells[1].outputs[0]["text"] == f"{threads}\n"
    assert executed["second"].cells[0].outputs[0]["text"] == "42\n"
    # each cell's seconds beside the notebook (MyST-NB's cache matches the bare notebook)
    record = cache.match_cache_notebook(nbformat.read(pages["second"], as_version=4))
    assert len(record.data["cell_seconds"]) == 1 and record.data["cell_seconds"][0] > 0
    assert "execution" not in executed["second"].cells[0].metadata
    # a failing chapter stays out of the cache: MyST-NB executes it again and reports it
    with pytest.raises(KeyError):
        cache.match_cache_notebook(nbformat.read(pages["broken"], as_version=4))


def test_nothing_runs_outside_cache_mode_or_for_excluded_notebooks(tmp_path, monkeypatch):
    monkeypatch.setenv("VITLENS_BOOK_JOBS", "2")
    pages = {
        "one": _notebook(tmp_path / "one.ipynb", "x = 1"),
        "two": _notebook(tmp_path / "two.ipynb", "y = 2"),
    }
    for settings in ({"execution_mode": "force"}, {"execution_excludepatterns": ["*.ipynb"]}):
        env = _env(pages, tmp_path / "cache", **settings)
        parallel_execution.execute_missing(None, env, set(pages))
        assert not (tmp_path / "cache").exists()
