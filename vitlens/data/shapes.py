"""The offline synthetic *shapes* dataset, rendered on the fly.

The shapes dataset is what the tiny zoo is trained and measured on. Each image shows one
object whose class is its **shape** (ten shapes, :data:`vitlens.data.shapes.SHAPE_CLASSES`),
drawn at a random position, size, rotation, mirror and colour over a textured background
(smooth colour noise, a sinusoidal grating, pixel noise) cluttered with short strokes.
Sample ``i`` of a split is a pure function of ``(seed, split, i)``: its random numbers
come from ``numpy.random.default_rng([seed, split_code, i])``, so the supply is
unlimited, every sample is reproducible on its own, and any subset can be regenerated
exactly. Rendering is vectorised over a batch with signed distance functions in torch,
so tens of thousands of images take seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from vitlens.data.config import JsonConfig

SHAPE_CLASSES: tuple[str, ...] = (
    "disk",
    "ring",
    "triangle",
    "square",
    "frame",
    "plus",
    "star",
    "crescent",
    "ell",
    "pair",
)
"""Class names of the shapes dataset, in label order."""

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
"""Split name to the code mixed into every sample's seed; splits never share a sample."""

SHAPES_MEAN = (0.5, 0.5, 0.5)
SHAPES_STD = (0.5, 0.5, 0.5)
"""Per-channel normalisation of shapes images (to about [-1, 1]), as the zoo expects."""

_MAX_STROKES = 8


@dataclass(frozen=True)
class ShapesConfig(JsonConfig):
    """How shapes images look; every field is recorded in the zoo manifest.

    The defaults (the zoo's data) draw light objects over darker textured backgrounds:
    with object and background colours from the same full range, a ViT with 4-pixel
    patches stayed at chance for hundreds of steps (no patch could tell object from
    background without comparing colours across the image).

    Attributes:
        image_size: side of the square image in pixels.
        radius: range of the object's radius as a fraction of ``image_size``.
        strokes: inclusive range of the number of clutter strokes per image.
        stroke_length: range of a stroke's length as a fraction of ``image_size``.
        noise_amplitude: amplitude of the smooth background colour noise (0-1 scale).
        grating_amplitude: maximum amplitude of the background grating.
        pixel_noise: standard deviation of per-pixel Gaussian noise.
        min_contrast: least Euclidean RGB distance between object and background colour.
        object_value: range of each RGB channel of the object colour.
        background_value: range of each RGB channel of the background base colour.
        stroke_value: range of each RGB channel of a stroke's colour.
    """

    image_size: int = 32
    radius: tuple[float, float] = (0.24, 0.40)
    strokes: tuple[int, int] = (2, 4)
    stroke_length: tuple[float, float] = (0.15, 0.35)
    noise_amplitude: float = 0.15
    grating_amplitude: float = 0.10
    pixel_noise: float = 0.04
    min_contrast: float = 0.5
    object_value: tuple[float, float] = (0.45, 1.0)
    background_value: tuple[float, float] = (0.0, 0.5)
    stroke_value: tuple[float, float] = (0.0, 0.7)


@dataclass
class ShapesBatch:
    """Rendered shapes samples.

    Attributes:
        images: ``(n, 3, S, S)`` uint8 RGB.
        labels: ``(n,)`` int64 class indices into :data:`vitlens.data.shapes.SHAPE_CLASSES`.
        centers: ``(n, 2)`` float32 object centre ``(x, y)`` in pixels, pixel ``j`` spanning
            ``[j, j + 1)``.
        boxes: ``(n, 4)`` int64 object bounding box ``(x0, y0, x1, y1)`` in pixels, end
            exclusive, of the pixels more than half covered by the object.
    """

    images: Tensor
    labels: Tensor
    centers: Tensor
    boxes: Tensor


