"""The analysis commands of ``vitlens``: one subcommand per measurement of the paper.

Each command loads models by name (zoo names such as ``vit-cls`` or timm names such as
``vit_base_patch16_224.augreg_in21k``, through :func:`vitlens.models.load_model`), loads
images (``--data``: ``shapes``, ``cifar10``, ``imagenette`` or an ImageFolder path,
preprocessed for the first model), runs one analysis, and writes a figure (``--out``) and
the numbers (``--numbers``: ``.npz`` or long-format ``.csv``; default: the figure's path
with ``.npz``)::

    vitlens cka vit-cls resnet --data shapes --out cka.png
    vitlens attention-distance vit-cls --data shapes --out distance.png
    vitlens head-subsets vit-cls resnet --data shapes
    vitlens receptive-field vit-cls --data shapes --branch pre --layers blocks.0 blocks.7
    vitlens skip-norms vit-cls --data shapes
    vitlens localization vit-cls --layer blocks.7 --data shapes
    vitlens probe vit-cls --data shapes --shots 10
    vitlens layerwise-cka vit-cls vit-cls-data3 vit-cls-data10 --data shapes

:func:`add_analysis_commands` registers them on the top-level parser of :mod:`vitlens.cli`.
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from vitlens import data
from vitlens.analyses.attention import head_subset_cka, mean_attention_distance
from vitlens.analyses.compare import cka_matrix
from vitlens.analyses.localization import localization_map
from vitlens.analyses.probes import dataset_labels, pooled_features, probe_curve
from vitlens.analyses.receptive import effective_receptive_field
from vitlens.analyses.residual import residual_norm_ratios
from vitlens.analyses.training_similarity import layerwise_cka
from vitlens.data.sampling import evaluation_sample
from vitlens.models import layer_names, load_model, model_name
from vitlens.plotting import (
    attention_distance_scatter,
    cka_heatmap,
    erf_grid,
    layerwise_cka_curves,
    localization_grid,
    norm_ratio_curves,
    plot_cka,
    probe_accuracy_curves,
)
from vitlens.streaming import process_shard, run_with_cache

__all__ = [
    "add_analysis_commands",
    "check_outputs",
    "labels_by_class_name",
    "load_images",
    "save_numbers",
]

NAMED_DATASETS = ("shapes", "cifar10", "imagenette")


# ------------------------------------------------------------------------------ inputs


def load_images(
    spec: str,
    model: torch.nn.Module,
    *,
    split: str = "test",
    num_images: int | None = None,
    root: str | Path | None = None,
) -> Dataset:
    """The images a command analyses, preprocessed for ``model``.

    Args:
        spec: ``"shapes"`` (the offline synthetic dataset, rendered at the model's input
            size), ``"cifar10"``, ``"imagenette"`` (downloaded into ``root`` once), or the path
            of an ImageFolder (``root/<class>/<image>``).
        model: the model whose timm data config sets size and normalisation.
        split: ``"train"`` or ``"test"`` (Imagenette's ``val``); ignored for a folder.
        num_images: keep this many images, a fixed random sample (the book's rule,
            :func:`vitlens.data.sampling.evaluation_sample`, so a class-sorted folder keeps
            all its classes); ``None`` keeps all (shapes: 512).
        root: download folder for named datasets (default ``~/.cache/vitlens``).
    """

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if num_images is not None and num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images}")
    root = Path(root or Path.home() / ".cache" / "vitlens")
    if spec == "shapes":
        size = model.pretrained_cfg["input_size"][-1]
        config = data.ShapesConfig(image_size=size)
        return data.ShapesDataset(num_images or 512, split=split, config=config)
    if spec == "cifar10":
        dataset = data.cifar10(root, model, train=split == "train")
    elif spec == "imagenette":
        dataset = data.imagenette(root, model, split="train" if split == "train" else "val")
    elif Path(spec).is_dir():
        dataset = data.image_folder(spec, model)
    else:
        raise ValueError(
            f"--data {spec!r} is neither a named dataset ({', '.join(NAMED_DATASETS)}) nor an "
            "existing ImageFolder directory"
        )
    if num_images is None or num_images >= len(dataset):
        return dataset
    return evaluation_sample(dataset, num_images)


def _load(args: argparse.Namespace, name: str) -> torch.nn.Module:
    return load_model(name, pretrained=not args.random_weights, zoo=args.zoo)


def _images(args: argparse.Namespace, model: torch.nn.Module, split: str = "test") -> Dataset:
    return load_images(
        args.data, model, split=split, num_images=args.num_images, root=args.data_root
    )


# ------------------------------------------------------------------------------ outputs


def save_numbers(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write named arrays to ``.npz``, or to a long-format ``.csv``.

    The CSV has one row per array entry: ``quantity, i0, i1, i2, value`` (unused index
    columns empty), so arrays of any shape (and string arrays, e.g. layer names) share one
    table.
    """
    path = Path(path)
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    if path.suffix == ".npz":
        np.savez(path, **arrays)
        return path
    if path.suffix != ".csv":
        raise ValueError(f"numbers are written as .npz or .csv, got {path.name!r}")
    depth = max(value.ndim for value in arrays.values())
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["quantity", *(f"i{k}" for k in range(depth)), "value"])
        for key, value in arrays.items():
            for index in np.ndindex(value.shape):
                padding = [""] * (depth - len(index))
                writer.writerow([key, *index, *padding, value[index]])
    return path


