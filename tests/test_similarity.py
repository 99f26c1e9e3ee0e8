"""Procrustes, SVCCA and PWCCA against formulas written out in NumPy, float64, in this file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens.core import similarity as sim
from vitlens.core.cka import centered_linear_gram, linear_cka, rounding_tolerance
from vitlens.core.similarity import (
    SIMILARITY_MEASURES,
    procrustes_from_grams,
    procrustes_similarity,
    pwcca,
    similarity,
    svcca,
)

MEASURES = sorted(SIMILARITY_MEASURES)
BOUNDED = [m for m in MEASURES if m != "linear_cka_debiased"]  # unbiased CKA may be < 0

# ----------------------------------------------------------------- reference formulas


def centred(x: np.ndarray) -> np.ndarray:
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    return x - x.mean(axis=0)


def ref_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    """Ding et al. (2021): nuclear norm of X^T Y for centred, unit-Frobenius X and Y."""
    x, y = centred(x), centred(y)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    return float(np.linalg.svd(x.T @ y, compute_uv=False).sum())


def inv_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v / np.sqrt(w)) @ v.T


def ref_cca(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Textbook CCA through covariances: correlations and x's unit canonical variates.

    ``Cxx^{-1/2} Cxy Cyy^{-1/2} = U diag(rho) V^T``; x's canonical weights are
    ``Cxx^{-1/2} U`` and its variates ``X Cxx^{-1/2} U`` (unit norm by construction).
    """
    x, y = centred(x), centred(y)
    wx = inv_sqrt(x.T @ x)
    u, rho, _ = np.linalg.svd(wx @ (x.T @ y) @ inv_sqrt(y.T @ y), full_matrices=False)
    return rho, x @ wx @ u


def ref_svcca(x: np.ndarray, y: np.ndarray, keep: float) -> float:
    """Raghu et al. (2017): project onto the top singular directions keeping ``keep`` of the
    variance, then mean CCA correlation by the covariance formula."""

    def reduce(a: np.ndarray) -> np.ndarray:
        a = centred(a)
        _, s, vt = np.linalg.svd(a, full_matrices=False)
        fraction = np.cumsum(s**2) / np.sum(s**2)
        k = next(i + 1 for i, f in enumerate(fraction) if f >= keep - 1e-12)
        return a @ vt[:k].T

    rho, _ = ref_cca(reduce(x), reduce(y))
    return float(rho.mean())


def ref_pwcca(x: np.ndarray, y: np.ndarray) -> float:
    """Morcos et al. (2018): alpha_i = sum_j |<h_i, x_j>|, normalised; sum alpha_i rho_i."""
    rho, variates = ref_cca(x, y)
    weights = np.abs(variates.T @ centred(x)).sum(axis=1)
    return float((weights / weights.sum()) @ rho)


