"""Appendix analyses: attention distance across sizes (C.5, C.6), pooled probes (Fig. 11)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens.analyses.probes import probe_by_layer
from vitlens.data import ShapesDataset
from vitlens.plotting import attention_distance_panels
from vitlens.streaming import RunOptions


def test_probe_by_layer_gives_one_accuracy_per_layer(zoo_shaped):
    model = zoo_shaped("vit-pt-gap")
    train, test = ShapesDataset(120, split="train", seed=0), ShapesDataset(40, split="test")
    layers = ["blocks.0", "blocks.7"]
    for pooling in ("first", "mean"):
        result = probe_by_layer(
            model,
            train,
            test,
            layers,
            pooling=pooling,
            shots=3,
            seeds=2,
            run=RunOptions(progress=False),
        )
        mean, std = result.mean.numpy(), result.std.numpy()
        assert mean.shape == std.shape == (2,)
        assert np.all((0 <= mean) & (mean <= 1)) and np.all(std >= 0)
    with pytest.raises(ValueError, match="pooling"):
        probe_by_layer(model, train, test, layers, pooling="max")


def test_attention_distance_panels_share_the_scale():
    axes = attention_distance_panels(
        {"small": torch.rand(3, 2) * 10, "large": torch.rand(5, 4) * 20}, uniform=12.0
    )
    assert len(axes) == 2 and axes[0].get_ylim() == axes[1].get_ylim()
    assert axes[1].get_title() == "large"
    with pytest.raises(ValueError, match="empty"):
        attention_distance_panels({})
