"""The built site in a real browser: headless Chromium (Debian's), driven by Playwright.

Serves ``_build/html`` on 127.0.0.1 and opens every page with no network:
equations typeset by the MathJax the site itself serves, every image loaded,
download and launch buttons present on executed pages, no console errors, and
a working search. A screenshot of each page is kept in ``_build/screenshots``.

Accessibility (issue 17): axe-core (bundled by ``axe-playwright-python``, so it
runs offline) finds no violation of the WCAG 2.0 and 2.1 A and AA rules on any
page, in light and in dark mode; every equation carries MathJax's assistive
MathML for screen readers; the keyboard alone reaches the content (a skip
link) and always shows where the focus is. Width (issue 19): at 1280 px no
code cell or output needs a horizontal scroll bar, and on a 390 px phone only
code blocks may scroll sideways, never the page.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
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


def open_page(browser: Browser, url: str, *, mode: str = "light",
              width: int = 1280) -> tuple[Page, list[str]]:
    """Open ``url`` with every request outside 127.0.0.1 blocked, in the colour ``mode`` the
    reader's system prefers (the theme follows it) and ``width`` px wide; return the page and
    its console errors."""
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=mode)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    offline(page)
    page.goto(url, wait_until="networkidle")
    return page, errors


@contextlib.contextmanager
def opened(browser: Browser, url: str, **options: object) -> Iterator[Page]:
    """:func:`open_page` as a ``with`` block that closes the page."""
    page, _ = open_page(browser, url, **options)
    try:
        yield page
    finally:
        page.close()


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


# ----------------------------------------------------------------- accessibility (issue 17)
MODES = ["light", "dark"]
#: Every page a reader can reach: the table of contents, the search page and the index.
ALL_PAGES = toc_files() + ["search", "genindex"]
#: axe-core's rules for WCAG 2.0 and 2.1, levels A and AA.
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
           "resultTypes": ["violations"]}


def violations(page: Page) -> list[str]:
    """axe-core's WCAG A/AA violations on ``page``: one line per rule, with its first elements."""
    found = Axe().run(page, options=WCAG_AA).response["violations"]
    return [f"{v['id']} ({v['impact']}, {len(v['nodes'])} elements): {v['help']}; e.g. "
            + " | ".join(f"{n['target'][0]}: {(n.get('any') or n.get('all') or [{}])[0].get('message', '')}"
                         for n in v["nodes"][:3])
            for v in found]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("page_name", ALL_PAGES)
def test_no_wcag_violation(browser: Browser, site_url: str, page_name: str, mode: str) -> None:
    with opened(browser, f"{site_url}/{page_name}.html", mode=mode) as page:
        assert page.evaluate("document.documentElement.dataset.theme") == mode
        if page.locator("mjx-container").count() or "$" in _source(page_name):
            page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
        assert violations(page) == []


def test_axe_finds_a_violation_when_there_is_one(browser: Browser, site_url: str) -> None:
    """The check above can fail: grey text on grey and an image without alt text are found."""
    with opened(browser, f"{site_url}/{toc_files()[0]}.html") as page:
        page.evaluate("""() => {
          const p = document.createElement('p');
          p.textContent = 'barely visible';
          p.style.color = '#aaaaaa'; p.style.background = '#bbbbbb';
          document.querySelector('article').append(p, document.createElement('img'));
        }""")
        found = " ".join(violations(page))
        assert "color-contrast" in found and "image-alt" in found


def _source(page_name: str) -> str:
    source = ROOT / f"{page_name}.md"
    return source.read_text() if source.is_file() else ""


EQUATIONS_JS = """() => Array.from(document.querySelectorAll('mjx-container')).map(c => {
  const math = c.querySelector('mjx-assistive-mml > math');
  return math ? math.textContent.trim() : '';
})"""


@pytest.mark.parametrize("page_name", [p for p in toc_files() if "$" in _source(p)])
def test_every_equation_can_be_read_aloud(browser: Browser, site_url: str, page_name: str) -> None:
    """MathJax puts MathML beside each equation it draws (``enableAssistiveMml``): that is
    what a screen reader reads. Each one must be there and not empty."""
    with opened(browser, f"{site_url}/{page_name}.html") as page:
        page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
        page.wait_for_function("() => window.MathJax && MathJax.startup && "
                               "MathJax.startup.promise", timeout=20_000)
        page.evaluate("() => MathJax.startup.promise")
        spoken = page.evaluate(EQUATIONS_JS)
        assert spoken and all(spoken), f"{spoken.count('')} of {len(spoken)} equations have no MathML"


