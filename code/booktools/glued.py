"""The values a chapter glues, read from its executed notebook, and what changed between two runs.

Every number and verdict in the text reaches it through ``myst_nb.glue``; the
executed notebook keeps each glued value as a display output whose metadata
names it (``scrapbook.name``). Reading those outputs gives the chapter's
results as a flat ``{name: text}`` table, which two builds can be compared
on: after a refactoring (nothing but timings may change), or against the
newest libraries (what would a new TensorFlow change?).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jupytext
import nbformat
from jupyter_cache import get_cache

from booktools.layout import source_of

#: Glued names whose values are wall-clock measurements: they change from run to run.
TIMING = re.compile(r"(seconds|_s$|_ms|time|cost|overhead|speed|epoch_s|per_step|wall)", re.I)


def glued_values(notebook: nbformat.NotebookNode) -> dict[str, str]:
    """``{name: text/plain}`` of every value the notebook glued (figures: their kind)."""
    values: dict[str, str] = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            scrapbook = output.get("metadata", {}).get("scrapbook", {})
            name = scrapbook.get("name")
            if not name:
                continue
            # glue(..., display=False) prefixes every MIME type ("application/papermill.record/")
            prefix = scrapbook.get("mime_prefix", "")
            data = {key.removeprefix(prefix): value for key, value in output.get("data", {}).items()}
            values[name] = (data["text/plain"] if "image/png" not in data and "text/plain" in data
                            else "<figure>")
    return values


def glued_folder(folder: Path) -> dict[str, dict[str, str]]:
    """The glued values of every executed ``*.ipynb`` in ``folder``, per chapter stem."""
    return {path.stem: glued_values(nbformat.read(path, as_version=4))
            for path in sorted(Path(folder).glob("*.ipynb"))}


def cached_values(cache_path: Path, pages: list[str]) -> dict[str, dict[str, str]]:
    """The glued values of each page's executed notebook in the build's execution cache, per
    chapter stem; a page whose current code the cache lacks is left out."""
    cache = get_cache(str(cache_path))
    values = {}
    for page in pages:
        try:
            _, notebook = cache.merge_match_into_notebook(jupytext.read(source_of(page)))
        except KeyError:
            continue
        values[Path(page).name] = glued_values(notebook)
    return values


def changes(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]], *,
            timings: bool = False) -> list[tuple[str, str, str | None, str | None]]:
    """``(chapter, name, old, new)`` for every glued value that differs, appeared or vanished.

    Wall-clock values (names matching :data:`TIMING`) are left out unless ``timings``.
    """
    rows = []
    for chapter in sorted(set(old) | set(new)):
        before, after = old.get(chapter, {}), new.get(chapter, {})
        for name in sorted(set(before) | set(after)):
            if not timings and TIMING.search(name):
                continue
            if before.get(name) != after.get(name):
                rows.append((chapter, name, before.get(name), after.get(name)))
    return rows


def report(rows: list[tuple[str, str, str | None, str | None]]) -> str:
    """A Markdown table of the changes (verdicts first), or a line saying there are none."""
    if not rows:
        return "No glued value or verdict changed.\n"
    rows = sorted(rows, key=lambda r: (not r[1].endswith("verdict"), r[0], r[1]))
    lines = ["| chapter | glued value | before | after |", "|---|---|---|---|"]
    lines += [f"| {c} | {n} | {o if o is not None else '(absent)'} | {w if w is not None else '(absent)'} |"
              for c, n, o, w in rows]
    return "\n".join(lines) + "\n"


def save(values: dict[str, dict[str, str]], path: Path) -> None:
    path.write_text(json.dumps(values, indent=1, sort_keys=True))


def load(path: Path) -> dict[str, dict[str, str]]:
    return json.loads(Path(path).read_text())
