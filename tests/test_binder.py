"""The Binder path, as repo2docker builds it: ``binder/requirements.txt`` agrees with the pins of
``requirements.txt`` and covers what ``bnbook`` imports, and a chapter opened as Binder opens it
runs in an environment built from ``binder/`` alone.

The emulation (the slow test here, minutes, most of them pip unpacking TensorFlow): a
fresh virtual environment of the Python ``binder/runtime.txt`` names, ``pip install -r
binder/requirements.txt`` (pip may use its cache and the registry), ``binder/postBuild`` run in a
copy of the repository, the data where ``binder/apt.txt``'s package puts it, and an empty home
(no Keras cache, no array cache). Then the chapter's ``.md`` is opened with jupytext, as
Binder's Jupyter opens it, and executed in that environment's kernel. Nothing of ``.venv`` is
visible to it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement

from booktools.layout import ROOT
from booktools.pins import BINDER, REQUIREMENTS, canonical, disagreements, read_pins

#: The chapter a Binder reader opens in this test: a quick one that trains and plots.
CHAPTER = "book/concept"
#: Binder runs on CPUs: the CPU build stands for the ``tensorflow`` that bnbook requires.
SAME_PACKAGE = {"tensorflow": "tensorflow-cpu"}
DEBIAN_DATA = "/usr/share/datasets/fashion-mnist"

RUN = """
import sys
from pathlib import Path
import jupytext, nbclient, nbformat
chapter, out = Path(sys.argv[1]), sys.argv[2]
notebook = jupytext.read(chapter)
notebook.cells.append(nbformat.v4.new_code_cell(sys.argv[3]))
nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                        resources={"metadata": {"path": str(chapter.parent)}}).execute()
nbformat.write(notebook, out)
"""

#: Appended to the chapter: every module of bnbook imports, and where things came from.
WHERE = """
import importlib, pkgutil, sys
import bnbook
from bnbook.data import find_data_dir
for module in pkgutil.iter_modules(bnbook.__path__, "bnbook."):
    importlib.import_module(module.name)
print(sys.executable)
print(bnbook.__file__)
print(find_data_dir(download=False))
"""


def test_binder_pins_are_those_of_requirements_txt() -> None:
    assert disagreements(read_pins(BINDER.read_text()), read_pins(REQUIREMENTS.read_text())) == []


def test_binder_installs_everything_bnbook_and_a_chapter_need() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = project["dependencies"] + project["optional-dependencies"]["reader"]
    names = {SAME_PACKAGE.get(canonical(Requirement(r).name), canonical(Requirement(r).name))
             for r in needed}
    missing = names - set(read_pins(BINDER.read_text()))
    assert not missing, f"binder/requirements.txt lacks {sorted(missing)}"


def test_binder_runs_the_python_of_runtime_txt() -> None:
    wanted = (ROOT / "binder" / "runtime.txt").read_text().strip()  # python-3.11
    assert wanted == f"python-{sys.version_info.major}.{sys.version_info.minor}", \
        f"binder/runtime.txt says {wanted}; this test emulates Binder with Python {sys.version}"


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, args))[:200]} failed:\n" \
                                 f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def repository_copy(dest: Path) -> Path:
    """The repository's files as a clone has them (tracked, and new files git does not ignore)."""
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(source.read_bytes())
    return dest


def debian_package_installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                          capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.endswith("installed")


@pytest.fixture
def binder_venv(tmp_path: Path) -> Iterator[Path]:
    """A fresh virtual environment's folder, removed afterwards (TensorFlow makes it 1.8 GB)."""
    yield tmp_path / "binder-venv"
    shutil.rmtree(tmp_path / "binder-venv", ignore_errors=True)


def test_a_chapter_runs_as_binder_builds_it(tmp_path: Path, binder_venv: Path) -> None:
    for package in (ROOT / "binder" / "apt.txt").read_text().split():
        if not debian_package_installed(package):
            pytest.fail(f"binder/apt.txt's {package} is not installed: `make setup` as root installs it")
    clean = {k: v for k, v in os.environ.items()
             if k not in {"PYTHONPATH", "VIRTUAL_ENV", "BNBOOK_DATA_DIR", "BNBOOK_CACHE_DIR"}}
    venv = binder_venv
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    env = {**clean, "PATH": f"{venv / 'bin'}{os.pathsep}{clean['PATH']}",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # --no-compile: byte-compiling TensorFlow's files up front would double the install's time
    # and change nothing the kernel does (Python compiles what it imports).
    run(python, "-m", "pip", "install", "--quiet", "--no-compile", "-r", BINDER, cwd=tmp_path, env=env)
    repo = repository_copy(tmp_path / "repo")
    run("bash", repo / "binder" / "postBuild", cwd=repo, env=env)

    home = tmp_path / "home"  # a reader's: no Keras download, no cached arrays
    home.mkdir()
    out = tmp_path / "executed.ipynb"
    run(python, "-c", RUN, repo / f"{CHAPTER}.md", out, WHERE, cwd=repo, env={**env, "HOME": str(home)})

    executed = nbformat.read(out, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not code[0].outputs, "the first cell installed bnbook: postBuild did not"
    where = "".join(o.get("text", "") for o in code[-1].outputs).split()
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path)
    assert where[0] == str(python)
    assert where[1].startswith(site.strip()), f"bnbook imported from {where[1]}"
    assert where[2] == DEBIAN_DATA
