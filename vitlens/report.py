"""One report for any model: every analysis its family supports, on one page.

:func:`build_report` runs the paper's measurements that apply to a model's family
(:func:`vitlens.model_info`) through the public analysis functions, optionally against a
reference model, and returns a :class:`Report`; :meth:`Report.to_html` writes one
self-contained HTML page (figures embedded as base64 PNG, no external CSS, scripts or
fonts) with a caption per section, a table of key numbers and the timing of each section.

Sections, in order (paper figure in brackets):

* ``cka``: layer-by-layer CKA of the model with itself, and of the reference (Fig. 1);
* ``cka_against``: CKA of the model against the reference (Fig. 2);
* ``attention_distance``: mean attention distance per head (ViT only, Fig. 3);
* ``head_subsets``: CKA of block 0's heads, local to global, with the reference (ViT and
  a reference, Fig. 5);
* ``receptive_field``: effective receptive fields of the block outputs (Fig. 6);
* ``skip_norms``: skip vs. long-branch norm ratio per residual addition (Fig. 7);
* ``localization``: CKA of each token with each input patch (Fig. 9, 10);
* ``probes``: few-shot linear probe accuracy per block (Fig. 11), when labels exist.

A section the family does not support, or that lacks what it needs (a reference, labels),
is kept with its status and the reason in words. Every analysis is data-parallel under
``torch.distributed`` (except the receptive fields, which every rank computes whole), so
under ``torchrun`` every rank builds the same report and one of them writes it.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from vitlens.analyses.attention import head_subset_cka, mean_attention_distance
from vitlens.analyses.compare import cka_matrix
from vitlens.analyses.localization import localization_map
from vitlens.analyses.probes import dataset_labels, fewshot_linear_probe, pooled_features
from vitlens.analyses.receptive import effective_receptive_field, mass_area
from vitlens.analyses.residual import residual_norm_ratios
from vitlens.models import model_name
from vitlens.models.families import model_info
from vitlens.models.layers import layer_names
from vitlens.plotting import (
    STYLE,
    attention_distance_scatter,
    erf_grid,
    head_subset_curves,
    localization_grid,
    norm_ratio_curves,
    plot_cka,
    probe_accuracy_curves,
    use_theme,
)
from vitlens.streaming import image_batches, process_shard, resolve_device, run_with_cache

__all__ = ["SECTIONS", "Report", "Section", "build_report"]

SECTIONS: dict[str, tuple[str, str]] = {
    "cka": (
        "CKA within each model",
        "Linear minibatch CKA between every pair of layers of one model (Figure 1). Bright "
        "off-diagonal blocks mean layers at different depths represent the images alike; the "
        "paper finds ViT representations more uniform across depth than a ResNet's.",
    ),
    "cka_against": (
        "CKA against the reference",
        "Linear minibatch CKA between every layer of the model and every layer of the "
        "reference (Figure 2). The best-match depth is, for each reference layer, the relative "
        "depth (0: first layer, 1: last) of the model's most similar layer; the paper finds "
        "the lower half of ResNet layers most similar to the lowest quarter of ViT layers.",
    ),
    "attention_distance": (
        "Mean attention distance",
        "How far, in input pixels, each head attends on average: attention weights times the "
        "distance between query and key patch centres (Figure 3). Lower blocks of a ViT trained "
        "on enough data mix local and global heads; higher blocks attend globally.",
    ),
    "head_subsets": (
        "Local and global heads against the reference",
        "CKA between windows of block 0's heads, ordered from the most local to the most "
        "global, and the reference's lower layers (Figure 5). The paper finds the local heads "
        "closest to a ResNet's lower layers.",
    ),
    "receptive_field": (
        "Effective receptive fields",
        "Mean over images of |d centre feature / d input| for each block output (Figure 6). "
        "The half-mass area is the fraction of input pixels that hold half of a map's total: "
        "small for local receptive fields, about 0.5 for uniform ones.",
    ),
    "skip_norms": (
        "Skip connections",
        "Ratio ||z|| / ||f(z)|| of the representation carried by each skip connection to the "
        "branch added to it, averaged over positions and images (Figure 7). A large ratio "
        "means the block mostly passes its input through; the paper finds ViT skips stronger "
        "than ResNet's, and the class token's strongest in the lower blocks.",
    ),
    "localization": (
        "Localization",
        "CKA between each token (or feature-map cell) of the last layer and each input patch "
        "(Figures 9, 10). A well-localized token peaks at its own cell (the cross); the own-"
        "patch and other-patch means summarise how much spatial information survives.",
    ),
    "probes": (
        "Few-shot linear probes",
        "Accuracy of closed-form least-squares probes fit on k examples per class on each "
        "block's pooled representation (Figure 11): how linearly decodable the labels are at "
        "each depth, from the class token ('first') or the mean of the tokens ('mean').",
    ),
}
"""Section keys, in report order, with their titles and captions."""


@dataclass
class Section:
    """One analysis in a report.

    Attributes:
        key: the section's key in :data:`vitlens.report.SECTIONS`.
        title: heading.
        caption: what the analysis measures and which figure of the paper it serves.
        status: ``"ok"``, ``"not applicable"`` (the family lacks what it measures) or
            ``"skipped"`` (the inputs lack what it needs, e.g. labels or a reference).
        reason: why a section did not run (``None`` when it ran).
        numbers: key numbers, ``{label: float, list of floats or str}``.
        arrays: the full results (e.g. the CKA matrix), for checks and saving.
        figures: PNG images (bytes, drawn at twice the display resolution).
        seconds: wall time of the section.
    """

    key: str
    title: str
    caption: str
    status: str = "ok"
    reason: str | None = None
    numbers: dict[str, object] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    figures: list[bytes] = field(default_factory=list)
    figure_widths: list[int] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Report:
    """The result of :func:`build_report`; :meth:`to_html` writes it as one page.

    Attributes:
        model, against: names of the model and of the reference (``None`` without one).
        family, against_family: their families (:func:`vitlens.model_info`).
        data: description of the images.
        num_images: images analysed (the probes' training pool may add more).
        device: where the analyses ran.
        world_size: processes that shared the work (``torchrun``).
        version: the vitlens version.
        sections: every section of :data:`vitlens.report.SECTIONS`, in order.
        created: ISO timestamp.
        seconds: total wall time.
    """

    model: str
    against: str | None
    family: str
    against_family: str | None
    data: str
    num_images: int
    device: str
    world_size: int
    version: str
    sections: list[Section]
    created: str
    seconds: float

    def section(self, key: str) -> Section:
        """The section with this key (see :data:`vitlens.report.SECTIONS`)."""
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(f"no section {key!r}; sections: {[s.key for s in self.sections]}")

    def to_html(self) -> str:
        """The report as one self-contained HTML page (no external URLs)."""
        return _render(self)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_html` to ``path`` (UTF-8); returns the path."""
        path = Path(path)
        path.write_text(self.to_html(), encoding="utf-8")
        return path


# --------------------------------------------------------------------------- helpers


def _png(axes) -> tuple[bytes, int]:
    """PNG bytes of the figure holding ``axes`` at twice its display resolution, closed."""
    figure = np.asarray(axes, dtype=object).ravel()[0].figure
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=2 * figure.dpi)
    width = round(float(figure.get_size_inches()[0]) * figure.dpi)
    plt.close(figure)
    return buffer.getvalue(), width


