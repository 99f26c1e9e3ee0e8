"""Verdict rules: every rule, every outcome; the statistics behind the ledger."""

import numpy as np
import pytest
import torch

from vitlens.analyses.attention import HeadSubsetCKA, local_threshold_px
from vitlens.analyses.compare import (
    below_diagonal,
    cross_block_mean,
    cut_contrast,
    depth_halves,
    diagonal_half_gap,
    diagonal_halves,
    evenly_spaced,
    leading_blocks,
    lower_half_of,
    lowest_quarter,
    middle_blocks,
    middle_index,
    middle_mean,
    offdiagonal_mean,
    stream_index,
    two_block_contrast,
    upper_half_of,
)
from vitlens.analyses.localization import localization_stats, patch_token, token_localization
from vitlens.book.verdicts import (
    OUTCOMES,
    Verdict,
    all_of,
    exceeds,
    heads_local_then_global,
    less_data_less_local,
    less_data_upper_layers_drift,
    local_heads_closer_to_cnn,
    local_then_global,
    middle_block_skips_cost_accuracy,
    negligible,
    not_testable,
    stronger_intermediate,
    very_similar,
)
from vitlens.core.stats import (
    Estimate,
    bootstrap,
    bootstrap_difference,
    bootstrap_mean,
    field_estimate,
    proportion_difference,
    rank_correlation,
    spread_difference,
)
from vitlens.streaming import RunOptions


def est(value, low, high):
    return Estimate(value, low, high, "test")


@pytest.mark.parametrize(
    ("estimate", "outcome"),
    [
        (est(0.3, 0.2, 0.4), "holds"),
        (est(0.3, 0.05, 0.4), "partly holds"),
        (est(0.3, -0.01, 0.4), "does not hold"),
        (est(-0.3, -0.4, -0.2), "does not hold"),
    ],
)
def test_exceeds_every_outcome(estimate, outcome):
    verdict = exceeds("d", estimate, 0.1)
    assert verdict.outcome == outcome
    assert "95% interval: test" in verdict.text() and "rule:" in verdict.text()


def test_exceeds_respects_null_and_refuses_negative_margins():
    assert exceeds("share", est(0.6, 0.55, 0.7), 0.4, null=0.1).outcome == "holds"
    assert exceeds("share", est(0.3, 0.2, 0.4), 0.4, null=0.1).outcome == "partly holds"
    with pytest.raises(ValueError):
        exceeds("d", est(0, 0, 0), -0.1)


@pytest.mark.parametrize(
    ("estimate", "outcome"),
    [
        (est(0.0, -0.02, 0.03), "holds"),
        (est(0.01, -0.02, 0.08), "partly holds"),
        (est(0.2, 0.1, 0.3), "does not hold"),
    ],
)
def test_negligible_every_outcome(estimate, outcome):
    assert negligible("d", estimate, 0.05).outcome == outcome


def test_all_of_every_outcome():
    yes = exceeds("a", est(1, 0.9, 1.1), 0.1)
    no = exceeds("b", est(-1, -1.1, -0.9), 0.1)
    part = exceeds("c", est(0.1, 0.05, 0.2), 0.1)
    gap = not_testable("no local heads")
    assert all_of([yes, yes]).outcome == "holds"
    assert all_of([yes, no]).outcome == "partly holds"
    assert all_of([part, no]).outcome == "partly holds"
    assert all_of([no, no]).outcome == "does not hold"
    combined = all_of([yes, gap])
    assert combined.outcome == "not testable here" and "no local heads" in combined.premise
    with pytest.raises(ValueError):
        all_of([])


def test_not_testable_names_its_premise():
    verdict = not_testable("less data does not clearly hurt", "accuracy 93% vs 95%")
    assert verdict.outcome == "not testable here" == OUTCOMES[-1]
    assert "missing premise: less data does not clearly hurt" in verdict.text()
    with pytest.raises(ValueError):
        not_testable("")
    with pytest.raises(ValueError):
        Verdict("holds", "x", "rule", premise="something")
    with pytest.raises(ValueError):
        Verdict("maybe", "x", "rule")


