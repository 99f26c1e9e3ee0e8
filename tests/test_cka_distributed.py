"""A two-process gloo run of MinibatchCKA's all-reduce equals the single-process answer."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vitlens import MinibatchCKA
from vitlens.streaming import RunOptions


def make_batches(seed: int = 0, num_batches: int = 4) -> list[tuple[list, list]]:
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(num_batches):
        a = [
            torch.randn(16, 10, generator=gen, dtype=torch.float64),
            torch.randn(16, 3, 4, generator=gen, dtype=torch.float64),
        ]
        b = [
            a[0] @ torch.randn(10, 6, generator=gen, dtype=torch.float64),
            torch.randn(16, 5, generator=gen, dtype=torch.float64),
        ]
        batches.append((a, b))
    return batches


def _worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        cka = MinibatchCKA()
        for feats_a, feats_b in make_batches()[rank::world_size]:
            cka.update(feats_a, feats_b)
        local = cka.compute()
        result = cka.compute(distributed=True)
        again = cka.compute(distributed=True)  # the local sums are left untouched
        if rank == 0:
            torch.save({"local": local, "result": result, "again": again}, out_file)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_equals_single_process(tmp_path):
    single = MinibatchCKA()
    for feats_a, feats_b in make_batches():
        single.update(feats_a, feats_b)
    expected = single.compute()

    out_file = tmp_path / "result.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    got = torch.load(out_file)
    torch.testing.assert_close(got["result"], expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(got["again"], expected, rtol=1e-12, atol=0)
    assert not torch.allclose(got["local"], expected)  # each rank alone sees half the data


# ------------------------------------------------- every streaming analysis, two processes


def _analyses() -> dict[str, object]:
    """Every sharded analysis on zoo models, 20 images in 5 batches of 4 (shares of 3 and 2)."""
    from vitlens import (
        cka_matrix,
        effective_receptive_field,
        head_subset_cka,
        layer_names,
        layerwise_cka,
        load_model,
        localization_map,
        mean_attention_distance,
        pooled_features,
        residual_norm_ratios,
    )
    from vitlens.data import ShapesDataset

    torch.set_num_threads(1)
    vit, resnet = load_model("vit-cls"), load_model("resnet-local")
    images = torch.stack([ShapesDataset(20, split="test")[i][0] for i in range(20)])
    run = RunOptions(batch_size=4, device="cpu", progress=False)
    blocks = layer_names(vit, "blocks")
    skip = residual_norm_ratios(vit, images, run=run)
    subsets = head_subset_cka(vit, resnet, images, run=run)
    return {
        "cka": torch.from_numpy(cka_matrix(vit, images, resnet, run=run).matrix),
        "self_cka": torch.from_numpy(cka_matrix(vit, images, run=run).matrix),
        "layerwise": torch.as_tensor(
            layerwise_cka(vit, load_model("vit-cls-data3"), images, run=run).values
        ),
        "distance": mean_attention_distance(vit, images, run=run),
        "subsets": subsets.matrix,
        "subset_distances": subsets.distances,
        "ratios": torch.stack([r.flatten() for r in skip.norm_ratio]),
        "cosines": torch.stack([c.flatten() for c in skip.cosine]),
        "localization": localization_map(vit, images, "blocks.1", run=run),
        "features": pooled_features(vit, images, blocks[:2], run=run)[blocks[1]],
        "erf": effective_receptive_field(vit, images[:8], ["blocks.0"], run=run)["blocks.0"],
    }


def _analysis_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        from vitlens import load_model
        from vitlens.streaming import Taps, stream

        batches = []  # what this rank streams itself: batches rank, rank + 2, ...
        total = stream(
            Taps(load_model("vit-cls"), ["blocks.0"]),
            torch.randn(20, 3, 32, 32),
            lambda images, _stores: batches.append(images.shape[0]),
            run=RunOptions(batch_size=4, progress=False),
            shard=True,
        )
        torch.save({**_analyses(), "share": (batches, total)}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_every_streaming_analysis_shards_across_two_processes(tmp_path):
    expected = _analyses()
    mp.spawn(_analysis_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got.pop("share") == ([4, 4, 4] if rank == 0 else [4, 4], 20)  # uneven shares
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            torch.testing.assert_close(
                got[name].double(), value.double(), rtol=0, atol=1e-10, msg=f"{name}, rank {rank}"
            )


def test_the_command_under_torchrun_equals_one_process(tmp_path):
    import os
    import shutil
    import subprocess

    import numpy as np

    from vitlens.cli import main

    argv = ["cka", "vit-cls", "resnet-local", "--layers", "blocks", "--data", "shapes"]
    argv += ["--num-images", "40", "--batch-size", "8"]  # 5 batches: shares of 3 and 2
    assert main([*argv, "--out", str(tmp_path / "one.png")]) == 0
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun is not on PATH")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launched = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "vitlens"]
    done = subprocess.run(
        [*launched, *argv, "--out", str(tmp_path / "two.png")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("figure:") == 1  # rank 0 alone writes and reports
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    np.testing.assert_allclose(two["cka"], one["cka"], rtol=0, atol=1e-10)
