"""One run of the local-head study that is not a zoo model (the factors run but not shipped).

Trains a ViT of a zoo architecture from scratch on the zoo's shapes data by a recipe given
on the command line (every :class:`vitlens.models.recipe.Recipe` field is an option; a first stage
with ``--pretrain-steps`` and ``--pretrain-objective``), then measures what the study's
table shows and appends one record to ``vitlens/zoo/study_runs.json``
(:func:`vitlens.analyses.local_heads.study_runs` reads it back). Example::

    python scripts/sweep_local_heads.py --name sup-600-strong --steps 600 --batch-size 64 \\
        --warmup-steps 100 --crop-scale 0.35 --color-jitter 0.4 --mixup 0.8 --cutmix 1.0 \\
        --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace

import torch

from vitlens.data import heldout
from vitlens.data.datasets import render_dataset
from vitlens.models import build_zoo_model
from vitlens.models.recipe import add_recipe_arguments, recipe_from_arguments
from vitlens.training.loop import accuracy, fit
from vitlens.training.zoo import attention_summary, data_record, record_study_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the run's name in the table")
    parser.add_argument("--model", default="vit-cls", help="zoo architecture")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--pretrain-steps", type=int, default=0, help="first-stage steps")
    parser.add_argument("--pretrain-objective", default="masked")
    parser.add_argument("--out", default=None, help="record file (default: the shipped one)")
    add_recipe_arguments(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = recipe_from_arguments(args)
    pretrain = (
        replace(
            recipe, steps=args.pretrain_steps, objective=args.pretrain_objective, layer_decay=1.0
        )
        if args.pretrain_steps
        else None
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    data = data_record(recipe)
    train = render_dataset(recipe.dataset, range(recipe.n_train), seed=recipe.data_seed)
    test = heldout(data)
    torch.manual_seed(recipe.seed)
    model = build_zoo_model(args.model)
    stages = []
    for stage in (pretrain, recipe):
        if stage is not None:
            history = fit(model, train.images, train.labels, stage, progress=False)
            stages.append({"recipe": asdict(stage), "final_train_loss": history[-1]["loss"]})
    acc, _ = accuracy(model, test.images, test.labels)
    record = {
        "name": args.name,
        "arch": args.model,
        "stages": stages,
        "data": data,
        "heldout": {"split": "test", "n": len(test.labels), "accuracy": acc},
        "attention": attention_summary(model, test.images),
        "train_time_s": round(time.perf_counter() - start, 1),
        "train_cpu_s": round(time.process_time() - cpu_start, 1),
        "threads": torch.get_num_threads(),
    }
    record_study_run(record, args.out)
    print(json.dumps({k: record[k] for k in ("name", "heldout", "attention", "train_cpu_s")}))


if __name__ == "__main__":
    main()
