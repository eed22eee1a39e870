"""The built site in a real browser: headless Chromium (Debian's), driven by Playwright.

Serves ``_build/html`` on 127.0.0.1 and opens every page with no network:
equations typeset by the MathJax the site itself serves, every image loaded,
download and launch buttons present on executed pages, no console errors, and
a working search. A screenshot of each page is kept in ``_build/screenshots``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from booktools.browser import CHROMIUM, CHROMIUM_FLAGS, offline, serve
from booktools.layout import ROOT, executable_chapters, toc_files

HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    if not (HTML / "index.html").is_file():
        pytest.fail(f"No built site in {HTML}: run `make book` first.")
    with serve(HTML) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make` installs Debian's chromium when run as root.")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """Open ``url`` with every request outside 127.0.0.1 blocked; return page and console errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    offline(page)
    page.goto(url, wait_until="networkidle")
    return page, errors


ARTICLE_TEXT_JS = """() => {
  const article = document.querySelector('article').cloneNode(true);
  article.querySelectorAll('pre, code, .cell_input, mjx-container').forEach(e => e.remove());
  return article.innerText;
}"""


@pytest.mark.parametrize("page_name", toc_files())
def test_page_renders(browser: Browser, site_url: str, page_name: str) -> None:
    page, errors = open_page(browser, f"{site_url}/{page_name}.html")
    try:
        source = (ROOT / f"{page_name}.md").read_text()
        if "$$" in source or "$" in source.replace("$$", ""):
            page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
        text = page.evaluate(ARTICLE_TEXT_JS)
        assert "\\[" not in text and "\\(" not in text and "$$" not in text, "raw LaTeX on the page"
        broken = page.evaluate("""() => Array.from(document.images)
            .filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src)""")
        assert not broken, f"images not loaded: {broken}"
        if page_name in executable_chapters():
            hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a')).map(a => a.href)")
            assert any(h.endswith(".ipynb") and "_sources" in h for h in hrefs), "no .ipynb download"
            assert any("mybinder.org" in h for h in hrefs), "no Binder button"
            assert any("colab.research.google.com" in h for h in hrefs), "no Colab button"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{Path(page_name).name}.png"), full_page=False)
        assert not errors, f"console errors: {errors}"
    finally:
        page.close()


def test_search_finds_momentum(browser: Browser, site_url: str) -> None:
    page, errors = open_page(browser, f"{site_url}/search.html?q=momentum")
    try:
        page.wait_for_selector("#search-results li", timeout=20_000)
        assert page.locator("#search-results li").count() > 0
        assert not errors, f"console errors: {errors}"
    finally:
        page.close()