def _sample_params(rng: np.random.Generator, label: int, cfg: ShapesConfig) -> dict:
    """Draw one sample's random numbers (sizes in pixels, angles in radians)."""
    s = cfg.image_size
    r = rng.uniform(*cfg.radius) * s
    center = rng.uniform(r, s - r, size=2)
    obj = rng.uniform(*cfg.object_value, 3)
    bg = rng.uniform(*cfg.background_value, 3)
    for _ in range(64):
        if np.linalg.norm(obj - bg) >= cfg.min_contrast:
            break
        bg = rng.uniform(*cfg.background_value, 3)
    n_strokes = rng.integers(cfg.strokes[0], cfg.strokes[1] + 1)
    stroke_angle = rng.uniform(0, math.pi, _MAX_STROKES)
    stroke_len = rng.uniform(*cfg.stroke_length, _MAX_STROKES) * s
    stroke_mid = rng.uniform(0, s, (_MAX_STROKES, 2))
    half = 0.5 * stroke_len[:, None] * np.stack([np.cos(stroke_angle), np.sin(stroke_angle)], 1)
    return {
        "label": label,
        "radius": r,
        "center": center,
        "angle": rng.uniform(0, 2 * math.pi),
        "mirror": rng.choice([-1.0, 1.0]),
        "obj_color": obj,
        "bg_color": bg,
        "noise": rng.standard_normal((3, 4, 4)),
        "grating": np.concatenate(
            [rng.uniform(1.5, 6.0, 1), rng.uniform(0, 2 * math.pi, 2), rng.uniform(-1, 1, 3)]
        ),
        "strokes_a": stroke_mid - half,
        "strokes_b": stroke_mid + half,
        "strokes_width": rng.uniform(0.8, 2.0, _MAX_STROKES),
        "strokes_on": (np.arange(_MAX_STROKES) < n_strokes).astype(np.float64),
        "strokes_color": rng.uniform(*cfg.stroke_value, (_MAX_STROKES, 3)),
        "pixels": rng.standard_normal((3, cfg.image_size, cfg.image_size), dtype=np.float32),
    }


def _polygon_sdf(u: Tensor, v: Tensor, sides: int, radius: float) -> Tensor:
    """Approximate signed distance to a regular polygon with circumradius ``radius``."""
    angles = torch.arange(sides, dtype=u.dtype) * (2 * math.pi / sides) + math.pi / 2
    proj = u[..., None] * torch.cos(angles) + v[..., None] * torch.sin(angles)
    return proj.amax(-1) - radius * math.cos(math.pi / sides)


def _box_sdf(u: Tensor, v: Tensor, cu: float, cv: float, hu: float, hv: float) -> Tensor:
    """Approximate signed distance to an axis-aligned box centred at ``(cu, cv)``."""
    return torch.maximum((u - cu).abs() - hu, (v - cv).abs() - hv)


def _shape_sdf(label: int, u: Tensor, v: Tensor) -> Tensor:
    """Signed distance (in object radii, negative inside) to shape ``label`` at ``(u, v)``."""
    r = torch.hypot(u, v)
    name = SHAPE_CLASSES[label]
    if name == "disk":
        return r - 1.0
    if name == "ring":
        return (r - 0.72).abs() - 0.28
    if name == "triangle":
        return _polygon_sdf(u, v, 3, 1.15)
    if name == "square":
        return _box_sdf(u, v, 0, 0, 0.8, 0.8)
    if name == "frame":
        return (torch.maximum(u.abs(), v.abs()) - 0.66).abs() - 0.24
    if name == "plus":
        return torch.minimum(_box_sdf(u, v, 0, 0, 1.0, 0.3), _box_sdf(u, v, 0, 0, 0.3, 1.0))
    if name == "star":
        theta = torch.atan2(v, u)
        phase = torch.remainder(theta, 2 * math.pi / 5) / (2 * math.pi / 5)
        tri = (2 * phase - 1).abs()
        return (r - (0.45 + 0.6 * tri)) * 0.6
    if name == "crescent":
        return torch.maximum(r - 1.0, 0.78 - torch.hypot(u - 0.5, v))
    if name == "ell":
        return torch.minimum(
            _box_sdf(u, v, 0.0, -0.62, 0.9, 0.3), _box_sdf(u, v, -0.6, 0.0, 0.3, 0.92)
        )
    if name == "pair":
        return torch.minimum(torch.hypot(u - 0.55, v), torch.hypot(u + 0.55, v)) - 0.45
    raise ValueError(f"unknown shape label {label}")


def _stack(params: list[dict], key: str) -> Tensor:
    return torch.as_tensor(np.stack([p[key] for p in params]), dtype=torch.float32)


