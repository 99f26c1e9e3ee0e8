"""What the book's chapters use beside the analyses: glue and findings, profiles, explorers."""

from vitlens.book.glue import VERDICTS, finding, glue

__all__ = ["VERDICTS", "finding", "glue"]
