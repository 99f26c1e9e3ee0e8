"""What the book's chapters use beside the analyses: glue and findings, profiles, explorers.

Importing it in a notebook also makes the notebook's inline figures SVG (crisp at any zoom)
and applies the book's one plotting theme (:func:`vitlens.plotting.use_theme`).
"""

from vitlens.book.glue import VERDICTS, finding, glue
from vitlens.plotting import use_theme

__all__ = ["VERDICTS", "finding", "glue"]


def _crisp_inline_figures() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - no IPython, no inline figures
        return
    if get_ipython() is None:
        return
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("svg")


use_theme()
_crisp_inline_figures()
