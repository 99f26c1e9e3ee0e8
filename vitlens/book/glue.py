"""Glue between computations and the book's prose.

Numbers quoted in a chapter's text are computed in its cells and glued (myst-nb ``glue``)
into the prose; nothing is typed in by hand. Outside a Jupyter Book build (Colab, a plain
Jupyter session) the value is printed instead, so the notebooks run everywhere.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VERDICTS", "finding", "glue"]

VERDICTS = ("holds", "partly holds", "does not hold")
"""What a chapter may conclude about one of the paper's claims, for the findings ledger."""


def glue(name: str, value: Any, *, display: bool = False) -> Any:
    """Make ``value`` available to the prose as ``{glue:text}`name```; return it.

    Args:
        name: key used in the markdown.
        value: a number (NumPy and torch scalars become Python numbers), string or figure.
        display: also show the value in the cell output.
    """
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # NumPy / torch scalar -> Python number, so format specs apply
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # not building the book: show the value plainly
        print(f"{name} = {value!r}")
        return value
    myst_glue(name, value, display=display)
    return value


def finding(key: str, statistic: str, verdict: str) -> str:
    """Record one row of the findings ledger: glue ``{key}_statistic`` and ``{key}_verdict``.

    The ledger page (``book/findings.md``) pastes both from the chapter that measured them,
    as ``{glue:text}`../notebooks/<chapter>.ipynb::<key>_verdict```.

    Args:
        key: the claim's identifier, e.g. ``"fig3_local_heads"``.
        statistic: what was measured, in words with its numbers, e.g.
            ``"lowest block: 2 of 4 heads under 6 px"``.
        verdict: one of :data:`VERDICTS`.

    Returns:
        ``verdict``, for use in the chapter's own prose.

    Raises:
        ValueError: for a verdict not in :data:`VERDICTS`.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict for {key!r} must be one of {VERDICTS}, got {verdict!r}")
    glue(f"{key}_statistic", statistic)
    glue(f"{key}_verdict", verdict)
    return verdict
