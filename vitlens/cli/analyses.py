"""The analysis commands of ``vitlens``: one subcommand per entry of
:data:`vitlens.registry.ANALYSES`, its arguments made from the entry.

Each command loads models by name (zoo names such as ``vit-cls`` or timm names such as
``vit_base_patch16_224.augreg_in21k``, through :func:`vitlens.models.load_model`), loads
images (``--data``: ``shapes``, ``cifar10``, ``imagenette`` or an ImageFolder path,
preprocessed for the first model), runs one analysis, and writes a figure (``--out``) and
the numbers (``--numbers``: ``.npz`` or long-format ``.csv``; default: the figure's path
with ``.npz``)::

    vitlens cka vit-cls resnet --data shapes --out cka.png
    vitlens cka vit-cls --measure procrustes --data shapes --num-images 256
    vitlens attention-distance vit-cls --data shapes --out distance.png
    vitlens head-subsets vit-cls resnet --data shapes
    vitlens receptive-field vit-cls --data shapes --branch pre --layers blocks.0 blocks.7
    vitlens skip-norms vit-cls --data shapes
    vitlens localization vit-cls --layer blocks.7 --data shapes
    vitlens probe vit-cls --data shapes --shots 10
    vitlens layerwise-cka vit-cls vit-cls-data3 vit-cls-data10 --data shapes

:func:`add_analysis_commands` registers them on the top-level parser of :mod:`vitlens.cli`;
the figure's numbers are the entry's arrays.
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
from torch.utils.data import Dataset

from vitlens.data.sources import NAMED_DATASETS, load_images
from vitlens.models import load_model, model_name
from vitlens.registry import ANALYSES, Analysis, Inputs
from vitlens.streaming import RunOptions, process_shard

__all__ = [
    "add_analysis_commands",
    "check_outputs",
    "save_numbers",
]

# ------------------------------------------------------------------------------ inputs


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


def _same_input_size(*models: torch.nn.Module) -> None:
    """Models compared on the same images must take the same input size."""

    sizes = {model_name(m): tuple(m.pretrained_cfg.get("input_size", ())) for m in models}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise ValueError(
            f"the models take different input sizes ({listed}); they are compared on the same "
            "images, so choose models of one input size"
        )


def run_options(args: argparse.Namespace) -> RunOptions:
    """The command's batch size and device; progress bars on a terminal, on rank 0 only."""
    progress = sys.stderr.isatty() and process_shard()[0] == 0
    return RunOptions(batch_size=args.batch_size, device=args.device, progress=progress)


def _probe_images(args: argparse.Namespace, model: torch.nn.Module) -> tuple[Dataset, Dataset]:
    """``(train, test)``: ``--data``'s training split, and ``--test-data`` or its test split."""
    if args.test_data is None and Path(args.data).is_dir():
        raise ValueError("an ImageFolder --data needs a separate --test-data folder")
    train = _images(args, model, split="train")
    if args.test_data is None:
        return train, _images(args, model, split="test")
    test = load_images(args.test_data, model, num_images=args.num_images, root=args.data_root)
    return train, test


def _command(entry: Analysis) -> Callable[[argparse.Namespace], int]:
    """The command of one registry entry: load its models and images, run it, write."""

    @_reports_errors
    def command(args: argparse.Namespace) -> int:
        model = _load(args, args.model)
        entry.check_family(model)
        reference_name = getattr(args, "reference", None)
        reference = _load(args, reference_name) if reference_name else None
        others = tuple((name, _load(args, name)) for name in getattr(args, "others", ()))
        _same_input_size(model, *([reference] if reference else []), *(m for _, m in others))
        if entry.needs_labels:
            train, images = _probe_images(args, model)
        else:
            train, images = None, _images(args, model)
        inputs = Inputs(
            model,
            args.model,
            images,
            run=run_options(args),
            settings={s.name: getattr(args, s.name) for s in entry.settings},
            reference=reference,
            reference_name=reference_name,
            others=others,
            train_images=train,
        )
        outcome = entry.run(inputs)
        return _write(args, outcome.axes, outcome.arrays)

    command.__name__ = command.__qualname__ = f"{entry.key}_command"
    return command


# ------------------------------------------------------------------------------ parser


def add_input_arguments(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """The options every analysing command shares: the images, batching, device, weights."""
    parser.add_argument(
        "--data",
        required=True,
        help=f"{', '.join(NAMED_DATASETS)}, or an ImageFolder path (root/<class>/<image>)",
    )
    parser.add_argument(
        "--num-images",
        type=int,
        default=None,
        help="images to use (default: all; a synthetic dataset 512)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="download folder for named datasets (default: $VITLENS_DATA or ~/.cache/vitlens)",
    )
    parser.add_argument("--batch-size", type=int, default=batch_size, help="images per batch")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda:1")
    parser.add_argument(
        "--random-weights", action="store_true", help="random weights (no download, no zoo)"
    )
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (default: shipped)")


def _parser(subparsers, entry: Analysis) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(entry.command, help=entry.help, description=entry.help)
    parser.set_defaults(func=_command(entry))
    for positional in entry.models:
        options = {"nargs": positional.nargs} if positional.nargs else {}
        parser.add_argument(positional.role, help=positional.help, **options)
    add_input_arguments(parser, entry.batch_size)
    if entry.needs_labels:
        parser.add_argument(
            "--test-data", default=None, help="test images (default: --data's test split)"
        )
    for setting in entry.settings:
        parser.add_argument(setting.flag, **setting.argparse_options())
    name = entry.command
    parser.add_argument(
        "--out", type=Path, default=Path(f"{name}.png"), help=f"figure (default {name}.png)"
    )
    parser.add_argument(
        "--numbers", type=Path, default=None, help=".npz or .csv (default: --out with .npz)"
    )
    return parser


def add_analysis_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register one subcommand per entry of :data:`vitlens.registry.ANALYSES` (``cka``,
    ``attention-distance``, ``head-subsets``, ``receptive-field``, ``skip-norms``,
    ``localization``, ``probe``, ``layerwise-cka``) on the top-level parser."""
    for entry in ANALYSES:
        _parser(subparsers, entry)
