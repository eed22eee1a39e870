"""Train several independent models at once, one per CPU core.

A small MLP at batch size 32 keeps only one core busy: each step is too short
for TensorFlow to spread over two. Two worker processes, each pinned to one
thread, therefore train two models in the time of one. A job carries the
model as its Keras JSON config, so the architecture is written once, in the
chapter, and rebuilt in the worker from the job's seed.

Set ``BNBOOK_WORKERS`` to choose the number of worker processes (default:
the number of cores, at most 2).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
import multiprocessing

__all__ = ["TrainJob", "TrainOutcome", "default_workers", "run_jobs"]


@dataclass(frozen=True)
class TrainJob:
    """Train the model described by ``model_json`` with SGD on the seed's split.

    ``model_json`` is ``model.to_json()``: the architecture without weights;
    the worker builds fresh weights after seeding with ``seed``.
    """

    label: str
    model_json: str
    seed: int
    learning_rate: float
    epochs: int
    batch_size: int = 32


@dataclass(frozen=True)
class TrainOutcome:
    """What a worker measured: per-epoch history and times, and test accuracy."""

    job: TrainJob
    history: dict[str, list[float]]
    seconds_per_epoch: list[float]
    test_accuracy: float
    test_loss: float


def default_workers() -> int:
    """``BNBOOK_WORKERS`` if set, else the number of cores, at most 2."""
    env = os.environ.get("BNBOOK_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(2, os.cpu_count() or 1))


def _init_worker() -> None:
    """Pin the worker to one thread before TensorFlow starts its thread pools."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _run_job(job: TrainJob) -> TrainOutcome:
    import keras

    from bnbook.data import load_fashion_mnist
    from bnbook.training import compile_sgd, fit, set_seed

    (x_train, y_train), valid, (x_test, y_test) = load_fashion_mnist()
    keras.backend.clear_session()
    set_seed(job.seed)
    model = keras.models.model_from_json(job.model_json)
    compile_sgd(model, job.learning_rate)
    result = fit(model, x_train, y_train, epochs=job.epochs, batch_size=job.batch_size,
                 validation_data=valid, verbose=False)
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)
    return TrainOutcome(job, result.history, result.seconds_per_epoch,
                        float(test_accuracy), float(test_loss))


def run_jobs(jobs: list[TrainJob], workers: int | None = None) -> list[TrainOutcome]:
    """Run ``jobs`` in worker processes; return outcomes in the order of ``jobs``.

    Prints one line per finished job, so a live reader sees progress.
    """
    workers = workers or default_workers()
    start = time.perf_counter()
    outcomes: dict[int, TrainOutcome] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=_init_worker) as pool:
        futures = {pool.submit(_run_job, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[futures[future]] = outcome
            print(f"[{time.perf_counter() - start:5.0f} s] {outcome.job.label}: "
                  f"val_accuracy {outcome.history['val_accuracy'][-1]:.4f}, "
                  f"test_accuracy {outcome.test_accuracy:.4f}")
    return [outcomes[i] for i in range(len(jobs))]
