"""A measured lower bound on a model's Lipschitz constant: the local Jacobian norm.

At an input ``x`` where the model is differentiable, ``‖J_f(x)‖₂`` (the largest singular
value of the input Jacobian) is the limit of ``‖f(x + d) − f(x)‖ / ‖d‖`` along the top
right singular vector, so it never exceeds the model's L2 Lipschitz constant.
:func:`local_lipschitz` estimates it by power iteration on ``JᵀJ`` from below: every
value it reports is ``‖J v‖`` for a unit vector ``v``, a lower bound on ``‖J‖₂`` and so
on the Lipschitz constant. Beside :func:`~captum_rig.stability.lipschitz_bound` (an
upper bound) it brackets the true constant.

References:
    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.
"""

import warnings
from typing import Callable, Tuple, Union

import torch
from torch import Tensor, nn

from captum_rig._checks import check_images, check_int, check_model, check_real
from captum_rig._context import eval_mode

__all__ = ["local_lipschitz"]


def _jvp(model: nn.Module, x: Tensor) -> Callable[[Tensor], Tensor]:
    """``v ↦ J v`` at ``x``: forward mode where every op has it, else double backward."""

    def forward_mode(v: Tensor) -> Tensor:
        with warnings.catch_warnings():
            # torch.func.jvp's first call imports torch's own decompositions, which warn
            # that torch.jit.script is deprecated: nothing a caller can act on
            warnings.filterwarnings(
                "ignore", message=".*torch.jit.script.*", category=FutureWarning
            )
            return torch.func.jvp(lambda z: model(z.clone()), (x,), (v,))[1]

    def double_backward(v: Tensor) -> Tensor:
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            out = model(z.clone())  # a copy: the model may change its input in place
            u = torch.zeros_like(out, requires_grad=True)
            (g,) = torch.autograd.grad(out, z, grad_outputs=u, create_graph=True)
            (jv,) = torch.autograd.grad(g, u, grad_outputs=v)
        return jv

    def jvp(v: Tensor) -> Tensor:
        nonlocal use_forward
        if use_forward:
            try:
                return forward_mode(v)
            except (RuntimeError, NotImplementedError):  # an op without a forward-mode rule
                use_forward = False
        return double_backward(v)

    use_forward = True
    return jvp


def _vjp(model: nn.Module, x: Tensor) -> Callable[[Tensor], Tensor]:
    """``u ↦ Jᵀ u`` at ``x`` (one forward pass, a backward pass per call)."""
    with torch.enable_grad():
        z = x.detach().requires_grad_(True)
        out = model(z.clone())

    def vjp(u: Tensor) -> Tensor:
        with torch.enable_grad():
            (g,) = torch.autograd.grad(out, z, grad_outputs=u, retain_graph=True)
        return g

    return vjp


def _unit(v: Tensor) -> Tensor:
    """Each example's vector scaled to norm 1 (a zero vector stays zero)."""
    norms = v.flatten(1).norm(dim=1).clamp_min(torch.finfo(v.dtype).tiny)
    return v / norms.view(-1, *([1] * (v.dim() - 1)))


def _batch_norms(model: nn.Module, x: Tensor, v: Tensor, n_iter: int, tol: float) -> Tensor:
    """Per example, the largest ``‖J v‖`` over the power iterates from unit ``v``."""
    jvp, vjp = _jvp(model, x), _vjp(model, x)
    best = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for _ in range(n_iter):
        u = jvp(v).detach()
        sigma = u.flatten(1).norm(dim=1).double()
        done = bool(((sigma - best).abs() <= tol * sigma).all())
        best = torch.maximum(best, sigma)
        if done:
            break
        v = _unit(vjp(u).detach())
    return best


def local_lipschitz(
    model: nn.Module,
    images: Tensor,
    n_iter: int = 50,
    tol: float = 1e-4,
    seed: int = 0,
    batch_size: int = 16,
    per_image: bool = False,
) -> Union[float, Tensor]:
    r"""The largest input-Jacobian spectral norm at the given images: a lower bound.

    For every image ``x``, power iteration on ``J(x)ᵀ J(x)`` (``J v`` by ``jvp``, ``Jᵀ u``
    by ``vjp``; all images of a chunk at once, each with its own vector) from a seeded
    Gaussian start, until each image's estimate changes by at most ``tol`` (relative) or
    after ``n_iter`` steps. Each estimate is ``‖J v‖`` for a unit ``v``, so it is at most
    ``‖J(x)‖₂``, which is at most the model's L2 Lipschitz constant (where the model is
    differentiable at ``x``, as a ReLU network is almost everywhere): the maximum over
    the images is a true lower bound on it, and :func:`lipschitz_bound` an upper one.
    The model runs in eval mode (its flags are restored); ``images`` is not changed.
    Outputs are flattened per image (the logits' L2 norm, as the bound uses).

    Args:
        model (nn.Module): the model, mapping ``(N, ...)`` to ``(N, ...)``.
        images (Tensor): ``(N, ...)`` float inputs, e.g. ``(N, C, H, W)`` in the model's
            dtype and device.
        n_iter (int): most power iterations, ``>= 1``.
        tol (float): relative change at which an image's iteration stops, ``>= 0``.
        seed (int): seed of the random start.
        batch_size (int): images per chunk, ``>= 1``.
        per_image (bool): return every image's norm instead of the largest.

    Returns:
        float or Tensor: the largest norm over the images, or (``per_image``) a float64
        ``(N,)`` tensor of each image's norm.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))
        >>> images = torch.rand(4, 3, 2, 2)
        >>> norms = torch.linalg.matrix_norm(model[1].weight, 2) * torch.linalg.matrix_norm(
        ...     model[3].weight, 2)  # a product of layer norms: an upper bound
        >>> local_lipschitz(model, images) <= float(norms)
        True
        >>> local_lipschitz(model, images, per_image=True).shape
        torch.Size([4])

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.
    """
    model, images, (n_iter, tol, seed, batch_size) = _check_args(
        model, images, n_iter, tol, seed, batch_size
    )
    # one start for all images, so the chunking does not change any image's result
    generator = torch.Generator().manual_seed(seed)
    start = _unit(torch.randn(images.shape, generator=generator, dtype=images.dtype))
    norms = []
    with eval_mode(model):
        for i in range(0, images.shape[0], batch_size):
            chunk = images[i : i + batch_size].detach().clone()
            v = start[i : i + batch_size].to(images.device)
            norms.append(_batch_norms(model, chunk, v, n_iter, tol))
    norms = torch.cat(norms).cpu()
    return norms if per_image else float(norms.max())


def _check_args(model, images, n_iter, tol, seed, batch_size) -> Tuple[nn.Module, Tensor, tuple]:
    check_model(model)
    check_images(images, name="images", min_dim=1, layout="(N, ...)")
    settings = (
        check_int(n_iter, name="n_iter", low=1),
        check_real(tol, name="tol"),
        check_int(seed, name="seed"),
        check_int(batch_size, name="batch_size", low=1),
    )
    return model, images, settings
