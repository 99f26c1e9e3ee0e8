"""The book's figures, in one visual style.

Every function draws on a Matplotlib ``Axes`` (a new figure when ``ax`` is ``None``) and
returns that ``Axes``, so the notebooks can compose panels and the CLI can save them.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

__all__ = [
    "STYLE",
    "attention_distance_panels",
    "attention_distance_scatter",
    "attention_maps_row",
    "cka_heatmap",
    "convergence_plot",
    "display_name",
    "erf_grid",
    "erf_sublayer_grid",
    "estimator_bias_plot",
    "head_subset_curves",
    "layerwise_cka_curves",
    "ledger_scorecard",
    "local_heads_over_training",
    "localization_grid",
    "norm_ratio_curves",
    "probe_accuracy_curves",
    "relative_distance_panels",
    "token_probe_grid",
    "token_ratio_map",
    "use_theme",
]

STYLE = {
    "heatmap_cmap": "magma",
    "font_size": 11.5,
    "title_size": 12,
    "panel_size": (4.2, 3.6),
    "biased_colour": "#d95f02",
    "debiased_colour": "#1b9e77",
    "cut_colour": "cyan",
    "title_width": 46,
    "outcome_colours": {
        "holds": "#009E73",
        "partly holds": "#E69F00",
        "does not hold": "#D55E00",
        "not testable here": "#8C8C8C",
    },
}
"""The house style, sizes in points. A figure up to 11 inches wide, shown on a page column
about 760 pixels wide, keeps its smallest text (``font_size - 1``, tick labels and legends)
at about 10 pixels or more. ``outcome_colours``: one colour per ledger outcome (Okabe-Ito,
told apart with colour-blindness; black text on each has a contrast of 5:1 or more, so the
ledger's badges use the same colours)."""


def use_theme() -> None:
    """Apply the book's one theme to Matplotlib: seaborn's "paper" context, white ticks style.

    Importing ``vitlens.book`` applies it (every chapter), so does the ``vitlens``
    command, and :func:`vitlens.build_report` draws under it without changing the
    caller's settings; a reader's own notebook calls it once. Importing ``vitlens``
    or this module changes no Matplotlib setting.
    Figures are drawn at 150 dpi, so the raster parts (heatmaps) stay sharp at 2x zoom.
    """
    import seaborn as sns

    sns.set_theme(
        context="paper",
        style="ticks",
        palette="colorblind",
        font_scale=1.2,
        rc={
            "figure.dpi": 150,
            "savefig.dpi": 200,
            "axes.titlesize": STYLE["title_size"],
            "axes.labelsize": STYLE["font_size"],
            "xtick.labelsize": STYLE["font_size"] - 1,
            "ytick.labelsize": STYLE["font_size"] - 1,
            "legend.fontsize": STYLE["font_size"] - 1,
            "figure.titlesize": STYLE["title_size"] + 1,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "image.cmap": STYLE["heatmap_cmap"],
            "svg.fonttype": "path",
        },
    )
    mpl.rcParams["figure.constrained_layout.use"] = True


_ZOO_NAMES = {
    "vit-cls": "ViT (class token)",
    "mixer-pt": "MLP-Mixer (pretrained)",
    "vit-pt": "ViT (pretrained, class token)",
    "vit-pt-gap": "ViT (pretrained, GAP)",
    "vit-pt-small": "small ViT (pretrained)",
    "vit-pt-large": "large ViT (pretrained)",
    "resnet-local": "ResNet (local stem)",
}


def display_name(name: str) -> str:
    """A model's name as a reader should see it in a figure.

    The zoo's names (``"vit-pt-noskip-2"``, ``"vit-cls-data3"``, ``"vit-pt-data100"``) and
    timm's (``"vit_base_patch16_224.augreg_in21k"``) become "ViT, no skips in block 2",
    "ViT, 3% of the data", "ViT (pretrained), 100 images", "ViT-B/16 (augreg_in21k)"; any
    other name is returned as it is.
    """
    if name in _ZOO_NAMES:
        return _ZOO_NAMES[name]
    if match := re.fullmatch(r"vit-cls-data(\d+)", name):
        return f"ViT, {match[1]}% of the data"
    if match := re.fullmatch(r"vit-pt-data(\d+)", name):
        return f"ViT (pretrained), {int(match[1]):,} images"
    if match := re.fullmatch(r"vit-pt-noskip-(\d+)", name):
        return f"ViT, no skips in block {match[1]}"  # short: it labels heatmap axes
    if match := re.fullmatch(r"vit_(\w+?)_patch(\d+)(?:_gap)?_\d+\.(\w+)", name):
        size = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H"}
        return f"ViT-{size.get(match[1], match[1])}/{match[2]} ({match[3]})"
    if match := re.fullmatch(r"resnetv2_(\d+)x(\d+)_bit\.(\w+)", name):
        return f"BiT-R{match[1]}x{match[2]} ({match[3]})"
    if match := re.fullmatch(r"mixer_(\w)\d+_\d+\.(\w+)", name):
        return f"Mixer-{match[1].upper()}/16 ({match[2]})"
    return name


def _wrap(title: str) -> str:
    """A title broken into lines short enough not to run over a colour bar or a neighbour."""
    return "\n".join(textwrap.fill(line, STYLE["title_width"]) for line in title.split("\n"))


def _label(ax: Axes, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel, fontsize=STYLE["font_size"])
    ax.set_ylabel(ylabel, fontsize=STYLE["font_size"])
    ax.set_title(_wrap(title), fontsize=STYLE["title_size"])


def _new_axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=STYLE["panel_size"], layout="constrained")
    return ax


MEASURE_LABELS = {
    "linear_cka": "linear CKA",
    "linear_cka_debiased": "linear CKA (unbiased)",
    "rbf_cka": "RBF CKA",
    "procrustes": "Procrustes similarity",
    "svcca": "SVCCA",
    "pwcca": "PWCCA",
}
"""How figures name each similarity measure (keys of ``vitlens.core.similarity``'s
``SIMILARITY_MEASURES``)."""


