"""What vitlens knows about a model: its family and, for token models, its token layout.

Every analysis asks this module, never the model class directly, so that a new family is
added in one place. Families follow the paper: ``"vit"`` (timm ``VisionTransformer``),
``"resnet"`` (timm ``ResNetV2``/BiT and classic ``ResNet``) and ``"mixer"`` (timm ``MlpMixer``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from timm.models.vision_transformer import Block
from torch import nn

Family = Literal["vit", "resnet", "mixer"]


@dataclass(frozen=True)
class ModelInfo:
    """Layout facts about a model.

    Attributes:
        family: ``"vit"``, ``"resnet"`` or ``"mixer"``.
        patch_size: side of one input patch in pixels (``None`` for ResNets).
        grid: token grid ``(rows, cols)`` of patch tokens (``None`` for ResNets).
        num_prefix_tokens: class/register tokens before the patch tokens (0 if none).
    """

    family: Family
    patch_size: int | None = None
    grid: tuple[int, int] | None = None
    num_prefix_tokens: int = 0


def _family_of(model: nn.Module) -> Family:
    from timm.models.mlp_mixer import MlpMixer
    from timm.models.resnet import ResNet
    from timm.models.resnetv2 import ResNetV2
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VisionTransformer):
        return "vit"
    if isinstance(model, (ResNetV2, ResNet)):
        return "resnet"
    if isinstance(model, MlpMixer):
        return "mixer"
    raise ValueError(
        f"vitlens does not know the family of {type(model).__name__}; supported: timm "
        "VisionTransformer (vit), ResNetV2/ResNet (resnet) and MlpMixer (mixer)."
    )


def model_info(model: nn.Module) -> ModelInfo:
    """Family and token layout of ``model``.

    Raises:
        ValueError: if the model is not of a supported family.
    """
    family = _family_of(model)
    if family == "resnet":
        return ModelInfo(family="resnet")
    patch_embed = model.stem if family == "mixer" else model.patch_embed
    patch = patch_embed.patch_size
    grid = tuple(int(g) for g in patch_embed.grid_size)
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    return ModelInfo(family=family, patch_size=int(patch[0]), grid=grid, num_prefix_tokens=prefix)


# ----------------------------------------------------------------------------- model registry

PAPER_MODELS: tuple[str, ...] = (
    "vit_base_patch16_224.augreg_in21k",
    "vit_base_patch16_224.augreg_in1k",
    "vit_medium_patch16_gap_240.sw_in12k",
    "vit_base_patch32_224.augreg_in21k",
    "vit_large_patch16_224.augreg_in21k",
    "vit_huge_patch14_224.orig_in21k",
    "resnetv2_50x1_bit.goog_in21k",
    "resnetv2_152x2_bit.goog_in21k",
    "mixer_b16_224.goog_in21k",
)
"""The paper's models as timm names (``paper`` profile; weights need a network once)."""

_VIT = {
    "img_size": 32,
    "patch_size": 4,
    "embed_dim": 128,
    "depth": 8,
    "num_heads": 4,
    "mlp_ratio": 2.0,
    "num_classes": 10,
}

ZOO_ARCHS: dict[str, dict] = {
    "vit-cls": {"family": "vit", **_VIT},
    "vit-gap": {"family": "vit", **_VIT, "class_token": False, "global_pool": "avg"},
    "vit-noskip-2": {"family": "vit", **_VIT, "noskip": [2]},
    "vit-noskip-6": {"family": "vit", **_VIT, "noskip": [6]},
    "vit-cls-data3": {"family": "vit", **_VIT},
    "vit-cls-data10": {"family": "vit", **_VIT},
    "vit-cls-data30": {"family": "vit", **_VIT},
    "vit-small": {"family": "vit", **_VIT, "embed_dim": 64, "depth": 6, "num_heads": 2},
    "vit-large": {"family": "vit", **_VIT, "embed_dim": 160, "depth": 10, "num_heads": 5},
    "vit-mim": {"family": "vit", **_VIT},
    "vit-mim-sup": {"family": "vit", **_VIT},
    "resnet": {
        "family": "resnet",
        "layers": [3, 3, 3],
        "channels": [128, 256, 512],
        "stem_chs": 64,
        "num_classes": 10,
    },
    "mixer": {
        "family": "mixer",
        "img_size": 32,
        "patch_size": 4,
        "num_blocks": 8,
        "embed_dim": 128,
        "mlp_ratio": [0.5, 2.0],
        "num_classes": 10,
    },
}
"""The architecture of every zoo model, as timm constructor keyword arguments plus ``family``
(which timm class) and, for ViTs, ``noskip`` (blocks whose skip connections are removed)."""


def zoo_dir() -> Path:
    """The folder holding the shipped checkpoints and ``manifest.json``."""
    return Path(__file__).parent / "zoo"


def read_manifest(directory: str | Path | None = None) -> dict[str, dict]:
    """Manifest entries of the trained zoo models, by name (empty if none trained yet)."""
    path = Path(directory or zoo_dir()) / "manifest.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())["models"]


