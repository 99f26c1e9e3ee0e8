"""Representation-similarity measures beside CKA: orthogonal Procrustes, SVCCA and PWCCA.

References:
    Ding, Denain & Steinhardt (2021), *Grounding Representation Similarity with Statistical
    Testing* (orthogonal Procrustes similarity and distance).
    Raghu, Gilmer, Yosinski & Sohl-Dickstein (2017), *SVCCA: Singular Vector Canonical
    Correlation Analysis for Deep Learning Dynamics and Interpretability*.
    Morcos, Raghu & Bengio (2018), *Insights on Representational Similarity in Neural
    Networks with Canonical Correlation* (projection-weighted CCA, PWCCA).
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited* (CKA; see ``vitlens.core.cka``).

Every measure takes two ``(n, ...)`` representations of the same n examples (tensors or NumPy
arrays, one row per example, flattened to ``(n, d)``), centres each feature over the
examples, computes in float64 and returns a Python float. :data:`SIMILARITY_MEASURES` maps a
name to each measure and :func:`similarity` looks one up by name.

Which measures can stream over minibatches: CKA can (:class:`vitlens.core.cka.MinibatchCKA`
sums unbiased HSIC estimates over minibatches, holding only one batch's ``(n_b, n_b)``
Grams). Procrustes cannot: its nuclear norm does not decompose over examples, so it needs
all n examples at once, but only through the ``(n, n)`` linear Grams of each layer, which
a streaming loop may already hold (:func:`procrustes_from_grams`). The CCA measures need the
full ``(n, d)`` feature matrices of both layers. A full-batch input above
:data:`MAX_FULL_BATCH_ELEMENTS` float64 elements is refused with an error rather than
exhausting memory.

Nothing here clamps a result silently: values that can only leave ``[0, 1]`` through
rounding are rounded back (at most ``UNIT_ROUNDING`` beyond the bound, documented per
function), and anything further out raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from vitlens.core.cka import (
    ArrayLike,
    as_feature_matrix,
    center_gram,
    check_finite,
    linear_cka,
    normalised_centred,
    rbf_cka,
    rbf_gram,
    rounding_tolerance,
)
from vitlens.core.ridge import eigh_without_subnormals

__all__ = [
    "MAX_FULL_BATCH_ELEMENTS",
    "SIMILARITY_MEASURES",
    "SYMMETRY_TOLERANCE",
    "UNIT_ROUNDING",
    "principal_coordinates",
    "procrustes_from_grams",
    "procrustes_similarity",
    "pwcca",
    "similarity",
    "similarity_grid",
    "svcca",
]

MAX_FULL_BATCH_ELEMENTS = 200_000_000
"""Largest ``n * d`` (or ``n * n`` for a Gram) accepted by a full-batch measure: 2e8 float64
elements, 1.6 GB per copy (each measure holds a few copies). Raise it deliberately if the
machine has the memory; the check reads this module attribute at call time."""

UNIT_ROUNDING = 1e-9
"""Excess beyond ``[0, 1]`` attributed to float64 rounding. A similarity that should lie in
``[0, 1]`` and lands within this of the interval is returned at the bound; one further out
means a bug and raises ``RuntimeError``."""

SYMMETRY_TOLERANCE = 1e-4
"""Largest relative asymmetry ``||K - K^T||_F / ||K||_F`` accepted for a Gram matrix
(measured: a float32 Gram of 200,000 features is within 5e-7 of the float64 one, so
rounding asymmetry stays far below this; a matrix that is not a Gram is usually far above)."""


# --------------------------------------------------------------------------- validation


def _check_size(x: torch.Tensor, name: str, measure: str) -> None:
    """Refuse ``x`` (already ``(n, d)``) above :data:`MAX_FULL_BATCH_ELEMENTS` elements."""
    elements = x.shape[0] * x.shape[1]
    if elements > MAX_FULL_BATCH_ELEMENTS:
        raise ValueError(
            f"{name} has n * d = {x.shape[0]} * {x.shape[1]} = {elements:,} elements, above "
            f"MAX_FULL_BATCH_ELEMENTS = {MAX_FULL_BATCH_ELEMENTS:,} (float64: "
            f"{8 * elements / 1e9:.1f} GB per copy); {measure} needs the whole matrix at once. "
            "Use fewer images, fewer features (e.g. average-pool the tokens or channels), "
            "MinibatchCKA for CKA (it streams), or raise "
            "vitlens.core.similarity.MAX_FULL_BATCH_ELEMENTS if the memory is there."
        )


def _check_n(n_x: int, n_y: int, measure: str, min_n: int = 2) -> None:
    if n_x != n_y:
        raise ValueError(f"x and y must describe the same examples: x has {n_x} rows, y has {n_y}.")
    if n_x < min_n:
        raise ValueError(f"{measure} needs at least {min_n} examples, got n={n_x}.")


def _prepare_pair(
    x: ArrayLike, y: ArrayLike, measure: str, min_n: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated, scaled, centred float64 ``(n, d_x)`` and ``(n, d_y)`` features."""
    xt = as_feature_matrix(x, "x")
    yt = as_feature_matrix(y, "y").to(xt.device)
    _check_n(xt.shape[0], yt.shape[0], measure, min_n)
    _check_size(xt, "x", measure)
    _check_size(yt, "y", measure)
    tol_x, tol_y = rounding_tolerance(xt.dtype), rounding_tolerance(yt.dtype)
    xt, yt = xt.to(torch.float64), yt.to(torch.float64)
    check_finite(xt, "x", measure)
    check_finite(yt, "y", measure)
    return (
        normalised_centred(xt, "x", tol_x, measure),
        normalised_centred(yt, "y", tol_y, measure),
    )


