"""Sphinx extension: the status page's facts about the build, in plain text.

* The book's version, ``bnbook.__version__`` (read from ``code/bnbook/__init__.py``, the one place
  it is written; ``pyproject.toml`` reads it from there too), becomes Sphinx's ``version`` and
  ``release``; Sphinx's ``today`` is the build date. The status page shows them with
  ``{sub-ref}`release``` and ``{sub-ref}`today```: filled in by every build, unlike the output of
  a code cell, which the execution cache keeps until the cell's code changes.
* MyST-NB's execution table (``nb-exec-table``) marks each chapter with an emoji, which renders as
  an empty box where no emoji font is installed: :data:`STATUS_TEXT` words replace it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.transforms.post_transforms import SphinxPostTransform

#: What replaces MyST-NB's status marks in the execution table.
STATUS_TEXT = {"\u2705": "ok", "\u274c": "failed"}
VERSION_FILE = Path("code") / "bnbook" / "__init__.py"


def read_version(init: Path) -> str:
    """The ``__version__ = "..."`` string of a module's source, without importing it."""
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', init.read_text(), re.M)
    if not match:
        raise ValueError(f"{init} has no line __version__ = \"...\"")
    return match[1]


def _set_version(app: Sphinx, config: Config) -> None:
    config.version = config.release = read_version(Path(app.srcdir) / VERSION_FILE)


class StatusAsText(SphinxPostTransform):
    """Replace the status emoji of MyST-NB's execution table (built at priority 8) by words."""

    default_priority = 9

    def run(self, **kwargs: Any) -> None:
        for table in self.document.findall(nodes.table):
            for text in list(table.findall(nodes.Text)):
                if text.astext().strip() in STATUS_TEXT:
                    text.parent.replace(text, nodes.Text(STATUS_TEXT[text.astext().strip()]))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _set_version)
    app.add_post_transform(StatusAsText)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
