"""Interactive explorers for the book: pick a layer, head or token, see the figure redrawn.

An explorer is a selector widget above an output area; every change of the selection
clears the area and draws ``render(choice)`` into it. ``render`` is any function that
draws one of :mod:`vitlens.plotting`'s figures, so the interactive view and the static
figure printed in the book are drawn by the same code. The results are computed once,
before the explorer is built; choosing only redraws.

In Jupyter and Colab it needs ``ipywidgets`` (the ``book`` extra) and a live kernel. When
the book is built (``VITLENS_BOOK_BUILD=1``, set by the book's Sphinx extension) every view
is drawn once, by the same ``render``, into an HTML selector over pre-rendered images: the
reader of the site picks an option and sees its figure, with no kernel behind the page.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt

__all__ = ["StaticExplorer", "explorer"]

_DPI = 192  # 2x the CSS pixel density: crisp on high-density screens and at 200 % zoom


class StaticExplorer:
    """Pre-rendered views behind an HTML ``<select>``: an explorer for a page with no kernel.

    ``views`` is ``[(label, png_bytes, css_width_px)]``; the first view is shown until the
    reader picks another (``book/_static/vitlens-explorer.js`` swaps the images).
    """

    def __init__(self, views: list[tuple[str, bytes, int]], *, description: str, selected: int):
        self.views, self.description, self.selected = views, description, selected

    def _repr_html_(self) -> str:
        label = html.escape(self.description)
        options, images = [], []
        for index, (name, png, width) in enumerate(self.views):
            name = html.escape(name)
            chosen = index == self.selected
            options.append(
                f'<option value="{index}"{" selected" if chosen else ""}>{name}</option>'
            )
            data = base64.b64encode(png).decode("ascii")
            images.append(
                f'<img src="data:image/png;base64,{data}" data-view="{index}" '
                f'alt="{label} {name}: the figure above, redrawn for this choice" '
                f'style="width: {width}px"{"" if chosen else " hidden"}>'
            )
        return (
            f'<div class="vitlens-explorer"><label>{label} '
            f'<select aria-label="{label}">{"".join(options)}</select></label>'
            f'<div class="vitlens-explorer-views">{"".join(images)}</div></div>'
        )


def _render_png(render: Callable[[Any], Any], choice: Any) -> tuple[bytes, int]:
    before = set(plt.get_fignums())
    render(choice)
    new = [n for n in plt.get_fignums() if n not in before] or plt.get_fignums()[-1:]
    figure = plt.figure(new[-1])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    width = round(figure.get_figwidth() * 96)
    for number in new:
        plt.close(number)
    return buffer.getvalue(), width


def _labelled_options(options: Sequence[Any] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    if isinstance(options, Mapping):
        pairs = [(str(label), value) for label, value in options.items()]
    else:
        pairs = [(str(value), value) for value in options]
    if not pairs:
        raise ValueError("an explorer needs at least one option to choose from")
    labels = [label for label, _ in pairs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"explorer option labels must be distinct, got {labels}")
    return pairs


def explorer(
    render: Callable[[Any], Any],
    options: Sequence[Any] | Mapping[str, Any],
    *,
    description: str,
    value: Any = None,
    slider: bool = False,
    static: bool | None = None,
):
    """A widget that redraws ``render(choice)`` whenever the choice changes.

    Args:
        render: draws the figure for one choice (with ``plt`` or on new axes); its return
            value is ignored.
        options: the choices, or ``{label: choice}`` to show labels other than ``str(choice)``.
        description: the selector's label, e.g. ``"block"``.
        value: the initial choice (default: the first).
        slider: a slider over the ordered options instead of a drop-down menu.
        static: draw every view now into a :class:`StaticExplorer` (for a page with no
            kernel) instead of a widget; by default, only when the book is being built.

    Returns:
        An ``ipywidgets.VBox`` (selector, then output), or a :class:`StaticExplorer`;
        display it as a cell's last value.

    Raises:
        ImportError: without ``ipywidgets``, saying how to install it.
        ValueError: with no options, repeated labels, or a ``value`` not among the choices.
    """
    pairs = _labelled_options(options)
    choices = [choice for _, choice in pairs]
    if value is None:
        value = choices[0]
    elif not any(value == choice for choice in choices):
        raise ValueError(f"explorer value {value!r} is not one of the options {choices}")
    if static is None:
        static = os.environ.get("VITLENS_BOOK_BUILD") == "1"
    if static:
        views = [(label, *_render_png(render, choice)) for label, choice in pairs]
        selected = next(i for i, choice in enumerate(choices) if choice == value)
        return StaticExplorer(views, description=description, selected=selected)

    try:
        import ipywidgets as widgets
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "explorers need ipywidgets: pip install 'vitlens[book]' (or pip install ipywidgets)"
        ) from error

    selector_type = widgets.SelectionSlider if slider else widgets.Dropdown
    selector = selector_type(options=pairs, value=value, description=description)
    output = widgets.Output()

    def redraw(choice: Any) -> None:
        output.clear_output(wait=True)
        with output:
            render(choice)
            plt.show()

    selector.observe(lambda change: redraw(change["new"]), names="value")
    redraw(value)
    return widgets.VBox([selector, output])
