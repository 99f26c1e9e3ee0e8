"""Half-mass area of ERFs, channel-sum vs the paper's per-channel |grad| mean (tiny profile)."""

import torch

from vitlens.analyses.receptive import effective_receptive_field, mass_area
from vitlens.book.profiles import get_profile
from vitlens.streaming import RunOptions

torch.manual_seed(0)
profile = get_profile("tiny")
for role in ("vit", "resnet"):
    model = profile.model(role)
    images = profile.images(model, 8)
    fields = {
        how: effective_receptive_field(
            model, images, channels=how, run=RunOptions(8, progress=False)
        )
        for how in ("sum", "abs_mean")
    }
    for layer in fields["sum"]:
        print(
            f"{role:7s} {layer:22s} sum {mass_area(fields['sum'][layer]):6.1%}   "
            f"paper {mass_area(fields['abs_mean'][layer]):6.1%}"
        )
