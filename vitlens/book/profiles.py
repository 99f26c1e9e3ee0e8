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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from torch import nn
from torch.utils.data import Dataset

from vitlens.book.premises import Premise
from vitlens.book.verdicts import Verdict
from vitlens.book.verdicts import over_seeds as verdicts_over_seeds
from vitlens.core.stats import Estimate, across_seeds
from vitlens.data.sources import NAMED_DATASETS, load_images
from vitlens.models import load_model, parameter_count
from vitlens.models.zoo import SEED_TAG, ZOO, split_zoo_key
from vitlens.streaming import RunOptions

__all__ = [
    "PROFILES",
    "ROLES",
    "Profile",
    "cast_table",
    "get_profile",
    "per_model",
]


@dataclass(frozen=True)
class Profile:
    """Models, images and batch sizes of one profile.

    Attributes:
        name: ``"tiny"`` or ``"paper"``.
        models: role -> model name for :func:`vitlens.models.zoo.load_model`, or ``None`` where
            the profile has no such model (see ``missing``).
        missing: role -> why the profile has no model for it, for roles mapped to ``None``.
        data_scale: ``(role, training images)`` pairs, fewest images first: the same
            architecture trained on more and more data (paper Fig. 4, 12, 13).
        num_images: images per analysis.
        batch_size: minibatch size for CKA (the paper: 256 or more).
        description: what runs where, for the reader.
        image_source: the dataset of the held-out images, by the name
            :func:`vitlens.data.sources.load_images` knows (``"shapes"``: the first images
            of its test split; ``"imagenette"``: a fixed random sample of its validation
            images, since the folder is sorted by class).
        progress: whether the chapters' analyses show progress bars: on for the paper's
            models (minutes per loop on a GPU), off for the zoo (seconds per loop, and a quiet
            build log).
        transfer_source: the dataset, by name, of a second task none of the profile's
            models was trained on (Appendix F, G): ``"junctions"``, ``"cifar10"`` (the
            paper's Appendix F); ``None`` if the profile has none.
        transfer_task: that task in words, for the reader.
        seeds: role -> the training seeds the profile measures for it, where it has more
            than one (a zoo model trained again with another seed; :func:`model`'s ``seed``).
            A row that compares models measures each seed and carries an interval over them
            (:meth:`over_seeds`); roles not listed have one model.
    """

    name: str
    models: dict[str, str | None] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    data_scale: tuple[tuple[str, int], ...] = ()
    num_images: int = 512
    batch_size: int = 128
    description: str = ""
    image_source: str | None = None
    progress: bool = False
    transfer_source: str | None = None
    transfer_task: str = ""
    seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for role, seeds in self.seeds.items():
            if not self.has(role):
                raise ValueError(f"seeds for role {role!r}, which has no model in {self.name!r}")
            if len(seeds) < 2 or len(set(seeds)) != len(seeds):
                raise ValueError(
                    f"role {role!r}: seeds must be at least 2 distinct training seeds, got {seeds}"
                )
        for what, source in (
            ("image_source", self.image_source),
            ("transfer_source", self.transfer_source),
        ):
            if source is not None and source not in NAMED_DATASETS:
                raise ValueError(
                    f"{what} {source!r} is not a dataset name; valid: {', '.join(NAMED_DATASETS)}"
                )

    @property
    def run(self) -> RunOptions:
        """How this profile runs every analysis (its batch size and progress bars), handed
        over in one piece: ``cka_matrix(model, images, run=profile.run)``."""
        return RunOptions(batch_size=self.batch_size, progress=self.progress)

    def model(self, role: str, seed: int | None = None) -> nn.Module:
        """The model playing ``role`` in this profile, in eval mode.

        Its name is ``self.models[role]``, also :func:`vitlens.models.zoo.model_name` of it;
        ``seed``: the one trained with that seed, one of :meth:`training_seeds` (``None``: the
        model as named). Every call returns the same loaded copy, the one :meth:`over_seeds`
        hands its ``measure``, so what a chapter caches per model object serves its figures
        and its rows alike; a chapter must not modify it.
        """

        if role not in self.models:
            raise ValueError(
                f"profile {self.name!r} has no model for role {role!r}; "
                f"roles: {sorted(self.models)}"
            )
        if self.models[role] is None:
            raise ValueError(
                f"profile {self.name!r} has no model for role {role!r}: {self.missing[role]}"
            )
        if seed is not None and seed not in self.training_seeds(role):
            raise ValueError(
                f"profile {self.name!r} measures role {role!r} with seeds "
                f"{self.training_seeds(role)}, not seed {seed}"
            )
        return _shared_model(self.models[role], seed)

    def over_seeds(
        self,
        measure: Callable[..., Estimate | Verdict],
        *roles: str,
        first: Estimate | Verdict | None = None,
    ) -> Estimate | Verdict:
        """``measure(*models)``, the models playing ``roles``, once per training seed, combined.

        Where some of ``roles`` have :attr:`seeds` (all of them the same number), ``measure``
        runs once per seed index ``i`` on seed ``seeds[role][i]`` of each such role (the other
        roles' one model each time) and the estimates are combined by
        :func:`vitlens.core.stats.across_seeds`: the mean over seeds with a 95% interval over
        the seeds and each estimate's own (images); where ``measure`` decides a claim (a
        :class:`~vitlens.book.verdicts.Verdict`), the seeds' verdicts are combined part by
        part (:func:`vitlens.book.verdicts.over_seeds`). Where none has, ``measure`` runs
        once and its result is returned as it is. A difference between two seeded models is measured
        on seed pairs (``i`` with ``i``: independent runs, so any pairing is as good).

        Example: ``profile.over_seeds(lambda vit, resnet: gap(vit, resnet), "vit", "resnet")``.

        Every call hands ``measure`` the same loaded copy of each model (seed), so what a
        chapter caches per model object is shared between its rows.

        Args:
            measure: models, one per role in order -> the statistic on them (an
                :class:`~vitlens.core.stats.Estimate`) or the claim decided on them (a ``Verdict``).
            roles: the roles whose models ``measure`` takes.
            first: the result on the models as named, where a figure already measured it:
                taken as the first seed's instead of measuring again (each seeded role's
                first seed must then be its named model's own).
        """
        if not roles:
            raise ValueError("over_seeds needs at least one role")
        seeded = {role: self.training_seeds(role) for role in roles if self.training_seeds(role)}
        if not seeded:
            return first if first is not None else measure(*(self.model(role) for role in roles))
        if first is not None:
            differ = {
                role: seeds[0]
                for role, seeds in seeded.items()
                if seeds[0] != split_zoo_key(self.models[role])[1]
            }
            if differ:
                raise ValueError(
                    f"first= is the named models' estimate, but the first seeds {differ} are not "
                    "those models' own"
                )
        counts = {len(seeds) for seeds in seeded.values()}
        if len(counts) > 1:
            raise ValueError(
                f"roles {sorted(seeded)} have different numbers of seeds {seeded}; pair them "
                "seed by seed, so each needs as many"
            )
        constant = {role: _shared_model(self.models[role]) for role in roles if role not in seeded}
        estimates = []
        for i in range(counts.pop()):
            if i == 0 and first is not None:
                estimates.append(first)
                continue
            models = [
                constant[role]
                if role in constant
                else _shared_model(self.models[role], seeded[role][i])
                for role in roles
            ]
            estimates.append(measure(*models))
        seeds = "training seeds of " + " and ".join(self.models[role] for role in seeded)
        if constant:
            seeds += f", one of {', '.join(self.models[role] for role in constant)}"
        if all(isinstance(e, Verdict) for e in estimates):
            return verdicts_over_seeds(estimates, seeds=seeds)
        return across_seeds(estimates, seeds=seeds)

    def seed_models(self, role: str) -> list[nn.Module]:
        """The model of each training seed of ``role`` (:meth:`training_seeds`), in order, as
        the same loaded copies :meth:`over_seeds` hands its ``measure``; the one model of a
        role without seeds. For a choice that must hold on every seed before a rule runs
        (e.g. which block Figure 5 splits)."""
        name = self.models.get(role)
        if name is None:
            self.model(role)  # raises with the reason
        seeds = self.training_seeds(role)
        if not seeds:
            return [_shared_model(name)]
        return [_shared_model(name, seed) for seed in seeds]

    def run_coverage(self, *roles: str) -> str:
        """Whether intervals over the models playing ``roles`` cover the training run, in
        words that follow "the intervals cover the images ...".

        ``"and the training run (3 training seeds each of vit-pt, resnet-local)"`` where
        some of ``roles`` have :attr:`seeds`, naming the one-model roles too; ``"but not the
        training run (one trained model of each)"`` where none has.
        """
        if not roles:
            raise ValueError("run_coverage needs at least one role")
        seeded = [role for role in roles if self.training_seeds(role)]
        if not seeded:
            return "but not the training run (one trained model of each)"
        counts = sorted({len(self.training_seeds(role)) for role in seeded})
        number = " or ".join(str(count) for count in counts)
        names = ", ".join(self.models[role] for role in seeded)
        text = f"and the training run ({number} training seeds each of {names}"
        single = [self.models[role] for role in roles if role not in seeded]
        if single:
            text += f"; one model of {', '.join(single)}"
        return text + ")"

    def training_seeds(self, role: str) -> tuple[int, ...]:
        """The training seeds this profile measures for ``role``; ``()`` for a role with one
        model (see :attr:`seeds`)."""
        return self.seeds.get(role, ())

    def weights_gb(self, role: str) -> float:
        """Size in GB of the 32-bit weights of the model playing ``role``, before downloading.

        Counted from the architecture, built on PyTorch's ``meta`` device (no memory, no
        network); 0 for the zoo's models, which ship inside the package.
        """
        name = self.models.get(role)
        if name is None or self.name == "tiny":
            return 0.0
        import timm
        import torch

        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
        return parameter_count(model) * 4 / 1e9

    def cost(self) -> str:
        """What running a chapter on this profile downloads and needs, said before it starts."""
        if self.name == "tiny":
            return "tiny profile: nothing to download; a CPU runs every chapter in minutes"
        sizes = {name: self.weights_gb(role) for role, name in self.models.items() if name}
        lines = [f"{name}: {gb:.2f} GB" for name, gb in sizes.items()]
        return (
            f"{self.name} profile: each chapter downloads, once (timm caches them), the weights "
            f"of the models it uses, {sum(sizes.values()):.1f} GB for all chapters:\n  "
            + "\n  ".join(lines)
            + "\nand Imagenette (imagenette2-320, about 0.35 GB) once. It expects a GPU: "
            f"224-pixel models on {self.num_images:,} images per analysis."
        )

    def transfer_images(self, model: nn.Module, num_images: int) -> Dataset:
        """``num_images`` labelled images of the profile's second task, for ``model``."""
        if self.transfer_source is None:
            raise ValueError(f"profile {self.name!r} has no second task (transfer_source)")
        return load_images(self.transfer_source, model, num_images=num_images)

    def has(self, role: str) -> bool:
        """Whether this profile has a model for ``role``."""
        return self.models.get(role) is not None

    def present(self, *roles: str) -> list[str]:
        """The ``roles`` this profile has a model for, in the order given.

        For a figure over whichever of several models exist, e.g. the ViTs by size:
        ``profile.present("vit-small", "vit", "vit-large")``.
        """
        return [role for role in roles if self.has(role)]

    def premise(self, *roles: str, name: str = "") -> Premise:
        """Whether this profile has a model for every one of ``roles``, and if not, why.

        The reason is :attr:`missing`'s text for each role without a model, each distinct
        text once, joined by ``"; "`` (a role the profile does not cast at all, or one
        without a stated reason, says so). With ``name``, the models in words, it reads
        ``"no {name}: {why}"``, as the ledger's missing premise. A chapter hands its
        claim's rule and glued values to the premise
        (:class:`vitlens.book.premises.Premise`) instead of deciding with its own ``if``.
        """
        if not roles:
            raise ValueError("a premise needs at least one role")
        reasons = [self._why_not(role) for role in roles if not self.has(role)]
        if not reasons:
            return Premise(True)
        why = "; ".join(dict.fromkeys(reasons))
        return Premise(False, f"no {name}: {why}" if name else why)

    def _why_not(self, role: str) -> str:
        if role not in self.models:
            return f"profile {self.name!r} casts no role {role!r}; roles: {sorted(self.models)}"
        return self.missing.get(role) or f"profile {self.name!r} has no model for role {role!r}"

    def images(self, model: nn.Module, num_images: int | None = None) -> Dataset:
        """``num_images`` (default :attr:`num_images`) held-out images preprocessed for
        ``model``, from this profile's :attr:`image_source`."""
        if self.image_source is None:
            raise ValueError(f"profile {self.name!r} has no image_source")
        count = self.num_images if num_images is None else num_images
        return load_images(self.image_source, model, num_images=count)


