"""Sanity checks of similarity measures (vitlens.analyses.sanity), the probe they use and the
jackknife behind their intervals, on features built in this file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens.analyses import sanity
from vitlens.analyses.probes import class_halves, ridge_probe_accuracy
from vitlens.core.stats import jackknife


def test_jackknife_interval_of_a_mean_covers_at_its_rate():
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(300):
        sample = rng.normal(size=60)
        (estimate,) = jackknife(lambda rows, s=sample: [s[rows].mean()], 60, source="", seed=trial)
        covered += estimate.low <= 0.0 <= estimate.high
    assert 0.90 <= covered / 300 <= 0.99
    assert estimate.source == "jackknife over 10 groups of the 60 images"


def test_jackknife_refuses_bad_groups_and_non_finite_statistics():
    with pytest.raises(ValueError, match=r"groups must be an integer in \[2, 5\]"):
        jackknife(lambda rows: [0.0], 5, source="", groups=6)
    with pytest.raises(ValueError, match="NaN or Inf"):
        jackknife(lambda rows: [np.nan], 20, source="")
    with pytest.raises(ValueError, match="same number of values"):
        jackknife(lambda rows: list(range(len(rows) % 3 + 1)), 20, source="", groups=4)


def test_identification_margin_by_hand():
    matrix = np.array([[0.9, 0.5, 0.1], [0.6, 0.8, 0.7], [0.2, 0.95, 0.9]])
    # rows: 0.9 - 0.5, 0.8 - 0.7, 0.9 - 0.95
    assert sanity.identification_margin(matrix) == pytest.approx((0.4 + 0.1 - 0.05) / 3)
    with pytest.raises(ValueError, match="square"):
        sanity.identification_margin(np.ones((2, 3)))


def _two_runs(n: int, layers: int, shared: bool, seed: int = 0):
    """Run B is run A rotated, plus noise; layers independent (or all the same, ``shared``)."""
    rng = np.random.default_rng(seed)
    common = np.tanh(rng.normal(size=(n, 6)) @ rng.normal(size=(6, 12)))
    a, b = {}, {}
    for i in range(layers):
        feats = common if shared else np.tanh(rng.normal(size=(n, 6)) @ rng.normal(size=(6, 12)))
        rotation = np.linalg.qr(rng.normal(size=(12, 12)))[0]
        a[f"blocks.{i}"] = torch.from_numpy(feats)
        b[f"blocks.{i}"] = torch.from_numpy(feats @ rotation + 0.05 * rng.normal(size=(n, 12)))
    return a, b


def test_seed_specificity_finds_distinct_layers_and_not_identical_ones():
    measures = ["linear_cka", "procrustes"]
    distinct = sanity.seed_specificity(*_two_runs(80, 4, shared=False), measures, groups=5)
    alike = sanity.seed_specificity(*_two_runs(80, 4, shared=True), measures, groups=5)
    for m in measures:
        assert distinct[m].identified == 4 and distinct[m].margin.low > 0.3
        assert distinct[m].matrix.shape == (4, 4)
        assert abs(alike[m].margin.value) < 0.1  # every layer is every other layer's twin


def test_seed_specificity_refuses_mismatched_runs_and_pwcca():
    a, b = _two_runs(30, 3, shared=False)
    with pytest.raises(ValueError, match=r"same \(at least 2\) layers"):
        sanity.seed_specificity(a, {"blocks.0": b["blocks.0"]}, ["linear_cka"])
    with pytest.raises(ValueError, match="PWCCA"):
        sanity.seed_specificity(a, b, ["pwcca"])


def test_class_halves_balance_cyclic_and_sorted_labels():
    for labels in (np.arange(40) % 4, np.repeat(np.arange(4), 10)):
        score = class_halves(labels)
        assert [int(score[labels == c].sum()) for c in range(4)] == [5, 5, 5, 5]


def test_ridge_probe_reads_a_separable_task_and_not_noise():
    rng = np.random.default_rng(1)
    labels = torch.from_numpy(np.arange(200) % 4)
    features = torch.from_numpy(rng.normal(size=(200, 10)))
    features[torch.arange(200), labels] += 4.0  # one direction per class
    score = class_halves(labels)
    assert ridge_probe_accuracy(features, labels, score) > 0.9
    shuffled = torch.from_numpy(rng.permutation(labels.numpy()))
    assert ridge_probe_accuracy(features[:, 4:], shuffled, score) < 0.45
    with pytest.raises(ValueError, match="same images"):
        ridge_probe_accuracy(features[:10], labels, score)


def _label_in_a_quiet_direction(n: int = 160, seed: int = 2):
    """Loud class-free directions, and the classes in two quiet ones."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    loud = rng.normal(size=(n, 6)) * np.array([20.0, 16, 12, 10, 8, 6])
    quiet = np.stack([labels % 2, labels // 2], axis=1) * 1.0 + 0.1 * rng.normal(size=(n, 2))
    return torch.from_numpy(np.concatenate([loud, quiet], axis=1)), torch.from_numpy(labels)


def test_pc_deletion_cka_moves_with_variance_while_the_probe_needs_the_quiet_band():
    features, labels = _label_in_a_quiet_direction()
    result = sanity.pc_deletion_sensitivity(
        {"layer": features},
        labels,
        ["linear_cka"],
        bands=((0, 2), (2, 4), (4, 6), (6, 8)),
        groups=5,
    )
    drop, dissimilar = result.accuracy_drop[0], result.dissimilarity["linear_cka"][0]
    assert drop[-1] > 0.4 and abs(drop[0]) < 0.1  # the quiet band holds the classes
    assert dissimilar[0] > 10 * dissimilar[-1]  # CKA sees the loud band
    assert result.correlation["linear_cka"].high < 0  # ranks deletions against the probe
    np.testing.assert_allclose(result.variance_share.sum(), 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="bands must be increasing"):
        sanity.pc_deletion_sensitivity({"layer": features}, labels, ["procrustes"], bands=((2, 1),))


def test_few_points_moved_far_pull_linear_cka_down_not_the_probe():
    features, labels = _label_in_a_quiet_direction(200)
    result = sanity.few_point_robustness(
        features, labels, ["linear_cka", "procrustes"], share=0.02, scales=(1.0, 30.0), groups=5
    )
    assert result.moved == 4
    cka = result.similarity["linear_cka"]
    assert cka[0] > cka[1] and result.drop["linear_cka"].value > 0.5
    assert abs(result.accuracy_change.value) < 0.1
    with pytest.raises(ValueError, match="share"):
        sanity.few_point_robustness(features, labels, ["linear_cka"], share=0.9)


def test_figures_under_measures_restate_figure_1_and_2_for_each_measure():
    from vitlens.analyses.measures import figures_under_measures

    rng = np.random.default_rng(3)
    z = rng.normal(size=(60, 4))
    # "ViT": every layer the same up to rotation (uniform); "ResNet": two unrelated stages
    uniform = {
        f"v{i}": torch.from_numpy(z @ np.linalg.qr(rng.normal(size=(4, 4)))[0]) for i in range(4)
    }
    stages = [rng.normal(size=(60, 4)), rng.normal(size=(60, 4))]
    staged = {
        f"r{i}": torch.from_numpy(stages[i // 2] + 0.1 * rng.normal(size=(60, 4))) for i in range(4)
    }
    figures = figures_under_measures(uniform, staged, ["linear_cka", "procrustes"], groups=5)
    for result in figures.values():
        assert result.uniformity_gap.low > 0.3  # the uniform model is the more uniform
        assert result.within_a.matrix.shape == (4, 4) and result.across.matrix.shape == (4, 4)
        assert result.across.layers_a == list(uniform) and result.across.layers_b == list(staged)
    with pytest.raises(ValueError, match="measures must be"):
        figures_under_measures(uniform, staged, ["pwcca"])


def test_robust_to_few_points_needs_a_probe_that_did_not_notice():
    from vitlens.book.verdicts import robust_to_few_points
    from vitlens.core.stats import Estimate

    still = Estimate(0.001, -0.005, 0.006, "test")
    assert robust_to_few_points("drop", Estimate(0.01, 0.0, 0.02, "t"), still).outcome == "holds"
    assert robust_to_few_points("drop", Estimate(0.9, 0.8, 1.0, "t"), still).outcome == (
        "does not hold"
    )
    noticed = Estimate(-0.2, -0.3, -0.1, "test")
    verdict = robust_to_few_points("drop", Estimate(0.9, 0.8, 1.0, "t"), noticed)
    assert verdict.outcome == "not testable here" and "probe's accuracy changed" in verdict.premise


def test_sanity_figures_draw_one_mark_per_number():
    from vitlens import plotting

    features, labels = _label_in_a_quiet_direction(120)
    deletion = sanity.pc_deletion_sensitivity(
        {"a": features, "b": features * 2},
        labels,
        ["linear_cka", "svcca"],
        bands=((0, 2), (2, 4), (4, 8)),
        groups=3,
    )
    axes = plotting.deletion_scatter(deletion)
    assert axes.shape == (1, 2)
    assert sum(len(c.get_offsets()) for c in axes[0, 0].collections) == 6  # 2 layers x 3 bands
    moved = sanity.few_point_robustness(features, labels, ["linear_cka"], scales=(1, 10), groups=3)
    ax = plotting.moved_points_curves(moved)
    assert len(ax.lines[0].get_xdata()) == 2 and ax.get_xscale() == "log"
    seeds = sanity.seed_specificity(*_two_runs(40, 3, shared=False), ["procrustes"], groups=3)
    axes = plotting.seed_heatmaps(seeds, label_a="run A", label_b="run B")
    assert len(axes) == 1 and "margin" in axes[0].get_title()
