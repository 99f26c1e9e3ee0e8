"""Issue #16: no wrong number without an error, and every failure a clear message.

One test (or more) per defect of the issue, named after it; the CLI walk is in
``test_cli_failures.py``, the every-family comparison with a hook-free reference in
``test_every_family.py``, the property tests in ``test_cka_properties.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vitlens.core.cka import MinibatchCKA, linear_cka, rbf_cka, rounding_tolerance
from vitlens.models import build_zoo_model
from vitlens.streaming import capture, eval_mode, run_with_cache

# ------------------------------------------------------------------ 1. captured copies


def test_capture_stores_a_copy_that_inplace_ops_cannot_overwrite():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model[0](x)
    assert float(expected.min()) < 0
    with torch.no_grad(), capture(model, ["0"]) as store:
        model(x)
    torch.testing.assert_close(store["0"], expected)


def test_a_transform_returning_its_input_is_copied_too():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model[0](x)
    with torch.no_grad(), capture(model, ["0"], transform=lambda v: v.float()) as store:
        model(x)
    torch.testing.assert_close(store["0"], expected)


# ------------------------------------------------------------------ 3. degenerate features


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("kind", ["constant", "near-constant float64", "near-constant float32"])
def test_constant_features_are_refused_by_full_batch_cka(kind, debiased):
    rng = np.random.default_rng(0)
    y = rng.standard_normal((20, 5))
    if kind == "constant":
        x = np.full((20, 5), 3.0)
    elif kind == "near-constant float64":
        x = 1e6 + 1e-11 * rng.standard_normal((20, 5))  # variation at float64 rounding
    else:
        x = (1000 + 1e-4 * rng.standard_normal((20, 5))).astype(np.float32)
    for estimator in (linear_cka, rbf_cka):
        with pytest.raises(ValueError, match="x is constant over the examples up to rounding"):
            estimator(x, y, debiased=debiased)
        with pytest.raises(ValueError, match="y is constant"):
            estimator(y, x, debiased=debiased)


def test_small_but_real_variation_is_not_refused():
    rng = np.random.default_rng(0)
    x = 1e6 + 1e-6 * rng.standard_normal((20, 5))  # 1e-12 relative: far above float64 eps
    value = linear_cka(x, x - 1e6, debiased=True)
    assert value == pytest.approx(1.0, abs=1e-6)
    assert rounding_tolerance(torch.float32) == pytest.approx(4 * 1.1920929e-07)


@pytest.mark.parametrize("scale", [1e-200, 1e-150, 1e150, 1e200])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_scale_free_down_to_1e200(scale, debiased):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((30, 6)), rng.standard_normal((30, 40))
    y[:, :6] += x
    for estimator in (linear_cka, rbf_cka):
        want = estimator(x, y, debiased=debiased)
        assert estimator(x * scale, y, debiased=debiased) == pytest.approx(want, rel=1e-9)
        assert estimator(x, y / scale, debiased=debiased) == pytest.approx(want, rel=1e-9)


def test_minibatch_cka_treats_rounding_noise_as_constant():
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(1000 + 1e-4 * rng.standard_normal((16, 8))).float()
    real = torch.randn(16, 8)
    cka = MinibatchCKA()
    cka.update([noise, real])
    with pytest.warns(RuntimeWarning, match=r"layers \[0\] of model A have constant features"):
        matrix = cka.compute()
    assert torch.isnan(matrix[0]).all() and matrix[1, 1].item() == pytest.approx(1.0)


# ------------------------------------------------------------------ 7. eval_mode


def test_eval_mode_restores_every_submodules_own_flag():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    model.train()
    model[1].eval()  # frozen BatchNorm
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model[0].training and model[2].training
    assert not model[1].training


def test_eval_mode_restores_flags_when_the_body_raises():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    model[1].eval()
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError
    assert model.training and not model[1].training


# ------------------------------------------------------------------ 9. clear errors


def test_minibatch_cka_accepts_numpy_like_linear_cka():
    rng = np.random.default_rng(0)
    a = [rng.standard_normal((10, 4)), rng.standard_normal((10, 3, 2))]
    from_numpy, from_torch = MinibatchCKA(), MinibatchCKA()
    from_numpy.update(a, [a[0]])
    from_torch.update([torch.from_numpy(v) for v in a], [torch.from_numpy(a[0])])
    torch.testing.assert_close(from_numpy.compute(), from_torch.compute())
    assert from_numpy.compute()[0, 0].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"sequence .* per-layer"):
        MinibatchCKA().update(a[0])


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return build_zoo_model("vit-small")


def test_a_string_as_layers_is_refused_with_what_to_write(vit):
    images = torch.randn(4, 3, 32, 32)
    with pytest.raises(
        TypeError, match=r"sequence of names such as \['blocks.0'\], not the string 'blocks.0'"
    ):
        run_with_cache(vit, images, "blocks.0")
    with pytest.raises(TypeError, match="split into characters"), capture(vit, list("blocks.0")):
        pass


# ------------------------------------------------------------------ 4. the probe's inputs


def _probe_data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(8)
    features = torch.randn(24, 5, generator=g) + 3 * nn.functional.one_hot(labels, 5)
    return features, labels


def test_probe_refuses_a_nan_test_row():
    from vitlens.analyses.probes import fewshot_linear_probe

    x, y = _probe_data()
    test = x.clone()
    test[4] = float("nan")
    with pytest.raises(
        ValueError, match=r"test_features hold NaN or Inf in 1 row\(s\) \(first: \[4\]"
    ):
        fewshot_linear_probe(x, y, test, y, shots=2, seeds=1)
    with pytest.raises(ValueError, match="train_features hold NaN"):
        fewshot_linear_probe(test, y, x, y, shots=2, seeds=1)


def test_probe_refuses_float_labels():
    from vitlens.analyses.probes import fewshot_linear_probe

    x, y = _probe_data()
    with pytest.raises(TypeError, match="train_labels must be integer class indices"):
        fewshot_linear_probe(x, y + 0.7, x, y, shots=2, seeds=1)
    with pytest.raises(TypeError, match="test_labels must be integer"):
        fewshot_linear_probe(x, y, x, y.float(), shots=2, seeds=1)


def test_probe_refuses_a_single_class_pool():
    from vitlens.analyses.probes import fewshot_linear_probe

    x, _ = _probe_data()
    zeros = torch.zeros(24, dtype=torch.long)
    with pytest.raises(ValueError, match="single class"):
        fewshot_linear_probe(x, zeros, x, zeros, shots=2, seeds=1)


@pytest.mark.parametrize("grid", [(1.0, float("nan")), (float("inf"),), (-1.0,), ()])
def test_probe_refuses_a_bad_l2_grid(grid):
    from vitlens.analyses.probes import fewshot_linear_probe

    x, y = _probe_data()
    with pytest.raises(ValueError, match="l2_grid must be non-empty, finite and non-negative"):
        fewshot_linear_probe(x, y, x, y, shots=2, seeds=1, l2_grid=grid)


# ------------------------------------------------------------------ 5. downloads


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
    monkeypatch.setattr(real, "_fetch", lambda url, dest: dest.write_bytes(served["bytes"]))
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


# ------------------------------------------------------------------ 6. retraining the zoo


@pytest.fixture
def quick_training(monkeypatch):
    """train_zoo_model on 16 images, measured on 32 held-out ones (seconds, not minutes)."""
    from vitlens.models import Recipe
    from vitlens.training import zoo as training

    full_heldout = training.heldout

    def small_heldout(data=None, *, n=32):
        return full_heldout(data, n=min(n, 32))

    monkeypatch.setattr(training, "heldout", small_heldout)

    def train(directory, seed: int):
        recipe = Recipe(steps=1, batch_size=8, warmup_steps=1, n_train=16, seed=seed)
        return training.train_zoo_model(
            "vit-small", directory=directory, recipe=recipe, progress=False
        )

    return train


class Killed(BaseException):
    """Stands for the process being killed at that point."""


def test_a_kill_while_retraining_leaves_a_loadable_model(tmp_path, monkeypatch, quick_training):
    from vitlens.models import build_zoo_model, load_model, read_manifest
    from vitlens.training import checkpoints as training

    torch.manual_seed(4)  # the model trained before: a checkpoint and its manifest entry
    sha = training.save_checkpoint(build_zoo_model("vit-small"), tmp_path / "vit-small.safetensors")
    first = {"file": "vit-small.safetensors", "sha256": sha}
    training.write_manifest_entry(tmp_path, "vit-small", first)
    old_state = load_model("vit-small", zoo=tmp_path).state_dict()
    write = training.write_manifest_entry

    def killed(*args, **kwargs):
        raise Killed

    # killed after the new weights are on disk, before the manifest names them
    monkeypatch.setattr(training, "write_manifest_entry", killed)
    with pytest.raises(Killed):
        quick_training(tmp_path, seed=1)
    monkeypatch.setattr(training, "write_manifest_entry", write)
    assert read_manifest(tmp_path)["vit-small"]["sha256"] == first["sha256"]
    reloaded = load_model("vit-small", zoo=tmp_path).state_dict()
    assert all(torch.equal(reloaded[k], v) for k, v in old_state.items())


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5])
def test_every_step_of_installing_a_checkpoint_leaves_a_loadable_model(tmp_path, monkeypatch, step):
    from vitlens.models import build_zoo_model, load_model, read_manifest
    from vitlens.training import checkpoints as training

    torch.manual_seed(4)
    old = build_zoo_model("vit-small")
    sha = training.save_checkpoint(old, tmp_path / "vit-small.safetensors")
    first = {"file": "vit-small.safetensors", "sha256": sha}
    training.write_manifest_entry(tmp_path, "vit-small", first)
    torch.manual_seed(5)
    newer = build_zoo_model("vit-small")
    sha = training.save_checkpoint(newer, tmp_path / "vit-small.pending.safetensors")
    entry = {**first, "sha256": sha}
    calls = {"n": 0}
    real_write, real_atomic = training.write_manifest_entry, training.atomic_write_bytes

    def counting(real):
        def run(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == step:
                raise Killed
            return real(*args, **kwargs)

        return run

    monkeypatch.setattr(training, "write_manifest_entry", counting(real_write))
    monkeypatch.setattr(training, "atomic_write_bytes", counting(real_atomic))
    with pytest.raises(Killed):
        training.install_checkpoint(tmp_path, "vit-small", entry, "vit-small.pending.safetensors")
    monkeypatch.setattr(training, "write_manifest_entry", real_write)
    monkeypatch.setattr(training, "atomic_write_bytes", real_atomic)
    # steps: manifest names pending (1: write, 2: its atomic replace), final file (3),
    # manifest names final (4: write, 5: its atomic replace)
    named = read_manifest(tmp_path)["vit-small"]
    assert named["sha256"] == (first["sha256"] if step <= 2 else sha)
    loaded = load_model("vit-small", zoo=tmp_path).state_dict()  # old or new, never unloadable
    expected = (newer if step > 2 else old).state_dict()
    assert all(torch.equal(loaded[k], v.half().float()) for k, v in expected.items())


def test_single_character_module_names_are_still_layers():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad(), capture(model, ["0", "1", "2"]) as store:
        model(torch.randn(3, 2))
    assert list(store) == ["0", "1", "2"]
