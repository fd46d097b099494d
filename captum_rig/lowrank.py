"""Low-rank images: the SVD of every trailing H×W matrix, and the rank path built on it.

For an image channel X (H×W) with SVD X = Σ_i σ_i u_i v_iᵀ (σ_1 ≥ σ_2 ≥ ...), the rank-k
image X_k = Σ_{i≤k} σ_i u_i v_iᵀ is the best rank-k approximation of X in Frobenius and
spectral norm (Eckart–Young), and X − X_k keeps only the ranks above k.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import contextlib
from typing import Iterator, Sequence, Tuple, Union

import torch
from torch import Tensor

from captum_rig._checks import check_images, check_int, compute_dtype

__all__ = ["low_rank", "drop_top_ranks", "RankPath"]

Ranks = Union[Tensor, Sequence[float], Sequence[int]]

LOW_RANK_METHODS = ("exact", "randomized")


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Runs the block with one intra-op CPU thread, restoring the count after, on error too.

    A batched CPU SVD factors its small matrices one after the other, and LAPACK gains
    little from threads at these sizes; on a loaded 2-core machine the threaded SVD of a
    3×224×224 image took about 17x longer than a single-threaded one
    (``benchmarks/bench_rig.py --busy``).
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _svd(x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Thin SVD of every trailing H×W matrix, in :func:`compute_dtype`, one CPU thread."""
    with _one_cpu_thread(x.device):
        return torch.linalg.svd(x.to(compute_dtype(x.dtype)), full_matrices=False)


def _randomized_svd(
    x: Tensor, size: int, power_iters: int, seed: int
) -> Tuple[Tensor, Tensor, Tensor]:
    """Approximate thin SVD of every trailing H×W matrix from a ``size``-column sketch.

    The randomized range finder of Halko, Martinsson and Tropp (SIAM Review 53(2), 2011,
    Alg. 4.4 and 5.1): ``Q`` is an orthonormal basis of ``(A Aᵀ)^q A Ω`` for a Gaussian
    ``Ω`` (W × size), re-orthonormalized after every product so that float32 keeps the
    small directions, and the SVD of the small ``Qᵀ A`` gives the factors. One ``Ω``,
    drawn from ``seed`` on ``x``'s device, serves every matrix of the batch, so an image's
    result does not depend on the images beside it.

    Returns:
        ``(u, s, vh)`` of shapes ``(..., H, size)``, ``(..., size)``, ``(..., size, W)``.
    """
    a = x.to(compute_dtype(x.dtype))
    generator = torch.Generator(device=a.device)
    generator.manual_seed(seed)
    omega = torch.randn((a.shape[-1], size), generator=generator, dtype=a.dtype, device=a.device)
    y = a @ omega
    for _ in range(power_iters):
        z = torch.linalg.qr(a.mT @ torch.linalg.qr(y).Q).Q
        y = a @ z
    q = torch.linalg.qr(y).Q
    ub, s, vh = torch.linalg.svd(q.mT @ a, full_matrices=False)
    return q @ ub, s, vh


