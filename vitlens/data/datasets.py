"""The synthetic training datasets by name, so a recipe or a manifest can say which it used.

A dataset is named (:data:`DATASETS`) and configured by a JSON-ready dict (its config
class's ``to_dict``); :func:`render_dataset` renders samples from that pair, so a zoo
manifest's ``data`` record is enough to render a model's held-out images again.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch.utils.data import Dataset

from vitlens.data.junctions import JUNCTION_CLASSES, JunctionsConfig, render_junctions
from vitlens.data.shapes import (
    SHAPE_CLASSES,
    ShapesBatch,
    ShapesConfig,
    normalize_shapes,
    render_shapes,
)

DATASETS: dict[str, type] = {"shapes": ShapesConfig, "junctions": JunctionsConfig}
"""Dataset name -> its appearance config class."""

CLASSES: dict[str, tuple[str, ...]] = {"shapes": SHAPE_CLASSES, "junctions": JUNCTION_CLASSES}
"""Dataset name -> its class names (label ``k`` is ``CLASSES[name][k]``)."""


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


class SyntheticDataset(Dataset):
    """``n`` consecutive samples of a named synthetic dataset, rendered once into memory.

    ``dataset[i]`` is ``(image, label)``, ``image`` a normalised float ``(3, S, S)`` tensor
    (:func:`vitlens.data.shapes.normalize_shapes`, the zoo's input normalisation); the raw
    uint8 batch is ``dataset.batch`` (its ``labels`` are what
    :func:`vitlens.analyses.probes.dataset_labels` reads).

    Args:
        name: a key of :data:`DATASETS`.
        n: number of samples (indices ``start .. start + n - 1``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: dataset seed.
        config: appearance as the config's ``to_dict`` (defaults if ``None``).
        start: first sample index.
    """

    def __init__(
        self,
        name: str,
        n: int,
        *,
        split: str = "test",
        seed: int = 0,
        config: dict | None = None,
        start: int = 0,
    ) -> None:
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"n must be a positive number of samples, got {n!r}")
        self.batch = render_dataset(
            name, range(start, start + n), split=split, seed=seed, config=config
        )  # refuses an unknown name first
        self.name, self.split, self.seed, self.classes = name, split, seed, CLASSES[name]

    def __len__(self) -> int:
        return len(self.batch.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return normalize_shapes(self.batch.images[i : i + 1])[0], self.batch.labels[i]


HELDOUT_SIZE = 2048
"""Held-out images (``test`` split, indices ``0 ..``) behind a zoo model's manifest accuracy."""

VERIFY_SIZE = 512
"""The first held-out images that ``vitlens zoo verify`` and the tests re-measure."""


def heldout(data: dict | None = None, *, n: int = HELDOUT_SIZE) -> ShapesBatch:
    """The held-out sample (``test`` split, indices ``0 .. n-1``) of a zoo model's data.

    Args:
        data: a manifest ``data`` record (``dataset``, ``config``, ``seed``); ``None``: the
            default shapes (``ShapesConfig()``, seed 0).
        n: number of images.
    """
    data = data or {"dataset": "shapes", "config": ShapesConfig().to_dict(), "seed": 0}
    return render_dataset(
        data.get("dataset", "shapes"),
        range(n),
        split="test",
        seed=data["seed"],
        config=data["config"],
    )
