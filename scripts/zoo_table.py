"""Print the zoo's manifest as a Markdown table (name, parameters, accuracy, time, size).

python scripts/zoo_table.py
"""

from __future__ import annotations

from vitlens.models import ZOO_ARCHS, read_manifest
from vitlens.models.zoo import SEED_TAG


def main() -> None:
    manifest = read_manifest()
    print("| model | family | parameters | train images | held-out accuracy | train time | file |")
    print("|---|---|--:|--:|--:|--:|--:|")
    seeds = sorted(key for key in manifest if SEED_TAG in key)  # NAME.seedK, after NAME
    names = [
        n for base in ZOO_ARCHS for n in (base, *(s for s in seeds if s.startswith(base + ".")))
    ]
    for name in names:
        e = manifest.get(name)
        if e is None:
            print(f"| `{name}` | {ZOO_ARCHS[name]['family']} | | | not trained | | |")
            continue
        print(
            f"| `{name}` | {e['family']} | {e['params']:,} | {e['data']['n_train']:,} "
            f"| {e['heldout']['accuracy']:.1%} | {e['train_time_s'] / 60:.1f} min "
            f"| {e['bytes'] / 1e6:.2f} MB |"
        )


if __name__ == "__main__":
    main()
