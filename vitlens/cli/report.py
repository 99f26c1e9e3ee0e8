"""``vitlens report MODEL [--against MODEL] --data DIR --out report.html``.

Runs every analysis the model's family supports (:func:`vitlens.report.build_report`) and
writes one self-contained HTML page; ``--numbers`` also writes every section's arrays
(``.npz`` or long-format ``.csv``). Under ``torchrun`` every rank computes its share and
rank 0 alone writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vitlens.cli.analyses import NAMED_DATASETS, _common, _images, _load, _reports_errors

__all__ = ["add_report_command"]


@_reports_errors
def _report(args: argparse.Namespace) -> int:
    from vitlens.cli.analyses import save_numbers
    from vitlens.report import build_report
    from vitlens.streaming import process_shard

    if args.out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out must be an .html file, got {str(args.out)!r}")
    model = _load(args, args.model)
    against = _load(args, args.against) if args.against else None
    images = _images(args, model)
    named = args.data in NAMED_DATASETS
    report = build_report(
        model,
        images,
        against,
        probe_data=_images(args, model, split="train") if named else None,
        name=args.model,
        against_name=args.against,
        data_name=f"{args.data}, test split" if named else str(args.data),
        shots=args.shots,
        seeds=args.seeds,
        batch_size=args.batch_size,
        **_common(args),
    )
    if process_shard()[0] != 0:  # under torchrun, rank 0 alone writes
        return 0
    report.save(args.out)
    print(f"report: {args.out}")
    if args.numbers:
        arrays = {f"{s.key}.{k}": v for s in report.sections for k, v in s.arrays.items()}
        print(f"numbers: {save_numbers(args.numbers, arrays)}")
    return 0


def add_report_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``vitlens report`` on the top-level parser."""
    text = "every analysis the model's family supports, on one self-contained HTML page"
    parser = subparsers.add_parser("report", help=text, description=text)
    parser.set_defaults(func=_report)
    parser.add_argument("model", help="zoo or timm model name")
    parser.add_argument("--against", default=None, help="reference model, e.g. a ResNet")
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
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda:1")
    parser.add_argument(
        "--random-weights", action="store_true", help="random weights (no download, no zoo)"
    )
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (default: shipped)")
    parser.add_argument("--shots", type=int, default=10, help="probe examples per class")
    parser.add_argument("--seeds", type=int, default=5, help="random draws of the k-shot set")
    parser.add_argument(
        "--out", type=Path, default=Path("report.html"), help="the page (default report.html)"
    )
    parser.add_argument(
        "--numbers", type=Path, default=None, help="also write the arrays (.npz or .csv)"
    )
