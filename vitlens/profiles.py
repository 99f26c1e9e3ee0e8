"""The book's two profiles: which models and images each chapter measures.

* ``tiny`` (default): the project's own zoo, trained on the synthetic shapes dataset, on
  the CPU, offline.
* ``paper``: the paper's pretrained timm models on Imagenette; needs a network for the
  weights and the images (once), and in practice a GPU.

A chapter names *roles* (``"vit"``, ``"resnet"``...) and asks its profile for the model
and images, so switching profile is one parameter (or ``VITLENS_PROFILE``), never an edit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

__all__ = ["PROFILES", "Profile", "evaluation_sample", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """Models, images and batch sizes of one profile.

    Attributes:
        name: ``"tiny"`` or ``"paper"``.
        models: role -> model name for :func:`vitlens.models.load_model`, or ``None`` where
            the profile has no such model (see ``missing``).
        missing: role -> why the profile has no model for it, for roles mapped to ``None``.
        data_scale: ``(role, training images)`` pairs, fewest images first: the same
            architecture trained on more and more data (paper Fig. 4, 12, 13).
        num_images: images per analysis.
        batch_size: minibatch size for CKA (the paper: 256 or more).
        description: what runs where, for the reader.
    """

    name: str
    models: dict[str, str | None] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    data_scale: tuple[tuple[str, int], ...] = ()
    num_images: int = 512
    batch_size: int = 128
    description: str = ""

    def model(self, role: str) -> nn.Module:
        """The model playing ``role`` in this profile, in eval mode."""
        from vitlens.models import load_model

        if role not in self.models:
            raise ValueError(
                f"profile {self.name!r} has no model for role {role!r}; "
                f"roles: {sorted(self.models)}"
            )
        if self.models[role] is None:
            raise ValueError(
                f"profile {self.name!r} has no model for role {role!r}: {self.missing[role]}"
            )
        model = load_model(self.models[role])
        model.vitlens_name = self.models[role]
        return model

    def has(self, role: str) -> bool:
        """Whether this profile has a model for ``role``."""
        return self.models.get(role) is not None

    def images(self, model: nn.Module, num_images: int | None = None) -> Dataset:
        """Held-out images preprocessed for ``model``: shapes (tiny) or Imagenette (paper).

        The paper profile downloads Imagenette once into ``$VITLENS_DATA`` (default
        ``~/.cache/vitlens``) and takes a fixed random sample of ``num_images`` of its
        validation images (:func:`vitlens.profiles.evaluation_sample`): the folder is
        sorted by class, so its first images would cover only a few classes.
        """
        n = self.num_images if num_images is None else num_images
        if self.name == "tiny":
            from vitlens.data import ShapesDataset

            return ShapesDataset(n, split="test", seed=0)
        from vitlens.data import imagenette

        root = Path(os.environ.get("VITLENS_DATA", Path.home() / ".cache" / "vitlens"))
        return evaluation_sample(imagenette(root, model, split="val"), n)


def evaluation_sample(dataset: Dataset, num_images: int, seed: int = 0) -> Subset:
    """``num_images`` distinct items of ``dataset`` in a fixed random order.

    The same ``seed`` always gives the same sample, so every chapter and every model sees
    the same images; the order is shuffled, so a class-sorted folder is sampled across all
    its classes and a minibatch mixes classes.
    """
    if not 0 < num_images <= len(dataset):
        raise ValueError(
            f"num_images must be in 1..{len(dataset)} (the dataset's size), got {num_images}"
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator)[:num_images]
    return Subset(dataset, order.tolist())


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        models={
            "vit": "vit-cls",
            "vit-gap": "vit-gap",
            "resnet": "resnet",
            "mixer": "mixer",
            "vit-small": "vit-small",
            "vit-large": "vit-large",
            "vit-noskip-early": "vit-noskip-2",
            "vit-noskip-late": "vit-noskip-6",
            "vit-data3": "vit-cls-data3",
            "vit-data10": "vit-cls-data10",
            "vit-data30": "vit-cls-data30",
            "vit-data-less": "vit-cls-data3",
            "vit-local": "vit-mim",
            "vit-local-control": "vit-mim-sup",
        },
        data_scale=(
            ("vit-data3", 900),
            ("vit-data10", 3000),
            ("vit-data30", 9000),
            ("vit", 30000),
        ),
        num_images=512,
        batch_size=128,
        description="the zoo on synthetic 32x32 shapes; CPU, offline",
    ),
    "paper": Profile(
        name="paper",
        models={
            "vit": "vit_base_patch16_224.augreg_in21k",
            "vit-gap": "vit_medium_patch16_gap_240.sw_in12k",
            "resnet": "resnetv2_50x1_bit.goog_in21k",
            "mixer": "mixer_b16_224.goog_in21k",
            "vit-small": "vit_base_patch32_224.augreg_in21k",
            "vit-large": "vit_large_patch16_224.augreg_in21k",
            "vit-noskip-early": None,
            "vit-noskip-late": None,
            "vit-data3": None,
            "vit-data10": None,
            "vit-data30": None,
            "vit-data-less": "vit_base_patch16_224.augreg_in1k",
            "vit-local": "vit_base_patch16_224.augreg_in21k",
            "vit-local-control": "vit_base_patch16_224.augreg_in1k",
        },
        missing={
            **dict.fromkeys(
                ("vit-noskip-early", "vit-noskip-late"),
                "no public checkpoint of a ViT trained without a block's skip connections "
                "exists (the paper trained its own); train one with vitlens.train, or use "
                "the tiny profile",
            ),
            **dict.fromkeys(
                ("vit-data3", "vit-data10", "vit-data30"),
                "the paper's fractions of JFT-300M are not public; this profile's data scale "
                "is ImageNet-1k (role 'vit-data-less') against ImageNet-21k (role 'vit')",
            ),
        },
        data_scale=(("vit-data-less", 1_281_167), ("vit", 14_197_122)),
        num_images=2048,
        batch_size=256,
        description="pretrained timm models on Imagenette; GPU, network once",
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``, else ``$VITLENS_PROFILE``, else ``"tiny"``."""
    name = name or os.environ.get("VITLENS_PROFILE", "tiny")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; profiles: {sorted(PROFILES)}")
    return PROFILES[name]