def plot_cka(result, *, title: str | None = None, ax: Axes | None = None, **kwargs) -> Axes:
    """A similarity result's heatmap in the paper's style: :func:`cka_heatmap` of
    ``result.matrix`` with its model names and layers (a
    :class:`vitlens.analyses.compare.CKAResult`, or a
    :class:`vitlens.analyses.measures.SimilarityResult`, whose colour bar names its measure)."""
    measure = getattr(result, "measure", None)
    kwargs.setdefault("value_label", MEASURE_LABELS.get(measure, measure) if measure else "CKA")
    return cka_heatmap(
        result.matrix,
        label_a=result.name_a,
        label_b=result.name_b,
        layers_a=result.layers_a,
        layers_b=result.layers_b,
        title=title,
        ax=ax,
        **kwargs,
    )


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
    value_label: str = "CKA",
    cuts: Sequence[int] = (),
) -> Axes:
    """Layer-by-layer CKA heatmap in the style of the paper's Figures 1 and 2.

    Args:
        matrix: ``(layers_a, layers_b)`` CKA values; row 0 (model A's first layer) is drawn
            at the bottom, column 0 at the left.
        label_a, label_b: model names for the axis labels ("Layers <name>").
        layers_a, layers_b: layer names, used only to check the matrix shape.
        title: what the reader should see; defaults to "<A> vs <B>".
        ax: axes to draw on.
        colorbar: add a colour bar labelled ``value_label``.
        value_label: what the colours measure (another similarity measure than CKA).
        cuts: layer indices before which a line crosses the heatmap on both axes (e.g.
            where a block without skip connections begins, chapter 4's Fig. 8).

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
    label_a, label_b = display_name(label_a), display_name(label_b)
    _label(ax, f"Layers of {label_b}", f"Layers of {label_a}", title or f"{label_a} vs {label_b}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    for cut in cuts:  # between cells cut - 1 and cut
        if not 0 < cut < min(matrix.shape):
            raise ValueError(f"a cut lies between two layers, in 1..{min(matrix.shape) - 1}: {cut}")
        ax.axhline(cut - 0.5, color=STYLE["cut_colour"], linewidth=1)
        ax.axvline(cut - 0.5, color=STYLE["cut_colour"], linewidth=1)
    if colorbar:
        extend = "min" if np.nanmin(matrix) < 0 else "neither"
        bar = ax.figure.colorbar(image, ax=ax, extend=extend, fraction=0.046, pad=0.04)
        bar.set_label(value_label, fontsize=STYLE["font_size"])
    return ax


def estimator_bias_plot(result, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Biased vs debiased CKA of independent features against the number of examples.

    Args:
        result: :class:`vitlens.analyses.cka_study.IndependentFeaturesResult`.
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
    _label(
        ax,
        "examples n",
        "linear CKA",
        title or f"Independent features ({result.dim} dims): only the debiased estimate is ~0",
    )
    ax.legend(fontsize=STYLE["font_size"] - 1)
    return ax


def convergence_plot(result, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Largest change left before the final minibatch CKA estimate, by examples seen.

    Args:
        result: :class:`vitlens.analyses.cka_study.ConvergenceResult`.
        ax: axes to draw on.
        title: what the reader should see.
    """
    ax = _new_axes(ax)
    deviation = result.deviation_from_final()[:-1]  # the last one is 0 by definition
    ax.plot(result.examples[:-1], deviation, marker="o", color=STYLE["debiased_colour"])
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    _label(
        ax,
        "examples seen",
        "max |CKA - final CKA| over layer pairs",
        title or "Minibatch CKA settles as batches accumulate",
    )
    return ax


# ------------------------------------------------------------------ analyses (Figures 3-13)


