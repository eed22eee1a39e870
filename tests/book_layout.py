"""The book's chapters as _toc.yml lists them, their export to notebooks, their
execution two at a time, and the hand-over of executed notebooks to the
build's execution cache.

Jupyter Book executes the chapters one after the other; most of them keep
one core busy. ``make book`` therefore executes the chapters whose code has
no cached result first, two at a time, and hands them to the cache, so that
the build itself finds every chapter executed:

    python tests/book_layout.py execute      # stale chapters, 2 at a time, into the cache
    jupyter-book build .                      # every chapter is a cache hit

``make test`` executes every chapter once, under nbmake, then builds the site
from those results instead of executing every chapter a second time:

    python tests/book_layout.py export DEST  # every executable chapter -> DEST/<stem>.ipynb
    pytest DEST --nbmake --overwrite         # execute them; outputs written back
    python tests/book_layout.py cache DEST   # store the outputs in _build/.jupyter_cache
    jupyter-book build .                      # every chapter is a cache hit

nbmake collects only ``.ipynb`` files and skips any path containing ``_build``,
hence the export to a temporary folder. The cache is keyed by a hash of the
chapter's code cells, computed from the ``.md`` source exactly as the build
computes it, so a chapter whose code changed since is executed by the build.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

import jupytext
import nbclient
import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"
BENCHMARK = ROOT / "book" / "_static" / "benchmark.csv"
CELL_TIMEOUT_S = 300  # as execute.timeout in _config.yml


def _walk(entries: list[dict]) -> list[str]:
    files: list[str] = []
    for entry in entries:
        if "file" in entry:
            files.append(entry["file"])
        files += _walk(entry.get("sections", []))
        files += _walk(entry.get("chapters", []))
    return files


def toc_files() -> list[str]:
    """Every page of _toc.yml in reading order, as paths without suffix (``book/intro``)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + _walk(toc.get("parts", [])) + _walk(toc.get("chapters", []))


def source_of(page: str) -> Path:
    return ROOT / f"{page}.md"


def is_notebook(path: Path) -> bool:
    """A MyST notebook: a jupytext header with a kernelspec."""
    metadata = jupytext.read(path).metadata
    return "kernelspec" in metadata


def executable_chapters() -> list[str]:
    """The toc pages that are notebooks, i.e. that execute code when built."""
    return [page for page in toc_files() if is_notebook(source_of(page))]


def export_notebooks(dest: Path) -> list[Path]:
    """Write ``<stem>.ipynb`` for every executable chapter into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for page in executable_chapters():
        target = dest / f"{Path(page).name}.ipynb"
        notebook = jupytext.read(source_of(page))
        if not _same_cells(target, notebook):  # rewriting would only churn the random cell ids
            jupytext.write(notebook, target)
        paths.append(target)
    return paths


def _same_cells(path: Path, notebook: nbformat.NotebookNode) -> bool:
    """Whether the notebook at ``path`` has exactly these cells (type, source, metadata)."""
    if not path.is_file():
        return False
    existing = nbformat.read(path, as_version=4)

    def key(nb: nbformat.NotebookNode) -> list[tuple]:
        return [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]

    return key(existing) == key(notebook) and existing.metadata.get("kernelspec") == \
        notebook.metadata.get("kernelspec")


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
    stored = []
    for page in executable_chapters():
        if only is not None and Path(page).name not in only:
            continue
        source = source_of(page)
        notebook = jupytext.read(source)
        executed = nbformat.read(folder / f"{Path(page).name}.ipynb", as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        done = [c for c in executed.cells if c.cell_type == "code"]
        if [c.source for c in code] != [c.source for c in done]:
            raise ValueError(f"{folder}/{Path(page).name}.ipynb does not match {source}")
        for cell, result in zip(code, done):
            cell.outputs = result.outputs
            cell.execution_count = result.execution_count
        cache.cache_notebook_bundle(
            CacheBundleIn(notebook, str(source), data={"execution_seconds": _runtime(executed)}),
            check_validity=True, overwrite=True)
        stored.append(page)
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

    A cell that raises fails the whole run, as ``raise_on_error`` fails the build.
    """
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            record_timing=True,
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(notebook, path)
    return time.perf_counter() - start


def longest_first(paths: list[Path]) -> list[Path]:
    """``paths`` ordered by the time ``make bench`` last measured, longest first (unknown first),
    so that the longest chapter does not start last and leave one core idle."""
    measured: dict[str, float] = {}
    if BENCHMARK.is_file():
        with BENCHMARK.open() as handle:
            for row in csv.reader(handle):
                try:
                    measured[row[0]] = float(row[1])
                except (IndexError, ValueError):
                    continue
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


def main(argv: list[str]) -> None:
    if argv[1:2] == ["execute"] and len(argv) == 2:
        start = time.perf_counter()
        seconds = execute_stale(chapter_workers())
        for stem, s in seconds.items():
            print(f"executed {stem:28s} {s:6.1f} s")
        print(f"{len(seconds)} chapters executed in {time.perf_counter() - start:.0f} s"
              if seconds else "every chapter is in the execution cache")
        return
    if len(argv) != 3 or argv[1] not in ("export", "cache"):
        sys.exit(f"usage: {argv[0]} execute | export FOLDER | cache FOLDER")
    folder = Path(argv[2])
    if argv[1] == "export":
        for path in export_notebooks(folder):
            print(f"exported {path}")
    else:
        for page in cache_executed(folder):
            print(f"cached the executed {page}")


if __name__ == "__main__":
    main(sys.argv)
