"""One entry per analysis: what ``vitlens report`` runs and what each ``vitlens`` command is.

Every measurement a user can run on their own model is an :class:`Analysis` in
:data:`ANALYSES`: its title and caption, the paper's figure, the families it cannot measure
(and why), the models it compares, whether it needs labels, its own settings, and a run
function that takes :class:`Inputs` and returns an :class:`Outcome` (the analysis's typed
result, its key numbers, its arrays and its figure). :func:`vitlens.build_report`
runs the entries marked for the report; ``vitlens.cli.analyses`` makes one subcommand
of each entry, its positional arguments and flags from the entry's fields. Adding an
analysis to both is adding one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib import pyplot as plt
from torch import nn
from torch.utils.data import Dataset

from vitlens.analyses.attention import head_subset_cka, mean_attention_distance
from vitlens.analyses.compare import (
    best_match_depth,
    cka_matrix,
    depth_halves,
    offdiagonal_mean,
)
from vitlens.analyses.localization import (
    default_localization_layer,
    localization_map,
    own_patch_cka,
)
from vitlens.analyses.measures import similarity_matrix
from vitlens.analyses.probes import (
    check_fewshot_pool,
    dataset_labels,
    fit_and_score_halves,
    labels_by_class_name,
    pooled_readings,
    probe_curve,
)
from vitlens.analyses.receptive import (
    effective_receptive_field,
    mass_area,
    sampled_receptive_field,
)
from vitlens.analyses.residual import residual_norm_ratios
from vitlens.analyses.training_similarity import layerwise_cka
from vitlens.core.similarity import SIMILARITY_MEASURES
from vitlens.models import layer_names, model_info
from vitlens.plotting import (
    MEASURE_LABELS,
    attention_distance_scatter,
    erf_grid,
    head_subset_curves,
    layerwise_cka_curves,
    localization_grid,
    norm_ratio_curves,
    plot_cka,
    probe_accuracy_curves,
)
from vitlens.streaming import ImageSource, RunOptions, layer_shapes

__all__ = [
    "ANALYSES",
    "MINIBATCH_CKA",
    "Analysis",
    "Inputs",
    "MissingInput",
    "Outcome",
    "Positional",
    "Setting",
    "analysis",
]

MINIBATCH_CKA = "minibatch_cka"
"""The CKA heatmaps' default measure, the paper's linear minibatch CKA, which streams
(:func:`vitlens.cka_matrix`). Every other measure holds all images' features at once
(:func:`vitlens.analyses.measures.similarity_matrix`)."""

MAX_ERF_PANELS = 8
"""Receptive fields drawn at most, evenly spaced over depth (all are computed and saved)."""

_NO_ATTENTION = {
    "resnet": "a ResNet has no attention: it mixes space with convolutions, so there are no "
    "attention weights to measure",
    "mixer": "an MLP-Mixer has no attention: it mixes tokens with an MLP, so there are no "
    "attention weights to measure",
}


class MissingInput(ValueError):
    """The inputs lack what an analysis needs (labels, enough images per class...): the
    report shows the section as skipped with this message; a command stops with it."""


@dataclass(frozen=True)
class Setting:
    """One option of an analysis beside its models and images: a ``--flag`` of its command.

    Attributes:
        name: the key in :attr:`Inputs.settings` (the flag is ``--name`` with hyphens).
        help: what it sets, for ``--help``.
        default: its value when not given.
        type: converts the command-line string (``int``...); ``None`` keeps the string.
        choices: the valid values, if a few.
        nargs: ``"+"`` for a list.
        in_report: ``vitlens report`` takes it too.
    """

    name: str
    help: str
    default: object = None
    type: Callable | None = None
    choices: tuple | None = None
    nargs: str | None = None
    in_report: bool = False

    @property
    def flag(self) -> str:
        """``--name-with-hyphens``."""
        return "--" + self.name.replace("_", "-")

    def argparse_options(self) -> dict:
        """Keyword arguments of ``parser.add_argument(self.flag, ...)``."""
        options = {"dest": self.name, "default": self.default, "help": self.help}
        for key in ("type", "choices", "nargs"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        return options


@dataclass(frozen=True)
class Positional:
    """A model named on the command line: ``model`` (the analysed one), ``reference`` (the
    one it is compared with) or ``others`` (more models, e.g. trained on less data)."""

    role: str
    help: str
    nargs: str | None = None


@dataclass(frozen=True)
class Inputs:
    """What one run of an analysis gets.

    Attributes:
        model: the analysed model.
        name: its label in figures and numbers.
        images: ``(N, C, H, W)`` tensor, Dataset or DataLoader preprocessed for ``model``.
        run: batch size, device and progress bars.
        settings: the analysis's :class:`Setting` values by name (defaults filled in by
            :meth:`Analysis.settings_with`).
        reference, reference_name: the model it is compared with, and its label.
        others: ``(name, model)`` pairs of further models (layer-wise CKA).
        train_images: labelled images a probe is fit on; ``None`` splits ``images`` in two
            halves balanced over classes (:func:`vitlens.analyses.probes.fit_and_score_halves`).
    """

    model: nn.Module
    name: str
    images: ImageSource
    run: RunOptions = field(default_factory=RunOptions)
    settings: Mapping[str, object] = field(default_factory=dict)
    reference: nn.Module | None = None
    reference_name: str | None = None
    others: tuple[tuple[str, nn.Module], ...] = ()
    train_images: Dataset | None = None


@dataclass
class Outcome:
    """What one run of an analysis returns.

    Attributes:
        result: the analysis function's own result (a ``CKAResult``, a tensor of distances...).
        numbers: key numbers in words, ``{label: float, list of floats or str}``.
        arrays: the full results by name, for saving (``.npz``/``.csv``) and checks.
        axes: the figure's axes (one, or an array of them).
    """

    result: object
    numbers: dict[str, object]
    arrays: dict[str, np.ndarray]
    axes: object


@dataclass(frozen=True)
class Analysis:
    """One measurement of the paper, as the report and the command line run it.

    Attributes:
        key: its name (the command is the key with hyphens, e.g. ``attention-distance``).
        title, caption: the report's heading and what the figure shows, in words.
        figure: the paper's figure(s) it reproduces, e.g. ``"Fig. 3"``.
        help: the command's one-line description.
        models: the models its command names, in order (the first is always ``model``).
        run: ``Inputs -> Outcome``.
        not_for: family -> why the analysis cannot measure that family.
        needs_labels: it reads the images' labels.
        settings: its own options.
        batch_size: the command's default batch size.
        max_batch_size: the report's cap on the batch size (input gradients hold memory).
        in_report: ``vitlens report`` runs it.
        against: for an analysis whose reference is optional, the report's ``(title,
            caption)`` of its run against the reference (the run without is ``title``).
    """

    key: str
    title: str
    caption: str
    figure: str
    help: str
    models: tuple[Positional, ...]
    run: Callable[[Inputs], Outcome]
    not_for: Mapping[str, str] = field(default_factory=dict)
    needs_labels: bool = False
    settings: tuple[Setting, ...] = ()
    batch_size: int = 64
    max_batch_size: int | None = None
    in_report: bool = True
    against: tuple[str, str] | None = None

    @property
    def command(self) -> str:
        """The ``vitlens`` subcommand: the key with hyphens."""
        return self.key.replace("_", "-")

    @property
    def reference(self) -> str:
        """``"none"``, ``"optional"`` or ``"required"``: whether it compares with a reference."""
        for positional in self.models:
            if positional.role == "reference":
                return "optional" if positional.nargs == "?" else "required"
        return "none"

    def check_family(self, model: nn.Module) -> None:
        """Refuse, with the reason in words, a model of a family the analysis cannot measure."""
        family = model_info(model).family
        if family in self.not_for:
            raise ValueError(f"{self.command} does not apply: {self.not_for[family]}")

    def settings_with(self, given: Mapping[str, object] | None = None) -> dict[str, object]:
        """Every setting's value: ``given`` where named, the default elsewhere.

        Raises:
            ValueError: a name that is not one of this analysis's settings.
        """
        given = dict(given or {})
        known = {s.name for s in self.settings}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(
                f"{self.key} has no setting {', '.join(map(repr, unknown))}; "
                f"settings: {', '.join(sorted(known)) or 'none'}"
            )
        return {s.name: given.get(s.name, s.default) for s in self.settings}


# --------------------------------------------------------------------------- helpers


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


def _labels(data, what: str) -> torch.Tensor:
    """Class indices of ``data``, or :class:`MissingInput` saying why there are none."""
    if isinstance(data, torch.Tensor):
        raise MissingInput(f"no labels: the {what} are a bare tensor, without labels")
    try:
        return dataset_labels(data).long()
    except ValueError as err:
        raise MissingInput(f"no labels: the {what} have none ({err})") from err


# --------------------------------------------------------------------------- runs


def _run_cka(inputs: Inputs) -> Outcome:
    model, reference, settings = inputs.model, inputs.reference, inputs.settings
    measure = settings["measure"]
    reference_name = inputs.reference_name if reference is not None else inputs.name
    layers_b = layer_names(reference, settings["layers"]) if reference is not None else None
    common = dict(
        layers_a=layer_names(model, settings["layers"]),
        layers_b=layers_b,
        run=inputs.run,
    )
    if measure == MINIBATCH_CKA:
        result = cka_matrix(
            model, inputs.images, reference, name_a=inputs.name, name_b=reference_name, **common
        )
        label = "CKA"
    else:
        result = similarity_matrix(model, inputs.images, reference, measure=measure, **common)
        result.name_a, result.name_b = inputs.name, reference_name
        label = MEASURE_LABELS[measure]
    arrays = {"cka": result.matrix, "layers_a": result.layers_a, "layers_b": result.layers_b}
    if reference is None:
        numbers = {
            f"mean off-diagonal {label}": offdiagonal_mean(result.matrix),
            "layers": len(result.layers_a),
        }
        title = f"{inputs.name}: {label} between its layers"
    else:
        depth = best_match_depth(result.matrix)
        lower = depth[depth_halves(len(depth))[0]]
        numbers = {
            f"mean {label}": float(np.nanmean(result.matrix)),
            f"max {label}": float(np.nanmax(result.matrix)),
            f"best-match depth in {inputs.name}, lower half of {reference_name}": float(
                lower.mean()
            ),
        }
        arrays["best_match_depth"] = depth
        title = f"{inputs.name} vs. {reference_name}"
    return Outcome(result, numbers, arrays, plot_cka(result, title=title))


def _run_attention_distance(inputs: Inputs) -> Outcome:
    distances = mean_attention_distance(inputs.model, inputs.images, run=inputs.run)
    numbers = {
        "mean distance per block (pixels)": _floats(distances.mean(1)),
        "block 0: most local / most global head (pixels)": _floats(
            [distances[0].min(), distances[0].max()]
        ),
    }
    ax = attention_distance_scatter(
        distances, title=f"{inputs.name}: mean attention distance", label=inputs.name
    )
    return Outcome(distances, numbers, {"distance_pixels": distances.numpy()}, ax)


def _run_head_subsets(inputs: Inputs) -> Outcome:
    result = head_subset_cka(
        inputs.model,
        inputs.reference,
        inputs.images,
        block=inputs.settings["block"],
        heads_per_subset=inputs.settings["heads_per_subset"],
        run=inputs.run,
    )
    matrix = result.matrix.double()
    numbers = {
        "most local subset: mean CKA": float(matrix[0].mean()),
        "most global subset: mean CKA": float(matrix[-1].mean()),
        "heads per subset": int(result.heads.shape[1]),
    }
    arrays = {
        "cka": matrix.numpy(),
        "heads": result.heads.numpy(),
        "distance_pixels": result.distances.numpy(),
        "layers": result.layers,
    }
    title = f"{inputs.name} block {inputs.settings['block']} heads vs. {inputs.reference_name}"
    _, ax = plt.subplots(figsize=(6.0, 4.6), layout="constrained")  # room for layer names
    return Outcome(result, numbers, arrays, head_subset_curves(result, ax=ax, title=title))


def _run_receptive_field(inputs: Inputs) -> Outcome:
    branch, sampled = inputs.settings["branch"], inputs.settings["sample_channels"]
    if not isinstance(sampled, int) or sampled < 0:
        raise ValueError(
            f"sample_channels must be 0 (every channel: the exact field) or a number of "
            f"channels >= 1 to draw per layer, got {sampled!r}"
        )
    layers = inputs.settings["layers"]
    which = "block" if layers is None else "layer"
    common = dict(branch=branch, run=inputs.run)
    if sampled:
        fields = sampled_receptive_field(
            inputs.model, inputs.images, layers, sample_channels=sampled, **common
        )
        maps = {name: f.field for name, f in fields.items()}
        widths = sorted({f.num_channels for f in fields.values()})
        span = f"{widths[0]}" if len(widths) == 1 else f"{widths[0]}-{widths[-1]}"
        drawn = f"{sampled} of {span}, drawn uniformly without replacement"
    else:
        maps = effective_receptive_field(inputs.model, inputs.images, layers, **common)
        drawn = "every channel (the exact field)"
    numbers = {
        "channels per layer": drawn,
        f"half-mass area per {which} (fraction of the image)": [
            mass_area(m) for m in maps.values()
        ],
    }
    if sampled:
        numbers["standard error over the channel draw"] = [
            f.standard_error_of(mass_area) for f in fields.values()
        ]
    names = list(maps)
    arrays = {"erf": torch.stack(list(maps.values())).numpy(), "layers": names}
    count = min(MAX_ERF_PANELS, len(names))
    shown = sorted(set(np.linspace(0, len(names) - 1, count).round().astype(int)))
    axes = erf_grid(
        {names[i]: maps[names[i]] for i in shown},
        title=f"{inputs.name}: effective receptive fields ({branch})",
    )
    return Outcome(maps, numbers, arrays, axes)


def _run_skip_norms(inputs: Inputs) -> Outcome:
    result = residual_norm_ratios(inputs.model, inputs.images, run=inputs.run)
    spatial = result.mean_over_positions(result.norm_ratio, prefix=False)
    kinds = [b.kind for b in result.branches]
    numbers: dict[str, object] = {"mean norm ratio, all branches": float(spatial.mean())}
    for kind in dict.fromkeys(kinds):
        values = spatial[torch.tensor([k == kind for k in kinds])]
        numbers[f"norm ratio per block, {kind}"] = _floats(values)
    arrays = {
        "branches": [b.name for b in result.branches],
        "kinds": kinds,
        "mean_norm_ratio": spatial.numpy(),
        "mean_cosine": result.mean_over_positions(result.cosine, prefix=False).numpy(),
    }
    if result.num_prefix_tokens:
        prefix = result.mean_over_positions(result.norm_ratio, prefix=True)
        numbers["mean norm ratio, class token"] = float(prefix.mean())
        arrays["class_token_norm_ratio"] = prefix.numpy()
    ax = norm_ratio_curves(result, title=f"{inputs.name}: skip vs. branch norms")
    return Outcome(result, numbers, arrays, ax)


def _check_tokens(model: nn.Module, layer: str, tokens: Sequence[int] | None) -> None:
    """Tokens to draw must index the layer's tokens (or feature-map cells): checked on one
    blank image before the whole computation."""
    if not tokens:
        return
    shape = layer_shapes(model, [layer])[layer]
    count = shape[1] if len(shape) == 3 else shape[-2] * shape[-1]
    bad = [t for t in tokens if not 0 <= t < count]
    if bad:
        raise ValueError(f"--tokens {bad} out of range: layer {layer} has tokens 0..{count - 1}")


def _run_localization(inputs: Inputs) -> Outcome:
    layer = inputs.settings["layer"] or default_localization_layer(inputs.model)
    tokens = inputs.settings["tokens"]
    _check_tokens(inputs.model, layer, tokens)
    maps = localization_map(inputs.model, inputs.images, layer, run=inputs.run)
    own, others = own_patch_cka(maps)
    numbers = {
        "layer": layer,
        "mean CKA with own patch": own,
        "mean CKA with other patches": others,
    }
    axes = localization_grid(maps, tokens, title=f"{inputs.name} {layer}: localization")
    return Outcome(maps, numbers, {"cka": maps.numpy()}, axes)


def _probe_images(inputs: Inputs):
    """``(fit images, fit labels, test images, test labels)``: the training pool and the
    analysed images, or the analysed images' two class-balanced halves."""
    test_labels = _labels(inputs.images, "images")
    if inputs.train_images is None:
        fit, test = fit_and_score_halves(inputs.images)
        return fit, dataset_labels(fit).long(), test, dataset_labels(test).long()
    fit_labels = _labels(inputs.train_images, "training images")
    test_labels = labels_by_class_name(inputs.train_images, inputs.images, test_labels)
    return inputs.train_images, fit_labels, inputs.images, test_labels


