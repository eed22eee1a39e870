"""The book's chapters as _toc.yml lists them, their export to notebooks, and
the hand-over of executed notebooks to the build's execution cache.

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

import sys
from pathlib import Path

from datetime import datetime

import jupytext
import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"


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
        jupytext.write(jupytext.read(source_of(page)), target)
        paths.append(target)
    return paths


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


def cache_executed(folder: Path, cache_path: Path = CACHE) -> list[str]:
    """Store the executed ``folder/<stem>.ipynb`` of every chapter in the build's cache.

    Outputs are merged into the chapter as read from its ``.md`` source, so the
    cache key is the one the build computes. A notebook whose code cells do not
    match its source, or that was not executed top to bottom, is refused.
    """
    cache = get_cache(str(cache_path))
    stored = []
    for page in executable_chapters():
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


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[1] not in ("export", "cache"):
        sys.exit(f"usage: {argv[0]} export|cache FOLDER")
    folder = Path(argv[2])
    if argv[1] == "export":
        for path in export_notebooks(folder):
            print(f"exported {path}")
    else:
        for page in cache_executed(folder):
            print(f"cached the executed {page}")


if __name__ == "__main__":
    main(sys.argv)
