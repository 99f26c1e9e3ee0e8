"""Print zoo v1's shipped models as a Markdown table (name, parameters, accuracy, time, size).

Zoo v1 is every model in the manifest that zoo v2's plan (``ZOO_PLAN``) did not train;
``scripts/zoo_v2_tables.py`` prints zoo v2.

python scripts/zoo_table.py
"""

from __future__ import annotations

from vitlens.models import ZOO_ARCHS, read_manifest
from vitlens.models.zoo import SEED_TAG, ZOO_PLAN


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
        if name in ZOO_PLAN or e is None:
            continue
        print(
            f"| `{name}` | {e['family']} | {e['params']:,} | {e['data']['n_train']:,} "
            f"| {e['heldout']['accuracy']:.1%} | {e['train_time_s'] / 60:.1f} min "
            f"| {e['bytes'] / 1e6:.2f} MB |"
        )


if __name__ == "__main__":
    main()
