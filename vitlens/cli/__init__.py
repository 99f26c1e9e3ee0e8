"""The ``vitlens`` command: parse, call the library, write figures and numbers."""

from vitlens.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
