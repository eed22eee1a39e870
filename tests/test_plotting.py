"""bnbook.plotting: the book's figures are as wide as the text column and their text is as
large as the captions under them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from bnbook import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def _book_style():
    with matplotlib.rc_context():
        plotting.use_book_style()
        yield
    plt.close("all")


def test_default_figure_fits_the_column_and_its_text_is_caption_size() -> None:
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], label="a line")
    ax.set_xlabel("step")
    ax.set_title("A title")
    ax.legend()
    assert fig.get_figwidth() * fig.dpi == pytest.approx(plotting.PAGE_WIDTH_PX)
    assert plotting.smallest_text_px(fig) >= plotting.CAPTION_PX


def test_learning_curves_are_legible() -> None:
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "accuracy": [0.6, 0.8],
               "val_accuracy": [0.55, 0.75]}
    fig = plotting.plot_learning_curves({"baseline": [history], "BN": [history]})
    assert plotting.smallest_text_px(fig) >= plotting.CAPTION_PX


def test_a_wide_figure_or_small_font_is_caught() -> None:
    fig, ax = plt.subplots(figsize=(12, 4))           # shrunk to the column: text shrinks too
    ax.set_xlabel("step")
    assert plotting.smallest_text_px(fig) < plotting.CAPTION_PX
    fig, ax = plt.subplots()
    ax.set_xlabel("step", fontsize=7)
    assert plotting.smallest_text_px(fig) < plotting.CAPTION_PX
    fig = plt.figure()
    with pytest.raises(ValueError, match="no visible text"):
        plotting.smallest_text_px(fig)


def test_unknown_model_family_gets_neutral_grey() -> None:
    assert plotting.color_for("BN") == plotting.COLORS["bn"]
    assert plotting.color_for("something else") == plotting.COLORS["neutral"]
