"""Tiny synthetic data and models the unit tests share (no Fashion-MNIST needed)."""

from __future__ import annotations

import keras
import numpy as np

from bnbook.models import build_mlp

RNG = np.random.default_rng(0)


def bn_model(units: int = 6, features: int = 4) -> keras.Sequential:
    """Dense -> BN -> Dense, with non-trivial gamma and beta."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(shape=(features,)),
        keras.layers.Dense(units, use_bias=False),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(3),
    ])
    bn = model.get_layer("bn")
    rng = np.random.default_rng(1)
    bn.gamma.assign(rng.uniform(0.5, 2.0, units).astype("float32"))
    bn.beta.assign(rng.normal(size=units).astype("float32"))
    return model


def features(n: int = 32, width: int = 4) -> np.ndarray:
    """``n`` rows of ``width`` features, mean 1, standard deviation 3."""
    return (RNG.normal(size=(n, width)) * 3 + 1).astype("float32")


def two_classes(n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images of two classes, easy to learn: class 1 has a brighter top half."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=n).astype(np.uint8)
    x = 0.5 * rng.random((n, 28, 28), dtype=np.float32)
    x[y == 1, :14] += 0.5
    return x, y


def mlp(norm: str = "none", activation: str = "relu", hidden: tuple[int, ...] = (8,)) -> keras.Sequential:
    """A two-class MLP from ``build_mlp``."""
    return build_mlp(hidden, normalization=norm, activation=activation, num_classes=2)


def random_images(n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random 28x28 images, labelled by which half is brighter."""
    rng = np.random.default_rng(0)
    x = rng.random((n, 28, 28), dtype=np.float32)
    y = (x[:, :14].mean(axis=(1, 2)) > x[:, 14:].mean(axis=(1, 2))).astype(np.uint8)
    return x, y


def small_model() -> keras.Sequential:
    """Flatten -> Dense(8) -> BN -> softmax over 10 classes."""
    return keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                             keras.layers.Dense(8, activation="relu"),
                             keras.layers.BatchNormalization(),
                             keras.layers.Dense(10, activation="softmax")])
