"""The built site (``make book`` first): every page exists and shows its executed outputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from booktools.layout import ROOT, executable_chapters, toc_files

HTML = ROOT / "_build" / "html"


@pytest.fixture(scope="module", autouse=True)
def _site_is_built() -> None:
    if not (HTML / "index.html").is_file():
        pytest.fail(f"No built site in {HTML}: run `make book` first.")


def page_html(page: str) -> str:
    return (HTML / f"{page}.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("page", toc_files())
def test_page_exists(page: str) -> None:
    assert (HTML / f"{page}.html").is_file()


@pytest.mark.parametrize("page", executable_chapters())
def test_chapter_shows_executed_output_and_no_error(page: str) -> None:
    html = page_html(page)
    assert 'class="cell_output' in html, f"{page}: no executed output"
    assert "Traceback (most recent call last)" not in html
    assert 'class="output traceback' not in html


@pytest.mark.parametrize("page", executable_chapters())
def test_figures_are_on_the_page_and_their_files_exist(page: str) -> None:
    html = page_html(page)
    sources = re.findall(r'<img[^>]+src="([^"]+)"', html)
    figures = [s for s in sources if "_images/" in s]
    glued = (ROOT / f"{page}.md").read_text().count("{glue:figure}")
    assert len(figures) >= glued, f"{page}: {glued} figures glued, {len(figures)} shown"
    base = (HTML / page).parent
    for src in figures:
        assert (base / src).resolve().is_file(), f"{page}: missing image {src}"


@pytest.mark.parametrize("page", executable_chapters())
def test_executed_notebook_is_offered_for_download(page: str) -> None:
    notebook = HTML / "_sources" / f"{page}.ipynb"
    assert notebook.is_file()
    assert '"output_type"' in notebook.read_text(), f"{page}: the download has no outputs"


def test_glued_numbers_are_rendered_not_left_as_roles() -> None:
    for page in executable_chapters():
        html = page_html(page)
        assert "{glue" not in html, page
        assert "glue:text" not in html, page
