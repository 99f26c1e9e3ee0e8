"""The offline *junctions* dataset: a class is two kinds of stroke junction and how they sit.

Each image shows two *parts*, small figures made of thin strokes (an ``L`` corner, a ``T``
junction, an ``X`` crossing, a ``Y`` fork, a ``=`` pair of parallel bars), side by side
(``horizontal``) or one above the other (``vertical``), over a *dead-leaves* background of
overlapping discs and a few loose strokes. The ten classes
(:data:`vitlens.data.junctions.JUNCTION_CLASSES`) pair the parts so that every part occurs
in four classes and every pair in two, once per arrangement: naming the class takes both
parts' shapes, which span neighbouring 4x4 patches (corners, crossings, forks), and their
arrangement. Colours say nothing: every
stroke has the same dark outline and light core and every disc's colour is drawn from the
same range, whatever the class, so no patch's colour separates a class from the
background.

What was taken from formula-driven datasets: the dead-leaves background (occlusion edges
at every scale, as in natural images; Lee, Mumford & Huang 2001, and the dead-leaves
pre-training data of Baradad et al. 2021), and, from FractalDB and the radial-contour
datasets (Kataoka et al. 2020, 2022), classes defined by a formula for shape rather than
by appearance, rendered with random nuisance parameters (here: each part's rotation by
quarter turns with jitter, mirror, size, stroke width, their order and spacing), so the
supply is unlimited.

Sample ``i`` of a split is a pure function of ``(seed, split, i)`` (random numbers from
``numpy.random.default_rng([seed, split_code + 16, i])``); label ``i % 10``. Rendering is
vectorised over a batch (distance to segments and discs in torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vitlens.data.config import JsonConfig
from vitlens.data.shapes import SPLITS, ShapesBatch, checked_indices, render_by_index

__all__ = [
    "JUNCTION_CLASSES",
    "JUNCTION_PARTS",
    "JunctionsConfig",
    "render_junctions",
]

JUNCTION_PARTS: dict[str, tuple[tuple[tuple[float, float], tuple[float, float]], ...]] = {
    "L": (((-0.5, 0.5), (0.5, 0.5)), ((-0.5, 0.5), (-0.5, -0.5))),
    "T": (((-0.6, -0.4), (0.6, -0.4)), ((0.0, -0.4), (0.0, 0.6))),
    "X": (((-0.5, -0.5), (0.5, 0.5)), ((-0.5, 0.5), (0.5, -0.5))),
    "Y": (((0.0, 0.0), (0.0, 0.6)), ((0.0, 0.0), (-0.52, -0.3)), ((0.0, 0.0), (0.52, -0.3))),
    "=": (((-0.55, -0.25), (0.55, -0.25)), ((-0.55, 0.25), (0.55, 0.25))),
}
"""Each part's strokes as segments ``((x0, y0), (x1, y1))`` in part units (about -0.6..0.6)."""

_PAIRS = (("L", "T"), ("X", "Y"), ("=", "L"), ("T", "X"), ("Y", "="))

JUNCTION_CLASSES: tuple[str, ...] = tuple(
    f"{a}{b} {arrangement}" for a, b in _PAIRS for arrangement in ("horizontal", "vertical")
)
"""Class ``k``: parts ``_PAIRS[k // 2]``, side by side (even ``k``) or stacked (odd ``k``)."""

_MAX_SEGMENTS = 3  # per part
_MAX_LOOSE = 2
_MAX_LEAVES = 48
_SPLIT_OFFSET = 16  # keeps junctions' random streams apart from shapes' for the same seed


@dataclass(frozen=True)
class JunctionsConfig(JsonConfig):
    """How junctions images look; every field would be recorded in a zoo manifest.

    Attributes:
        image_size: side of the square image in pixels.
        part_size: range of a part's size (its unit) as a fraction of ``image_size``.
        spacing: range of the distance between the two parts' centres, fraction of the image.
        offset: largest shift of the second part across the arrangement axis, same unit.
        jitter: largest rotation of a part away from its quarter turn, in degrees.
        stroke_width: range of a stroke's core width in pixels (the outline adds 1 px a side).
        leaves: inclusive range of the number of background discs.
        leaf_radius: range of a disc's radius as a fraction of ``image_size`` (drawn
            log-uniformly: many small discs, a few large ones).
        loose_strokes: inclusive range of the number of loose single strokes.
        loose_length: range of a loose stroke's length, fraction of the image.
        pixel_noise: standard deviation of per-pixel Gaussian noise.
    """

    image_size: int = 32
    part_size: tuple[float, float] = (0.22, 0.3)
    spacing: tuple[float, float] = (0.36, 0.48)
    offset: float = 0.08
    jitter: float = 15.0
    stroke_width: tuple[float, float] = (1.0, 1.8)
    leaves: tuple[int, int] = (24, 48)
    leaf_radius: tuple[float, float] = (0.04, 0.3)
    loose_strokes: tuple[int, int] = (1, 2)
    loose_length: tuple[float, float] = (0.12, 0.25)
    pixel_noise: float = 0.03


