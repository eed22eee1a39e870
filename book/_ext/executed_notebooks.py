"""Sphinx extension: offer every chapter's *executed* notebook for download.

sphinx-book-theme copies ``_build/jupyter_execute/<page>.ipynb`` to
``_sources/<page>.ipynb`` for its download button, but when MyST-NB takes a
chapter from the jupyter-cache (``execute_notebooks: cache``) it writes that
file without outputs. After the build, this extension replaces each copy with
the chapter merged with its cached outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jupytext
import nbformat
from jupyter_cache import get_cache
from sphinx.application import Sphinx


def _write_executed(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.name != "html":
        return
    cache = get_cache(app.env.mystnb_config.execution_cache_path)  # resolved by MyST-NB
    for docname in sorted(app.env.found_docs):
        target = Path(app.outdir, "_sources", f"{docname}.ipynb")
        source = Path(app.srcdir, f"{docname}.md")
        if not target.is_file() or not source.is_file():
            continue
        try:
            _, executed = cache.merge_match_into_notebook(jupytext.read(source))
        except KeyError:  # not in the cache: the theme's copy is all there is
            continue
        nbformat.write(executed, target)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("build-finished", _write_executed)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
