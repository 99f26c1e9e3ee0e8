"""Similarity across training conditions: the same architecture, trained two ways.

Serves the paper's Figure 12 and Figures G.1, G.2: per-layer CKA between two models of one
architecture, layer ``l`` of one against layer ``l`` of the other (e.g. a model trained on
a fraction of the data against the one trained on all of it; before and after
fine-tuning). It is the diagonal of :func:`vitlens.cka_matrix` between the two models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from vitlens.analyses.compare import CKAResult, cka_matrix
from vitlens.models import layer_names
from vitlens.streaming import ImageSource, RunOptions

__all__ = ["LayerwiseCKA", "layerwise_cka"]


@dataclass
class LayerwiseCKA:
    """CKA between corresponding layers of two models of the same architecture.

    Attributes:
        values: ``(layers,)`` float64 minibatch CKA of layer ``l`` of A with layer ``l`` of B.
        layers: the layer names.
        name_a, name_b: model labels (e.g. ``"3% of the data"`` and ``"all data"``).
        num_examples: images the estimate is based on.
        result: the full :class:`vitlens.analyses.compare.CKAResult` behind ``values``
            (for a bootstrap over its minibatches), when known.
    """

    values: np.ndarray
    layers: list[str]
    name_a: str
    name_b: str
    num_examples: int
    result: CKAResult | None = None


def _backbone_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of ``model`` without its classifier head.

    The head is left out because models trained on different label sets (ImageNet-1k and
    ImageNet-21k, say) share every layer the comparison looks at but not the head.
    """
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    head = next((name for name, m in model.named_modules() if m is classifier), None)
    return {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not head or not (k == head or k.startswith(head + "."))
    }


def _check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    shapes_a, shapes_b = _backbone_shapes(model_a), _backbone_shapes(model_b)
    if type(model_a) is not type(model_b) or shapes_a != shapes_b:
        differing = sorted(set(shapes_a.items()) ^ set(shapes_b.items()))[:5]
        raise ValueError(
            "layerwise_cka compares two models of the same architecture; got "
            f"{type(model_a).__name__} and {type(model_b).__name__} whose parameters differ "
            f"(first differences: {differing}). For different architectures use cka_matrix."
        )


def layerwise_cka(
    model_a: nn.Module,
    model_b: nn.Module,
    data: ImageSource,
    *,
    layers: Sequence[str] | None = None,
    run: RunOptions = RunOptions(batch_size=256),
    name_a: str | None = None,
    name_b: str | None = None,
) -> LayerwiseCKA:
    """Per-layer CKA between two models of one architecture (Figure 12, G.1, G.2).

    Args:
        model_a, model_b: the two models (same class and parameter shapes; their classifier
            heads may differ, e.g. trained on ImageNet-1k and on ImageNet-21k).
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader; every batch needs > 3 images.
        layers: layer names, used in both models (default: block outputs, as in Figure 12).
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`).
        name_a, name_b: as for :func:`vitlens.cka_matrix`.

    Returns:
        :class:`LayerwiseCKA`.
    """
    _check_same_architecture(model_a, model_b)
    layers = list(layer_names(model_a, "blocks") if layers is None else layers)
    result = cka_matrix(
        model_a,
        data,
        model_b,
        layers_a=layers,
        layers_b=layers,
        run=run,
        name_a=name_a,
        name_b=name_b,
    )
    return LayerwiseCKA(
        values=np.diagonal(result.matrix).copy(),
        layers=layers,
        name_a=result.name_a,
        name_b=result.name_b,
        num_examples=result.num_examples,
        result=result,
    )