def _write(args: argparse.Namespace, ax_or_axes, arrays: dict[str, np.ndarray]) -> int:
    import matplotlib.pyplot as plt

    axes = np.asarray(ax_or_axes, dtype=object).ravel()
    figure = axes[0].figure
    if process_shard()[0] != 0:  # under torchrun, rank 0 alone writes
        plt.close(figure)
        return 0
    numbers = save_numbers(args.numbers, arrays)
    figure.savefig(args.out, dpi=150)
    plt.close(figure)
    print(f"figure: {args.out}\nnumbers: {numbers}")
    return 0


def _writable_file(path: Path, what: str) -> None:
    """Refuse, before any computation, an output path that cannot be written."""
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name")
    if not folder.is_dir():
        raise ValueError(f"{what} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{what} {path} cannot be written (no write permission)")


def check_outputs(args: argparse.Namespace) -> None:
    """Settle ``--out`` and ``--numbers`` and check them before any computation.

    A figure name without a suffix gets ``.png`` (matplotlib's default, now also printed);
    a suffix matplotlib cannot write, a numbers suffix other than ``.npz``/``.csv``, a
    missing or read-only folder are refused.
    """
    from matplotlib.figure import Figure

    out = Path(args.out)
    if not out.suffix:
        out = out.with_suffix(".png")
    formats = Figure().canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in formats:
        raise ValueError(
            f"--out {out}: matplotlib cannot write {out.suffix!r} figures; use one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    numbers = Path(args.numbers) if args.numbers is not None else out.with_suffix(".npz")
    if numbers.suffix not in (".npz", ".csv"):
        raise ValueError(f"--numbers {numbers}: numbers are written as .npz or .csv")
    if numbers.resolve() == out.resolve():
        raise ValueError(f"--numbers and --out are the same file {out}")
    _writable_file(out, "--out")
    _writable_file(numbers, "--numbers")
    args.out, args.numbers = out, numbers


def reports_errors(check: Callable[[argparse.Namespace], None]):
    """Decorate a command: ``check(args)`` its outputs first, then run; a bad-input error is
    one line on stderr and exit status 2, without a traceback (a corrupt image, a read-only
    folder, a bad manifest...)."""

    def decorate(command: Callable[[argparse.Namespace], int]):
        @functools.wraps(command)
        def run(args: argparse.Namespace) -> int:
            try:
                check(args)
                return command(args)
            except (ValueError, OSError, RuntimeError) as err:
                message = " ".join(str(err).split()) or type(err).__name__
                print(f"vitlens {args.command}: error: {message}", file=sys.stderr)
                return 2

        return run

    return decorate


_reports_errors = reports_errors(check_outputs)


def _same_input_size(args: argparse.Namespace, *models: torch.nn.Module) -> None:
    """Models compared on the same images must take the same input size."""

    sizes = {model_name(m): tuple(m.pretrained_cfg.get("input_size", ())) for m in models}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise ValueError(
            f"the models take different input sizes ({listed}); they are compared on the same "
            "images, so choose models of one input size"
        )


def _common(args: argparse.Namespace) -> dict:
    return {"device": args.device, "progress": sys.stderr.isatty() and process_shard()[0] == 0}


# ------------------------------------------------------------------------------ commands


@_reports_errors
def _cka(args: argparse.Namespace) -> int:
    model_a = _load(args, args.model_a)
    model_b = _load(args, args.model_b) if args.model_b else None
    if model_b is not None:
        _same_input_size(args, model_a, model_b)
    result = cka_matrix(
        model_a,
        _images(args, model_a),
        model_b,
        layers_a=layer_names(model_a, args.layers),
        layers_b=layer_names(model_b, args.layers) if model_b is not None else None,
        batch_size=args.batch_size,
        name_a=args.model_a,
        name_b=args.model_b or args.model_a,
        **_common(args),
    )
    arrays = {"cka": result.matrix, "layers_a": result.layers_a, "layers_b": result.layers_b}
    return _write(args, plot_cka(result), arrays)


@_reports_errors
def _attention_distance(args: argparse.Namespace) -> int:
    model = _load(args, args.model)
    distances = mean_attention_distance(
        model, _images(args, model), batch_size=args.batch_size, **_common(args)
    )
    ax = attention_distance_scatter(
        distances, title=f"{args.model}: mean attention distance", label=args.model
    )
    return _write(args, ax, {"distance_pixels": distances.numpy()})


@_reports_errors
def _head_subsets(args: argparse.Namespace) -> int:
    vit, other = _load(args, args.vit), _load(args, args.other)
    _same_input_size(args, vit, other)
    result = head_subset_cka(
        vit,
        other,
        _images(args, vit),
        block=args.block,
        heads_per_subset=args.heads_per_subset,
        batch_size=args.batch_size,
        **_common(args),
    )
    ax = cka_heatmap(
        result.matrix.numpy(),
        label_a=f"{args.vit} heads (local to global)",
        label_b=args.other,
        title=f"Block {args.block}, {result.heads.shape[1]} head(s) per subset",
    )
    arrays = {
        "cka": result.matrix.numpy(),
        "heads": result.heads.numpy(),
        "distance_pixels": result.distances.numpy(),
        "layers": result.layers,
    }
    return _write(args, ax, arrays)


@_reports_errors
def _receptive_field(args: argparse.Namespace) -> int:
    model = _load(args, args.model)
    maps = effective_receptive_field(
        model,
        _images(args, model),
        args.layers,
        branch=args.branch,
        batch_size=args.batch_size,
        **_common(args),
    )
    axes = erf_grid(maps, title=f"{args.model}: effective receptive fields ({args.branch})")
    arrays = {"erf": torch.stack(list(maps.values())).numpy(), "layers": list(maps)}
    return _write(args, axes, arrays)


@_reports_errors
def _skip_norms(args: argparse.Namespace) -> int:
    model = _load(args, args.model)
    result = residual_norm_ratios(
        model, _images(args, model), batch_size=args.batch_size, **_common(args)
    )
    arrays = {
        "branches": [b.name for b in result.branches],
        "kinds": [b.kind for b in result.branches],
        "mean_norm_ratio": result.mean_over_positions(result.norm_ratio, prefix=False).numpy(),
        "mean_cosine": result.mean_over_positions(result.cosine, prefix=False).numpy(),
    }
    if result.num_prefix_tokens:
        arrays["class_token_norm_ratio"] = result.mean_over_positions(
            result.norm_ratio, prefix=True
        ).numpy()
    return _write(
        args, norm_ratio_curves(result, title=f"{args.model}: skip vs. branch norms"), arrays
    )


def _check_tokens(model: torch.nn.Module, layer: str, tokens: list[int] | None) -> None:
    """``--tokens`` must index the layer's tokens (or feature-map cells): checked on one
    blank image before the whole computation."""
    if not tokens:
        return

    size = tuple(model.pretrained_cfg["input_size"])
    device = next(model.parameters()).device
    value = run_with_cache(model, torch.zeros(1, *size, device=device), [layer])[layer]
    count = value.shape[1] if value.dim() == 3 else value.shape[-2] * value.shape[-1]
    bad = [t for t in tokens if not 0 <= t < count]
    if bad:
        raise ValueError(f"--tokens {bad} out of range: layer {layer} has tokens 0..{count - 1}")


@_reports_errors
def _localization(args: argparse.Namespace) -> int:
    model = _load(args, args.model)
    images = _images(args, model)
    _check_tokens(model, args.layer, args.tokens)
    maps = localization_map(model, images, args.layer, batch_size=args.batch_size, **_common(args))
    axes = localization_grid(maps, args.tokens, title=f"{args.model} {args.layer}: localization")
    return _write(args, axes, {"cka": maps.numpy()})


def _class_names(dataset) -> list[str] | None:
    """A dataset's class names by label (``.classes``, also through a Subset), or None."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    return [str(c) for c in classes] if classes is not None else None


def labels_by_class_name(train, test, labels: torch.Tensor) -> torch.Tensor:
    """Test labels renumbered to the training set's classes, matched by class name.

    An ImageFolder numbers its classes by folder position, so a test folder holding only
    class ``b`` would otherwise be scored as class ``a``.

    Raises:
        ValueError: a test class the training set does not have.
    """
    train_names, test_names = _class_names(train), _class_names(test)
    if train_names is None or test_names is None or train_names == test_names:
        return labels
    index = {name: i for i, name in enumerate(train_names)}
    unknown = sorted(set(test_names[i] for i in labels.unique().tolist()) - set(index))
    if unknown:
        raise ValueError(f"test classes {unknown} are not among the training classes {train_names}")
    mapping = torch.tensor([index.get(name, -1) for name in test_names])
    return mapping[labels]


@_reports_errors
def _probe(args: argparse.Namespace) -> int:
    model = _load(args, args.model)
    train = _images(args, model, split="train")
    if args.test_data is None and Path(args.data).is_dir():
        raise ValueError("an ImageFolder --data needs a separate --test-data folder")
    test = (
        load_images(args.test_data, model, num_images=args.num_images)
        if args.test_data
        else _images(args, model, split="test")
    )
    train_labels = dataset_labels(train)
    test_labels = labels_by_class_name(train, test, dataset_labels(test))
    layers = layer_names(model, "blocks")
    means, stds = [], []
    for pooling in args.pooling:
        kwargs = {"layers": layers, "pooling": pooling, "batch_size": args.batch_size}
        train_features = pooled_features(model, train, **kwargs, **_common(args))
        test_features = pooled_features(model, test, **kwargs, **_common(args))
        curve = probe_curve(
            train_features,
            train_labels,
            test_features,
            test_labels,
            shots=args.shots,
            seeds=args.seeds,
        )
        means.append(curve.mean.numpy())
        stds.append(curve.std.numpy())
    curves = {p: (m, s) for p, m, s in zip(args.pooling, means, stds, strict=True)}
    chance = 1.0 / (int(train_labels.max()) + 1)
    ax = probe_accuracy_curves(
        curves, chance=chance, title=f"{args.model}: {args.shots}-shot linear probes"
    )
    arrays = {
        "accuracy_mean": np.stack(means),
        "accuracy_std": np.stack(stds),
        "pooling": list(args.pooling),
        "layers": layers,
    }
    return _write(args, ax, arrays)


@_reports_errors
def _layerwise_cka(args: argparse.Namespace) -> int:
    reference = _load(args, args.reference)
    images = _images(args, reference)
    models = [_load(args, name) for name in args.models]
    _same_input_size(args, reference, *models)
    results = [
        layerwise_cka(
            model,
            reference,
            images,
            batch_size=args.batch_size,
            name_a=name,
            name_b=args.reference,
            **_common(args),
        )
        for name, model in zip(args.models, models, strict=True)
    ]
    ax = layerwise_cka_curves(results, title=f"Block-by-block CKA with {args.reference}")
    arrays = {
        "cka": np.stack([r.values for r in results]),
        "models": list(args.models),
        "layers": results[0].layers,
    }
    return _write(args, ax, arrays)


# ------------------------------------------------------------------------------ parser


def add_input_arguments(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """The options every analysing command shares: the images, batching, device, weights."""
    parser.add_argument(
        "--data",
        required=True,
        help=f"{', '.join(NAMED_DATASETS)}, or an ImageFolder path (root/<class>/<image>)",
    )
    parser.add_argument(
        "--num-images", type=int, default=None, help="images to use (default: all; shapes 512)"
    )
    parser.add_argument(
        "--data-root", type=Path, default=None, help="download folder for named datasets"
    )
    parser.add_argument("--batch-size", type=int, default=batch_size, help="images per batch")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda:1")
    parser.add_argument(
        "--random-weights", action="store_true", help="random weights (no download, no zoo)"
    )
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (default: shipped)")


def _parser(subparsers, name: str, help_text: str, func, batch_size: int):
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=func)
    add_input_arguments(parser, batch_size)
    parser.add_argument(
        "--out", type=Path, default=Path(f"{name}.png"), help=f"figure (default {name}.png)"
    )
    parser.add_argument(
        "--numbers", type=Path, default=None, help=".npz or .csv (default: --out with .npz)"
    )
    return parser


def add_analysis_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cka``, ``attention-distance``, ``head-subsets``, ``receptive-field``,
    ``skip-norms``, ``localization``, ``probe`` and ``layerwise-cka`` on the top-level parser."""
    cka = _parser(subparsers, "cka", "layer-by-layer CKA heatmap (Fig. 1, 2)", _cka, 256)
    cka.add_argument("model_a", help="zoo or timm model name")
    cka.add_argument("model_b", nargs="?", default=None, help="second model (default: A)")
    cka.add_argument("--layers", choices=("all", "blocks"), default="all", help="layer set")

    distance = _parser(
        subparsers,
        "attention-distance",
        "mean attention distance per head, in pixels (Fig. 3)",
        _attention_distance,
        64,
    )
    distance.add_argument("model", help="a ViT: zoo or timm model name")

    subsets = _parser(
        subparsers,
        "head-subsets",
        "CKA of a ViT block's heads, local to global, with another model's layers (Fig. 5)",
        _head_subsets,
        64,
    )
    subsets.add_argument("vit", help="a ViT: zoo or timm model name")
    subsets.add_argument("other", help="the model to compare with, e.g. a ResNet")
    subsets.add_argument("--block", type=int, default=0, help="ViT block whose heads are split")
    subsets.add_argument(
        "--heads-per-subset", type=int, default=None, help="heads per subset (default: 1/4)"
    )

    erf = _parser(
        subparsers,
        "receptive-field",
        "effective receptive fields per layer (Fig. 6)",
        _receptive_field,
        16,
    )
    erf.add_argument("model", help="zoo or timm model name")
    erf.add_argument("--layers", nargs="+", default=None, help="layer names (default: blocks)")
    erf.add_argument(
        "--branch",
        choices=("post", "pre"),
        default="post",
        help="post: after the residual sum; pre: the long branch only",
    )

    skip = _parser(
        subparsers,
        "skip-norms",
        "skip vs. long-branch norm ratio and cosine (Fig. 7)",
        _skip_norms,
        64,
    )
    skip.add_argument("model", help="zoo or timm model name")

    loc = _parser(
        subparsers,
        "localization",
        "CKA of each token with each input patch (Fig. 9, 10)",
        _localization,
        64,
    )
    loc.add_argument("model", help="zoo or timm model name")
    loc.add_argument("--layer", required=True, help="layer name, e.g. blocks.7")
    loc.add_argument("--tokens", nargs="+", type=int, default=None, help="tokens to draw")

    probe = _parser(
        subparsers,
        "probe",
        "few-shot linear probe accuracy per block (Fig. 11, 13)",
        _probe,
        64,
    )
    probe.add_argument("model", help="zoo or timm model name")
    probe.add_argument(
        "--test-data", default=None, help="test images (default: --data's test split)"
    )
    probe.add_argument("--shots", type=int, default=10, help="training examples per class")
    probe.add_argument("--seeds", type=int, default=5, help="random draws of the k-shot set")
    probe.add_argument(
        "--pooling",
        nargs="+",
        choices=("first", "mean", "mean_no_first"),
        default=["mean"],
        help="representations to probe (ResNets: mean only)",
    )

    similarity = _parser(
        subparsers,
        "layerwise-cka",
        "per-block CKA of models of one architecture with a reference (Fig. 12)",
        _layerwise_cka,
        256,
    )
    similarity.add_argument("reference", help="reference model (e.g. trained on all data)")
    similarity.add_argument("models", nargs="+", help="models to compare with it")
