"""Centered kernel alignment (CKA): full-batch estimators and the minibatch estimator.

References:
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited* (linear and RBF CKA, debiased CKA).
    Song, Smola, Gretton, Bedo & Borgwardt (2012), *Feature Selection via Dependence
    Maximization* (the unbiased HSIC estimator).
    Nguyen, Raghu & Kornblith (2021), *Do Wide and Deep Networks Learn the Same Things?*
    (minibatch CKA: unbiased HSIC per minibatch, averaged over minibatches).

The unbiased HSIC of two Gram matrices is computed through U-centring (Szekely & Rizzo
2014): with ``K_U`` the U-centred Gram, ``HSIC_1(K, L) = <K_U, L_U>_F / (n (n - 3))``, which
equals Song et al.'s three-term formula exactly. U-centred Grams of every layer are stacked
into one ``(layers, n * n)`` matrix, so all layer pairs come from one matrix product.

Unbiased CKA can be slightly negative for unrelated representations; nothing here clamps it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

__all__ = [
    "BatchBootstrap",
    "MinibatchCKA",
    "UCenteredGram",
    "linear_cka",
    "rbf_cka",
    "resample_batches",
]


# --------------------------------------------------------------------------- validation


def as_feature_matrix(x: ArrayLike, name: str) -> torch.Tensor:
    """Return ``x`` as a tensor of shape ``(n, d)`` (one flattened row per example)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(
            f"{name} must have shape (n, ...) with one row per example; got shape "
            f"{tuple(x.shape)}. Reshape a single feature vector to (n, 1)."
        )
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    return x.reshape(x.shape[0], -1)


