"""Where each residual sum ``z + f(z)`` of a model lives: its skip side ``z`` and its long
branch ``f`` (the paper's Figure 7 reads both), by family.

Where the two sides are read (every model in eval mode, so dropout and drop-path are
identities):

* ViT block ``i``: attention branch ``z`` = block input, ``f`` = ``blocks.i.drop_path1``
  output (attention after layer scale); MLP branch ``z`` = ``blocks.i.residual1``,
  ``f`` = ``blocks.i.drop_path2`` output.
* Mixer block ``i``: token-mixing branch ``z`` = block input, ``f`` = ``blocks.i.mlp_tokens``
  output (transposed back to ``(n, T, C)``); channel-mixing branch ``z`` =
  ``blocks.i.residual1``, ``f`` = ``blocks.i.mlp_channels`` output.
* ResNet block: ``z`` = the shortcut (the ``downsample`` output where the block has one,
  else the block input), ``f`` = the residual branch's last module (``drop_path``; for a
  classic ResNet without drop-path, ``se`` or the last batch norm).

The block input is the previous block's output (``norm_pre`` for ViT block 0, ``stem``
for Mixer block 0 and the first ResNet block). In a block without skip connections (the
zoo's ``vit-noskip-*``, :class:`vitlens.models.surgery.NoSkipBlock`) the same points are read:
``z`` is what enters the branch and ``z + f(z)`` the sum the block no longer forms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vitlens.models.families import model_info
from vitlens.models.layers import layer_names


@dataclass(frozen=True)
class ResidualBranch:
    """One residual addition ``z + f(z)``, as layer names :func:`vitlens.capture` accepts.

    Attributes:
        name: the layer holding the sum (``"blocks.3.residual1"``, ``"blocks.3"``,
            ``"stages.1.blocks.0"``); for a classic ResNet, the block output ``act(z + f)``.
        kind: ``"attention"``, ``"mlp"``, ``"token-mixing"``, ``"channel-mixing"`` or ``"conv"``.
        skip: layer whose output is ``z``.
        branch: layer whose output is ``f(z)``.
        branch_channels_first: ``f`` comes as ``(n, C, T)`` (Mixer token mixing) and is
            transposed to ``(n, T, C)``.
    """

    name: str
    kind: str
    skip: str
    branch: str
    branch_channels_first: bool = False

    def branch_output(self, value: torch.Tensor) -> torch.Tensor:
        """The captured ``branch`` tensor in the layout of ``z``."""
        return value.transpose(1, 2) if self.branch_channels_first else value


def _resnet_branch_module(block: nn.Module) -> str:
    """Name, inside a ResNet block, of the last module of its residual branch."""
    for name in ("drop_path", "se", "bn3", "bn2"):
        if isinstance(getattr(block, name, None), nn.Module):
            return name
    raise ValueError(f"cannot find the residual branch of {type(block).__name__}")


def residual_branches(model: nn.Module) -> list[ResidualBranch]:
    """Every residual addition of a ViT, Mixer or ResNet, in forward order.

    Raises:
        ValueError: for a model of no supported family.
    """
    info = model_info(model)
    blocks = layer_names(model, "blocks")
    inputs = ["norm_pre" if info.family == "vit" else "stem", *blocks[:-1]]
    modules = dict(model.named_modules())
    branches = []
    for block_input, block in zip(inputs, blocks, strict=True):
        if info.family == "resnet":
            has_downsample = getattr(modules[block], "downsample", None) is not None
            skip = f"{block}.downsample" if has_downsample else block_input
            branch = f"{block}.{_resnet_branch_module(modules[block])}"
            branches.append(ResidualBranch(block, "conv", skip, branch))
        elif info.family == "vit":
            residual1 = f"{block}.residual1"
            branches += [
                ResidualBranch(residual1, "attention", block_input, f"{block}.drop_path1"),
                ResidualBranch(block, "mlp", residual1, f"{block}.drop_path2"),
            ]
        else:
            residual1 = f"{block}.residual1"
            branches += [
                ResidualBranch(residual1, "token-mixing", block_input, f"{block}.mlp_tokens", True),
                ResidualBranch(block, "channel-mixing", residual1, f"{block}.mlp_channels"),
            ]
    return branches