def orthonormal_centred(n: int, k: int, seed: int) -> np.ndarray:
    """``(n, k)`` orthonormal columns, each orthogonal to the all-ones vector."""
    q, _ = np.linalg.qr(centred(np.random.default_rng(seed).normal(size=(n, k))))
    return q


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def related_pair(n: int, dx: int, dy: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two representations sharing a few latent directions, with offsets and noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    x = z @ rng.normal(size=(3, dx)) + 0.5 * rng.normal(size=(n, dx)) + 4.0
    y = z @ rng.normal(size=(3, dy)) + 0.5 * rng.normal(size=(n, dy)) - 2.0
    return x, y


# ----------------------------------------------------------------- agreement with references


@pytest.mark.parametrize(("n", "dx", "dy"), [(60, 8, 5), (25, 70, 40), (30, 100, 6), (12, 3, 3)])
def test_procrustes_matches_direct_svd_and_grams(n, dx, dy):
    x, y = related_pair(n, dx, dy, seed=n + dx)
    expected = ref_procrustes(x, y)
    assert procrustes_similarity(x, y) == pytest.approx(expected, abs=1e-12)
    # Grams of uncentred features: procrustes_from_grams centres them itself.
    assert procrustes_from_grams(x @ x.T, y @ y.T) == pytest.approx(expected, abs=1e-10)
    xc, yc = centred(x), centred(y)
    assert procrustes_from_grams(xc @ xc.T, yc @ yc.T) == pytest.approx(expected, abs=1e-10)
    # ... and the shifted float64 Grams a streaming loop holds (vitlens.core.cka).
    kx = centered_linear_gram(torch.from_numpy(x))
    ky = centered_linear_gram(torch.from_numpy(y))
    assert procrustes_from_grams(kx, ky) == pytest.approx(expected, abs=1e-10)


def test_procrustes_is_one_minus_half_the_procrustes_distance():
    """``min_R ||X - Y R||_F^2 = 2 - 2 sim`` over orthogonal R, with R from the SVD."""
    x, y = related_pair(40, 6, 6, seed=3)
    xc, yc = centred(x), centred(y)
    xc, yc = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    u, _, vt = np.linalg.svd(yc.T @ xc)
    best = np.linalg.norm(xc - yc @ (u @ vt)) ** 2
    value = procrustes_similarity(x, y)
    assert best == pytest.approx(2 - 2 * value, abs=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(20):  # no other rotation does better
        other = np.linalg.norm(xc - yc @ random_orthogonal(6, rng)) ** 2
        assert other >= best - 1e-12


def test_procrustes_closed_form_on_orthogonal_features():
    e = orthonormal_centred(30, 3, seed=1)
    s1, s2, t1, t2 = 3.0, 1.5, 2.0, 0.7
    x = np.stack([s1 * e[:, 0], s2 * e[:, 1]], axis=1) + 5.0
    y = np.stack([t1 * e[:, 0], t2 * e[:, 2]], axis=1) - 1.0
    expected = s1 * t1 / (np.hypot(s1, s2) * np.hypot(t1, t2))
    assert procrustes_similarity(x, y) == pytest.approx(expected, abs=1e-13)
    assert procrustes_from_grams(x @ x.T, y @ y.T) == pytest.approx(expected, abs=1e-12)


def test_cca_closed_form_on_orthogonal_features():
    """span x = {e1, e2}, span y = {e1, e3}: correlations 1 and 0; x's variates e1, e2."""
    e = orthonormal_centred(30, 3, seed=2)
    s1, s2 = 3.0, 1.0
    x = np.stack([s1 * e[:, 0], s2 * e[:, 1]], axis=1) + 2.0
    y = np.stack([0.5 * e[:, 0] + e[:, 2], e[:, 2]], axis=1)
    assert svcca(x, y, keep=1.0) == pytest.approx(0.5, abs=1e-12)
    assert pwcca(x, y) == pytest.approx(s1 / (s1 + s2), abs=1e-12)


def test_svcca_reduction_keeps_the_variance_fraction():
    """x has variances 100, 1, 1e-4 along e1, e2, e3; y spans {e2, e3} evenly."""
    e = orthonormal_centred(40, 3, seed=4)
    x = np.stack([10 * e[:, 0], e[:, 1], 0.01 * e[:, 2]], axis=1)
    y = np.stack([e[:, 1] + e[:, 2], e[:, 1] - e[:, 2]], axis=1)
    assert svcca(x, y, keep=1.0) == pytest.approx(1.0, abs=1e-12)  # span y inside span x
    assert svcca(x, y, keep=0.99) == pytest.approx(0.0, abs=1e-12)  # x keeps e1 only
    assert svcca(x, y, keep=0.995) == pytest.approx(0.5, abs=1e-12)  # e1, e2 vs e2, e3


@pytest.mark.parametrize("keep", [1.0, 0.99, 0.8])
def test_svcca_matches_covariance_formula(keep):
    x, y = related_pair(120, 12, 9, seed=5)
    assert svcca(x, y, keep=keep) == pytest.approx(ref_svcca(x, y, keep), abs=1e-10)


@pytest.mark.parametrize(("dx", "dy"), [(10, 6), (5, 12)])
def test_pwcca_matches_covariance_formula(dx, dy):
    x, y = related_pair(100, dx, dy, seed=dx)
    assert pwcca(x, y) == pytest.approx(ref_pwcca(x, y), abs=1e-10)
    assert pwcca(x, y) != pytest.approx(pwcca(y, x), abs=1e-3)  # weights come from x


def test_similarity_dispatches_to_each_measure():
    x, y = related_pair(50, 6, 4, seed=6)
    assert similarity(x, y, "procrustes") == procrustes_similarity(x, y)
    assert similarity(x, y, "svcca") == svcca(x, y)
    assert similarity(x, y, "pwcca") == pwcca(x, y)
    assert similarity(x, y, "linear_cka") == linear_cka(x, y)
    assert similarity(x, y, "linear_cka_debiased") == linear_cka(x, y, debiased=True)
    assert set(MEASURES) == {
        "linear_cka",
        "linear_cka_debiased",
        "rbf_cka",
        "procrustes",
        "svcca",
        "pwcca",
    }


# ----------------------------------------------------------------- properties


@pytest.mark.parametrize("measure", MEASURES)
def test_identical_inputs_give_one(measure):
    x, _ = related_pair(40, 7, 1, seed=7)
    assert similarity(x, x, measure) == pytest.approx(1.0, abs=1e-12)
    assert similarity(x.reshape(40, 7, 1), torch.from_numpy(x), measure) == pytest.approx(
        1.0, abs=1e-12
    )


@pytest.mark.parametrize("measure", MEASURES)
def test_bounded_in_unit_interval(measure):
    for seed, (n, dx, dy) in enumerate([(30, 4, 4), (50, 10, 3), (12, 2, 9), (40, 1, 1)]):
        rng = np.random.default_rng(seed)
        x, y = rng.normal(size=(n, dx)), rng.normal(size=(n, dy))
        value = similarity(x, y, measure)
        assert value <= 1.0
        assert value >= (0.0 if measure in BOUNDED else -1.0)


@pytest.mark.parametrize("measure", MEASURES)
def test_invariant_to_isotropic_scaling_and_translation(measure):
    x, y = related_pair(40, 6, 5, seed=8)
    base = similarity(x, y, measure)
    assert similarity(3.7 * x - 10, 0.02 * y + 1, measure) == pytest.approx(base, abs=1e-10)
    if measure in ("procrustes", "svcca", "pwcca"):  # rescaled before any product
        assert similarity(1e150 * x, 1e-150 * y, measure) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("measure", [m for m in MEASURES if m != "pwcca"])
def test_invariant_to_orthogonal_transforms(measure):
    x, y = related_pair(40, 6, 5, seed=9)
    rng = np.random.default_rng(1)
    rotated = similarity(x @ random_orthogonal(6, rng), y @ random_orthogonal(5, rng), measure)
    assert rotated == pytest.approx(similarity(x, y, measure), abs=1e-10)


def test_pwcca_invariances():
    """Any invertible map of y; permutations and sign flips of x's features, not rotations."""
    x, y = related_pair(60, 6, 5, seed=10)
    rng = np.random.default_rng(2)
    base = pwcca(x, y)
    assert pwcca(x, y @ rng.normal(size=(5, 5))) == pytest.approx(base, abs=1e-10)
    flipped = x[:, rng.permutation(6)] * np.array([1, -1, 1, 1, -1, -1])
    assert pwcca(flipped, y) == pytest.approx(base, abs=1e-10)
    assert pwcca(x @ random_orthogonal(6, rng), y) != pytest.approx(base, abs=1e-4)


def test_cca_is_invariant_to_invertible_maps_but_procrustes_and_cka_are_not():
    x, _ = related_pair(80, 6, 1, seed=11)
    rng = np.random.default_rng(3)
    # well-conditioned enough to be exact, anisotropic enough to matter: scales 1 to 20
    a = random_orthogonal(6, rng) @ np.diag([20.0, 8, 4, 2, 1, 1]) @ random_orthogonal(6, rng)
    mapped = x @ a
    assert svcca(x, mapped, keep=1.0) == pytest.approx(1.0, abs=1e-10)
    assert pwcca(x, mapped) == pytest.approx(1.0, abs=1e-10)
    assert procrustes_similarity(x, mapped) < 0.95
    assert linear_cka(x, mapped) < 0.95
    y = related_pair(80, 1, 5, seed=12)[1]
    b = random_orthogonal(5, rng) @ np.diag([6.0, 3, 2, 1, 1]) @ random_orthogonal(5, rng)
    base = svcca(x, y, keep=1.0)
    assert svcca(x @ a, y @ b, keep=1.0) == pytest.approx(base, abs=1e-10)
    assert pwcca(x, y @ b) == pytest.approx(pwcca(x, y), abs=1e-10)
    assert procrustes_similarity(x @ a, y @ b) != pytest.approx(
        procrustes_similarity(x, y), abs=1e-3
    )


def test_procrustes_from_float32_grams_with_float32_tolerance():
    """Grams computed in float32 (centered_linear_gram of float32 features) carry noise
    eigenvalues of ~1e-8 of the trace; the float32 tolerance removes them."""
    x, y = related_pair(64, 5, 40, seed=13)
    x32, y32 = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    kx, ky = centered_linear_gram(x32), centered_linear_gram(y32)
    assert kx.dtype == torch.float64
    value = procrustes_from_grams(kx, ky, tolerance=64 * rounding_tolerance(torch.float32))
    assert value == pytest.approx(procrustes_similarity(x32, y32), abs=1e-4)


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize("measure", MEASURES)
def test_mismatched_examples_are_refused(measure):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="same examples: x has 20 rows, y has 21"):
        similarity(rng.normal(size=(20, 3)), rng.normal(size=(21, 3)), measure)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("which", ["x", "y"])
def test_nan_features_are_refused(measure, which):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    (x if which == "x" else y)[4, 1] = np.nan
    with pytest.raises(ValueError, match=f"{which} contains 1 NaN or Inf"):
        similarity(x, y, measure)


def test_too_few_examples_and_constant_features_are_refused():
    with pytest.raises(ValueError, match="at least 2 examples, got n=1"):
        procrustes_similarity(np.ones((1, 3)), np.ones((1, 3)))
    x = np.random.default_rng(0).normal(size=(20, 3))
    for measure in ("procrustes", "svcca", "pwcca"):
        with pytest.raises(ValueError, match="y is constant over the examples"):
            similarity(x, np.full((20, 3), 7.0), measure)


def test_cca_refuses_as_many_dimensions_as_examples():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 19)), rng.normal(size=(20, 3))
    with pytest.raises(ValueError, match=r"x has 19 dimensions for n=20 examples"):
        pwcca(x, y)
    with pytest.raises(ValueError, match=r"y has 25 dimensions for n=20 examples.*svcca"):
        pwcca(y, rng.normal(size=(20, 25)))
    with pytest.raises(ValueError, match=r"variance has 19 dimensions for n=20.*lower keep"):
        svcca(rng.normal(size=(20, 40)), y, keep=1.0)
    assert 0 <= pwcca(rng.normal(size=(20, 18)), y) <= 1  # n = d + 2 is allowed


