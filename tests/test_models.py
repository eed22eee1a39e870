"""``build_mlp``: the architecture each argument asks for, counted from first principles."""

from __future__ import annotations

import keras
import pytest

from bnbook.models import build_mlp, normalization_layer


def dense_params(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


@pytest.mark.parametrize("hidden", [(300, 100), (64,), (32, 32, 32)])
def test_plain_mlp_parameter_count(hidden: tuple[int, ...]) -> None:
    widths = (784, *hidden, 10)
    expected = sum(dense_params(a, b) for a, b in zip(widths, widths[1:]))
    assert build_mlp(hidden).count_params() == expected


def test_batch_norm_before_activation_drops_the_bias_and_adds_four_vectors() -> None:
    model = build_mlp((300, 100), normalization="batch", placement="before")
    expected = (dense_params(784, 300, bias=False) + 4 * 300
                + dense_params(300, 100, bias=False) + 4 * 100 + dense_params(100, 10))
    assert model.count_params() == expected
    non_trainable = sum(int(w.shape[0]) for w in model.non_trainable_weights)
    assert non_trainable == 2 * (300 + 100)  # moving mean and variance
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Flatten", "Dense", "BatchNormalization", "Activation",
                     "Dense", "BatchNormalization", "Activation", "Dense"]


def test_normalization_after_activation_keeps_the_bias() -> None:
    model = build_mlp((50,), normalization="layer", placement="after", dropout=0.5)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Flatten", "Dense", "Activation", "LayerNormalization", "Dropout", "Dense"]
    assert model.layers[1].use_bias


@pytest.mark.parametrize("kind, cls", [("batch", keras.layers.BatchNormalization),
                                       ("layer", keras.layers.LayerNormalization),
                                       ("group", keras.layers.GroupNormalization)])
def test_normalization_layer_kinds(kind: str, cls: type) -> None:
    assert isinstance(normalization_layer(kind), cls)
    assert normalization_layer("none") is None


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown normalization"):
        normalization_layer("instance")
    with pytest.raises(ValueError, match="placement"):
        build_mlp(placement="between")
