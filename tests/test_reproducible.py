"""Same machine, same code: executing a chapter twice gives the same glued numbers."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbclient
import nbformat

from booktools.layout import source_of

#: A chapter that trains networks (so that seeding matters) and runs quickly.
REPRODUCED = "book/stable_distributions"
#: Wall-clock measurements, the only glued values allowed to differ between runs.
TIMING = re.compile(r"second|time")


def glued_values(notebook: nbformat.NotebookNode) -> dict[str, str]:
    """Every ``glue``d value's text representation, by key (figures left out)."""
    values = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            key = output.get("metadata", {}).get("scrapbook", {}).get("name")
            # glue(..., display=False) prefixes each MIME type, e.g. ".../text/plain"
            data = {mime.rsplit("/", 2)[-2] + "/" + mime.rsplit("/", 1)[-1]: value
                    for mime, value in output.get("data", {}).items()}
            if key and "image/png" not in data and "text/plain" in data:
                values[key] = data["text/plain"]
    return values


def execute(tmp_path: Path) -> dict[str, str]:
    notebook = jupytext.read(source_of(REPRODUCED))
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    return glued_values(notebook)


def test_two_executions_glue_identical_values(tmp_path: Path) -> None:
    first, second = execute(tmp_path), execute(tmp_path)
    results = {key for key in first if not TIMING.search(key)}
    assert len(results) >= 5, "the chapter should glue its results"
    assert {k: first[k] for k in results} == {k: second[k] for k in results}