@pytest.mark.parametrize("keep", [0.0, -0.5, 1.01, float("nan")])
def test_svcca_refuses_keep_outside_unit_interval(keep):
    with pytest.raises(ValueError, match=r"keep is a fraction of variance in \(0, 1\]"):
        svcca(np.eye(10, 3), np.eye(10, 3), keep=keep)


def test_unknown_measure_lists_valid_names():
    x = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="unknown similarity measure 'cca'") as error:
        similarity(x, x, "cca")
    for name in MEASURES:
        assert name in str(error.value)


@pytest.mark.parametrize("measure", MEASURES)
def test_oversized_inputs_are_refused(measure, monkeypatch):
    monkeypatch.setattr(sim, "MAX_FULL_BATCH_ELEMENTS", 100)
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=(20, 5)), rng.normal(size=(20, 6))
    assert np.isfinite(similarity(small, small, measure))  # 100 elements: at the limit
    with pytest.raises(ValueError, match=r"y has n \* d = 20 \* 6 = 120 elements.*= 100"):
        similarity(small, large, measure)


def test_oversized_grams_are_refused(monkeypatch):
    monkeypatch.setattr(sim, "MAX_FULL_BATCH_ELEMENTS", 99)
    k = np.eye(10)
    with pytest.raises(ValueError, match=r"gram_x has n \* n = 10 \* 10 = 100 elements"):
        procrustes_from_grams(k, k)


