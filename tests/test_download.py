"""A reader's path: download a chapter's executed ``.ipynb`` from the built site and
run it outside the repository, with ``bnbook`` installed from a wheel of this repository.

The fresh virtual environment sees the pinned third-party packages of ``.venv``
through a ``.pth`` line (installing TensorFlow again would take minutes), but
not the editable ``bnbook`` of ``.venv``: a ``.pth`` line adds a folder to
``sys.path`` without running the ``.pth`` files inside it, so the only
``bnbook`` it can import is the one installed from the wheel.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat

from booktools.layout import ROOT

HTML = ROOT / "_build" / "html"
#: The chapter a reader downloads in this test: the one that executes fastest.
DOWNLOADED = "book/working_principle"

RUN = """
import sys, nbformat, nbclient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell("import bnbook, sys; print(bnbook.__file__); print(sys.executable)"))
nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                        resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, path)
"""


def run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_downloaded_notebook_runs_outside_the_repository(tmp_path: Path) -> None:
    downloaded = HTML / "_sources" / f"{DOWNLOADED}.ipynb"
    assert downloaded.is_file(), "run `make book` first"
    reader = tmp_path / "reader"
    reader.mkdir()
    notebook = reader / downloaded.name
    notebook.write_bytes(downloaded.read_bytes())

    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp_path / "dist", ROOT,
        cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("bnbook-*.whl"))
    run(sys.executable, "-m", "venv", tmp_path / "venv", cwd=tmp_path)
    python = tmp_path / "venv" / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
               cwd=tmp_path).strip()
    (Path(site) / "book_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", wheel, cwd=tmp_path)

    run(python, "-c", RUN, notebook, reader, cwd=reader)

    executed = nbformat.read(notebook, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors
    where = executed.cells[-1].outputs[0]["text"].splitlines()
    assert where[0].startswith(site), f"bnbook imported from {where[0]}, not the wheel"
    assert where[1] == str(python)
