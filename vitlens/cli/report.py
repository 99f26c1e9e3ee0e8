"""``vitlens report MODEL [--against MODEL] --data DIR --out report.html``.

Runs every analysis the model's family supports (:func:`vitlens.report.build_report`) and
writes one self-contained HTML page; ``--numbers`` also writes every section's arrays
(``.npz`` or long-format ``.csv``). Under ``torchrun`` every rank computes its share and
rank 0 alone writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vitlens.cli.analyses import (
    _images,
    _load,
    _writable_file,
    add_input_arguments,
    reports_errors,
    run_options,
    save_numbers,
)
from vitlens.data.sources import NAMED_DATASETS
from vitlens.registry import ANALYSES
from vitlens.report import build_report
from vitlens.streaming import process_shard

__all__ = ["add_report_command"]


_REPORT_SETTINGS = tuple(s for e in ANALYSES if e.in_report for s in e.settings if s.in_report)
"""The analyses' settings that ``vitlens report`` takes (the CKA measure, the probes' shots
and seeds)."""


def check_report_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any computation, a page that is not ``.html`` or cannot be written,
    and numbers other than ``.npz``/``.csv``."""
    if args.out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out must be an .html file, got {str(args.out)!r}")
    _writable_file(args.out, "--out")
    if args.numbers is not None:
        if args.numbers.suffix not in (".npz", ".csv"):
            raise ValueError(f"--numbers {args.numbers}: numbers are written as .npz or .csv")
        _writable_file(args.numbers, "--numbers")


@reports_errors(check_report_outputs)
def _report(args: argparse.Namespace) -> int:

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
        settings={s.name: getattr(args, s.name) for s in _REPORT_SETTINGS},
        run=run_options(args),
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
    add_input_arguments(parser, batch_size=64)
    for setting in _REPORT_SETTINGS:
        parser.add_argument(setting.flag, **setting.argparse_options())
    parser.add_argument(
        "--out", type=Path, default=Path("report.html"), help="the page (default report.html)"
    )
    parser.add_argument(
        "--numbers", type=Path, default=None, help="also write the arrays (.npz or .csv)"
    )