def _run_probe(inputs: Inputs) -> Outcome:
    model, settings = inputs.model, inputs.settings
    fit, fit_labels, test, test_labels = _probe_images(inputs)
    shots, seeds = settings["shots"], settings["seeds"]
    try:
        check_fewshot_pool(fit_labels, shots)
    except ValueError as error:
        raise MissingInput(f"{error}; lower the shots") from error
    poolings = settings["pooling"] or (
        ["first", "mean"] if model_info(model).num_prefix_tokens else ["mean"]
    )
    layers = layer_names(model, "blocks")
    fit_features = pooled_readings(model, fit, poolings, layers, run=inputs.run)
    test_features = pooled_readings(model, test, poolings, layers, run=inputs.run)
    curves = {
        pooling: probe_curve(
            fit_features[pooling],
            fit_labels,
            test_features[pooling],
            test_labels,
            shots=shots,
            seeds=seeds,
        )
        for pooling in poolings
    }
    classes = int(fit_labels.max()) + 1
    numbers: dict[str, object] = {
        f"accuracy at the last block, {p}": float(c.mean[-1]) for p, c in curves.items()
    }
    numbers["shots, seeds, classes"] = f"{shots}, {seeds}, {classes}"
    numbers["chance"] = 1.0 / classes
    numbers["training pool / test images"] = f"{len(fit_labels)} / {len(test_labels)}"
    arrays = {
        "accuracy_mean": np.stack([c.mean.numpy() for c in curves.values()]),
        "accuracy_std": np.stack([c.std.numpy() for c in curves.values()]),
        "pooling": list(curves),
        "layers": layers,
    }
    ax = probe_accuracy_curves(
        curves,
        chance=1.0 / classes,
        title=f"{inputs.name}: {shots}-shot linear probes",
    )
    return Outcome(curves, numbers, arrays, ax)


