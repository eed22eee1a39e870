"""The conventions every chapter follows (README, "Working on a chapter"), checked on the sources.

Each test reads the MyST sources, so it fails on the line that breaks a convention,
before anything executes.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest
import yaml

from booktools.layout import ROOT, executable_chapters, source_of, toc_files

CHAPTERS = executable_chapters()
PAGES = toc_files()
MAX_LINES = 600
MAX_CODE_WIDTH = 88
CHECK_PROMPT = "Show the check"


def code_cells(page: str) -> list:
    return [c for c in jupytext.read(source_of(page)).cells if c.cell_type == "code"]


def tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


#: Directives whose content is not prose: one label or term per line.
NOT_PROSE = ("{core-path}", "{reading-times}", "{tableofcontents}")


def prose_lines(page: str) -> list[tuple[int, str]]:
    """(line number, text) of the Markdown prose of a page: no front matter, code (fenced or
    indented), display math, directive options, tables, labels, headings or glossary terms.
    Directives other than code cells hold prose."""
    lines: list[tuple[int, str]] = []
    code_fence, front, math = None, False, False
    directives: list[tuple[str, str]] = []          # (fence, name) of the open directives
    for number, line in enumerate(source_of(page).read_text().splitlines(), 1):
        stripped = line.strip()
        if number == 1 and stripped == "---":
            front = True
            continue
        if front:
            front = stripped != "---"
            continue
        if code_fence is not None:
            if stripped == code_fence:
                code_fence = None
            continue
        if math:
            math = not stripped.startswith("$$")
            continue
        if stripped.startswith("$$"):
            math = stripped == "$$"                     # "$$ (label)" closes, "$$" opens
            continue
        fence = re.match(r"(`{3,}|~{3,}|:{3,})(.*)", stripped)
        if fence:
            info = fence.group(2).strip()
            if directives and stripped == directives[-1][0]:
                directives.pop()                        # a directive's closing fence
            elif fence.group(1)[0] != ":" and (not info.startswith("{") or
                                               info.startswith("{code-cell}")):
                code_fence = fence.group(1)             # code: skip to its closing fence
            elif info:
                directives.append((fence.group(1), info.split()[0]))
            continue
        name = directives[-1][1] if directives else ""
        if name in NOT_PROSE or (name == "{glossary}" and not line.startswith(" ")):
            continue
        if line.startswith("    ") or not stripped or stripped.startswith(
                ("|", ":", "(", "%", "<", "#", "---")):
            continue
        lines.append((number, line))
    return lines


@pytest.mark.parametrize("page", CHAPTERS)
def test_no_check_hides_in_a_removed_cell(page: str) -> None:
    """`remove-cell` is for glue bookkeeping only: a reader can open every check."""
    for cell in code_cells(page):
        removed = {"remove-cell", "remove-input"} & set(tags(cell))
        assert not (removed and re.search(r"^\s*assert\b", cell.source, re.M)), \
            f"{page}: an assert in a {removed} cell:\n{cell.source[:300]}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_no_verdict_is_typed(page: str) -> None:
    """Verdicts come out of bnbook.stats through glue_claim, never glue("..._verdict", ...)."""
    text = source_of(page).read_text()
    typed = re.findall(r'glue\(\s*f?["\'][^"\']*verdict[^"\']*["\']', text)
    assert typed == [], f"{page}: verdicts glued by hand: {typed}"
    literal = re.findall(r'glue\(\s*f?["\'][^"\']+["\']\s*,\s*["\'](?:supported|not supported|'
                         r'inconclusive|depends)["\']', text)
    assert literal == [], f"{page}: {literal}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_every_verdict_has_its_check_shown_right_under_it(page: str) -> None:
    """The first cell a reader sees after the one that computes a verdict is its check."""
    cells = code_cells(page)
    for index, cell in enumerate(cells):
        if "glue_claim(" not in cell.source:
            continue
        shown = [c for c in cells[index + 1:] if "remove-cell" not in tags(c)]
        assert shown, f"{page}: no check after the last verdict"
        check = shown[0]       # removed cells (glue bookkeeping) are invisible to the reader
        prompt = check.metadata.get("mystnb", {}).get("code_prompt_show")
        assert "hide-cell" in tags(check) and prompt == CHECK_PROMPT, \
            f"{page}: the cell after\n{cell.source[:200]}\nmust be the collapsed check " \
            f"(tags: [hide-cell], code_prompt_show: {CHECK_PROMPT!r})"
        assert re.search(r"^\s*assert\b", check.source, re.M), f"{page}: a check that asserts nothing"


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_is_at_most_600_lines(page: str) -> None:
    count = len(source_of(page).read_text().splitlines())
    assert count <= MAX_LINES, f"{page} has {count} lines: split it or move material"


@pytest.mark.parametrize("page", CHAPTERS)
def test_code_fits_the_column(page: str) -> None:
    wide = [line for cell in code_cells(page) for line in cell.source.splitlines()
            if len(line) > MAX_CODE_WIDTH and not line.lstrip().startswith("%pip")]
    assert wide == [], f"{page}: code lines over {MAX_CODE_WIDTH} characters: {wide[:3]}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapters_that_train_start_with_the_one_set_up_call(page: str) -> None:
    cells = code_cells(page)
    source = "\n".join(c.source for c in cells)
    if not re.search(r"^\s*(import keras|import tensorflow|from bnbook\.(sweeps|training|models))",
                     source, re.M):
        return
    assert len(cells) > 1 and "start(" in cells[1].source, \
        f"{page}: the second code cell must call bnbook.notebook.start()"


ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|et al|Fig|Eq|vs|cf|etc|approx|Sec|No|Ch)\.$")
#: A list item or paragraph may open with a bold label ("1. **Higher learning rates.** BN ...").
LEAD_IN = re.compile(r"^\s*(?:[-*]|\d+\.)?\s*\*\*[^*]+[.:]\*\*\s")


@pytest.mark.parametrize("page", PAGES)
def test_prose_is_one_sentence_per_line(page: str) -> None:
    """QuantEcon's convention: a diff then shows what changed in the text."""
    offenders = []
    for number, line in prose_lines(page):
        line = LEAD_IN.sub("", line)
        for match in re.finditer(r"[a-z0-9)\]*`%][.!?]\s+(?=[A-Z*\[{(])", line):
            head = line[:match.start() + 2]
            if ABBREVIATIONS.search(head.rstrip()):
                continue
            offenders.append(f"{page}.md:{number}: {line.strip()[:100]}")
            break
    assert offenders == [], "\n".join(offenders[:10])


