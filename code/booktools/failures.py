"""A failing chapter says which it is: the first line of the failure names its ``.md`` and the cell's line.

With a dozen chapters executing two at a time, a traceback alone does not say
which chapter raised. Every way the book executes a chapter reports a failure
the same way, its first line first, then the traceback::

    Chapter book/concept.md failed in the cell at line 42: ValueError: x
    <the cell's traceback>

* ``make book`` and ``make bench``: :func:`booktools.execute.execute_notebook`
  raises :class:`ChapterFailed` with that report;
* ``make test`` and ``make rounding`` (nbmake): the pytest plugin
  :mod:`booktools.nbmake_names`, which
  ``tests/conftest.py`` registers, puts the same line above nbmake's report.

A chapter runs as ``<stem>.ipynb`` exported from ``book/<stem>.md``
(:mod:`booktools.layout`); the export has the cells of the ``.md`` in order, so
the failing cell's index gives its line.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from booktools.layout import ROOT, cell_lines, chapter_source


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the colours of a kernel's traceback


class ChapterFailed(RuntimeError):
    """One or more chapters raised (or timed out, or their kernel died).

    The message is :func:`report`'s, one per chapter, each beginning with its
    :func:`headline`; ``headlines`` lists those first lines. ``executed``:
    seconds per chapter that did execute, when several ran; ``reported``: the
    reports were already written to stderr.
    """

    def __init__(self, message: str, executed: dict[str, float] | None = None,
                 reported: bool = False, headlines: list[str] | None = None) -> None:
        super().__init__(message)
        self.executed = dict(executed or {})
        self.reported = reported
        self.headlines = headlines or message.splitlines()[:1]  # each chapter's first line


def failing_cell(notebook: nbformat.NotebookNode) -> int | None:
    """Index (among all cells) of the cell that failed: the first code cell with an error
    output, else the first code cell that started but never finished (a timeout, a dead
    kernel); ``None`` when no cell failed."""
    code = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    for i, cell in code:
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i
    for i, cell in code:
        execution = cell.get("metadata", {}).get("execution", {})
        if execution and "shell.execute_reply" not in execution:
            return i
    return None


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (as a reader types it)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def headline(notebook_path: Path, cell_index: int | None, summary: str) -> str:
    """The failure's first line: the chapter's ``.md`` (the notebook itself when it is not a
    chapter), the line of the failing cell where known, and the error's one-line summary."""
    source = chapter_source(Path(notebook_path).stem)
    where = f"Chapter {_shown(source)}" if source else f"Notebook {_shown(Path(notebook_path))}"
    if cell_index is not None:
        if source is not None:
            lines = cell_lines(source)
            if cell_index < len(lines):
                where += f" failed in the cell at line {lines[cell_index]}"
            else:
                where += f" failed in cell {cell_index}"
        else:
            where += f" failed in cell {cell_index}"
    else:
        where += " failed"
    summary = ANSI.sub("", summary).strip()
    return f"{where}: {summary or 'error'}"


def _summary(notebook: nbformat.NotebookNode, cell_index: int | None, error: BaseException) -> str:
    """``ename: evalue`` of the failing cell's error output, else the exception's first line."""
    if cell_index is not None:
        for output in notebook.cells[cell_index].get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
    first = str(error).strip().splitlines()
    return f"{type(error).__name__}: {first[0] if first else ''}"


def report(notebook_path: Path, notebook: nbformat.NotebookNode, error: BaseException) -> str:
    """The whole report of a chapter that raised while ``notebook`` executed: :func:`headline`,
    then the traceback nbclient gives (the cell's source and the kernel's traceback)."""
    index = failing_cell(notebook)
    return f"{headline(notebook_path, index, _summary(notebook, index, error))}\n{error}"
