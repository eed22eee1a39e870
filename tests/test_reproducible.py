"""Same machine, same code: executing a chapter twice gives the same glued numbers."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbclient
import nbformat

from book_layout import source_of

#: A chapter that trains networks (so that seeding matters) and runs quickly.
REPRODUCED = "book/stable_distributions"


def glued_values(notebook: nbformat.NotebookNode) -> dict[str, str]:
    """Every ``glue``d value's text representation, by key (figures left out)."""
    values = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            key = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if key and "image/png" not in output.get("data", {}):
                values[key] = output["data"]["text/plain"]
    return values


def execute(tmp_path: Path) -> dict[str, str]:
    notebook = jupytext.read(source_of(REPRODUCED))
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    return glued_values(notebook)


def test_two_executions_glue_identical_values(tmp_path: Path) -> None:
    first, second = execute(tmp_path), execute(tmp_path)
    assert len(first) >= 5, "the chapter should glue its results"
    assert first == second