def test_invalid_grams_are_refused():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    k = x @ x.T
    with pytest.raises(ValueError, match=r"square \(n, n\) Gram matrix"):
        procrustes_from_grams(x, k)
    with pytest.raises(ValueError, match="x has 12 rows, y has 11"):
        procrustes_from_grams(k, k[:11, :11])
    with pytest.raises(ValueError, match="not symmetric"):
        procrustes_from_grams(k + np.triu(np.ones((12, 12))), k)
    bad = k.copy()
    bad[2, 3] = np.inf
    with pytest.raises(ValueError, match="gram_y contains 1 NaN or Inf"):
        procrustes_from_grams(k, bad)
    v = centred(rng.normal(size=(12, 1)))
    indefinite = k - 10 * np.trace(k) * (v @ v.T) / (v.T @ v)
    with pytest.raises(ValueError, match=r"positive trace|not positive semidefinite"):
        procrustes_from_grams(indefinite, k)
    indefinite = k - 0.1 * np.trace(k) * (v @ v.T) / (v.T @ v)
    with pytest.raises(ValueError, match="gram_x is not positive semidefinite"):
        procrustes_from_grams(indefinite, k)
    with pytest.raises(ValueError, match="gram_y describes features constant"):
        procrustes_from_grams(k, np.full((12, 12), 3.0))
    with pytest.raises(ValueError, match="tolerance must be a non-negative number"):
        procrustes_from_grams(k, k, tolerance=-1.0)


