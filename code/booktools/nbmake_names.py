"""pytest plugin for ``make test`` and ``make rounding``: a chapter that fails under nbmake is named.

nbmake reports a failing notebook by its exported path (a temporary folder)
and the cell's traceback. This plugin puts :func:`booktools.failures.headline`
above it (the chapter's ``.md`` and the failing cell's line) and makes that line
pytest's summary of the failure. ``tests/conftest.py`` registers it
(elsewhere: ``pytest -p booktools.nbmake_names`` with ``code/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import ReprFileLocation, TerminalRepr, TerminalWriter

from booktools.failures import headline


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """A notebook that nbmake reports as failed gets :func:`headline` as its report's first line."""
    result = yield
    if not (result.failed and getattr(item, "nbmake", False) and call.excinfo is not None):
        return result
    args = call.excinfo.value.args
    error = getattr(args[0], "error", None) if args else None
    if error is not None:  # else nbmake's own internal error: its report stays as it is
        line = headline(Path(str(item.path)), error.failing_cell_index, error.summary)
        result.longrepr = _NamedRepr(line, result.longrepr)
    return result


class _NamedRepr(TerminalRepr):
    """A failure report with one line above it; that line is also pytest's summary of it."""

    def __init__(self, line: str, inner: Any) -> None:
        self.line, self.inner = line, inner
        self.reprcrash = ReprFileLocation("", 0, line)

    def toterminal(self, tw: TerminalWriter) -> None:
        tw.line(self.line, red=True, bold=True)
        if hasattr(self.inner, "toterminal"):
            self.inner.toterminal(tw)
        else:
            tw.line(str(self.inner))
