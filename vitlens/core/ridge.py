"""Ridge regression for many L2 strengths and many problems at once (the probes' solver)."""

from __future__ import annotations

import torch

__all__ = ["ridge_weights"]


def eigh_without_subnormals(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh`` with subnormal floats flushed to zero on the CPU.

    The Grams of standardised few-shot examples are rank-deficient; on a 2-core CPU, MKL's
    eigh of such matrices intermittently spent ~0.4 s per 100x100 matrix in subnormal
    arithmetic (100x its usual time; flushing or one thread avoided it). Flushing changes
    no value above ~1e-308. The flag is process-wide and has no getter: it is switched off
    again afterwards (PyTorch's default).
    """
    flush = matrix.device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        return torch.linalg.eigh(matrix)
    finally:
        if flush:
            torch.set_flush_denormal(False)


def ridge_weights(x: torch.Tensor, targets: torch.Tensor, l2s: torch.Tensor) -> torch.Tensor:
    """Ridge regression solutions ``(X^T X + l2 I)^{-1} X^T Y`` for several strengths at once.

    Args:
        x: ``(..., m, d)`` inputs (leading dimensions are independent problems).
        targets: ``(..., m, C)`` regression targets.
        l2s: ``(R,)`` non-negative L2 strengths (0 needs a full-rank problem).

    Returns:
        ``(..., R, d, C)`` weights, float64. Solved through the eigendecomposition of the
        smaller of ``X^T X`` (``d x d``) and ``X X^T`` (``m x m``, dual form).
    """
    x, targets, l2s = x.double(), targets.double(), l2s.double().to(x.device)
    m, d = x.shape[-2:]
    xt = x.transpose(-1, -2)
    if d <= m:
        values, vectors = eigh_without_subnormals(xt @ x)  # (..., d), (..., d, d)
        rotated = vectors.transpose(-1, -2) @ (xt @ targets)  # (..., d, C)
        return _unfold(vectors @ _shrink(rotated, values, l2s), len(l2s))
    values, vectors = eigh_without_subnormals(x @ xt)  # (..., m), (..., m, m)
    rotated = vectors.transpose(-1, -2) @ targets  # (..., m, C)
    return _unfold(xt @ (vectors @ _shrink(rotated, values, l2s)), len(l2s))


def _shrink(rotated: torch.Tensor, values: torch.Tensor, l2s: torch.Tensor) -> torch.Tensor:
    """``(..., k, R * C)``: ``(..., k, C)`` coefficients in the eigenbasis divided by
    ``value + l2`` for each of the ``(R,)`` strengths, the strengths side by side in the
    columns (so the rotations back are one matrix product each, whatever ``R``)."""
    scaled = rotated.unsqueeze(-2) / (values[..., :, None, None] + l2s[:, None])  # (..., k, R, C)
    return scaled.flatten(-2)


def _unfold(weights: torch.Tensor, strengths: int) -> torch.Tensor:
    """``(..., d, R * C)`` -> ``(..., R, d, C)``."""
    return weights.unflatten(-1, (strengths, -1)).movedim(-2, -3)
