"""The book's chapters as _toc.yml lists them, and their export to notebooks.

Used by the tests and by ``make test``, which runs nbmake over the exported
``.ipynb`` files (nbmake collects only ``.ipynb`` and skips any path that
contains ``_build``, so the export goes to a temporary folder).

    python tests/book_layout.py DEST   # export every executable chapter to DEST
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import yaml

ROOT = Path(__file__).resolve().parents[1]


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


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DEST")
    for path in export_notebooks(Path(sys.argv[1])):
        print(f"exported {path}")
