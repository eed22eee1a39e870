"""Sphinx extension: rules of thumb that stand only while the book's evidence supports them.

The practitioner's checklist is a list of ``practice-rule`` directives::

    ```{practice-rule} design.md::design_placement
    :when: supported
    :scope: our MLPs on Fashion-MNIST

    Put BN before the activation.
    ```

The argument names a claim a chapter glued with ``bnbook.notebook.glue_claim``
(``<chapter>.md::<key>``). When the site is written, after every chapter has
glued its results, each rule is checked against the claim's current verdict:

* the verdict is one of ``:when:`` (comma-separated): the rule is shown, with
  what was measured (the words of the claim's row in the claims ledger,
  ``book/claims.md``), the effect and its interval, the verdict, its scope and
  a link to the chapter that tests it;
* any other verdict: the rule drops out of the list, and a line at the end of
  the page ("Rules the evidence no longer supports") names it with the verdict
  it now has, so that a rebuild after a library change cannot leave a rule the
  book no longer backs.
"""

from __future__ import annotations

import posixpath
import re
from ast import literal_eval
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)


class practice_rule(nodes.General, nodes.Element):
    """A rule and the claim it rests on, resolved once every chapter has glued its results."""


class dropped_rules(nodes.General, nodes.Element):
    """Where the rules the evidence no longer supports are listed."""


class PracticeRuleDirective(SphinxDirective):
    required_arguments = 1
    has_content = True
    option_spec = {"when": directives.unchanged_required, "scope": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        target = self.arguments[0]
        if "::" not in target or not target.split("::", 1)[0].endswith(".md"):
            raise self.error(f"practice-rule needs '<chapter>.md::<claim key>', got {target!r}")
        if "when" not in self.options or "scope" not in self.options:
            raise self.error("practice-rule needs :when: (the verdicts that back it) and :scope:")
        chapter, key = target.split("::", 1)
        for source in rule_sources(self.env.docname, chapter):
            self.env.note_dependency(source)   # read again when its chapter or the ledger changes
        node = practice_rule(chapter=chapter[:-3], key=key, scope=self.options["scope"],
                             when=[v.strip() for v in self.options["when"].split(",")])
        self.set_source_info(node)
        self.state.nested_parse(self.content, self.content_offset, node)
        return [node]


class DroppedRulesDirective(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        return [dropped_rules()]


def rule_sources(docname: str, chapter: str) -> list[str]:
    """The sources a page of rules depends on, relative to the source folder: a rule's
    chapter (whose glue gives its verdict) and the claims ledger (whose row labels it)."""
    here = posixpath.dirname(docname)
    return [posixpath.normpath(posixpath.join(here, name)) for name in (chapter, "claims.md")]


def glued_text(data: dict[str, Any], name: str) -> str | None:
    """The plain text a chapter glued under ``name`` (quotes of a string removed)."""
    output = data.get(name)
    if output is None:
        return None
    text = output.get("data", {}).get("text/plain", "")
    try:
        value = literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    return str(value)


def ledger_labels(ledger: str) -> dict[str, str]:
    """What each claim measured, from the claims ledger's Markdown: ``{"chapter.md::key": label}``.

    The label is the text of a row's "Measured" cell before the glued effect
    (``"test accuracy, BN − no BN: "``); empty when the cell holds the effect alone.
    """
    labels = {}
    for match in re.finditer(r"^\|(?:[^|\n]*\|){3}([^|\n]*?)\{glue:text\}`([\w/.]+::\w+)_effect:s`",
                             ledger, re.M):
        labels[match.group(2)] = match.group(1).strip()
    return labels


def decide(verdict: str | None, when: list[str]) -> bool:
    """Whether a rule stands: its claim has one of the verdicts that back it."""
    return verdict is not None and verdict in when


class ResolveRules(SphinxPostTransform):
    """Keep or drop each rule by its claim's current verdict (after the glue is written)."""

    default_priority = 4   # before myst-nb replaces the glue references (priority 5)

    def apply(self, **kwargs: Any) -> None:
        from myst_nb.ext.glue.crossref import read_glue_cache

        folder = self.env.mystnb_config.output_folder
        here = posixpath.dirname(self.env.docname)
        ledger = Path(self.env.doc2path(posixpath.join(here, "claims")))
        labels = ledger_labels(ledger.read_text()) if ledger.is_file() else {}
        dropped: list[nodes.Node] = []
        for node in list(self.document.findall(practice_rule)):
            measured = labels.get(f"{node['chapter']}.md::{node['key']}", "")
            node["chapter"] = posixpath.normpath(posixpath.join(here, node["chapter"]))
            data = read_glue_cache(folder, node["chapter"])
            verdict = glued_text(data, f"{node['key']}_verdict")
            effect = glued_text(data, f"{node['key']}_effect")
            if verdict is None or effect is None:
                logger.warning(f"practice-rule: {node['chapter']}.md glues no claim {node['key']!r} "
                               "(glue_claim glues <key>_verdict and <key>_effect)", location=node)
            uri = self.app.builder.get_relative_uri(self.env.docname, node["chapter"])
            link = nodes.reference("", self.env.titles[node["chapter"]].astext()
                                   if node["chapter"] in self.env.titles else node["chapter"],
                                   internal=True, refuri=uri)
            if decide(verdict, node["when"]):
                evidence = nodes.paragraph("", "", classes=["rule-evidence"])
                evidence += nodes.Text(f"Evidence: {measured} {effect}; verdict: {verdict}. "
                                       f"Measured in {node['scope']}; tested in ")
                evidence += link
                evidence += nodes.Text(".")
                box = nodes.container("", *node.children, evidence, classes=["practice-rule"])
                node.replace_self(box)
            else:
                item = nodes.paragraph("", "")
                item += nodes.Text(f"{nodes.Element.astext(node).strip()} (now {verdict or 'not glued'}; ")
                item += link
                item += nodes.Text(")")
                dropped.append(nodes.list_item("", item))
                node.parent.remove(node)
        for node in list(self.document.findall(dropped_rules)):
            if dropped:
                title = nodes.paragraph("", "Rules the evidence no longer supports:",
                                        classes=["dropped-rules"])
                node.replace_self([title, nodes.bullet_list("", *dropped)])
            else:
                node.replace_self([])


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_node(practice_rule)
    app.add_node(dropped_rules)
    app.add_directive("practice-rule", PracticeRuleDirective)
    app.add_directive("dropped-rules", DroppedRulesDirective)
    app.add_post_transform(ResolveRules)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