class NoSkipBlock(Block):
    """A timm ViT ``Block`` whose forward drops both residual additions (paper Fig. 8).

    Submodules (``norm1``, ``attn``, ``ls1``, ``drop_path1``, ``norm2``, ``mlp``, ...) and
    their names are those of ``Block``, so hooks and state dicts are unchanged.
    """

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """``(n, tokens, d) -> (n, tokens, d)`` without the skip connections."""
        x = self.drop_path1(
            self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal))
        )
        return self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def remove_skips(model: nn.Module, blocks: list[int]) -> nn.Module:
    """Remove both skip connections of the given ViT blocks, in place; returns ``model``.

    Raises:
        ValueError: if ``model`` is not a ViT or a block index is out of range.
    """
    if model_info(model).family != "vit":
        raise ValueError("remove_skips applies to ViTs only")
    depth = len(model.blocks)
    for i in blocks:
        if not 0 <= i < depth:
            raise ValueError(f"block {i} out of range; this ViT has blocks 0..{depth - 1}")
        if type(model.blocks[i]) is not Block:
            raise ValueError(f"block {i} is a {type(model.blocks[i]).__name__}, not a timm Block")
        model.blocks[i].__class__ = NoSkipBlock
    return model


def build_zoo_model(name: str) -> nn.Module:
    """A zoo architecture with fresh (untrained) weights, in eval mode.

    Its ``pretrained_cfg`` carries the shapes data config (32 px, mean/std 0.5), so timm's
    ``resolve_data_config(model=...)`` works as for the paper's models.
    """
    from timm.models.mlp_mixer import MlpMixer
    from timm.models.resnetv2 import ResNetV2
    from timm.models.vision_transformer import VisionTransformer

    if name not in ZOO_ARCHS:
        raise ValueError(f"unknown zoo model {name!r}; zoo models: {sorted(ZOO_ARCHS)}")
    kwargs = dict(ZOO_ARCHS[name])
    family, noskip = kwargs.pop("family"), kwargs.pop("noskip", [])
    if family == "vit":
        model = remove_skips(VisionTransformer(**kwargs), noskip)
    elif family == "resnet":
        model = ResNetV2(**kwargs)
    else:
        model = MlpMixer(**{**kwargs, "mlp_ratio": tuple(kwargs["mlp_ratio"])})
    size = kwargs.get("img_size", 32)
    model.pretrained_cfg = model.default_cfg = {
        "input_size": (3, size, size),
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "num_classes": kwargs["num_classes"],
    }
    return model.eval()


class CorruptCheckpointError(ValueError):
    """A zoo checkpoint's sha256 differs from the manifest's."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_zoo(name: str, directory: Path) -> nn.Module:
    from safetensors.torch import load_file

    entry = read_manifest(directory).get(name)
    if entry is None:
        raise FileNotFoundError(
            f"zoo model {name!r} has no trained checkpoint in {directory}; train it with "
            f"`vitlens zoo train {name}`, or pass pretrained=False for random weights"
        )
    path = directory / entry["file"]
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} listed in the manifest is missing")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise CorruptCheckpointError(
            f"checkpoint {path} is corrupted: sha256 {digest} != manifest {entry['sha256']}; "
            f"restore it (e.g. `git checkout -- {path.name}`) or retrain with "
            f"`vitlens zoo train {name}`"
        )
    model = build_zoo_model(name)
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval()


def load_model(name: str, *, pretrained: bool = True, zoo: str | Path | None = None) -> nn.Module:
    """A zoo model (e.g. ``"vit-cls"``) or a timm model (e.g. :data:`PAPER_MODELS`), in eval mode.

    Args:
        name: a zoo name (:data:`ZOO_ARCHS`) or a timm model name with optional ``.tag``.
        pretrained: load trained weights (zoo: the shipped checkpoint, sha256-verified;
            timm: downloads from the Hugging Face Hub once, then from its cache).
        zoo: folder with the zoo's checkpoints and manifest; the shipped zoo if ``None``.

    Raises:
        ValueError: unknown name.
        CorruptCheckpointError: a zoo checkpoint whose sha256 differs from the manifest.
        RuntimeError: timm weights could not be fetched (e.g. no network).
    """
    if name in ZOO_ARCHS:
        if not pretrained:
            return build_zoo_model(name)
        return _load_zoo(name, Path(zoo) if zoo is not None else zoo_dir())
    import timm

    if not timm.is_model(name.split(".")[0]):
        raise ValueError(
            f"unknown model {name!r}: not a zoo model ({', '.join(sorted(ZOO_ARCHS))}) nor a "
            f"timm model; the paper's models are {', '.join(PAPER_MODELS)}"
        )
    try:
        model = timm.create_model(name, pretrained=pretrained)
    except Exception as err:  # hub/network errors come in many types
        raise RuntimeError(
            f"could not fetch pretrained weights for {name!r} ({type(err).__name__}: {err}). "
            "They come from the Hugging Face Hub: connect to the network once (they are then "
            "cached in ~/.cache/huggingface), or copy that cache from a machine that has them "
            "and set HF_HUB_OFFLINE=1; or use pretrained=False for random weights."
        ) from err
    return model.eval()
