"""Sphinx extension: reading times, computed from the text, and the book's core path.

* Every page listed in the table of contents gets a line under its title,
  "About N minutes to read", from the words of its prose and of the code it
  shows (collapsed cells, outputs and equations left out) at
  :data:`WORDS_PER_MINUTE`, a pace for technical text read with its code.
* The directive ``core-path`` lists section labels, one per line; it becomes a
  numbered list of links to those sections, each with its own reading time,
  and the total. A label that does not exist is a warning (an error in the
  book's ``-W`` build), so the path cannot silently lose a step when a chapter
  is reorganized.
* The directive ``reading-times`` becomes a table of every chapter with its
  reading time, in the order of the table of contents.

The times are counted when the book is built, so they follow the text.
"""

from __future__ import annotations

import math
import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

#: A reading pace for technical text with code and equations (words per minute).
WORDS_PER_MINUTE = 160
_WORD = re.compile(r"[\w'’-]+")
_SKIP = (nodes.math_block, nodes.raw, nodes.comment, nodes.target, nodes.system_message)
#: Cells a reader does not read unless they open them, and what cells print.
_UNREAD = {"cell_output", "tag_hide-cell", "tag_hide-input", "tag_remove-input"}


class core_path(nodes.General, nodes.Element):
    """Placeholder, resolved once every page has been read."""


class reading_times(nodes.General, nodes.Element):
    """Placeholder, resolved once every page has been read."""


def words(node: nodes.Node) -> int:
    """Words a reader reads under ``node``: prose and shown code; not collapsed cells, cell
    outputs or display math."""
    if isinstance(node, _SKIP):
        return 0
    if isinstance(node, nodes.Element) and _UNREAD & set(node.get("classes", [])):
        return 0
    if isinstance(node, nodes.Text):
        return len(_WORD.findall(node.astext()))
    return sum(words(child) for child in node.children)


def minutes(count: int) -> int:
    """Minutes to read ``count`` words, at least one."""
    return max(1, math.ceil(count / WORDS_PER_MINUTE))


def _plural(count: int) -> str:
    return f"{count} minute" + ("" if count == 1 else "s")


def _store(app: Sphinx, doctree: nodes.document) -> None:
    """Count the page's words and those of every labelled section; put the line under the title."""
    env = app.env
    docname = env.docname
    env.bnbook_page_words = getattr(env, "bnbook_page_words", {})
    env.bnbook_section_words = getattr(env, "bnbook_section_words", {})
    env.bnbook_page_words[docname] = words(doctree)
    for section in doctree.findall(nodes.section):
        for name in section.get("names", []):
            title = section.next_node(nodes.title)   # its nodes: math in a title stays math
            env.bnbook_section_words[name] = (docname, words(section),
                                              [child.deepcopy() for child in title.children])
    title = doctree.next_node(nodes.title)
    if title is not None and docname != env.config.root_doc:
        line = nodes.paragraph("", f"About {_plural(minutes(env.bnbook_page_words[docname]))} to read.",
                               classes=["reading-time"])
        title.parent.insert(title.parent.index(title) + 1, line)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    for attribute in ("bnbook_page_words", "bnbook_section_words"):
        mine = getattr(env, attribute, {})
        mine.update(getattr(other, attribute, {}))
        setattr(env, attribute, mine)


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    getattr(env, "bnbook_page_words", {}).pop(docname, None)
    sections = getattr(env, "bnbook_section_words", {})
    for name in [n for n, (doc, _, _) in sections.items() if doc == docname]:
        del sections[name]


class CorePathDirective(SphinxDirective):
    """``core-path``: one section label per line."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        node = core_path(labels=[line.strip() for line in self.content if line.strip()])
        self.set_source_info(node)
        return [node]


class ReadingTimesDirective(SphinxDirective):
    """``reading-times``: a table of every chapter's reading time."""

    def run(self) -> list[nodes.Node]:
        return [reading_times()]


def _link(app: Sphinx, fromdoc: str, todoc: str, anchor: str,
          content: str | list[nodes.Node]) -> nodes.reference:
    uri = app.builder.get_relative_uri(fromdoc, todoc) + (f"#{anchor}" if anchor else "")
    children = [nodes.Text(content)] if isinstance(content, str) else content
    return nodes.reference("", "", *children, internal=True, refuri=uri)


def _resolve(app: Sphinx, doctree: nodes.document, fromdoc: str) -> None:
    env = app.env
    sections = getattr(env, "bnbook_section_words", {})
    pages = getattr(env, "bnbook_page_words", {})
    for node in list(doctree.findall(core_path)):
        steps, total = nodes.enumerated_list(), 0
        for label in node["labels"]:
            target = env.get_domain("std").labels.get(label)
            if target is None or label not in sections:
                logger.warning(f"core-path: no section labelled {label!r}; add '({label})=' above "
                               "the section, or remove the label from the path", location=node)
                continue
            docname, anchor, _ = target
            _, count, title = sections[label]
            total += minutes(count)
            doc_title = env.titles[docname].astext()
            item = nodes.paragraph("", "")
            item += _link(app, fromdoc, docname, anchor,
                          [nodes.Text(f"{doc_title}: "), *[n.deepcopy() for n in title]])
            item += nodes.Text(f" ({minutes(count)} min)")
            steps += nodes.list_item("", item)
        summary = nodes.paragraph("", f"In all, about {_plural(total)} of reading.",
                                  classes=["core-path-total"])
        node.replace_self([steps, summary])
    for node in list(doctree.findall(reading_times)):
        table = nodes.bullet_list()
        for docname in _toc_order(env):
            if docname not in pages or docname == env.config.root_doc:
                continue
            item = nodes.paragraph("", "")
            item += _link(app, fromdoc, docname, "", env.titles[docname].astext())
            item += nodes.Text(f": {minutes(pages[docname])} min")
            table += nodes.list_item("", item)
        node.replace_self(table)


def _toc_order(env: BuildEnvironment) -> list[str]:
    """Every document in the order of the table of contents, starting at the root."""
    order: list[str] = []

    def walk(docname: str) -> None:
        if docname in order:
            return
        order.append(docname)
        for child in env.toctree_includes.get(docname, []):
            walk(child)

    walk(env.config.root_doc)
    return order


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_node(core_path)
    app.add_node(reading_times)
    app.add_directive("core-path", CorePathDirective)
    app.add_directive("reading-times", ReadingTimesDirective)
    app.connect("doctree-read", _store)
    app.connect("env-merge-info", _merge)
    app.connect("env-purge-doc", _purge)
    app.connect("doctree-resolved", _resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
