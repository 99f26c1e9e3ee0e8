"""The book's figures, in one visual style.

Every function draws on a Matplotlib ``Axes`` (a new figure when ``ax`` is ``None``) and
returns that ``Axes``, so the notebooks can compose panels and the CLI can save them.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

__all__ = ["STYLE", "cka_heatmap"]

STYLE = {
    "heatmap_cmap": "magma",
    "font_size": 10,
    "title_size": 11,
    "panel_size": (4.2, 3.6),
}


def _new_axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=STYLE["panel_size"], layout="constrained")
    return ax


def cka_heatmap(
    matrix: np.ndarray,
    *,
    label_a: str = "model A",
    label_b: str = "model B",
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    colorbar: bool = True,
) -> Axes:
    """Layer-by-layer CKA heatmap in the style of the paper's Figures 1 and 2.

    Args:
        matrix: ``(layers_a, layers_b)`` CKA values; row 0 (model A's first layer) is drawn
            at the bottom, column 0 at the left.
        label_a, label_b: model names for the axis labels ("Layers <name>").
        layers_a, layers_b: layer names, used only to check the matrix shape.
        title: what the reader should see; defaults to "<A> vs <B>".
        ax: axes to draw on.
        colorbar: add a colour bar labelled "CKA".

    The colour scale is fixed to [0, 1] so panels compare; debiased CKA can dip slightly
    below 0, and the colour bar then shows an arrow for the clipped values.
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"matrix must be 2-D (layers_a, layers_b), got shape {matrix.shape}")
    for layers, axis, name in ((layers_a, 0, "layers_a"), (layers_b, 1, "layers_b")):
        if layers is not None and len(layers) != matrix.shape[axis]:
            raise ValueError(
                f"{name} has {len(layers)} names but the matrix has {matrix.shape[axis]} "
                f"{'rows' if axis == 0 else 'columns'}"
            )
    ax = _new_axes(ax)
    image = ax.imshow(
        matrix,
        origin="lower",
        cmap=STYLE["heatmap_cmap"],
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
        aspect="auto",
    )
    ax.set_xlabel(f"Layers {label_b}", fontsize=STYLE["font_size"])
    ax.set_ylabel(f"Layers {label_a}", fontsize=STYLE["font_size"])
    ax.set_title(title or f"{label_a} vs {label_b}", fontsize=STYLE["title_size"])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    if colorbar:
        extend = "min" if np.nanmin(matrix) < 0 else "neither"
        bar = ax.figure.colorbar(image, ax=ax, extend=extend, fraction=0.046, pad=0.04)
        bar.set_label("CKA", fontsize=STYLE["font_size"])
    return ax
