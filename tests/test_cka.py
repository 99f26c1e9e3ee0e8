"""CKA estimators against formulas written out in NumPy, float64, in this file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens import MinibatchCKA, linear_cka, rbf_cka
from vitlens.core.cka import rounding_tolerance

# ----------------------------------------------------------------- reference formulas


def ref_hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l @ h)) / (n - 1) ** 2


def ref_hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012), Eq. 5, term by term."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    term1 = np.trace(kt @ lt)
    term2 = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    term3 = 2 / (n - 2) * (one @ kt @ lt @ one)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def ref_cka(k: np.ndarray, l: np.ndarray, unbiased: bool) -> float:
    hsic = ref_hsic_unbiased if unbiased else ref_hsic_biased
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def ref_linear_gram(x: np.ndarray) -> np.ndarray:
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    return x @ x.T


def ref_rbf_gram(x: np.ndarray, threshold: float) -> np.ndarray:
    """Kornblith et al.'s gram_rbf."""
    dot = ref_linear_gram(x)
    norms = np.diag(dot)
    sq = -2 * dot + norms[:, None] + norms[None, :]
    return np.exp(-sq / (2 * threshold**2 * np.median(sq)))


def ref_minibatch_cka(batches_a, batches_b) -> np.ndarray:
    """Sum over batches of n_b * HSIC_1, then CKA; one layer pair at a time."""
    la, lb = len(batches_a[0]), len(batches_b[0])
    cross, sa, sb = np.zeros((la, lb)), np.zeros(la), np.zeros(lb)
    for feats_a, feats_b in zip(batches_a, batches_b, strict=True):
        grams_a = [ref_linear_gram(f) for f in feats_a]
        grams_b = [ref_linear_gram(f) for f in feats_b]
        n = grams_a[0].shape[0]
        for i, k in enumerate(grams_a):
            sa[i] += n * ref_hsic_unbiased(k, k)
            for j, l in enumerate(grams_b):
                cross[i, j] += n * ref_hsic_unbiased(k, l)
        for j, l in enumerate(grams_b):
            sb[j] += n * ref_hsic_unbiased(l, l)
    return cross / np.sqrt(np.outer(sa, sb))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_orthogonal(d: int, rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


# ----------------------------------------------------------------- full batch


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("d", [5, 80])  # feature-space path (d < n) and Gram path (d >= n)
def test_linear_cka_matches_reference(rng, debiased, d):
    x = rng.normal(size=(40, d))
    y = x @ rng.normal(size=(d, 7)) + rng.normal(size=(40, 7))
    expected = ref_cka(ref_linear_gram(x), ref_linear_gram(y), debiased)
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
def test_rbf_cka_matches_kornblith_reference(rng, debiased, threshold):
    x = rng.normal(size=(30, 6))
    y = np.tanh(x @ rng.normal(size=(6, 4)))
    expected = ref_cka(ref_rbf_gram(x, threshold), ref_rbf_gram(y, threshold), debiased)
    got = rbf_cka(x, y, threshold=threshold, debiased=debiased)
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("fn", [linear_cka, rbf_cka])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_a_representation_with_itself_is_one(rng, fn, debiased):
    x = rng.normal(size=(25, 12))
    assert fn(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("fn", [linear_cka, rbf_cka])
@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_transform_and_isotropic_scaling(rng, fn, debiased):
    x = rng.normal(size=(30, 10))
    y = np.maximum(x @ rng.normal(size=(10, 8)), 0)
    base = fn(x, y, debiased=debiased)
    transformed = 3.7 * x @ random_orthogonal(10, rng)
    assert fn(transformed, y, debiased=debiased) == pytest.approx(base, rel=1e-9)
    assert base < 0.999  # the invariance is not vacuous


def test_not_invariant_to_general_invertible_linear_map(rng):
    x = rng.normal(size=(60, 10))
    y = np.maximum(x @ rng.normal(size=(10, 8)), 0)
    stretch = np.diag(np.geomspace(1.0, 100.0, 10)) @ random_orthogonal(10, rng)
    assert np.linalg.matrix_rank(stretch) == 10
    assert abs(linear_cka(x @ stretch, y) - linear_cka(x, y)) > 0.05


@pytest.mark.parametrize("fn", [linear_cka, rbf_cka])
def test_symmetric(rng, fn):
    x, y = rng.normal(size=(20, 9)), rng.normal(size=(20, 3))
    assert fn(x, y) == pytest.approx(fn(y, x), rel=1e-12)
    assert fn(x, y, debiased=True) == pytest.approx(fn(y, x, debiased=True), rel=1e-12)


def test_debiased_cka_of_independent_features_is_near_zero_and_beats_biased():
    rng = np.random.default_rng(1)
    biased, debiased = [], []
    for _ in range(20):
        x, y = rng.normal(size=(40, 300)), rng.normal(size=(40, 300))
        biased.append(linear_cka(x, y))
        debiased.append(linear_cka(x, y, debiased=True))
    # With d >> n, biased CKA of independent features is large (about 0.9 here).
    assert np.mean(biased) > 0.5
    assert abs(np.mean(debiased)) < 0.02
    assert max(abs(v) for v in debiased) < min(biased)


def test_accepts_tensors_and_flattens_per_example(rng):
    x = rng.normal(size=(12, 2, 3, 4))
    y = rng.normal(size=(12, 5))
    from_numpy = linear_cka(x, y)
    from_torch = linear_cka(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    assert from_torch == pytest.approx(from_numpy, rel=1e-5)
    assert linear_cka(x, y) == pytest.approx(linear_cka(x.reshape(12, -1), y), rel=1e-12)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.ones((5, 3)), np.ones((6, 3)), "same examples"),
        (np.zeros(5), np.zeros((5, 2)), "shape"),
        (np.full((5, 2), np.nan), np.zeros((5, 2)), "NaN or Inf"),
        (np.zeros((5, 2)), np.array([[np.inf, 0]] * 5), "NaN or Inf"),
        ("not an array", np.zeros((5, 2)), "must be a torch.Tensor"),
    ],
)
def test_full_batch_bad_input_raises(x, y, message):
    with pytest.raises((ValueError, TypeError), match=message):
        linear_cka(x, y)


