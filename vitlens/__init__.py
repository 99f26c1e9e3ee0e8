"""vitlens: measure how Vision Transformers and CNNs differ inside.

Reproduces the measurements of Raghu et al., *Do Vision Transformers See Like
Convolutional Neural Networks?* (NeurIPS 2021).
"""

from vitlens.cka import MinibatchCKA, linear_cka, rbf_cka
from vitlens.compare import CKAResult, cka_matrix
from vitlens.data import ShapesConfig, ShapesDataset, render_shapes
from vitlens.features import capture, layer_names, run_with_cache
from vitlens.models import ModelInfo, load_model, model_info

__version__ = "0.1.0"

__all__ = [
    "CKAResult",
    "MinibatchCKA",
    "ModelInfo",
    "ShapesConfig",
    "ShapesDataset",
    "__version__",
    "capture",
    "cka_matrix",
    "layer_names",
    "linear_cka",
    "load_model",
    "model_info",
    "rbf_cka",
    "render_shapes",
    "run_with_cache",
]
