"""Training helpers shared by every chapter: seeding, compiling, fitting, timing.

The chapters define their models in full; these helpers only remove the
plumbing that would otherwise be written again on every page.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "EpochLog",
    "FitResult",
    "accuracy",
    "compile_sgd",
    "fit",
    "image_batches",
    "predict_proba",
    "seed_lock",
    "set_seed",
]

#: Steps run inside one compiled call. 64 makes ``fit`` about twice as fast on a
#: CPU at batch 32 and gives the same numbers as 1 (the optimizer still updates
#: after every batch; only the Python round trips are batched).
STEPS_PER_EXECUTION = 64


#: The seed is process-wide. Threads that train side by side hold this lock from
#: ``set_seed`` until their model is built and their shuffled batches are made, so
#: that no other thread reseeds in between (``bnbook.parallel``, ``run_sweep``).
seed_lock = threading.Lock()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the backend, so a re-run gives the same numbers."""
    keras.utils.set_random_seed(seed)


def compile_sgd(model: keras.Model, learning_rate: float, *,
                momentum: float = 0.0,
                steps_per_execution: int = STEPS_PER_EXECUTION,
                jit_compile: bool | str = False) -> keras.Model:
    """Compile ``model`` with plain SGD and sparse categorical cross-entropy.

    ``learning_rate`` is required and passed by its real name: the old
    ``SGD(lr=...)`` keyword is not an alias in Keras 3.
    """
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model


class EpochLog(keras.callbacks.Callback):
    """Record wall time per epoch and print one compact line per epoch.

    Keras' progress bar redraws itself hundreds of times, which bloats a built
    page; one line per epoch is progress enough live and stays short in print.
    """

    def __init__(self, label: str = "", verbose: bool = True) -> None:
        super().__init__()
        self.label = label
        self.verbose = verbose
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        if self.verbose:
            metrics = "  ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
            prefix = f"{self.label}: " if self.label else ""
            print(f"{prefix}epoch {epoch + 1:>2}  {metrics}  ({self.seconds[-1]:.1f} s)")


@dataclass
class FitResult:
    """What one ``fit`` call measured: the Keras history and seconds per epoch."""

    history: dict[str, list[float]]
    seconds_per_epoch: list[float] = field(default_factory=list)

    def final(self, metric: str) -> float:
        return float(self.history[metric][-1])


def image_batches(pixels: np.ndarray | tf.Tensor, labels: np.ndarray | tf.Tensor, *,
                  batch_size: int = 32, shuffle: bool = False) -> tf.data.Dataset:
    """The batches ``model.fit`` trains on, given the images as ``pixels``.

    The order is the one ``fit`` draws from arrays: Keras' array adapter makes
    a new permutation of all indices per epoch with ``tf.random.shuffle`` (seeded
    by the global seed when the dataset is made) and cuts it into batches, the
    last one partial. Seed before calling.

    * uint8 ``pixels`` (``load_fashion_mnist(scaled=False)``): each batch is
      gathered from the bytes and divided by 255 in float32, as the loader
      does, so the batches are those of ``fit(scale_pixels(pixels), labels)``,
      while the training set sits in memory as 43 MB of bytes instead of
      172 MB of floats.
    * float ``pixels``: the batches of ``fit(pixels, labels)`` itself. Made
      before training, for instance under a lock while other threads train,
      the dataset fixes its shuffling order there, not inside ``fit``.

    Same numbers either way (the tests compare the weights).
    """
    pixels, labels = tf.convert_to_tensor(pixels), tf.convert_to_tensor(labels)
    scale = pixels.dtype == tf.uint8
    n = int(pixels.shape[0])
    n_full = n // batch_size * batch_size

    def permutation(_: tf.Tensor) -> tf.Tensor:  # as keras' ArrayDataAdapter
        indices = tf.range(n, dtype=tf.int64)
        return tf.random.shuffle(indices) if shuffle else indices

    def batch_indices(indices: tf.Tensor) -> tf.data.Dataset:
        batches = tf.data.Dataset.from_tensor_slices(
            tf.reshape(indices[:n_full], [-1, batch_size]))
        if n_full < n:
            batches = batches.concatenate(tf.data.Dataset.from_tensors(indices[n_full:]))
        return batches

    def gather(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.gather(pixels, indices)
        if scale:
            images = tf.cast(images, tf.float32) / tf.constant(255.0, tf.float32)
        return images, tf.gather(labels, indices)

    n_batches = -(-n // batch_size)
    return (tf.data.Dataset.range(1).map(permutation).prefetch(1)
            .flat_map(batch_indices)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
            .apply(tf.data.experimental.assert_cardinality(n_batches))  # Keras then knows the epoch's length
            .prefetch(tf.data.AUTOTUNE))


def fit(model: keras.Model, x: np.ndarray | tf.data.Dataset, y: np.ndarray | None = None, *,
        epochs: int, batch_size: int = 32,
        validation_data: tuple[np.ndarray, np.ndarray] | tf.data.Dataset | None = None,
        label: str = "", verbose: bool = True, shuffle: bool = True) -> FitResult:
    """``model.fit`` with one printed line per epoch and the epoch times recorded.

    ``x`` is an array of inputs with labels ``y``, or a dataset of batches
    (``image_batches``), which brings its own batch size and order.
    """
    log = EpochLog(label, verbose)
    batching = ({"shuffle": False} if isinstance(x, tf.data.Dataset)  # it brings its own order
                else {"batch_size": batch_size, "shuffle": shuffle})
    history = model.fit(x, y, epochs=epochs, validation_data=validation_data,
                        callbacks=[log], verbose=0, **batching)
    return FitResult({k: [float(v) for v in vals] for k, vals in history.history.items()},
                     log.seconds)


def predict_proba(model: keras.Model, x: np.ndarray, *, batch_size: int = 2048) -> np.ndarray:
    """The model's outputs on ``x`` in inference mode, as a float32 NumPy array.

    Calls the model eagerly in chunks of ``batch_size`` instead of
    ``model.predict``: nothing is traced or compiled, which matters in sweeps
    that train dozens of short-lived models (the outputs are the same).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    chunks = [np.asarray(model(x[i:i + batch_size], training=False))
              for i in range(0, len(x), batch_size)]
    return np.concatenate(chunks, axis=0)


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, *,
             batch_size: int = 2048) -> float:
    """Accuracy in inference mode (BN uses its moving statistics)."""
    probs = predict_proba(model, x, batch_size=batch_size)
    return float(np.mean(np.argmax(probs, axis=-1) == y))