def low_rank(
    x: Tensor,
    k: int,
    *,
    method: str = "exact",
    oversample: int = 10,
    power_iters: int = 2,
    seed: int = 0,
) -> Tensor:
    r"""Best rank-k approximation of every trailing H×W matrix of ``x``.

    Keeps the ``k`` largest singular values of each matrix (each channel of each image)
    and drops the rest. Differentiable in ``x``.

    ``method="exact"`` computes the full SVD: the Eckart–Young optimum, at a cost that
    does not depend on ``k``. ``method="randomized"`` computes a truncated SVD from a
    Gaussian sketch of ``k + oversample`` columns refined by ``power_iters`` power
    iterations (Halko, Martinsson, Tropp, SIAM Review 53(2), 2011): for ``k`` much
    smaller than ``min(H, W)`` it is much faster and lighter, its result still has rank
    at most ``k``, it equals the exact one on matrices of rank at most ``k``, and its
    Frobenius error is at least the optimum ``sqrt(Σ_{i>k} σ_i²)``. On 4000×6000×3
    images (smooth plus noise, an upsampled photo) with the defaults it was at most 1.007
    times the optimum for ``k`` in 8..128 (where the optimum is above float32 round-off),
    in 1/125 to 1/48 of the exact SVD's time on one CPU thread and about half its peak
    memory (``benchmarks/bench_lowrank.py``). It is deterministic for a given ``seed``
    and device. When ``k + oversample >= min(H, W)`` the exact SVD is used.

    Args:
        x (Tensor): float tensor of shape ``(..., H, W)``, e.g. images ``(N, C, H, W)``
            with pixel values in [0, 1].
        k (int): rank to keep, ``k >= 0``. ``k = 0`` gives zeros, ``k >= min(H, W)``
            gives ``x`` back.
        method (str): ``"exact"`` or ``"randomized"``.
        oversample (int): ``"randomized"`` only: extra sketch columns, ``>= 0``.
        power_iters (int): ``"randomized"`` only: power iterations, ``>= 0``; each costs
            two more products with ``x`` and sharpens the result when the singular
            values decay slowly.
        seed (int): ``"randomized"`` only: seed of the Gaussian sketch, ``>= 0``.

    Returns:
        Tensor: shape, dtype and device of ``x``.

    Examples:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> x_5 = low_rank(x, 5)
        >>> x_5.shape, int(torch.linalg.matrix_rank(x_5[0, 0]))
        (torch.Size([2, 3, 32, 32]), 5)
        >>> fast = low_rank(x, 5, method="randomized")
        >>> bool(torch.linalg.norm(x - fast) <= 1.01 * torch.linalg.norm(x - x_5))
        True
    """
    check_images(x, name="x")
    k = check_int(k, name="k")
    if method not in LOW_RANK_METHODS:
        raise ValueError(f"method must be one of {LOW_RANK_METHODS}, got {method!r}")
    oversample = check_int(oversample, name="oversample")
    power_iters = check_int(power_iters, name="power_iters")
    seed = check_int(seed, name="seed")
    if k >= min(x.shape[-2:]):
        return x.clone()
    if k == 0:
        return x * 0  # stays in the autograd graph, unlike zeros_like
    if method == "randomized" and k + oversample < min(x.shape[-2:]):
        u, s, vh = _randomized_svd(x, k + oversample, power_iters, seed)
    else:
        u, s, vh = _svd(x)
    x_k = (u[..., :k] * s[..., None, :k]) @ vh[..., :k, :]
    return x_k.to(x.dtype)


def drop_top_ranks(
    x: Tensor,
    k: int,
    *,
    method: str = "exact",
    oversample: int = 10,
    power_iters: int = 2,
    seed: int = 0,
) -> Tensor:
    r"""``x`` with the ``k`` largest singular values of every H×W matrix removed.

    The "reverse" or high-rank image of the paper (Sec. 5.1):
    ``drop_top_ranks(x, k) == x - low_rank(x, k)``.

    Args:
        x (Tensor): float tensor of shape ``(..., H, W)``.
        k (int): number of leading ranks to remove, ``k >= 0``. ``k = 0`` gives ``x``,
            ``k >= min(H, W)`` gives zeros.
        method, oversample, power_iters, seed: as in :func:`low_rank`.

    Returns:
        Tensor: shape, dtype and device of ``x``.

    Examples:
        >>> x = torch.rand(1, 3, 16, 16)
        >>> torch.allclose(drop_top_ranks(x, 4) + low_rank(x, 4), x, atol=1e-5)
        True
    """
    options = dict(method=method, oversample=oversample, power_iters=power_iters, seed=seed)
    return x - low_rank(x, k, **options)


