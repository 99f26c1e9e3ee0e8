"""The explorers redraw through the given plotting function on every change of choice."""

from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")

from vitlens.book.explorers import explorer


def test_explorer_draws_the_default_then_every_new_choice():
    drawn = []
    widget = explorer(drawn.append, {"block 0": 0, "block 3": 3}, description="block")
    selector, _ = widget.children
    assert drawn == [0] and selector.value == 0
    selector.value = 3
    selector.value = 0
    assert drawn == [0, 3, 0]


def test_explorer_starts_at_the_requested_value_on_a_slider():
    drawn = []
    widget = explorer(drawn.append, [1, 2, 4], description="k", value=4, slider=True)
    assert drawn == [4] and type(widget.children[0]).__name__ == "SelectionSlider"
    assert [label for label, _ in widget.children[0].options] == ["1", "2", "4"]


@pytest.mark.parametrize(
    ("options", "value", "message"),
    [
        ([], None, "at least one option"),
        ({"a": 1, "b": 2}, 3, "3 is not one of the options \\[1, 2\\]"),
        ([1, "1"], None, "labels must be distinct"),
    ],
)
def test_explorer_refuses_bad_options(options, value, message):
    with pytest.raises(ValueError, match=message):
        explorer(lambda _: None, options, description="x", value=value)


def test_static_explorer_prerenders_every_view_with_the_same_function():
    import matplotlib.pyplot as plt

    drawn = []
    open_before = plt.get_fignums()  # figures other tests left open are not this test's

    def render(k):
        drawn.append(k)
        plt.subplots()[1].plot(range(k + 2))

    page = explorer(render, {"k=0": 0, "k=1": 1, "k=2": 2}, description="k", value=1, static=True)
    html = page._repr_html_()
    assert drawn == [0, 1, 2]
    assert html.count("<option") == 3 and html.count("data:image/png;base64,") == 3
    assert '<option value="1" selected>' in html
    assert html.count(" hidden>") == 2
    assert plt.get_fignums() == open_before, "pre-rendered figures must be closed"
