"""One figure style for the whole book, and the plots several chapters share.

Figures use an opaque white background so they stay legible when a reader
switches the site to dark mode; colours come from a colour-blind-safe
palette (Okabe & Ito), one fixed colour per model family.

Figures are drawn at the width of the page's text column (:data:`MAX_WIDTH_IN`
inches at :data:`DPI` dots per inch is :data:`PAGE_WIDTH_PX` pixels, the column
of the site at a 1280-pixel window), so they are shown at their natural size,
and every text in them (tick labels, legends, titles) is at least as large as
the caption under them, :data:`CAPTION_PX` pixels. :func:`smallest_text_px`
measures that for any figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["CAPTION_PX", "COLORS", "DPI", "MAX_WIDTH_IN", "PAGE_WIDTH_PX", "color_for",
           "plot_learning_curves", "smallest_text_px", "use_book_style"]

#: Width of the site's text column at a 1280-pixel browser window, in CSS pixels.
PAGE_WIDTH_PX = 672
#: Font size of the figure captions (and of the body text) on the site, in CSS pixels.
CAPTION_PX = 16
#: Dots per inch of the book's figures: one dot is one CSS pixel on the page.
DPI = 110
#: The widest figure that is shown at its natural size in the text column.
MAX_WIDTH_IN = PAGE_WIDTH_PX / DPI

#: Okabe-Ito palette, assigned to the models the book compares most often.
COLORS: dict[str, str] = {
    "baseline": "#0072B2",   # blue
    "bn": "#D55E00",         # vermillion
    "layernorm": "#009E73",  # green
    "groupnorm": "#CC79A7",  # purple
    "other": "#E69F00",      # orange
    "neutral": "#555555",
}

_STYLE = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.figsize": (MAX_WIDTH_IN, 3.4),
    "figure.constrained_layout.use": True,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 11,            # 11 pt at 110 dpi: 16.8 px, as large as the caption
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "axes.prop_cycle": mpl.cycler(color=[COLORS[k] for k in
                                         ("baseline", "bn", "layernorm", "groupnorm", "other")]),
}


def use_book_style() -> None:
    """Apply the book's matplotlib style to every later figure of the kernel."""
    mpl.rcParams.update(_STYLE)


def smallest_text_px(fig: Figure) -> float:
    """The size, in CSS pixels on the page, of the smallest visible text in ``fig``.

    A figure wider than the text column is shrunk to fit it, and its text with
    it; a narrower one is shown at its natural size (one dot, one pixel).
    """
    fig.canvas.draw()
    scale = min(1.0, PAGE_WIDTH_PX / (fig.get_figwidth() * fig.dpi))
    sizes = [text.get_fontsize() / 72 * fig.dpi * scale
             for text in fig.findobj(mpl.text.Text)
             if text.get_visible() and text.get_text().strip()]
    if not sizes:
        raise ValueError("the figure has no visible text: label its axes")
    return float(min(sizes))


def color_for(name: str) -> str:
    """The book's colour for a model family; unknown names get a neutral grey."""
    return COLORS.get(name.lower(), COLORS["neutral"])


def plot_learning_curves(histories: Mapping[str, Sequence[Mapping[str, Sequence[float]]]],
                         colors: Mapping[str, str] | None = None) -> Figure:
    """Loss and accuracy per epoch, training (solid) and validation (dashed).

    ``histories`` maps a model's label to one Keras history dict per seed; the
    line is the mean over seeds and the band spans the lowest to the highest.
    """
    fig, axes = plt.subplots(1, 2)
    for label, runs in histories.items():
        color = (colors or {}).get(label, color_for(label))
        for ax, metric in zip(axes, ("loss", "accuracy")):
            for prefix, style in (("", "-"), ("val_", "--")):
                values = np.array([run[prefix + metric] for run in runs])
                epochs = np.arange(1, values.shape[1] + 1)
                split = "validation" if prefix else "training"
                ax.plot(epochs, values.mean(axis=0), style, color=color,
                        label=f"{label}, {split}")
                ax.fill_between(epochs, values.min(axis=0), values.max(axis=0),
                                color=color, alpha=0.15, linewidth=0)
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
    axes[0].set_title("Cross-entropy loss")
    axes[1].set_title("Accuracy")
    axes[1].legend(loc="lower right")
    return fig