def test_debiased_needs_more_than_three_examples(rng):
    x = rng.normal(size=(3, 4))
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(x, x, debiased=True)
    with pytest.raises(ValueError, match="threshold"):
        rbf_cka(rng.normal(size=(8, 2)), rng.normal(size=(8, 2)), threshold=0)


# ----------------------------------------------------------------- minibatch


def make_batches(rng, sizes, dims, dtype=np.float64):
    return [[rng.normal(size=(n, *d)).astype(dtype) for d in dims] for n in sizes]


def to_torch(batches):
    return [[torch.from_numpy(f) for f in feats] for feats in batches]


def test_minibatch_cka_equals_numpy_reference_in_float64(rng):
    batches_a = make_batches(rng, [16] * 3, [(5, 4), (7,), (30,)])
    batches_b = [
        [
            f[:, :3] @ rng.normal(size=(3, 9)) + 0.5 * rng.normal(size=(16, 9)),
            rng.normal(size=(16, 2)),
        ]
        for f in (b[1] for b in batches_a)
    ]
    cka = MinibatchCKA()
    for feats_a, feats_b in zip(to_torch(batches_a), to_torch(batches_b), strict=True):
        cka.update(feats_a, feats_b)
    got = cka.compute()
    assert got.dtype == torch.float64 and got.shape == (3, 2)
    expected = ref_minibatch_cka(batches_a, batches_b)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-8, atol=0)


def test_self_comparison_reuses_grams_and_matches_reference(rng):
    batches = make_batches(rng, [12, 12], [(6,), (3, 3), (20,)])
    cka = MinibatchCKA()
    for feats in to_torch(batches):
        cka.update(feats)
    got = cka.compute().numpy()
    np.testing.assert_allclose(got, ref_minibatch_cka(batches, batches), rtol=1e-8)
    np.testing.assert_allclose(np.diag(got), 1.0, rtol=1e-12)
    np.testing.assert_allclose(got, got.T, rtol=1e-12)


def test_batches_of_different_sizes_are_weighted_by_their_size(rng):
    batches = make_batches(rng, [40, 9, 17], [(8,), (5,)])
    cka = MinibatchCKA()
    for feats in to_torch(batches):
        cka.update(feats[:1], feats[1:])
    expected = ref_minibatch_cka([b[:1] for b in batches], [b[1:] for b in batches])
    np.testing.assert_allclose(cka.compute().numpy(), expected, rtol=1e-8)
    assert cka.num_examples == 66 and cka.num_batches == 3