def _unit_interval(value: float, measure: str) -> float:
    """``value`` with rounding beyond ``[0, 1]`` (at most ``UNIT_ROUNDING``) removed."""
    if not -UNIT_ROUNDING <= value <= 1 + UNIT_ROUNDING:
        raise RuntimeError(
            f"{measure} gave {value!r}, outside [0, 1] by more than rounding; this is a bug."
        )
    return min(max(value, 0.0), 1.0)


# --------------------------------------------------------------------------- Procrustes


def _row_space_factor(x: torch.Tensor) -> torch.Tensor:
    """An ``(n, min(n, d))`` matrix with the same Gram ``x x^T`` as the ``(n, d)`` x.

    For d > n, ``x^T = Q R`` (reduced QR) gives ``x x^T = R^T R``; ``R^T`` is the factor.
    Singular values of ``x^T y`` depend on x and y only through their Grams, so Procrustes
    is unchanged, and ``x^T y`` shrinks from ``(d_x, d_y)`` to at most ``(n, n)``.
    """
    if x.shape[1] <= x.shape[0]:
        return x
    return torch.linalg.qr(x.T, mode="r").R.T


def procrustes_similarity(x: ArrayLike, y: ArrayLike) -> float:
    """Orthogonal Procrustes similarity of two representations (Ding et al. 2021).

    With X and Y the ``(n, d_x)``, ``(n, d_y)`` features centred over the examples and each
    scaled to unit Frobenius norm, the similarity is the nuclear norm (sum of singular
    values) ``||X^T Y||_*``. The Procrustes distance is
    ``min_R ||X - Y R||_F^2 = 2 - 2 ||X^T Y||_*`` over orthogonal R (zero-padding the
    narrower representation).

    Invariant to orthogonal transforms and isotropic scaling of either representation, not
    to general invertible linear maps (unlike CCA). Needs all n examples at once; a loop
    holding the ``(n, n)`` Grams can use :func:`procrustes_from_grams` instead.

    Args:
        x: ``(n, ...)`` features, flattened per example (NumPy array or tensor).
        y: ``(n, ...)`` features of the same examples, in the same order.

    Returns:
        Similarity in ``[0, 1]`` (1: equal up to rotation and scale), computed in float64.

    Raises:
        ValueError: different example counts, n < 2, NaN/Inf features, features constant
            over the examples, or an input above :data:`MAX_FULL_BATCH_ELEMENTS`.
    """
    xc, yc = _prepare_pair(x, y, "Procrustes similarity")
    xc = xc / torch.linalg.norm(xc)
    yc = yc / torch.linalg.norm(yc)
    nuclear = torch.linalg.svdvals(_row_space_factor(xc).T @ _row_space_factor(yc)).sum()
    return _unit_interval(float(nuclear), "Procrustes similarity")