def _run_layerwise_cka(inputs: Inputs) -> Outcome:
    results = [
        layerwise_cka(
            other, inputs.model, inputs.images, name_a=name, name_b=inputs.name, run=inputs.run
        )
        for name, other in inputs.others
    ]
    numbers = {
        f"mean CKA with {inputs.name}, {r.name_a}": float(np.mean(r.values)) for r in results
    }
    arrays = {
        "cka": np.stack([r.values for r in results]),
        "models": [name for name, _ in inputs.others],
        "layers": results[0].layers,
    }
    ax = layerwise_cka_curves(results, title=f"Block-by-block CKA with {inputs.name}")
    return Outcome(results, numbers, arrays, ax)


# --------------------------------------------------------------------------- the entries

_MODEL = Positional("model", "zoo or timm model name")
_VIT = Positional("model", "a ViT: zoo or timm model name")

ANALYSES: tuple[Analysis, ...] = (
    Analysis(
        key="cka",
        title="CKA within each model",
        caption="Linear minibatch CKA between every pair of layers of one model (Figure 1). "
        "Bright off-diagonal blocks mean layers at different depths represent the images "
        "alike; the paper finds ViT representations more uniform across depth than a "
        "ResNet's.",
        against=(
            "CKA against the reference",
            "Linear minibatch CKA between every layer of the model and every layer of the "
            "reference (Figure 2). The best-match depth is, for each reference layer, the "
            "relative depth (0: first layer, 1: last) of the model's most similar layer; the "
            "paper finds the lower half of ResNet layers most similar to the lowest quarter "
            "of ViT layers.",
        ),
        figure="Fig. 1, 2",
        help="layer-by-layer CKA heatmap (Fig. 1, 2)",
        models=(_MODEL, Positional("reference", "second model (default: the first)", "?")),
        run=_run_cka,
        settings=(
            Setting("layers", "layer set", "all", choices=("all", "blocks")),
            Setting(
                "measure",
                f"similarity measure: {MINIBATCH_CKA} (the paper's, streams) or one that "
                "holds every image's features at once",
                MINIBATCH_CKA,
                choices=(MINIBATCH_CKA, *sorted(SIMILARITY_MEASURES)),
                in_report=True,
            ),
        ),
        batch_size=256,
    ),
    Analysis(
        key="attention_distance",
        title="Mean attention distance",
        caption="How far, in input pixels, each head attends on average: attention weights "
        "times the distance between query and key patch centres (Figure 3). Lower blocks of "
        "a ViT trained on enough data mix local and global heads; higher blocks attend "
        "globally.",
        figure="Fig. 3",
        help="mean attention distance per head, in pixels (Fig. 3)",
        models=(_VIT,),
        run=_run_attention_distance,
        not_for=_NO_ATTENTION,
    ),
    Analysis(
        key="head_subsets",
        title="Local and global heads against the reference",
        caption="CKA between windows of block 0's heads, ordered from the most local to the "
        "most global, and the reference's lower layers (Figure 5). The paper finds the local "
        "heads closest to a ResNet's lower layers.",
        figure="Fig. 5",
        help="CKA of a ViT block's heads, local to global, with another model's layers (Fig. 5)",
        models=(_VIT, Positional("reference", "the model to compare with, e.g. a ResNet")),
        run=_run_head_subsets,
        not_for=_NO_ATTENTION,
        settings=(
            Setting("block", "ViT block whose heads are split", 0, type=int),
            Setting("heads_per_subset", "heads per subset (default: 1/4)", None, type=int),
        ),
    ),
    Analysis(
        key="receptive_field",
        title="Effective receptive fields",
        caption="Mean over images and channels of |d centre feature / d input| for each "
        "block output (Figure 6); by default over 32 channels per layer drawn at random (one "
        "backward pass each instead of one per channel), with the standard error of each "
        "half-mass area over that draw. The half-mass area is the fraction of input pixels "
        "that hold half of a map's total: small for local receptive fields, about 0.5 for "
        "uniform ones.",
        figure="Fig. 6",
        help="effective receptive fields per layer (Fig. 6)",
        models=(_MODEL,),
        run=_run_receptive_field,
        settings=(
            Setting("layers", "layer names (default: the block outputs)", None, nargs="+"),
            Setting(
                "branch",
                "post: after the residual sum; pre: the long branch only",
                "post",
                choices=("post", "pre"),
            ),
            Setting(
                "sample_channels",
                "channels drawn at random per layer to estimate each field (one backward "
                "pass each; 0: every channel, the exact field)",
                32,
                type=int,
                in_report=True,
            ),
        ),
        batch_size=16,
        max_batch_size=16,
    ),
    Analysis(
        key="skip_norms",
        title="Skip connections",
        caption="Ratio ||z|| / ||f(z)|| of the representation carried by each skip connection "
        "to the branch added to it, averaged over positions and images (Figure 7). A large "
        "ratio means the block mostly passes its input through; the paper finds ViT skips "
        "stronger than ResNet's, and the class token's strongest in the lower blocks.",
        figure="Fig. 7",
        help="skip vs. long-branch norm ratio and cosine (Fig. 7)",
        models=(_MODEL,),
        run=_run_skip_norms,
    ),
    Analysis(
        key="localization",
        title="Localization",
        caption="CKA between each token (or feature-map cell) of the last layer and each "
        "input patch (Figures 9, 10). A well-localized token peaks at its own cell (the "
        "cross); the own-patch and other-patch means summarise how much spatial information "
        "survives.",
        figure="Fig. 9, 10",
        help="CKA of each token with each input patch (Fig. 9, 10)",
        models=(_MODEL,),
        run=_run_localization,
        settings=(
            Setting(
                "layer",
                "layer name, e.g. blocks.7 (default: the last block output; a ResNet's last "
                "with a map of at least 4x4 cells)",
            ),
            Setting("tokens", "tokens to draw (default: a spread)", None, type=int, nargs="+"),
        ),
    ),
    Analysis(
        key="probe",
        title="Few-shot linear probes",
        caption="Accuracy of closed-form least-squares probes fit on k examples per class on "
        "each block's pooled representation (Figure 11): how linearly decodable the labels "
        "are at each depth, from the class token ('first') or the mean of the tokens "
        "('mean').",
        figure="Fig. 11, 13",
        help="few-shot linear probe accuracy per block (Fig. 11, 13)",
        models=(_MODEL,),
        run=_run_probe,
        needs_labels=True,
        settings=(
            Setting("shots", "training examples per class", 10, type=int, in_report=True),
            Setting("seeds", "random draws of the k-shot set", 5, type=int, in_report=True),
            Setting(
                "pooling",
                "representations to probe (default: the class token and the mean of the "
                "tokens, or the mean alone for a model without a class token)",
                None,
                choices=("first", "mean", "mean_no_first"),
                nargs="+",
            ),
        ),
    ),
    Analysis(
        key="layerwise_cka",
        title="Layer-wise CKA with a reference",
        caption="CKA between each block of models of one architecture and the same block of "
        "a reference (Figure 12), e.g. trained on less data against trained on all of it.",
        figure="Fig. 12",
        help="per-block CKA of models of one architecture with a reference (Fig. 12)",
        models=(
            Positional("model", "reference model (e.g. trained on all data)"),
            Positional("others", "models to compare with it", "+"),
        ),
        run=_run_layerwise_cka,
        batch_size=256,
        in_report=False,
    ),
)
"""Every analysis, in the report's order."""


def analysis(key: str) -> Analysis:
    """The entry of :data:`ANALYSES` called ``key`` (underscores or hyphens)."""
    for entry in ANALYSES:
        if key in (entry.key, entry.command):
            return entry
    raise KeyError(f"no analysis {key!r}; analyses: {', '.join(a.key for a in ANALYSES)}")