def test_estimates_and_bootstrap_helpers():
    assert Estimate.exact(0.5).text() == "0.50"
    assert est(0.5, 0.4, 0.6).text() == "0.50 [0.40, 0.60]"
    assert est(0.5, 0.4, 0.7).width == pytest.approx(0.3) and Estimate.exact(2).width == 0
    with pytest.raises(ValueError):
        Estimate(0.5, 0.6, 0.4, "reversed")
    with pytest.raises(ValueError):
        Estimate(float("nan"), 0, 1, "nan")
    values = np.random.default_rng(0).normal(1.0, 1.0, 400)
    mean = bootstrap_mean(values, source="images")
    assert mean.low < 1.0 < mean.high and mean.high - mean.low < 0.4
    reps = bootstrap(lambda idx: values[idx].mean(), len(values), replicates=200)
    assert reps.shape == (200,) and abs(reps.mean() - values.mean()) < 0.05
    diff = bootstrap_difference(values + 1, values, paired=True, source="bootstrap over tokens")
    assert diff.low == pytest.approx(1.0) and diff.high == pytest.approx(1.0)
    assert diff.source == "paired bootstrap over tokens"
    unpaired = bootstrap_difference(values + 1, values, source="bootstrap over tokens")
    assert unpaired.low < 1.0 < unpaired.high and unpaired.source == "bootstrap over tokens"
    wide = spread_difference(0.6, 0.05, 0.5, 0.05, 3, source="seeds")
    assert wide.low < 0.1 < wide.high and wide.high - wide.low > 0.2
    accuracy = proportion_difference(0.95, 2048, 0.70, 2048, source="binomial")
    assert 0.2 < accuracy.low < 0.25 < accuracy.high < 0.3


def _simulated_scores(rng, accuracy, seeds, images, seed_spread):
    """(seeds, images) right/wrong: image i is right under seed s when its difficulty
    u_i ~ U(0, 1) is below accuracy + e_s, e_s ~ N(0, seed_spread): images shared by the
    seeds, the expected accuracy ``accuracy``."""
    difficulty = rng.random(images)
    offsets = rng.normal(0, seed_spread, (seeds, 1))
    return (difficulty < accuracy + offsets).astype(float)


def test_seed_and_item_interval_covers_the_true_difference():
    from vitlens.core.stats import seed_and_item_difference

    rng = np.random.default_rng(0)
    covered = []
    for _ in range(200):  # independent models: 5 probe seeds, 300 scored images each
        a = _simulated_scores(rng, 0.70, 5, 300, 0.03)
        b = _simulated_scores(rng, 0.62, 5, 300, 0.03)
        est = seed_and_item_difference(a, b, paired=False, source="sim", replicates=400)
        covered.append(est.low <= 0.08 <= est.high)
    assert 0.9 <= np.mean(covered) <= 0.995
    # either source alone is narrower than both together
    a, b = _simulated_scores(rng, 0.7, 5, 300, 0.03), _simulated_scores(rng, 0.6, 5, 300, 0.03)
    both = seed_and_item_difference(a, b, paired=False, source="sim")
    one_seed_spread = seed_and_item_difference(
        np.repeat(a.mean(0, keepdims=True), 5, 0),
        np.repeat(b.mean(0, keepdims=True), 5, 0),
        paired=False,
        source="sim",
    )
    assert one_seed_spread.width < both.width
    with pytest.raises(ValueError, match="at least 2 of each"):
        seed_and_item_difference(a[:1], b, paired=False, source="sim")
    with pytest.raises(ValueError, match="one to one"):
        seed_and_item_difference(a, b[:, :10], paired=True, source="sim")