def check_finite(x: torch.Tensor, name: str, measure: str = "CKA") -> None:
    """Raise ``ValueError`` naming ``x`` and ``measure`` if ``x`` holds a NaN or Inf."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name} contains {bad} NaN or Inf value(s); {measure} needs finite features."
        )


ROUNDING_FACTOR = 4.0
"""Features whose spread about their mean is below ``ROUNDING_FACTOR`` times the machine
epsilon of their dtype, relative to their magnitude, are constant up to rounding."""


def rounding_tolerance(dtype: torch.dtype) -> float:
    """Relative spread below which features of ``dtype`` count as constant up to rounding.

    ``ROUNDING_FACTOR * eps(dtype)`` for floating dtypes (float32: 4.8e-7, float64:
    8.9e-16); integers are exact and use float64's.
    """
    eps = torch.finfo(dtype if dtype.is_floating_point else torch.float64).eps
    return ROUNDING_FACTOR * eps


def normalised_centred(
    x: torch.Tensor, name: str, tolerance: float, measure: str = "CKA"
) -> torch.Tensor:
    """``(n, d)`` float64 features scaled to max |x| = 1 and mean-centred over the examples.

    CKA (and every measure in :mod:`vitlens.core.similarity`) is invariant to scaling and
    translating features, so this changes no estimator but keeps every product in range
    (features of 1e200 or 1e-200 would overflow or underflow) and removes the common offset
    before any product.

    Raises:
        ValueError: ``x`` is constant up to rounding, ``||x - mean|| <= tolerance ||x||``
            (CKA divides by the features' own HSIC, which is then zero or rounding noise).
    """
    scale = x.abs().amax()
    if scale > 0:
        x = x / scale
    centred = x - x.mean(dim=0, keepdim=True)
    spread = float(torch.linalg.norm(centred))
    size = float(torch.linalg.norm(x))
    if not spread > tolerance * size:
        relative = spread / size if size > 0 else 0.0
        raise ValueError(
            f"{name} is constant over the examples up to rounding (spread about the mean "
            f"{relative:.2e} of its magnitude, at most {tolerance:.1e} for its dtype), so "
            f"{measure} is undefined; check that the features depend on the input (e.g. a "
            "dead layer or a single repeated image)."
        )
    return centred


def _check_pair(x: torch.Tensor, y: torch.Tensor, min_n: int) -> int:
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(
            f"x and y must describe the same examples: x has {n} rows, y has {y.shape[0]}."
        )
    if n < min_n:
        raise ValueError(f"CKA needs at least {min_n} examples here, got n={n}.")
    return n


# --------------------------------------------------------------------------- kernels


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 inputs stay float64; everything else is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


_SHIFT_SAMPLE = 16
"""Examples whose mean is subtracted from a batch's features before the float32 Gram."""


def centered_linear_gram(x: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Gram matrix of shifted features, as float64.

    Args:
        x: features of n examples, shape ``(n, ...)``; float64 input is multiplied in
            float64, anything else in float32.
        scratch: optional preallocated ``(n, d)`` buffer of the compute dtype for the
            shifted features (saves a fresh allocation, and its page faults, per layer).

    Returns:
        ``(n, n)`` float64 tensor ``Xs Xs^T`` with ``Xs = X - mean(X[:16], 0)``. Every CKA
        estimator here is exactly invariant to translating the features, so any shift is
        allowed; subtracting the mean of a few examples removes the large common offset
        (e.g. position embeddings) that would otherwise cancel catastrophically in float32,
        at a fraction of the cost of a full mean.
    """
    x = x.reshape(x.shape[0], -1)
    dtype = _compute_dtype(x)
    shift = x[:_SHIFT_SAMPLE].to(dtype).mean(dim=0, keepdim=True)
    shifted = x.to(dtype) - shift if scratch is None else torch.sub(x, shift, out=scratch)
    return _self_product(shifted).to(torch.float64)


def _self_product(x: torch.Tensor) -> torch.Tensor:
    """``x @ x.T`` for ``(n, d)`` x from three of its four row blocks (3/4 of the FLOPs).

    The upper-right block is the transpose of the lower-left one; BLAS's plain matrix
    product would compute both. Below 64 rows the saving is not worth the extra calls.
    """
    n = x.shape[0]
    if n < 64:
        return x @ x.T
    top, bottom = x[: n // 2], x[n // 2 :]
    lower_left = bottom @ top.T
    return torch.cat(
        [
            torch.cat([top @ top.T, lower_left.T], dim=1),
            torch.cat([lower_left, bottom @ bottom.T], dim=1),
        ]
    )


def grouped_centered_grams(features: torch.Tensor) -> torch.Tensor:
    """Mean-centred linear Grams of ``G`` groups of features at once, in float64.

    Args:
        features: ``(G, n, d)``: for each group (token, patch, head...), n examples.

    Returns:
        ``(G, n, n)`` float64 Grams ``Xc Xc^T`` with ``Xc = X - mean(X, 1)`` per group.
    """
    x = features.double()
    x = x - x.mean(dim=1, keepdim=True)
    return x @ x.transpose(1, 2)


class UCenteredGram:
    """Callable turning one layer's minibatch features into its U-centred linear Gram.

    ``gram = UCenteredGram()(x)`` maps ``(n, ...)`` features to an ``(n, n)`` float64
    U-centred Gram (see :func:`center_gram`). It keeps one scratch buffer per feature
    shape, so streaming many batches through many layers allocates nothing per call
    beyond the ``(n, n)`` result. Used inside forward hooks by :func:`vitlens.cka_matrix`.
    """

    def __init__(self) -> None:
        self._scratch: dict[tuple, torch.Tensor] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        dtype = _compute_dtype(x)
        key = (n, x[0].numel(), dtype, x.device)
        if key not in self._scratch:
            self._scratch[key] = torch.empty(n, key[1], dtype=dtype, device=x.device)
        gram = centered_linear_gram(x, self._scratch[key])
        gram = _zero_if_constant(gram, x, rounding_tolerance(x.dtype))
        return center_gram(gram, unbiased=True)


def _zero_if_constant(gram: torch.Tensor, x: torch.Tensor, tolerance: float) -> torch.Tensor:
    """``gram`` of the shifted features, or zeros if they are constant up to rounding.

    From the Gram alone (``O(n^2)``, no pass over the features, no device sync): the
    spread about the mean is ``trace(H G H)``; the magnitude is approximated by
    ``trace(G) + n ||shift||^2``. Zeros make the batch's HSIC exactly what constant
    features have (0) instead of rounding noise, which would give a plausible-looking
    CKA; a layer constant over every batch is then reported by :meth:`MinibatchCKA.compute`.
    """
    n = gram.shape[0]
    trace = torch.diagonal(gram).sum()
    spread = trace - gram.sum() / n
    shift = x[:_SHIFT_SAMPLE].reshape(min(n, _SHIFT_SAMPLE), -1).double().mean(dim=0)
    magnitude = trace + n * torch.dot(shift, shift)
    keep = spread > (tolerance**2) * magnitude
    return gram * keep


def rbf_gram(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """RBF kernel Gram matrix with bandwidth relative to the median distance.

    Follows Kornblith et al.'s reference code: ``sigma^2 = threshold^2 * median(D)`` where
    ``D`` is the full ``(n, n)`` matrix of squared Euclidean distances (diagonal included),
    and ``K = exp(-D / (2 sigma^2))``.

    Args:
        x: ``(n, d)`` float64 features.
        threshold: bandwidth as a fraction of the median distance; must be > 0.

    Returns:
        ``(n, n)`` float64 Gram matrix.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    gram = centered_linear_gram(x)
    norms = torch.diagonal(gram)
    sq_distances = (norms[:, None] + norms[None, :] - 2 * gram).clamp_(min=0.0)
    ordered = torch.sort(sq_distances.flatten()).values
    k = ordered.numel()
    sq_median = float(ordered[(k - 1) // 2] + ordered[k // 2]) / 2  # NumPy's median
    if sq_median <= 0:
        raise ValueError(
            "The median pairwise distance is 0 (more than half the examples coincide), so the "
            "RBF bandwidth is undefined; use linear_cka or remove duplicate examples."
        )
    return torch.exp(-sq_distances / (2 * threshold**2 * sq_median))


def center_gram(gram: torch.Tensor, *, unbiased: bool = False) -> torch.Tensor:
    """Centre Gram matrices (the last two dimensions), returning a new float64 tensor.

    Args:
        gram: ``(..., n, n)`` symmetric Gram matrices.
        unbiased: ``False`` gives ``H K H`` (biased HSIC); ``True`` gives the U-centred
            matrix whose inner products are ``n (n - 3)`` times the unbiased HSIC of
            Song et al. (2012). Needs n > 3.
    """
    gram = gram.to(torch.float64, copy=True)
    n = gram.shape[-1]
    if unbiased:
        if n <= 3:
            raise ValueError(f"unbiased centring needs n > 3 examples, got n={n}")
        torch.diagonal(gram, dim1=-2, dim2=-1).zero_()
        means = gram.sum(dim=-1) / (n - 2)
        means -= means.sum(dim=-1, keepdim=True) / (2 * (n - 1))
        gram -= means[..., :, None]
        gram -= means[..., None, :]
        torch.diagonal(gram, dim1=-2, dim2=-1).zero_()
    else:
        means = gram.mean(dim=-1)
        gram -= means[..., :, None]
        gram -= means[..., None, :]
        gram += means.mean(dim=-1)[..., None, None]
    return gram


def cka_from_grams(gram_x: torch.Tensor, gram_y: torch.Tensor, *, debiased: bool) -> torch.Tensor:
    """CKA of Gram matrices, batched over leading dimensions.

    Args:
        gram_x, gram_y: ``(..., n, n)`` Gram matrices of the same examples.
        debiased: U-centre (unbiased HSIC) instead of ``H K H``.

    Returns:
        ``(...)`` float64 tensor of CKA values.
    """
    kc = center_gram(gram_x, unbiased=debiased)
    lc = center_gram(gram_y, unbiased=debiased)
    dot = (kc * lc).sum(dim=(-2, -1))
    return dot / (torch.linalg.norm(kc, dim=(-2, -1)) * torch.linalg.norm(lc, dim=(-2, -1)))


# --------------------------------------------------------------------------- full batch


def _debiased_dot(xty_sq, rows_x, rows_y, total_x, total_y, n):
    """Kornblith et al.'s feature-space form of ``<K_U, L_U>`` for linear kernels."""
    return (
        xty_sq - n / (n - 2.0) * torch.dot(rows_x, rows_y) + total_x * total_y / ((n - 1) * (n - 2))
    )


def _feature_space_linear_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool) -> float:
    """Linear CKA through ``d x d`` cross-covariances: cheaper than Grams when d < n."""
    n = x.shape[0]
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    xy = torch.linalg.norm(x.T @ y) ** 2
    xx = torch.linalg.norm(x.T @ x) ** 2
    yy = torch.linalg.norm(y.T @ y) ** 2
    if debiased:
        rows_x, rows_y = (x * x).sum(dim=1), (y * y).sum(dim=1)
        total_x, total_y = rows_x.sum(), rows_y.sum()
        xy = _debiased_dot(xy, rows_x, rows_y, total_x, total_y, n)
        xx = _debiased_dot(xx, rows_x, rows_x, total_x, total_x, n)
        yy = _debiased_dot(yy, rows_y, rows_y, total_y, total_y, n)
    return float(xy / torch.sqrt(xx * yy))


def _prepare_pair(x: ArrayLike, y: ArrayLike, debiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated, scaled and centred float64 ``(n, d)`` features of ``x`` and ``y``."""
    xt = as_feature_matrix(x, "x")
    yt = as_feature_matrix(y, "y").to(xt.device)
    _check_pair(xt, yt, min_n=4 if debiased else 2)
    tol_x, tol_y = rounding_tolerance(xt.dtype), rounding_tolerance(yt.dtype)
    xt, yt = xt.to(torch.float64), yt.to(torch.float64)
    check_finite(xt, "x")
    check_finite(yt, "y")
    return normalised_centred(xt, "x", tol_x), normalised_centred(yt, "y", tol_y)


def linear_cka(x: ArrayLike, y: ArrayLike, *, debiased: bool = False) -> float:
    """Linear CKA between two representations of the same n examples (Kornblith et al. 2019).

    Args:
        x: ``(n, ...)`` features, flattened per example (NumPy array or tensor).
        y: ``(n, ...)`` features of the same examples, in the same order.
        debiased: use the unbiased HSIC estimator (Song et al. 2012); needs n > 3.

    Returns:
        CKA as a Python float computed in float64. In ``[0, 1]`` for the biased estimator;
        the debiased one may be slightly negative for unrelated representations.

    Raises:
        ValueError: for different example counts, too few examples, NaN/Inf features, or
            features constant over the examples up to rounding (see
            ``rounding_tolerance``). Scale does not matter: features are rescaled in
            float64 before any product, so 1e-200 and 1e200 give the same CKA as 1.
    """
    xt, yt = _prepare_pair(x, y, debiased)
    if max(xt.shape[1], yt.shape[1]) < xt.shape[0]:
        return _feature_space_linear_cka(xt, yt, debiased)
    return float(cka_from_grams(xt @ xt.T, yt @ yt.T, debiased=debiased))


def rbf_cka(x: ArrayLike, y: ArrayLike, *, threshold: float = 0.5, debiased: bool = False) -> float:
    """RBF-kernel CKA between two representations of the same n examples.

    Args:
        x, y: ``(n, ...)`` features of the same examples.
        threshold: RBF bandwidth as a fraction of the median pairwise distance, as in
            Kornblith et al.'s reference code (``sigma^2 = threshold^2 * median sq. distance``).
        debiased: use the unbiased HSIC estimator; needs n > 3.

    Returns:
        CKA as a Python float computed in float64.
    """
    xt, yt = _prepare_pair(x, y, debiased)
    return float(
        cka_from_grams(rbf_gram(xt, threshold), rbf_gram(yt, threshold), debiased=debiased)
    )


# --------------------------------------------------------------------------- minibatch


class MinibatchCKA:
    """Linear CKA between every layer of model A and every layer of model B, from minibatches.

    Each call to :meth:`update` adds one minibatch: per layer the U-centred linear Gram
    matrix, then the unbiased HSIC of every layer pair, from one matrix product of the
    stacked Grams, accumulated in float64. :meth:`compute` forms
    ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` from the sums (Nguyen et al. 2021).

    Batches may differ in size; each batch's HSIC estimate is weighted by its number of
    examples (for equal sizes this is the plain average of the paper). Every batch needs
    n > 3 examples.

    Example:
        >>> cka = MinibatchCKA()
        >>> for images in loader:
        ...     cka.update(features_a(images), features_b(images))
        >>> matrix = cka.compute()  # (layers_a, layers_b), float64
    """

    def __init__(self) -> None:
        self._gram = UCenteredGram()
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._cross: torch.Tensor | None = None  # (La, Lb) sum of n_b * HSIC_b(K_a, L_b)
        self._self_a: torch.Tensor | None = None  # (La,)
        self._self_b: torch.Tensor | None = None  # (Lb,)
        self.num_examples = 0
        self.num_batches = 0
        # per-batch terms (float64, CPU) for resampling batches: La x Lb numbers per batch
        self.batch_terms: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def merge(self, other: MinibatchCKA) -> MinibatchCKA:
        """Add the batches ``other`` has seen (e.g. another process's share); returns self.

        Both must compare the same layers. An estimator that has seen no batch adds nothing.
        ``other``'s per-batch terms are appended after this estimator's.
        """
        if other._cross is not None:
            self._accumulate(other._cross, other._self_a, other._self_b)
            self.num_examples += other.num_examples
            self.num_batches += other.num_batches
            self.batch_terms.extend(other.batch_terms)
        return self

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_gram"]  # scratch buffers: rebuilt on unpickling, not sent between processes
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._gram = UCenteredGram()

    # ---- public API

    def update(
        self,
        feats_a: Sequence[torch.Tensor],
        feats_b: Sequence[torch.Tensor] | None = None,
    ) -> None:
        """Add one minibatch.

        Args:
            feats_a: per-layer features of model A, each ``(n, ...)`` for the same n examples.
            feats_b: per-layer features of model B for the same examples, or ``None`` to
                compare model A with itself (its Grams are then reused).

        Features may be tensors or NumPy arrays. A layer constant over this batch up to
        rounding contributes the HSIC of constant features, 0.

        Raises:
            ValueError: n <= 3, layers disagreeing on n, a layer count that changes between
                batches, or NaN/Inf features.
        """
        grams_a = self._stack_grams(feats_a, "feats_a")
        grams_b = None if feats_b is None else self._stack_grams(feats_b, "feats_b")
        if grams_b is not None and grams_b.shape[1] != grams_a.shape[1]:
            raise ValueError(
                f"feats_a and feats_b must hold the same examples: {grams_a.shape[1]} vs "
                f"{grams_b.shape[1]} rows."
            )
        self.update_centered_grams(grams_a, grams_b)

    def update_centered_grams(
        self, grams_a: torch.Tensor, grams_b: torch.Tensor | None = None
    ) -> None:
        """Add one minibatch given stacked U-centred Grams (see :class:`UCenteredGram`).

        Args:
            grams_a: ``(La, n, n)`` float64 U-centred Grams of model A's layers.
            grams_b: ``(Lb, n, n)`` of model B, or ``None`` to reuse ``grams_a``.
        """
        n = grams_a.shape[-1]
        if n <= 3:
            raise ValueError(
                f"A minibatch needs more than 3 examples for the unbiased HSIC estimator, got "
                f"{n}. Use a larger batch (the paper uses 256 or more) or drop the last batch."
            )
        flat_a = grams_a.reshape(grams_a.shape[0], n * n)
        if grams_b is None:
            cross = flat_a @ flat_a.T
            self_a = self_b = torch.diagonal(cross)
        else:
            flat_b = grams_b.reshape(grams_b.shape[0], n * n)
            cross = flat_a @ flat_b.T
            self_a = torch.einsum("ij,ij->i", flat_a, flat_a)
            self_b = torch.einsum("ij,ij->i", flat_b, flat_b)
        self._check_batch_finite(self_a, "A")
        self._check_batch_finite(self_b, "B")
        # HSIC_1 = <K_U, L_U> / (n (n - 3)); weight n per batch.
        scale = 1.0 / (n - 3)
        terms = (cross * scale, self_a * scale, self_b * scale)
        self._accumulate(*terms)
        self.batch_terms.append(tuple(t.detach().to("cpu", torch.float64) for t in terms))
        self.num_examples += n
        self.num_batches += 1

    def stacked_batch_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The per-batch HSIC terms as ``(cross (B, La, Lb), self_a (B, La), self_b (B, Lb))``
        float64 arrays, in batch order: what :func:`vitlens.core.cka.resample_batches` resamples.

        Raises:
            RuntimeError: no batch seen yet.
        """
        if not self.batch_terms:
            raise RuntimeError("MinibatchCKA has no per-batch terms before any update().")
        return tuple(
            torch.stack([terms[i] for terms in self.batch_terms]).numpy() for i in range(3)
        )

    def compute(self, *, distributed: bool = False, group=None) -> torch.Tensor:
        """The ``(layers_a, layers_b)`` CKA matrix, float64, on the accumulation device.

        Args:
            distributed: sum the accumulated HSIC over all processes of ``group`` with
                ``torch.distributed.all_reduce`` first (every process must call this, and
                every process must have seen at least one batch). The local sums are not
                modified, so calling ``compute`` again is safe.
            group: the process group (default: the world).

        Layers whose features were constant (up to rounding, see ``rounding_tolerance``)
        over every batch have zero HSIC with themselves; their CKA is undefined and
        returned as NaN, with a warning naming them.
        """
        if self._cross is None:
            raise RuntimeError("MinibatchCKA.compute() called before any update().")
        cross, self_a, self_b = self._cross, self._self_a, self._self_b
        if distributed:
            cross, self_a, self_b = self._all_reduced(group)
        for which, values in (("A", self_a), ("B", self_b)):
            dead = torch.nonzero(values <= 0).flatten().tolist()
            if dead:
                warnings.warn(
                    f"layers {dead} of model {which} have constant features (up to rounding) "
                    "over every batch; "
                    "their CKA is undefined and returned as NaN.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        denominator = torch.sqrt(self_a.clamp(min=0)[:, None] * self_b.clamp(min=0)[None, :])
        return cross / denominator

    # ---- internals

    def _stack_grams(self, feats: Sequence[torch.Tensor], name: str) -> torch.Tensor:
        if isinstance(feats, (torch.Tensor, np.ndarray)) or len(feats) == 0:
            raise ValueError(
                f"{name} must be a non-empty sequence (e.g. a list) of per-layer tensors or "
                f"NumPy arrays of shape (n, ...), got {type(feats).__name__}."
            )
        feats = [as_feature_matrix(f, f"{name}[{i}]") for i, f in enumerate(feats)]
        sizes = {f.shape[0] for f in feats}
        if len(sizes) != 1:
            raise ValueError(
                f"every layer in {name} must have the same n; got sizes {sorted(sizes)}"
            )
        (n,) = sizes
        if n <= 3:
            raise ValueError(
                f"A minibatch needs more than 3 examples for the unbiased HSIC estimator, got "
                f"{n}. Use a larger batch (the paper uses 256 or more) or drop the last batch."
            )
        for i, f in enumerate(feats):
            check_finite(f, f"{name}[{i}]")
        return torch.stack([self._gram(f) for f in feats])

    @staticmethod
    def _check_batch_finite(self_hsic: torch.Tensor, which: str) -> None:
        bad = torch.nonzero(~torch.isfinite(self_hsic)).flatten().tolist()
        if bad:
            raise ValueError(
                f"layers {bad} of model {which} gave NaN/Inf Gram entries in this batch "
                "(non-finite features, or values so large that their products overflow)."
            )

    def _accumulate(self, cross: torch.Tensor, self_a: torch.Tensor, self_b: torch.Tensor) -> None:
        if self._cross is None:
            self._cross, self._self_a, self._self_b = cross.clone(), self_a.clone(), self_b.clone()
            return
        if cross.shape != self._cross.shape:
            raise ValueError(
                f"this batch has {tuple(cross.shape)} (layers_a, layers_b) but earlier batches had "
                f"{tuple(self._cross.shape)}; pass the same layers every batch."
            )
        self._cross += cross.to(self._cross.device)
        self._self_a += self_a.to(self._self_a.device)
        self._self_b += self_b.to(self._self_b.device)

    def _all_reduced(self, group) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("compute(distributed=True) needs an initialised torch.distributed.")
        la, lb = self._cross.shape
        packed = torch.cat([self._cross.flatten(), self._self_a, self._self_b])
        dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
        return (
            packed[: la * lb].view(la, lb),
            packed[la * lb : la * lb + la],
            packed[la * lb + la :],
        )


def resample_batches(
    batch_terms: tuple[np.ndarray, np.ndarray, np.ndarray], replicates: int = 500, seed: int = 0
) -> np.ndarray:
    """``(replicates, La, Lb)`` minibatch CKA matrices from batches resampled with replacement.

    Cheap: it resums per-batch HSIC terms already computed (a bootstrap over minibatches,
    the estimator's unit), never re-runs a model.

    Args:
        batch_terms: ``(cross (B, La, Lb), self_a (B, La), self_b (B, Lb))`` per-batch HSIC
            sums, as :class:`MinibatchCKA` keeps them (``batch_terms``, stacked).
        replicates: number of resamples.
        seed: of the resampling generator.

    Raises:
        ValueError: fewer than 2 batches.
    """
    cross, self_a, self_b = (np.asarray(t, dtype=float) for t in batch_terms)
    batches = cross.shape[0]
    if batches < 2:
        raise ValueError("a bootstrap over batches needs at least 2 batches")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, batches, size=(replicates, batches))
    counts = np.stack([np.bincount(row, minlength=batches) for row in draws]).astype(float)
    num = np.einsum("rb,bij->rij", counts, cross)
    den_a, den_b = counts @ self_a, counts @ self_b
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / np.sqrt(
            np.clip(den_a, 0, None)[:, :, None] * np.clip(den_b, 0, None)[:, None, :]
        )


class BatchBootstrap:
    """Mixin for a minibatch-CKA result that keeps its per-batch HSIC terms.

    The class provides ``batch_terms`` (:meth:`vitlens.MinibatchCKA.stacked_batch_terms`, or
    ``None`` if unknown); this adds the bootstrap over minibatches that
    :func:`vitlens.analyses.compare.cka_estimate` reads.
    """

    batch_terms: tuple[np.ndarray, np.ndarray, np.ndarray] | None

    def bootstrap(self, replicates: int = 500, seed: int = 0) -> np.ndarray:
        """``(replicates, rows, columns)`` CKA from minibatches resampled with replacement.

        Cheap: it resums the per-batch HSIC terms already computed, never re-runs a model.
        The spread of a statistic over these matrices is its uncertainty over images (at
        the granularity of minibatches; see ``num_batches``).
        """
        if self.batch_terms is None:
            raise ValueError(f"this {type(self).__name__} has no per-batch terms to resample")
        return resample_batches(self.batch_terms, replicates, seed)

    @property
    def num_batches(self) -> int:
        """Minibatches the estimate sums over (0 if unknown)."""
        return 0 if self.batch_terms is None else int(self.batch_terms[0].shape[0])
