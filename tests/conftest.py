"""Shared fixtures, a guard that nbmake really collected every chapter, and failing chapters named."""

from __future__ import annotations

from pathlib import Path

import pytest

from booktools.layout import executable_chapters


def pytest_configure(config: pytest.Config) -> None:
    """A chapter that fails under nbmake is named: its .md and the cell's line come first."""
    config.pluginmanager.import_plugin("booktools.nbmake_names")


@pytest.fixture(autouse=True)
def _private_array_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests keep the loader's .npy cache out of the user's home; chapters run as a
    reader's would, with the user's cache."""
    if Path(str(request.node.path)).suffix == ".ipynb":
        return
    monkeypatch.setenv("BNBOOK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "npy-cache"))
    monkeypatch.delenv("BNBOOK_DATA_DIR", raising=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --nbmake, every executable chapter of _toc.yml must be collected once."""
    if not config.getoption("nbmake", default=False):
        return
    collected = sorted(Path(str(item.path)).stem for item in items
                       if str(item.path).endswith(".ipynb"))
    expected = sorted(Path(page).name for page in executable_chapters())
    if collected != expected:
        raise pytest.UsageError(
            f"nbmake collected {collected}, but _toc.yml lists the chapters {expected}. "
            "Export them first: python -m booktools export DEST; pytest tests DEST --nbmake")


@pytest.fixture(scope="module")
def data() -> tuple:
    """Two easy classes of 28x28 images (tests/tiny.py)."""
    from tiny import two_classes

    return two_classes()
