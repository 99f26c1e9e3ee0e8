"""The model registry: the tiny offline zoo (architectures, checkpoints, manifest) and the
paper's pretrained timm models, loaded by name with :func:`load_model`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from vitlens.models.recipe import Recipe
from vitlens.models.surgery import remove_skips

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
    "family": "vit",
    "img_size": 32,
    "patch_size": 4,
    "embed_dim": 128,
    "depth": 8,
    "num_heads": 4,
    "mlp_ratio": 2.0,
    "num_classes": 10,
}
_VIT_GAP = {**_VIT, "class_token": False, "global_pool": "avg"}
_VIT_SMALL = {**_VIT, "embed_dim": 64, "depth": 6, "num_heads": 2}
_VIT_LARGE = {**_VIT, "embed_dim": 160, "depth": 10, "num_heads": 5}
_RESNET = {
    "family": "resnet",
    "layers": [3, 3, 3],
    "channels": [128, 256, 512],
    "stem_chs": 64,
    "num_classes": 10,
}
_MIXER = {
    "family": "mixer",
    "img_size": 32,
    "patch_size": 4,
    "num_blocks": 8,
    "embed_dim": 128,
    "mlp_ratio": [0.5, 2.0],
    "num_classes": 10,
}

_BASE = Recipe(steps=2400, batch_size=64, lr=1e-3, warmup_steps=100, n_train=30000)
_PRETRAIN = replace(_BASE, steps=900, objective="masked", mask_ratio=0.5)
_FINETUNE = replace(_BASE, steps=400, layer_decay=0.75)
_TRANSFER = replace(_BASE, steps=1000, lr=3e-4, warmup_steps=50)
_PT_FINETUNE = replace(_BASE, steps=1600, layer_decay=0.75)
_RESNET_RECIPE = replace(_BASE, steps=500, batch_size=128, lr=2e-3)


@dataclass(frozen=True)
class ZooModel:
    """One zoo model: everything that decides its weights.

    Attributes:
        arch: timm constructor keyword arguments plus ``family`` (which timm class: ``vit``,
            ``resnet`` or ``mixer``), for ViTs ``noskip`` (blocks whose skip connections are
            removed) and for ResNets ``stem`` (:data:`RESNET_STEMS`); see :func:`build_arch`.
        recipe: its (last) training stage.
        pretrain: a first stage on the same images before ``recipe`` (two-stage models).
        finetune_from: another zoo model whose trained weights it starts from (every weight
            but the classifier, the source's sha256 recorded in the manifest).
    """

    arch: dict
    recipe: Recipe
    pretrain: Recipe | None = None
    finetune_from: str | None = None


def _pt(arch: dict, n_train: int | None = None, finetune_steps: int | None = None) -> ZooModel:
    """A zoo-v2 two-stage ViT: masked pretraining, then fine-tuning, on ``n_train`` images.

    ``finetune_steps`` lengthens the second stage of a model that had not converged on
    ``vit-pt``'s 1,600 steps (its shorter run is kept in :data:`ZOO_SWEEPS`).
    """
    finetune, pretrain = _PT_FINETUNE, _PRETRAIN
    if n_train is not None:
        finetune, pretrain = replace(finetune, n_train=n_train), replace(pretrain, n_train=n_train)
    if finetune_steps is not None:
        finetune = replace(finetune, steps=finetune_steps)
    return ZooModel(arch, finetune, pretrain)


ZOO: dict[str, ZooModel] = {
    "vit-cls": ZooModel(_VIT, _BASE),
    "vit-cls-data3": ZooModel(_VIT, replace(_BASE, n_train=900)),
    "vit-cls-data10": ZooModel(_VIT, replace(_BASE, n_train=3000)),
    "vit-cls-data30": ZooModel(_VIT, replace(_BASE, n_train=9000)),
    "vit-mim": ZooModel(_VIT, _FINETUNE, _PRETRAIN),
    "vit-mim-sup": ZooModel(_VIT, _FINETUNE, replace(_PRETRAIN, objective="supervised")),
    "vit-pt": _pt(_VIT),
    "vit-pt-gap": _pt(_VIT_GAP),
    "vit-pt-data100": _pt(_VIT, 100),
    "vit-pt-data300": _pt(_VIT, 300),
    "vit-pt-data1000": _pt(_VIT, 1000),
    "vit-pt-data5000": _pt(_VIT, 5000),
    "vit-pt-noskip-2": _pt({**_VIT, "noskip": [2]}, finetune_steps=4000),
    "vit-pt-noskip-6": _pt({**_VIT, "noskip": [6]}, finetune_steps=4000),
    "vit-pt-small": _pt(_VIT_SMALL, finetune_steps=4000),
    "vit-pt-large": _pt(_VIT_LARGE),
    "mixer-pt": ZooModel(_MIXER, replace(_PT_FINETUNE, steps=6000, layer_decay=1.0), _PRETRAIN),
    "vit-pt-ft-shapes": ZooModel(_VIT, _TRANSFER, finetune_from="vit-pt"),
    "vit-pt-ft-junctions": ZooModel(
        _VIT, replace(_TRANSFER, dataset="junctions"), finetune_from="vit-pt"
    ),
    "resnet-local": ZooModel({**_RESNET, "stem": "local"}, _RESNET_RECIPE),
}
"""Every zoo model by name, with its architecture, recipe, first stage and source.

Zoo v1 (supervised from scratch unless said), the models that chapter 3b's study and the
no-pretraining counterpart still use: ``vit-cls`` (class token); ``vit-cls-data{3,10,30}``
on 3, 10 and 30 % of ``vit-cls``'s images. ``vit-mim``: 900 steps of masked-patch
prediction (:class:`vitlens.training.masked.MaskedPatchPretrainer`, half the patches
masked), then 400 supervised steps with layer-wise learning-rate decay 0.75; ``vit-mim-sup``
is its control, with the first stage supervised. Retired from v1, their zoo-v2 counterparts
taking their place in the book: ``vit-gap``, ``vit-small``, ``vit-large``,
``vit-noskip-{2,6}``, ``mixer``, ``resnet`` (timm's ImageNet stem, not local at 32 pixels)
and Appendix G's ``vit-cls-ft-{shapes,junctions}``.

Zoo v2: ``vit-pt*``, the same 900 masked steps, then 1,600 supervised steps with layer
decay 0.75, long enough that held-out accuracy has converged (the fine-tuning-length sweep
in :data:`ZOO_SWEEPS`). ``vit-pt`` stands for the paper's pretrained-then-fine-tuned ViTs;
``vit-pt-gap`` is its pooling twin; ``vit-pt-data{n}`` train both stages on only ``n``
distinct images (the data axis; its largest size is ``vit-pt``, 30,000);
``vit-pt-ft-{shapes,junctions}`` are Appendix G's pair from ``vit-pt``; ``mixer-pt`` is the
Mixer on the same first stage (its patch tokens masked as a ViT's), fine-tuned for 6,000
steps without layer decay (see :data:`ZOO_SWEEPS`); ``vit-pt-noskip-{2,6}`` and
``vit-pt-small`` fine-tune for 4,000 steps, having not converged in 1,600; ``resnet-local`` has
the ``local`` stem (3x3 stride 1, no pooling), so its first block sees 5x5 pixels."""

ZOO_ARCHS: dict[str, dict] = {name: model.arch for name, model in ZOO.items()}
"""Each zoo model's architecture (a view of :data:`ZOO`)."""

ZOO_RECIPES: dict[str, Recipe] = {name: model.recipe for name, model in ZOO.items()}
"""Each zoo model's (last-stage) recipe (a view of :data:`ZOO`)."""

ZOO_PRETRAIN: dict[str, Recipe] = {n: m.pretrain for n, m in ZOO.items() if m.pretrain}
"""First-stage recipes of the zoo models trained in two stages (a view of :data:`ZOO`)."""

ZOO_FINETUNE_FROM: dict[str, str] = {n: m.finetune_from for n, m in ZOO.items() if m.finetune_from}
"""Zoo models that start from another zoo model's trained weights (a view of :data:`ZOO`)."""


ZOO_PLAN: tuple[str, ...] = (
    "vit-pt",
    "resnet-local",
    "vit-pt.seed1",
    "vit-pt.seed2",
    "sweep:vit-pt-finetune-length/ft800",
    "sweep:vit-pt-finetune-length/ft2400",
    "vit-pt-gap",
    "sweep:vit-pt-gap-lr/lr5e-4",
    "sweep:vit-pt-gap-lr/lr2e-3",
    "resnet-local.seed1",
    "resnet-local.seed2",
    "vit-pt-data100",
    "vit-pt-data1000",
    "vit-pt-data5000",
    "vit-pt-data100.seed1",
    "vit-pt-data100.seed2",
    "vit-pt-data300",
    "vit-cls.seed2",
    "vit-pt-gap.seed1",
    "vit-pt-gap.seed2",
    "vit-pt-ft-shapes",
    "vit-pt-ft-junctions",
    "sweep:vit-pt-variants-finetune/noskip-2-ft1600",
    "sweep:vit-pt-variants-finetune/noskip-6-ft1600",
    "sweep:vit-pt-variants-finetune/small-ft1600",
    "vit-pt-large",
    "sweep:mixer-pt-finetune/ft1600-decay0.75",
    "sweep:mixer-pt-finetune/ft1600-nodecay",
    "sweep:mixer-pt-finetune/ft4000-nodecay",
    "vit-pt-noskip-2",
    "vit-pt-noskip-6",
    "mixer-pt",
    "vit-pt-small",
)
"""Zoo v2's training queue in order, first to last. Its entries are manifest keys
(:func:`zoo_key`) and sweep runs (``"sweep:SWEEP/LABEL"``, :data:`ZOO_SWEEPS`).
``vitlens zoo queue`` trains the entries not done yet, in this order. The data axis's largest
size is ``vit-pt`` itself (30,000 images). ``vit-pt-data300`` came last to the axis: 100
images left the ViT near chance and 1,000 already at 98 %, so a size between them gives the
axis a graded point."""


ZOO_SWEEPS: dict[str, dict[str, dict]] = {
    "vit-pt-finetune-length": {
        "ft800": {"model": "vit-pt", "recipe": {"steps": 800}},
        "ft2400": {"model": "vit-pt", "recipe": {"steps": 2400}},
    },
    "vit-pt-gap-lr": {
        "lr5e-4": {"model": "vit-pt-gap", "recipe": {"lr": 5e-4}},
        "lr2e-3": {"model": "vit-pt-gap", "recipe": {"lr": 2e-3}},
    },
    "mixer-pt-finetune": {
        "ft1600-decay0.75": {"model": "mixer-pt", "recipe": {"steps": 1600, "layer_decay": 0.75}},
        "ft1600-nodecay": {"model": "mixer-pt", "recipe": {"steps": 1600}},
        "ft4000-nodecay": {"model": "mixer-pt", "recipe": {"steps": 4000}},
    },
    "vit-pt-variants-finetune": {
        "noskip-2-ft1600": {"model": "vit-pt-noskip-2", "recipe": {"steps": 1600}},
        "noskip-6-ft1600": {"model": "vit-pt-noskip-6", "recipe": {"steps": 1600}},
        "small-ft1600": {"model": "vit-pt-small", "recipe": {"steps": 1600}},
    },
}
"""Runs that chose a zoo recipe, each a zoo model (seed 0) with fields of its second-stage
recipe replaced. Their manifest entries (no checkpoint) are kept in
``zoo/sweeps/SWEEP.json``; the registered model itself is the sweep's remaining point
(``vit-pt``: 1,600 fine-tuning steps; ``vit-pt-gap``: lr 1e-3). ``mixer-pt-finetune``: on
``vit-pt``'s recipe (1,600 steps, layer decay 0.75) the Mixer reached 60.8 % and was still
gaining 3.7 points over its last 20 %, its training accuracy no higher than its held-out one
(it underfits); without layer decay (the supervised Mixer trains its lower blocks at the
full rate) the same 1,600 steps reached 81.8 %, still gaining 4.5 points, and 4,000 steps
94.7 %, still gaining 1.4; the registered ``mixer-pt`` fine-tunes without decay for 6,000
steps. ``vit-pt-variants-finetune``: on ``vit-pt``'s 1,600 steps the no-skip ViTs reached
53.5 % and 61.8 % (still gaining 2.5 and 4.9 points) and the small ViT 87.5 % (still gaining
2.1); the registered models fine-tune for 4,000 steps, the recipe otherwise unchanged."""


SEED_TAG = ".seed"
"""A model trained with another seed than its recipe's is stored as ``NAME.seedK``."""


def zoo_key(name: str, seed: int | None = None) -> str:
    """The manifest key of zoo model ``name`` trained with ``seed``.

    ``name`` itself for its recipe's seed (or ``None``), ``f"{name}.seed{seed}"`` otherwise,
    like a timm tag naming one set of weights of an architecture.

    Raises:
        ValueError: an unknown name, or a negative seed.
    """
    if name not in ZOO_RECIPES:
        raise ValueError(f"unknown zoo model {name!r}; zoo models: {sorted(ZOO_RECIPES)}")
    if seed is not None and (not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if seed is None or seed == ZOO_RECIPES[name].seed:
        return name
    return f"{name}{SEED_TAG}{seed}"


def split_zoo_key(key: str) -> tuple[str, int]:
    """``"vit-cls.seed2"`` -> ``("vit-cls", 2)``; ``"vit-cls"`` -> its recipe's seed.

    Raises:
        ValueError: a key whose name is not a zoo model or whose seed tag is malformed.
    """
    name, tag, seed = key.partition(SEED_TAG)
    if name not in ZOO_RECIPES:
        raise ValueError(f"unknown zoo model {name!r}; zoo models: {sorted(ZOO_RECIPES)}")
    if not tag:
        return name, ZOO_RECIPES[name].seed
    if not seed.isdigit():
        raise ValueError(f"malformed seed tag in {key!r}; write NAME{SEED_TAG}K (vit-cls.seed1)")
    return name, int(seed)


def zoo_seeds(name: str, manifest: dict[str, dict] | None = None) -> list[int]:
    """The seeds of ``name`` that the manifest (the shipped one if ``None``) holds, sorted."""
    manifest = read_manifest() if manifest is None else manifest
    return sorted(seed for key in manifest for n, seed in [split_zoo_key(key)] if n == name)


def zoo_dir() -> Path:
    """The folder holding the shipped checkpoints and ``manifest.json``."""
    return Path(__file__).parent.parent / "zoo"


MANIFEST_FORMAT = 1
"""The ``format`` of ``manifest.json`` this version of vitlens reads and writes."""


def read_manifest(directory: str | Path | None = None) -> dict[str, dict]:
    """Manifest entries of the trained zoo models, by name (empty if none trained yet).

    Raises:
        ValueError: a manifest that is not valid JSON, has another ``format`` than
            :data:`MANIFEST_FORMAT`, lacks its ``models`` table, or has an entry without
            ``file`` and ``sha256`` or whose ``file`` is not a plain name inside the folder.
    """
    path = Path(directory or zoo_dir()) / "manifest.json"
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"zoo manifest {path} is not valid JSON ({err}); restore it (e.g. `git checkout -- "
            "manifest.json`) or retrain with `vitlens zoo train`"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise ValueError(f"zoo manifest {path} has no 'models' table; it is not a vitlens zoo")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(
            f"zoo manifest {path} has format {manifest.get('format')!r}; this version of "
            f"vitlens reads format {MANIFEST_FORMAT}"
        )
    for name, entry in manifest["models"].items():
        _check_entry(path, name, entry)
    return manifest["models"]


def _check_entry(path: Path, name: str, entry) -> None:
    """Refuse a manifest entry that cannot name a checkpoint inside the zoo folder."""
    if not isinstance(entry, dict):
        raise ValueError(f"zoo manifest {path}: entry {name!r} is not a table")
    missing = [key for key in ("file", "sha256") if not isinstance(entry.get(key), str)]
    if missing:
        raise ValueError(
            f"zoo manifest {path}: entry {name!r} lacks {missing}; retrain it with "
            f"`vitlens zoo train {name}`"
        )
    file = entry["file"]
    if Path(file).name != file or file in ("", ".", "..") or "\\" in file:
        raise ValueError(
            f"zoo manifest {path}: entry {name!r} names file {file!r}, which is not a plain "
            "file name inside the zoo folder; checkpoints must sit next to manifest.json"
        )


RESNET_STEMS: tuple[str, ...] = ("imagenet", "local")
"""The ResNet stems :func:`build_arch` knows. ``imagenet`` is timm's default: a 7x7
stride-2 convolution, then a 3x3 stride-2 max-pool. ``local`` is one 3x3 stride-1
convolution without pooling: the first stage stays at full resolution and its receptive
field at 5x5 pixels (the stem's 3x3 plus the first bottleneck's 3x3)."""


def build_zoo_model(name: str) -> nn.Module:
    """A zoo architecture with fresh (untrained) weights, in eval mode (see :func:`build_arch`)."""
    if name not in ZOO_ARCHS:
        raise ValueError(f"unknown zoo model {name!r}; zoo models: {sorted(ZOO_ARCHS)}")
    model = build_arch(ZOO_ARCHS[name])
    model.pretrained_cfg["architecture"] = name  # where timm records its models' names
    return model


def model_name(model: nn.Module) -> str:
    """A model's name from timm's metadata: ``"vit-cls"``, ``"vit-cls.seed1"``,
    ``"vit_base_patch16_224.augreg_in21k"``; its class name for a model timm did not make.

    timm records ``architecture`` and ``tag`` in every model's ``pretrained_cfg``;
    :func:`load_model` does the same for the zoo (the tag names a training seed other than
    the recipe's).
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("architecture")
    if not name:
        return type(model).__name__
    return f"{name}.{cfg['tag']}" if cfg.get("tag") else name


def build_arch(arch: dict) -> nn.Module:
    """A timm model with fresh weights from an architecture table, in eval mode.

    Args:
        arch: timm constructor keyword arguments plus ``family`` (``vit``, ``resnet`` or
            ``mixer``), for ViTs an optional ``noskip`` (blocks whose skip connections are
            removed) and for ResNets an optional ``stem`` (one of :data:`RESNET_STEMS`;
            default ``imagenet``). The entries of :data:`ZOO_ARCHS` are such tables.

    Its ``pretrained_cfg`` carries the zoo's data config (32 px, mean/std 0.5), so timm's
    ``resolve_data_config(model=...)`` works as for the paper's models.

    Raises:
        ValueError: an unknown ``family`` or ``stem``, or ``noskip``/``stem`` given to a
            family that has no such option.
    """
    from timm.models.mlp_mixer import MlpMixer
    from timm.models.resnetv2 import ResNetV2
    from timm.models.vision_transformer import VisionTransformer

    kwargs = dict(arch)
    family = kwargs.pop("family", None)
    noskip, stem = kwargs.pop("noskip", []), kwargs.pop("stem", "imagenet")
    if family not in ("vit", "resnet", "mixer"):
        raise ValueError(f"unknown family {family!r}; use 'vit', 'resnet' or 'mixer'")
    if noskip and family != "vit":
        raise ValueError(f"'noskip' removes ViT skip connections; family {family!r} has none")
    if stem != "imagenet" and family != "resnet":
        raise ValueError(f"'stem' is a ResNet option; family {family!r} has no stem to choose")
    if stem not in RESNET_STEMS:
        raise ValueError(f"unknown ResNet stem {stem!r}; use one of {RESNET_STEMS}")
    if family == "vit":
        model = remove_skips(VisionTransformer(**kwargs), noskip)
    elif family == "resnet":
        model = ResNetV2(**kwargs)
        if stem == "local":
            model.stem = _local_stem(kwargs.get("stem_chs", 64))
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


def _local_stem(channels: int) -> nn.Module:
    """The ``local`` ResNet stem: a 3x3 stride-1 weight-standardised convolution, no pooling."""
    from collections import OrderedDict

    from timm.layers import StdConv2d

    return nn.Sequential(OrderedDict(conv=StdConv2d(3, channels, 3, stride=1, padding=1)))


class CorruptCheckpointError(ValueError):
    """A zoo checkpoint's sha256 differs from the manifest's."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_zoo(key: str, directory: Path) -> nn.Module:
    from safetensors.torch import load_file

    if not directory.is_dir():
        raise FileNotFoundError(f"zoo folder {directory} does not exist or is not a folder")
    name, seed = split_zoo_key(key)
    manifest = read_manifest(directory)
    entry = manifest.get(key)
    if entry is None:
        held = zoo_seeds(name, manifest)
        raise FileNotFoundError(
            f"zoo model {key!r} has no trained checkpoint in {directory} (seeds of {name!r} "
            f"trained: {held or 'none'}); train it with `vitlens zoo train {name} --seed "
            f"{seed}`, or pass pretrained=False for random weights"
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
    if key != name:
        model.pretrained_cfg["tag"] = key[len(name) + 1 :]
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval()


def load_model(
    name: str,
    *,
    pretrained: bool = True,
    zoo: str | Path | None = None,
    seed: int | None = None,
) -> nn.Module:
    """A zoo model (e.g. ``"vit-cls"``) or a timm model, in eval mode.

    The paper's timm models are listed in :data:`vitlens.models.zoo.PAPER_MODELS`.

    Args:
        name: a zoo name (:data:`vitlens.models.zoo.ZOO_ARCHS`, optionally tagged with a
            training seed, ``"vit-cls.seed1"``) or a timm model name with an optional
            ``.tag``.
        seed: the zoo model trained with this seed (:func:`zoo_seeds` lists those shipped);
            ``None``: the recipe's seed, or the one in ``name``'s tag.
        pretrained: load trained weights (zoo: the shipped checkpoint, sha256-verified;
            timm: downloads from the Hugging Face Hub once, then from its cache).
        zoo: folder with the zoo's checkpoints and manifest; the shipped zoo if ``None``.

    Raises:
        ValueError: unknown name, or a seed for a timm model.
        FileNotFoundError: a zoo model (or seed) that has no shipped checkpoint.
        CorruptCheckpointError: a zoo checkpoint whose sha256 differs from the manifest.
        RuntimeError: timm weights could not be fetched (e.g. no network).
    """
    if name.partition(SEED_TAG)[0] in ZOO_ARCHS:
        base, tagged = split_zoo_key(name)
        if seed is not None and SEED_TAG in name and seed != tagged:
            raise ValueError(f"{name!r} names seed {tagged} but seed={seed} was passed")
        if not pretrained:
            return build_zoo_model(base)
        key = zoo_key(base, tagged if seed is None else seed)
        return _load_zoo(key, Path(zoo) if zoo is not None else zoo_dir())
    if seed is not None:
        raise ValueError(f"seed= selects a zoo model's training seed; {name!r} is not a zoo model")
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
