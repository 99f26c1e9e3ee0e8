"""The shapes dataset (determinism, balance, positions) and the real-image loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens.data import (
    SHAPE_CLASSES,
    ShapesBatch,
    ShapesConfig,
    ShapesDataset,
    image_folder,
    model_transform,
    normalize_shapes,
    render_shapes,
)
from vitlens.data.shapes import checked_indices, render_by_index
from vitlens.models import build_zoo_model


def test_deterministic_and_per_sample():
    a = render_shapes(range(40), seed=3)
    b = render_shapes(range(40), seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.centers, b.centers)
    # sample i does not depend on which other samples are rendered with it
    c = render_shapes([37, 5], seed=3, chunk=1)
    assert torch.equal(c.images, a.images[[37, 5]])
    assert torch.equal(c.boxes, a.boxes[[37, 5]])


def test_seeds_and_splits_differ():
    base = render_shapes(range(8), seed=0).images
    assert not torch.equal(base, render_shapes(range(8), seed=1).images)
    assert not torch.equal(base, render_shapes(range(8), split="test").images)


def test_shapes_and_balance():
    batch = render_shapes(range(100))
    assert batch.images.shape == (100, 3, 32, 32) and batch.images.dtype == torch.uint8
    counts = torch.bincount(batch.labels, minlength=len(SHAPE_CLASSES))
    assert len(SHAPE_CLASSES) >= 10 and torch.all(counts == 10)


def test_positions_match_the_object():
    batch = render_shapes(range(200), config=ShapesConfig(image_size=48))
    x0, y0, x1, y1 = batch.boxes.T
    cx, cy = batch.centers.T
    assert torch.all((x0 < x1) & (y0 < y1)) and torch.all((x0 >= 0) & (x1 <= 48))
    assert torch.all((x0 <= cx) & (cx <= x1) & (y0 <= cy) & (cy <= y1))
    assert batch.images.shape[-1] == 48


def test_colour_alone_does_not_decide_the_class():
    batch = render_shapes(range(500))
    mean_rgb = batch.images.float().mean((2, 3))
    per_class = torch.stack([mean_rgb[batch.labels == k].mean(0) for k in range(10)])
    assert (per_class.max(0).values - per_class.min(0).values).max() < 40  # of 255


def test_dataset_items_and_config_round_trip():
    cfg = ShapesConfig(strokes=(0, 1))
    ds = ShapesDataset(12, split="val", seed=2, config=cfg, return_position=True)
    image, label, center = ds[4]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert int(label) == 4 and center.shape == (2,)
    assert torch.allclose(image, normalize_shapes(ds.batch.images[4:5])[0])
    assert -1.0 <= image.min() and image.max() <= 1.0
    assert ShapesConfig.from_dict(cfg.to_dict()) == cfg


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        render_shapes(range(2), split="training")
    with pytest.raises(ValueError, match="non-negative"):
        render_shapes([-1])
    assert len(render_shapes([]).labels) == 0


def test_render_by_index_seeds_each_sample_by_stream_and_index():
    """The shared path of both synthetic datasets: sample ``i`` from ``[*stream, i]`` alone."""
    seen = []

    def draw(rng, i):
        seen.append(i)
        return {"value": rng.random(), "index": i}

    def render(params):
        n = len(params)
        return ShapesBatch(
            torch.zeros(n, 3, 4, 4, dtype=torch.uint8),
            torch.tensor([p["index"] for p in params]),
            torch.tensor([[p["value"], 0.0] for p in params]),
            torch.zeros(n, 4, dtype=torch.int64),
        )

    batch = render_by_index([7, 2, 7], (3, 1), draw, render, chunk=2, image_size=4)
    assert seen == [7, 2, 7] and batch.labels.tolist() == [7, 2, 7]
    expected = [np.random.default_rng([3, 1, i]).random() for i in (7, 2, 7)]
    assert batch.centers[:, 0].tolist() == pytest.approx(expected)
    empty = render_by_index([], (3, 1), draw, render, chunk=2, image_size=4)
    assert empty.images.shape == (0, 3, 4, 4) and empty.labels.dtype == torch.int64
    assert checked_indices(np.array([4, 0]), "val") == [4, 0]
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        checked_indices([0], "dev")


def test_image_folder_with_model_preprocessing(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    model = build_zoo_model("vit-cls")
    ds = image_folder(tmp_path, model)
    x, y = ds[4]
    assert len(ds) == 6 and ds.classes == ["cat", "dog"] and y == 1
    assert x.shape == (3, 32, 32)  # timm data config of the model: 32 px, mean/std 0.5
    assert model_transform(model) is not None
    with pytest.raises(FileNotFoundError):
        image_folder(tmp_path / "missing", model)
    with pytest.raises(ValueError, match="model"):
        image_folder(tmp_path)


# ------------------------------------------------ downloads: verified, atomic (issue #16)


def _imagenette_archive(tmp_path) -> bytes:
    import io
    import tarfile

    from PIL import Image

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for split in ("train", "val"):
            for cls in ("n01440764", "n02102040"):
                for i in range(3):
                    png = io.BytesIO()
                    Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(png, "PNG")
                    info = tarfile.TarInfo(f"imagenette2-320/{split}/{cls}/{i}.png")
                    info.size = len(png.getvalue())
                    tar.addfile(info, io.BytesIO(png.getvalue()))
    return buffer.getvalue()


@pytest.fixture
def fake_imagenette(tmp_path, monkeypatch):
    import hashlib

    from vitlens.data import real

    full = _imagenette_archive(tmp_path)
    served = {"bytes": full}
    monkeypatch.setattr(real, "IMAGENETTE_MD5", hashlib.md5(full).hexdigest())
    monkeypatch.setattr(real, "fetch_url", lambda url, dest: dest.write_bytes(served["bytes"]))
    return real, full, served


def test_a_truncated_download_is_refused_and_never_used(tmp_path, fake_imagenette):
    real, full, served = fake_imagenette
    served["bytes"] = full[: len(full) // 2]
    for _ in range(2):  # the second attempt must not take the partial data for complete
        with pytest.raises(ValueError, match="incomplete or corrupt"):
            real.imagenette(tmp_path, transform=lambda im: im)
        assert sorted(p.name for p in tmp_path.iterdir()) == []
    served["bytes"] = full
    dataset = real.imagenette(tmp_path, transform=lambda im: im)
    assert len(dataset) == 6 and dataset.classes == ["n01440764", "n02102040"]


def test_a_corrupt_archive_with_a_matching_hash_leaves_no_folder(tmp_path, fake_imagenette):
    import hashlib

    real, full, served = fake_imagenette
    served["bytes"] = full[: len(full) // 2]
    real.IMAGENETTE_MD5 = hashlib.md5(served["bytes"]).hexdigest()
    with pytest.raises(ValueError, match="truncated or corrupt"):
        real.imagenette(tmp_path, transform=lambda im: im)
    assert not (tmp_path / "imagenette2-320").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["imagenette2-320.tgz"]  # no scratch left


def test_a_synthetic_dataset_is_rendered_once_per_size_count_and_split():
    from vitlens.data.sources import load_images

    vit = build_zoo_model("vit-cls")
    first = load_images("junctions", vit, num_images=6)
    assert load_images("junctions", build_zoo_model("vit-cls"), num_images=6) is first
    assert load_images("junctions", vit, num_images=7) is not first
    assert load_images("junctions", vit, num_images=6, split="train") is not first
    assert load_images("shapes", vit, num_images=6) is not first
    # the images are the dataset's own: sample i whatever the number asked for
    assert torch.equal(load_images("junctions", vit, num_images=7)[5][0], first[5][0])