def _add_figure(section: Section, axes) -> None:
    png, width = _png(axes)
    section.figures.append(png)
    section.figure_widths.append(width)


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


def _first_image(data) -> torch.Tensor:
    batches, _ = image_batches(data, 1, torch.device("cpu"))
    for images in batches:
        return images[:1]
    raise ValueError("data yielded no images")


def _localization_layer(model: nn.Module, family: str, image: torch.Tensor) -> str:
    """The last block output; for a ResNet, the last one whose map is at least 4x4."""

    blocks = layer_names(model, "blocks")
    if family != "resnet":
        return blocks[-1]
    with torch.inference_mode():
        shapes = {k: v.shape for k, v in run_with_cache(model, image, blocks).items()}
    usable = [b for b in blocks if len(shapes[b]) == 4 and min(shapes[b][-2:]) >= 4]
    return usable[-1] if usable else blocks[0]


def _own_patch_cka(maps: torch.Tensor) -> tuple[float, float]:
    """Mean CKA of patch tokens with their own patch, and with every other patch."""
    tokens, rows, cols = maps.shape
    patches = maps[tokens - rows * cols :].reshape(rows * cols, rows * cols).double()
    own = patches.diagonal()
    others = (patches.nansum() - own.nansum()) / (patches.numel() - own.numel())
    return float(own.nanmean()), float(others)


