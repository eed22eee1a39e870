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

What can go wrong ends cleanly:

* a chapter that raises is reported with its ``.md`` and the cell's line first
  (:mod:`booktools.failures`); the other chapters still run, and those that
  succeeded are cached;
* SIGINT (Ctrl-C) or SIGTERM stops the worker processes and their kernels and
  raises :class:`booktools.processes.Interrupted`;
* a damaged cache (a ``global.db`` that is not a database, a cached notebook
  that cannot be read) is cleared, said once, and its chapters execute again:
  a cache is never the reason a build fails (:func:`open_cache`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from datetime import datetime
from pathlib import Path

import jupytext
import nbclient
import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn, JupyterCacheAbstract
from jupyter_cache.cache.db import NbCacheRecord
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from booktools import failures
from booktools.failures import ChapterFailed
from booktools.layout import ROOT, executable_chapters, export_notebooks, source_of
from booktools.pins import TESTS, without_group
from booktools.processes import Interrupted, descendants, signals_ignored, signals_raise, stop

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
    cache = open_cache(cache_path)
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


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _unreadable(database: Path) -> str | None:
    """Why the cache's database cannot be read (``None`` when it can)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            db.execute("SELECT count(*) FROM nbcache").fetchone()
    except sqlite3.Error as error:
        return str(error)
    return None if check == "ok" else f"quick_check: {check}"


def open_cache(cache_path: Path = CACHE) -> JupyterCacheAbstract:
    """The build's execution cache; a damaged one is cleared first, with one line that says so.

    Damaged means its database (``global.db``) cannot be read: garbage, a
    truncated file, another file in its place. Clearing loses only executed
    outputs, which the build computes again.
    """
    database = cache_path / "global.db"
    why = _unreadable(database) if database.exists() else None
    if why is not None:
        shutil.rmtree(cache_path, ignore_errors=True)
        _say(f"The execution cache {cache_path} was damaged ({why}) and has been cleared; "
             "its chapters execute again.")
    return get_cache(str(cache_path))


def stale_chapters(cache_path: Path = CACHE) -> list[str]:
    """The executable chapters whose current code has no readable executed notebook in the cache.

    A cached record whose notebook cannot be read (deleted, damaged) is removed,
    with one line that says so, and its chapter counts as stale.
    """
    cache = open_cache(cache_path)
    stale = []
    for page in executable_chapters():
        try:
            record = cache.match_cache_notebook(jupytext.read(source_of(page)))
        except KeyError:
            stale.append(page)
            continue
        try:
            cache.get_cache_bundle(record.pk)
        except Exception as error:  # noqa: BLE001 - anything unreadable is damage
            shutil.rmtree(Path(cache.path, "executed", record.hashkey), ignore_errors=True)
            NbCacheRecord.remove_record(record.pk, cache.db)
            _say(f"The execution cache's notebook of {source_of(page).relative_to(ROOT)} was damaged "
                 f"({type(error).__name__}) and has been removed; the chapter executes again.")
            stale.append(page)
    return stale


#: The notebooks this process executes right now (a worker: one), for :func:`_stop_kernels`.
_RUNNING: list[nbclient.NotebookClient] = []


def execute_notebook(path: Path) -> float:
    """Execute ``path`` in a fresh kernel and write the outputs back; return the seconds.

    A cell that raises (or times out, or kills the kernel) fails the whole run,
    as ``raise_on_error`` fails the build: :class:`ChapterFailed`, whose first
    line names the chapter's ``.md`` and the cell's line, then the traceback.
    The outputs of the cells before it are written all the same.
    """
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     record_timing=True,
                                     resources={"metadata": {"path": str(path.parent)}})
    _RUNNING.append(client)
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
        raise ChapterFailed(failures.report(path, notebook, error)) from None
    finally:
        _RUNNING.remove(client)
        nbformat.write(notebook, path)
    return time.perf_counter() - start


def _stop_kernels(signum: int, frame: object) -> None:
    """A worker's SIGTERM: stop its kernels (and what they started), remove their
    connection files, and exit at once."""
    for client in list(_RUNNING):
        connection_file = getattr(getattr(client, "km", None), "connection_file", None)
        if connection_file:
            Path(connection_file).unlink(missing_ok=True)
    stop(descendants(os.getpid()), grace_s=2.0)
    os._exit(128 + signum)


def _worker_signals() -> None:
    """A worker ignores SIGINT (Ctrl-C reaches the whole process group: the build's process
    decides) and stops its kernels on SIGTERM, which the build's process sends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_kernels)


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
    """Execute the notebooks ``workers`` at a time, longest first; return seconds per stem.

    A chapter that fails does not stop the others: its report is written to
    stderr when it fails, and once all have run, :class:`ChapterFailed` is
    raised with every report (``reported``: already written); its ``executed``
    holds the seconds of those that succeeded. SIGINT or SIGTERM stops the workers and their kernels and raises
    :class:`Interrupted`.
    """
    paths = longest_first(paths)
    workers = min(workers, len(paths)) or 1
    seconds: dict[str, float] = {}
    reports: list[str] = []
    with signals_raise():
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_signals)
        try:
            pending: dict[Future, Path] = {pool.submit(execute_notebook, p): p for p in paths}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    path = pending.pop(future)
                    try:
                        seconds[path.stem] = future.result()
                    except ChapterFailed as error:
                        reports.append(str(error))
                        _say(str(error))
        except Interrupted:
            with signals_ignored():  # a second Ctrl-C must not cut the clean-up short
                stop(descendants(os.getpid()))
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    if reports:
        raise ChapterFailed("\n\n".join(reports), executed=seconds, reported=True,
                            headlines=[r.splitlines()[0] for r in reports])
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
        try:
            seconds = execute_all(paths, workers)
        except ChapterFailed as error:  # keep what did execute: the next build runs only the rest
            cache_executed(Path(folder), cache_path, only=set(error.executed))
            raise
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
    try:
        kept = record.read_text().strip() == dependency_hash(root)
    except OSError:
        kept = False
    if not kept:
        clear_cache(cache_path, record, root)
    return not kept


def clear_cache(cache_path: Path = CACHE, record: Path = DEPS_HASH, root: Path = ROOT) -> None:
    """Empty the execution cache and record the dependencies it is about to be filled with.

    Whoever fills an empty cache (``make book``, ``make bench``) clears it here, so that the
    next :func:`fresh_cache` keeps what they executed.
    """
    shutil.rmtree(cache_path, ignore_errors=True)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(dependency_hash(root) + "\n")
