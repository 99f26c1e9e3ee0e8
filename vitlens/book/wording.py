"""Words the prose takes from the numbers: "larger" or "smaller", a list or "none".

Where a chapter's sentence depends on a measurement ("the ViT's field is {larger} than
the ResNet's"), the word is glued like a number, and chosen here, by a rule with a test,
never by a conditional typed into a cell: the same comparison then reads the same way in
every chapter, ties and empty lists included. The chapter states the words; these
functions only choose between them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

__all__ = ["by_step", "comparative", "listing", "never_decreases", "steady_rise"]


def comparative(
    value: float, other: float, *, more: str, less: str, same: str | None = None
) -> str:
    """``more`` when ``value > other``, ``less`` when ``value < other``.

    On a tie, ``same`` when given, else ``less``: the ``more`` word is said only when it is
    strictly true. A NaN on either side compares as neither, so it reads like a tie. For
    "below a threshold" words, put the threshold first: ``comparative(1.0, ratio,
    more="rewrites it", less="leaves it")`` says "rewrites it" only for a ratio under 1.

    Args:
        value, other: the two numbers compared.
        more, less: the words for "above" and "below", e.g. ``"larger"``, ``"smaller"``.
        same: the word for a tie, e.g. ``"as large"``; ``None``: ``less``.
    """
    if value > other:
        return more
    if value < other or same is None:
        return less
    return same


def listing(items: Iterable[object], *, none: str, sep: str = ", ") -> str:
    """``items`` joined by ``sep``, or ``none`` when there are none.

    ``listing(["depth", "width"], none="none of the factors", sep="; ")`` is
    ``"depth; width"``; for no items, ``"none of the factors"``.
    """
    words = [str(item) for item in items]
    return sep.join(words) if words else none


def by_step(step: int | None, *, never: str = "never") -> str:
    """When something first happened in a training run: ``"by step 1,200"``, or ``never``
    for ``None`` (it did not happen within the run)."""
    return never if step is None else f"by step {step:,}"


def never_decreases(values: Iterable[float]) -> bool:
    """Whether each value is at least the one before it (true for none or one value)."""
    return all(b >= a for a, b in itertools.pairwise(values))


def steady_rise(
    values: Iterable[float], *, rises: str = "rises", otherwise: str = "does not rise steadily"
) -> str:
    """``rises`` when the values never decrease (:func:`never_decreases`: equal neighbours
    count as rising, a flat line too), else ``otherwise``."""
    return rises if never_decreases(values) else otherwise