def _panel_grid(count: int, axes, ncols: int) -> np.ndarray:
    """``count`` axes: the given ones, or a new figure with ``ncols`` panels per row."""
    if axes is not None:
        axes = np.asarray(axes, dtype=object).ravel()
        if axes.size < count:
            raise ValueError(f"{count} panels need {count} axes, got {axes.size}")
        return axes[:count]
    rows = -(-count // ncols)
    width, height = STYLE["panel_size"]
    _, grid = plt.subplots(
        rows,
        min(ncols, count),
        figsize=(0.7 * width * min(ncols, count), 0.7 * height * rows),
        layout="constrained",
        squeeze=False,
    )
    for ax in grid.ravel()[count:]:
        ax.set_visible(False)
    return grid.ravel()[:count]


def attention_distance_scatter(
    distances,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    label: str | None = None,
    color: str | None = None,
) -> Axes:
    """Mean attention distance of every head against block index, as in Figure 3.

    Args:
        distances: ``(blocks, heads)`` distances in pixels
            (:func:`vitlens.analyses.attention.mean_attention_distance`).
        ax: axes to draw on (call again with another ``label`` to overlay a second model).
        title: what the reader should see.
        label: legend entry for this model.
        color: marker colour (default: the axes' next colour).
    """
    distances = np.asarray(distances, dtype=float)
    if distances.ndim != 2:
        raise ValueError(f"distances must be (blocks, heads), got shape {distances.shape}")
    ax = _new_axes(ax)
    blocks, heads = distances.shape
    x = np.repeat(np.arange(blocks), heads)
    ax.scatter(x, distances.ravel(), s=14, alpha=0.8, label=label, color=color)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _label(
        ax,
        "Block",
        "Mean attention distance (pixels)",
        title or "Attention distance per head",
    )
    if label is not None:
        ax.legend(fontsize=STYLE["font_size"] - 1)
    return ax


def head_subset_curves(result, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """CKA of each subset of a ViT block's heads against another model's layers (Figure 5).

    One line per head subset, coloured by the subset's mean attention distance (a colour
    bar in pixels), so the reader can see whether local heads track the other model's
    lower layers more closely than global heads do.

    Args:
        result: :class:`vitlens.analyses.attention.HeadSubsetCKA` (``matrix`` ``(subsets, layers)``,
            ``heads`` ``(subsets, k)``, ``distances`` ``(heads,)`` in pixels).
        ax: axes to draw on.
        title: what the reader should see.
    """
    matrix = np.asarray(result.matrix, dtype=float)
    heads = np.asarray(result.heads)
    distances = np.asarray(result.distances, dtype=float)
    if matrix.ndim != 2 or matrix.shape != (heads.shape[0], len(result.layers)):
        raise ValueError(
            f"matrix must be (subsets, layers) = ({heads.shape[0]}, {len(result.layers)}), "
            f"got shape {matrix.shape}"
        )
    ax = _new_axes(ax)
    subset_distance = distances[heads].mean(axis=1)
    norm = plt.Normalize(subset_distance.min(), subset_distance.max() + 1e-9)
    cmap = plt.get_cmap("viridis")
    x = np.arange(len(result.layers))
    for row, distance in zip(matrix, subset_distance, strict=True):
        ax.plot(x, row, marker="o", markersize=3, color=cmap(norm(distance)))
    ax.set_xticks(x, result.layers, rotation=60, ha="right", fontsize=STYLE["font_size"] - 1)
    bar = ax.figure.colorbar(
        plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, location="right", shrink=0.8
    )
    bar.set_label("heads' mean distance (px)", fontsize=STYLE["font_size"] - 1)
    k = heads.shape[1]
    _label(
        ax,
        "Layer of the other model",
        "CKA",
        title or f"Block {result.block}: subsets of {k} head(s) against the other model",
    )
    return ax


def erf_grid(maps, *, axes=None, ncols: int = 4, title: str | None = None) -> np.ndarray:
    """Effective receptive fields, one panel per layer, as in Figure 6.

    Args:
        maps: ``{layer: (H, W)}`` maps over input pixels
            (:func:`vitlens.analyses.receptive.effective_receptive_field`), or ``{layer:
            SampledField}`` (:func:`vitlens.analyses.receptive.sampled_receptive_field`:
            its estimate ``.field`` is drawn); each panel is scaled to its own maximum.
        axes: axes to draw on, one per layer (default: a new figure).
        ncols: panels per row of a new figure.
        title: figure title.

    Returns:
        The array of axes used.
    """
    if not maps:
        raise ValueError("maps is empty: pass {layer: (H, W) map}")
    panels = _panel_grid(len(maps), axes, ncols)
    for ax, (layer, field) in zip(panels, maps.items(), strict=True):
        field = np.asarray(getattr(field, "field", field), dtype=float)
        image = ax.imshow(field / field.max(), cmap=STYLE["heatmap_cmap"], vmin=0, vmax=1)
        ax.set_title(_wrap(layer), fontsize=STYLE["font_size"])
        ax.set_xlabel("x (pixels)", fontsize=STYLE["font_size"] - 1)
        ax.set_ylabel("y (pixels)", fontsize=STYLE["font_size"] - 1)
        bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label("|∂ centre / ∂ input| / max", fontsize=STYLE["font_size"] - 1)
    panels[0].figure.suptitle(
        _wrap(title or "Effective receptive fields"), fontsize=STYLE["title_size"]
    )
    return panels


def norm_ratio_curves(result, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Skip-to-branch norm ratio per residual addition, as in Figure 7.

    Args:
        result: :class:`vitlens.analyses.residual.ResidualNorms`; one line per branch kind (e.g.
            attention and MLP), averaged over patch tokens (or map locations), plus the
            class token alone when the model has one.
        ax: axes to draw on.
        title: what the reader should see.
    """
    ax = _new_axes(ax)
    kinds = np.array([b.kind for b in result.branches])
    patches = result.mean_over_positions(result.norm_ratio, prefix=False).numpy()
    prefix = (
        result.mean_over_positions(result.norm_ratio, prefix=True).numpy()
        if result.num_prefix_tokens
        else None
    )
    for kind in dict.fromkeys(kinds):
        where = np.flatnonzero(kinds == kind)
        ax.plot(np.arange(len(where)), patches[where], marker="o", label=f"{kind}, spatial")
        if prefix is not None:
            ax.plot(
                np.arange(len(where)),
                prefix[where],
                marker="s",
                linestyle="--",
                label=f"{kind}, class token",
            )
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _label(ax, "Block", "||z|| / ||f(z)||", title or "Skip vs. long branch norm ratio")
    ax.legend(fontsize=STYLE["font_size"] - 1)
    return ax


def localization_grid(
    maps,
    positions=None,
    *,
    axes=None,
    ncols: int = 4,
    title: str | None = None,
    shared_scale: bool = False,
) -> np.ndarray:
    """Token-vs-input-patch CKA maps of chosen tokens, as in Figures 9 and 10.

    Args:
        maps: ``(tokens, grid_h, grid_w)`` CKA
            (:func:`vitlens.analyses.localization.localization_map`).
        positions: token indices to show (default: up to 8 evenly spaced tokens).
        axes: axes to draw on, one per token (default: a new figure).
        ncols: panels per row of a new figure.
        title: figure title.
        shared_scale: one colour scale, [0, 1], for every panel; by default each panel
            spans its own minimum to maximum (its colour bar says which), so a map whose
            values all lie in a narrow band still shows where its peak is.

    Returns:
        The array of axes used. Each panel marks the token's own grid cell (patch tokens,
        counted from the end of the token axis) with a cross.
    """
    maps = np.asarray(maps, dtype=float)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (tokens, grid_h, grid_w), got shape {maps.shape}")
    tokens, grid_h, grid_w = maps.shape
    if positions is None:
        positions = np.unique(np.linspace(0, tokens - 1, min(8, tokens)).astype(int))
    positions = [int(p) for p in positions]
    if any(not 0 <= p < tokens for p in positions):
        raise ValueError(f"positions must be token indices in 0..{tokens - 1}, got {positions}")
    prefix = tokens - grid_h * grid_w
    panels = _panel_grid(len(positions), axes, ncols)
    for ax, p in zip(panels, positions, strict=True):
        low, high = (0.0, 1.0) if shared_scale else (float(maps[p].min()), float(maps[p].max()))
        image = ax.imshow(maps[p], cmap=STYLE["heatmap_cmap"], vmin=low, vmax=max(high, low + 1e-6))
        if p >= prefix:
            row, col = divmod(p - prefix, grid_w)
            ax.plot(col, row, marker="x", color="cyan", markersize=8)
            ax.set_title(f"token ({row}, {col})", fontsize=STYLE["font_size"])
        else:
            ax.set_title(f"prefix token {p}", fontsize=STYLE["font_size"])
        ax.set_xlabel("patch column", fontsize=STYLE["font_size"] - 1)
        ax.set_ylabel("patch row", fontsize=STYLE["font_size"] - 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label("CKA", fontsize=STYLE["font_size"] - 1)
    panels[0].figure.suptitle(
        _wrap(title or "Token vs. input patch similarity"), fontsize=STYLE["title_size"]
    )
    return panels


def token_probe_grid(
    maps_by_model: dict[str, dict],
    *,
    chance: float | None = None,
    title: str | None = None,
) -> np.ndarray:
    """Per-token probe accuracy maps, one row per model and one panel per layer (Fig. D.4).

    Args:
        maps_by_model: model label -> :func:`vitlens.analyses.probes.token_probe_maps`
            (``{layer: result}``, each result's ``.mean`` a ``(rows, cols)`` map); every
            model the same number of layers.
        chance: chance accuracy, written in the title when given.
        title: figure title.

    Returns:
        The ``(models, layers)`` array of axes. Each row shares one colour scale, its own
        minimum to maximum (the paper notes its panels' scales differ too), so a row whose
        tokens all score alike still shows where the better ones sit.
    """
    counts = {len(maps) for maps in maps_by_model.values()}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"every model needs the same, non-zero number of layers, got {counts}")
    rows, cols = len(maps_by_model), counts.pop()
    width, height = STYLE["panel_size"]
    fig, grid = plt.subplots(
        rows,
        cols,
        figsize=(0.62 * width * cols + 1.2, 0.62 * height * rows),
        layout="constrained",
        squeeze=False,
    )
    for row, (label, maps) in zip(grid, maps_by_model.items(), strict=True):
        means = {layer: np.asarray(result.mean, dtype=float) for layer, result in maps.items()}
        low = min(float(m.min()) for m in means.values())
        high = max(float(m.max()) for m in means.values())
        for ax, (layer, mean) in zip(row, means.items(), strict=True):
            image = ax.imshow(
                100 * mean,
                cmap=STYLE["heatmap_cmap"],
                vmin=100 * low,
                vmax=100 * max(high, low + 1e-6),
            )
            ax.set_title(f"{display_name(label)}\n{layer}", fontsize=STYLE["font_size"] - 1)
            ax.set_xticks([])
            ax.set_yticks([])
        bar = fig.colorbar(image, ax=list(row), fraction=0.046, pad=0.02)
        bar.set_label("probe accuracy (%)", fontsize=STYLE["font_size"] - 1)
    suffix = f" (chance {chance:.0%})" if chance is not None else ""
    fig.suptitle(
        _wrap((title or "Few-shot probe accuracy of each token") + suffix),
        fontsize=STYLE["title_size"],
    )
    return grid


def probe_accuracy_curves(
    curves,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    chance: float | None = None,
    relative_depth: bool = False,
    colors: dict[str, str] | None = None,
) -> Axes:
    """Few-shot linear probe accuracy against layer, as in Figures 11 and 13.

    Args:
        curves: ``{label: result}``, each a :class:`vitlens.analyses.probes.ProbeResult`
            whose ``.mean`` and ``.std`` over the probe seeds are ``(layers,)`` accuracies in
            [0, 1] (e.g. one entry per pooling or per model); the band is +- one ``.std``.
        ax: axes to draw on.
        title: what the reader should see.
        chance: draw the chance level (``1 / classes``) as a dashed line.
        relative_depth: place each curve's layers evenly on [0, 1] (first to last layer),
            to compare models of different depths; otherwise by layer index.
        colors: ``{label: colour}``, to keep one colour per label across panels that
            show different subsets of labels; by default the colour cycle.
    """
    if not curves:
        raise ValueError("curves is empty: pass {label: probe result}")
    uncoloured = sorted(set(curves) - set(colors)) if colors else []
    if uncoloured:
        raise ValueError(f"colors has no colour for {uncoloured}; it covers {sorted(colors)}")
    beside = len(curves) > 3  # many curves: the legend goes beside the plot
    if ax is None and beside:
        width, height = STYLE["panel_size"]
        _, ax = plt.subplots(figsize=(1.9 * width, height), layout="constrained")
    ax = _new_axes(ax)
    for label, curve in curves.items():
        mean, std = np.asarray(curve.mean, dtype=float), np.asarray(curve.std, dtype=float)
        x = np.linspace(0, 1, mean.size) if relative_depth else np.arange(mean.size)
        (line,) = ax.plot(x, mean, marker="o", label=label, color=(colors or {}).get(label))
        ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_ylim(0, 1)
    if not relative_depth:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    xlabel = "Relative depth (0: first layer, 1: last)" if relative_depth else "Layer"
    _label(ax, xlabel, "Few-shot probe accuracy", title or "Linear probe accuracy by layer")
    if beside:  # never over a curve
        ax.legend(fontsize=STYLE["font_size"] - 1, loc="upper left", bbox_to_anchor=(1.02, 1))
    else:
        ax.legend(fontsize=STYLE["font_size"] - 1)
    return ax


def layerwise_cka_curves(results, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Per-layer CKA of models trained differently against a reference, as in Figure 12.

    Args:
        results: :class:`vitlens.analyses.training_similarity.LayerwiseCKA` results, one line each,
            labelled by ``name_a``.
        ax: axes to draw on.
        title: what the reader should see.
    """
    if not results:
        raise ValueError("results is empty")
    ax = _new_axes(ax)
    for result in results:
        ax.plot(
            np.arange(len(result.values)),
            result.values,
            marker="o",
            label=display_name(result.name_a),
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _label(
        ax,
        "Block",
        f"CKA with {display_name(results[0].name_b)}",
        title or "Similarity to the reference, block by block",
    )
    ax.legend(fontsize=STYLE["font_size"] - 1)
    return ax


def token_ratio_map(
    result,
    branch: int,
    *,
    statistic: str = "norm_ratio",
    grid: tuple[int, int] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """One residual addition's skip-vs-branch statistic per position, as in Figures E.1, E.2.

    Args:
        result: :class:`vitlens.analyses.residual.ResidualNorms`.
        branch: index into ``result.branches``.
        statistic: ``"norm_ratio"`` (``||z|| / ||f(z)||``) or ``"cosine"`` (cosine of ``z``
            and ``z + f(z)``); the colour scale spans this map's values and the class token's.
        grid: ``(rows, cols)`` of the patch tokens (default: a square grid); a ResNet's
            ``(h, w)`` map is drawn as it is.
        ax: axes to draw on.
        title: what the reader should see (default: the branch and, if any, the class token).

    Patch tokens (or feature-map locations) are drawn over their grid; the class token's
    value, when the model has one, is marked on the colour bar by a cyan line and triangle.
    """
    from matplotlib.colors import Normalize

    if statistic not in ("norm_ratio", "cosine"):
        raise ValueError(f"statistic must be 'norm_ratio' or 'cosine', got {statistic!r}")
    if not 0 <= branch < len(result.branches):
        raise ValueError(f"branch must be in 0..{len(result.branches) - 1}, got {branch}")
    values = np.asarray(getattr(result, statistic)[branch], dtype=float)
    prefix = result.num_prefix_tokens
    if values.ndim == 1:
        patches = values[prefix:]
        if grid is None:
            side = math.isqrt(patches.size)
            if side * side != patches.size:
                raise ValueError(f"{patches.size} patch tokens are not a square grid: pass grid")
            grid = (side, side)
        if grid[0] * grid[1] != patches.size:
            raise ValueError(f"grid {grid} does not hold {patches.size} patch tokens")
        image_values, class_value = patches.reshape(grid), values[:prefix]
    else:
        image_values, class_value = values, np.empty(0)
    shown = np.concatenate([image_values.ravel(), class_value])
    low, high = float(np.nanmin(shown)), float(np.nanmax(shown))
    norm = Normalize(vmin=low, vmax=max(high, low + 1e-6))
    label = "||z|| / ||f(z)||" if statistic == "norm_ratio" else "cos(z, z + f(z))"
    ax = _new_axes(ax)
    image = ax.imshow(image_values, cmap=STYLE["heatmap_cmap"], norm=norm, interpolation="nearest")
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(label, fontsize=STYLE["font_size"] - 1)
    info = result.branches[branch]
    default = f"{info.name} ({info.kind})"
    if class_value.size:
        marked = float(class_value[0])
        bar.ax.axhline(marked, color="cyan", linewidth=2.5)
        bar.ax.plot(
            [0.0],
            [marked],
            marker=">",
            markersize=9,
            color="cyan",
            markeredgecolor="black",
            transform=bar.ax.get_yaxis_transform(),
            clip_on=False,
        )
        default += f"\nclass token (cyan on bar): {class_value[0]:.2f}"
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    rows, cols = ("patch row", "patch column") if values.ndim == 1 else ("map row", "map column")
    _label(ax, cols, rows, title or default)
    return ax


# ------------------------------------------------- appendix analyses (Figs. C.1-C.6, D.4, 11)


def erf_sublayer_grid(
    fields, which: str = "post", *, axes=None, title: str | None = None
) -> np.ndarray:
    """Every residual addition's effective receptive field, block by block (Figs. C.1-C.4).

    Args:
        fields: :class:`vitlens.analyses.receptive.SublayerFields`.
        which: ``"post"`` (after the residual sum, C.1-C.3) or ``"pre"`` (the branch
            alone, before the sum, C.4).
        axes: axes to draw on, one per residual addition, in forward order (default: a new
            figure with one row per branch kind, e.g. attention and MLP, and one column per
            block; a model with one kind, e.g. a ResNet, fills rows of six).
        title: figure title.

    Returns:
        The array of axes used, in forward order. Each panel is scaled to its own maximum
        and titled with its block and its half-mass area (share of the input's pixels).
    """
    maps, areas = fields.maps(which), fields.areas(which)
    kinds = list(dict.fromkeys(b.kind for b in fields.branches))
    kind_of = {b.name: b.kind for b in fields.branches}
    if axes is None and len(kinds) > 1:  # one row per kind (attention, MLP), blocks across
        per_kind = max(sum(kind_of[n] == k for n in maps) for k in kinds)
        _, grid = plt.subplots(
            len(kinds),
            per_kind,
            figsize=(1.3 * per_kind + 0.8, 1.75 * len(kinds) + 0.7),
            layout="constrained",
            squeeze=False,
        )
        seen = dict.fromkeys(kinds, 0)
        panels = []
        for name in maps:
            row = kinds.index(kind_of[name])
            panels.append(grid[row, seen[kind_of[name]]])
            seen[kind_of[name]] += 1
        for row, kind in enumerate(kinds):
            grid[row, 0].set_ylabel("MLP" if kind == "mlp" else kind, fontsize=STYLE["font_size"])
            for ax in grid[row, seen[kind] :]:
                ax.set_visible(False)
        panels = np.asarray(panels, dtype=object)
    else:
        ncols = len(kinds) if len(kinds) > 1 else min(6, len(maps))
        panels = _panel_grid(len(maps), axes, ncols)
    for ax, (layer, field) in zip(panels, maps.items(), strict=True):
        field = np.asarray(field, dtype=float)
        ax.imshow(field / field.max(), cmap=STYLE["heatmap_cmap"], vmin=0, vmax=1)
        short = layer.removesuffix(".residual1").replace("blocks.", "block ")
        ax.set_title(f"{short}\nhalf mass {areas[layer]:.1%}", fontsize=STYLE["font_size"] - 2)
        ax.set_xticks([])
        ax.set_yticks([])
    where = "after the residual sum" if which == "post" else "of the branch, before the sum"
    panels[0].figure.suptitle(
        title or f"Effective receptive fields {where}", fontsize=STYLE["title_size"]
    )
    return panels


def attention_distance_panels(
    distances, *, axes=None, title: str | None = None, uniform: float | None = None
) -> np.ndarray:
    """Mean attention distance per head of several models side by side (Figs. C.5, C.6).

    Args:
        distances: ``{model label: (blocks, heads)}`` distances in pixels
            (:func:`vitlens.analyses.attention.mean_attention_distance`); one panel each,
            sharing the y axis so the models compare.
        axes: axes to draw on, one per model (default: a new figure, one row).
        title: figure title.
        uniform: draw this distance (e.g. uniform attention's) as a dashed line.

    Returns:
        The array of axes used.
    """
    if not distances:
        raise ValueError("distances is empty: pass {model label: (blocks, heads)}")
    if axes is None:  # one row, wide enough to read, one shared y axis labelled once
        _, axes = plt.subplots(
            1,
            len(distances),
            figsize=(3.6 * len(distances), 3.4),
            layout="constrained",
            squeeze=False,
        )
    panels = _panel_grid(len(distances), axes, len(distances))
    top = max(float(np.nanmax(np.asarray(d, dtype=float))) for d in distances.values())
    top = max(top, uniform or 0.0)
    for i, (ax, (label, values)) in enumerate(zip(panels, distances.items(), strict=True)):
        attention_distance_scatter(values, ax=ax, title=label)
        if uniform is not None:
            ax.axhline(uniform, color="grey", linestyle="--", linewidth=1)
        ax.set_ylim(0, 1.05 * top)
        if i:
            ax.set_ylabel("")
    panels[0].figure.suptitle(
        title or "Mean attention distance per head, by model size", fontsize=STYLE["title_size"]
    )
    return panels


def relative_distance_panels(
    distances,
    *,
    threshold: float = 0.5,
    axes=None,
    ncols: int = 3,
    title: str | None = None,
) -> np.ndarray:
    """Every head's attention distance relative to uniform attention, one panel per model.

    Each panel plots the ``(blocks, heads)`` distances against the block (as in Figure 3,
    divided by uniform attention's distance), a dashed line at 1 (uniform attention) and a
    dotted line at ``threshold``; heads under it (local heads) are drawn in a second colour.

    Args:
        distances: ``{model: (blocks, heads)}`` relative distances
            (:func:`vitlens.analyses.attention.relative_attention_distance`).
        threshold: the local-head line.
        axes: axes to draw on, one per model (default: a new figure, shared y axis).
        ncols: panels per row of a new figure.
        title: figure title.

    Returns:
        The array of axes used.
    """
    if not distances:
        raise ValueError("distances is empty: pass {model: (blocks, heads) distances}")
    panels = _panel_grid(len(distances), axes, ncols)
    top = max(1.1, max(float(np.nanmax(np.asarray(d, dtype=float))) for d in distances.values()))
    for ax, (name, dist) in zip(panels, distances.items(), strict=True):
        dist = np.asarray(dist, dtype=float)
        if dist.ndim != 2:
            raise ValueError(f"{name}: distances must be (blocks, heads), got shape {dist.shape}")
        blocks, heads = dist.shape
        x = np.repeat(np.arange(blocks), heads)
        local = dist.ravel() < threshold
        ax.scatter(x[~local], dist.ravel()[~local], s=14, alpha=0.8, color="#7570b3")
        ax.scatter(x[local], dist.ravel()[local], s=18, color="#d95f02", label="local heads")
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(0, top * 1.05)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _label(ax, "Block", "distance / uniform", f"{name}: {int(local.sum())} local")
    panels[0].figure.suptitle(
        title or "Attention distance relative to uniform attention",
        fontsize=STYLE["title_size"],
    )
    return panels


def attention_maps_row(
    image,
    maps,
    *,
    query: tuple[int, int],
    patch_size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    axes=None,
    title: str | None = None,
) -> np.ndarray:
    """One image and where one query patch looks in it, one panel per head.

    Args:
        image: ``(H, W, 3)`` or ``(3, H, W)`` pixels in [0, 1], or a model's normalised
            input with that model's ``mean`` and ``std`` (e.g. ``model.pretrained_cfg``).
        maps: ``{label: (rows, cols)}`` attention of the query patch over the patch grid
            (:func:`vitlens.analyses.attention.query_attention`), e.g. a local and a global head.
        query: ``(row, col)`` of the query patch, outlined in every panel.
        patch_size: patch side in pixels (maps are drawn over the image at this scale).
        mean: per-channel mean the image was normalised with (undone for display).
        std: per-channel standard deviation the image was normalised with.
        axes: ``1 + len(maps)`` axes (default: a new figure in one row).
        title: figure title.

    Returns:
        The array of axes used, the image first, then one attention map per entry.
    """
    from matplotlib.patches import Rectangle

    image = np.asarray(image, dtype=float)
    if image.ndim == 3 and image.shape[0] == 3:
        image = image.transpose(1, 2, 0)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) or (3, H, W), got shape {image.shape}")
    if mean is not None or std is not None:
        image = image * np.asarray(std if std is not None else (1, 1, 1), dtype=float)
        image = image + np.asarray(mean if mean is not None else (0, 0, 0), dtype=float)
    if not maps:
        raise ValueError("maps is empty: pass {label: (rows, cols) attention}")
    panels = _panel_grid(1 + len(maps), axes, 1 + len(maps))
    height, width = image.shape[:2]
    r, c = query

    def outline(ax):
        ax.add_patch(
            Rectangle(
                (c * patch_size - 0.5, r * patch_size - 0.5),
                patch_size,
                patch_size,
                fill=False,
                edgecolor="cyan",
                linewidth=1.5,
            )
        )
        ax.set_xticks([])
        ax.set_yticks([])

    panels[0].imshow(image.clip(0, 1))
    panels[0].set_title("image, query patch", fontsize=STYLE["font_size"])
    outline(panels[0])
    for ax, (label, attention) in zip(panels[1:], maps.items(), strict=True):
        attention = np.asarray(attention, dtype=float)
        if attention.ndim != 2:
            raise ValueError(f"{label}: a map must be (rows, cols), got shape {attention.shape}")
        ax.imshow(image.mean(axis=2), cmap="gray", alpha=0.5)
        shown = ax.imshow(
            attention,
            cmap=STYLE["heatmap_cmap"],
            alpha=0.8,
            extent=(-0.5, width - 0.5, height - 0.5, -0.5),
            vmin=0,
        )
        ax.set_title(label, fontsize=STYLE["font_size"])
        outline(ax)
        bar = ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label("attention weight", fontsize=STYLE["font_size"] - 2)
    panels[0].figure.suptitle(title or "Where one patch looks", fontsize=STYLE["title_size"])
    return panels


def local_heads_over_training(
    histories,
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Local heads in a ViT's lower half against the training step, stage after stage.

    Args:
        histories: ``{model: [stage rows, ...]}``: for each model, its stages' logged rows
            in order (a manifest's ``pretrain.history`` then ``history``), each row with
            ``step`` and ``local_heads_lower_half``; steps continue across stages and a
            dotted line marks where a stage ends.
        ax: axes to draw on.
        title: what the reader should see.
    """
    if not histories:
        raise ValueError("histories is empty: pass {model: [stage rows, ...]}")
    ax = _new_axes(ax)
    for name, stages in histories.items():
        offset, xs, ys = 0, [0], [0]
        for rows in stages:
            if not rows or any("local_heads_lower_half" not in r for r in rows):
                raise ValueError(f"{name}: every row needs step and local_heads_lower_half")
            xs += [offset + r["step"] for r in rows]
            ys += [r["local_heads_lower_half"] for r in rows]
            offset += rows[-1]["step"]
        line = ax.plot(xs, ys, marker="o", markersize=3, label=name)[0]
        ends = np.cumsum([rows[-1]["step"] for rows in stages])[:-1]
        for end in ends:
            ax.axvline(end, color=line.get_color(), linestyle=":", linewidth=1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _label(ax, "Training step", "Local heads, lower half", title or "Local heads during training")
    ax.legend(fontsize=STYLE["font_size"] - 1)
    return ax


_SCORECARD_KEYS = ("label", "section", "outcome", "estimate")


def _interval(triple, where: str) -> tuple[float, float, float]:
    """A checked ``(value, low, high)``: three finite numbers with ``low <= value <= high``."""
    try:
        value, low, high = (float(x) for x in triple)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: need (value, low, high), three numbers; got {triple!r}"
        ) from None
    if not all(math.isfinite(x) for x in (value, low, high)):
        raise ValueError(f"{where}: need finite numbers, got {(value, low, high)}")
    if not low <= value <= high:
        raise ValueError(f"{where}: need low <= value <= high, got {(value, low, high)}")
    return value, low, high


def _scorecard_row(index: int, row: Mapping) -> dict:
    """One checked scorecard row (see :func:`ledger_scorecard`)."""
    if not isinstance(row, Mapping):
        raise TypeError(f"row {index}: a mapping with keys {_SCORECARD_KEYS}, got {type(row)}")
    missing = [key for key in _SCORECARD_KEYS if key not in row]
    if missing:
        raise ValueError(f"row {index} has no {missing}; every row needs {_SCORECARD_KEYS}")
    where = f"row {index} ({row['label']!r})"
    outcomes = tuple(STYLE["outcome_colours"])
    if row["outcome"] not in outcomes:
        raise ValueError(f"{where}: outcome must be one of {outcomes}, got {row['outcome']!r}")
    untestable = row["outcome"] == "not testable here"
    if untestable != (row["estimate"] is None):
        raise ValueError(
            f"{where}: a row has an estimate exactly when its claim was tested (outcome "
            f"{row['outcome']!r}, estimate {row['estimate']!r})"
        )
    parts = list(row.get("parts") or ())
    if untestable and parts:
        raise ValueError(f"{where}: a claim not testable here draws no parts")
    return {
        "label": str(row["label"]),
        "section": str(row["section"]),
        "outcome": row["outcome"],
        "estimate": None if untestable else _interval(row["estimate"], where),
        "parts": [_interval(part, f"{where}, part {j}") for j, part in enumerate(parts)],
        "text": str(row.get("text") or ""),
    }


def ledger_scorecard(
    rows: Sequence[Mapping],
    *,
    ax: Axes | None = None,
    title: str | None = None,
    untestable: str = "not testable here: premise in the caption",
    limits: tuple[float, float] = (-3.0, 5.0),
) -> Axes:
    """The findings ledger at a glance: one line per claim, grouped by section.

    Every claim's statistic is drawn on one common axis, in units of its rule's margin and
    signed in the claim's direction (``vitlens.book.verdicts.Part.scaled`` makes the
    numbers): "no effect" is the solid line at 0, the margin the dashed line at 1, so a
    claim *holds* where its whole interval lies right of the dashed line. The dot is the
    estimate, the thick bar its 95% interval, coloured by the claim's outcome
    (``STYLE["outcome_colours"]``); a claim of several parts is drawn by the part that
    decides it, its other parts as thin lines beside it. A claim not testable here gets a
    note instead of a line. Ends beyond ``limits`` are cut, with an arrowhead. Each row's
    numbers in its own units are written on the right.

    Args:
        rows: one mapping per claim, in the ledger's order, with ``label`` (a few words),
            ``section`` (rows are grouped by it, sections in order of first appearance),
            ``outcome`` (a key of ``STYLE["outcome_colours"]``), ``estimate`` (``(value,
            low, high)`` on the common axis, ``None`` exactly when the outcome is "not
            testable here"), optionally ``parts`` (the other parts' ``(value, low,
            high)``, same axis) and ``text`` (the numbers in the row's own units).
        ax: axes to draw on; a new figure about 0.27 inch per line, 10 inches wide, if
            ``None``.
        title: above the legend, if given (the book's caption usually serves).
        untestable: the note written across the row of a claim not testable here.
        limits: the widest x range shown, in margins.

    Returns:
        the axes; lines carry the gid ``"scorecard-estimate"`` (one per tested claim),
        ``"scorecard-part"`` (other parts), notes ``"scorecard-untestable"``.

    Raises:
        ValueError, TypeError: for no rows, a row without a key above, an unknown outcome,
            an estimate on an untested claim (or none on a tested one), numbers that are
            not finite or not ``low <= value <= high``.
    """
    checked = [_scorecard_row(i, row) for i, row in enumerate(rows)]
    if not checked:
        raise ValueError("a scorecard needs at least one row")
    if not limits[0] < 0 < 1 < limits[1]:
        raise ValueError(f"limits must contain 0 and 1, got {limits}")
    colours = STYLE["outcome_colours"]
    sections = list(dict.fromkeys(row["section"] for row in checked))

    slots, y = [], 0.0  # (y, row or None for a section's heading, section)
    for section in sections:
        slots.append((y, None, section))
        y -= 1
        for row in (r for r in checked if r["section"] == section):
            slots.append((y, row, section))
            y -= 1
        y -= 0.4
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.27 * len(slots) + 1.8))

    numbers = [x for row in checked for t in [row["estimate"], *row["parts"]] if t for x in t]
    left = max(limits[0], min([-1.0, *numbers]) - 0.3)
    right = min(limits[1], max([2.5, *numbers]) + 0.3)

    def clip(x: float) -> float:
        return min(max(x, left), right)

    def interval(value, low, high, at, colour, *, width, size, gid, alpha=1.0):
        ax.plot(
            [clip(low), clip(high)],
            [at, at],
            color=colour,
            lw=width,
            alpha=alpha,
            solid_capstyle="butt",
            gid=gid,
            zorder=3,
        )
        ax.plot(
            [clip(value)],
            [at],
            "o",
            color=colour,
            ms=size,
            alpha=alpha,
            zorder=4,
            mec="white",
            mew=0.6,
        )
        for end, edge, marker in ((low, left, "<"), (high, right, ">")):
            if (end < edge) if marker == "<" else (end > edge):
                ax.plot([edge], [at], marker, color=colour, ms=size, alpha=alpha, zorder=4)

    ax.axvline(0, color="0.3", lw=1, zorder=1, gid="no-effect")
    ax.axvline(1, color="0.3", lw=1, ls="--", zorder=1, gid="margin")
    top = mpl.transforms.blended_transform_factory(ax.transData, ax.transAxes)
    for x, word in ((0, "no effect"), (1, "margin")):
        ax.text(
            x,
            1.0,
            word,
            transform=top,
            ha="center",
            va="bottom",
            fontsize=STYLE["font_size"] - 1,
            color="0.3",
        )
    middle = (left + right) / 2
    for at, row, _section in slots:
        if row is None:
            ax.axhline(at + 0.6, color="0.85", lw=0.8, zorder=0)
            continue
        colour = colours[row["outcome"]]
        if row["estimate"] is None:
            ax.text(
                middle,
                at,
                untestable,
                ha="center",
                va="center",
                style="italic",
                color="0.35",
                fontsize=STYLE["font_size"] - 1.5,
                gid="scorecard-untestable",
            )
            continue
        for j, part in enumerate(row["parts"]):
            offset = (0.22 + 0.12 * (j // 2)) * (1 if j % 2 == 0 else -1)
            interval(
                *part, at + offset, colour, width=1.0, size=2.5, gid="scorecard-part", alpha=0.6
            )
        interval(*row["estimate"], at, colour, width=2.6, size=6, gid="scorecard-estimate")

    ys = [at for at, _, _ in slots]
    ax.set_yticks(ys, [row["label"] if row else section for _, row, section in slots])
    for tick, (_, row, _) in zip(ax.get_yticklabels(), slots, strict=True):
        if row is None:
            tick.set_fontweight("bold")
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(min(ys) - 0.7, 0.7)
    ax.set_xlim(left, right)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.spines["left"].set_visible(False)
    right_axis = ax.secondary_yaxis("right")
    right_axis.set_yticks(ys, [row["text"] if row else "" for _, row, _ in slots])
    right_axis.tick_params(length=0, labelsize=STYLE["font_size"] - 1.5)
    right_axis.spines["right"].set_visible(False)
    ax.set_xlabel(
        "estimate and 95% interval, in units of the rule's margin, signed in the claim's "
        "direction\n(0: no effect; 1: the margin; holds: the whole interval right of 1)"
    )
    counts = {o: sum(row["outcome"] == o for row in checked) for o in colours}
    handles = [
        mpl.lines.Line2D(
            [],
            [],
            color=c,
            lw=2.6,
            marker="o" if o != "not testable here" else "",
            label=f"{o} ({counts[o]})",
        )
        for o, c in colours.items()
    ]
    ax.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=4,
        frameon=False,
        borderaxespad=1.6,
    )
    if title:
        ax.set_title(title, pad=44)
    return ax


def measure_heatmaps(figures, *, title: str | None = None) -> np.ndarray:
    """Figures 1 and 2 under each measure: one row per measure, three heatmaps each.

    Args:
        figures: ``{measure: result}`` with ``within_a``, ``within_b`` and ``across``
            similarity results
            (:class:`vitlens.analyses.measures.FiguresUnderMeasure`).
        title: what the reader should see.

    Returns:
        The ``(measures, 3)`` array of axes.
    """
    if not figures:
        raise ValueError("figures is empty: pass {measure: FiguresUnderMeasure}")
    width, height = STYLE["panel_size"]
    fig, axes = plt.subplots(
        len(figures),
        3,
        figsize=(3 * width, len(figures) * height),
        layout="constrained",
        squeeze=False,
    )
    for row, (measure, result) in zip(axes, figures.items(), strict=True):
        label = MEASURE_LABELS.get(measure, measure)
        for ax, panel in zip(row, (result.within_a, result.within_b, result.across), strict=True):
            same = panel.name_a == panel.name_b
            what = display_name(panel.name_a) if same else "ViT rows, ResNet columns"
            plot_cka(panel, ax=ax, title=f"{label}: {what}")
    if title:
        fig.suptitle(_wrap(title), fontsize=STYLE["title_size"])
    return axes


def deletion_scatter(result, *, title: str | None = None) -> np.ndarray:
    """Principal-component deletion: each measure's change against the probe's loss.

    One panel per measure; one point per (layer, band), the probe's accuracy drop (x, in
    points) against ``1 - similarity`` (y), coloured by layer; each panel's title gives the
    Spearman correlation with its interval.

    Args:
        result: :class:`vitlens.analyses.sanity.DeletionResult`.
        title: what the reader should see.
    """
    names = list(result.dissimilarity)
    width, height = STYLE["panel_size"]
    fig, axes = plt.subplots(
        1,
        len(names),
        figsize=(len(names) * 0.8 * width, height),
        layout="constrained",
        squeeze=False,
    )
    for ax, measure in zip(axes[0], names, strict=True):
        for i, layer in enumerate(result.layers):
            ax.scatter(
                100 * np.asarray(result.accuracy_drop[i]),
                np.asarray(result.dissimilarity[measure][i]),
                label=layer,
                s=18,
            )
        estimate = result.correlation[measure]
        _label(
            ax,
            "probe accuracy lost (points)",
            "1 - similarity",
            f"{MEASURE_LABELS.get(measure, measure)}: Spearman {estimate.text()}",
        )
    axes[0, -1].legend(fontsize=STYLE["font_size"] - 2, title="layer", loc="best")
    if title:
        fig.suptitle(_wrap(title), fontsize=STYLE["title_size"])
    return axes


def moved_points_curves(result, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """A few images' features moved ever farther: each measure's similarity, and the probe's.

    Args:
        result: :class:`vitlens.analyses.sanity.RobustnessResult`.
        ax: axes to draw on.
        title: what the reader should see.
    """
    ax = _new_axes(ax)
    for measure, values in result.similarity.items():
        ax.plot(result.scales, values, marker="o", label=MEASURE_LABELS.get(measure, measure))
    ax.plot(
        result.scales,
        result.probe_accuracy,
        marker="s",
        linestyle="--",
        color="black",
        label="probe accuracy",
    )
    ax.axhline(result.baseline_accuracy, color="grey", linewidth=1, linestyle=":")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    _label(
        ax,
        "distance moved (x the features' RMS spread)",
        "similarity to the original / accuracy",
        title or f"{result.moved} images moved at {result.layer}",
    )
    ax.legend(fontsize=STYLE["font_size"] - 2, loc="lower left")
    return ax


def seed_heatmaps(results, *, label_a: str, label_b: str) -> np.ndarray:
    """The seed baseline: one cross-run heatmap per measure, its margin in the title.

    Args:
        results: ``{measure: result}`` with ``matrix`` (``(L, L)``, run A's blocks as rows)
            and ``margin`` (an estimate with ``text``), e.g.
            :class:`vitlens.analyses.sanity.SpecificityResult`.
        label_a, label_b: the two runs' model names.

    Returns:
        The ``(measures,)`` array of axes.
    """
    if not results:
        raise ValueError("results is empty: pass {measure: SpecificityResult}")
    width, _ = STYLE["panel_size"]
    _, axes = plt.subplots(
        1,
        len(results),
        figsize=(0.8 * width * len(results), 0.8 * width),
        layout="constrained",
        squeeze=False,
    )
    for ax, (measure, result) in zip(axes[0], results.items(), strict=True):
        name = MEASURE_LABELS.get(measure, measure)
        cka_heatmap(
            result.matrix,
            label_a=label_a,
            label_b=label_b,
            ax=ax,
            value_label=name,
            title=f"{name}: margin {result.margin.text('.3f')}",
        )
    return axes[0]
