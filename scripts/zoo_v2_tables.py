"""Print zoo v2's tables from the manifest and the sweep records, as Markdown.

1. The models: held-out accuracy, local heads per block (under half of uniform attention's
   distance, on 256 held-out images), the held-out gain over the last 20 % of the second
   stage, and CPU minutes per stage (a reused first stage counted where it ran).
2. Each sweep: held-out accuracy and local heads per block at every logged step of the
   second stage, with the registered model as the sweep's remaining point.

python scripts/zoo_v2_tables.py
"""

from __future__ import annotations

import json

from vitlens.models import read_manifest, zoo_dir
from vitlens.models.zoo import ZOO_PLAN, ZOO_SWEEPS, split_zoo_key
from vitlens.training.zoo import CONVERGENCE_SHARE, final_stage_gain


def _cpu_minutes(entry: dict) -> str:
    first = entry.get("pretrain")
    second = entry["train_cpu_s"] - (
        first["train_cpu_s"] if first and not first.get("reused") else 0
    )
    if first is None:
        return f"{second / 60:.0f}"
    reused = " (reused)" if first.get("reused") else ""
    return f"{first['train_cpu_s'] / 60:.0f}{reused} + {second / 60:.0f}"


def _heads(entry: dict) -> str:
    attention = entry.get("attention")
    return " ".join(map(str, attention["local_heads_per_block"])) if attention else "n/a"


def models_table(manifest: dict) -> list[str]:
    lines = [
        "| model | held-out | local heads per block | gain, last 20 % | CPU min (stage 1 + 2) |",
        "|---|--:|---|--:|--:|",
    ]
    for key in ZOO_PLAN:
        if key.startswith("sweep:"):
            continue
        entry = manifest.get(key)
        if entry is None:
            lines.append(f"| `{key}` | queued | | | |")
            continue
        history = entry.get("history")
        gain = f"{100 * final_stage_gain(history):+.1f} pt" if history else "n/a"
        lines.append(
            f"| `{key}` | {100 * entry['heldout']['accuracy']:.1f} % | {_heads(entry)} | {gain} "
            f"| {_cpu_minutes(entry)} |"
        )
    return lines


def sweep_table(sweep: str, manifest: dict) -> list[str]:
    path = zoo_dir() / "sweeps" / f"{sweep}.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    model = next(iter(ZOO_SWEEPS[sweep].values()))["model"]
    if model in manifest:
        runs = {**runs, f"{model} (registered)": manifest[model]}
    lines = [
        f"Sweep `{sweep}` (second stage changed; first stage shared):",
        "",
        "| run | second stage | held-out by step (local heads per block) | CPU min |",
        "|---|---|---|--:|",
    ]
    for label, entry in sorted(runs.items(), key=lambda kv: kv[1]["recipe"]["steps"]):
        recipe = entry["recipe"]
        steps = "; ".join(
            f"{row['step']}: {100 * row['heldout_acc']:.1f} %"
            + (
                f" ({' '.join(map(str, row['local_heads_per_block']))})"
                if "local_heads_per_block" in row  # ViTs only
                else ""
            )
            for row in entry.get("history", [])
            if row.get("heldout_acc") is not None
        )
        decay = f", layer decay {recipe['layer_decay']:g}" if recipe["layer_decay"] != 1 else ""
        lines.append(
            f"| {label} | {recipe['steps']} steps, lr {recipe['lr']:g}{decay} | {steps} "
            f"| {_cpu_minutes(entry)} |"
        )
    return lines


def main() -> None:
    manifest = read_manifest()
    print("\n".join(models_table(manifest)))
    print(
        f"\n(gain: held-out accuracy over the last {CONVERGENCE_SHARE:.0%} of the second stage)\n"
    )
    for sweep in ZOO_SWEEPS:
        print("\n".join(sweep_table(sweep, manifest)))
        print()
    trained = [split_zoo_key(k)[0] for k in ZOO_PLAN if k in manifest]
    print(f"{len(trained)} of {sum(not k.startswith('sweep:') for k in ZOO_PLAN)} models trained")


if __name__ == "__main__":
    main()