def per_model(
    measure: Callable[[nn.Module], object], known: dict[nn.Module, object] | None = None
) -> Callable[[nn.Module], object]:
    """``measure(model)``, computed once per loaded model and then remembered.

    For a chapter's rows over training seeds: :meth:`Profile.over_seeds` hands every row
    the same loaded copy of each model (:meth:`Profile.model` returns it too), so a
    measurement two rows share, or a role without seeds paired with each seed of another,
    runs once. ``known``: ``{model: result}`` the chapter's figures computed already (the
    visible cells call the analyses themselves), used instead of measuring again.
    """
    results = dict(known or {})

    def measured(model: nn.Module) -> object:
        if model not in results:
            results[model] = measure(model)
        return results[model]

    return measured


def _shared_model(name: str, seed: int | None = None) -> nn.Module:
    """The one loaded copy of model ``name`` (the zoo's, trained with ``seed``; ``None``:
    the model as named) that every :meth:`Profile.model` and :meth:`Profile.over_seeds`
    call hands out: a zoo model named with its own seed and the same model named without
    it are one copy."""
    if name in ZOO or SEED_TAG in name:
        base, own = split_zoo_key(name)
        return _loaded(base, own if seed is None else seed)
    return _loaded(name, seed)


@cache
def _loaded(name: str, seed: int | None) -> nn.Module:
    return load_model(name, seed=seed)


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        models={
            "vit": "vit-pt",
            "vit-gap": "vit-pt-gap",
            "resnet": "resnet-local",
            "mixer": "mixer-pt",
            "vit-small": "vit-pt-small",
            "vit-large": "vit-pt-large",
            "vit-noskip-early": "vit-pt-noskip-2",
            "vit-noskip-late": "vit-pt-noskip-6",
            "vit-data100": "vit-pt-data100",
            "vit-data300": "vit-pt-data300",
            "vit-data1000": "vit-pt-data1000",
            "vit-data5000": "vit-pt-data5000",
            "vit-data-less": None,
            "vit-local": "vit-mim",
            "vit-local-control": "vit-mim-sup",
            "vit-tuned-same": "vit-pt-ft-shapes",
            "vit-tuned-new": "vit-pt-ft-junctions",
            "vit-seed": "vit-pt.seed1",
        },
        missing={
            "vit-data-less": "the tiny profile's data scale is the four smaller training sets "
            "of 'vit' (roles 'vit-data100' to 'vit-data5000'), not one"
        },
        data_scale=(
            ("vit-data100", 100),
            ("vit-data300", 300),
            ("vit-data1000", 1000),
            ("vit-data5000", 5000),
            ("vit", 30000),
        ),
        seeds={
            "vit": (0, 1, 2),
            "vit-gap": (0, 1, 2),
            "resnet": (0, 1, 2),
            "vit-data100": (0, 1, 2),
        },
        num_images=512,
        batch_size=128,
        description="the zoo on synthetic 32x32 shapes; CPU, offline",
        image_source="shapes",
        transfer_source="junctions",
        transfer_task="junctions (pairs of stroke junctions over dead leaves, 10 classes)",
    ),
    "paper": Profile(
        name="paper",
        progress=True,
        models={
            "vit": "vit_base_patch16_224.augreg_in21k",
            "vit-gap": "vit_medium_patch16_gap_240.sw_in12k",
            "resnet": "resnetv2_50x1_bit.goog_in21k",
            "mixer": "mixer_b16_224.goog_in21k",
            "vit-small": "vit_base_patch32_224.augreg_in21k",
            "vit-large": "vit_large_patch16_224.augreg_in21k",
            "vit-noskip-early": None,
            "vit-noskip-late": None,
            "vit-data100": None,
            "vit-data300": None,
            "vit-data1000": None,
            "vit-data5000": None,
            "vit-data-less": "vit_base_patch16_224.augreg_in1k",
            "vit-local": "vit_base_patch16_224.augreg_in21k",
            "vit-local-control": "vit_base_patch16_224.augreg_in1k",
            "vit-tuned-same": None,
            "vit-tuned-new": None,
            "vit-seed": None,
        },
        missing={
            **dict.fromkeys(
                ("vit-noskip-early", "vit-noskip-late"),
                "no public checkpoint of a ViT trained without a block's skip connections "
                "exists (the paper trained its own); train one with vitlens.training, or use "
                "the tiny profile",
            ),
            **dict.fromkeys(
                ("vit-data100", "vit-data300", "vit-data1000", "vit-data5000"),
                "the paper's fractions of JFT-300M are not public; this profile's data scale "
                "is ImageNet-1k (role 'vit-data-less') against ImageNet-21k (role 'vit')",
            ),
            "vit-seed": "no second training seed of the paper's ViT is public (the same "
            "recipe and data, another initialisation)",
            **dict.fromkeys(
                ("vit-tuned-same", "vit-tuned-new"),
                "no public pair of a ViT checkpoint before and after fine-tuning on a second "
                "task from the same weights; fine-tune 'vit' with vitlens.training, or use "
                "the tiny profile",
            ),
        },
        data_scale=(("vit-data-less", 1_281_167), ("vit", 14_197_122)),
        num_images=2048,
        batch_size=256,
        description="pretrained timm models on Imagenette; GPU, network once",
        image_source="imagenette",
        transfer_source="cifar10",
        transfer_task="CIFAR-10 (the paper's Appendix F), 10 classes",
    ),
}


