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

__all__ = ["STYLE", "cka_heatmap", "convergence_plot", "estimator_bias_plot"]

STYLE = {
    "heatmap_cmap": "magma",
    "font_size": 10,
    "title_size": 11,
    "panel_size": (4.2, 3.6),
    "biased_colour": "#d95f02",
    "debiased_colour": "#1b9e77",
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


def estimator_bias_plot(result, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Biased vs debiased CKA of independent features against the number of examples.

    Args:
        result: :class:`vitlens.cka_study.IndependentFeaturesResult`.
        ax: axes to draw on.
        title: what the reader should see.

    Lines are means over draws; bands span +-1 standard deviation. The dashed line is
    the true value, 0.
    """
    ax = _new_axes(ax)
    for values, label, colour in (
        (result.biased, "biased (HSIC with H K H)", STYLE["biased_colour"]),
        (result.debiased, "debiased (unbiased HSIC)", STYLE["debiased_colour"]),
    ):
        mean, std = values.mean(axis=1), values.std(axis=1)
        ax.plot(result.sizes, mean, marker="o", color=colour, label=label)
        ax.fill_between(result.sizes, mean - std, mean + std, color=colour, alpha=0.2)
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("examples n", fontsize=STYLE["font_size"])
    ax.set_ylabel("linear CKA", fontsize=STYLE["font_size"])
    ax.set_title(
        title or f"Independent features ({result.dim} dims): only the debiased estimate is ~0",
        fontsize=STYLE["title_size"],
    )
    ax.legend(fontsize=STYLE["font_size"] - 1)
    return ax


def convergence_plot(result, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Largest change left before the final minibatch CKA estimate, by examples seen.

    Args:
        result: :class:`vitlens.cka_study.ConvergenceResult`.
        ax: axes to draw on.
        title: what the reader should see.
    """
    ax = _new_axes(ax)
    deviation = result.deviation_from_final()[:-1]  # the last one is 0 by definition
    ax.plot(result.examples[:-1], deviation, marker="o", color=STYLE["debiased_colour"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("examples seen", fontsize=STYLE["font_size"])
    ax.set_ylabel("max |CKA - final CKA| over layer pairs", fontsize=STYLE["font_size"])
    ax.set_title(
        title or "Minibatch CKA settles as batches accumulate", fontsize=STYLE["title_size"]
    )
    return ax
