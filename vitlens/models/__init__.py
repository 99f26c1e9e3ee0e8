"""Models: family facts, layer names, the zoo and the paper's timm models, surgery, training.

The training loop and the zoo's training sit a floor higher, in :mod:`vitlens.training`.
"""

from vitlens.models.branches import ResidualBranch, residual_branches
from vitlens.models.families import Family, ModelInfo, model_info, parameter_count
from vitlens.models.layers import LayerPoint, layer_names, resolve_layers
from vitlens.models.recipe import Recipe
from vitlens.models.surgery import NoSkipBlock, remove_skips, skipless_blocks
from vitlens.models.zoo import (
    PAPER_MODELS,
    RESNET_STEMS,
    ZOO,
    ZOO_ARCHS,
    ZOO_RECIPES,
    CorruptCheckpointError,
    ZooModel,
    build_arch,
    build_zoo_model,
    load_model,
    model_name,
    read_manifest,
    sha256_file,
    zoo_dir,
    zoo_key,
    zoo_seeds,
)

__all__ = [
    "PAPER_MODELS",
    "RESNET_STEMS",
    "ZOO",
    "ZOO_ARCHS",
    "ZOO_RECIPES",
    "CorruptCheckpointError",
    "Family",
    "LayerPoint",
    "ModelInfo",
    "NoSkipBlock",
    "Recipe",
    "ResidualBranch",
    "ZooModel",
    "build_arch",
    "build_zoo_model",
    "layer_names",
    "load_model",
    "model_info",
    "model_name",
    "parameter_count",
    "read_manifest",
    "remove_skips",
    "residual_branches",
    "resolve_layers",
    "sha256_file",
    "skipless_blocks",
    "zoo_dir",
    "zoo_key",
    "zoo_seeds",
]
