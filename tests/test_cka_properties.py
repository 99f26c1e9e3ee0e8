"""Property-based tests (hypothesis) of the CKA estimators and the few-shot probe.

CKA: symmetry, invariance to orthogonal transforms, isotropic scaling (1e-150 .. 1e150)
and translation, bounds, one minibatch equal to the full-batch debiased estimator, and
accumulation over minibatches equal to an independent implementation of Song et al.'s
unbiased HSIC. Probe: accuracy in [0, 1], invariance to renaming the classes and to
repeating the test set, determinism. Features are drawn from a seed so that every example
is a well-conditioned matrix (columns of very different scales, low-rank structure).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vitlens.analyses.probes import fewshot_linear_probe
from vitlens.core.cka import MinibatchCKA, linear_cka, rbf_cka

FAST = settings(max_examples=40, deadline=None, derandomize=True)


def features(seed: int, n: int, d: int) -> np.ndarray:
    """``(n, d)`` float64 features: a low-rank part plus noise, columns scaled 1e-2..1e2."""
    rng = np.random.default_rng(seed)
    rank = max(1, d // 2)
    x = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    x += 0.3 * rng.standard_normal((n, d))
    return x * 10 ** rng.uniform(-2, 2, d) + rng.standard_normal(d) * 5


def related(seed: int, x: np.ndarray, d: int) -> np.ndarray:
    """Features partly determined by ``x`` (so CKA is neither 0 nor 1)."""
    rng = np.random.default_rng(seed + 1)
    return np.tanh(x @ rng.standard_normal((x.shape[1], d)) / np.abs(x).max()) + 0.5 * (
        rng.standard_normal((x.shape[0], d))
    )


def orthogonal(seed: int, d: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed + 2).standard_normal((d, d)))
    return q


shapes = st.tuples(
    st.integers(0, 2**31), st.integers(6, 40), st.integers(1, 24), st.integers(1, 24)
)


@FAST
@given(shapes, st.booleans())
def test_cka_is_symmetric(shape, debiased):
    seed, n, dx, dy = shape
    x = features(seed, n, dx)
    y = related(seed, x, dy)
    for cka in (linear_cka, rbf_cka):
        assert cka(x, y, debiased=debiased) == pytest.approx(
            cka(y, x, debiased=debiased), abs=1e-12
        )


@FAST
@given(shapes, st.booleans(), st.floats(-150, 150))
def test_cka_is_invariant_to_rotation_scale_and_translation(shape, debiased, log_scale):
    seed, n, dx, dy = shape
    x = features(seed, n, dx)
    y = related(seed, x, dy)
    moved = (x @ orthogonal(seed, dx) + 7.0) * 10.0**log_scale
    for cka in (linear_cka, rbf_cka):
        want = cka(x, y, debiased=debiased)
        assert cka(moved, y, debiased=debiased) == pytest.approx(want, abs=1e-9)


@FAST
@given(shapes)
def test_cka_bounds_and_self_similarity(shape):
    seed, n, dx, dy = shape
    x = features(seed, n, dx)
    y = related(seed, x, dy)
    for cka in (linear_cka, rbf_cka):
        assert -1e-12 <= cka(x, y) <= 1 + 1e-12
        assert cka(x, y, debiased=True) <= 1 + 1e-12
        assert cka(x, x) == pytest.approx(1.0, abs=1e-12)
        assert cka(x, x, debiased=True) == pytest.approx(1.0, abs=1e-12)


@FAST
@given(shapes)
def test_one_minibatch_equals_the_full_batch_debiased_cka(shape):
    seed, n, dx, dy = shape
    x = features(seed, n, dx)
    y = related(seed, x, dy)
    cka = MinibatchCKA()
    cka.update([torch.from_numpy(x), torch.from_numpy(y)])
    matrix = cka.compute()
    assert matrix[0, 1].item() == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-9)
    assert matrix[0, 0].item() == pytest.approx(1.0, abs=1e-12)


def song_unbiased_hsic(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al. (2012), eq. 5, written out: an independent reference."""
    n = x.shape[0]
    k, l_ = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l_, 0)
    one = np.ones(n)
    value = (
        np.trace(k @ l_)
        + (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one @ k @ l_ @ one)
    )
    return value / (n * (n - 3))


@FAST
@given(st.integers(0, 2**31), st.lists(st.integers(4, 20), min_size=1, max_size=4))
def test_accumulation_equals_the_weighted_sum_of_unbiased_hsic(seed, sizes):
    dx, dy = 5, 7
    cka = MinibatchCKA()
    sums = np.zeros(3)  # HSIC(x, y), HSIC(x, x), HSIC(y, y), weighted by batch size
    for b, n in enumerate(sizes):
        x = features(seed + b, n, dx)
        y = related(seed + b, x, dy)
        cka.update([torch.from_numpy(x)], [torch.from_numpy(y)])
        sums += n * np.array(
            [song_unbiased_hsic(x, y), song_unbiased_hsic(x, x), song_unbiased_hsic(y, y)]
        )
    want = sums[0] / np.sqrt(sums[1] * sums[2])
    assert cka.compute().item() == pytest.approx(want, rel=1e-8, abs=1e-10)
    assert cka.num_examples == sum(sizes) and cka.num_batches == len(sizes)


@FAST
@given(st.integers(0, 2**31), st.integers(2, 4), st.integers(1, 3), st.integers(0, 2**10))
def test_probe_accuracy_is_bounded_and_does_not_depend_on_class_names(seed, classes, shots, draw):
    rng = np.random.default_rng(seed)
    per_class, dim = 2 * shots + 2, 6
    centres = rng.standard_normal((classes, dim)) * rng.uniform(0.2, 3)
    labels = torch.arange(classes).repeat_interleave(per_class)
    x = torch.from_numpy(centres[labels.numpy()] + rng.standard_normal((len(labels), dim)))
    test_labels = torch.from_numpy(rng.integers(0, classes, 15))
    test = torch.from_numpy(centres[test_labels.numpy()] + rng.standard_normal((15, dim)))
    kwargs = {"shots": shots, "seeds": 2, "seed": draw}
    result = fewshot_linear_probe(x, labels, test, test_labels, **kwargs)
    assert ((result.accuracy >= 0) & (result.accuracy <= 1)).all()
    again = fewshot_linear_probe(x, labels, test, test_labels, **kwargs)
    assert torch.equal(result.accuracy, again.accuracy)
    rename = torch.from_numpy(rng.permutation(classes))
    renamed = fewshot_linear_probe(x, rename[labels], test, rename[test_labels], **kwargs)
    torch.testing.assert_close(renamed.accuracy, result.accuracy)
    torch.testing.assert_close(renamed.l2, result.l2)
    doubled = fewshot_linear_probe(
        x, labels, torch.cat([test, test]), torch.cat([test_labels, test_labels]), **kwargs
    )
    torch.testing.assert_close(doubled.accuracy, result.accuracy)