def _part_segments(
    rng: np.random.Generator, part: str, centre: np.ndarray, size: float, jitter: float
) -> np.ndarray:
    """``(_MAX_SEGMENTS, 2, 2)`` pixel endpoints of one part (unused rows are NaN)."""
    turn = rng.integers(4) * math.pi / 2 + math.radians(rng.uniform(-jitter, jitter))
    mirror = rng.choice([-1.0, 1.0])
    rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    segments = np.full((_MAX_SEGMENTS, 2, 2), np.nan)
    for k, (a, b) in enumerate(JUNCTION_PARTS[part]):
        ends = np.array([a, b]) * np.array([mirror, 1.0])
        segments[k] = centre + size * ends @ rotation.T
    return segments


def _sample(rng: np.random.Generator, label: int, cfg: JunctionsConfig) -> dict:
    """One sample's random numbers (lengths in pixels)."""
    s = cfg.image_size
    first, second = _PAIRS[label // 2]
    if rng.random() < 0.5:
        first, second = second, first
    along = np.array([1.0, 0.0]) if label % 2 == 0 else np.array([0.0, 1.0])
    across = along[::-1]
    gap = rng.uniform(*cfg.spacing) * s
    shift = rng.uniform(-cfg.offset, cfg.offset) * s
    size = rng.uniform(*cfg.part_size, 2) * s
    reach = 0.5 * gap + 0.6 * size.max() + 1.5  # keep both parts inside the image
    middle = (
        rng.uniform(reach, s - reach, 2) * along
        + rng.uniform(
            0.6 * size.max() + abs(shift) + 1.5, s - 0.6 * size.max() - abs(shift) - 1.5, 2
        )
        * across
    )
    centres = (middle - 0.5 * gap * along, middle + 0.5 * gap * along + shift * across)
    parts = np.concatenate(
        [
            _part_segments(rng, p, c, z, cfg.jitter)
            for p, c, z in zip((first, second), centres, size, strict=True)
        ]
    )
    loose = np.full((_MAX_LOOSE, 2, 2), np.nan)
    for k in range(rng.integers(cfg.loose_strokes[0], cfg.loose_strokes[1] + 1)):
        mid, angle = rng.uniform(0, s, 2), rng.uniform(0, math.pi)
        half = (
            0.5 * rng.uniform(*cfg.loose_length) * s * np.array([math.cos(angle), math.sin(angle)])
        )
        loose[k] = (mid - half, mid + half)
    n_leaves = rng.integers(cfg.leaves[0], cfg.leaves[1] + 1)
    radius = np.exp(rng.uniform(*np.log(cfg.leaf_radius), _MAX_LEAVES)) * s
    leaves = np.concatenate(
        [rng.uniform(-0.1 * s, 1.1 * s, (_MAX_LEAVES, 2)), radius[:, None]], axis=1
    )
    leaves[n_leaves:, 2] = 0.0  # unused discs cover nothing
    return {
        "label": label,
        "segments": np.concatenate([parts, loose]),
        "width": rng.uniform(*cfg.stroke_width, 2 * _MAX_SEGMENTS + _MAX_LOOSE),
        "core": rng.uniform(0.7, 1.0, (2 * _MAX_SEGMENTS + _MAX_LOOSE, 3)),
        "leaves": leaves,
        "leaf_color": rng.uniform(0.0, 0.75, (_MAX_LEAVES, 3)),
        "base": rng.uniform(0.0, 0.75, 3),
        "centre": np.mean(centres, axis=0),
        "pixels": rng.standard_normal((3, s, s)),
    }


def _stack(params: list[dict], key: str) -> Tensor:
    return torch.as_tensor(np.stack([p[key] for p in params]), dtype=torch.float32)


def _render(params: list[dict], cfg: JunctionsConfig) -> ShapesBatch:
    """Rasterise sample parameters: discs (later ones on top), then outlines, then cores."""
    n, s = len(params), cfg.image_size
    coords = torch.arange(s, dtype=torch.float32) + 0.5
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    img = _stack(params, "base")[:, :, None, None].expand(n, 3, s, s).clone()
    leaves, leaf_color = _stack(params, "leaves"), _stack(params, "leaf_color")
    dist = torch.hypot(  # (n, K, S, S) pixels to each disc's centre
        xs - leaves[:, :, 0, None, None], ys - leaves[:, :, 1, None, None]
    )
    covered = dist < leaves[:, :, 2, None, None]
    order = torch.arange(1, _MAX_LEAVES + 1, dtype=torch.int64)[None, :, None, None]
    top = (covered * order).amax(1)  # (n, S, S): 1 + the last disc covering the pixel, 0: none
    palette = torch.cat([_stack(params, "base")[:, None], leaf_color], 1)  # (n, 1 + K, 3)
    img = torch.gather(palette, 1, top.flatten(1)[:, :, None].expand(-1, -1, 3))
    img = img.transpose(1, 2).reshape(n, 3, s, s)

    seg = _stack(params, "segments")  # (n, K, 2, 2), NaN rows unused
    used = ~torch.isnan(seg[:, :, 0, 0])
    seg = torch.nan_to_num(seg)
    ax, ay = seg[:, :, 0, 0, None, None], seg[:, :, 0, 1, None, None]
    bx, by = seg[:, :, 1, 0, None, None], seg[:, :, 1, 1, None, None]
    px, py, dx, dy = xs - ax, ys - ay, bx - ax, by - ay
    t = ((px * dx + py * dy) / (dx * dx + dy * dy).clamp_min(1e-6)).clamp(0, 1)
    dist = torch.hypot(px - t * dx, py - t * dy)  # (n, K, S, S) pixels to each segment
    half = _stack(params, "width")[:, :, None, None] / 2
    on = used[:, :, None, None].float()
    outline = ((half + 1.5 - dist).clamp(0, 1) * on).amax(1)[:, None]  # (n, 1, S, S)
    img = img * (1 - outline) + 0.05 * outline
    core_cover = (half + 0.5 - dist).clamp(0, 1) * on  # (n, K, S, S)
    nearest = dist.masked_fill(~used[:, :, None, None], float("inf")).argmin(1)  # (n, S, S)
    core_color = (
        torch.gather(_stack(params, "core"), 1, nearest.flatten(1)[:, :, None].expand(-1, -1, 3))
        .transpose(1, 2)
        .reshape(n, 3, s, s)
    )
    core = core_cover.amax(1)[:, None]
    img = img * (1 - core) + core_color * core
    img = img + cfg.pixel_noise * _stack(params, "pixels")

    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    parts = seg[:, : 2 * _MAX_SEGMENTS].reshape(n, -1, 2)
    valid = used[:, : 2 * _MAX_SEGMENTS].repeat_interleave(2, 1)
    low = parts.masked_fill(~valid[..., None], float("inf")).amin(1).floor()
    high = parts.masked_fill(~valid[..., None], -float("inf")).amax(1).ceil()
    boxes = torch.cat([low, high], 1).clamp(0, s).to(torch.int64)
    labels = torch.tensor([p["label"] for p in params], dtype=torch.int64)
    return ShapesBatch(images=images, labels=labels, centers=_stack(params, "centre"), boxes=boxes)


def render_junctions(
    indices: Tensor | np.ndarray | range | list[int],
    *,
    split: str = "train",
    seed: int = 0,
    config: JunctionsConfig | None = None,
    chunk: int = 1024,
) -> ShapesBatch:
    """Render junctions samples by index; sample ``i`` depends only on ``(seed, split, i)``.

    Args:
        indices: sample indices (non-negative integers; the supply is unlimited).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: dataset seed.
        config: appearance; :class:`JunctionsConfig` defaults if ``None``.
        chunk: samples rasterised at once (bounds memory, about 0.4 MB per sample).

    Returns:
        A :class:`vitlens.data.shapes.ShapesBatch`: uint8 ``(n, 3, S, S)`` images,
        labels ``i % 10`` into :data:`vitlens.data.junctions.JUNCTION_CLASSES`, the
        midpoint of the two parts as ``centers`` and the parts' bounding box as ``boxes``.
    """
    idx = checked_indices(indices, split)
    if not idx:
        raise ValueError("indices is empty; name at least one sample")
    cfg = config or JunctionsConfig()
    return render_by_index(
        idx,
        (seed, SPLITS[split] + _SPLIT_OFFSET),
        lambda rng, i: _sample(rng, i % len(JUNCTION_CLASSES), cfg),
        lambda params: _render(params, cfg),
        chunk=chunk,
        image_size=cfg.image_size,
    )
