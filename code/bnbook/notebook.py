"""A chapter's plumbing: one set-up call, the glue of verdicts, and showing the library's source.

Every chapter starts with :func:`start`, which does what each page would
otherwise repeat: TensorFlow's log level, the book's figure style, one thread
per operation, and a printed line of versions. Verdicts reach the text and
the claims ledger through :func:`glue_claim`, which glues the effect with its
interval, the verdict of the book's rule, and the rule itself, so that no
verdict is ever typed. :func:`show_source` prints a function of the package,
so that a reader sees every line of the machinery once (the appendix does).
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

from bnbook.stats import Comparison

__all__ = ["glue_claim", "show_source", "start"]


def start(*, threads: int | None = 1, seed: int | None = 0, cpu_devices: int = 1) -> str:
    """Set up a chapter's kernel; return (and print) the versions it runs.

    * TensorFlow's C++ notices and Python retracing warnings are silenced
      (they would fill the page, and say nothing about BN);
    * the book's figure style (:func:`bnbook.plotting.use_book_style`);
    * ``threads`` threads per TensorFlow operation (default 1: the book's
      networks are too small to split one operation over two cores, and the
      runners train two or three models side by side instead); ``None``
      leaves TensorFlow's default;
    * ``seed`` seeds Python, NumPy and TensorFlow (``None``: not seeded);
    * ``cpu_devices > 1`` splits the processor into that many logical devices
      (``/cpu:0``, ``/cpu:1``, ...), which ``tf.distribute.MirroredStrategy``
      can train over as if they were separate accelerators; they share the
      cores, so this shows what data-parallel training computes, not its speed.
    * at most two heaps for the C allocator's threads
      (:func:`bnbook.memory.limit_arenas`), which keeps a kernel that trains
      in threads well under its memory budget;
    * the objects alive so far (TensorFlow, Keras and every imported module)
      are moved out of the garbage collector's sight (``gc.freeze``): they
      live as long as the kernel, and every later collection, including
      those ``run_sweep`` makes after training, would otherwise walk through
      all of them again (about a fifth of a chapter's processor time).

    Call it before anything else touches TensorFlow: the thread setting and
    the logical devices can only be made before TensorFlow starts its first
    operation.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bnbook.memory import limit_arenas

    limit_arenas()
    import keras
    import tensorflow as tf

    from bnbook.plotting import use_book_style
    from bnbook.training import set_seed

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    use_book_style()
    if threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already ran an operation in this kernel
            if tf.config.threading.get_intra_op_parallelism_threads() != threads:
                raise RuntimeError("bnbook.notebook.start() must run before TensorFlow's first "
                                   "operation: restart the kernel and run the first cells in order")
    if cpu_devices < 1:
        raise ValueError(f"cpu_devices must be at least 1, got {cpu_devices}")
    if cpu_devices > 1:
        _split_cpu(tf, cpu_devices)
    if seed is not None:
        set_seed(seed)
    gc.collect()
    gc.freeze()
    versions = f"TensorFlow {tf.__version__}, Keras {keras.__version__}"
    print(versions)
    return versions


def _split_cpu(tf: Any, devices: int) -> None:
    """The processor as ``devices`` logical CPU devices, or a clear error when it is too late."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)])
    except RuntimeError:  # the devices were initialized by an earlier operation
        if len(tf.config.list_logical_devices("CPU")) != devices:
            raise RuntimeError(f"start(cpu_devices={devices}) must run before TensorFlow's first "
                               "operation: restart the kernel and run the first cells in order"
                               ) from None


def glue_claim(key: str, comparison: Comparison, *, glue: Callable[..., Any] | None = None) -> None:
    """Glue a verdict and its evidence under ``key``, for the text and the claims ledger.

    Glued names: ``{key}_verdict`` (the rule's verdict), ``{key}_effect`` (the
    effect with its interval and n, printed with the digits the interval
    supports), ``{key}_rule`` (the claim the verdict decides, with its
    threshold), and ``{key}_value``, ``{key}_low``, ``{key}_high``, ``{key}_n``
    as numbers. ``glue`` defaults to ``myst_nb.glue``.
    """
    if glue is None:
        from myst_nb import glue
    for suffix, value in (("verdict", comparison.verdict), ("effect", comparison.text),
                          ("rule", comparison.rule), ("value", comparison.effect),
                          ("low", comparison.low), ("high", comparison.high),
                          ("n", comparison.n)):
        glue(f"{key}_{suffix}", value, display=False)


def show_source(obj: Callable[..., Any] | type) -> None:
    """Print the source of a function or class of the package, as the reader's reference."""
    module = inspect.getmodule(obj)
    name = getattr(obj, "__qualname__", repr(obj))
    print(f"# {module.__name__ if module else '?'}.{name}\n{inspect.getsource(obj)}")
