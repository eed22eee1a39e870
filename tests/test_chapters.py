"""_toc.yml and book/ agree, and every chapter exports to a notebook."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
import yaml

from booktools.layout import ROOT, executable_chapters, export_notebooks, source_of, toc_files


def test_every_toc_entry_exists() -> None:
    missing = [page for page in toc_files() if not source_of(page).is_file()]
    assert not missing


def test_every_page_in_book_is_in_the_toc() -> None:
    listed = set(toc_files())
    pages = {str(p.relative_to(ROOT).with_suffix("")) for p in (ROOT / "book").rglob("*.md")
             if "_build" not in p.parts}
    assert pages - listed == set()


def test_no_page_is_listed_twice() -> None:
    assert len(toc_files()) == len(set(toc_files()))


def test_chapters_are_myst_notebooks_with_the_python3_kernel() -> None:
    chapters = executable_chapters()
    assert "book/replication" in chapters
    for page in chapters:
        notebook = jupytext.read(source_of(page))
        assert notebook.metadata["kernelspec"]["name"] == "python3", page
        assert any(cell.cell_type == "code" for cell in notebook.cells), page


def test_every_chapter_has_an_ipynb_beside_it_in_sync_with_the_md(tmp_path: Path) -> None:
    """Colab opens only .ipynb; the copy must say what the .md says (``make notebooks``)."""
    for fresh in export_notebooks(tmp_path):
        paired = ROOT / "book" / fresh.name
        assert paired.is_file(), f"{paired} is missing: run `make notebooks`"
        expected, actual = jupytext.read(fresh), jupytext.read(paired)
        assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in actual.cells] == \
               [(c.cell_type, c.source, c.metadata.get("tags")) for c in expected.cells], \
            f"{paired} is out of date: run `make notebooks`"


def test_every_chapter_first_installs_bnbook_where_it_is_missing() -> None:
    for page in executable_chapters():
        first = next(c for c in jupytext.read(source_of(page)).cells if c.cell_type == "code")
        assert "import bnbook" in first.source and "%pip install" in first.source, page
        assert "remove-cell" in first.metadata.get("tags", []), page


def test_every_chapter_installs_bnbook_from_the_book_s_repository() -> None:
    """On Colab the first cell installs ``bnbook[reader]`` from the repository that
    ``_config.yml`` names (its launch buttons point there too): one URL, checked everywhere."""
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    wanted = f'%pip install --quiet "bnbook[reader] @ git+{url}"'
    for page in executable_chapters():
        first = next(c for c in jupytext.read(source_of(page)).cells if c.cell_type == "code")
        installs = [line.strip() for line in first.source.splitlines() if "%pip" in line]
        assert installs == [wanted], f"{page}: {installs}, not {wanted}"


def test_no_backtick_fence_has_a_backtick_in_its_info_string() -> None:
    """CommonMark: such a line is not a fence, so the directive and the cells after it
    silently become paragraph text. Use a colon fence (:::) for titles with roles."""
    for page in toc_files():
        for number, line in enumerate(source_of(page).read_text().splitlines(), 1):
            stripped = line.lstrip()
            if stripped.startswith("```"):
                assert "`" not in stripped.lstrip("`"), f"{page}.md:{number}: {line}"


def _glued_patterns(text: str) -> list[str]:
    """Regular expressions of the names a chapter glues: ``glue("name")`` and, for
    ``glue_claim("key", ...)``, ``key_verdict``, ``key_effect``, ... (an f-string key,
    ``glue(f"x_{name}")``, stands for every ``x_...``)."""
    import re

    def pattern(is_f: str, key: str) -> str:
        return re.sub(r"\\\{.*?\\\}", r"\\w+", re.escape(key)) if is_f else re.escape(key)

    names = [pattern(f, k) for f, k in re.findall(r'glue\((f?)"([\w{}\[\]\'.]+)"', text)]
    for is_f, key in re.findall(r'glue_claim\((f?)"([\w{}\[\]\'.]+)"', text):
        names += [pattern(is_f, key) + "_" + suffix
                  for suffix in ("verdict", "effect", "rule", "value", "low", "high", "n")]
    return names


def test_the_claims_ledger_shows_every_verdict_of_the_book() -> None:
    """A chapter that glues a verdict puts it in the ledger, with its effect and rule;
    the ledger cites only glued keys."""
    import re

    ledger = (ROOT / "book" / "claims.md").read_text()
    cited = set(re.findall(r"\{glue:text\}`(\w+)\.md::(\w+)(?::[^`]*)?`", ledger))
    patterns = {Path(page).name: _glued_patterns(source_of(page).read_text())
                for page in executable_chapters()}
    unknown = {(page, key) for page, key in cited
               if not any(re.fullmatch(p, key) for p in patterns.get(page, []))}
    assert unknown == set(), "book/claims.md cites keys no chapter glues"
    verdicts = {(page, p) for page, ps in patterns.items() for p in ps if p.endswith("verdict")}
    missing = {(page, p) for page, p in verdicts
               if not any(c_page == page and re.fullmatch(p, key) for c_page, key in cited)}
    assert missing == set(), "verdicts missing from book/claims.md"


def test_every_chapter_has_at_least_three_exercises_with_solutions() -> None:
    import re

    for page in executable_chapters():
        if page == "book/status":
            continue
        text = source_of(page).read_text()
        exercises = re.findall(r"\{exercise\}\n:label: ([\w-]+)", text)
        solved = set(re.findall(r"\{solution(?:-start)?\} ([\w-]+)", text))
        assert len(exercises) >= 3, page
        assert set(exercises) <= solved, f"{page}: exercises without a solution"


def test_every_checklist_rule_rests_on_a_row_of_the_ledger() -> None:
    """A rule of thumb stands on a claim the ledger shows, with the verdict that backs it."""
    import re

    checklist = (ROOT / "book" / "checklist.md").read_text()
    ledger = (ROOT / "book" / "claims.md").read_text()
    rules = re.findall(r"```\{practice-rule\} (\w+)\.md::(\w+)\n:when: ([^\n]+)", checklist)
    assert len(rules) >= 10
    for chapter, key, when in rules:
        assert f"{chapter}.md::{key}_verdict" in ledger, f"no ledger row for {chapter}.md::{key}"
        assert set(v.strip() for v in when.split(",")) <= {
            "supported", "not supported", "inconclusive", "exact", "not exact"}, when


def test_a_quantity_printed_twice_says_what_each_figure_measured() -> None:
    """One quantity, one story: where two sentences print different figures for the same
    quantity (tests/quantities.yml lists them), each sentence says what it measured."""
    import re

    import yaml

    registry = yaml.safe_load((ROOT / "tests" / "quantities.yml").read_text())
    assert registry
    for entry in registry:
        assert len(entry["uses"]) >= 2, entry["quantity"]
        for use in entry["uses"]:
            text = source_of(f"book/{use['page']}").read_text()
            assert any(re.fullmatch(p, use["key"]) for p in _glued_patterns(text)), \
                f"{use['page']} glues no {use['key']}"
            lines = [line for line in text.splitlines()
                     if re.search(r"\{glue:text\}`(?:\w+\.md::)?" + use["key"] + r"[:`]", line)]
            assert lines, f"{use['page']}.md prints no {use['key']}"
            for line in lines:
                missing = [phrase for phrase in use["says"] if phrase not in line]
                assert not missing, (f"{use['page']}.md prints {entry['quantity']} "
                                     f"({use['key']}) without saying {missing}: {line[:120]}")
