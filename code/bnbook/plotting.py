"""One figure style for the whole book, and the plots several chapters share.

Figures use an opaque white background so they stay legible when a reader
switches the site to dark mode; colours come from a colour-blind-safe
palette (Okabe & Ito), one fixed colour per model family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["COLORS", "color_for", "plot_learning_curves", "use_book_style"]

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
    "figure.dpi": 110,
    "figure.figsize": (8.0, 3.6),
    "figure.constrained_layout.use": True,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "axes.prop_cycle": mpl.cycler(color=[COLORS[k] for k in
                                         ("baseline", "bn", "layernorm", "groupnorm", "other")]),
}


def use_book_style() -> None:
    """Apply the book's matplotlib style to every later figure of the kernel."""
    mpl.rcParams.update(_STYLE)


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