ROLES: dict[str, str] = {
    "vit": "the paper's ViT, pretrained on a large dataset, then fine-tuned; the zoo's is "
    "pretrained by masked-patch prediction (the unlimited synthetic images stand for the "
    "large dataset), then fine-tuned with labels to convergence",
    "vit-gap": "the ViT with global average pooling instead of a class token (Figure 11); "
    "the same two stages, its learning rate chosen by a sweep",
    "resnet": "the paper's BiT ResNet; the zoo's stem keeps the 32-pixel image at full "
    "resolution (3x3, stride 1, no pooling), so its first blocks see a few pixels, as a "
    "BiT ResNet's first blocks see a small part of a 224-pixel image",
    "mixer": "MLP-Mixer (chapter 7): no attention, a token-mixing MLP per block",
    "vit-small": "a smaller ViT, for the effect of model size (chapter 6, Appendix C)",
    "vit-large": "a larger ViT, for the effect of model size (chapter 6, Appendix C)",
    "vit-noskip-early": "the ViT trained without the skip connections of an early block "
    "(Figure 8; the paper trained its own)",
    "vit-noskip-late": "the ViT trained without the skip connections of a later block (Figure 8)",
    "vit-data100": "the ViT with both stages on 100 distinct images: the data axis "
    "(Figures 4, 12, 13; the paper's fractions of JFT-300M)",
    "vit-data300": "the data axis: 300 distinct images",
    "vit-data1000": "the data axis: 1,000 distinct images",
    "vit-data5000": "the data axis: 5,000 distinct images",
    "vit-data-less": "the ViT trained on less data (the paper profile's data axis: "
    "ImageNet-1k against ImageNet-21k)",
    "vit-local": "chapter 3b's ViT with local heads, from its one-factor-at-a-time study",
    "vit-local-control": "its control in the study: the same two stages, the first one supervised",
    "vit-tuned-same": "the ViT fine-tuned again on its own task (Appendix G)",
    "vit-tuned-new": "the ViT fine-tuned on a second task it never saw (Appendix G)",
    "vit-seed": "the ViT trained again with another seed: the same recipe and data, "
    "another initialisation (chapter 2b, Figure 12)",
}
"""What each role stands for, in the paper and in the zoo (the book's cast, :func:`cast_table`)."""