def test_stacked_batch_terms_resum_to_the_estimate(rng):
    cka = MinibatchCKA()
    with pytest.raises(RuntimeError, match="before any update"):
        cka.stacked_batch_terms()
    for n in (16, 24, 16):
        cka.update(
            [rng.standard_normal((n, 5)), rng.standard_normal((n, 3))],
            [rng.standard_normal((n, 4))],
        )
    cross, self_a, self_b = cka.stacked_batch_terms()
    assert cross.shape == (3, 2, 1) and self_a.shape == (3, 2) and self_b.shape == (3, 1)
    resummed = cross.sum(0) / np.sqrt(self_a.sum(0)[:, None] * self_b.sum(0)[None, :])
    np.testing.assert_allclose(resummed, cka.compute().numpy(), atol=1e-12)


def test_one_batch_equals_full_batch_debiased_cka(rng):
    x = rng.normal(size=(50, 20))
    y = np.tanh(x @ rng.normal(size=(20, 30)))
    cka = MinibatchCKA()
    cka.update([torch.from_numpy(x)], [torch.from_numpy(y)])
    assert cka.compute().item() == pytest.approx(linear_cka(x, y, debiased=True), rel=1e-10)


def test_negative_values_are_not_clamped():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(8, 50)), rng.normal(size=(8, 50))
    cka = MinibatchCKA()
    cka.update([torch.from_numpy(x)], [torch.from_numpy(y)])
    value = cka.compute().item()
    assert value < 0
    assert value == pytest.approx(ref_cka(ref_linear_gram(x), ref_linear_gram(y), True), rel=1e-8)


def test_float32_features_with_large_offset_keep_float64_level_accuracy(rng):
    """Centring before the float32 Gram avoids catastrophic cancellation."""
    batches = [
        [
            (100.0 + rng.normal(size=(64, 2000))).astype(np.float32),
            (np.abs(rng.normal(size=(64, 500))) * 30).astype(np.float32),
        ]
        for _ in range(2)
    ]
    cka = MinibatchCKA()
    for feats in to_torch(batches):
        cka.update(feats)
    reference = ref_minibatch_cka(
        [[f.astype(np.float64) for f in b] for b in batches],
        [[f.astype(np.float64) for f in b] for b in batches],
    )
    assert np.max(np.abs(cka.compute().numpy() - reference)) <= 1e-4


def test_constant_layer_gives_nan_with_a_warning(rng):
    cka = MinibatchCKA()
    cka.update([torch.ones(10, 3), torch.from_numpy(rng.normal(size=(10, 3)))])
    with pytest.warns(RuntimeWarning, match="constant features"):
        matrix = cka.compute()
    assert torch.isnan(matrix[0]).all() and matrix[1, 1].item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("feats_a", "feats_b", "message"),
    [
        ([torch.randn(3, 4)], None, "more than 3 examples"),
        ([torch.randn(8, 4)], [torch.randn(9, 4)], "same examples"),
        ([torch.randn(8, 4), torch.randn(7, 4)], None, "same n"),
        ([torch.full((8, 4), float("nan"))], None, "NaN or Inf"),
        ([torch.randn(8, 4)], [torch.full((8, 4), float("inf"))], "NaN or Inf"),
        ([], None, "non-empty sequence"),
        (torch.randn(8, 4), None, "non-empty sequence"),
    ],
)
def test_minibatch_bad_input_raises(feats_a, feats_b, message):
    with pytest.raises(ValueError, match=message):
        MinibatchCKA().update(feats_a, feats_b)


def test_overflowing_features_are_reported():
    cka = MinibatchCKA()
    huge = torch.randn(8, 4) * 1e30  # finite in float32, but its Gram overflows
    with pytest.raises(ValueError, match="overflow"):
        cka.update([huge])


def test_layer_count_must_not_change_between_batches():
    cka = MinibatchCKA()
    cka.update([torch.randn(8, 4), torch.randn(8, 2)])
    with pytest.raises(ValueError, match="same layers every batch"):
        cka.update([torch.randn(8, 4)])
    with pytest.raises(RuntimeError, match="before any update"):
        MinibatchCKA().compute()


@pytest.mark.parametrize("n", [64, 101])  # the Gram is assembled from row blocks from n = 64
def test_block_assembled_gram_matches_reference(rng, n):
    batches = make_batches(rng, [n], [(40,), (7, 3)])
    cka = MinibatchCKA()
    cka.update(*to_torch(batches))
    np.testing.assert_allclose(
        cka.compute().numpy(), ref_minibatch_cka(batches, batches), rtol=1e-10
    )


# ----------------------------------------- degenerate features, NumPy input (issue #16)


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