def _render(params: list[dict], cfg: ShapesConfig) -> ShapesBatch:
    """Rasterise a list of sample parameters into a :class:`ShapesBatch`."""
    n, s = len(params), cfg.image_size
    coords = torch.arange(s, dtype=torch.float32) + 0.5
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")  # (S, S) pixel centres

    # background: base colour + smooth colour noise + grating + pixel noise
    img = _stack(params, "bg_color")[:, :, None, None].expand(n, 3, s, s).clone()
    noise = F.interpolate(_stack(params, "noise"), size=(s, s), mode="bicubic", align_corners=False)
    img += cfg.noise_amplitude * noise
    g = _stack(params, "grating")  # freq, orientation, phase, 3 channel weights
    proj = xs * torch.cos(g[:, 1, None, None]) + ys * torch.sin(g[:, 1, None, None])
    wave = torch.sin(2 * math.pi * g[:, 0, None, None] * proj / s + g[:, 2, None, None])
    img += cfg.grating_amplitude * g[:, 3:, None, None] * wave[:, None]

    # clutter strokes: distance from each pixel to each segment
    a, b = _stack(params, "strokes_a"), _stack(params, "strokes_b")  # (n, K, 2)
    ax, ay = a[..., 0, None, None], a[..., 1, None, None]  # (n, K, 1, 1)
    abx, aby = b[..., 0, None, None] - ax, b[..., 1, None, None] - ay
    px, py = xs - ax, ys - ay  # (n, K, S, S)
    t = ((px * abx + py * aby) / (abx * abx + aby * aby).clamp_min(1e-6)).clamp(0, 1)
    dist = torch.hypot(px - t * abx, py - t * aby)
    width = _stack(params, "strokes_width")[:, :, None, None]
    alpha = (width / 2 + 0.5 - dist).clamp(0, 1) * _stack(params, "strokes_on")[:, :, None, None]
    colors = _stack(params, "strokes_color")
    for k in range(_MAX_STROKES):
        ak = alpha[:, k, None]
        img = img * (1 - ak) + colors[:, k, :, None, None] * ak

    # the object: rotate/mirror/scale pixel offsets into object coordinates
    centers = _stack(params, "center")
    radius = _stack(params, "radius")[:, None, None]
    angle = _stack(params, "angle")[:, None, None]
    mirror = _stack(params, "mirror")[:, None, None]
    dx, dy = xs - centers[:, 0, None, None], ys - centers[:, 1, None, None]
    u = (torch.cos(angle) * dx + torch.sin(angle) * dy) / radius
    v = mirror * (-torch.sin(angle) * dx + torch.cos(angle) * dy) / radius
    labels = torch.tensor([p["label"] for p in params], dtype=torch.int64)
    sdf = torch.empty(n, s, s)
    for k in range(len(SHAPE_CLASSES)):
        idx = labels == k
        if idx.any():
            sdf[idx] = _shape_sdf(k, u[idx], v[idx])
    cover = (0.5 - sdf * radius).clamp(0, 1)  # anti-aliased coverage, distance in pixels
    obj = _stack(params, "obj_color")[:, :, None, None]
    img = img * (1 - cover[:, None]) + obj * cover[:, None]
    img += cfg.pixel_noise * _stack(params, "pixels")

    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    inside = cover > 0.5
    cols, rows = inside.any(1), inside.any(2)  # (n, S) each
    ar = torch.arange(s)
    boxes = torch.stack(
        [
            torch.where(cols, ar, s).amin(1),
            torch.where(rows, ar, s).amin(1),
            torch.where(cols, ar, -1).amax(1) + 1,
            torch.where(rows, ar, -1).amax(1) + 1,
        ],
        1,
    )
    return ShapesBatch(images=images, labels=labels, centers=centers, boxes=boxes)


def render_shapes(
    indices: Tensor | np.ndarray | range | list[int],
    *,
    split: str = "train",
    seed: int = 0,
    config: ShapesConfig | None = None,
    chunk: int = 2048,
    progress: bool = False,
) -> ShapesBatch:
    """Render shapes samples by index; sample ``i`` depends only on ``(seed, split, i)``.

    The label of sample ``i`` is ``i % 10``, so any run of consecutive indices is balanced.

    Args:
        indices: sample indices (any non-negative integers; the supply is unlimited).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: dataset seed.
        config: appearance; :class:`ShapesConfig` defaults if ``None``.
        chunk: samples rasterised at once (bounds memory: ~60 KB per sample).
        progress: show a tqdm bar.
    """
    idx = checked_indices(indices, split)
    cfg = config or ShapesConfig()
    return render_by_index(
        idx,
        (seed, SPLITS[split]),
        lambda rng, i: _sample_params(rng, i % len(SHAPE_CLASSES), cfg),
        lambda params: _render(params, cfg),
        chunk=chunk,
        image_size=cfg.image_size,
        desc=f"render {split}",
        progress=progress,
    )


