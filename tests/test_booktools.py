"""booktools: export of the chapters, execution two at a time, hand-over to the build's cache,
the order of execution from the build's own record of times, the cache's survival across builds
(``make fresh-cache``), the pinned requirements, glued values and ``make latest``, and the faults of
issue 18: a failing chapter is named, an interrupted build leaves no process behind, a damaged cache is
cleared."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn, NbValidityError

from booktools import bench, execute, glued, latest, layout, pins
from booktools.execute import cache_executed, execute_all, longest_first, stale_chapters
from booktools.failures import ChapterFailed
from booktools.layout import ROOT, cell_lines, chapter_source, executable_chapters, export_notebooks
from booktools.processes import Interrupted, alive, descendants, signals_ignored, signals_raise, stop


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


def _notebook(path: Path, *sources: str) -> Path:
    """A notebook of code cells at ``path``, for the python3 kernel."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_a_notebook_that_raises_fails_the_execution_and_is_named(tmp_path: Path) -> None:
    path = _notebook(tmp_path / "broken.ipynb", "x = 1", "raise ValueError('x')")
    with pytest.raises(ChapterFailed, match="ValueError") as failed:
        execute_all([path])
    assert str(failed.value).startswith(f"Notebook {path} failed in cell 1: ValueError: x\n")


# ----------------------------------------------------------------- a failing chapter is named (issue 18)
def _broken_chapter(folder: Path, stem: str = "status") -> tuple[Path, int]:
    """An exported copy of a quick chapter whose second code cell raises at once, and the
    line of that cell's ```{code-cell} fence in the chapter's .md, found by reading the .md."""
    path = next(p for p in export_notebooks(folder) if p.stem == stem)
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    code[1].source = "raise ValueError('injected into the chapter')"
    nbformat.write(notebook, path)
    source = chapter_source(stem)
    fences = [n for n, line in enumerate(source.read_text().splitlines(), 1)
              if line.startswith("```{code-cell}")]
    return path, fences[1]


def _expected_headline(stem: str, line: int) -> str:
    return (f"Chapter book/{stem}.md failed in the cell at line {line}: "
            "ValueError: injected into the chapter")


def test_cell_lines_point_at_each_code_cell_of_every_chapter() -> None:
    for page in executable_chapters():
        source = chapter_source(Path(page).name)
        lines = source.read_text().splitlines()
        cells = jupytext.read(source).cells
        starts = cell_lines(source)
        assert len(starts) == len(cells), page
        for cell, start in zip(cells, starts):
            if cell.cell_type == "code":
                assert lines[start - 1].startswith("```{code-cell}"), (page, start)


def test_make_book_names_the_failing_chapter_and_line_first(tmp_path: Path,
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    path, line = _broken_chapter(tmp_path)
    with pytest.raises(ChapterFailed) as failed:
        execute_all([path])
    report = str(failed.value)
    assert report.splitlines()[0] == _expected_headline("status", line)
    assert "injected into the chapter" in "\n".join(report.splitlines()[1:])  # then the traceback
    assert failed.value.headlines == [_expected_headline("status", line)]
    assert _expected_headline("status", line) in capfd.readouterr().err.splitlines()  # said at once


def test_make_bench_names_the_failing_chapter_and_line_first(tmp_path: Path) -> None:
    path, line = _broken_chapter(tmp_path)
    with pytest.raises(ChapterFailed) as failed:
        bench._run_in_child(path)
    assert str(failed.value).splitlines()[0] == _expected_headline("status", line)


def test_make_test_names_the_failing_chapter_and_line_first(tmp_path: Path) -> None:
    """nbmake, with the plugin tests/conftest.py registers: the chapter's .md and line come first."""
    path, line = _broken_chapter(tmp_path)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "booktools.nbmake_names", "--nbmake",
                          "-p", "no:cacheprovider", "-ra", str(path.name)],
                         cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "code"), "COLUMNS": "300"})
    assert run.returncode == 1, run.stdout + run.stderr
    expected = _expected_headline("status", line)
    lines = run.stdout.splitlines()
    first = next(i for i, text in enumerate(lines) if text.startswith("_") and "status.ipynb" in text)
    assert lines[first + 1] == expected, run.stdout  # right under the failure's title
    assert any(text.startswith("FAILED") and expected in text for text in lines), run.stdout


