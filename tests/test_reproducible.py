"""Same machine, same code: executing a chapter twice gives the same glued numbers."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbclient

from booktools.glued import TIMING, glued_values
from booktools.layout import source_of

#: A chapter that trains networks (so that seeding matters) and runs quickly.
REPRODUCED = "book/stable_distributions"


def execute(tmp_path: Path) -> dict[str, str]:
    notebook = jupytext.read(source_of(REPRODUCED))
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    return glued_values(notebook)


def test_two_executions_glue_identical_values(tmp_path: Path) -> None:
    first, second = execute(tmp_path), execute(tmp_path)
    # every glued number and verdict; wall-clock values may differ, figures are not compared
    results = {key for key, value in first.items() if not TIMING.search(key) and value != "<figure>"}
    assert len(results) >= 5, "the chapter should glue its results"
    assert {k: first[k] for k in results} == {k: second[k] for k in results}
