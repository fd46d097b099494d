"""Blur Integrated Gradients: attribution along the path of ever more blurred images.

References:
    Xu, Venugopalan, Sundararajan. Attribution in Scale and Space. CVPR 2020,
    arXiv:2004.03383.
"""

import typing
from typing import Callable, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from captum_rig._captum import TargetType, TensorOrTupleOfTensorsGeneric
from captum_rig._checks import check_int, check_real
from captum_rig.attr._guards import attribute_checks
from captum_rig.attr._idgi import idgi_path_sum
from captum_rig.attr._path import (
    attribution_result,
    example_bytes,
    format_inputs,
    input_gradients,
    path_gradients,
)
from captum_rig.attr.blur_path import BlurPath, blur_sigmas

__all__ = ["BlurIntegratedGradients", "BlurIG"]


class BlurIntegratedGradients(GradientAttribution):
    r"""Blur Integrated Gradients: gradients integrated along a Gaussian blur path.

    The path runs from the image ``x`` (σ = 0) to its blur at ``σ_n = max_sigma``, removing
    ever coarser detail; integrating ``∇F`` along it and negating gives, per pixel,

    ``BlurIG(x) = -Σ_{i=0}^{n-1} (σ_{i+1} - σ_i) · ∂blur(x, σ_i)/∂σ · ∇F(blur(x, σ_i))``

    with ``∂blur/∂σ`` the finite difference ``(blur(x, σ + h) - blur(x, σ)) / h``, ``h =
    grad_step``. The attributions of an example sum to ``F(x) - F(blur(x, σ_n))``
    up to the discretisation error, which ``return_convergence_delta`` reports. No
    baseline is needed: the blurred image is one, and it adds no new features.

    The numbers are those of PAIR's reference ``saliency.core.BlurIG`` with
    ``batch_size=1`` (same sigmas, same scipy blur with zero padding and a 4σ kernel),
    except that every step is weighted by its own sigma increment whatever the batching.
    The blur runs in batched torch on the inputs' device; the path is streamed through
    the model in chunks of ``internal_batch_size`` examples.

    Args:
        forward_func (Callable): the model, or any function returning a tensor of
            outputs; it should contain its own input normalization, because images are
            blurred in pixel space (zero padding is black).

    Examples:
        >>> from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
        >>> blur_ig = BlurIntegratedGradients(BasicModel_ConvNet_One_Conv())
        >>> blur_ig.attribute(torch.rand(2, 1, 4, 4), target=0, n_steps=8).shape
        torch.Size([2, 1, 4, 4])

    References:
        Xu, Venugopalan, Sundararajan. Attribution in Scale and Space. CVPR 2020,
        arXiv:2004.03383.
    """

    def __init__(self, forward_func: Callable) -> None:
        GradientAttribution.__init__(self, forward_func)

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        max_sigma: float = 50.0,
        n_steps: int = 100,
        grad_step: float = 0.01,
        sqrt: bool = False,
        internal_batch_size: Optional[int] = None,
        *,
        return_convergence_delta: Literal[True],
        idgi: bool = False,
    ) -> Tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        max_sigma: float = 50.0,
        n_steps: int = 100,
        grad_step: float = 0.01,
        sqrt: bool = False,
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: Literal[False] = False,
        *,
        idgi: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    @attribute_checks("BlurIntegratedGradients", takes_baselines=False)
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        max_sigma: float = 50.0,
        n_steps: int = 100,
        grad_step: float = 0.01,
        sqrt: bool = False,
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: bool = False,
        *,
        idgi: bool = False,
    ) -> Union[TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]]:
        r"""Attributes the target output to every pixel of every channel.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): images ``(N, C, H, W)`` in pixel space,
                or a tuple of such tensors with one ``N``; each is blurred on its own.
            target (int, tuple, Tensor or list, optional): as in Captum's
                IntegratedGradients.
            additional_forward_args (Any, optional): as in Captum's IntegratedGradients.
            max_sigma (float): σ of the blur at the end of the path, in pixels, ``>= 0``
                (its square with ``sqrt``).
            n_steps (int): number of path steps (gradient evaluations), ``>= 1``.
            grad_step (float): step ``h > 0`` of the finite difference in σ.
            sqrt (bool): space the sigmas as ``sqrt(i · max_sigma / n_steps)`` instead
                of linearly, denser at little blur; as in PAIR, the path then ends at
                ``σ_n = sqrt(max_sigma)``.
            internal_batch_size (int, optional): examples per forward/backward pass, as
                in Captum's IntegratedGradients; None: at most 64 examples and at most
                ``captum_rig.attr._path.DEFAULT_PASS_BYTES`` bytes of path points.
            return_convergence_delta (bool): also return, per example,
                ``Σ attributions - (F(x) - F(blur(x, σ_n)))``, ``σ_n`` the path's last
                sigma (``max_sigma``, or ``sqrt(max_sigma)`` with ``sqrt``).
            idgi (bool): keyword only. IDGI (Yang et al. 2023, Eq. 5): each step's
                output change ``F(blur(x, σ_i)) - F(blur(x, σ_{i+1}))`` split over the
                pixels in proportion to the squared gradient at ``σ_i``; complete by
                construction (the attributions sum to ``F(x) - F(blur(x, σ_n))`` for any
                ``n_steps``). No finite difference in σ is needed (``grad_step`` is
                unused); the outputs come with the gradients, plus one forward pass at
                ``σ_n``.

        Returns:
            attributions (Tensor or tuple[Tensor, ...]): shape and dtype of
                ``inputs``, tuple in, tuple out; with ``return_convergence_delta``, the
                pair ``(attributions, delta)``, delta of shape ``(N,)``; a delta above
                5 % of ``|F(x) - F(blur(x, σ_n))|`` warns: raise ``n_steps``.

        A model in train mode runs the path in train mode; the running statistics of its
        training-mode modules (BatchNorm) are put back afterwards.

        Examples:
            >>> from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
            >>> blur_ig = BlurIntegratedGradients(BasicModel_ConvNet_One_Conv())
            >>> x = 100 * torch.rand(2, 1, 4, 4)
            >>> attr, delta = blur_ig.attribute(
            ...     x, target=1, max_sigma=2.0, n_steps=16, return_convergence_delta=True)
            >>> attr.shape, delta.shape
            (torch.Size([2, 1, 4, 4]), torch.Size([2]))
        """
        is_inputs_tuple, formatted = format_inputs(inputs)
        max_sigma = check_real(max_sigma, name="max_sigma")
        n_steps = check_int(n_steps, name="n_steps", low=1)
        grad_step = check_real(grad_step, name="grad_step", strict=True)

        sigmas = blur_sigmas(max_sigma, n_steps, bool(sqrt))
        paths = tuple(BlurPath(x) for x in formatted)
        run = dict(
            target=target,
            additional_forward_args=additional_forward_args,
            internal_batch_size=internal_batch_size,
            point_bytes=example_bytes(formatted),
        )
        if idgi:
            attributions = self._idgi(formatted, paths, sigmas, **run)
        else:
            attributions = self._attribute(formatted, paths, sigmas, grad_step, **run)
        return attribution_result(
            self,
            is_inputs_tuple,
            attributions,
            formatted,
            lambda: tuple(p.images(sigmas[-1:])[0].to(x.dtype) for p, x in zip(paths, formatted)),
            target=target,
            additional_forward_args=additional_forward_args,
            return_convergence_delta=return_convergence_delta,
            complete="BlurIntegratedGradients",
        )

    def _idgi(
        self,
        inputs: Tuple[Tensor, ...],
        paths: Tuple[BlurPath, ...],
        sigmas: List[float],
        **run,
    ) -> Tuple[Tensor, ...]:
        """IDGI along the blur path: the nodes are σ_0..σ_{n-1}, the edges σ_0..σ_n."""
        n_steps = len(sigmas) - 1

        def images(at: Sequence[float]) -> Tuple[Tensor, ...]:
            return tuple(p.images(at).to(x.dtype) for p, x in zip(paths, inputs))

        edge_node = torch.arange(n_steps + 1)
        edge_node[-1] = -1  # the blurred end is the one edge without a gradient
        totals = idgi_path_sum(
            input_gradients(self, outputs=True),
            self.forward_func,
            lambda start, stop: images(sigmas[start:stop]),
            lambda index: images([sigmas[i] for i in index.tolist()]),
            edge_node,
            inputs[0].shape[0],
            **run,
        )
        # The path runs from x to the blurred image; the attributions explain
        # F(x) - F(blurred).
        return tuple(-t.to(x.dtype) for t, x in zip(totals, inputs))

    def _attribute(
        self,
        inputs: Tuple[Tensor, ...],
        paths: Tuple[BlurPath, ...],
        sigmas: List[float],
        grad_step: float,
        **run,
    ) -> Tuple[Tensor, ...]:
        n_steps = len(sigmas) - 1
        # Each step weighted by its own increment, negated: the path runs from x to the
        # blurred image, the attributions explain F(x) - F(blurred).
        weights = -torch.tensor(np.diff(sigmas), dtype=torch.float64)
        totals = [
            torch.zeros(x.shape, dtype=p.dtype, device=x.device) for x, p in zip(inputs, paths)
        ]
        velocities: List[Tensor] = []

        def make_points(start: int, stop: int) -> Tuple[Tensor, ...]:
            points = []
            velocities.clear()
            for x, p in zip(inputs, paths):
                images, velocity = p.images_and_velocity(sigmas[start:stop], grad_step)
                points.append(images.to(x.dtype))
                velocities.append(velocity)
            return tuple(points)

        for start, stop, grads, _ in path_gradients(
            input_gradients(self), n_steps, make_points, inputs[0].shape[0], **run
        ):
            for total, grad, velocity in zip(totals, grads, velocities):
                w = weights[start:stop].to(velocity.device, velocity.dtype)
                # In place: a product the size of the whole chunk would raise peak memory.
                total += torch.tensordot(w, velocity.mul_(grad), dims=1)
        return tuple(total.to(x.dtype) for total, x in zip(totals, inputs))

    def has_convergence_delta(self) -> bool:
        return True


BlurIG = BlurIntegratedGradients
