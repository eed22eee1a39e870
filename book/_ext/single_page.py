"""Sphinx extension: the whole book on one page (``singlehtml``), which ``make pdf`` prints.

Sphinx gives a translator the node handlers registered for its builder's name *or*, if there are
none, for its format ("html"): not both. sphinx-exercise registers handlers for ``singlehtml``,
so the single-page build loses every handler registered for ``html`` (MyST-NB's hidden cells,
sphinx-jupyterbook-latex's placeholders, ...) and fails on the first such node ("departing
unknown node type"). This gives the single-page builder the ``html`` handlers too, its own first.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def merged_handlers(handlers: dict[str, dict[str, Any]], builder: str,
                    fallback: str = "html") -> dict[str, Any]:
    """The node handlers of ``fallback`` updated with those of ``builder``."""
    return {**handlers.get(fallback, {}), **handlers.get(builder, {})}


def _share_html_handlers(app: Sphinx) -> None:
    if app.builder.name == "singlehtml":
        handlers = app.registry.translation_handlers
        handlers["singlehtml"] = merged_handlers(handlers, "singlehtml")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", _share_html_handlers)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