def cast_table(profiles: tuple[str, str] = ("paper", "tiny")) -> str:
    """The book's cast as a Markdown table: each role, its model in each profile, its seeds
    on the tiny profile, and what it stands for (:data:`ROLES`).

    A role a profile has no model for shows "none". ``book/_cast.md`` is this table
    (``python scripts/write_cast.py``).
    """
    missing = sorted(set().union(*(PROFILES[p].models for p in profiles)) - set(ROLES))
    if missing:
        raise ValueError(f"roles without a description in ROLES: {missing}")
    lines = [
        "| role | " + " | ".join(f"`{p}` profile" for p in profiles) + " | what it stands for |",
        "|---|" + "---|" * len(profiles) + "---|",
    ]
    for role, meaning in ROLES.items():
        cells = []
        for name in profiles:
            profile = PROFILES[name]
            model = profile.models.get(role)
            seeds = profile.training_seeds(role)
            cell = f"`{model}`" if model else "none"
            if seeds:
                cell += f" ({len(seeds)} training seeds)"
            cells.append(cell)
        lines.append(f"| `{role}` | " + " | ".join(cells) + f" | {meaning} |")
    return "\n".join(lines) + "\n"


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``, else ``$VITLENS_PROFILE``, else ``"tiny"``."""
    name = name or os.environ.get("VITLENS_PROFILE", "tiny")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; profiles: {sorted(PROFILES)}")
    profile = PROFILES[name]
    if profile.name != "tiny":
        print(profile.cost())  # before anything downloads
    return profile
