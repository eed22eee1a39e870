"""bnbook.notebook: a chapter's set-up call, the glue of a verdict, and showing source."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bnbook.notebook import glue_claim, show_source
from bnbook.stats import compare, format_effect


def run_in_fresh_python(script: str) -> None:
    """Run ``script`` in a new interpreter, where TensorFlow has not started; it must succeed."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_start_sets_up_a_fresh_kernel_once() -> None:
    script = """
import gc
import matplotlib as mpl, tensorflow as tf
from bnbook.notebook import start
assert gc.get_freeze_count() == 0
versions = start(threads=1)
assert gc.get_freeze_count() > 10_000          # TensorFlow's objects, out of the collector's way
assert tf.config.threading.get_intra_op_parallelism_threads() == 1
assert mpl.rcParams["figure.facecolor"] == "white"
assert versions.startswith("TensorFlow ")
tf.constant(1.0) + 1.0
start(threads=1)                      # the same setting again is fine
try:
    start(threads=2)                  # too late: TensorFlow already ran an operation
except RuntimeError as err:
    assert "restart the kernel" in str(err)
else:
    raise SystemExit("start(threads=2) after an operation should fail")
"""
    run_in_fresh_python(script)


def test_start_splits_the_processor_into_logical_devices_before_the_first_operation() -> None:
    script = """
import tensorflow as tf
from bnbook.notebook import start
start(cpu_devices=2)
names = [d.name for d in tf.config.list_logical_devices("CPU")]
assert names == ["/device:CPU:0", "/device:CPU:1"], names
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
start(cpu_devices=2)                  # the same split again is fine
message = ""
try:
    start(cpu_devices=3)              # too late: the devices exist
except RuntimeError as err:
    message = str(err)
assert "restart the kernel" in message, "start(cpu_devices=3) after the first op must fail"
"""
    run_in_fresh_python(script)


def test_glue_claim_glues_verdict_effect_rule_and_numbers() -> None:
    glued: dict[str, object] = {}
    result = compare([0.02, 0.021, 0.019, 0.02, 0.022], threshold=0.005)
    glue_claim("ch_claim", result, glue=lambda name, value, display: glued.__setitem__(name, value))
    assert glued["ch_claim_verdict"] == "supported"
    assert glued["ch_claim_effect"] == result.text
    assert glued["ch_claim_rule"] == "effect > +0.005"
    assert glued["ch_claim_n"] == 5
    assert glued["ch_claim_low"] < glued["ch_claim_value"] < glued["ch_claim_high"]


def test_show_source_prints_the_function(capsys: pytest.CaptureFixture) -> None:
    show_source(format_effect)
    out = capsys.readouterr().out
    assert out.startswith("# bnbook.stats.format_effect") and "def format_effect(" in out
