"""vitlens: measure how Vision Transformers and CNNs differ inside.

Reproduces the measurements of Raghu et al., *Do Vision Transformers See Like
Convolutional Neural Networks?* (NeurIPS 2021).
"""

from vitlens.models import ModelInfo, model_info

__version__ = "0.1.0"

__all__ = ["ModelInfo", "__version__", "model_info"]
