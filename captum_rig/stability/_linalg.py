"""Norms of linear maps given as functions: power iteration, Schur test, Gram iteration.

The layers of a network are linear maps (convolutions, pooling, resampling) that are
cheap to apply and too large to write down; these estimate or bound their largest
singular value from a few applications of the map and its adjoint.
"""

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["power_iteration", "autograd_adjoint", "schur_bound", "gram_bound"]


def power_iteration(
    forward: Callable[[Tensor], Tensor],
    adjoint: Callable[[Tensor], Tensor],
    example_shape: Sequence[int],
    n_iter: int,
    seed: int,
    dtype: torch.dtype,
    device: torch.device,
    block: int = 8,
) -> float:
    """Largest singular value of a linear map by ``n_iter`` block power iterations.

    Subspace iteration on ``AᵀA`` with ``block`` orthonormal vectors (one batch; QR after
    every step) from a seeded Gaussian start drawn on the CPU, then Rayleigh–Ritz: the
    largest singular value of ``A`` restricted to the final subspace. That is a lower
    estimate of ``‖A‖₂`` that converges like ``(σ_{block+1}/σ_1)^{2·n_iter}``, much
    faster than single-vector power iteration when the top singular values are close.

    Examples:
        >>> w = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
        >>> norm = power_iteration(lambda v: v @ w.T, lambda u: u @ w, (2,), 5, 0,
        ...                        torch.float64, torch.device("cpu"))
        >>> round(norm, 9)
        3.0
    """
    n = math.prod(example_shape)
    b = min(block, n)
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn((n, b), generator=generator, dtype=dtype)
    q = torch.linalg.qr(start).Q.T.contiguous().to(device)  # (b, n), orthonormal rows
    with torch.no_grad():
        for _ in range(n_iter):
            w = adjoint(forward(q.view(b, *example_shape))).reshape(b, n)
            q = torch.linalg.qr(w.T).Q.T.contiguous()
        image = forward(q.view(b, *example_shape)).reshape(b, -1)
        return float(torch.linalg.matrix_norm(image, 2))


def autograd_adjoint(
    forward: Callable[[Tensor], Tensor],
    example_shape: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
) -> Callable[[Tensor], Tensor]:
    """``u ↦ Aᵀu`` for a linear ``forward``: the vector-Jacobian product at any point."""

    def adjoint(u: Tensor) -> Tensor:
        with torch.enable_grad():
            shape = (u.shape[0],) + tuple(example_shape)
            z = torch.zeros(shape, dtype=dtype, device=device, requires_grad=True)
            (grad,) = torch.autograd.grad(forward(z), z, grad_outputs=u)
        return grad

    return adjoint


def schur_bound(
    forward: Callable[[Tensor], Tensor], example_shape: Sequence[int], device: torch.device
) -> float:
    """Certified ``‖A‖₂ ≤ √(‖A‖₁ ‖A‖∞)`` for a linear map with non-negative entries.

    The row sums are ``A·1`` and the column sums ``Aᵀ·1`` (one forward, one backward).
    Exact for average pooling over disjoint windows (``1/k`` for ``k×k``).

    Examples:
        >>> pool = torch.nn.AvgPool2d(2)
        >>> schur_bound(pool, (1, 4, 4), torch.device("cpu"))
        0.5
    """
    with torch.enable_grad():
        ones = torch.ones(
            (1,) + tuple(example_shape), dtype=torch.float64, device=device, requires_grad=True
        )
        out = forward(ones)
        (cols,) = torch.autograd.grad(out, ones, grad_outputs=torch.ones_like(out))
    return math.sqrt(float(out.detach().max()) * float(cols.max()))


def gram_bound(matrices: Tensor, n_iter: int) -> Tensor:
    """Certified upper bound on the largest singular value of each matrix of a batch.

    Gram iteration: ``G ← Gᴴ G``, ``n_iter`` times, each time rescaled by the Frobenius
    norm (the scale is kept as a logarithm, so nothing overflows). After ``t`` steps
    ``σ₁(G₀)^{2^t} = σ₁(G_t) ≤ ‖G_t‖_F``, a bound within a factor ``rank^{1/2^{t+1}}``.

    Examples:
        >>> gram_bound(torch.eye(3, dtype=torch.float64)[None] * 2, 6)
        tensor([2.0...], dtype=torch.float64)
    """
    g = matrices
    if g.shape[-2] < g.shape[-1]:
        g = g.mH  # the smaller Gram matrix; same singular values
    log_scale = torch.zeros(g.shape[:-2], dtype=torch.float64, device=g.device)
    tiny = torch.finfo(torch.float64).tiny
    for _ in range(n_iter):
        frob = torch.linalg.matrix_norm(g).clamp_min(tiny)
        log_scale = 2 * (log_scale + frob.log())
        g = g / frob[..., None, None]
        g = g.mH @ g
    frob = torch.linalg.matrix_norm(g).clamp_min(tiny)
    return torch.exp((log_scale + frob.log()) / 2**n_iter)
