"""booktools: export of the chapters, execution two at a time, hand-over to the build's cache,
and the order of execution from the build's own record of times."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbclient
import nbformat
import pytest
from jupyter_cache.base import NbValidityError

from booktools import execute
from booktools.execute import cache_executed, execute_all, longest_first, stale_chapters
from booktools.layout import executable_chapters, export_notebooks


def test_export_writes_one_notebook_per_chapter(tmp_path: Path) -> None:
    paths = export_notebooks(tmp_path)
    assert sorted(p.stem for p in paths) == sorted(Path(c).name for c in executable_chapters())
    for path in paths:
        notebook = jupytext.read(path)
        assert notebook.cells and notebook.metadata["kernelspec"]["name"] == "python3"


def test_cache_hand_over_refuses_unexecuted_or_edited_notebooks(tmp_path: Path) -> None:

    export_notebooks(tmp_path)
    with pytest.raises(NbValidityError):  # exported, never executed
        cache_executed(tmp_path, cache_path=tmp_path / "cache")
    path = tmp_path / f"{Path(executable_chapters()[0]).name}.ipynb"  # the first one checked
    notebook = nbformat.read(path, as_version=4)
    next(c for c in notebook.cells if c.cell_type == "code").source += "\nprint('edited')"
    nbformat.write(notebook, path)
    with pytest.raises(ValueError, match="does not match"):
        cache_executed(tmp_path, cache_path=tmp_path / "cache")


def test_make_book_executes_only_stale_chapters_and_caches_them(tmp_path: Path) -> None:

    cache = tmp_path / "cache"
    pages = executable_chapters()
    assert stale_chapters(cache) == pages  # empty cache: everything is stale
    status = next(p for p in export_notebooks(tmp_path) if p.stem == "status")  # the quickest
    seconds = execute_all([status])
    assert seconds["status"] > 0
    cache_executed(tmp_path, cache, only={"status"})
    assert stale_chapters(cache) == [p for p in pages if Path(p).name != "status"]


def test_a_chapter_that_raises_fails_the_execution(tmp_path: Path) -> None:

    path = tmp_path / "broken.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise ValueError('x')")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="ValueError"):
        execute_all([path])


def test_chapters_run_longest_first_by_the_build_s_own_record(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The order comes from the last execution's times in _build/, not from a committed benchmark."""
    record = tmp_path / ".execution-seconds.json"
    monkeypatch.setattr(execute, "SECONDS", record)
    paths = [Path("short.ipynb"), Path("long.ipynb"), Path("new.ipynb")]
    assert [p.stem for p in longest_first(paths)] == ["short", "long", "new"]  # no record: as given
    execute.record_seconds({"short": 5.0, "long": 90.0})
    assert [p.stem for p in longest_first(paths)] == ["new", "long", "short"]
    execute.record_seconds({"short": 200.0})   # a later execution updates one chapter
    assert [p.stem for p in longest_first(paths)] == ["new", "short", "long"]
    record.write_text("not json")
    assert execute.recorded_seconds() == {}    # a damaged record only loses the order