def test_across_seeds_covers_the_true_value_at_the_stated_rate():
    """Three training seeds measured on the same images: a seed effect (sd 0.05) and an
    image-sampling error shared by the seeds (sd 0.03), each seed's interval covering its
    own value's image error. The combined interval must cover the truth about 95% of the
    time (more is allowed: the image part is conservative), while either source alone would
    not."""
    from vitlens.core.stats import Estimate, across_seeds

    rng = np.random.default_rng(0)
    truth, seed_sd, image_sd = 0.4, 0.05, 0.03
    covered, seed_only, image_only = [], [], []
    for _ in range(400):
        shared = rng.normal(0, image_sd)
        values = truth + rng.normal(0, seed_sd, 3) + shared
        estimates = [Estimate(v, v - 1.96 * image_sd, v + 1.96 * image_sd, "sim") for v in values]
        est = across_seeds(estimates)
        covered.append(est.low <= truth <= est.high)
        points = [Estimate.exact(v) for v in values]
        only = across_seeds(points)
        seed_only.append(only.low <= truth <= only.high)
        image_only.append(abs(values.mean() - truth) <= 1.96 * image_sd)
    assert 0.93 <= np.mean(covered) <= 0.995
    assert np.mean(seed_only) < np.mean(covered) and np.mean(image_only) < 0.9
    combined = across_seeds(
        [Estimate(0.5, 0.4, 0.55, "bootstrap over 64 images; one training seed per model")] * 2
    )
    assert combined.value == 0.5 and (combined.low, combined.high) == pytest.approx((0.4, 0.55))
    assert "t interval over 2 training seeds" in combined.source
    assert combined.source.endswith("from: bootstrap over 64 images")  # seeds now covered
    with pytest.raises(ValueError, match="at least 2 seeds"):
        across_seeds([Estimate.exact(0.5)])


def test_over_seeds_decides_each_part_again_on_the_combined_estimates():
    from vitlens.book.verdicts import over_seeds

    def claim(gap, share):  # a two-part claim, as a rule builds it
        return all_of(
            [
                exceeds("gap", Estimate(gap, gap - 0.02, gap + 0.02, "images"), 0.05),
                negligible("share", Estimate(share, share - 0.01, share + 0.01, "heads"), 0.05),
            ]
        )

    steady = over_seeds([claim(0.20, 0.0), claim(0.21, 0.01), claim(0.19, 0.0)])
    assert steady.outcome == "holds" and len(steady.parts) == 2
    gap = steady.parts[0].estimate
    assert gap.value == pytest.approx(0.20) and gap.low < 0.18 and gap.high > 0.22
    assert gap.source.startswith("t interval over 3 training seeds")
    # every seed holds alone, but they disagree too much for the mean to clear the margin
    spread = over_seeds([claim(0.08, 0.0), claim(0.30, 0.0), claim(0.12, 0.0)])
    assert spread.outcome == "partly holds"
    assert [p.outcome for p in spread.parts] == ["does not hold", "holds"]
    # a premise missing in one seed makes the claim not testable, naming the seed
    missing = over_seeds([claim(0.2, 0.0), not_testable("no local head"), claim(0.2, 0.0)])
    assert missing.outcome == "not testable here"
    assert "holds in 2 of 3 training seeds only" in missing.premise
    assert "seed 1: no local head" in missing.premise
    every = over_seeds([not_testable("no local head")] * 2)
    assert every.premise == "no local head"
    # rules that took different paths are not averaged: the weakest seed is kept
    single = exceeds("gap", Estimate(0.0, -0.1, 0.1, "images"), 0.05)
    mixed = over_seeds([claim(0.2, 0.0), single])
    assert mixed.outcome == "does not hold" and mixed.parts == single.parts
    assert "rules took different paths" in mixed.statistic
    with pytest.raises(ValueError, match="at least 2 verdicts"):
        over_seeds([single])


