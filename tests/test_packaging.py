"""The package a reader installs: ``bnbook``'s wheel, as Colab's first cell installs it.

Colab ships the ``tensorflow`` distribution; a wheel that required ``tensorflow-cpu`` would make
pip install a second TensorFlow over the same files. CI and the book's build install the pinned
``tensorflow-cpu`` from requirements.txt and ``bnbook`` with ``--no-deps``.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser

import pytest
from packaging.requirements import Requirement

import bnbook
from booktools.layout import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel of this repository, built as pip builds it for a reader (isolated)."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True)
    return zipfile.ZipFile(next(dist.glob("bnbook-*.whl")))


@pytest.fixture(scope="module")
def metadata(wheel: zipfile.ZipFile) -> dict[str, list[str]]:
    """The wheel's METADATA headers that matter here."""
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    message = Parser().parsestr(wheel.read(name).decode())
    return {key: message.get_all(key, []) for key in ("Version", "Requires-Dist")}


def test_the_wheel_depends_on_tensorflow_not_tensorflow_cpu(metadata: dict[str, list[str]]) -> None:
    required = {Requirement(r).name for r in metadata["Requires-Dist"] if "extra ==" not in r}
    assert "tensorflow" in required
    assert "tensorflow-cpu" not in required
    assert {"keras", "numpy", "scipy", "matplotlib"} <= required


def test_the_wheel_s_version_is_bnbook_s(metadata: dict[str, list[str]]) -> None:
    assert metadata["Version"] == [bnbook.__version__]


def test_the_wheel_holds_bnbook_but_not_the_build_tools(wheel: zipfile.ZipFile) -> None:
    assert (ROOT / "code" / "booktools").is_dir()  # in the repository, not in the wheel
    names = wheel.namelist()
    assert "bnbook/__init__.py" in names
    assert not any(n.startswith("booktools/") for n in names)