def _dataset_labels_or_none(data) -> tuple[torch.Tensor | None, str | None]:
    if isinstance(data, torch.Tensor):
        return None, "the images are a bare tensor, without labels"
    try:
        return dataset_labels(data).long(), None
    except ValueError as err:
        return None, f"the data has no labels ({err})"


# --------------------------------------------------------------------------- sections


def _cka(ctx: dict, section: Section) -> None:
    model, name = ctx["model"], ctx["name"]
    results = [cka_matrix(model, ctx["data"], name_a=name, **ctx["kw"])]
    if ctx["against"] is not None:
        results.append(
            cka_matrix(ctx["against"], ctx["data"], name_a=ctx["against_name"], **ctx["kw"])
        )
    width, height = STYLE["panel_size"]
    _, axes = plt.subplots(
        1, len(results), figsize=(width * len(results), height), layout="constrained"
    )
    for ax, result in zip(np.atleast_1d(axes), results, strict=True):
        plot_cka(result, ax=ax, title=f"{result.name_a}: CKA between its layers")
        section.numbers[f"mean off-diagonal CKA, {result.name_a}"] = result.mean_offdiagonal()
        section.arrays[f"cka_{result.name_a}"] = result.matrix
    section.numbers["layers"] = ", ".join(f"{r.name_a}: {len(r.layers_a)}" for r in results)
    _add_figure(section, axes)


