"""A two-process gloo run of MinibatchCKA's all-reduce equals the single-process answer."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vitlens import MinibatchCKA


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
