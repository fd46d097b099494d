"""The settings one Lipschitz analysis shares between its layers, and their checks."""

import warnings
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from captum_rig._checks import check_images, check_int, check_model, check_real
from captum_rig._context import eval_mode

__all__ = ["NormMethod", "Options", "check_analysis_args", "check_fits"]

NormMethod = Tuple[Optional[float], str]
"""A layer's norm (None: no known one) and how it was obtained, in words."""


@dataclass
class Options:
    """Settings of one analysis and the layer norms computed so far (shared by blocks).

    ``certified``: every norm an upper bound (Cholesky-checked Gram matrices, Schur
    test); otherwise
    power iteration, from below, until the estimate changes by at most ``tol``
    (relative) or after ``n_iter`` iterations.
    """

    n_iter: int = 100
    seed: int = 0
    certified: bool = True
    tol: float = 1e-6
    cache: Dict[Tuple[int, Tuple[int, ...]], NormMethod] = field(default_factory=dict)

    def describe(self) -> str:
        """How convolution and pooling norms are computed, in words."""
        if self.certified:
            return (
                "certified: convolutions and linear layers by their Gram matrices' largest "
                "eigenvalue, checked by a Cholesky test; Schur test for pooling and resampling"
            )
        return (
            f"estimate: power iteration (at most {self.n_iter} its, relative tolerance "
            f"{self.tol:g}) approaches each norm from below, so the product is not a bound"
        )


def check_fits(model: nn.Module, example_input: Tensor) -> None:
    """A TypeError for a dtype other than the model's, a ValueError naming the shape when
    the model cannot run on ``example_input`` (one forward pass on a copy, eval mode)."""
    dtypes = {t.dtype for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()}
    if dtypes and example_input.dtype not in dtypes:
        raise TypeError(
            f"example_input has dtype {example_input.dtype} but the model's parameters are "
            f"{', '.join(sorted(str(d) for d in dtypes))}: convert one to the other"
        )
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input.detach().clone())
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"example_input of shape {tuple(example_input.shape)} does not fit the model: {why}"
        ) from None


def check_analysis_args(
    model, example_input, n_iter, seed, certified, tol: float = 1e-6, gram_iter=None
) -> Options:
    """Checks the arguments every analysis shares; its :class:`Options`.

    ``gram_iter`` is deprecated: certified norms no longer use Gram iteration."""
    if gram_iter is not None:
        warnings.warn(
            "gram_iter is deprecated and ignored: certified norms are now the largest "
            "eigenvalues of Gram matrices checked by a Cholesky test (tight to about 1e-6)",
            DeprecationWarning,
            stacklevel=3,
        )
    check_model(model)
    check_images(example_input, name="example_input", min_dim=1, layout="(N, ...)")
    check_fits(model, example_input)
    return Options(
        n_iter=check_int(n_iter, name="n_iter", low=1),
        seed=check_int(seed, name="seed"),
        certified=bool(certified),
        tol=check_real(tol, name="tol"),
    )
