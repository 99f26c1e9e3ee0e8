"""Print the zoo's manifest as a Markdown table (name, parameters, accuracy, time, size).

python scripts/zoo_table.py
"""

from __future__ import annotations

from vitlens.models import ZOO_ARCHS, read_manifest


def main() -> None:
    manifest = read_manifest()
    print("| model | family | parameters | train images | held-out accuracy | train time | file |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for name in ZOO_ARCHS:
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
