"""Train several independent models at once, side by side in threads of one kernel.

A small MLP at batch size 32 keeps only about one core busy: each step is too
short for TensorFlow to spread over two. Threads of the same process, each
training its own model, therefore train several models in little more than
the time of one. TensorFlow runs a compiled training step without holding
Python's global interpreter lock, so the threads really run side by side,
and they share one copy of TensorFlow and of the data: a second process
would cost another 500 MB for its own TensorFlow alone.

A job carries the model as its Keras JSON config, so the architecture is
written once, in the chapter, and rebuilt from the job's seed. Seeding,
building the model and drawing the shuffled batches happen under one lock,
so a run gives the same numbers whichever thread takes it, and the same
numbers as ``model.fit`` on the float32 arrays in a plain loop.

Set ``BNBOOK_WORKERS`` to choose the number of threads (default: one more
than the number of cores, so that no core idles while a thread waits for
its next batches or for Python; on 2 cores, 3 threads measured about 10 %
faster than 2).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import keras
import tensorflow as tf

from bnbook.data import load_fashion_mnist
from bnbook.training import compile_sgd, fit, image_batches, seed_lock, set_seed

__all__ = ["TrainJob", "TrainOutcome", "default_workers", "run_jobs"]


@dataclass(frozen=True)
class TrainJob:
    """Train the model described by ``model_json`` with SGD on the seed's split.

    ``model_json`` is ``model.to_json()``: the architecture without weights;
    the job builds fresh weights after seeding with ``seed``.
    """

    label: str
    model_json: str
    seed: int
    learning_rate: float
    epochs: int
    batch_size: int = 32


@dataclass(frozen=True)
class TrainOutcome:
    """What a job measured: per-epoch history and times, and test accuracy."""

    job: TrainJob
    history: dict[str, list[float]]
    seconds_per_epoch: list[float]
    test_accuracy: float
    test_loss: float


def default_workers() -> int:
    """``BNBOOK_WORKERS`` if set, else one more than the number of cores."""
    env = os.environ.get("BNBOOK_WORKERS")
    if env:
        return max(1, int(env))
    return (os.cpu_count() or 1) + 1


class _Trainer:
    """Runs jobs on the uint8 images, converted to tensors once for all jobs."""

    def __init__(self) -> None:
        splits = load_fashion_mnist(scaled=False)
        (self.train, self.valid, self.test) = [
            (tf.convert_to_tensor(x), tf.convert_to_tensor(y)) for x, y in splits]

    def run(self, job: TrainJob) -> TrainOutcome:
        with seed_lock:  # seed, build and shuffle as one step
            set_seed(job.seed)
            model = keras.models.model_from_json(job.model_json)
            compile_sgd(model, job.learning_rate)
            train = image_batches(*self.train, batch_size=job.batch_size, shuffle=True)
            valid = image_batches(*self.valid, batch_size=job.batch_size)
        result = fit(model, train, epochs=job.epochs, validation_data=valid, verbose=False)
        test_loss, test_accuracy = model.evaluate(
            image_batches(*self.test, batch_size=1024), verbose=0)
        return TrainOutcome(job, result.history, result.seconds_per_epoch,
                            float(test_accuracy), float(test_loss))


def run_jobs(jobs: list[TrainJob], workers: int | None = None) -> list[TrainOutcome]:
    """Run ``jobs`` side by side in ``workers`` threads; return outcomes in the order of ``jobs``.

    Threads take the jobs in the order given: list the longest first so that
    both cores stay busy to the end. Prints one line per finished job, so a
    live reader sees progress.
    """
    workers = workers or default_workers()
    trainer = _Trainer()
    start = time.perf_counter()
    outcomes: dict[int, TrainOutcome] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(trainer.run, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[futures[future]] = outcome
            print(f"[{time.perf_counter() - start:5.0f} s] {outcome.job.label}: "
                  f"val_accuracy {outcome.history['val_accuracy'][-1]:.4f}, "
                  f"test_accuracy {outcome.test_accuracy:.4f}")
    return [outcomes[i] for i in range(len(jobs))]
