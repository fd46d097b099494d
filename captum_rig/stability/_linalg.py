"""Norms of linear maps given as functions: power iteration, Schur test, Gram iteration.

The layers of a network are linear maps (convolutions, pooling, resampling) that are
cheap to apply and too large to write down; these estimate or bound their largest
singular value from a few applications of the map and its adjoint.
"""

import math
from typing import Callable, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ["power_iteration", "autograd_adjoint", "schur_bound", "gram_bound", "max_gram_bound"]


def power_iteration(
    forward: Callable[[Tensor], Tensor],
    adjoint: Callable[[Tensor], Tensor],
    example_shape: Sequence[int],
    n_iter: int,
    seed: int,
    dtype: torch.dtype,
    device: torch.device,
    block: int = 8,
    tol: float = 0.0,
) -> float:
    """Largest singular value of a linear map by block power iteration, from below.

    Subspace iteration on ``AᵀA`` with ``block`` orthonormal vectors (one batch; QR after
    every step) from a seeded Gaussian start drawn on the CPU, with a Rayleigh–Ritz step
    each time: the largest singular value of ``A`` restricted to the current subspace. It
    stops when that changes by at most ``tol`` (relative) from one step to the next, or
    after ``n_iter`` steps. Each value is a lower estimate of ``‖A‖₂``, converging like
    ``(σ_{block+1}/σ_1)^{2·n_iter}``, much faster than single-vector power iteration when
    the top singular values are close.

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
    sigma = -1.0
    with torch.no_grad():
        for step in range(n_iter + 1):
            image = forward(q.view(b, *example_shape))
            previous, sigma = sigma, float(torch.linalg.matrix_norm(image.reshape(b, -1), 2))
            if step == n_iter or abs(sigma - previous) <= tol * sigma:
                break
            w = adjoint(image).reshape(b, n)
            q = torch.linalg.qr(w.T).Q.T.contiguous()
        return sigma


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


def _column_lower(matrices: Tensor, g: Tensor) -> float:
    """``max ‖M v‖ / ‖v‖`` over the matrices, ``v`` the largest column of each Gram power
    ``g`` (close to the top right singular vector): a lower bound on the largest norm."""
    cols = torch.linalg.vector_norm(g, dim=-2).argmax(-1)
    v = g[torch.arange(g.shape[0]), :, cols].to(matrices.dtype)[..., None]
    ratio = torch.linalg.vector_norm(matrices @ v, dim=(1, 2)) / torch.linalg.vector_norm(
        v, dim=(1, 2)
    ).clamp_min(1e-300)
    return float(ratio.max()) * (1 - 1e-9)  # a margin for its own rounding


def _screen(matrices: Tensor, n_iter: int, chunk: int, top: int = 4) -> Tuple[Tensor, float]:
    """Which matrices may hold the largest norm, by Gram iteration in single precision,
    and a lower bound on that norm (from the candidates' vectors, in the input's
    precision). A matrix is dropped when its single-precision bound, raised by a 10⁻³
    margin that covers single-precision rounding many times over, is below the lower
    bound."""
    single = torch.complex64 if matrices.is_complex() else torch.float32
    lower, kept = 0.0, []
    for start in range(0, matrices.shape[0], chunk):
        index = torch.arange(start, min(start + chunk, matrices.shape[0]), device=matrices.device)
        g = matrices[index].to(single)
        log_scale = torch.zeros(g.shape[0], dtype=torch.float64, device=g.device)
        for step in range(n_iter + 1):
            frob = torch.linalg.matrix_norm(g).double().clamp_min(1e-30)
            bound = torch.exp((log_scale + frob.log()) / 2**step)
            best = bound.argsort(descending=True)[:top]
            if step:
                lower = max(lower, _column_lower(matrices[index[best]], g[best]))
            keep = bound * (1 + 1e-3) >= lower
            g, index, frob, log_scale = g[keep], index[keep], frob[keep], log_scale[keep]
            if g.shape[0] <= top or step == n_iter:
                break
            log_scale = 2 * (log_scale + frob.log())
            g = g / frob[:, None, None].to(g.dtype)
            g = g.mH @ g
        kept.append(index)
    return torch.cat(kept), lower


def max_gram_bound(matrices: Tensor, n_iter: int, chunk: int, rtol: float = 1e-4) -> float:
    """Certified upper bound on the largest singular value over a batch of matrices.

    :func:`gram_bound` on every matrix, pruned: a single-precision pass of Gram
    iteration keeps only the matrices that may hold the maximum (see ``_screen``), with a
    lower bound ``LB`` on it; on those, Gram iteration in the input's precision drops a
    matrix whose bound falls below ``LB`` and stops once every remaining bound is within
    ``1 + rtol`` of ``LB`` (or after ``n_iter`` steps). The result is the largest
    remaining bound: at least every matrix's norm (a dropped one's is below ``LB``,
    which the matrix attaining it keeps below its own bound). Matrices go through in
    chunks of ``chunk``.

    Examples:
        >>> m = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
        >>> 3.0 <= max_gram_bound(torch.stack([m, m / 2]), 8, chunk=2) <= 3.0 * (1 + 1e-4)
        True
    """
    if matrices.shape[-2] < matrices.shape[-1]:
        matrices = matrices.mH  # the smaller Gram matrix; same singular values
    index, lower = _screen(matrices, n_iter, chunk)
    matrices = matrices[index]
    best = 0.0
    tiny = torch.finfo(torch.float64).tiny
    for start in range(0, matrices.shape[0], chunk):
        g = original = matrices[start : start + chunk]
        log_scale = torch.zeros(g.shape[0], dtype=torch.float64, device=g.device)
        for step in range(n_iter + 1):
            frob = torch.linalg.matrix_norm(g).clamp_min(tiny)
            bound = torch.exp((log_scale + frob.log()) / 2**step)
            keep = bound >= lower
            if not bool(keep.any()):
                break
            if step == n_iter or float(bound.max()) <= lower * (1 + rtol):
                best = max(best, float(bound.max()))
                break
            g, frob, log_scale, original = g[keep], frob[keep], log_scale[keep], original[keep]
            log_scale = 2 * (log_scale + frob.log())
            g = g / frob[:, None, None]
            g = g.mH @ g
            lower = max(lower, _column_lower(original, g))
    return best
