"""Sphinx extension: the book's accessibility fixes in one place (WCAG 2.1 AA, issue 17).

* Adds ``book/_static/css/accessibility.css`` to every page: link and output
  colours with at least 4.5:1 contrast in light and dark mode, and a visible
  focus outline on every focusable element.
* Bibliography markup: docutils writes each entry of a citation list as
  ``<div role="doc-biblioentry">`` inside ``<div role="list">``. ARIA 1.3
  deprecates ``doc-biblioentry``, and a list whose children are not list items
  is an error for screen readers (axe-core: ``aria-deprecated-role``,
  ``aria-required-children``); each entry becomes ``role="listitem"``.

The browser test (``tests/test_browser.py``) runs axe-core on every page in
both colour modes and fails on any violation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

CSS_DIR = Path(__file__).resolve().parents[1] / "_static" / "css"
CSS_FILE = "accessibility.css"


def _static_path(app: Sphinx, config: Any) -> None:
    config.html_static_path = [*config.html_static_path, str(CSS_DIR)]


def list_items_not_biblioentries(body: str) -> str:
    """``body`` with every ``role="doc-biblioentry"`` made ``role="listitem"``."""
    return body.replace('role="doc-biblioentry"', 'role="listitem"')


def _fix_page(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
              doctree: Any) -> None:
    if "body" in context:
        context["body"] = list_items_not_biblioentries(context["body"])


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _static_path)
    app.add_css_file(CSS_FILE)
    app.connect("html-page-context", _fix_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
