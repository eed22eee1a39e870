"""Execute the chapters two at a time, and hand the executed notebooks to the build's cache.

Jupyter Book executes the chapters one after the other; most of them keep
one core busy. ``make book`` therefore executes the chapters whose code has
no cached result first, two at a time, and hands them to the cache, so that
the build itself finds every chapter executed::

    python -m booktools execute          # stale chapters, 2 at a time, into the cache
    jupyter-book build .                  # every chapter is a cache hit

``make test`` executes every chapter once, under nbmake, then builds the site
from those results instead of executing every chapter a second time::

    python -m booktools export DEST      # every executable chapter -> DEST/<stem>.ipynb
    pytest DEST --nbmake --overwrite     # execute them; outputs written back
    python -m booktools cache DEST       # store the outputs in _build/.jupyter_cache
    jupyter-book build .                  # every chapter is a cache hit

The cache is keyed by a hash of the chapter's code cells, computed from the
``.md`` source exactly as the build computes it, so a chapter whose code
changed since is executed by the build. Each execution's wall time is kept in
``_build/.execution-seconds.json``, the build's own record, and the next
execution starts the longest chapters first; a fresh clone has no record and
starts in reading order.

The cache knows a chapter's code, not the libraries it ran with or ``bnbook``.
``make fresh-cache`` (:func:`fresh_cache`) keeps it while the dependencies are
the ones it was executed with, and clears it when they changed: their hash is
recorded beside it, in ``_build/.deps-hash``, and CI keeps both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

import jupytext
import nbclient
import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn

from booktools.layout import ROOT, executable_chapters, export_notebooks, source_of
from booktools.pins import TESTS, without_group

CACHE = ROOT / "_build" / ".jupyter_cache"
SECONDS = ROOT / "_build" / ".execution-seconds.json"
DEPS_HASH = ROOT / "_build" / ".deps-hash"
CELL_TIMEOUT_S = 300  # as execute.timeout in _config.yml


def _runtime(notebook: nbformat.NotebookNode) -> float | None:
    """Seconds from the first cell's start to the last cell's end, from nbclient's timing."""
    stamps = [cell.metadata.get("execution", {}) for cell in notebook.cells
              if cell.cell_type == "code"]
    try:
        start = datetime.fromisoformat(stamps[0]["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(stamps[-1]["shell.execute_reply"].replace("Z", "+00:00"))
    except (IndexError, KeyError):
        return None
    return (end - start).total_seconds()


def cache_executed(folder: Path, cache_path: Path = CACHE,
                   only: set[str] | None = None) -> list[str]:
    """Store the executed ``folder/<stem>.ipynb`` of every chapter (or those named in
    ``only``) in the build's cache.

    Outputs are merged into the chapter as read from its ``.md`` source, so the
    cache key is the one the build computes. A notebook whose code cells do not
    match its source, or that was not executed top to bottom, is refused.
    """
    cache = get_cache(str(cache_path))
    stored, seconds = [], {}
    for page in executable_chapters():
        stem = Path(page).name
        if only is not None and stem not in only:
            continue
        source = source_of(page)
        notebook = jupytext.read(source)
        executed = nbformat.read(folder / f"{stem}.ipynb", as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        done = [c for c in executed.cells if c.cell_type == "code"]
        if [c.source for c in code] != [c.source for c in done]:
            raise ValueError(f"{folder}/{stem}.ipynb does not match {source}")
        for cell, result in zip(code, done):
            cell.outputs = result.outputs
            cell.execution_count = result.execution_count
        runtime = _runtime(executed)
        cache.cache_notebook_bundle(
            CacheBundleIn(notebook, str(source), data={"execution_seconds": runtime}),
            check_validity=True, overwrite=True)
        stored.append(page)
        if runtime is not None:
            seconds[stem] = runtime
    if cache_path == CACHE:
        record_seconds(seconds)
    return stored


def stale_chapters(cache_path: Path = CACHE) -> list[str]:
    """The executable chapters whose current code has no executed notebook in the cache."""
    cache = get_cache(str(cache_path))
    stale = []
    for page in executable_chapters():
        try:
            cache.match_cache_notebook(jupytext.read(source_of(page)))
        except KeyError:
            stale.append(page)
    return stale


def execute_notebook(path: Path) -> float:
    """Execute ``path`` in a fresh kernel and write the outputs back; return the seconds.

    A cell that raises fails the whole run, as ``raise_on_error`` fails the build; the outputs
    of the cells before it are written all the same.
    """
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    try:
        nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                record_timing=True,
                                resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        nbformat.write(notebook, path)
    return time.perf_counter() - start


def recorded_seconds() -> dict[str, float]:
    """The wall time of each chapter's last execution by this build (empty on a fresh clone)."""
    try:
        return {str(k): float(v) for k, v in json.loads(SECONDS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def record_seconds(seconds: dict[str, float]) -> None:
    """Add this execution's times to the build's record."""
    if not seconds:
        return
    SECONDS.parent.mkdir(parents=True, exist_ok=True)
    SECONDS.write_text(json.dumps({**recorded_seconds(), **seconds}, indent=1, sort_keys=True))


def longest_first(paths: list[Path], seconds: dict[str, float] | None = None) -> list[Path]:
    """``paths`` ordered by their last execution time, longest first (never timed: first, in
    the order given), so that the longest chapter does not start last and leave a core idle."""
    measured = recorded_seconds() if seconds is None else seconds
    return sorted(paths, key=lambda p: -measured.get(p.stem, float("inf")))


def execute_all(paths: list[Path], workers: int = 2) -> dict[str, float]:
    """Execute the notebooks ``workers`` at a time, longest first; return seconds per stem."""
    paths = longest_first(paths)
    workers = min(workers, len(paths)) or 1
    with ProcessPoolExecutor(max_workers=workers) as pool:
        seconds = dict(zip([p.stem for p in paths], pool.map(execute_notebook, paths)))
    return seconds


def chapter_workers() -> int:
    """How many chapters ``make book`` executes at a time: ``BNBOOK_CHAPTER_WORKERS``, default 2."""
    return max(1, int(os.environ.get("BNBOOK_CHAPTER_WORKERS", "2")))


def execute_stale(workers: int = 2, cache_path: Path = CACHE) -> dict[str, float]:
    """Execute the chapters the cache lacks, ``workers`` at a time, and cache their outputs."""
    stale = {Path(page).name for page in stale_chapters(cache_path)}
    if not stale:
        return {}
    with tempfile.TemporaryDirectory() as folder:
        paths = [p for p in export_notebooks(Path(folder)) if p.stem in stale]
        seconds = execute_all(paths, workers)
        cache_executed(Path(folder), cache_path, only=stale)
    return seconds


def dependency_hash(root: Path = ROOT) -> str:
    """16 hex digits of SHA-256 over what every chapter's results depend on besides its code:
    ``requirements.txt`` without its test tools (group :data:`booktools.pins.TESTS`: a new pytest
    changes no result), then each module of ``code/bnbook``, in name order."""
    digest = hashlib.sha256(without_group((root / "requirements.txt").read_text(), TESTS).encode())
    for module in sorted((root / "code" / "bnbook").glob("*.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()[:16]


def fresh_cache(cache_path: Path = CACHE, record: Path = DEPS_HASH, root: Path = ROOT) -> bool:
    """Keep the execution cache if it was filled with today's dependencies, else clear it.

    ``record`` holds the :func:`dependency_hash` the cache was filled with; a cache without
    one (restored from elsewhere, or from before records) cannot be trusted and is cleared
    too. Afterwards ``record`` holds today's hash. Returns whether the cache was cleared.
    """
    current = dependency_hash(root)
    try:
        kept = record.read_text().strip() == current
    except OSError:
        kept = False
    if not kept:
        shutil.rmtree(cache_path, ignore_errors=True)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(current + "\n")
    return not kept
