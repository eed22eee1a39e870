"""The book as one PDF (``make pdf`` first): every page's title, every chapter's figures, every
equation typeset (no raw LaTeX), and the landing page's link to it."""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

import jupytext
import pytest
from pypdf import PdfReader

from booktools.layout import ROOT, executable_chapters, source_of, toc_files
from booktools.pdf import PDF, bookmarks, print_pdf, repaired_titles

#: What raw LaTeX looks like in text: a command, or math delimiters left in place.
RAW_LATEX = re.compile(r"\\[A-Za-z]+|\$\$|\\\(|\\\[|\$[^$\s][^$]*\$")


@pytest.fixture(scope="module")
def reader() -> PdfReader:
    if not PDF.is_file():
        pytest.fail(f"No PDF at {PDF}: run `make pdf` first.")
    return PdfReader(PDF)


def title_of(page: str) -> str:
    """The page's title: the first level-1 heading of its Markdown."""
    for cell in jupytext.read(source_of(page)).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise AssertionError(f"{page} has no title")


def squeeze(text: str) -> str:
    """Text without white space, its typographic apostrophes as typed ones."""
    return re.sub(r"\s+", "", text).replace("\u2019", "'")


def outline(reader: PdfReader) -> list[tuple[str, int]]:
    """(title, page index) of every bookmark, in order; titles without their number and
    without white space (Chromium's bookmarks keep a heading's line breaks, not its spaces)."""
    found: list[tuple[str, int]] = []

    def walk(items: list) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
            else:
                title = squeeze(re.sub(r"^(\d+\.)+\s*", "", item.title))
                found.append((title, reader.get_destination_page_number(item)))

    walk(reader.outline)
    return found


def prose_text(path: Path) -> str:
    """The PDF's text outside code: what is set in any font but a monospaced one (ligatures such
    as "ﬀ" spelled out)."""
    pieces: list[str] = []

    def keep(text: str, cm: object, tm: object, font: dict | None, size: float) -> None:
        if "Mono" not in str((font or {}).get("/BaseFont", "")):
            pieces.append(text)

    for page in PdfReader(path).pages:
        page.extract_text(visitor_text=keep)
    return unicodedata.normalize("NFKC", "".join(pieces))


@cache
def _prose(path: Path) -> str:
    return prose_text(path)


def images_on(page: object) -> int:
    """Images drawn on a PDF page (also inside the forms it draws)."""
    def count(resources: object) -> int:
        xobjects = resources.get_object().get("/XObject") if resources else None
        total = 0
        for obj in (xobjects.get_object().values() if xobjects else []):
            obj = obj.get_object()
            total += 1 if obj.get("/Subtype") == "/Image" else count(obj.get("/Resources"))
        return total
    return count(page.get("/Resources"))


def test_every_page_of_the_book_is_a_bookmark_with_its_title(reader: PdfReader) -> None:
    titles = [title for title, _ in outline(reader)]
    missing = [title_of(page) for page in toc_files() if squeeze(title_of(page)) not in titles]
    assert not missing, f"no bookmark for {missing}"


def test_every_title_is_in_the_text(reader: PdfReader) -> None:
    text = squeeze(_prose(PDF))
    missing = [title_of(page) for page in toc_files() if squeeze(title_of(page)) not in text]
    assert not missing


def test_every_chapter_has_its_figures(reader: PdfReader) -> None:
    """The pages from a chapter's title to the next chapter's hold at least its glued figures."""
    starts = dict(outline(reader))  # title -> first page (later duplicates do not matter here)
    pages = [(starts[squeeze(title_of(p))], p) for p in toc_files()]
    pages.sort()
    for (first, page), (end, _) in zip(pages, pages[1:] + [(len(reader.pages), "")]):
        if page not in executable_chapters():
            continue
        glued = source_of(page).read_text().count("{glue:figure}")
        drawn = sum(images_on(reader.pages[i]) for i in range(first, max(end, first + 1)))
        assert drawn >= glued, f"{page}: {glued} figures glued, {drawn} images on its pages"


def test_no_raw_latex_outside_code(reader: PdfReader) -> None:
    found = RAW_LATEX.findall(_prose(PDF))
    assert not found, f"raw LaTeX in the PDF: {found[:10]}"


def test_the_landing_page_links_to_the_pdf() -> None:
    html = (ROOT / "_build" / "html" / f"{toc_files()[0]}.html")
    links = re.findall(r'href="([^"]+\.pdf)"', html.read_text(encoding="utf-8"))
    assert links, "the landing page has no link to the PDF"
    assert all((html.parent / link).resolve() == PDF.resolve() for link in links), links


def test_the_raw_latex_check_finds_untypeset_math_and_spares_code(tmp_path: Path) -> None:
    """The check above can fail: math MathJax never typeset is found, TeX inside code is not."""
    page = tmp_path / "page.html"
    page.write_text("<html><head><title>t</title></head><body><h1>A page</h1>"
                    r"<p>The mean \(\mu_B = \frac{1}{m}\sum x_i\) of a batch.</p>"
                    r'<pre>ax.set_xlabel(r"$\gamma$")</pre></body></html>')
    pdf = print_pdf(page, tmp_path / "page.pdf")
    found = RAW_LATEX.findall(prose_text(pdf))
    assert "\\frac" in found and "\\(" in found
    assert "\\gamma" not in found


def test_bookmark_titles_are_repaired_only_when_they_match_the_headings_one_to_one() -> None:
    headings = ["What BN stores", "Summary"]
    assert repaired_titles(["What BNstores", "SummarySummary"], headings) == headings
    assert repaired_titles(["ExercisesExercises", "Odd"], ["Exercises"]) == ["Exercises", "Odd"]
    assert bookmarks({}) == []
