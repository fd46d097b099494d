"""Norms of linear maps: power iteration, the Schur test, a Cholesky certificate.

The layers of a network are linear maps (convolutions, pooling, resampling) that are
cheap to apply and too large to write down; these estimate or bound their largest
singular value from a few applications of the map and its adjoint.
"""

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence, Tuple

import torch
from torch import Tensor

__all__ = [
    "UNIT_ROUNDOFF",
    "power_iteration",
    "autograd_adjoint",
    "schur_bound",
    "gram_matrix",
    "certified_norm",
]


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


UNIT_ROUNDOFF = torch.finfo(torch.float64).eps / 2
"""Float64's unit round-off ``u``: every computed operation is exact times ``(1 + δ)``,
``|δ| ≤ u``."""


def gram_matrix(matrix: Tensor) -> Tuple[Tensor, float]:
    """The smaller Gram matrix of a real matrix, in float64, and a bound on its error.

    ``M Mᵀ`` or ``Mᵀ M`` (whichever is smaller; the same nonzero eigenvalues, the squares
    of ``M``'s singular values) and ``ε`` with ``‖G_computed − G‖₂ ≤ ε``: each entry is a
    dot product of length ``m``, off by at most ``γ_m`` times the same dot product of
    absolute values, so ``ε ≤ γ_m ‖|M|ᵀ|M|‖_F ≤ γ_m ‖M‖_F²`` (Higham, Sec. 3.5).
    """
    m = matrix.detach().double()
    if m.shape[0] > m.shape[1]:
        m = m.T
    inner = m.shape[1]
    error = 2 * (inner + 2) * UNIT_ROUNDOFF * float(torch.linalg.matrix_norm(m)) ** 2
    return m @ m.T, error


def _rayleigh(grams: Tensor, n_iter: int, seed: int) -> Tensor:
    """Power iteration on each Hermitian matrix of a batch, in single precision: the
    Rayleigh quotients, estimates of the largest eigenvalues (to rank the matrices only)."""
    single = grams.to(torch.complex64 if grams.is_complex() else torch.float32)
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(grams.shape[:-1] + (1,), generator=generator)
    v = start.to(device=grams.device, dtype=single.dtype)
    for _ in range(n_iter):
        v = single @ v
        v = v / torch.linalg.vector_norm(v, dim=-2, keepdim=True).clamp_min(1e-30)
    return (v.mH @ single @ v)[..., 0, 0].real


def _largest_eigenvalue(grams: Tensor, steps: int = 48, seed: int = 0) -> float:
    """The largest eigenvalue over a batch of Hermitian matrices, from below, closely.

    Lanczos with full re-orthogonalization, batched, at most ``steps`` steps; it stops
    once the largest Ritz value (of the tridiagonal matrix) changes by less than 10⁻¹²,
    relative. It converges much faster than power iteration. Small matrices get
    ``eigvalsh`` directly. (The level it sets is checked by the Cholesky test, so its
    own accuracy only decides how often a matrix is tested twice.)
    """
    batch, n = grams.shape[0], grams.shape[-1]
    if n <= steps:
        return float(torch.linalg.eigvalsh(grams)[..., -1].max())
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn((batch, n, 1), generator=generator, dtype=torch.float64)
    q = (q / torch.linalg.vector_norm(q, dim=1, keepdim=True)).to(grams)
    basis = grams.new_zeros((batch, n, steps))
    alphas = torch.zeros((batch, steps), dtype=torch.float64, device=grams.device)
    betas = torch.zeros((batch, steps), dtype=torch.float64, device=grams.device)
    top = -math.inf
    for j in range(steps):
        basis[:, :, j : j + 1] = q
        w = grams @ q
        alphas[:, j] = (q.mH @ w)[:, 0, 0].real
        for _ in range(2):  # twice is enough (Giraud et al. 2005)
            w = w - basis[:, :, : j + 1] @ (basis[:, :, : j + 1].mH @ w)
        betas[:, j] = torch.linalg.vector_norm(w, dim=1)[:, 0]
        q = w / betas[:, j, None, None].clamp_min(1e-300).to(w.dtype)
        if j % 4 == 3 or j == steps - 1:
            k = j + 1
            tridiagonal = torch.diag_embed(alphas[:, :k])
            tridiagonal += torch.diag_embed(betas[:, : k - 1], 1) + torch.diag_embed(
                betas[:, : k - 1], -1
            )
            previous, top = top, float(torch.linalg.eigvalsh(tridiagonal)[..., -1].max())
            if abs(top - previous) <= 1e-12 * abs(top):
                break
    return top


