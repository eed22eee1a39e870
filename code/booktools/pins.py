"""The pinned requirements: read them, check Binder's copy against them, relax them for ``make latest``.

``requirements.txt`` pins every dependency of the book, one ``name==version`` a line, in groups under
comment headings. Two other environments derive from it:

* Binder's ``binder/requirements.txt`` pins the few packages a reader's kernel needs; every pin there
  must be the pin of ``requirements.txt`` (:func:`disagreements`, checked by the tests).
* ``make latest`` installs ``requirements.txt`` with the pins of the group headed
  :data:`COMPUTATIONS` lifted (:func:`relaxed`): the newest TensorFlow, Keras, NumPy, ... with the
  book's tooling as pinned, to see what a new release would change.

    python -m booktools relaxed        # requirements.txt with the computations unpinned, to stdout
"""

from __future__ import annotations

import re
from pathlib import Path

from booktools.layout import ROOT

REQUIREMENTS = ROOT / "requirements.txt"
BINDER = ROOT / "binder" / "requirements.txt"
#: The comment line in requirements.txt over the book's computational dependencies.
COMPUTATIONS = "# The computations."
#: The comment line over the test tools, which never change what a chapter computes.
TESTS = "# The tests."

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def canonical(name: str) -> str:
    """A distribution name as pip compares it (PEP 503): ``Sphinx_Book.Theme`` -> ``sphinx-book-theme``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str) -> dict[str, str]:
    """``{canonical name: version}`` of a requirements file's text, every line ``name==version``.

    Blank lines and comments are skipped; any other line (a range, an URL, an option) is an
    error, since a requirements file of the book pins exactly.
    """
    pins: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if not match:
            raise ValueError(f"line {number}: {line!r} is not 'name==version'; pin it exactly")
        pins[canonical(match[1])] = match[2]
    return pins


def disagreements(copy: dict[str, str], pinned: dict[str, str]) -> list[str]:
    """What is wrong with the pins ``copy`` (Binder's) against ``pinned`` (``requirements.txt``):
    a package ``pinned`` lacks, or another version of it; empty when they agree."""
    problems = []
    for name, version in sorted(copy.items()):
        if name not in pinned:
            problems.append(f"{name}=={version} is not in requirements.txt")
        elif pinned[name] != version:
            problems.append(f"{name}=={version}, but requirements.txt pins {name}=={pinned[name]}")
    return problems


def _split(text: str, heading: str) -> tuple[list[str], list[str]]:
    """The lines of ``text`` outside and inside the group under the comment line ``heading``
    (up to the next comment line or the end)."""
    outside, inside, within = [], [], False
    for line in text.splitlines():
        if line.startswith("#"):
            within = line.strip() == heading
        (inside if within else outside).append(line)
    return outside, inside


def group(text: str, heading: str = COMPUTATIONS) -> dict[str, str]:
    """``{canonical name: version}`` of the pins under the comment line ``heading``. A missing or
    empty group is an error: ``make latest`` would silently install the pinned versions."""
    pins = read_pins("\n".join(_split(text, heading)[1]))
    if not pins:
        raise ValueError(f"no pinned package under the heading {heading!r}")
    return pins


def without_group(text: str, heading: str = TESTS) -> str:
    """``text`` without the group under ``heading`` (its heading included)."""
    return "\n".join(_split(text, heading)[0]) + "\n"


def relaxed(text: str, heading: str = COMPUTATIONS) -> str:
    """The requirements ``text`` with the pins of :func:`group` ``heading`` lifted (the name only)."""
    lifted = group(text, heading)
    lines = []
    for line in text.splitlines():
        match = _PIN.match(line.split("#", 1)[0].strip())
        lines.append(match[1] if match and canonical(match[1]) in lifted else line)
    return "\n".join(lines) + "\n"