def test_depth_statistics():
    assert depth_halves(5) == (slice(0, 2), slice(2, 5))
    matrix = np.diag([0.9, 0.8, 0.5, 0.4, 0.3]) + 0.01  # lower half (2 blocks) vs upper (3)
    assert diagonal_half_gap(matrix) == pytest.approx((0.91 + 0.81) / 2 - (0.51 + 0.41 + 0.31) / 3)
    assert diagonal_halves(matrix) == pytest.approx(((0.91 + 0.81) / 2, (0.51 + 0.41 + 0.31) / 3))
    with pytest.raises(ValueError, match="square"):
        diagonal_half_gap(np.zeros((2, 3)))
    diagonal = np.eye(9)
    assert offdiagonal_mean(diagonal) == 0.0
    quarter = np.zeros((9, 9))
    for j in range(9):  # B's layer j best matches A's layer j // 2: half the depth
        quarter[j // 2, j] = 1.0
    from vitlens.analyses.compare import CKAResult

    names = [str(i) for i in range(9)]
    plain = CKAResult(diagonal, names, names, "a", "b", 8, 4)
    halved = CKAResult(quarter, names, names, "a", "b", 8, 4)
    assert below_diagonal(plain) == pytest.approx(0.0)
    expected = np.mean(np.arange(4) / 8 - np.arange(4) // 2 / 8)
    assert below_diagonal(halved) == pytest.approx(expected)
    blocks = np.full((6, 6), 0.1)
    blocks[:2, :2] = blocks[2:, 2:] = 0.9
    assert two_block_contrast(blocks) == (2, pytest.approx(0.8))
    assert cut_contrast(blocks, 2) == pytest.approx(0.8)
    assert cut_contrast(np.ones((6, 6)), 3) == 0.0  # uniform: no partition
    with pytest.raises(ValueError, match="layers on both sides"):
        cut_contrast(blocks, 0)
    assert cross_block_mean(blocks, 2) == pytest.approx(0.1)
    stream = ["blocks.0.residual1", "blocks.0", "blocks.1.residual1", "blocks.1"]
    assert stream_index(stream, 1) == 2
    with pytest.raises(ValueError):
        stream_index(stream, 2)


def test_cka_bootstrap_resamples_batches():
    import torch

    from vitlens import cka_matrix

    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.ReLU(), torch.nn.Linear(6, 4)
    )
    images = torch.randn(64, 3, 2, 2)
    result = cka_matrix(
        model,
        images,
        layers_a=["1", "2", "3"],
        run=RunOptions(batch_size=16, device="cpu", progress=False),
    )
    assert result.num_batches == 4
    reps = result.bootstrap(50)
    assert reps.shape == (50, 3, 3)
    assert np.allclose(np.diagonal(reps, axis1=1, axis2=2), 1.0)


def test_localization_statistics_per_token():
    cells = 4
    maps = np.full((1 + cells, 2, 2), 0.1)  # a class token, then 4 patch tokens
    for token in range(cells):
        maps[1 + token].flat[token] = 0.9
    per_token = token_localization(maps)
    assert np.allclose(per_token["contrast"], 0.8)
    assert not per_token["interior"].any()  # a 2x2 grid is all border
    interior = token_localization(np.zeros((16, 4, 4)))["interior"].reshape(4, 4)
    assert interior.tolist() == [[False] * 4] + [[False, True, True, False]] * 2 + [[False] * 4]
    assert localization_stats(maps) == {
        "own peak": 1.0,
        "near peak": 1.0,
        "up-left peak": 1.0,
        "contrast": pytest.approx(0.8),
    }
    # every token peaking one cell down-right of its own (wrapping on the 2x2 grid)
    shifted = np.full((1 + cells, 2, 2), 0.1)
    for token, peak in enumerate([3, 2, 1, 0]):
        shifted[1 + token].flat[peak] = 0.9
    np.testing.assert_array_equal(
        token_localization(shifted)["peak offset"], [[1, 1], [1, -1], [-1, 1], [-1, -1]]
    )
    stats = localization_stats(shifted)
    assert stats["own peak"] == 0 and stats["near peak"] == 1 and stats["up-left peak"] == 0.25
    assert patch_token(maps, 1, 1) == 4
    with pytest.raises(ValueError):
        patch_token(maps, 2, 0)


def _head_subsets(cka_per_subset, *, batches=8, jitter=0.01, seed=0) -> HeadSubsetCKA:
    """A head-subset result whose batch b has CKA ``cka + noise`` with one layer (unit HSICs)."""
    rng = np.random.default_rng(seed)
    cka = np.asarray(cka_per_subset, dtype=float)
    cross = cka[None, :, None] + jitter * rng.standard_normal((batches, len(cka), 1))
    terms = (cross, np.ones((batches, len(cka))), np.ones((batches, 1)))
    return HeadSubsetCKA(
        matrix=torch.from_numpy(cross.mean(0)),
        heads=torch.arange(len(cka))[:, None],
        distances=torch.arange(len(cka), dtype=torch.float64),
        block=0,
        layers=["stem"],
        batch_size=16,
        batch_terms=terms,
    )


@pytest.mark.parametrize(
    ("cka", "local_heads", "outcome"),
    [
        # local beats global by 0.40 and the CKA falls at every step
        ([0.80, 0.60, 0.50, 0.40], 1, "holds"),
        # ahead by 0.40 but not monotone (rank correlation -0.4): one part of two
        ([0.80, 0.30, 0.90, 0.40], 1, "partly holds"),
        ([0.40, 0.50, 0.60, 0.70], 2, "does not hold"),  # rises: both parts fail
        ([0.80, 0.60, 0.50, 0.40], 0, "not testable here"),  # no local head: no premise
    ],
)
def test_fig5_rule_needs_local_heads_a_margin_and_a_monotone_fall(cka, local_heads, outcome):
    verdict = local_heads_closer_to_cnn(
        _head_subsets(cka), [2.0, 6.0, 9.0, 12.0], local_heads, threshold="8.2 px"
    )
    assert verdict.outcome == outcome
    assert "most local heads (2.00 px)" in verdict.statistic
    if outcome == "not testable here":
        assert "no local head (none under 8.2 px)" in verdict.premise
    else:
        assert "bootstrap over 8 minibatches of 16 images" in verdict.statistic


def test_fig5_rule_refuses_mismatched_subsets():
    with pytest.raises(ValueError, match="one distance per head subset"):
        local_heads_closer_to_cnn(_head_subsets([0.5, 0.4]), [1.0], 1, threshold="8 px")


def test_rank_correlation_by_hand():
    assert rank_correlation([0, 1, 2, 3], [4, 3, 2, 1]) == pytest.approx(-1)
    assert rank_correlation([0, 1, 2, 3], [1, 2, 4, 3]) == pytest.approx(0.8)  # one swap
    assert rank_correlation([0, 1, 2], [5, 5, 5]) == 0.0
    with pytest.raises(ValueError):
        rank_correlation([0, 1], [0, 1, 2])


@pytest.mark.parametrize(
    ("lower", "upper", "outcome"),
    [
        ([1] * 6 + [0] * 10, [0] * 16, "holds"),  # local and global below, none local above
        ([1] * 6 + [0] * 10, [1] * 4 + [0] * 12, "partly holds"),  # a quarter local above
        ([0] * 16, [0] * 16, "does not hold"),  # no local head: "global above" is vacuous
        ([1] * 16, [1] * 16, "partly holds"),  # all local: only "local below" of 3 parts
    ],
)
def test_fig3_rule_local_and_global_below_global_above(lower, upper, outcome):
    verdict = local_then_global(
        np.array(lower, bool), np.array(upper, bool), threshold="8.2 px", source="heads"
    )
    assert verdict.outcome == outcome
    if not any(lower):
        assert "holds vacuously" in verdict.statistic


def test_fig3_rule_on_distances_splits_the_blocks_and_thresholds_in_pixels(zoo_shaped):
    vit = zoo_shaped("vit-cls")  # 8 blocks of 4 heads, 4-pixel patches on an 8x8 grid
    threshold = local_threshold_px(vit)
    distances = torch.full((8, 4), 2.0 * threshold, dtype=torch.float64)
    distances[:4, :2] = 0.5 * threshold  # half the lower half's heads local, none above
    verdict = heads_local_then_global(distances, vit, source="heads")
    assert verdict.outcome == "holds"
    assert f"under {threshold:.1f} px" in verdict.statistic
    distances[6, 0] = 0.5 * threshold  # one local head above: 1 of 16 (6%)
    by_hand = local_then_global(
        (distances[:4] < threshold).flatten().numpy(),
        (distances[4:] < threshold).flatten().numpy(),
        threshold=f"{threshold:.1f} px",
        source="heads",
    )
    verdict = heads_local_then_global(distances, vit, source="heads")
    assert (verdict.outcome, verdict.statistic) == (by_hand.outcome, by_hand.statistic)


def test_depth_rules_pick_the_layers_the_paper_names():
    assert middle_index(8) == 4 and middle_index(12) == 6 and middle_index(9) == 4
    assert lower_half_of(list("abcdefgh")) == list("abcd")
    assert upper_half_of(list("abcdefgh")) == list("efgh")
    assert lowest_quarter(12) == slice(0, 3) and lowest_quarter(3) == slice(0, 1)
    with pytest.raises(ValueError, match="at least 1 layer"):
        lowest_quarter(0)
    assert evenly_spaced(range(8), 4) == [0, 2, 4, 7]
    assert evenly_spaced(list("abcdefghi"), 4) == ["a", "c", "f", "i"]
    assert evenly_spaced(range(12), 2) == [0, 11] and evenly_spaced(range(5), 5) == [*range(5)]
    assert leading_blocks(12) == 5 and leading_blocks(8) == 3 and leading_blocks(3) == 1
    with pytest.raises(ValueError, match="at least 3 blocks"):
        leading_blocks(2)
    for bad in (1, 6):
        with pytest.raises(ValueError, match="count must be between 2 and the 5 layers"):
            evenly_spaced(range(5), bad)


def test_middle_blocks():
    assert list(middle_blocks(8)) == [2, 3, 4, 5]
    assert middle_mean([0, 0, 1, 2, 3, 4, 9, 9]) == pytest.approx(2.5)
    assert list(middle_blocks(12)) == [3, 4, 5, 6, 7, 8]
    with pytest.raises(ValueError):
        middle_blocks(1)


@pytest.mark.parametrize(
    ("estimate", "outcome"),
    [
        (est(0.95, 0.92, 0.97), "holds"),
        (est(0.9, 0.85, 0.93), "partly holds"),
        (est(0.85, 0.75, 0.9), "does not hold"),
    ],
)
def test_very_similar_reads_cka_against_stated_levels(estimate, outcome):
    assert very_similar("lower half", estimate).outcome == outcome


@pytest.mark.parametrize(
    ("accuracy", "distances", "outcome"),
    [
        # less data costs 20 points and the lowest heads are 4 px further: holds
        (
            {900: (0.7, 2048), 30000: (0.9, 2048)},
            {900: [14, 15, 16, 15], 30000: [10, 11, 12, 11]},
            "holds",
        ),
        # the heads are no further with less data
        (
            {900: (0.7, 2048), 30000: (0.9, 2048)},
            {900: [10, 11, 12, 11], 30000: [14, 15, 16, 15]},
            "does not hold",
        ),
        # less data costs 2 points only: not the paper's regime
        (
            {900: (0.88, 2048), 30000: (0.9, 2048)},
            {900: [14, 15, 16, 15], 30000: [10, 11, 12, 11]},
            "not testable here",
        ),
        ({900: None, 30000: (0.9, 2048)}, {900: [14, 15], 30000: [10, 11]}, "not testable here"),
    ],
)
def test_fig4_rule_needs_a_data_axis_that_costs_accuracy(accuracy, distances, outcome):
    verdict = less_data_less_local(
        accuracy,
        {n: np.array(d, float) for n, d in distances.items()},
        margin=1.6,
        source="heads",
    )
    assert verdict.outcome == outcome
    assert "900 images" in verdict.statistic
    if accuracy[900] is not None and outcome == "not testable here":
        assert "less data does not clearly hurt here" in verdict.premise


@pytest.mark.parametrize(
    ("vit", "resnet", "outcome"),
    [
        ([0.5, 0.6, 0.7, 0.8], [0.3, 0.4, 0.5, 0.9], "holds"),  # middle: 0.65 vs 0.45
        ([0.5, 0.46, 0.46, 0.8], [0.3, 0.45, 0.45, 0.9], "partly holds"),  # ahead by 1 point
        ([0.3, 0.4, 0.5, 0.6], [0.5, 0.6, 0.7, 0.8], "does not hold"),
        ([0.1, 0.12, 0.13, 0.1], [0.1, 0.12, 0.11, 0.1], "not testable here"),  # near chance
    ],
)
def test_stronger_intermediate_needs_probes_that_read_the_task(vit, resnet, outcome, probe_result):
    jitter = np.array([-0.002, -0.001, 0.0, 0.001, 0.002])[:, None]  # five probe seeds
    verdict = stronger_intermediate(
        ("vit-large", probe_result(np.array(vit) + jitter)),
        ("resnet", probe_result(np.array(resnet) + jitter)),
        chance=0.1,
        source="one training seed per model",
    )
    assert verdict.outcome == outcome
    assert "vit-large minus resnet" in verdict.statistic
    if outcome == "not testable here":
        assert "do not read this task" in verdict.premise


def _diagonal_result(diagonal, *, batches=6, jitter=0.005, seed=0):
    """A cross-model CKAResult whose batches have CKA ``diagonal + noise`` block by block."""
    from vitlens.analyses.compare import CKAResult

    rng = np.random.default_rng(seed)
    size = len(diagonal)
    cross = np.zeros((batches, size, size))
    cross[:, np.arange(size), np.arange(size)] = np.asarray(diagonal) + jitter * (
        rng.standard_normal((batches, size))
    )
    names = [f"blocks.{i}" for i in range(size)]
    terms = (cross, np.ones((batches, size)), np.ones((batches, size)))
    return CKAResult(cross.mean(0), names, names, "a", "b", 64 * batches, 64, terms)


@pytest.mark.parametrize(
    ("least", "most", "seed", "outcome"),
    [
        # lower very similar, upper far, and further than another seed's: holds
        ([0.95, 0.94, 0.6, 0.5], [0.97, 0.96, 0.9, 0.85], [0.97, 0.96, 0.9, 0.88], "holds"),
        # another seed drifts as far in the upper layers: the control fails
        ([0.95, 0.94, 0.6, 0.5], [0.97, 0.96, 0.9, 0.85], [0.97, 0.96, 0.6, 0.5], "partly holds"),
        # without a seed: the gap must grow as the data shrink
        ([0.95, 0.94, 0.6, 0.5], [0.97, 0.96, 0.9, 0.85], None, "holds"),
        ([0.6, 0.6, 0.7, 0.7], [0.97, 0.96, 0.9, 0.85], None, "does not hold"),
    ],
)
def test_fig12_rule_lower_very_similar_upper_drifting_beyond_seed_noise(least, most, seed, outcome):
    verdict = less_data_upper_layers_drift(
        _diagonal_result(least),
        _diagonal_result(most, seed=1),
        None if seed is None else _diagonal_result(seed, seed=2),
        names=("900 images", "9,000"),
    )
    assert verdict.outcome == outcome
    assert ("another seed" in verdict.statistic) == (seed is not None)


def test_field_estimate_resamples_the_same_images_in_every_field():
    rng = np.random.default_rng(0)
    a = rng.random((12, 4, 4))
    b = a + 0.5  # paired: the same images, shifted
    estimate = field_estimate(lambda x, y: float(y.mean() - x.mean()), a, b)
    assert estimate.value == pytest.approx(0.5)
    assert estimate.low == pytest.approx(0.5) and estimate.high == pytest.approx(0.5)
    spread = field_estimate(lambda x: float(x.mean()), a)
    assert spread.low < a.mean() < spread.high and "bootstrap over 12 images" in spread.source
    with pytest.raises(ValueError, match="same images"):
        field_estimate(lambda x, y: 0.0, a, b[:5])


@pytest.mark.parametrize(
    ("without", "outcome"),
    [
        ({2: (0.80, 2048), 6: (0.94, 2048)}, "holds"),  # block 2 is a middle block of 8
        ({3: (0.93, 2048)}, "partly holds"),  # 2 points down: the direction, not the size
        ({4: (0.97, 2048)}, "does not hold"),
        ({0: (0.80, 2048), 7: (0.80, 2048)}, "not testable here"),  # no middle block
    ],
)
def test_fig8_accuracy_rule_counts_middle_blocks_only(without, outcome):
    verdict = middle_block_skips_cost_accuracy((0.95, 2048), without, depth=8)
    assert verdict.outcome == outcome
    assert ("block 6" in verdict.statistic) is False  # an upper block never enters


def test_fig8_accuracy_rule_needs_the_compared_models_trained_to_convergence():
    without = {2: (0.70, 2048), 6: (0.85, 2048)}
    rising = middle_block_skips_cost_accuracy(
        (0.99, 2048), without, depth=8, still_rising={2: 0.014, 6: 0.06}
    )
    assert rising.outcome == "not testable here"
    assert "block 2 had not converged" in rising.premise and "1.4%" in rising.premise
    assert "block 6" not in rising.premise  # not a middle block: not compared
    settled = middle_block_skips_cost_accuracy(
        (0.99, 2048), without, depth=8, still_rising={2: 0.004, 6: 0.06}
    )
    assert settled.outcome == "holds"


def test_training_gain_reads_the_manifests_held_out_history():
    from vitlens.book.verdicts import training_gain
    from vitlens.models import read_manifest
    from vitlens.training.zoo import final_stage_gain

    assert training_gain("vit-pt") == final_stage_gain(read_manifest()["vit-pt"]["history"])
    assert training_gain("vit-cls") is None  # zoo v1 logged no held-out history
    assert training_gain("not-a-model") is None
