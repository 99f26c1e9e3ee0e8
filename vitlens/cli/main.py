"""The ``vitlens`` command.

Each command group registers itself on the top-level parser through an ``add_*`` function
and dispatches through ``args.func``, so a new group is one more function. Commands:
``vitlens zoo list``, ``vitlens zoo train NAME... | --all [--seed K]``,
``vitlens zoo verify [NAME...]``,
and the analyses of :mod:`vitlens.cli.analyses` (``vitlens cka``, ``attention-distance``,
``head-subsets``, ``receptive-field``, ``skip-norms``, ``localization``, ``probe``,
``layerwise-cka``), and ``vitlens report`` (:mod:`vitlens.cli.report`); ``vitlens --help``
lists them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from vitlens.cli.analyses import add_analysis_commands
from vitlens.cli.report import add_report_command
from vitlens.data.datasets import VERIFY_SIZE, heldout
from vitlens.models import ZOO_ARCHS, load_model, read_manifest
from vitlens.models.zoo import ZOO_RECIPES, zoo_key, zoo_seeds
from vitlens.plotting import use_theme
from vitlens.training.loop import accuracy
from vitlens.training.queue import pending_entries, run_queue
from vitlens.training.zoo import train_sweep_run, train_zoo_model


def _zoo_list(args: argparse.Namespace) -> int:
    _zoo_folder(args)
    manifest = read_manifest(args.zoo)
    keys = {name: [zoo_key(name, seed) for seed in zoo_seeds(name, manifest)] for name in ZOO_ARCHS}
    names = ["name", *ZOO_ARCHS, *(key for trained in keys.values() for key in trained)]
    width = 2 + max(len(name) for name in names)
    print(f"{'name':<{width}}{'family':<8}{'params':>10}{'held-out':>10}{'train s':>9}{'MB':>7}")
    for name, trained in keys.items():
        if not trained:
            print(f"{name:<{width}}{ZOO_ARCHS[name]['family']:<8}{'(not trained)':>23}")
        for key in trained:
            e = manifest[key]
            try:
                row = (
                    f"{key:<{width}}{e['family']:<8}{e['params']:>10,}"
                    f"{e['heldout']['accuracy']:>10.3f}{e['train_time_s']:>9.0f}"
                    f"{e['bytes'] / 1e6:>7.2f}"
                )
            except (KeyError, TypeError, ValueError) as err:
                problem = f"{type(err).__name__} {err}"
                row = f"{key:<{width}}{'?':<8}  (manifest entry incomplete: {problem})"
            print(row)
    return 0


def _zoo_folder(args: argparse.Namespace) -> None:
    """Refuse a ``--zoo`` that is not an existing folder (a typo would list nothing)."""
    if args.zoo is not None and not Path(args.zoo).is_dir():
        raise FileNotFoundError(f"zoo folder {args.zoo} does not exist or is not a folder")


def _zoo_train(args: argparse.Namespace) -> int:
    names = list(ZOO_RECIPES) if args.all else args.names
    if not names:
        print("name at least one zoo model, or pass --all", file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in ZOO_RECIPES]
    if unknown:
        print(f"unknown zoo models {unknown}; zoo models: {list(ZOO_RECIPES)}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    done = read_manifest(args.zoo)
    for name in names:
        for seed in args.seed or [None]:
            key = zoo_key(name, seed)
            if args.all and key in done and not args.force:
                print(f"{key}: already trained (use --force to retrain)")
                continue
            entry = train_zoo_model(
                name,
                directory=args.zoo,
                device=args.device,
                progress=sys.stderr.isatty(),
                seed=seed,
                pretrain_cache=args.pretrain_cache,
            )
            print(
                f"{key}: held-out accuracy {entry['heldout']['accuracy']:.4f}, "
                f"{entry['train_time_s']:.0f} s, sha256 {entry['sha256'][:12]}"
            )
    return 0


def _zoo_sweep_run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    entry = train_sweep_run(
        args.sweep,
        args.label,
        directory=args.zoo,
        device=args.device,
        progress=sys.stderr.isatty(),
        pretrain_cache=args.pretrain_cache,
    )
    print(f"{args.sweep}/{args.label}: held-out accuracy {entry['heldout']['accuracy']:.4f}")
    return 0


def _zoo_queue(args: argparse.Namespace) -> int:
    _zoo_folder(args)
    if args.dry_run:
        for key in pending_entries(args.zoo):
            print(key)
        return 0
    results = run_queue(
        args.zoo,
        workers=args.workers,
        commit=args.commit,
        pretrain_cache=args.pretrain_cache,
        nice=args.nice,
    )
    return 1 if any(results.values()) else 0


def _zoo_verify(args: argparse.Namespace) -> int:
    _zoo_folder(args)
    manifest = read_manifest(args.zoo)
    names = args.names or list(manifest)
    if not names:
        raise ValueError(
            f"the manifest of {args.zoo or 'the shipped zoo'} lists no trained models; "
            "nothing to verify (train some with `vitlens zoo train NAME`)"
        )
    failures = 0
    for name in names:
        entry = manifest.get(name)
        if entry is None:
            print(f"FAIL {name}: not in the manifest")
            failures += 1
            continue
        try:
            model = load_model(name, zoo=args.zoo)
        except (OSError, ValueError) as err:
            print(f"FAIL {name}: {err}")
            failures += 1
            continue
        try:
            expected = entry["verify"]["correct"]
            sample = heldout(entry["data"], n=VERIFY_SIZE)
        except (KeyError, TypeError) as err:
            print(f"FAIL {name}: manifest entry is incomplete (no {err}); retrain it")
            failures += 1
            continue
        acc, correct = accuracy(model, sample.images, sample.labels)
        ok = abs(correct - expected) <= args.tolerance
        failures += not ok
        print(
            f"{'ok  ' if ok else 'FAIL'} {name}: sha256 ok, accuracy {acc:.4f} "
            f"({correct}/{VERIFY_SIZE}, manifest {expected})"
        )
    return 1 if failures else 0


def add_zoo(subparsers: argparse._SubParsersAction) -> None:
    """Register ``vitlens zoo {list,train,verify}``."""
    zoo = subparsers.add_parser("zoo", help="the offline model zoo: list, train, verify")
    zoo.add_argument("--zoo", type=Path, default=None, help="zoo folder (default: shipped)")
    cmds = zoo.add_subparsers(dest="zoo_command", required=True)

    cmds.add_parser("list", help="zoo models and their manifest numbers").set_defaults(
        func=_zoo_list
    )

    train = cmds.add_parser("train", help="train zoo models by their recipe")
    train.add_argument("names", nargs="*", help="zoo model names")
    train.add_argument("--all", action="store_true", help="every zoo model not yet trained")
    train.add_argument("--force", action="store_true", help="with --all: retrain trained ones")
    train.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    train.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    train.add_argument(
        "--seed",
        type=int,
        action="append",
        default=[],
        help="training seed (repeatable); other than the recipe's, stored as NAME.seedK",
    )
    train.add_argument(
        "--pretrain-cache", type=Path, default=None, help="folder of cached first stages"
    )
    train.set_defaults(func=_zoo_train)

    sweep = cmds.add_parser("sweep-run", help="train one run of a recipe sweep (ZOO_SWEEPS)")
    sweep.add_argument("sweep", help="sweep name")
    sweep.add_argument("label", help="run label within the sweep")
    sweep.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    sweep.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    sweep.add_argument(
        "--pretrain-cache", type=Path, default=None, help="folder of cached first stages"
    )
    sweep.set_defaults(func=_zoo_sweep_run)

    queue = cmds.add_parser(
        "queue", help="train every entry of the zoo plan not done yet (ZOO_PLAN), in order"
    )
    queue.add_argument("--workers", type=int, default=2, help="processes side by side")
    queue.add_argument("--commit", action="store_true", help="commit each result as it lands")
    queue.add_argument(
        "--pretrain-cache", type=Path, default=None, help="folder of cached first stages"
    )
    queue.add_argument(
        "--nice", type=int, default=10, help="workers' added niceness, 0-19 (0: full priority)"
    )
    queue.add_argument("--dry-run", action="store_true", help="list the pending entries only")
    queue.set_defaults(func=_zoo_queue)

    verify = cmds.add_parser("verify", help="check hashes and re-measure held-out accuracy")
    verify.add_argument("names", nargs="*", help="zoo model names (default: all trained)")
    verify.add_argument(
        "--tolerance", type=int, default=2, help="allowed difference in correct images"
    )
    verify.set_defaults(func=_zoo_verify)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="vitlens", description="Measure how Vision Transformers and CNNs differ inside."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_zoo(subparsers)
    add_analysis_commands(subparsers)
    add_report_command(subparsers)
    return parser


def _join_process_group() -> bool:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1).

    NCCL with one GPU per process (``LOCAL_RANK``) when CUDA is available, else gloo.
    Returns whether this call created the group (and so must destroy it).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vitlens`` command; returns the exit status.

    Under ``torchrun --nproc-per-node N -m vitlens ...`` every process streams its share of
    the images, all get the same result, and rank 0 alone writes figures and numbers.
    """
    args = build_parser().parse_args(argv)
    use_theme()
    joined = _join_process_group()
    try:
        return args.func(args)
    except (ValueError, OSError) as err:  # bad input: one line, no traceback
        command = " ".join(filter(None, [args.command, getattr(args, "zoo_command", None)]))
        print(f"vitlens {command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if joined:
            dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
