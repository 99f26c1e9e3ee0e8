"""The three sanity checks of vitlens.analyses.sanity on the tiny zoo, printed as tables.

usage: python scripts/measure_sanity.py [--images N] [--groups G]

Seed specificity: the class-token ViT against its second training seed, block outputs.
Principal-component deletion: the ViT's blocks 0, 3 and 6, the default bands. Few points:
2 % of the images moved at block 4. Every interval is a jackknife over the images.
"""

from __future__ import annotations

import argparse
import time

from vitlens.analyses import sanity
from vitlens.analyses.measures import layer_features
from vitlens.analyses.probes import dataset_labels
from vitlens.book.profiles import get_profile
from vitlens.models import layer_names
from vitlens.streaming import RunOptions

MEASURES = ("linear_cka", "rbf_cka", "procrustes", "svcca")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--groups", type=int, default=10)
    args = parser.parse_args()
    profile = get_profile("tiny")
    vit, twin = profile.model("vit"), profile.model("vit-seed")
    images = profile.images(vit, args.images)
    labels = dataset_labels(images)
    layers = layer_names(vit, "blocks")
    quiet = RunOptions(progress=False)
    features = layer_features(vit, images, layers, run=quiet)
    features_twin = layer_features(twin, images, layers, run=quiet)

    start = time.perf_counter()
    seeds = sanity.seed_specificity(features, features_twin, MEASURES, groups=args.groups)
    print(f"\nseed specificity ({time.perf_counter() - start:.0f} s)")
    print("| measure | identification margin | layers identified |\n|---|---|---|")
    for name, result in seeds.items():
        print(f"| {name} | {result.margin.text('.3f')} | {result.identified} of {len(layers)} |")

    start = time.perf_counter()
    chosen = {name: features[name] for name in layers[::3]}
    deletion = sanity.pc_deletion_sensitivity(chosen, labels, MEASURES, groups=args.groups)
    print(f"\nprincipal-component deletion ({time.perf_counter() - start:.0f} s)")
    print("| measure | Spearman, probe accuracy drop vs dissimilarity |\n|---|---|")
    for name, estimate in deletion.correlation.items():
        print(f"| {name} | {estimate.text('.2f')} |")

    start = time.perf_counter()
    layer = layers[len(layers) // 2]
    moved = sanity.few_point_robustness(
        features[layer], labels, MEASURES, layer=layer, groups=args.groups
    )
    print(
        f"\nfew moved points ({time.perf_counter() - start:.0f} s): {moved.moved} of "
        f"{len(labels)} images at {layer}, {moved.scales[-1]:g} x RMS; probe accuracy change "
        f"{moved.accuracy_change.text('.3f')}"
    )
    print("| measure | 1 - similarity |\n|---|---|")
    for name, estimate in moved.drop.items():
        print(f"| {name} | {estimate.text('.3f')} |")


if __name__ == "__main__":
    main()
