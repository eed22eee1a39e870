"""The book's pages as ``_toc.yml`` lists them, and the export of its chapters to notebooks.

A *chapter* here is a page that executes code: a MyST notebook (a jupytext
header with a kernelspec). Colab opens only ``.ipynb``, and nbmake collects
only ``.ipynb``, so chapters are exported: into ``book/`` beside each ``.md``
(``make notebooks``) or into a temporary folder for a test run.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[2]


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
    """The ``.md`` source of a page (``book/intro`` -> ``ROOT/book/intro.md``)."""
    return ROOT / f"{page}.md"


def is_notebook(path: Path) -> bool:
    """A MyST notebook: a jupytext header with a kernelspec."""
    return "kernelspec" in jupytext.read(path).metadata


def executable_chapters() -> list[str]:
    """The toc pages that are notebooks, i.e. that execute code when built."""
    return [page for page in toc_files() if is_notebook(source_of(page))]


def export_notebooks(dest: Path) -> list[Path]:
    """Write ``<stem>.ipynb`` for every executable chapter into ``dest``; return the paths."""
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


def chapter_source(stem: str) -> Path | None:
    """The ``.md`` of the executable chapter named ``stem`` (``concept`` -> ``ROOT/book/concept.md``),
    or ``None`` when no chapter of ``_toc.yml`` has that name."""
    for page in executable_chapters():
        if Path(page).name == stem:
            return source_of(page)
    return None


def cell_lines(source: Path) -> list[int]:
    """The line of ``source`` (1-based) where each cell of its notebook starts, in the notebook's
    order: a code cell's ```` ```{code-cell} ```` line, a Markdown cell's first line.

    The cells are those ``jupytext`` reads (and exports), so a cell's index in
    an exported notebook is its index here.
    """
    from jupytext.myst import myst_to_notebook

    notebook = myst_to_notebook(source.read_text(), add_source_map=True)
    return [line if cell.cell_type != "markdown" else line + 1  # Markdown's map is 0-based
            for cell, line in zip(notebook.cells, notebook.metadata["source_map"])]