# ----------------------------------------------------------------- Ctrl-C stops everything (issue 18)
@pytest.mark.parametrize("signum, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c", "kill"])
def test_an_interrupted_build_stops_its_workers_and_kernels(tmp_path: Path, signum: int,
                                                            to_group: bool) -> None:
    """Ctrl-C in a terminal (SIGINT to the whole process group) or ``kill`` (SIGTERM to the
    build's process alone) while two chapters execute: no worker or kernel survives, and the
    build exits with the signal's code and one line that says it was interrupted."""
    markers = [tmp_path / f"kernel{i}" for i in range(2)]
    pids: list[int] = []
    paths = [_notebook(tmp_path / f"slow{i}.ipynb",
                       f"import os, pathlib\npathlib.Path({str(m)!r}).write_text("
                       "f'{os.getpid()} {os.getppid()}')",
                       "import time\ntime.sleep(300)")
             for i, m in enumerate(markers)]
    script = ("import sys; from pathlib import Path; from booktools.__main__ import guarded; "
              "from booktools.execute import execute_all; "
              f"guarded('execute', lambda: execute_all([Path(p) for p in sys.argv[1:]], 2))")
    build = subprocess.Popen([sys.executable, "-c", script, *map(str, paths)],
                             env={**os.environ, "PYTHONPATH": str(ROOT / "code")},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not all(m.exists() and m.read_text() for m in markers):
            assert build.poll() is None and time.monotonic() < deadline, build.communicate()
            time.sleep(0.2)
        pids += [int(pid) for m in markers for pid in m.read_text().split()]  # kernel, worker
        if to_group:
            os.killpg(build.pid, signum)
        else:
            build.send_signal(signum)
        _, err = build.communicate(timeout=60)
        survivors = [pid for pid in pids if alive(pid)]
    finally:  # whatever happened, leave nothing running (kernels have sessions of their own)
        for pid in [build.pid, *pids]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert build.returncode == 128 + signum, err
    assert err.strip().splitlines()[-1] == (
        f"booktools execute: the build was interrupted ({signal.Signals(signum).name}); "
        "its chapter workers and their kernels were stopped")
    assert not survivors, "a worker or kernel survived"


# ----------------------------------------------------------------- a damaged cache is cleared (issue 18)
def _cached_without_running(cache: Path, stem: str) -> None:
    """Put the chapter ``stem`` in the cache as if executed (execution counts, no outputs)."""
    notebook = jupytext.read(chapter_source(stem))
    for count, cell in enumerate((c for c in notebook.cells if c.cell_type == "code"), 1):
        cell.execution_count = count
    get_cache(str(cache)).cache_notebook_bundle(CacheBundleIn(notebook, "x"), overwrite=True)


def test_a_cache_database_of_garbage_is_cleared_and_said_once(tmp_path: Path,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    _cached_without_running(cache, "status")
    assert "book/status" not in stale_chapters(cache)
    (cache / "global.db").write_bytes(b"this is not a database" * 100)
    capfd.readouterr()
    assert stale_chapters(cache) == executable_chapters()  # everything executes again
    said = capfd.readouterr().err
    assert said.count("was damaged") == 1 and "cleared" in said and str(cache) in said
    assert stale_chapters(cache) == executable_chapters()  # a sound, empty cache now
    assert capfd.readouterr().err == ""
    _cached_without_running(cache, "status")  # and it caches again
    assert "book/status" not in stale_chapters(cache)


def test_a_damaged_cached_notebook_is_removed_and_its_chapter_runs_again(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    _cached_without_running(cache, "status")
    [executed] = (cache / "executed").glob("*/base.ipynb")
    executed.write_text("{ not json")
    capfd.readouterr()
    assert "book/status" in stale_chapters(cache)
    assert "book/status.md was damaged" in capfd.readouterr().err
    assert "book/status" in stale_chapters(cache)  # removed, not merely reported
    assert capfd.readouterr().err == ""


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


# --- make fresh-cache: the execution cache survives unchanged dependencies -----------------

def _project(root: Path, requirements: str = "numpy==2.0\n# The tests.\npytest==9.0\n",
             module: str = "x = 1\n") -> Path:
    """A minimal project: requirements.txt, code/bnbook/a.py, and an execution cache."""
    (root / "code" / "bnbook").mkdir(parents=True, exist_ok=True)
    (root / "requirements.txt").write_text(requirements)
    (root / "code" / "bnbook" / "a.py").write_text(module)
    (root / "_build" / ".jupyter_cache").mkdir(parents=True, exist_ok=True)
    (root / "_build" / ".jupyter_cache" / "entry").write_text("executed")
    return root


def _fresh(root: Path) -> bool:
    return execute.fresh_cache(root / "_build" / ".jupyter_cache", root / "_build" / ".deps-hash", root)


def test_fresh_cache_clears_a_cache_without_a_record_of_its_dependencies(tmp_path: Path) -> None:
    root = _project(tmp_path)
    assert _fresh(root)  # restored from elsewhere, no hash: cannot be trusted
    assert not (root / "_build" / ".jupyter_cache").exists()
    assert (root / "_build" / ".deps-hash").read_text().strip() == execute.dependency_hash(root)


def test_fresh_cache_keeps_the_cache_while_the_dependencies_are_unchanged(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _fresh(root)
    _project(root)  # the build fills the cache again
    assert not _fresh(root)
    assert (root / "_build" / ".jupyter_cache" / "entry").is_file()
    _project(root, requirements="numpy==2.0\n# The tests.\npytest==9.1\n")  # a new test tool only
    assert not _fresh(root)


def test_a_cache_cleared_and_refilled_is_kept(tmp_path: Path) -> None:
    root = _project(tmp_path)                       # make bench empties the cache, then fills it
    execute.clear_cache(root / "_build" / ".jupyter_cache", root / "_build" / ".deps-hash", root)
    assert not (root / "_build" / ".jupyter_cache").exists()
    _project(root)
    assert not _fresh(root)                         # the next make book keeps what it executed
    assert (root / "_build" / ".jupyter_cache" / "entry").is_file()


@pytest.mark.parametrize("change", [{"requirements": "numpy==2.1\n# The tests.\npytest==9.0\n"},
                                    {"module": "x = 2\n"}])
def test_fresh_cache_clears_the_cache_when_the_dependencies_changed(tmp_path: Path,
                                                                   change: dict[str, str]) -> None:
    root = _project(tmp_path)
    _fresh(root)
    _project(root, **change)
    assert _fresh(root)
    assert not (root / "_build" / ".jupyter_cache").exists()


# --- requirements: Binder's copy, and the pins make latest lifts ---------------------------

REQUIREMENTS_TEXT = """# The book.
jupyter-book==1.0.4.post1
# The computations.
tensorflow-cpu==2.21.0
Keras==3.15.1  # a comment
# The tests.
pytest==9.2.0
"""


def test_read_pins_requires_exact_pins() -> None:
    assert pins.read_pins(REQUIREMENTS_TEXT)["keras"] == "3.15.1"
    with pytest.raises(ValueError, match="line 2"):
        pins.read_pins("numpy==2.0\nscipy>=1.0\n")


def test_disagreements_name_every_pin_that_differs_or_is_missing() -> None:
    pinned = pins.read_pins(REQUIREMENTS_TEXT)
    assert pins.disagreements({"keras": "3.15.1"}, pinned) == []
    assert pins.disagreements({"keras": "3.15.0", "scipy": "1.0"}, pinned) == [
        "keras==3.15.0, but requirements.txt pins keras==3.15.1",
        "scipy==1.0 is not in requirements.txt"]


def test_relaxed_lifts_only_the_computations() -> None:
    text = pins.relaxed(REQUIREMENTS_TEXT)
    assert "\ntensorflow-cpu\nKeras\n" in text
    assert "jupyter-book==1.0.4.post1" in text and "pytest==9.2.0" in text
    assert pins.group(REQUIREMENTS_TEXT) == {"tensorflow-cpu": "2.21.0", "keras": "3.15.1"}
    assert pins.without_group(REQUIREMENTS_TEXT).endswith("Keras==3.15.1  # a comment\n")
    with pytest.raises(ValueError, match="no pinned package"):
        pins.relaxed(REQUIREMENTS_TEXT, heading="# Absent.")


def test_the_computations_make_latest_lifts_are_the_book_s_libraries() -> None:
    lifted = pins.group(pins.REQUIREMENTS.read_text())
    assert {"tensorflow-cpu", "keras", "numpy"} <= set(lifted)
    assert not {"jupyter-book", "pytest"} & set(lifted)


# --- glued values, and the report of what changed ---------------------------------------------

def _glue_output(name: str, text: str, display: bool = False) -> nbformat.NotebookNode:
    """A display output as myst_nb.glue writes it (display=False prefixes the MIME types)."""
    prefix = "" if display else "application/papermill.record/"
    return nbformat.v4.new_output("display_data", data={f"{prefix}text/plain": text},
                                  metadata={"scrapbook": {"name": name, "mime_prefix": prefix}})


def test_glued_values_reads_every_glued_value_and_figure() -> None:
    cell = nbformat.v4.new_code_cell("glue(...)")
    cell.outputs = [_glue_output("a_verdict", "'supported'"), _glue_output("a_n", "5", display=True),
                    nbformat.v4.new_output("display_data", data={"text/plain": "not glued"}),
                    nbformat.v4.new_output("display_data", metadata={"scrapbook": {
                        "name": "a_fig", "mime_prefix": ""}},
                        data={"image/png": "iVBOR", "text/plain": "<Figure>"})]
    values = glued.glued_values(nbformat.v4.new_notebook(cells=[cell]))
    assert values == {"a_verdict": "'supported'", "a_n": "5", "a_fig": "<figure>"}


def test_changes_and_report_put_verdicts_first_and_leave_out_wall_clock_values() -> None:
    old = {"ch": {"ch_x_verdict": "'supported'", "ch_x_effect": "'+0.1'", "ch_seconds": "3.0",
                  "ch_gone": "1"}}
    new = {"ch": {"ch_x_verdict": "'inconclusive'", "ch_x_effect": "'+0.1'", "ch_seconds": "4.0",
                  "ch_new": "2"}}
    rows = glued.changes(old, new)
    assert [r[1] for r in rows] == ["ch_gone", "ch_new", "ch_x_verdict"]
    table = glued.report(rows).splitlines()
    assert table[2] == "| ch | ch_x_verdict | 'supported' | 'inconclusive' |"
    assert "| ch | ch_gone | 1 | (absent) |" in table
    assert glued.report([]) == "No glued value or verdict changed.\n"


def test_cached_values_reads_the_executed_chapter_from_the_build_s_cache(tmp_path: Path) -> None:
    notebook = jupytext.read(layout.source_of("book/status"))
    next(c for c in notebook.cells if c.cell_type == "code").outputs = [_glue_output("k", "7")]
    get_cache(str(tmp_path)).cache_notebook_bundle(
        CacheBundleIn(notebook, str(layout.source_of("book/status"))), check_validity=False)
    assert glued.cached_values(tmp_path, ["book/status", "book/concept"]) == {"status": {"k": "7"}}


# --- make latest ---------------------------------------------------------------------------

def test_latest_keeps_going_past_a_chapter_that_raises(tmp_path: Path) -> None:
    paths = []
    for stem, source in [("fails", "raise ValueError('a check no longer holds')"),
                         ("runs", "print('fine')")]:
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        nbformat.write(notebook, tmp_path / f"{stem}.ipynb")
        paths.append(tmp_path / f"{stem}.ipynb")
    errors = latest.execute_keeping_going(paths)
    assert errors["runs"] is None
    assert "a check no longer holds" in errors["fails"]
    failed = nbformat.read(tmp_path / "fails.ipynb", as_version=4)
    assert failed.cells[0].outputs[0].output_type == "error"  # written although it raised


def test_latest_summary_names_new_versions_failures_and_changes() -> None:
    text = latest.summary({"keras": "3.15.1", "numpy": "2.4.6"}, {"keras": "3.16.0", "numpy": "2.4.6"},
                          {"a": None, "b": "AssertionError: x"},
                          [("a", "a_verdict", "'supported'", "'inconclusive'")])
    assert "| keras | 3.15.1 | 3.16.0 (new) |" in text and "| numpy | 2.4.6 | 2.4.6 |" in text
    assert "1 raised" in text and "- `b`: AssertionError: x" in text
    assert "| a | a_verdict | 'supported' | 'inconclusive' |" in text
def test_stop_ends_a_process_tree_even_one_that_ignores_sigterm() -> None:
    child = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_DFL); "
             "print('child', flush=True); time.sleep(60)")
    stubborn = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "child"  # both run, SIGTERM set as they want
        tree = descendants(os.getpid())
        assert tree[0] == parent.pid and len(tree) == 2 and all(alive(p) for p in tree)
        killed = stop(tree, grace_s=0.5)
        assert killed == [parent.pid]  # the child went at SIGTERM, the parent needed SIGKILL
        parent.wait(timeout=10)
        assert not any(alive(p) for p in tree)
    finally:
        for pid in descendants(os.getpid()):
            os.kill(pid, signal.SIGKILL)


def test_signals_raise_then_are_ignored_then_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as caught, signals_raise():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert caught.value.exit_code == 143 and caught.value.name == "SIGTERM"
    with signals_ignored():
        os.kill(os.getpid(), signal.SIGINT)  # nothing happens
        time.sleep(0.1)
    assert signal.getsignal(signal.SIGTERM) == before
