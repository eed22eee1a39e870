"""Citation metadata (issue 17): CITATION.cff is valid Citation File Format 1.2.0, and the BibTeX
entry on the landing page says what it says.

check-jsonschema ships the CFF 1.2.0 schema (``vendor.citation-file-format``), so the check runs
offline, as tests/test_workflow.py does for the workflows.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

import bnbook
from booktools.layout import ROOT

CFF = ROOT / "CITATION.cff"
CHECK = Path(sys.executable).parent / "check-jsonschema"


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECK), "--builtin-schema", "vendor.citation-file-format",
                           "--default-filetype", "yaml", str(path)], capture_output=True, text=True)


def test_citation_cff_is_valid() -> None:
    done = validate(CFF)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_validation_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "CITATION.cff"
    cff = yaml.safe_load(CFF.read_text())
    del cff["authors"]
    broken.write_text(yaml.safe_dump(cff))
    assert validate(broken).returncode != 0


def bibtex_on_the_landing_page() -> dict[str, str]:
    """The fields of the BibTeX entry under "How to cite" in book/intro.md."""
    text = (ROOT / "book" / "intro.md").read_text()
    section = text.split("## How to cite", 1)[1]
    entry = re.search(r"```bibtex\n(@book\{.*?\n\})\n```", section, re.S)
    assert entry, "no @book entry in a bibtex block under 'How to cite' in book/intro.md"
    return {key: value.strip("{}") for key, value in
            re.findall(r"^\s*(\w+)\s*=\s*(\{.*?\}),?$", entry.group(1), re.M)}


def test_the_landing_page_cites_what_citation_cff_says() -> None:
    cff = yaml.safe_load(CFF.read_text())
    cited = cff["preferred-citation"]
    bibtex = bibtex_on_the_landing_page()
    assert bibtex["title"] == cited["title"] == cff["title"]
    assert bibtex["author"] == " and ".join(a["name"] for a in cited["authors"])
    assert bibtex["year"] == str(cited["year"])
    assert bibtex["url"] == cited["url"] == cff["repository-code"]
    assert bibtex["version"] == cited["version"] == cff["version"] == bnbook.__version__
