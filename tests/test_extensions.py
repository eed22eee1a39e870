"""The book's own Sphinx extensions (book/_ext): reading times, practice rules that stand
only while their claim's verdict backs them, and the accessibility fixes. The built pages are
checked in test_site and test_browser."""

from __future__ import annotations

import sys

from docutils import nodes

from booktools.layout import ROOT

sys.path.insert(0, str(ROOT / "book" / "_ext"))

import accessibility  # noqa: E402
import practice_rules  # noqa: E402
import reading_time  # noqa: E402


def test_reading_time_counts_prose_not_code_or_outputs() -> None:
    section = nodes.section()
    section += nodes.paragraph("", "one two three four")
    section += nodes.literal_block("", "x = 1 + 2  # code is not read as prose " * 50)
    output = nodes.container(classes=["cell_output"])
    output += nodes.paragraph("", "printed words " * 50)
    section += output
    assert reading_time.words(section) == 4
    assert reading_time.minutes(0) == 1
    assert reading_time.minutes(reading_time.WORDS_PER_MINUTE * 3 + 1) == 4


def test_a_rule_stands_only_on_the_verdicts_that_back_it() -> None:
    assert practice_rules.decide("supported", ["supported"])
    assert practice_rules.decide("not supported", ["not supported", "inconclusive"])
    assert not practice_rules.decide("inconclusive", ["supported"])
    assert not practice_rules.decide(None, ["supported"])


def test_glued_text_reads_a_string_as_the_text_role_shows_it() -> None:
    data = {"k_verdict": {"data": {"text/plain": "'supported'"}},
            "k_effect": {"data": {"text/plain": "'+0.016 ± 0.003 (95 % CI, n = 5)'"}},
            "k_n": {"data": {"text/plain": "5"}}}
    assert practice_rules.glued_text(data, "k_verdict") == "supported"
    assert practice_rules.glued_text(data, "k_effect").startswith("+0.016 ± 0.003")
    assert practice_rules.glued_text(data, "k_n") == "5"
    assert practice_rules.glued_text(data, "missing") is None


def test_bibliography_entries_become_list_items() -> None:
    body = ('<div role="list" class="citation-list">\n<div class="citation" id="id6" '
            'role="doc-biblioentry">\n<span class="label">[BKH16]</span></div>')
    fixed = accessibility.list_items_not_biblioentries(body)
    assert 'role="doc-biblioentry"' not in fixed
    assert fixed.count('role="listitem"') == 1 and 'role="list"' in fixed


def test_the_accessibility_stylesheet_exists_where_the_extension_serves_it() -> None:
    assert (accessibility.CSS_DIR / accessibility.CSS_FILE).is_file()