def checked_indices(indices: Tensor | np.ndarray | range | list[int], split: str) -> list[int]:
    """Sample ``indices`` of a synthetic dataset's ``split`` as a list of ints.

    Raises:
        ValueError: an unknown split (valid: :data:`SPLITS`) or a negative index.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {sorted(SPLITS)}")
    idx = [int(i) for i in indices]
    if any(i < 0 for i in idx):
        raise ValueError("sample indices must be non-negative")
    return idx


def render_by_index(
    idx: list[int],
    stream: tuple[int, int],
    draw: Callable[[np.random.Generator, int], dict],
    render: Callable[[list[dict]], ShapesBatch],
    *,
    chunk: int,
    image_size: int,
    desc: str = "",
    progress: bool = False,
) -> ShapesBatch:
    """Samples ``idx`` of a synthetic dataset, rasterised ``chunk`` at a time.

    Sample ``i`` is a pure function of ``(*stream, i)``: its parameters are
    ``draw(numpy.random.default_rng([*stream, i]), i)``.

    Args:
        idx: non-negative sample indices (:func:`checked_indices`).
        stream: ``(seed, split code)`` mixed into every sample's seed.
        draw: one sample's random parameters from its generator and index.
        render: a list of samples' parameters -> their :class:`ShapesBatch`.
        chunk: samples rasterised at once (bounds memory).
        image_size: ``S`` of the empty ``(0, 3, S, S)`` batch that no indices give.
        desc, progress: the tqdm bar's label, and whether to show it.
    """
    from tqdm.auto import tqdm

    parts = []
    starts = range(0, len(idx), chunk)
    for start in tqdm(starts, desc=desc, disable=not progress):
        params = [draw(np.random.default_rng([*stream, i]), i) for i in idx[start : start + chunk]]
        parts.append(render(params))
    if not parts:
        return ShapesBatch(
            torch.empty(0, 3, image_size, image_size, dtype=torch.uint8),
            torch.empty(0, dtype=torch.int64),
            torch.empty(0, 2),
            torch.empty(0, 4, dtype=torch.int64),
        )
    return ShapesBatch(
        *(torch.cat([getattr(p, f) for p in parts]) for f in ShapesBatch.__annotations__)
    )


def normalize_shapes(images: Tensor) -> Tensor:
    """uint8 ``(n, 3, S, S)`` images to the float input the zoo models take (about [-1, 1])."""
    mean = torch.tensor(SHAPES_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SHAPES_STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


class ShapesDataset(Dataset):
    """``n`` consecutive shapes samples, rendered once into memory.

    ``dataset[i]`` is ``(image, label)`` with ``image`` a normalised float ``(3, S, S)``
    tensor, or ``(image, label, center)`` with ``return_position=True``. The raw batch
    (uint8 images, centres, boxes) is ``dataset.batch``.

    Args:
        n: number of samples (indices ``start .. start + n - 1``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: dataset seed.
        config: appearance; defaults if ``None``.
        start: first sample index.
        return_position: also return the object's centre ``(x, y)`` in pixels.
        progress: show a tqdm bar while rendering.
    """

    def __init__(
        self,
        n: int,
        *,
        split: str = "train",
        seed: int = 0,
        config: ShapesConfig | None = None,
        start: int = 0,
        return_position: bool = False,
        progress: bool = False,
    ) -> None:
        self.config = config or ShapesConfig()
        self.split, self.seed = split, seed
        self.return_position = return_position
        self.classes = SHAPE_CLASSES
        self.batch = render_shapes(
            range(start, start + n), split=split, seed=seed, config=self.config, progress=progress
        )

    def __len__(self) -> int:
        return len(self.batch.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        image = normalize_shapes(self.batch.images[i : i + 1])[0]
        label = self.batch.labels[i]
        if self.return_position:
            return image, label, self.batch.centers[i]
        return image, label