FOCUS_JS = """() => {
  const e = document.activeElement;
  const s = getComputedStyle(e);
  const r = e.getBoundingClientRect();
  return {tag: e.tagName, href: e.getAttribute('href'),
          text: (e.getAttribute('aria-label') || e.title || e.textContent || '').trim().slice(0, 40),
          outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0,
          shadow: s.boxShadow !== 'none', inMain: !!e.closest('#main-content'),
          onScreen: r.bottom > 0 && r.top < innerHeight && r.width > 0 && r.height > 0};
}"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("page_name", [toc_files()[0], executable_chapters()[0]])
def test_the_keyboard_alone_reaches_the_content(browser: Browser, site_url: str, page_name: str,
                                                mode: str) -> None:
    """The first Tab shows a skip link; Enter on it moves on to the main content; and every
    element the next Tabs reach shows a focus outline."""
    with opened(browser, f"{site_url}/{page_name}.html", mode=mode) as page:
        page.keyboard.press("Tab")
        page.wait_for_timeout(400)  # the skip link slides in (0.15 s)
        skip = page.evaluate(FOCUS_JS)
        assert skip["href"] == "#main-content" and skip["onScreen"] and skip["outline"], skip
        page.keyboard.press("Enter")
        assert page.url.endswith("#main-content")
        unseen = []
        for step in range(25):
            page.keyboard.press("Tab")
            focus = page.evaluate(FOCUS_JS)
            if step == 0:
                assert focus["inMain"], f"the skip link did not lead to the content: {focus}"
            if not (focus["outline"] or focus["shadow"]):
                unseen.append(focus)
        assert not unseen, f"focus not visible on {unseen}"


# ----------------------------------------------------------------- width (issue 19)
OVERFLOW_JS = """(selector) => Array.from(document.querySelectorAll(selector))
  .filter(e => e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0)
  .map(e => (e.closest('.cell') ? 'cell ' + Array.from(document.querySelectorAll('.cell'))
            .indexOf(e.closest('.cell')) + ': ' : '')
       + e.textContent.trim().split('\\n')[0].slice(0, 60)
       + ' (' + e.scrollWidth + ' px in ' + e.clientWidth + ')')"""
CELLS = ".cell_input pre, .cell_output pre, .cell_output .output, .cell_output table"


def test_88_characters_fit_a_code_cell_at_1280_px(browser: Browser, site_url: str) -> None:
    """The book's code width (88 characters) fits the column: a line of 88 characters in a
    code cell and in an output does not scroll, and one of 100 does (so the check can fail)."""
    with opened(browser, f"{site_url}/{executable_chapters()[0]}.html", width=1280) as page:
        for length, fits in ((88, True), (100, False)):
            page.evaluate("""(n) => ['.cell_input pre', '.cell_output pre'].forEach(s => {
              const pre = document.querySelector(s);
              pre.textContent = 'x'.repeat(n);
              pre.dataset.probe = 'yes'; })""", length)
            wide = page.evaluate(OVERFLOW_JS, "pre[data-probe]")
            assert (not wide) == fits, (length, wide)


@pytest.mark.parametrize("page_name", executable_chapters())
def test_code_and_outputs_fit_the_column_at_1280_px(browser: Browser, site_url: str,
                                                    page_name: str) -> None:
    with opened(browser, f"{site_url}/{page_name}.html", width=1280) as page:
        page.evaluate("""() => document.querySelectorAll('details').forEach(d => d.open = true)""")
        wide = page.evaluate(OVERFLOW_JS, CELLS)
        assert not wide, f"{len(wide)} code cells or outputs scroll sideways at 1280 px: {wide}"


@pytest.mark.parametrize("page_name", toc_files())
def test_on_a_phone_only_code_scrolls_sideways(browser: Browser, site_url: str,
                                               page_name: str) -> None:
    with opened(browser, f"{site_url}/{page_name}.html", width=390) as page:
        width = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1], f"the page is {width[0]} px wide on a {width[1]} px screen"
