"""Glue between computations and the book's prose.

Numbers quoted in a chapter's text are computed in its cells and glued (myst-nb ``glue``)
into the prose; nothing is typed in by hand. Outside a Jupyter Book build (Colab, a plain
Jupyter session) the value is printed instead, so the notebooks run everywhere.
"""

from __future__ import annotations

from typing import Any

__all__ = ["glue"]


def glue(name: str, value: Any, *, display: bool = False) -> Any:
    """Make ``value`` available to the prose as ``{glue:text}`name```; return it.

    Args:
        name: key used in the markdown.
        value: a number, string or figure.
        display: also show the value in the cell output.
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # not building the book: show the value plainly
        print(f"{name} = {value!r}")
        return value
    myst_glue(name, value, display=display)
    return value