def _cka_against(ctx: dict, section: Section) -> None:
    result = cka_matrix(
        ctx["model"],
        ctx["data"],
        ctx["against"],
        name_a=ctx["name"],
        name_b=ctx["against_name"],
        **ctx["kw"],
    )
    depth = result.best_match_depth()
    lower = depth[: max(1, len(depth) // 2)]
    section.numbers["mean CKA"] = float(np.nanmean(result.matrix))
    section.numbers["max CKA"] = float(np.nanmax(result.matrix))
    section.numbers[f"best-match depth in {ctx['name']}, lower half of {ctx['against_name']}"] = (
        float(lower.mean())
    )
    section.arrays["cka"] = result.matrix
    section.arrays["best_match_depth"] = depth
    _add_figure(section, plot_cka(result, title=f"{ctx['name']} vs. {ctx['against_name']}"))


def _attention_distance(ctx: dict, section: Section) -> None:
    distances = mean_attention_distance(ctx["model"], ctx["data"], **ctx["kw"])
    per_block = distances.mean(1)
    section.numbers["mean distance per block (pixels)"] = _floats(per_block)
    section.numbers["block 0: most local / most global head (pixels)"] = _floats(
        [distances[0].min(), distances[0].max()]
    )
    section.arrays["distance_pixels"] = distances.numpy()
    ax = attention_distance_scatter(
        distances, title=f"{ctx['name']}: mean attention distance", label=ctx["name"]
    )
    _add_figure(section, ax)


def _head_subsets(ctx: dict, section: Section) -> None:
    result = head_subset_cka(ctx["model"], ctx["against"], ctx["data"], block=0, **ctx["kw"])
    matrix = result.matrix.double()
    section.numbers["most local subset: mean CKA"] = float(matrix[0].mean())
    section.numbers["most global subset: mean CKA"] = float(matrix[-1].mean())
    section.numbers["heads per subset"] = int(result.heads.shape[1])
    section.arrays["cka"] = matrix.numpy()
    section.arrays["heads"] = result.heads.numpy()
    title = f"{ctx['name']} block 0 heads vs. {ctx['against_name']}"
    _, ax = plt.subplots(figsize=(6.0, 4.6), layout="constrained")  # room for layer names
    _add_figure(section, head_subset_curves(result, ax=ax, title=title))


def _receptive_field(ctx: dict, section: Section) -> None:
    kw = dict(ctx["kw"], batch_size=min(ctx["kw"]["batch_size"], 16))
    maps = effective_receptive_field(ctx["model"], ctx["data"], **kw)
    areas = [mass_area(field) for field in maps.values()]
    section.numbers["half-mass area per block (fraction of the image)"] = areas
    section.arrays["erf"] = torch.stack(list(maps.values())).numpy()
    names = list(maps)
    shown = sorted(set(np.linspace(0, len(names) - 1, min(8, len(names))).round().astype(int)))
    axes = erf_grid(
        {names[i]: maps[names[i]] for i in shown},
        title=f"{ctx['name']}: effective receptive fields",
    )
    _add_figure(section, axes)


def _skip_norms(ctx: dict, section: Section) -> None:
    result = residual_norm_ratios(ctx["model"], ctx["data"], **ctx["kw"])
    spatial = result.mean_over_positions(result.norm_ratio, prefix=False)
    kinds = np.array([b.kind for b in result.branches])
    section.numbers["mean norm ratio, all branches"] = float(spatial.mean())
    for kind in dict.fromkeys(kinds):
        values = spatial[torch.as_tensor(kinds == kind)]
        section.numbers[f"norm ratio per block, {kind}"] = _floats(values)
    if result.num_prefix_tokens:
        prefix = result.mean_over_positions(result.norm_ratio, prefix=True)
        section.numbers["mean norm ratio, class token"] = float(prefix.mean())
        section.arrays["class_token_norm_ratio"] = prefix.numpy()
    section.arrays["mean_norm_ratio"] = spatial.numpy()
    _add_figure(section, norm_ratio_curves(result, title=f"{ctx['name']}: skip vs. branch norms"))


def _localization(ctx: dict, section: Section) -> None:
    layer = _localization_layer(ctx["model"], ctx["family"], _first_image(ctx["data"]))
    maps = localization_map(ctx["model"], ctx["data"], layer, **ctx["kw"])
    own, others = _own_patch_cka(maps)
    section.numbers["layer"] = layer
    section.numbers["mean CKA with own patch"] = own
    section.numbers["mean CKA with other patches"] = others
    section.arrays["cka"] = maps.numpy()
    axes = localization_grid(maps, title=f"{ctx['name']} {layer}: localization")
    _add_figure(section, axes)


def _probes(ctx: dict, section: Section) -> None:
    model, data, pool_data = ctx["model"], ctx["data"], ctx["probe_data"]
    test_labels, why = _dataset_labels_or_none(data)
    if pool_data is not None and test_labels is not None:
        pool_labels, why = _dataset_labels_or_none(pool_data)
    if why is not None:
        section.status, section.reason = "skipped", f"no labels: {why}"
        return
    if pool_data is None:  # split the images: even positions fit, odd positions test
        pool_index = torch.arange(0, len(test_labels), 2)
        test_index = torch.arange(1, len(test_labels), 2)
        pool_labels, test_labels = test_labels[pool_index], test_labels[test_index]
    classes = int(pool_labels.max()) + 1
    counts = torch.bincount(pool_labels, minlength=classes)
    shots = min(ctx["shots"], int(counts.min()) // 2)
    if classes < 2 or shots < 1:
        section.status = "skipped"
        section.reason = (
            f"too few labelled images: a probe needs 2 classes and 2 training images of every "
            f"class (one to fit, one to pick the L2 strength); the training pool has "
            f"{classes} class(es), the smallest with {int(counts.min())} image(s)"
        )
        return
    layers = layer_names(model, "blocks")
    poolings = ["first", "mean"] if ctx["info"].num_prefix_tokens else ["mean"]
    curves, last = {}, {}
    for pooling in poolings:
        kwargs = dict(layers=layers, pooling=pooling, **ctx["kw"])
        if pool_data is None:
            features = pooled_features(model, data, **kwargs)
            pool_features = {k: v[pool_index] for k, v in features.items()}
            test_features = {k: v[test_index] for k, v in features.items()}
        else:
            pool_features = pooled_features(model, pool_data, **kwargs)
            test_features = pooled_features(model, data, **kwargs)
        results = [
            fewshot_linear_probe(
                pool_features[name],
                pool_labels,
                test_features[name],
                test_labels,
                shots=shots,
                seeds=ctx["seeds"],
            )
            for name in layers
        ]
        mean = torch.stack([r.mean for r in results])
        std = torch.stack([r.std for r in results])
        curves[pooling] = (mean.numpy(), std.numpy())
        last[pooling] = float(mean[-1])
        section.arrays[f"accuracy_{pooling}"] = mean.numpy()
    for pooling, value in last.items():
        section.numbers[f"accuracy at the last block, {pooling}"] = value
    section.numbers["shots, seeds, classes"] = f"{shots}, {ctx['seeds']}, {classes}"
    section.numbers["chance"] = 1.0 / classes
    section.numbers["training pool / test images"] = f"{len(pool_labels)} / {len(test_labels)}"
    ax = probe_accuracy_curves(
        curves, chance=1.0 / classes, title=f"{ctx['name']}: {shots}-shot linear probes"
    )
    _add_figure(section, ax)


def _applicability(key: str, family: str, has_against: bool) -> tuple[str, str] | None:
    """``(status, reason)`` for a section that cannot run; ``None`` when it can."""
    if key in ("attention_distance", "head_subsets") and family != "vit":
        what = (
            "a ResNet has no attention: it mixes space with convolutions"
            if family == "resnet"
            else "an MLP-Mixer has no attention: it mixes tokens with an MLP"
        )
        return "not applicable", f"{what}, so there are no attention weights to measure"
    if key in ("cka_against", "head_subsets") and not has_against:
        return "skipped", "no reference model (pass --against MODEL)"
    return None


_RUNNERS: dict[str, Callable[[dict, Section], None]] = {
    "cka": _cka,
    "cka_against": _cka_against,
    "attention_distance": _attention_distance,
    "head_subsets": _head_subsets,
    "receptive_field": _receptive_field,
    "skip_norms": _skip_norms,
    "localization": _localization,
    "probes": _probes,
}


def build_report(
    model: nn.Module,
    data,
    against: nn.Module | None = None,
    *,
    probe_data=None,
    name: str | None = None,
    against_name: str | None = None,
    data_name: str | None = None,
    shots: int = 10,
    seeds: int = 5,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> Report:
    """Run every analysis ``model``'s family supports and collect figures and key numbers.

    Args:
        model: a timm ViT, ResNet or MLP-Mixer (zoo or timm;
            :func:`vitlens.models.zoo.load_model`).
        data: ``(N, C, H, W)`` tensor or Dataset of images preprocessed for ``model``; a
            Dataset with labels (``.targets`` or a
            :class:`vitlens.data.shapes.ShapesDataset`) enables the probes.
        against: a reference model fed the same images (e.g. a ResNet for a ViT), for the
            CKA against it and the head subsets; ``None`` skips those sections.
        probe_data: labelled images for the probes' training pool (e.g. the training split);
            ``None`` splits ``data``: even positions fit, odd positions test.
        name, against_name: labels (default: :func:`vitlens.models.zoo.model_name`).
        data_name: how the report describes the images (default: the Dataset's class).
        shots: examples per class for the probes, lowered to what the smallest class of
            the training pool allows (each class needs ``2 * shots``: fit and held out).
        seeds: random draws of the few-shot set.
        batch_size: images per minibatch (the receptive fields use at most 16); every CKA
            batch needs more than 3 images.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ...; the models are moved there.
        progress: show progress bars (one over sections, one per analysis).

    Returns:
        :class:`Report` with every section of :data:`vitlens.report.SECTIONS`, run or marked "not
        applicable" / "skipped" with the reason.

    Raises:
        ValueError: a model of no supported family, or bad input to an analysis.

    Under an initialised ``torch.distributed`` group every rank must call it; all ranks
    return the same numbers.
    """
    start = time.perf_counter()
    info = model_info(model)
    against_info = model_info(against) if against is not None else None
    name = name or model_name(model)
    against_name = (against_name or model_name(against)) if against is not None else None
    if against is not None and against_name == name:
        against_name = f"{against_name} (reference)"
    ctx = {
        "model": model,
        "against": against,
        "data": data,
        "probe_data": probe_data,
        "name": name,
        "against_name": against_name,
        "family": info.family,
        "info": info,
        "shots": shots,
        "seeds": seeds,
        "kw": {"batch_size": batch_size, "device": device, "progress": progress},
    }
    sections = []
    bar = tqdm(SECTIONS.items(), total=len(SECTIONS), disable=not progress, desc="report")
    with plt.rc_context():  # the book's theme for the report's figures, the caller's after
        use_theme()
        for key, (title, caption) in bar:
            bar.set_postfix_str(key)
            section = Section(key, title, caption)
            blocked = _applicability(key, info.family, against is not None)
            if blocked is not None:
                section.status, section.reason = blocked
            else:
                tick = time.perf_counter()
                _RUNNERS[key](ctx, section)
                section.seconds = time.perf_counter() - tick
            sections.append(section)
    bar.close()
    return Report(
        model=name,
        against=against_name,
        family=info.family,
        against_family=against_info.family if against_info else None,
        data=data_name or type(data).__name__,
        num_images=len(getattr(data, "dataset", data)),  # a DataLoader's len counts batches
        device=str(resolve_device(device)),
        world_size=process_shard()[1],
        version=version("vitlens"),
        sections=sections,
        created=datetime.datetime.now().isoformat(timespec="seconds"),
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------- HTML

_CSS = """
:root { --ink: #1f2328; --muted: #57606a; --line: #d0d7de; --accent: #0a7d91;
        --soft: #f6f8fa; --warn: #9a6700; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.55;
       font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial,
       sans-serif; font-size: 16px; }
main { max-width: 62rem; margin: 0 auto; padding: 2rem 1.5rem 4rem; }
h1 { font-size: 1.9rem; margin: 0 0 .3rem; }
h2 { font-size: 1.35rem; margin: 2.4rem 0 .4rem; padding-bottom: .25rem;
     border-bottom: 1px solid var(--line); }
h2 .time { float: right; font-size: .8rem; font-weight: normal; color: var(--muted); }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.subtitle { color: var(--muted); margin: 0 0 1.2rem; }
.caption { color: var(--muted); margin: .3rem 0 .8rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .92rem; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; font-family: ui-monospace, SFMono-Regular,
         Menlo, Consolas, monospace; font-size: .86rem; }
table.meta { width: auto; }
table.meta th { background: none; font-weight: 600; padding-right: 1.5rem; }
figure { margin: .8rem 0 1rem; text-align: center; }
figure img { max-width: 100%; height: auto; }
.status { display: inline-block; padding: .05rem .5rem; border-radius: 1rem;
          font-size: .78rem; font-weight: 600; }
.status.ok { background: #dafbe1; color: #1a7f37; }
.status.not-applicable, .status.skipped { background: #fff8c5; color: var(--warn); }
.note { background: var(--soft); border-left: 4px solid var(--warn); padding: .6rem .9rem;
        margin: .6rem 0 1rem; }
nav ol { columns: 2; margin: .4rem 0 0; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
"""


def _format(value) -> str:
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(_format(v) for v in value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if not np.isfinite(value):
        return str(value)
    return f"{value:.3g}" if abs(value) >= 100 or abs(value) < 0.01 else f"{value:.3f}"


def _status_badge(status: str) -> str:
    return f'<span class="status {status.replace(" ", "-")}">{_escape(status)}</span>'


def _headline(section: Section) -> str:
    """The section's first scalar number, for the summary table."""
    for label, value in section.numbers.items():
        if isinstance(value, (float, int)) and not isinstance(value, bool):
            return f"{_escape(label)}: {_format(value)}"
    for label, value in section.numbers.items():
        if isinstance(value, list) and len(value) > 1:
            return f"{_escape(label)}: {_format(value[0])} (first) to {_format(value[-1])} (last)"
    return ""


def _render(report: Report) -> str:
    title = f"vitlens report: {report.model}" + (
        f" against {report.against}" if report.against else ""
    )
    models = f"{report.model} ({report.family})"
    if report.against:
        models += f"; reference {report.against} ({report.against_family})"
    meta = [
        ("Models", models),
        ("Images", f"{report.num_images} ({report.data})"),
        (
            "Device",
            report.device + (f", {report.world_size} processes" if report.world_size > 1 else ""),
        ),
        ("vitlens", report.version),
        ("Created", report.created),
        ("Total time", f"{report.seconds:.1f} s"),
    ]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_escape(title)}</h1>",
        '<p class="subtitle">Measurements of Raghu et al., <em>Do Vision Transformers See '
        "Like Convolutional Neural Networks?</em> (NeurIPS 2021), by vitlens.</p>",
        '<table class="meta">',
        *(f"<tr><th>{_escape(k)}</th><td>{_escape(v)}</td></tr>" for k, v in meta),
        "</table>",
        "<h2>Summary</h2>",
        "<table><tr><th>Section</th><th>Status</th><th>Key number or reason</th><th>Time</th></tr>",
    ]
    for s in report.sections:
        detail = _headline(s) if s.status == "ok" else _escape(s.reason)
        time_cell = f"{s.seconds:.1f} s" if s.status == "ok" else ""
        out.append(
            f'<tr><td><a href="#{s.key}">{_escape(s.title)}</a></td>'
            f"<td>{_status_badge(s.status)}</td><td>{detail}</td><td>{time_cell}</td></tr>"
        )
    out.append("</table>")
    for s in report.sections:
        time_span = f'<span class="time">{s.seconds:.1f} s</span>' if s.status == "ok" else ""
        out.append(f'<section id="{s.key}"><h2>{_escape(s.title)} {time_span}</h2>')
        out.append(f'<p class="caption">{_escape(s.caption)}</p>')
        if s.status != "ok":
            out.append(
                f'<p class="note">{_status_badge(s.status)} {_escape(s.status.capitalize())}: '
                f"{_escape(s.reason)}</p></section>"
            )
            continue
        for png, width in zip(s.figures, s.figure_widths, strict=True):
            out.append(
                f'<figure><img width="{width}" alt="{_escape(s.title)}" '
                f'src="data:image/png;base64,{_b64(png)}"></figure>'
            )
        out.append("<table><tr><th>Quantity</th><th>Value</th></tr>")
        for label, value in s.numbers.items():
            out.append(f'<tr><td>{_escape(label)}</td><td class="num">{_format(value)}</td></tr>')
        out.append("</table></section>")
    out.append(
        f"<footer>vitlens {_escape(report.version)}: one page, no external resources. "
        "Numbers are computed on the images above; see the book for the full study.</footer>"
    )
    out.append("</main></body></html>")
    return "\n".join(out)


def _escape(value) -> str:
    return html.escape(str(value))


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")
