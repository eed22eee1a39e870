"""A configurable MLP for the experiments that sweep one design choice.

The chapters write the models a reader must learn in full (see the
replication chapter). Experiments that compare many variants of one MLP --
with or without normalization, deeper, another initializer -- build them
here, so every variant differs only in the argument being studied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import keras

__all__ = ["Normalization", "build_mlp", "normalization_layer"]

Normalization = Literal["none", "batch", "layer", "group"]


def normalization_layer(kind: Normalization, *, groups: int = 10,
                        momentum: float = 0.99, name: str | None = None
                        ) -> keras.layers.Layer | None:
    """The Keras layer for ``kind``; ``None`` for ``"none"``."""
    if kind == "none":
        return None
    if kind == "batch":
        return keras.layers.BatchNormalization(momentum=momentum, name=name)
    if kind == "layer":
        return keras.layers.LayerNormalization(name=name)
    if kind == "group":
        return keras.layers.GroupNormalization(groups=groups, name=name)
    raise ValueError(f"unknown normalization {kind!r}; use 'none', 'batch', 'layer' or 'group'")


def build_mlp(hidden_units: Sequence[int] = (300, 100), *,
              activation: str = "relu",
              normalization: Normalization = "none",
              placement: Literal["before", "after"] = "before",
              kernel_initializer: str | keras.initializers.Initializer = "he_normal",
              dropout: float = 0.0,
              num_classes: int = 10,
              input_shape: tuple[int, ...] = (28, 28),
              name: str | None = None) -> keras.Sequential:
    """Flatten -> [Dense -> (norm) -> activation -> (norm) -> (Dropout)] * k -> softmax.

    ``placement="before"`` normalizes the Dense output before the activation,
    as Ioffe & Szegedy (2015) do, and drops the Dense bias (the norm's shift
    replaces it); ``"after"`` normalizes the activation's output. With
    ``normalization="none"`` the layers are Dense -> activation. A Dropout
    layer with rate ``dropout`` follows each hidden block when ``dropout > 0``.
    """
    if placement not in ("before", "after"):
        raise ValueError(f"placement must be 'before' or 'after', not {placement!r}")
    layers: list[keras.layers.Layer] = [keras.Input(shape=input_shape), keras.layers.Flatten()]
    for units in hidden_units:
        norm = normalization_layer(normalization)
        use_bias = norm is None or placement == "after"
        layers.append(keras.layers.Dense(units, use_bias=use_bias,
                                         kernel_initializer=kernel_initializer))
        if norm is not None and placement == "before":
            layers.append(norm)
        layers.append(keras.layers.Activation(activation))
        if norm is not None and placement == "after":
            layers.append(norm)
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(num_classes, activation="softmax",
                                     kernel_initializer=kernel_initializer))
    return keras.Sequential(layers, name=name)
