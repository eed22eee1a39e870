"""``make pdf``: the whole book as one PDF, printed by Debian's Chromium from a single-page build.

``make pdf`` builds the book with Sphinx's ``singlehtml`` builder, from the same execution cache
as the site (every chapter a cache hit: nothing is executed), into ``_build/singlehtml``; then
:func:`print_pdf` opens that page, served on 127.0.0.1 with every other request blocked, in
Debian's Chromium through Playwright, opens the collapsed checks (:data:`READY_JS`), waits until
MathJax has typeset every equation and every figure has loaded, and prints it: A4, each chapter
from a new page, page numbers, the headings as PDF bookmarks (:func:`tidy` repairs their titles),
the book's title and author. It lands beside the site, in ``_build/html``, where the landing page
links to it.

Why Chromium, and not the two other ways:

* Jupyter Book's own ``pdfhtml`` builder (1.0.4) prints the same single page with Playwright
  too (not pyppeteer, as older versions did), but launches Playwright's own Chromium, which
  ``playwright install`` must download, with no way to name ``/usr/bin/chromium``; it opens the
  page from ``file://`` without waiting for MathJax and prints with no side margins and no
  bookmarks.
* ``pdflatex`` needs TeX Live (none of it is installed here; Debian's packages for Sphinx's
  LaTeX are hundreds of megabytes) and renders every page a second way: MyST-NB gives LaTeX only
  the outputs that have a LaTeX, image or plain-text form, and the prose's Unicode (γ, ±, ≈)
  needs XeLaTeX or LaTeX set up character by character.
* Chromium prints the pages as the site shows them: the equations typeset by the same offline
  MathJax, the figures the PNGs the chapters made, every output as on the site. Playwright and
  Debian's Chromium are what the browser test already uses: nothing new to install or download.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from playwright.sync_api import sync_playwright
from pypdf import PdfWriter
from pypdf.generic import DictionaryObject, NameObject, TextStringObject

from booktools.browser import CHROMIUM, CHROMIUM_FLAGS, offline, serve
from booktools.layout import ROOT, toc_files

SINGLEHTML = ROOT / "_build" / "singlehtml"
#: The PDF, beside the site it is published with (``book/intro.md`` links to it).
PDF = ROOT / "_build" / "html" / "batch-normalization-tested.pdf"

#: Make the single page a book, in the browser, before printing; return the headings' titles.
#: - Sphinx nests a single page's chapters under the landing page (chapter titles are h3): every
#:   chapter's headings get an ``aria-level`` one below the book's title (the title 2, its
#:   sections 3, ...), which the PDF's bookmarks follow; a chapter starts a new page.
#: - Collapsed parts: in a code cell, the checks (the README's "Show the check" prompt) are
#:   opened and any other hidden input (plotting code, say) is left out, its output kept; anything
#:   else collapsed (a dropdown, a solution) is opened.
#: - Wait for MathJax's typesetting, the images and the fonts.
#: - Return the title of every heading printed, in order, as the page shows it (an equation as
#:   the text of its MathML), for :func:`tidy`.
READY_JS = """async () => {
  const chapters = Array.from(document.querySelectorAll('span[id^="document-"] + section'));
  for (const chapter of chapters) {
    if (chapters.some(other => other !== chapter && other.contains(chapter))) continue;
    chapter.classList.add('book-chapter');
    const first = chapter.querySelector('h1, h2, h3, h4, h5, h6');
    const shift = first ? Number(first.tagName[1]) - 2 : 0;
    chapter.querySelectorAll('h1, h2, h3, h4, h5, h6').forEach(h => {
      h.setAttribute('aria-level', String(Math.max(2, Number(h.tagName[1]) - shift)));
    });
  }
  document.querySelectorAll('details').forEach(d => {
    const prompt = (d.querySelector('summary') || {}).textContent || '';
    if (d.closest('.cell') && !/check/i.test(prompt)) { d.remove(); } else { d.open = true; }
  });
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  await Promise.all(Array.from(document.images).filter(img => !img.complete).map(
    img => new Promise(done => { img.onload = img.onerror = done; })));
  await document.fonts.ready;
  return Array.from(document.querySelectorAll('h1, h2, h3, h4, h5, h6'))
    .filter(h => h.getClientRects().length > 0)
    .map(h => {
      const copy = h.cloneNode(true);
      copy.querySelectorAll('a.headerlink').forEach(a => a.remove());
      copy.querySelectorAll('mjx-container').forEach(m => {
        const mml = m.querySelector('mjx-assistive-mml');
        m.replaceWith(mml ? mml.textContent : '');
      });
      return copy.textContent.replace(/\\s+/g, ' ').trim();
    });
}"""

#: Print layout: a chapter starts a page; a cell's input or output, a figure or a table row is
#: not split where it fits on a page; long code lines wrap instead of being cut off.
PRINT_CSS = """
@media print {
  *, *::before, *::after { animation: none !important; transition: none !important; }
  section.book-chapter { break-before: page; }
  section.book-chapter > h3:first-of-type { font-size: 2.2rem; }
  div.cell_input, div.cell_output, figure, tr, .admonition { break-inside: avoid; }
  h1, h2, h3, h4 { break-after: avoid; }
  pre { font-size: 0.8rem; white-space: pre-wrap; overflow-wrap: anywhere; }
  /* a scrolling box is never split across pages: let tables and outputs flow */
  .pst-scrollable-table-container, .highlight, pre, .cell_output, .output {
    overflow: visible !important; max-height: none !important;
  }
  a.headerlink, .pdf-link { display: none; }  /* .pdf-link: the landing page's link to the PDF */
}
"""

#: The site's 16 px text printed at this scale is about 9.6 pt, a book's size; with code at
#: 0.8 rem (:data:`PRINT_CSS`) an 88-character line fits the width of A4 (about 95 do).
PRINT_SCALE = 0.8
FOOTER = ('<div style="font-size:8px; width:100%; text-align:center; color:#555">'
          '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')


def single_page(folder: Path = SINGLEHTML) -> Path:
    """The single page, at the root of ``folder``.

    Sphinx writes it under the root document's name (``book/intro.html``) but with every link
    relative to the root of the build (``_static/...``, ``_images/...``): a copy at the root,
    ``folder/book.html``, loads what it links to.
    """
    written = folder / f"{toc_files()[0]}.html"
    if not written.is_file():
        raise FileNotFoundError(f"{written} is missing: build it first "
                                "(`jupyter-book build . --builder singlehtml`; `make pdf` does)")
    page = folder / "book.html"
    page.write_bytes(written.read_bytes())
    return page


def print_pdf(html: Path, pdf: Path = PDF) -> Path:
    """Print the page ``html`` (and what it loads from its folder) to ``pdf``; return ``pdf``."""
    if not html.is_file():
        raise FileNotFoundError(f"{html} is missing: build it first "
                                "(`jupyter-book build . --builder singlehtml`; `make pdf` does)")
    if not CHROMIUM.is_file():
        raise FileNotFoundError(f"{CHROMIUM} is missing: install Debian's chromium "
                                "(`make` does when run as root)")
    pdf.parent.mkdir(parents=True, exist_ok=True)
    with serve(html.parent) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            offline(page)
            page.goto(f"{url}/{html.name}", wait_until="networkidle")
            page.add_style_tag(content=PRINT_CSS)
            page.emulate_media(media="print")  # so that READY_JS sees what is printed
            titles = page.evaluate(READY_JS)
            page.pdf(path=str(pdf), format="A4", scale=PRINT_SCALE, print_background=True,
                     outline=True, tagged=True, display_header_footer=True,
                     header_template="<span></span>", footer_template=FOOTER,
                     margin={"top": "15mm", "bottom": "15mm", "left": "14mm", "right": "14mm"})
        finally:
            browser.close()
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    tidy(pdf, titles, config["title"], config["author"])
    return pdf


def bookmarks(outline: DictionaryObject) -> list[DictionaryObject]:
    """Every bookmark under ``outline`` (a PDF outline dictionary), in document order."""
    found = []
    item = outline.get("/First")
    while item is not None:
        item = item.get_object()
        found.append(item)
        found += bookmarks(item)
        item = item.get("/Next")
    return found


def repaired_titles(printed: list[str], headings: list[str]) -> list[str]:
    """Bookmark titles as the page shows its headings.

    Chromium takes a bookmark's title from the heading's text as laid out: the lines of a
    wrapped heading joined with no space ("what BNstores"), an equation left out, and now and
    then the whole text twice ("SummarySummary"). The bookmarks are the printed headings, in
    order: if there are as many, each takes its heading's title; if not (a layout this does not
    foresee), the titles are kept, each doubled one halved.
    """
    if len(printed) == len(headings):
        return list(headings)
    return [t[:len(t) // 2] if len(t) % 2 == 0 and t[:len(t) // 2] == t[len(t) // 2:] else t
            for t in printed]


def tidy(pdf: Path, headings: list[str], title: str, author: str) -> None:
    """Give ``pdf`` the book's title and author, and its bookmarks the ``headings``' titles."""
    writer = PdfWriter(clone_from=pdf)
    writer.add_metadata({"/Title": title, "/Author": author})
    outline = writer.root_object.get("/Outlines")
    items = bookmarks(outline.get_object()) if outline is not None else []
    for item, text in zip(items, repaired_titles([str(i["/Title"]) for i in items], headings)):
        item[NameObject("/Title")] = TextStringObject(text)
    with pdf.open("wb") as handle:
        writer.write(handle)
