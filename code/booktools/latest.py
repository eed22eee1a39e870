"""``make latest``: the book executed with the newest releases of its computational dependencies,
compared glued value by glued value with the pinned build.

Pins keep a build reproducible, and also hide the day a new TensorFlow or Keras changes a
verdict. ``make latest`` first completes the pinned build's execution cache (``.venv``), then
upgrades ``.venv-latest`` to ``requirements.txt`` with the computations' pins lifted
(:func:`booktools.pins.relaxed`) and, in it, runs :func:`main`: every chapter (or those named)
executed, two at a time, past any chapter that raises (a check that no longer holds), and into
``OUT``:

* ``notebooks/<stem>.ipynb``, the executed chapters;
* ``glued-pinned.json`` and ``glued-latest.json``, every glued value per chapter;
* ``report.md``: the versions, the chapters that raised, and every glued value and verdict that
  changed against the pinned build (wall-clock values left out: they change from run to run).

    python -m booktools latest OUT [STEM ...]     # exit status 1 when a chapter raised
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from booktools import glued
from booktools.execute import CACHE, chapter_workers, execute_notebook, longest_first
from booktools.layout import executable_chapters, export_notebooks
from booktools.pins import REQUIREMENTS, group


def _run(path: Path) -> str | None:
    """Execute one notebook; ``None`` when it ran through, else the error's last line."""
    try:
        execute_notebook(path)
    except Exception as error:  # noqa: BLE001 -- any failure of a chapter is reported, not raised
        lines = [line for line in str(error).splitlines() if line.strip()]
        return lines[-1] if lines else type(error).__name__
    return None


def execute_keeping_going(paths: list[Path], workers: int = 2) -> dict[str, str | None]:
    """Execute the notebooks ``workers`` at a time, longest first, each to its end or its first
    error; return ``{stem: None, or the error's last line}``."""
    paths = longest_first(paths)
    with ProcessPoolExecutor(max_workers=min(workers, len(paths)) or 1) as pool:
        return dict(zip([p.stem for p in paths], pool.map(_run, paths)))


def installed_versions(names: list[str]) -> dict[str, str]:
    """``{name: version installed here}`` ("not installed" where missing)."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def summary(pinned: dict[str, str], latest: dict[str, str], errors: dict[str, str | None],
            rows: list[tuple[str, str, str | None, str | None]]) -> str:
    """The Markdown report: versions pinned and newest, chapters that raised, changed values."""
    lines = ["# The book with the newest releases", "",
             "| package | pinned | newest |", "|---|---|---|"]
    lines += [f"| {name} | {pinned[name]} | {latest.get(name, '?')}"
              f"{'' if latest.get(name) == pinned[name] else ' (new)'} |" for name in pinned]
    failed = {stem: error for stem, error in errors.items() if error}
    lines += ["", f"{len(errors)} chapters executed; "
              + (f"{len(failed)} raised (a check no longer holds, or an error):"
                 if failed else "every one ran through.")]
    lines += [f"- `{stem}`: {error}" for stem, error in sorted(failed.items())]
    lines += ["", "## Glued values and verdicts that changed against the pinned build", "",
              glued.report(rows).rstrip(), "",
              "Wall-clock values are left out: they change from run to run. A chapter that raised "
              "glued nothing after its error: its later values show as absent."]
    return "\n".join(lines) + "\n"


def main(out: Path, stems: list[str]) -> int:
    """Execute the chapters into ``out``, compare, write the report; 1 if a chapter raised."""
    notebooks = out / "notebooks"
    paths = export_notebooks(notebooks)
    unknown = set(stems) - {p.stem for p in paths}
    if unknown:
        raise SystemExit(f"no chapter named {', '.join(sorted(unknown))}; "
                         f"chapters: {', '.join(p.stem for p in paths)}")
    if stems:
        paths = [p for p in paths if p.stem in stems]
    errors = execute_keeping_going(paths, chapter_workers())
    before = glued.cached_values(CACHE, [page for page in executable_chapters()
                                         if Path(page).name in errors])
    after = {stem: values for stem, values in glued.glued_folder(notebooks).items()
             if stem in errors}
    glued.save(before, out / "glued-pinned.json")
    glued.save(after, out / "glued-latest.json")
    pins = group(REQUIREMENTS.read_text())
    text = summary(pins, installed_versions(list(pins)), errors, glued.changes(before, after))
    (out / "report.md").write_text(text)
    print(text)
    return 1 if any(errors.values()) else 0