class RankPath:
    r"""Every rank image of a batch, and the continuous rank path, from one SVD.

    With ``w = min(H, W)`` and the SVD ``X = Σ_i σ_i u_i v_iᵀ`` of each H×W matrix, the
    rank path is

    .. math::
        x(t) = Σ_{i=1}^{w} \mathrm{clamp}(t - i + 1, 0, 1)\, σ_i u_i v_iᵀ,
        \qquad t ∈ [0, w],

    so ``x(0) = 0``, ``x(k)`` is the rank-k image for every integer ``k`` and ``x(w) = x``,
    linear between integer ranks. The SVD is computed once, without gradient, in at least
    float32; images come back in the input dtype.

    Args:
        images (Tensor): float tensor of shape ``(..., H, W)``.

    Examples:
        >>> x = torch.rand(4, 3, 32, 32)
        >>> path = RankPath(x)
        >>> path.width
        32
        >>> path.images([1, 5, 32]).shape  # (ranks, N, C, H, W)
        torch.Size([3, 4, 3, 32, 32])
        >>> bool((path.images([32])[0] == x).all())  # the full rank is x itself
        True
    """

    def __init__(self, images: Tensor) -> None:
        check_images(images, name="images")
        self._images = images.detach()
        with torch.no_grad():
            u, s, vh = _svd(self._images)
        self._u, self._s, self._vh = u, s, vh

    @property
    def width(self) -> int:
        """``w = min(H, W)``: the number of ranks, and the end of the path."""
        return self._s.shape[-1]

    @property
    def singular_values(self) -> Tensor:
        """Singular values, largest first, shape ``(..., w)`` (float32 or float64)."""
        return self._s

    def _as_points(self, t: Ranks) -> Tensor:
        t = torch.as_tensor(t, dtype=self._s.dtype, device=self._s.device).reshape(-1)
        if t.numel() and (not bool(torch.isfinite(t).all()) or t.min() < 0 or t.max() > self.width):
            raise ValueError(f"ranks must lie in 0..{self.width}, got {t.tolist()}")
        return t

    def _combine(self, coefficients: Tensor) -> Tensor:
        # coefficients: (m, w) weights of the rank-one terms σ_i u_i v_iᵀ. Only the span of
        # terms with a non-zero weight enters the product: a rank-k image costs k terms,
        # not w, and a path increment within one rank a single term.
        m = coefficients.shape[0]
        used = torch.nonzero(coefficients.any(dim=0)).reshape(-1)
        if used.numel() == 0:
            return torch.zeros(
                (m, *self._images.shape), dtype=self._images.dtype, device=self._images.device
            )
        lo, hi = int(used[0]), int(used[-1]) + 1
        c = coefficients[:, lo:hi].reshape(m, *([1] * (self._s.dim() - 1)), hi - lo)
        u, s, vh = self._u[..., lo:hi], self._s[..., lo:hi], self._vh[..., lo:hi, :]
        return ((u * (s * c).unsqueeze(-2)) @ vh).to(self._images.dtype)

    def images(self, t: Ranks, reverse: bool = False) -> Tensor:
        r"""Points ``x(t)`` on the rank path; at integer ``t = k`` the rank-k images.

        Args:
            t (Tensor or sequence): ``m`` points in ``[0, w]``.
            reverse (bool): if True, return ``x - x(t)`` instead: at integer ``k`` the
                images with the ``k`` largest singular values removed.

        Returns:
            Tensor: shape ``(m, ..., H, W)``, the input's dtype and device.
        """
        t = self._as_points(t)
        ranks = torch.arange(self.width, dtype=t.dtype, device=t.device)
        coefficients = (t[:, None] - ranks).clamp(0, 1)
        x_t = self._combine(coefficients)
        # The full rank is the input itself, bit for bit, so that rank w never flips a
        # prediction through float error in the reconstruction.
        full = t >= self.width
        if bool(full.any()):
            x_t[full] = self._images
        return self._images - x_t if reverse else x_t

    def displacement(self, start: Ranks, stop: Ranks) -> Tensor:
        r"""Exact path increments ``x(stop) - x(start)``, pairwise.

        Computed from the rank-one terms directly (one product, no cancellation of two
        large images), so it stays exact across the kinks at integer ranks.

        Args:
            start (Tensor or sequence): ``m`` points in ``[0, w]``.
            stop (Tensor or sequence): ``m`` points in ``[0, w]``.

        Returns:
            Tensor: shape ``(m, ..., H, W)``.
        """
        start, stop = self._as_points(start), self._as_points(stop)
        ranks = torch.arange(self.width, dtype=start.dtype, device=start.device)
        return self._combine(
            (stop[:, None] - ranks).clamp(0, 1) - (start[:, None] - ranks).clamp(0, 1)
        )

    def chunks(
        self, t: Ranks, chunk_size: int, reverse: bool = False
    ) -> Iterator[Tuple[int, Tensor]]:
        """Yields ``(start, images(t[start:start + chunk_size]))``: bounded memory.

        Args:
            t (Tensor or sequence): ``m`` points in ``[0, w]``.
            chunk_size (int): at most this many points per chunk.
            reverse (bool): as in :meth:`images`.
        """
        t = self._as_points(t)
        chunk_size = check_int(chunk_size, name="chunk_size", low=1)
        for start in range(0, t.numel(), chunk_size):
            yield start, self.images(t[start : start + chunk_size], reverse=reverse)
