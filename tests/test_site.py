"""The built site (``make book`` first): every page exists and shows its executed outputs, every
image says what it shows, and the site's own colours reach WCAG AA contrast."""

from __future__ import annotations

import re
from html.parser import HTMLParser
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
    warnings = re.findall(r"\w+Warning: [^\n<]{0,120}", stderr_text(html))
    assert not warnings, f"{page}: a reader sees Python warnings: {warnings}"


def stderr_text(html: str) -> str:
    """The text of a page's stderr outputs (MyST-NB's ``output stderr`` blocks)."""
    return "".join(re.findall(r'class="output stderr[^"]*"[^>]*>(.*?)</div>', html, flags=re.S))


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


# ----------------------------------------------------------------- accessibility (issue 17)
class _Images(HTMLParser):
    """The ``src`` and ``alt`` (``None`` when absent) of every ``<img>`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            found = dict(attrs)
            self.images.append((found.get("src") or "", found.get("alt")))


#: Alt texts that name the kind of thing instead of saying what it shows.
GENERIC_ALT = re.compile(r"^\W*(a|an|the)?\s*(plot|figure|fig\.?|image|img|graph|chart|diagram|picture|"
                         r"output|png|svg|untitled|\d+)?\s*\d*\W*$", re.I)


def undescribed_images(html: str) -> list[str]:
    """Images of ``html`` whose alt text is missing or generic; a figure (``_images/``) also
    needs at least six words (what is plotted against what, and what it shows)."""
    parser = _Images()
    parser.feed(html)
    bad = []
    for src, alt in parser.images:
        text = (alt or "").strip()
        if alt is None or GENERIC_ALT.match(text) or ("_images/" in src and len(text.split()) < 6):
            bad.append(f"{src}: alt={alt!r}")
    return bad


@pytest.mark.parametrize("page", toc_files())
def test_every_image_says_what_it_shows(page: str) -> None:
    assert undescribed_images(page_html(page)) == []


def test_generic_or_missing_alt_text_is_found() -> None:
    html = ('<img src="_images/a.png" alt="A plot"><img src="_images/b.png">'
            '<img src="_images/c.png" alt=""><img src="_images/d.png" alt="Figure 3">'
            '<img src="_images/e.png" alt="Loss against steps, falling">'
            '<img src="_images/f.png" alt="Loss against steps for both networks; BN falls faster">'
            '<img src="logo.svg" alt="Batch Normalization, Tested - Home">')
    assert [line.split(":")[0] for line in undescribed_images(html)] == [
        "_images/a.png", "_images/b.png", "_images/c.png", "_images/d.png", "_images/e.png"]


CSS = ROOT / "book" / "_static" / "css" / "accessibility.css"
#: Where text in those colours is shown, per mode: the page, code cells and outputs (the
#: theme's), exercise boxes (sphinx-exercise), stderr outputs (MyST-NB).
BACKGROUNDS = {"light": ["#ffffff", "#f3f4f5", "#fcfcfc", "#ecf3ff", "#ffdddd"],
               "dark": ["#14181e", "#29313d", "#2d2d2d", "#680010"]}


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two colours ``#rrggbb``: (L1 + 0.05) / (L2 + 0.05), L1 >= L2."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_follows_the_wcag_formula() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # just short of AA


@pytest.mark.parametrize("mode", BACKGROUNDS)
def test_text_colours_of_the_site_are_aa_on_every_background(mode: str) -> None:
    """Link and terminal colours (also those no page shows today) reach 4.5:1 everywhere."""
    block = re.search(rf'html\[data-theme="{mode}"\]\s*\{{(.*?)\}}', CSS.read_text(), re.S)
    assert block, f"no {mode} block in {CSS}"
    colours = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", block.group(1)))
    assert "pst-color-link" in colours and len(colours) >= 9
    weak = [(name, colour, background, round(contrast(colour, background), 2))
            for name, colour in colours.items() for background in BACKGROUNDS[mode]
            if contrast(colour, background) < 4.5]
    assert weak == []