# ----------------------------------------------------------------- many pairs, coordinates


@pytest.mark.parametrize("measure", MEASURES)
def test_grid_equals_every_pair_computed_alone(measure):
    rng = np.random.default_rng(11)
    base = rng.normal(size=(60, 5))
    xs = [np.tanh(base @ rng.normal(size=(5, d))) + 0.1 * rng.normal(size=(60, d)) for d in (3, 8)]
    ys = [*xs, rng.normal(size=(60, 4)), base[:, :2] ** 2]
    grid = sim.similarity_grid(xs, ys, measure)
    direct = np.array([[similarity(x, y, measure) for y in ys] for x in xs])
    assert grid.shape == (2, 4)
    np.testing.assert_allclose(grid, direct, rtol=0, atol=1e-12)
    itself = sim.similarity_grid(ys, None, measure)  # each unordered pair computed once
    direct = np.array([[similarity(x, y, measure) for y in ys] for x in ys])
    np.testing.assert_allclose(itself, direct, rtol=0, atol=1e-12)


def test_grid_refuses_unknown_measures_and_different_examples():
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="valid names"):
        sim.similarity_grid([x], [x], "cosine")
    with pytest.raises(ValueError, match="same examples"):
        sim.similarity_grid([x], [x[:10]], "procrustes")


@pytest.mark.parametrize("measure", [m for m in MEASURES if m != "pwcca"])
def test_principal_coordinates_keep_every_measure_on_any_subset(measure):
    """Wide features (d > n) and their (n, r) scores: the same value, on all rows or some."""
    rng = np.random.default_rng(12)
    base = rng.normal(size=(50, 6))
    x = np.tanh(base @ rng.normal(size=(6, 300))) + 3.0
    y = (base @ rng.normal(size=(6, 200))) ** 2
    px, py = sim.principal_coordinates(x), sim.principal_coordinates(y)
    assert px.shape[0] == 50 and px.shape[1] <= 49
    rows = np.arange(0, 50, 3)
    assert similarity(px, py, measure) == pytest.approx(similarity(x, y, measure), abs=1e-10)
    assert similarity(px[rows], py[rows], measure) == pytest.approx(
        similarity(x[rows], y[rows], measure), abs=1e-10
    )


def test_principal_coordinates_are_ordered_scores_of_the_centred_features():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(40, 5)) * np.array([5.0, 3.0, 2.0, 1.0, 0.5])
    scores = sim.principal_coordinates(x).numpy()
    variances = (scores**2).sum(0)
    assert np.all(np.diff(variances) <= 0)
    np.testing.assert_allclose(scores @ scores.T, centred(x) @ centred(x).T, atol=1e-10)
    with pytest.raises(ValueError, match="constant"):
        sim.principal_coordinates(np.ones((10, 3)))
