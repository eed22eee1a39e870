"""The book's own Sphinx extensions (book/_ext): reading times, practice rules that stand
only while their claim's verdict backs them, the status page's facts, the single-page build, and
the accessibility fixes. The built pages are checked in test_site and test_browser."""

from __future__ import annotations

import sys

import pytest
from docutils import frontend, nodes
from docutils.parsers import rst
from docutils.utils import new_document

from booktools.layout import ROOT

sys.path.insert(0, str(ROOT / "book" / "_ext"))

import accessibility  # noqa: E402
import practice_rules  # noqa: E402
import reading_time  # noqa: E402
import single_page  # noqa: E402
import status_page  # noqa: E402


def test_reading_time_counts_prose_and_shown_code_not_outputs_or_collapsed_cells() -> None:
    section = nodes.section()
    section += nodes.paragraph("", "one two three four")
    section += nodes.literal_block("", "x = one + two")
    output = nodes.container(classes=["cell_output"])
    output += nodes.paragraph("", "printed words " * 50)
    section += output
    collapsed = nodes.container(classes=["cell", "tag_hide-cell"])
    collapsed += nodes.literal_block("", "assert check " * 50)
    section += collapsed
    section += nodes.math_block("", "x = y " * 30)
    assert reading_time.words(section) == 4 + 3
    assert reading_time.minutes(0) == 1
    assert reading_time.minutes(reading_time.WORDS_PER_MINUTE * 3 + 1) == 4


def test_a_rule_stands_only_on_the_verdicts_that_back_it() -> None:
    assert practice_rules.decide("supported", ["supported"])
    assert practice_rules.decide("not supported", ["not supported", "inconclusive"])
    assert not practice_rules.decide("inconclusive", ["supported"])
    assert not practice_rules.decide(None, ["supported"])


def test_a_page_of_rules_is_read_again_when_a_rule_s_chapter_or_the_ledger_changes() -> None:
    assert practice_rules.rule_sources("book/checklist", "design.md") == ["book/design.md",
                                                                          "book/claims.md"]


def test_glued_text_reads_a_string_as_the_text_role_shows_it() -> None:
    data = {"k_verdict": {"data": {"text/plain": "'supported'"}},
            "k_effect": {"data": {"text/plain": "'+0.016 ± 0.003 (95 % CI, n = 5)'"}},
            "k_n": {"data": {"text/plain": "5"}}}
    assert practice_rules.glued_text(data, "k_verdict") == "supported"
    assert practice_rules.glued_text(data, "k_effect").startswith("+0.016 ± 0.003")
    assert practice_rules.glued_text(data, "k_n") == "5"
    assert practice_rules.glued_text(data, "missing") is None


def test_the_book_s_version_is_bnbook_s(tmp_path) -> None:
    assert status_page.read_version(ROOT / status_page.VERSION_FILE) == \
        __import__("bnbook").__version__
    (tmp_path / "m.py").write_text('"""No version."""\n')
    with pytest.raises(ValueError, match="__version__"):
        status_page.read_version(tmp_path / "m.py")


def test_the_execution_table_says_ok_or_failed_in_words() -> None:
    document = new_document("status", frontend.get_default_settings(rst.Parser))
    table = nodes.table()
    for mark in ["\u2705", "\u274c"]:
        table += nodes.paragraph("", "", nodes.Text(mark))
    document += table
    document += nodes.paragraph("", "\u2705 outside a table stays")
    transform = status_page.StatusAsText(document)
    transform.run()
    assert [p.astext() for p in table.findall(nodes.paragraph)] == ["ok", "failed"]
    assert document[-1].astext().startswith("\u2705")


def test_the_single_page_builder_also_gets_the_html_node_handlers() -> None:
    handlers = {"html": {"hidden": ("visit_h", None), "exercise": ("html", None)},
                "singlehtml": {"exercise": ("single", None)}}
    merged = single_page.merged_handlers(handlers, "singlehtml")
    assert merged == {"hidden": ("visit_h", None), "exercise": ("single", None)}


def test_bibliography_entries_become_list_items() -> None:
    body = ('<div role="list" class="citation-list">\n<div class="citation" id="id6" '
            'role="doc-biblioentry">\n<span class="label">[BKH16]</span></div>')
    fixed = accessibility.list_items_not_biblioentries(body)
    assert 'role="doc-biblioentry"' not in fixed
    assert fixed.count('role="listitem"') == 1 and 'role="list"' in fixed


def test_the_accessibility_stylesheet_exists_where_the_extension_serves_it() -> None:
    assert (accessibility.CSS_DIR / accessibility.CSS_FILE).is_file()


def test_a_rule_quotes_what_its_ledger_row_measured() -> None:
    ledger = ("| Claim | Source | Tested in | Measured | Rule | Verdict |\n|---|---|---|---|---|---|\n"
              "| BN helps | paper | {doc}`x` | test accuracy, BN − no BN: "
              "{glue:text}`x.md::x_gain_effect:s` | {glue:text}`x.md::x_gain_rule:s` | v |\n"
              "| Bare | paper | {doc}`x` | {glue:text}`x.md::x_bare_effect:s` | r | v |\n")
    labels = practice_rules.ledger_labels(ledger)
    assert labels == {"x.md::x_gain": "test accuracy, BN − no BN:", "x.md::x_bare": ""}