def _cholesky_fails(matrices: Tensor) -> Tensor:
    """Whether the Cholesky factorization of each matrix stops (not positive definite).

    A batched factorization is a loop of one LAPACK call per matrix; on the CPU, halves of
    the batch on torch's threads run side by side (each call releases the GIL).
    """
    workers = torch.get_num_threads()
    if matrices.device.type != "cpu" or workers < 2 or matrices.shape[0] < 2 * workers:
        return torch.linalg.cholesky_ex(matrices)[1] != 0
    with ThreadPoolExecutor(workers) as pool:
        infos = pool.map(lambda part: torch.linalg.cholesky_ex(part)[1], matrices.chunk(workers))
        return torch.cat(list(infos)) != 0


def _not_below(grams: Tensor, level: float, error: float, in_place: bool = False) -> Tensor:
    """The matrices for which ``level·I − G`` is not shown positive definite.

    Rump's test: when the Cholesky factorization of ``(level − c)·I − G`` runs to the end
    in floating point, with ``c`` at least ``γ_{n+1}·trace``, then ``level·I − G`` is
    positive definite, i.e. every eigenvalue of ``G`` is below ``level`` (Rump, BIT 2006;
    the trace is at most ``n·(level + error)``; ``c`` here is 8 times that bound, for
    complex arithmetic and more). ``in_place``: ``grams`` is overwritten (saves a copy of
    a large batch).
    """
    n = grams.shape[-1]
    shift = level - 8 * (n + 2) * UNIT_ROUNDOFF * n * (level + error)
    diagonal = grams.diagonal(dim1=-2, dim2=-1).clone()
    shifted = grams.neg_() if in_place else grams.neg()
    shifted.diagonal(dim1=-2, dim2=-1).add_(shift)
    fails = _cholesky_fails(shifted)
    failed = shifted[fails].neg_()  # a sign flip is exact; the diagonal is put back as it was
    failed.diagonal(dim1=-2, dim2=-1).copy_(diagonal[fails])
    return failed


def certified_norm(
    grams: Iterable[Tensor],
    error: float,
    n_iter: int = 4,
    top: int = 2,
    rtol: float = 1e-6,
    seed: int = 0,
) -> float:
    r"""Certified upper bound on the largest norm of many matrices, from their Gram matrices.

    The batches are overwritten (they are large; a copy would cost as much as the test).

    ``grams`` yields batches ``(B, n, n)`` of Hermitian positive semi-definite float64
    matrices ``G = MᴴM`` (only the lower triangles are read), each computed within
    ``error`` of the exact one in spectral norm. A few power iterations rank each batch;
    the largest eigenvalue of the ``top`` leaders (Lanczos, from below), raised by
    ``rtol``, is a level ``λ``; a Cholesky factorization of ``λ·I − G``, shifted by a rounding
    margin, then certifies that every matrix of the batch has its eigenvalues below ``λ``
    (Rump's test). A matrix that fails gets its own eigenvalue, the level rises, and it
    is tested again, so the result never depends on the ranking being right. The bound
    is ``√(λ + error)``: at least ``max ‖M‖₂`` and above it by about ``rtol/2``,
    relative.

    Args:
        grams (iterable of Tensor): batches ``(B, n, n)``, real or complex, float64,
            finite (a diagonal that is not gives ``inf``).
        error (float): bound on ``‖G_computed − G‖₂`` for every matrix.
        n_iter (int): power iterations that rank the matrices of a batch.
        top (int): how many leaders of each batch get an exact eigenvalue first (a
            batch of at most ``top`` matrices is tested at once).
        rtol (float): relative margin of the level above the largest eigenvalue found.
        seed (int): seed of the power iterations' start.

    Returns:
        float: the bound (``inf`` when a matrix is not finite).

    Examples:
        >>> m = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
        >>> grams = torch.stack([m @ m, m @ m / 4])
        >>> 3.0 <= certified_norm([grams], error=0.0) <= 3.0 * (1 + 1e-6)
        True

    References:
        Rump. Verification of positive definiteness. BIT 46 (2006) 433–452.
    """
    level = torch.finfo(torch.float64).tiny
    for batch in grams:
        if not bool(torch.isfinite(batch.diagonal(dim1=-2, dim2=-1)).all()):
            return math.inf
        leaders = batch
        if batch.shape[0] > top:
            leaders = batch[_rayleigh(batch, n_iter, seed).topk(top).indices]
        level = max(level, _largest_eigenvalue(leaders, seed=seed) * (1 + rtol))
        failed = _not_below(batch, level, error, in_place=True)
        for attempt in range(3):
            if failed.shape[0] == 0:
                break
            if attempt < 2:
                found = _largest_eigenvalue(failed, seed=seed)
            else:  # Lanczos fell short twice: the exact eigenvalues
                found = float(torch.linalg.eigvalsh(failed)[..., -1].max())
            if not math.isfinite(found):
                return math.inf
            level = max(level, found * (1 + rtol) * (1 + rtol) ** attempt)
            failed = _not_below(failed, level, error)
        if failed.shape[0]:
            raise RuntimeError("certified_norm: the Cholesky test failed three times")
    return math.sqrt(level + error)