@pytest.mark.parametrize("page", PAGES)
def test_no_sentence_is_wrapped_over_lines(page: str) -> None:
    """The other half of one sentence per line: a line that stops mid-sentence (ends in a word
    or a comma) and a next line that goes on in lower case is a hard-wrapped sentence."""
    lines = dict(prose_lines(page))
    wrapped = [f"{page}.md:{n}: {text.strip()[-60:]}" for n, text in lines.items()
               if n + 1 in lines and re.search(r"[a-z,]$", text.rstrip())
               and re.match(r"\s*[a-z]", lines[n + 1])]
    assert wrapped == [], "\n".join(wrapped[:10])


@pytest.mark.parametrize("page", PAGES)
def test_the_notebook_is_never_called_the_seed(page: str) -> None:
    """'Seed' means a random seed; the notebook the book grew from is 'the original notebook'."""
    text = source_of(page).read_text()
    found = re.findall(r"\b[Tt]he seed's (?:log|models?|conclusion|baseline|BN model|code|optimizer|"
                       r"experiment|comparison|summary|notebook|learning rate|results?)\b"
                       r"|\bseed notebook\b|\b[Tt]he seed (?:compiled|trained|compared|used|notebook|"
                       r"reported|grew)\b|\|\s*the seed\s*[|,]", text)
    assert found == [], f"{page}: {found}"


def test_toc_numbers_the_chapters() -> None:
    """Figures and exercises are numbered per chapter (Exercise 3.2), which needs numbered parts."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    numbered = [part for part in toc["parts"] if part.get("numbered")]
    chapters = {Path(c["file"]).name for part in numbered for c in part["chapters"]}
    assert {Path(page).name for page in CHAPTERS if Path(page).name != "status"} <= chapters
