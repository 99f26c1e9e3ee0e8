"""Few-shot linear probes: separable data, shuffled labels, and the ridge solution itself."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import vitlens
from vitlens.analyses.probes import (
    _fewshot_indices,
    check_fewshot_pool,
    dataset_labels,
    fewshot_linear_probe,
    fit_and_score_halves,
    pooled_features,
    pooled_readings,
    probe_by_layer,
    probe_readings,
    token_lattice,
)
from vitlens.core.ridge import ridge_weights
from vitlens.data import ShapesDataset
from vitlens.models import load_model
from vitlens.plotting import probe_accuracy_curves
from vitlens.streaming import RunOptions

QUIET = RunOptions(progress=False)


@pytest.mark.parametrize("m, d", [(30, 8), (8, 30)])  # primal and dual solves
def test_ridge_matches_numpy_solve(m, d):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(m, d)), rng.normal(size=(m, 3))
    l2s = [0.1, 1.0, 10.0]
    weights = ridge_weights(torch.from_numpy(x), torch.from_numpy(y), torch.tensor(l2s))
    assert weights.shape == (3, d, 3)
    for w, l2 in zip(weights, l2s, strict=True):
        expected = np.linalg.solve(x.T @ x + l2 * np.eye(d), x.T @ y)
        np.testing.assert_allclose(w.numpy(), expected, rtol=1e-8, atol=1e-10)


def test_ridge_of_rank_deficient_dual_gram_leaves_subnormals_on():
    # Centred examples make X X^T singular: the case where MKL's eigh slowed down on
    # subnormals. The solve must still match, and the flush-to-zero flag must be off after.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 40))
    x -= x.mean(0)
    y = rng.normal(size=(20, 3))
    weights = ridge_weights(torch.from_numpy(x), torch.from_numpy(y), torch.tensor([1.0]))
    expected = np.linalg.solve(x.T @ x + np.eye(40), x.T @ y)
    np.testing.assert_allclose(weights[0].numpy(), expected, rtol=1e-8, atol=1e-10)
    subnormal = torch.tensor([1e-310], dtype=torch.float64)
    assert (subnormal * 1.0).item() != 0.0


def clustered(n: int, classes: int = 5, dim: int = 20, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, dim, generator=generator) * 5
    return centres[labels] + 0.1 * torch.randn(n, dim, generator=generator), labels


def test_separable_data_is_classified_perfectly():
    x, y = clustered(300)
    result = fewshot_linear_probe(x[:200], y[:200], x[200:], y[200:], shots=5, seeds=4)
    assert result.accuracy.shape == (4,)
    assert torch.all(result.accuracy == 1.0) and result.std == 0


def test_shuffled_labels_give_chance():
    x, y = clustered(2200, classes=4)
    shuffled = y[torch.randperm(2200, generator=torch.Generator().manual_seed(1))]
    result = fewshot_linear_probe(x[:200], shuffled[:200], x[200:], shuffled[200:], seeds=8)
    assert abs(float(result.mean) - 0.25) < 0.04


def test_per_token_features_are_independent_probes():
    x, y = clustered(300)
    tokens = torch.stack([x, torch.randn_like(x)], dim=1)  # token 0 informative, token 1 noise
    result = fewshot_linear_probe(tokens[:200], y[:200], tokens[200:], y[200:], shots=5, seeds=3)
    assert result.accuracy.shape == (3, 2) and result.l2.shape == (3, 2)
    assert result.mean[0] == 1.0 and result.mean[1] < 0.5


def test_seeds_draw_different_shots_and_are_reproducible():
    torch.manual_seed(0)  # the noise below; unseeded, some draws leave every seed at 100 %
    x, y = clustered(300)
    x = x + 3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    a = fewshot_linear_probe(x[:200], y[:200], x[200:], y[200:], shots=2, seeds=5, seed=3)
    b = fewshot_linear_probe(x[:200], y[:200], x[200:], y[200:], shots=2, seeds=5, seed=3)
    assert torch.equal(a.accuracy, b.accuracy) and a.std > 0


def test_fewshot_pool_check_says_what_each_class_needs_and_has():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1])
    check_fewshot_pool(labels, 2)  # 4 per class: 2 to fit, 2 held out
    check_fewshot_pool(labels, 3, holdout=1)
    with pytest.raises(ValueError, match=r"needs 6 .*the smallest with 4 image\(s\)"):
        check_fewshot_pool(labels, 3)
    with pytest.raises(ValueError, match="must be 2 classes; the pool has 1 class"):
        check_fewshot_pool(torch.zeros(10, dtype=torch.long), 1)


def test_bad_inputs_raise():
    x, y = clustered(60)
    with pytest.raises(ValueError, match=r"every class needs 20 \(10 to fit, 10 held out"):
        fewshot_linear_probe(x, y, x, y, shots=10)
    with pytest.raises(ValueError, match="disagree"):
        fewshot_linear_probe(x, y[:-1], x, y, shots=2)
    with pytest.raises(ValueError, match="shots must be"):
        fewshot_linear_probe(x, y, x, y, shots=0)
    with pytest.raises(ValueError, match="labels must be"):
        fewshot_linear_probe(x, y, x, y + 1, shots=2)
    with pytest.raises(ValueError, match="must agree"):
        fewshot_linear_probe(x, y, x[:, :5], y, shots=2)


@pytest.mark.parametrize("pooling", ["first", "mean", "mean_no_first", "tokens"])
def test_pooled_features_of_a_vit(pooling, zoo_shaped, small_images):
    features = pooled_features(zoo_shaped("vit-cls"), small_images(), pooling=pooling, run=QUIET)
    assert list(features) == [f"blocks.{i}" for i in range(8)]
    assert features["blocks.0"].shape == ((16, 65, 128) if pooling == "tokens" else (16, 128))


def test_several_readings_come_from_one_pass_and_equal_one_reading_at_a_time(zoo_shaped):
    model = zoo_shaped("vit-cls")
    fit, score = ShapesDataset(60, split="train"), ShapesDataset(40, split="test")
    passes = []
    hook = model.register_forward_hook(lambda _module, inputs, _output: passes.append(1))
    try:
        readings = probe_readings(model, fit, score, ["first", "mean"], shots=2, run=QUIET)
    finally:
        hook.remove()
    assert len(passes) == 2  # one batch of the fitting images, one of the scored ones
    for pooling in ("first", "mean"):
        alone = probe_by_layer(model, fit, score, pooling=pooling, shots=2, run=QUIET)
        torch.testing.assert_close(readings[pooling].accuracy, alone.accuracy, rtol=0, atol=0)
        torch.testing.assert_close(readings[pooling].scores, alone.scores, rtol=0, atol=0)
    features = pooled_readings(model, fit, ["mean", "first"], ["blocks.1"], run=QUIET)
    torch.testing.assert_close(
        features["first"]["blocks.1"],
        pooled_features(model, fit, ["blocks.1"], pooling="first", run=QUIET)["blocks.1"],
        rtol=0,
        atol=0,
    )
    with pytest.raises(ValueError, match="pooling must be one of"):
        pooled_features(model, fit, pooling="max", run=QUIET)
    for bad in ([], ["first", "first"], ["tokens", "mean"], ["max"]):
        with pytest.raises(ValueError, match="poolings must"):
            pooled_readings(model, fit, bad, run=QUIET)


@pytest.mark.slow
def test_paper_architectures(paper_model, paper_images):
    images = paper_images(2)
    vit = pooled_features(paper_model("vit_base_patch16_224"), images, pooling="first", run=QUIET)
    assert vit["blocks.11"].shape == (2, 768)
    mixer = pooled_features(paper_model("mixer_b16_224"), images, ["blocks.3"], run=QUIET)
    assert mixer["blocks.3"].shape == (2, 768)
    resnet = paper_model("resnetv2_50x1_bit")
    pooled = pooled_features(resnet, images, ["stages.3.blocks.2"], run=QUIET)
    assert pooled["stages.3.blocks.2"].shape == (2, 2048)
    with pytest.raises(ValueError, match="global average pooling"):
        pooled_features(resnet, images, ["stages.3.blocks.2"], pooling="first")
    with pytest.raises(ValueError, match="pooling must be"):
        pooled_features(resnet, images, pooling="max")


def test_fit_and_score_halves_keep_every_class_in_any_order():
    cyclic = ShapesDataset(40, split="test")  # labels 0..9, 0..9, ...
    fit, score = fit_and_score_halves(cyclic)
    assert fit.indices == [*range(10), *range(20, 30)]
    assert score.indices == [*range(10, 20), *range(30, 40)]
    sorted_by_class = Subset(cyclic, sorted(range(40), key=lambda i: (i % 10, i)))
    fit, score = fit_and_score_halves(sorted_by_class)
    for half in (fit, score):
        assert torch.equal(torch.bincount(dataset_labels(half)), torch.full((10,), 2))
        assert half.indices == sorted(half.indices)  # in the images' order
    with pytest.raises(ValueError, match="needs 2 images of some class"):
        fit_and_score_halves(ShapesDataset(10, split="test"))  # one image per class


def test_dataset_labels():
    shapes = ShapesDataset(20, split="test")
    assert torch.equal(dataset_labels(shapes), torch.arange(20) % 10)
    assert torch.equal(dataset_labels(Subset(shapes, [3, 4])), torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="cannot read labels"):
        dataset_labels(torch.utils.data.TensorDataset(torch.zeros(2)))


def test_trained_zoo_resnet_probe_beats_chance():
    model = load_model("resnet-local")
    train, test = ShapesDataset(200, split="train"), ShapesDataset(200, split="test")
    layer = ["stages.2.blocks.2"]
    train_x = pooled_features(model, train, layer, run=QUIET)[layer[0]]
    test_x = pooled_features(model, test, layer, run=QUIET)[layer[0]]
    result = fewshot_linear_probe(train_x, dataset_labels(train), test_x, dataset_labels(test))
    assert result.mean > 0.5


def test_plot(probe_result):
    ax = probe_accuracy_curves({"first": probe_result(np.full((2, 3), 0.5))}, chance=0.1)
    assert ax.get_ylabel() == "Few-shot probe accuracy" and len(ax.lines) == 2


def test_plot_on_relative_depth_spans_zero_to_one_for_any_depth(probe_result):
    curves = {
        "6 blocks": probe_result(np.full((2, 6), 0.4)),
        "10 blocks": probe_result(np.full((2, 10), 0.6)),
    }
    ax = probe_accuracy_curves(curves, relative_depth=True)
    for line in ax.lines:
        assert line.get_xdata()[0] == 0 and line.get_xdata()[-1] == 1
    assert ax.get_xlabel().startswith("Relative depth")


def test_plot_keeps_a_label_in_one_colour_across_panels(probe_result):
    from matplotlib.colors import to_hex

    colors = {"class token": "#d62728", "mean of tokens": "#1f77b4", "one token": "#2ca02c"}
    curve = probe_result(np.full((2, 4), 0.5))
    with_cls = probe_accuracy_curves(
        {"class token": curve, "mean of tokens": curve, "one token": curve}, colors=colors
    )
    without_cls = probe_accuracy_curves(
        {"mean of tokens": curve, "one token": curve}, colors=colors
    )
    for ax in (with_cls, without_cls):
        for line in ax.lines:
            assert to_hex(line.get_color()) == colors[line.get_label()]
    with pytest.raises(ValueError, match=r"no colour for \['extra'\]"):
        probe_accuracy_curves({"extra": curve}, colors=colors)


def test_probe_curve_is_one_probe_per_layer():
    from vitlens.analyses.probes import fewshot_linear_probe, probe_curve

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(30)
    signal = torch.nn.functional.one_hot(labels, 4).float()
    train = {
        "noise": torch.randn(120, 8, generator=generator),
        "signal": torch.cat([signal, torch.randn(120, 4, generator=generator)], 1),
    }
    test = {
        "noise": torch.randn(120, 8, generator=generator),
        "signal": torch.cat([signal, torch.randn(120, 4, generator=generator)], 1),
    }
    curve = probe_curve(train, labels, test, labels, shots=5, seeds=3)
    assert curve.accuracy.shape == (3, 2)
    assert curve.mean[1] > 0.9 > curve.mean[0]
    single = fewshot_linear_probe(train["signal"], labels, test["signal"], labels, shots=5, seeds=3)
    assert torch.allclose(curve.accuracy[:, 1], single.accuracy)
    with pytest.raises(ValueError):
        probe_curve(train, labels, {"signal": test["signal"]}, labels)


def _own_token_probes(model, train, test, layers, tokens):
    """3-shot, 2-seed probes of the given token indices, each on its own, built by hand."""
    from vitlens.analyses.probes import probe_curve

    features = {
        split: {
            k: v[:, tokens]
            for k, v in pooled_features(model, data, layers, pooling="tokens", run=QUIET).items()
        }
        for split, data in (("train", train), ("test", test))
    }
    return probe_curve(
        features["train"],
        dataset_labels(train),
        features["test"],
        dataset_labels(test),
        shots=3,
        seeds=2,
    )


def test_token_probes_read_the_class_token_the_pool_and_single_tokens():
    from vitlens.analyses.probes import token_probes

    vit, resnet = load_model("vit-cls"), load_model("resnet-local")
    train, test = ShapesDataset(60, split="train"), ShapesDataset(60, split="test")
    layers = [f"blocks.{i}" for i in range(len(vit.blocks))]
    probes = token_probes(vit, train, test, [(1, 1), (5, 6)], shots=3, seeds=2, run=QUIET)
    assert list(probes) == ["class token", "GAP of spatial tokens", "single spatial token"]
    assert all(r.mean.shape == r.std.shape == (len(layers),) for r in probes.values())
    # the single-token curve is the mean over the two tokens' own probes (tokens 1 + 9 and
    # 1 + 46: the class token comes first on the 8x8 grid)
    own = _own_token_probes(vit, train, test, layers, [10, 47])
    single = probes["single spatial token"]
    np.testing.assert_allclose(single.mean, own.mean.mean(-1), atol=1e-6)
    # the averaged probes' scores: the share of the two tokens' probes right on each image
    torch.testing.assert_close(single.scores, own.scores.mean(2))
    torch.testing.assert_close(single.scores.mean(-1), single.accuracy)
    assert list(token_probes(resnet, train, test, [], shots=3, seeds=2, run=QUIET)) == ["GAP"]
    # a model without a class token (the Mixer): the pool and single tokens, from token 0
    mixer = load_model("mixer-pt")
    mixer_probes = token_probes(mixer, train, test, [(0, 0)], shots=3, seeds=2, run=QUIET)
    assert list(mixer_probes) == ["GAP of spatial tokens", "single spatial token"]
    mixer_layers = vitlens.layer_names(mixer, "blocks")
    own = _own_token_probes(mixer, train, test, mixer_layers, [0])
    np.testing.assert_allclose(mixer_probes["single spatial token"].mean, own.mean[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="inside the 8x8 grid"):
        token_probes(vit, train, test, [(8, 0)], run=QUIET)


def test_token_probe_maps_probe_every_patch_token_and_every_resnet_location():
    from vitlens.analyses.probes import token_probe_maps

    vit, resnet = load_model("vit-cls"), load_model("resnet-local")
    train, test = ShapesDataset(60, split="train"), ShapesDataset(60, split="test")
    maps = token_probe_maps(vit, train, test, ["blocks.7"], shots=3, seeds=2, run=QUIET)
    mean, std = maps["blocks.7"].mean, maps["blocks.7"].std
    assert mean.shape == std.shape == (8, 8)
    assert maps["blocks.7"].scores.shape == (2, 8, 8, len(test))
    # cell (2, 5) is token 1 + 2 * 8 + 5: the class token is left out of the map
    own = _own_token_probes(vit, train, test, ["blocks.7"], [22])
    assert mean[2, 5] == pytest.approx(float(own.mean[0, 0]), abs=1e-6)
    # a ResNet: one probe per location of each block's map, on that block's own grid
    names = vitlens.layer_names(resnet, "blocks")
    resnet_maps = token_probe_maps(
        resnet, train, test, [names[0], names[-1]], shots=3, seeds=2, run=QUIET
    )
    first, last = (resnet_maps[n].mean.shape for n in (names[0], names[-1]))
    assert first[0] > last[0] >= 1 and first[0] == first[1]
    assert all(((0 <= r.mean) & (r.mean <= 1)).all() for r in resnet_maps.values())


# ------------------------------------------------------ the probe's inputs (issue #16)


def _probe_data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(8)
    features = torch.randn(24, 5, generator=g) + 3 * torch.nn.functional.one_hot(labels, 5)
    return features, labels


def test_probe_refuses_a_nan_test_row():
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
    x, y = _probe_data()
    with pytest.raises(TypeError, match="train_labels must be integer class indices"):
        fewshot_linear_probe(x, y + 0.7, x, y, shots=2, seeds=1)
    with pytest.raises(TypeError, match="test_labels must be integer"):
        fewshot_linear_probe(x, y, x, y.float(), shots=2, seeds=1)


def test_probe_refuses_a_single_class_pool():
    x, _ = _probe_data()
    zeros = torch.zeros(24, dtype=torch.long)
    with pytest.raises(ValueError, match="single class"):
        fewshot_linear_probe(x, zeros, x, zeros, shots=2, seeds=1)


@pytest.mark.parametrize("grid", [(1.0, float("nan")), (float("inf"),), (-1.0,), ()])
def test_probe_refuses_a_bad_l2_grid(grid):
    x, y = _probe_data()
    with pytest.raises(ValueError, match="l2_grid must be non-empty, finite and non-negative"):
        fewshot_linear_probe(x, y, x, y, shots=2, seeds=1, l2_grid=grid)


def test_token_lattice_takes_every_other_row_and_column_through_a_cell():
    assert token_lattice((4, 5)) == [(1, 1), (1, 3), (3, 1), (3, 3)]
    through_corner = token_lattice((4, 5), through=(0, 0))
    assert through_corner == [(r, c) for r in (0, 2) for c in (0, 2, 4)]
    assert token_lattice((3, 3), step=1) == [(r, c) for r in range(3) for c in range(3)]
    with pytest.raises(ValueError, match="step"):
        token_lattice((4, 4), step=0)
    with pytest.raises(ValueError, match="outside the 4x4 grid"):
        token_lattice((4, 4), through=(4, 0))


def test_probe_scores_are_the_accuracy_image_by_image():
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat(20)
    features = torch.nn.functional.one_hot(labels, 3).float() + torch.randn(
        60, 3, generator=generator
    )
    result = fewshot_linear_probe(features, labels, features[:30], labels[:30], shots=4, seeds=3)
    assert result.scores.shape == (3, 30) and set(result.scores.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(result.scores.double().mean(-1).float(), result.accuracy)
    torch.testing.assert_close(result.labels, labels[:30])


def test_averaged_and_selected_scores(probe_result):
    result = probe_result(np.array([[[0.2, 0.4], [0.6, 0.8]], [[0.3, 0.5], [0.7, 0.9]]]))
    pooled = result.averaged(-1)  # (seeds, layers): the two tokens as one
    np.testing.assert_allclose(pooled.accuracy, [[0.3, 0.7], [0.4, 0.8]], atol=1e-6)
    assert result.seed_image_scores(-1).shape == (2, 1000)  # last layer, tokens averaged
    np.testing.assert_allclose(result.seed_image_scores((0, 1)).mean(1), [0.4, 0.5])
    np.testing.assert_allclose(result.seed_image_scores(range(0, 2)).mean(), 0.55)
    with pytest.raises(ValueError, match="seeds"):
        result.averaged(0)


def test_probe_difference_pairs_the_same_images_and_covers_both_sources(probe_result):
    from vitlens.analyses.probes import probe_difference

    better = probe_result(np.array([[0.60, 0.70], [0.62, 0.72], [0.58, 0.71]]))
    worse = probe_result(np.array([[0.50, 0.52], [0.51, 0.50], [0.49, 0.54]]))
    estimate = probe_difference(better, worse, at_a=-1, source="one training seed")
    assert estimate.value == pytest.approx(
        np.mean([0.70, 0.72, 0.71]) - np.mean([0.52, 0.50, 0.54])
    )
    assert (
        "3 probe seeds" in estimate.source
        and "paired bootstrap over 1000 scored images" in estimate.source
    )
    # same model, two layers: paired; a model scored on other images: not paired
    across = probe_difference(better, better, at_a=-1, at_b=0, source="x")
    assert across.value == pytest.approx(0.71 - 0.60) and "paired" in across.source
    other = dataclasses.replace(worse, labels=worse.labels.flip(0))
    unpaired = probe_difference(better, other, at_a=-1, source="x")
    assert "paired" not in unpaired.source and unpaired.width > estimate.width


def test_fewshot_probe_equals_a_plain_loop_over_seeds_and_strengths():
    # The batched probe (standardisation folded into the weights, every strength in one
    # product) against the definition written out: per seed, standardise the k-shot set,
    # solve each L2 strength with numpy, keep the best on the held-out draw, score the test.
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(240, 2, 6, generator=generator) * 2 + 5  # 2 tokens, far from 0
    y = torch.arange(240) % 4
    x[:, 0, 0] += 1.5 * y  # token 0's first feature carries the class a little
    grid = (0.01, 1.0, 100.0)
    result = fewshot_linear_probe(
        x[:120], y[:120], x[120:], y[120:], shots=3, seeds=4, l2_grid=grid, seed=7
    )
    fit_idx, held_idx = _fewshot_indices(y[:120], 4, 3, 3, 4, 7)
    for s in range(4):
        for token in range(2):
            fit = x[fit_idx[s], token].double().numpy()
            mean, std = fit.mean(0), fit.std(0) + 1e-5
            targets = 2.0 * np.eye(4)[y[fit_idx[s]].numpy()] - 1
            z = (fit - mean) / std
            weights = [np.linalg.solve(z.T @ z + l2 * np.eye(6), z.T @ targets) for l2 in grid]
            held = (x[held_idx[s], token].double().numpy() - mean) / std
            held_right = [((held @ w).argmax(1) == y[held_idx[s]].numpy()).mean() for w in weights]
            best = int(np.argmax(held_right))  # ties: the smallest strength, as documented
            test = (x[120:, token].double().numpy() - mean) / std
            accuracy = ((test @ weights[best]).argmax(1) == y[120:].numpy()).mean()
            assert result.l2[s, token] == grid[best]
            assert float(result.accuracy[s, token]) == pytest.approx(accuracy, abs=1e-6)


def test_many_independent_probes_are_solved_in_chunks_of_bounded_memory(monkeypatch):
    # A 224-px ResNet's first block has 3,136 locations, one probe each: solved at once,
    # their float64 work would need tens of GiB. Chunks of problems keep it within the
    # bound, and the results are those of one solve.
    import vitlens.analyses.probes as probes

    generator = torch.Generator().manual_seed(2)
    y = torch.arange(150) % 3
    x = torch.randn(150, 4, 5, 8, generator=generator)  # 4 x 5 locations, 8 channels
    x[:, :, :, 0] += 4 * y[:, None, None] * (torch.arange(5) / 4.0)  # signal grows along a row
    whole = fewshot_linear_probe(x[:90], y[:90], x[90:], y[90:], shots=4, seeds=3)
    each = probes._probe_bytes(3, 12, 12, 8, 3, len(probes.L2_GRID), 60)
    solved = []
    original = probes.ridge_weights
    monkeypatch.setattr(
        probes, "ridge_weights", lambda x, *a: solved.append(x.shape[0]) or original(x, *a)
    )
    chunked = fewshot_linear_probe(
        x[:90], y[:90], x[90:], y[90:], shots=4, seeds=3, memory_bytes=3 * each + 1
    )
    assert solved == [3] * 6 + [2]  # 20 problems, at most 3 at a time
    for field in ("accuracy", "l2", "scores"):
        torch.testing.assert_close(getattr(chunked, field), getattr(whole, field))
    assert chunked.accuracy.shape == (3, 4, 5)
    assert (chunked.mean[:, -1] > chunked.mean[:, 0]).all()  # the probes are not all alike
    with pytest.raises(ValueError, match="memory_bytes"):
        fewshot_linear_probe(x[:90], y[:90], x[90:], y[90:], shots=4, memory_bytes=0)
    with pytest.raises(ValueError, match="no probe problem"):
        fewshot_linear_probe(x[:90, :0], y[:90], x[90:, :0], y[90:], shots=4)


def test_most_shots_is_what_the_smallest_class_affords():
    from vitlens.analyses.probes import most_shots

    labels = torch.tensor([0] * 44 + [1] * 53 + [2] * 50)
    assert most_shots(labels) == 22  # 22 to fit and 22 held out from the 44
    check_fewshot_pool(labels, 22)
    with pytest.raises(ValueError, match="23-shot"):
        check_fewshot_pool(labels, 23)
    assert most_shots(labels, holdout_per_shot=3) == 11
    with pytest.raises(ValueError, match="2 classes"):
        most_shots(torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="smallest with 1 image"):
        most_shots(torch.tensor([0, 0, 1]))
