"""The synthetic training datasets by name, so a recipe or a manifest can say which it used.

A dataset is named (:data:`DATASETS`) and configured by a JSON-ready dict (its config
class's ``to_dict``); :func:`render_dataset` renders samples from that pair, so a zoo
manifest's ``data`` record is enough to render a model's held-out images again.
"""

from __future__ import annotations

from collections.abc import Sequence

from vitlens.data.junctions import JunctionsConfig, render_junctions
from vitlens.data.shapes import ShapesBatch, ShapesConfig, render_shapes

DATASETS: dict[str, type] = {"shapes": ShapesConfig, "junctions": JunctionsConfig}
"""Dataset name -> its appearance config class."""


def dataset_config(dataset: str, config: dict | None = None) -> ShapesConfig | JunctionsConfig:
    """The config of ``dataset`` from its ``to_dict`` form (defaults where ``config`` is None).

    Raises:
        ValueError: an unknown dataset, or config keys that dataset's config lacks.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; datasets: {sorted(DATASETS)}")
    cls = DATASETS[dataset]
    if config is None:
        return cls()
    return cls.from_dict(config)


def render_dataset(
    dataset: str,
    indices: Sequence[int] | range,
    *,
    split: str = "train",
    seed: int = 0,
    config: dict | None = None,
) -> ShapesBatch:
    """Samples ``indices`` of ``split`` of a named dataset (see :func:`dataset_config`).

    Returns:
        uint8 images ``(n, 3, S, S)`` with labels, as :func:`vitlens.data.shapes.render_shapes`.
    """
    cfg = dataset_config(dataset, config)
    render = render_shapes if dataset == "shapes" else render_junctions
    return render(indices, split=split, seed=seed, config=cfg)
