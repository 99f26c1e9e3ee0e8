"""Interactive explorers for the book: pick a layer, head or token, see the figure redrawn.

An explorer is a selector widget above an output area; every change of the selection
clears the area and draws ``render(choice)`` into it. ``render`` is any function that
draws one of :mod:`vitlens.plotting`'s figures, so the interactive view and the static
figure printed in the book are drawn by the same code. The results are computed once,
before the explorer is built; choosing only redraws.

Needs ``ipywidgets`` (the ``book`` extra) and a live kernel (Jupyter, Colab). The built
site shows each explorer's default view as a static figure instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt

__all__ = ["explorer"]


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
):
    """A widget that redraws ``render(choice)`` whenever the choice changes.

    Args:
        render: draws the figure for one choice (with ``plt`` or on new axes); its return
            value is ignored.
        options: the choices, or ``{label: choice}`` to show labels other than ``str(choice)``.
        description: the selector's label, e.g. ``"block"``.
        value: the initial choice (default: the first).
        slider: a slider over the ordered options instead of a drop-down menu.

    Returns:
        An ``ipywidgets.VBox`` (selector, then output); display it as a cell's last value.

    Raises:
        ImportError: without ``ipywidgets``, saying how to install it.
        ValueError: with no options, repeated labels, or a ``value`` not among the choices.
    """
    try:
        import ipywidgets as widgets
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "explorers need ipywidgets: pip install 'vitlens[book]' (or pip install ipywidgets)"
        ) from error

    pairs = _labelled_options(options)
    choices = [choice for _, choice in pairs]
    if value is None:
        value = choices[0]
    elif not any(value == choice for choice in choices):
        raise ValueError(f"explorer value {value!r} is not one of the options {choices}")

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
