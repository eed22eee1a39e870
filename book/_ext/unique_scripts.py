"""Sphinx extension: drop repeated ``<script>`` entries from every page.

sphinx-thebe and sphinx-togglebutton register their inline scripts twice in a
Jupyter Book build, once with filename None and once with "", so Sphinx keeps both; the
second ``const THEBE_JS_URL = ...`` is a JavaScript error in the browser
console. Two scripts with the same source and attributes are the same script,
whatever their priority: the first is kept.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def _unique(scripts: list[Any]) -> list[Any]:
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    kept = []
    for script in scripts:
        key = (str(getattr(script, "filename", script) or ""),  # None and "" alike: inline
               tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    return kept


def _dedupe(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
            doctree: Any) -> None:
    if "script_files" in context:
        context["script_files"] = _unique(context["script_files"])


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
