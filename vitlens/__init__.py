"""vitlens: measure how Vision Transformers and CNNs differ inside.

Reproduces the measurements of Raghu et al., *Do Vision Transformers See Like
Convolutional Neural Networks?* (NeurIPS 2021).
"""

import os
from importlib.metadata import version

# Torch's OpenMP threads sleep between parallel regions instead of spinning, unless the
# user chose otherwise. Set before torch is first imported (below), when OpenMP reads it.
# Measured on a 2-core CPU (chapter 2, two threads): 24 s idle either way, but 147 s
# spinning against 34 s passive while one other CPU-bound process ran beside it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from vitlens.analyses.attention import head_subset_cka, mean_attention_distance
from vitlens.analyses.compare import CKAResult, cka_from_grams, cka_matrix, layer_grams
from vitlens.analyses.localization import localization_map
from vitlens.analyses.probes import fewshot_linear_probe, pooled_features
from vitlens.analyses.receptive import effective_receptive_field
from vitlens.analyses.residual import residual_norm_ratios
from vitlens.analyses.training_similarity import layerwise_cka
from vitlens.core.cka import MinibatchCKA, linear_cka, rbf_cka
from vitlens.data import ShapesConfig, ShapesDataset, render_shapes
from vitlens.models import ModelInfo, layer_names, load_model, model_info
from vitlens.report import Report, build_report
from vitlens.streaming import RunOptions, capture, run_with_cache

__version__ = version("vitlens")

__all__ = [
    "CKAResult",
    "MinibatchCKA",
    "ModelInfo",
    "Report",
    "RunOptions",
    "ShapesConfig",
    "ShapesDataset",
    "__version__",
    "build_report",
    "capture",
    "cka_from_grams",
    "cka_matrix",
    "effective_receptive_field",
    "fewshot_linear_probe",
    "head_subset_cka",
    "layer_grams",
    "layer_names",
    "layerwise_cka",
    "linear_cka",
    "load_model",
    "localization_map",
    "mean_attention_distance",
    "model_info",
    "pooled_features",
    "rbf_cka",
    "render_shapes",
    "residual_norm_ratios",
    "run_with_cache",
]
