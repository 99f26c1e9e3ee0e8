"""The test session's common setup, in one place.

* Matplotlib draws with its non-interactive ``Agg`` backend (set here, before any test
  module imports ``pyplot``).
* Every test runs on one torch thread (``one_torch_thread``, autouse, once per session).
* The small models and images that several test modules share are built here, once per
  session, and handed out as fixtures: ``small_vit``, ``zoo_shaped``, ``small_images``,
  ``paper_model``, ``paper_images`` and ``paper_architecture`` (each of the paper's three
  architectures in turn). A shared model is never changed in place: a test that edits
  weights or modes works on a ``copy.deepcopy`` of it.
* Tests marked ``slow`` (``@pytest.mark.slow``) are deselected unless ``VITLENS_SLOW=1`` is
  set or ``-m`` is given; CI (``.ci/run``) sets ``VITLENS_SLOW=1`` and runs them all.
"""

from __future__ import annotations

import functools
import os

import matplotlib
import pytest
import timm
import torch
from torch import nn

from vitlens.models import build_zoo_model

matplotlib.use("Agg")

PAPER_ARCHITECTURES = ("vit_base_patch16_224", "resnetv2_50x1_bit", "mixer_b16_224")
"""The paper's three architectures, built with random weights (``pretrained=False``)."""

# ------------------------------------------------------------------ one torch thread


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Run every test on one torch thread, restoring the count after the session.

    On the shared 2-core machine, two torch threads competing with other processes made
    these small forward passes 5-50x slower (measured); one thread is never much slower.
    Each torchrun rank of the distributed CKA test runs so too (``OMP_NUM_THREADS=1``).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ shared models and images


@pytest.fixture(scope="session")
def small_vit() -> nn.Module:
    """A randomly initialised 3-block timm ViT on 32x32 images (patch 8: a 4x4 grid)."""
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        depth=3,
        embed_dim=48,
        num_heads=3,
    )


@pytest.fixture(scope="session")
def zoo_shaped():
    """``zoo_shaped(name)``: a zoo architecture with fresh random weights (seeded), built
    once per name and session."""

    @functools.cache
    def build(name: str) -> nn.Module:
        torch.manual_seed(0)
        return build_zoo_model(name)

    return build


@pytest.fixture(scope="session")
def probe_result():
    """``probe_result(accuracy, images=1000)``: a :class:`ProbeResult` with the given
    ``(seeds, *positions)`` accuracies (multiples of ``1 / images``), seed ``s`` at a
    position getting the first ``accuracy * images`` scored images right."""
    from vitlens.analyses.probes import ProbeResult

    def make(accuracy, images: int = 1000) -> ProbeResult:
        accuracy = torch.as_tensor(accuracy, dtype=torch.float64)
        right = torch.round(accuracy * images).long()
        scores = (torch.arange(images) < right[..., None]).float()
        return ProbeResult(
            accuracy=scores.double().mean(-1).float(),
            l2=torch.ones(accuracy.shape),
            shots=10,
            scores=scores,
            labels=torch.arange(images) % 10,
        )

    return make


def _random_images(side: int, seed: int, default: int):
    """``images(n=default)``: ``(n, 3, side, side)`` standard-normal images, the same for
    every call with the same ``n`` (seeded, cached)."""

    @functools.cache
    def images(n: int = default) -> torch.Tensor:
        return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))

    return images


@pytest.fixture(scope="session")
def small_images():
    """``small_images(n=16)``: ``(n, 3, 32, 32)`` random images for zoo-shaped models."""
    return _random_images(32, seed=2, default=16)


@pytest.fixture(scope="session")
def paper_model():
    """``paper_model(name)``: a timm architecture with random weights (``pretrained=False``),
    in eval mode, built once per name and session."""

    @functools.cache
    def build(name: str) -> nn.Module:
        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False).eval()

    return build


@pytest.fixture(scope="session")
def paper_images():
    """``paper_images(n=4)``: ``(n, 3, 224, 224)`` random images."""
    return _random_images(224, seed=1, default=4)


@pytest.fixture(params=PAPER_ARCHITECTURES)
def paper_architecture(request) -> str:
    """Each of the paper's three architectures' timm names in turn (one test per name)."""
    return request.param


@pytest.fixture(scope="session")
def paper_architectures() -> tuple[str, ...]:
    """The paper's three architectures' timm names."""
    return PAPER_ARCHITECTURES


# ------------------------------------------------------------------ the slow mark

SLOW_DESELECTED = pytest.StashKey[int]()


def _run_slow(config: pytest.Config) -> bool:
    """Slow tests run under ``VITLENS_SLOW=1`` (CI) or when ``-m`` chooses by mark."""
    return os.environ.get("VITLENS_SLOW") == "1" or bool(config.option.markexpr)


def pytest_report_header(config: pytest.Config) -> str:
    if _run_slow(config):
        return "slow tests: included (VITLENS_SLOW=1 or -m)"
    return "slow tests: deselected (run them with VITLENS_SLOW=1 python -m pytest, or -m slow)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _run_slow(config):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]
    config.stash[SLOW_DESELECTED] = len(slow)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    count = config.stash.get(SLOW_DESELECTED, 0)
    if count:
        terminalreporter.write_line(
            f"{count} slow test(s) deselected; run them with VITLENS_SLOW=1 python -m pytest "
            "(CI does), or choose by mark with -m slow"
        )