def _as_gram(gram: ArrayLike, name: str) -> torch.Tensor:
    """``gram`` as a tensor, checked to be square and within :data:`MAX_FULL_BATCH_ELEMENTS`."""
    if isinstance(gram, np.ndarray):
        gram = torch.from_numpy(gram)
    if not isinstance(gram, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or numpy.ndarray, got {type(gram).__name__}"
        )
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(
            f"{name} must be a square (n, n) Gram matrix X X^T, got shape {tuple(gram.shape)}."
        )
    if not (gram.is_floating_point() or gram.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} must hold real numbers, got dtype {gram.dtype}")
    n = gram.shape[0]
    if n * n > MAX_FULL_BATCH_ELEMENTS:
        raise ValueError(
            f"{name} has n * n = {n} * {n} = {n * n:,} elements, above "
            f"MAX_FULL_BATCH_ELEMENTS = {MAX_FULL_BATCH_ELEMENTS:,}; use fewer images or raise "
            "vitlens.core.similarity.MAX_FULL_BATCH_ELEMENTS if the memory is there."
        )
    return gram


def _gram_factor(
    gram: torch.Tensor, name: str, tolerance: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A factor F with ``F F^T`` the centred Gram, both scaled by the Gram's own trace.

    Returns:
        ``(F, trace)``: F is ``(n, r)`` with ``r`` the eigenvalues of the centred Gram above
        the tolerance; ``trace`` the centred Gram's trace (a 0-d float64 tensor).
    """
    n = gram.shape[0]
    if tolerance is None:
        tolerance = n * rounding_tolerance(gram.dtype)
    gram = gram.to(torch.float64)
    check_finite(gram, name, "procrustes_from_grams")
    scale = gram.abs().amax()
    if scale > 0:
        gram = gram / scale  # Procrustes is scale-invariant; this keeps norms in range
    norm = torch.linalg.norm(gram)
    asymmetry = float(torch.linalg.norm(gram - gram.T) / norm) if norm > 0 else 0.0
    if asymmetry > SYMMETRY_TOLERANCE:
        raise ValueError(
            f"{name} is not symmetric (||K - K^T|| / ||K|| = {asymmetry:.1e}, at most "
            f"{SYMMETRY_TOLERANCE:.0e}); pass the linear Gram X X^T of the features."
        )
    raw_trace = float(torch.trace(gram))
    if not raw_trace > 0:
        raise ValueError(
            f"{name} has trace {raw_trace!r}; a Gram matrix X X^T of features that vary over "
            "the examples has a positive trace."
        )
    # Noise in a Gram's entries scales with the uncentred features' magnitude, so the
    # tolerance is relative to the uncentred trace.
    centred = center_gram((gram + gram.T) / (2 * raw_trace))
    values, vectors = eigh_without_subnormals(centred)
    if values[0] < -tolerance:
        raise ValueError(
            f"{name} is not positive semidefinite: its centred form has eigenvalue "
            f"{float(values[0]):.2e} (relative to the Gram's trace), below -{tolerance:.1e}, more "
            "than rounding. Pass the linear Gram X X^T of real features; a Gram computed in "
            "float32 and converted needs tolerance=n * rounding_tolerance(torch.float32)."
        )
    keep = values > tolerance
    if not bool(keep.any()):
        raise ValueError(
            f"{name} describes features constant over the examples up to rounding (no "
            f"eigenvalue of its centred form above {tolerance:.1e} of its trace), so "
            "Procrustes similarity is undefined."
        )
    factor = vectors[:, keep] * torch.sqrt(values[keep])
    return factor, torch.trace(centred)


def procrustes_from_grams(
    gram_x: ArrayLike, gram_y: ArrayLike, *, tolerance: float | None = None
) -> float:
    """Orthogonal Procrustes similarity from the ``(n, n)`` linear Grams of two representations.

    The same value as :func:`procrustes_similarity`, for a loop that already holds the
    Grams ``K = X X^T`` of all n examples (d may be far larger than n). The Grams are
    double-centred here (``H K H``, which leaves an already centred Gram unchanged), so
    Grams of uncentred or shifted features (e.g. ``vitlens.core.cka.centered_linear_gram``)
    are fine. Then ``||X^T Y||_* = sum_i sqrt(lambda_i(K_X K_Y))``, normalised by
    ``sqrt(trace K_X trace K_Y)``.

    Computed stably: with ``K_X = V_X W_X V_X^T`` (and likewise Y), the eigenvalues of
    ``K_X K_Y`` are the squared singular values of ``B = W_X^{1/2} V_X^T V_Y W_Y^{1/2}``
    (``B B^T`` is similar to the symmetric ``K_X^{1/2} K_Y K_X^{1/2}``), so the nuclear norm
    is the sum of B's singular values and no square root of a product is taken.

    Eigenvalues of a centred Gram within ``tolerance`` of zero (relative to the uncentred
    Gram's trace) are rounding noise of a rank-deficient Gram (d < n, and centring removes
    one dimension) and are set to zero; a more negative eigenvalue raises. Accuracy is that of
    the Grams: float64 Grams agree with :func:`procrustes_similarity` to ~1e-12 for
    well-conditioned features; directions of variance below the tolerance are dropped.

    Args:
        gram_x: ``(n, n)`` linear Gram ``X X^T`` of the first representation.
        gram_y: ``(n, n)`` linear Gram of the second, same examples in the same order.
        tolerance: relative eigenvalue tolerance; default ``n * rounding_tolerance(dtype)``
            of the Gram's dtype (float64: ``n * 8.9e-16``). Grams computed in float32 and
            converted to float64 need ``n * rounding_tolerance(torch.float32)``.

    Returns:
        Similarity in ``[0, 1]``, computed in float64.

    Raises:
        ValueError: non-square or different-size Grams, n < 2, NaN/Inf entries, an
            asymmetric or not positive semidefinite Gram, features constant over the
            examples, or n * n above :data:`MAX_FULL_BATCH_ELEMENTS`.
    """
    if tolerance is not None and not tolerance >= 0:
        raise ValueError(f"tolerance must be a non-negative number, got {tolerance!r}")
    gram_x, gram_y = _as_gram(gram_x, "gram_x"), _as_gram(gram_y, "gram_y")
    _check_n(gram_x.shape[0], gram_y.shape[0], "procrustes_from_grams")
    factor_x, trace_x = _gram_factor(gram_x, "gram_x", tolerance)
    factor_y, trace_y = _gram_factor(gram_y.to(gram_x.device), "gram_y", tolerance)
    nuclear = torch.linalg.svdvals(factor_x.T @ factor_y).sum()
    return _unit_interval(float(nuclear / torch.sqrt(trace_x * trace_y)), "procrustes_from_grams")


# --------------------------------------------------------------------------- CCA


def _principal_basis(xc: torch.Tensor, keep: float) -> torch.Tensor:
    """Orthonormal ``(n, k)`` basis of the top singular directions of centred ``(n, d)`` xc.

    Directions with singular value at most ``max(n, d) * eps * s_max`` (NumPy's
    ``matrix_rank`` rule) are numerically null and never kept; of the rest, the fewest
    leading ones whose variance reaches ``keep`` of the total (``keep=1``: all of them).
    """
    u, s, _ = torch.linalg.svd(xc, full_matrices=False)
    rank = int((s > max(xc.shape) * torch.finfo(torch.float64).eps * s[0]).sum())
    variance = torch.cumsum(s[:rank] ** 2, dim=0)
    fraction = variance / variance[-1]  # the last entry is exactly 1
    k = int(torch.searchsorted(fraction, torch.tensor([keep], dtype=fraction.dtype))) + 1
    return u[:, : min(k, rank)]


def _check_cca_dims(n: int, dims: int, name: str, measure: str, hint: str) -> None:
    """CCA of ``dims``-dimensional centred features needs ``n >= dims + 2`` examples."""
    if dims > n - 2:
        raise ValueError(
            f"{measure} needs more examples than dimensions: {name} has {dims} dimensions "
            f"for n={n} examples, and CCA is degenerate unless n >= dimensions + 2 (centring "
            "uses one degree of freedom; with n - 1 or more dimensions every canonical "
            f"correlation is 1). Use more images or fewer dimensions ({hint})."
        )


def _canonical(
    qx: torch.Tensor, qy: torch.Tensor, measure: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical correlations of two orthonormal bases, and x's left singular vectors.

    The canonical correlations are the singular values of ``Qx^T Qy`` (cosines of the
    principal angles between the subspaces); ones above 1 by rounding (at most
    ``UNIT_ROUNDING``) are set to 1.
    """
    u, rho, _ = torch.linalg.svd(qx.T @ qy, full_matrices=False)
    top = float(rho.max())
    if top > 1 + UNIT_ROUNDING:
        raise RuntimeError(f"{measure}: canonical correlation {top!r} > 1; this is a bug.")
    return u, rho.clamp(max=1.0)


def svcca(x: ArrayLike, y: ArrayLike, *, keep: float = 0.99) -> float:
    """SVCCA similarity of two representations (Raghu et al. 2017).

    Each representation is centred over the examples and reduced to its top singular
    directions explaining a fraction ``keep`` of its variance (SV step); the result is the
    mean canonical correlation between the two reduced subspaces (CCA step), computed as the
    singular values of ``Qx^T Qy`` for orthonormal bases ``Qx``, ``Qy`` of them.

    Invariant to orthogonal transforms and isotropic scaling of either representation. With
    ``keep=1`` (no reduction) it is plain mean CCA, invariant to any invertible linear map;
    with ``keep < 1`` the reduction depends on the variance spectrum, so it is not.

    CCA overfits when the kept dimensions are not much smaller than n (sample canonical
    correlations are biased upward, all 1 at n - 1 dimensions): keep n well above them.

    Args:
        x: ``(n, ...)`` features, flattened per example.
        y: ``(n, ...)`` features of the same examples.
        keep: fraction of variance the SV step keeps, in ``(0, 1]`` (0.99 in the paper).

    Returns:
        Mean canonical correlation in ``[0, 1]``, over ``min(k_x, k_y)`` correlations.

    Raises:
        ValueError: different example counts, NaN/Inf or constant features, ``keep`` out of
            range, more than n - 2 kept dimensions, or an input above
            :data:`MAX_FULL_BATCH_ELEMENTS`.
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep is a fraction of variance in (0, 1], got {keep!r}")
    xc, yc = _prepare_pair(x, y, "SVCCA", min_n=3)
    n = xc.shape[0]
    qx, qy = _principal_basis(xc, keep), _principal_basis(yc, keep)
    hint = f"a lower keep than {keep}, or average-pool the tokens or channels"
    _check_cca_dims(n, qx.shape[1], f"x after keeping {keep} of the variance", "SVCCA", hint)
    _check_cca_dims(n, qy.shape[1], f"y after keeping {keep} of the variance", "SVCCA", hint)
    _, rho = _canonical(qx, qy, "SVCCA")
    return _unit_interval(float(rho.mean()), "SVCCA")


def pwcca(x: ArrayLike, y: ArrayLike) -> float:
    """Projection-weighted CCA of two representations (Morcos et al. 2018).

    CCA between the full centred representations (no SV reduction; numerically null
    directions are dropped), then the weighted mean ``sum_i alpha_i rho_i`` of the canonical
    correlations ``rho_i``, with weights from how much of x each canonical variate accounts
    for: ``alpha_i ∝ sum_j |<h_i, x_j>|``, where ``h_i`` are x's canonical variates (unit
    vectors over the examples) and ``x_j`` x's centred features (columns), normalised to
    sum to 1, as in the paper.

    Not symmetric: the weights come from x. (The reference code weights by whichever
    representation has fewer neurons; pass that one as x to match it.) Invariant to
    invertible linear maps of y and to isotropic scaling, permutations and sign flips of x's
    features, not to rotations of x (the weights use x's feature basis).

    Args:
        x: ``(n, ...)`` features whose projections weight the correlations.
        y: ``(n, ...)`` features of the same examples.

    Returns:
        Weighted mean canonical correlation in ``[0, 1]``.

    Raises:
        ValueError: different example counts, NaN/Inf or constant features, n < d + 2 for
            either representation, or an input above :data:`MAX_FULL_BATCH_ELEMENTS`.
    """
    xc, yc = _prepare_pair(x, y, "PWCCA", min_n=3)
    n = xc.shape[0]
    hint = "average-pool the tokens or channels, or use svcca, whose SV step reduces them"
    _check_cca_dims(n, xc.shape[1], "x", "PWCCA", hint)
    _check_cca_dims(n, yc.shape[1], "y", "PWCCA", hint)
    qx, qy = _principal_basis(xc, 1.0), _principal_basis(yc, 1.0)
    u, rho = _canonical(qx, qy, "PWCCA")
    variates = qx @ u  # (n, m) orthonormal canonical variates of x
    weights = (variates.T @ xc).abs().sum(dim=1)
    weights = weights / weights.sum()
    return _unit_interval(float((weights * rho).sum()), "PWCCA")


# --------------------------------------------------------------------------- coordinates


def principal_coordinates(x: ArrayLike) -> torch.Tensor:
    """``(n, r)`` float64 principal-component scores of ``(n, ...)`` features, largest first.

    Column ``j`` is the centred features projected on their ``j``-th principal axis; ``r``
    is the numerical rank (at most ``min(n - 1, d)``; directions with variance at most
    ``n * eps`` of the largest are dropped). The scores are the centred features in an
    orthonormal basis of the span of their rows, so every measure of
    :data:`SIMILARITY_MEASURES` but PWCCA (whose weights use x's own feature basis) gives
    the same value on them as on x, up to rounding, and so does any subset of their rows
    (re-centred by the measure). For ``d > n`` they cost one ``(n, n)`` Gram, ``O(n^2 d)``,
    after which a measure works on ``(n, r)`` instead of ``(n, d)``: the path for comparing
    many layers, or one layer many times (a jackknife). Units: those of x.

    Raises:
        ValueError: NaN/Inf features, features constant over the examples, fewer than 2
            examples, or an input above :data:`MAX_FULL_BATCH_ELEMENTS`.
    """
    xt = as_feature_matrix(x, "x")
    _check_n(xt.shape[0], xt.shape[0], "principal coordinates")
    _check_size(xt, "x", "principal coordinates")
    tolerance = rounding_tolerance(xt.dtype)
    xt = xt.to(torch.float64)
    check_finite(xt, "x", "principal coordinates")
    scale = xt.abs().amax()
    centred = normalised_centred(xt, "x", tolerance, "principal coordinates")
    if centred.shape[1] <= centred.shape[0]:  # few features: an SVD, the accurate route
        left, singular, _ = torch.linalg.svd(centred, full_matrices=False)
        variance = singular**2
    else:  # many features: the (n, n) Gram's eigenvectors, O(n^2 d) instead of O(n d^2)
        variance, left = torch.linalg.eigh(centred @ centred.T)  # ascending
        variance, left = variance.flip(0), left.flip(1)
    keep = variance > centred.shape[0] * torch.finfo(torch.float64).eps * variance[0]
    return left[:, keep] * variance[keep].sqrt() * scale


# --------------------------------------------------------------------------- registry


def _linear_cka(x: ArrayLike, y: ArrayLike) -> float:
    """Linear CKA, biased HSIC (:func:`vitlens.core.cka.linear_cka`)."""
    _check_size(as_feature_matrix(x, "x"), "x", "linear CKA")
    _check_size(as_feature_matrix(y, "y"), "y", "linear CKA")
    return linear_cka(x, y)


def _linear_cka_debiased(x: ArrayLike, y: ArrayLike) -> float:
    """Linear CKA with the unbiased HSIC estimator (may be slightly negative); needs n > 3."""
    _check_size(as_feature_matrix(x, "x"), "x", "debiased linear CKA")
    _check_size(as_feature_matrix(y, "y"), "y", "debiased linear CKA")
    return linear_cka(x, y, debiased=True)


def _rbf_cka(x: ArrayLike, y: ArrayLike) -> float:
    """RBF CKA at :func:`vitlens.core.cka.rbf_cka`'s default threshold 0.5 (bandwidth
    ``sigma^2 = 0.5^2 * median squared distance``), biased HSIC."""
    _check_size(as_feature_matrix(x, "x"), "x", "RBF CKA")
    _check_size(as_feature_matrix(y, "y"), "y", "RBF CKA")
    return rbf_cka(x, y)


SIMILARITY_MEASURES: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "linear_cka": _linear_cka,
    "linear_cka_debiased": _linear_cka_debiased,
    "rbf_cka": _rbf_cka,
    "procrustes": procrustes_similarity,
    "svcca": svcca,
    "pwcca": pwcca,
}
"""Name -> ``(x, y) -> float`` for every full-batch measure, each at its default settings
(RBF CKA at threshold 0.5, SVCCA keeping 0.99 of the variance). All are 1 for identical
inputs; all but debiased CKA lie in ``[0, 1]``."""


def similarity(x: ArrayLike, y: ArrayLike, measure: str) -> float:
    """The similarity of two ``(n, ...)`` representations by the measure named ``measure``.

    Args:
        x, y: features of the same n examples.
        measure: a key of :data:`SIMILARITY_MEASURES`.

    Raises:
        ValueError: an unknown measure name (the message lists the valid ones), or any error
            of the measure itself.
    """
    try:
        function = SIMILARITY_MEASURES[measure]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown similarity measure {measure!r}; valid names: "
            f"{', '.join(sorted(SIMILARITY_MEASURES))}"
        ) from None
    return function(x, y)


# --------------------------------------------------------------------------- many pairs


def _prepared(x: ArrayLike, name: str, measure: str) -> torch.Tensor:
    """One representation's part of ``measure``, computed once for all its pairs.

    Linear and RBF CKA: the centred Gram (U-centred for the debiased one), flattened and
    scaled to unit norm, so a pair's CKA is one dot product. Procrustes: the row-space
    factor of the unit-norm centred features, so a pair's value is the nuclear norm of an
    ``(r_x, r_y)`` product. SVCCA: the orthonormal basis kept by the SV step.
    """
    xt = as_feature_matrix(x, name)
    min_n = {"linear_cka_debiased": 4, "svcca": 3}.get(measure, 2)
    _check_n(xt.shape[0], xt.shape[0], measure, min_n)
    _check_size(xt, name, measure)
    tolerance = rounding_tolerance(xt.dtype)
    xt = xt.to(torch.float64)
    check_finite(xt, name, measure)
    xc = normalised_centred(xt, name, tolerance, measure)
    if measure in ("linear_cka", "linear_cka_debiased", "rbf_cka"):
        gram = rbf_gram(xc, 0.5) if measure == "rbf_cka" else xc @ xc.T
        centred = center_gram(gram, unbiased=measure == "linear_cka_debiased").flatten()
        return centred / torch.linalg.norm(centred)
    if measure == "procrustes":
        return _row_space_factor(xc / torch.linalg.norm(xc))
    basis = _principal_basis(xc, 0.99)
    hint = "a lower keep than 0.99, or average-pool the tokens or channels"
    _check_cca_dims(xc.shape[0], basis.shape[1], f"{name} after keeping 0.99", "SVCCA", hint)
    return basis


def _padded(parts: list[torch.Tensor]) -> torch.Tensor:
    """``(L, n, R)``: each ``(n, r_i)`` matrix with zero columns up to the widest, ``R``.

    Zero columns add only zero singular values to a product, so the nuclear norm and the
    leading singular values are unchanged.
    """
    width = max(p.shape[1] for p in parts)
    return torch.stack([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts])


def similarity_grid(
    xs: Sequence[ArrayLike], ys: Sequence[ArrayLike] | None, measure: str
) -> np.ndarray:
    """``(len(xs), len(ys))`` similarities of every pair, each representation prepared once.

    Equal (up to rounding) to ``similarity(xs[i], ys[j], measure)`` for every pair, at a
    fraction of the cost for many pairs: CKA (linear, debiased, RBF) becomes one matrix
    product of the stacked centred Grams, Procrustes one batched singular-value computation
    of the ``(r, r)`` factor products, SVCCA one of the products of the kept bases. PWCCA,
    whose weights depend on both sides, is computed pair by pair.

    Args:
        xs: ``(n, ...)`` features of the same n examples (e.g. one per layer).
        ys: more of them, or ``None`` to compare ``xs`` with themselves: every measure but
            PWCCA is symmetric, so each unordered pair is then computed once.
        measure: a key of :data:`SIMILARITY_MEASURES`.

    Raises:
        ValueError: an unknown measure, or anything the measure itself refuses.
    """
    if measure not in SIMILARITY_MEASURES:
        raise ValueError(
            f"unknown similarity measure {measure!r}; valid names: "
            f"{', '.join(sorted(SIMILARITY_MEASURES))}"
        )
    same = ys is None
    ys = xs if same else ys
    if measure == "pwcca":
        return np.array([[pwcca(x, y) for y in ys] for x in xs], dtype=float)
    sizes = {as_feature_matrix(v, "features").shape[0] for v in [*xs, *ys]}
    if len(sizes) != 1:
        raise ValueError(f"every representation must describe the same examples, got {sizes}")
    left = [_prepared(x, f"xs[{i}]", measure) for i, x in enumerate(xs)]
    right = left if same else [_prepared(y, f"ys[{j}]", measure) for j, y in enumerate(ys)]
    if measure in ("linear_cka", "linear_cka_debiased", "rbf_cka"):
        return (torch.stack(left) @ torch.stack(right).T).numpy()
    rows, cols = (
        torch.triu_indices(len(left), len(left))
        if same
        else torch.cartesian_prod(torch.arange(len(left)), torch.arange(len(right))).T
    )
    a, b = _padded(left), _padded(right)
    products = a[rows].transpose(1, 2) @ b[cols]  # (pairs, R, R)
    singular = torch.linalg.svdvals(products)  # (pairs, R), descending
    if measure == "procrustes":
        values = singular.sum(-1)
    else:  # SVCCA: mean of the min(k_x, k_y) canonical correlations
        widths = torch.tensor([p.shape[1] for p in left]), torch.tensor([q.shape[1] for q in right])
        kept = torch.minimum(widths[0][rows], widths[1][cols])
        ranks = torch.arange(singular.shape[-1])
        values = (singular * (ranks < kept[:, None])).sum(-1) / kept
        if float(singular.max()) > 1 + UNIT_ROUNDING:
            raise RuntimeError(f"SVCCA: canonical correlation {float(singular.max())!r} > 1")
    name = "Procrustes similarity" if measure == "procrustes" else "SVCCA"
    matrix = np.empty((len(left), len(right)))
    for i, j, value in zip(rows.tolist(), cols.tolist(), values.tolist(), strict=True):
        matrix[i, j] = _unit_interval(value, name)
        if same:
            matrix[j, i] = matrix[i, j]
    return matrix
