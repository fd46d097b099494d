"""Tests for BlurIntegratedGradients and its torch Gaussian blur.

Oracles independent of the code under test: scipy's ``gaussian_filter``, PAIR's reference
``saliency.core.BlurIG``, the element-wise model ``f(x) = Σ sin(x)`` (whose per-pixel
attribution along any complete path is ``sin(x) - sin(x_end)``), Captum's own
``IntegratedGradients`` for target handling, and per-example runs for batching.
"""

import math
import re

import numpy as np
import pytest
import saliency.core as saliency
import torch
from _reference import CallLog, TinyConvNet
from captum.attr import IntegratedGradients, NoiseTunnel
from captum.metrics import infidelity, sensitivity_max
from scipy import ndimage
from torch import nn

from captum_rig._checks import (
    NEGATIVE,
    NOT_FINITE,
    NOT_FINITE_NUMBER,
    NOT_FLOAT,
    NOT_POSITIVE,
    WRONG_DIMS,
)
from captum_rig.attr.blur_ig import BlurIG, BlurIntegratedGradients
from captum_rig.attr.blur_path import blur_sigmas, gaussian_blur


def sin_model(x: torch.Tensor) -> torch.Tensor:
    """f(x) = Σ sin(x) per example: element-wise, so every path's attribution is known."""
    return x.sin().flatten(1).sum(1)


def tiny_cnn(classes: int = 5) -> nn.Module:
    """A small smooth conv net (tanh, 8×8 pooled features) with 5 (or ``classes``) logits."""
    return TinyConvNet(classes=classes, width=4, act=nn.Tanh, grid=8)


def scipy_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """PAIR's blur: scipy gaussian_filter on every (H, W, C) image, sigma 0 on channels."""
    images = x.permute(0, 2, 3, 1).numpy()
    out = np.stack(
        [ndimage.gaussian_filter(im, [sigma, sigma, 0], mode="constant") for im in images]
    )
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def pair_blur_ig(model, image, target, **kwargs) -> torch.Tensor:
    """PAIR's BlurIG.GetMask on one (C, H, W) image, torch gradients of the target logit."""

    def call_model_function(batch, call_model_args=None, expected_keys=None):
        x = torch.from_numpy(np.asarray(batch)).permute(0, 3, 1, 2).requires_grad_()
        (grad,) = torch.autograd.grad(model(x)[:, target].sum(), x)
        return {saliency.INPUT_OUTPUT_GRADIENTS: grad.permute(0, 2, 3, 1).numpy()}

    mask = saliency.BlurIG().GetMask(image.permute(1, 2, 0).numpy(), call_model_function, **kwargs)
    return torch.from_numpy(mask).permute(2, 0, 1)


def high_frequency_energy(images: torch.Tensor) -> torch.Tensor:
    """Energy of each image's Fourier components above half the Nyquist frequency."""
    freq_h = torch.fft.fftfreq(images.shape[-2]).abs()
    freq_w = torch.fft.fftfreq(images.shape[-1]).abs()
    high = (freq_h[:, None] > 0.25) | (freq_w[None, :] > 0.25)
    spectrum = torch.fft.fft2(images).abs() ** 2
    return (spectrum * high).flatten(1).sum(1)


# --- the blur --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 9, 14), (1, 2, 16, 5), (1, 1, 1, 7)])
@pytest.mark.parametrize("sigma", [0.0, 0.01, 0.3, 1.0, 2.5, 7.0, 50.0])
def test_blur_matches_scipy(shape, sigma):
    """Torch blur == scipy gaussian_filter(mode="constant") for any sigma and shape, f64."""
    x = torch.rand(shape, dtype=torch.float64)
    torch.testing.assert_close(
        gaussian_blur(x, sigma), scipy_blur(x, sigma), rtol=0, atol=1e-12, msg=f"sigma={sigma}"
    )


def test_blur_many_sigmas_dtypes_and_identity():
    """A list of sigmas stacks single blurs; sigma 0 is exactly x; dtypes are kept."""
    x = torch.rand(2, 3, 8, 10)
    sigmas = [0.0, 0.7, 3.0]
    stacked = gaussian_blur(x, sigmas)
    assert stacked.shape == (3, *x.shape), "one blurred batch per sigma"
    for s, blurred in zip(sigmas, stacked):
        torch.testing.assert_close(blurred, gaussian_blur(x, s), msg=f"sigma={s}")
    assert torch.equal(gaussian_blur(x, 0.0), x), "sigma 0 must be the identity"
    assert torch.equal(gaussian_blur(x, torch.tensor(0.7, dtype=torch.float64)), stacked[1]), (
        "0-dim tensor sigma"
    )
    half = gaussian_blur(x.bfloat16(), 0.7)
    assert half.dtype == torch.bfloat16, "bfloat16 in, bfloat16 out"
    torch.testing.assert_close(half.float(), stacked[1], atol=2e-2, rtol=2e-2)
    with pytest.raises(
        ValueError, match=re.escape(NEGATIVE.format(name="sigma", low=0.0, value=-1.0))
    ):
        gaussian_blur(x, -1.0)
    for bad in ["a", None, True]:
        with pytest.raises(TypeError, match="sigma must be a real number"):
            gaussian_blur(x, bad)


# --- numerics against PAIR and analytic oracles ------------------------------------------


@pytest.mark.parametrize("sqrt", [False, True], ids=["linear", "sqrt"])
def test_matches_pair_reference(sqrt):
    """Equal to PAIR's saliency.core.BlurIG.GetMask at batch_size=1, float64."""
    model = tiny_cnn().double()
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    kwargs = dict(max_sigma=10.0, steps=20, grad_step=0.01, sqrt=sqrt)
    ours = BlurIG(model).attribute(
        x, target=[2, 4], max_sigma=10.0, n_steps=20, grad_step=0.01, sqrt=sqrt
    )
    for i, target in enumerate([2, 4]):
        ref = pair_blur_ig(model, x[i], target, batch_size=1, **kwargs)
        assert ref.abs().max() > 1e-3, "the reference must not be trivially zero"
        torch.testing.assert_close(ours[i], ref, rtol=1e-9, atol=1e-12, msg=f"example {i}")


def test_batch_invariant_unlike_pair_sqrt_batching():
    """Every step weighs its own sigma increment: internal batching never changes the result
    (PAIR's batch_size>1 with sqrt=True weighs a batch by its last increment)."""
    model = tiny_cnn().double()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    kwargs = dict(max_sigma=10.0, steps=12, sqrt=True)
    ref = pair_blur_ig(model, x[0], 1, batch_size=1, **kwargs)
    pair_batched = pair_blur_ig(model, x[0], 1, batch_size=4, **kwargs)
    assert not torch.allclose(pair_batched, ref), "PAIR's batched sqrt path is expected to differ"
    blur_ig = BlurIG(model)
    for ibs in [1, 4, 5, None]:
        ours = blur_ig.attribute(
            x, target=1, max_sigma=10.0, n_steps=12, sqrt=True, internal_batch_size=ibs
        )
        torch.testing.assert_close(ours[0], ref, rtol=1e-9, atol=1e-12, msg=f"ibs={ibs}")


@pytest.mark.parametrize("sqrt", [False, True], ids=["linear", "sqrt"])
def test_sin_oracle_and_completeness(sqrt):
    """f = Σ sin: attributions -> sin(x) - sin(blur(x, σ_n)) per pixel, delta -> 0."""
    x = 3 * torch.rand(2, 3, 12, 10, dtype=torch.float64)
    end_sigma = math.sqrt(5.0) if sqrt else 5.0
    exact = x.sin() - scipy_blur(x, end_sigma).sin()
    errors, deltas = [], []
    for n_steps in [10, 100, 1000]:
        attr, delta = BlurIG(sin_model).attribute(
            x, max_sigma=5.0, n_steps=n_steps, grad_step=1e-3, sqrt=sqrt,
            return_convergence_delta=True,
        )  # fmt: skip
        errors.append(float((attr - exact).abs().max()))
        deltas.append(float(delta.abs().max()))
        torch.testing.assert_close(
            delta, attr.flatten(1).sum(1) - exact.flatten(1).sum(1), msg="delta definition"
        )
    assert errors[0] > errors[1] > errors[2], f"per-pixel errors must shrink: {errors}"
    assert deltas[0] > deltas[1] > deltas[2], f"deltas must shrink: {deltas}"
    assert errors[2] < 1e-2 and deltas[2] < 0.5, f"not converged: {errors}, {deltas}"


def test_one_step_is_gradient_times_displacement():
    """n_steps=1: -max_sigma · (blur(x, h) - x)/h · ∇F(x), the plain finite difference."""
    x = torch.rand(2, 3, 6, 7, dtype=torch.float64)
    attr = BlurIG(sin_model).attribute(x, max_sigma=2.0, n_steps=1, grad_step=0.5)
    expected = -2.0 * (scipy_blur(x, 0.5) - x) / 0.5 * x.cos()
    torch.testing.assert_close(attr, expected, rtol=1e-10, atol=1e-12)


def test_float32_agrees_with_float64():
    """Float32 stays close to float64: the finite difference is taken on f64 kernels."""
    model = tiny_cnn().double()
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    a64 = BlurIG(model).attribute(x, target=0, max_sigma=8.0, n_steps=16)
    a32 = BlurIG(model.float()).attribute(x.float(), target=0, max_sigma=8.0, n_steps=16)
    assert a32.dtype == torch.float32, "float32 in, float32 out"
    torch.testing.assert_close(a32.double(), a64, rtol=1e-4, atol=1e-6 * a64.abs().max().item())


def test_bfloat16_computed_in_float32():
    """bfloat16 images give bfloat16 attributions close to the float32 ones."""
    x = 3 * torch.rand(2, 3, 8, 8)
    a32 = BlurIG(sin_model).attribute(x, max_sigma=3.0, n_steps=8)
    a16 = BlurIG(sin_model).attribute(x.bfloat16(), max_sigma=3.0, n_steps=8)
    assert a16.dtype == torch.bfloat16, "bfloat16 in, bfloat16 out"
    torch.testing.assert_close(a16.float(), a32, rtol=5e-2, atol=5e-2 * a32.abs().max().item())


# --- batching and the path ---------------------------------------------------------------


def test_batch_equals_per_example_and_internal_batch_size():
    """A batch gives each example's own result, whatever internal_batch_size."""
    model = tiny_cnn()
    x = torch.rand(3, 3, 16, 16)
    blur_ig = BlurIG(model)
    kwargs = dict(max_sigma=6.0, n_steps=7, sqrt=True)
    batch = blur_ig.attribute(x, target=[0, 3, 1], **kwargs)
    for i, t in enumerate([0, 3, 1]):
        single = blur_ig.attribute(x[i : i + 1], target=t, **kwargs)
        torch.testing.assert_close(batch[i : i + 1], single, msg=f"example {i}")
    for ibs in [3, 7, 21, 100]:
        torch.testing.assert_close(
            blur_ig.attribute(x, target=[0, 3, 1], internal_batch_size=ibs, **kwargs),
            batch,
            msg=f"internal_batch_size={ibs}",
        )
    with pytest.warns(UserWarning, match="Internal batch size cannot be less"):
        small = blur_ig.attribute(x, target=[0, 3, 1], internal_batch_size=2, **kwargs)
    torch.testing.assert_close(small, batch)


@pytest.mark.parametrize(
    "n_steps, num_examples, ibs", [(10, 2, 4), (10, 2, 6), (7, 1, 7), (5, 3, 3)]
)
def test_model_calls_are_chunked(n_steps, num_examples, ibs):
    """ceil(n_steps·N / internal_batch_size) forward passes, none larger than the batch size."""
    counting = CallLog(sin_model)
    x = torch.rand(num_examples, 2, 5, 5)
    BlurIG(counting).attribute(x, max_sigma=2.0, n_steps=n_steps, internal_batch_size=ibs)
    calls = [len(seen) for seen in counting.seen]
    assert len(calls) == math.ceil(n_steps * num_examples / ibs), f"calls: {calls}"
    assert max(calls) <= ibs and sum(calls) == n_steps * num_examples, f"calls: {calls}"


def test_recorded_path_is_the_blur_path():
    """The model sees x first (σ=0), then ever blurrier images: high frequencies fall."""
    recorder = CallLog(lambda x: x.flatten(1).sum(1))  # a linear score
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    BlurIG(recorder).attribute(x, max_sigma=5.0, n_steps=20, internal_batch_size=6)
    seen = torch.cat(recorder.seen).reshape(20, 2, 3, 16, 16)  # step-major, as in Captum
    assert torch.equal(seen[0], x), "the first point must be the input itself"
    for step, sigma in enumerate(blur_sigmas(5.0, 20)[:-1]):
        torch.testing.assert_close(seen[step], scipy_blur(x, sigma), msg=f"step {step}")
    for i in range(2):
        energy = high_frequency_energy(seen[:, i])
        rising_backwards = energy.flip(0)
        assert bool((rising_backwards[1:] > rising_backwards[:-1]).all()), (
            f"high-frequency energy must fall as sigma grows: {energy}"
        )


# --- Captum machinery ---------------------------------------------------------------------


def test_alias_and_captum_flags():
    """BlurIG is the class; it has a convergence delta and is a gradient method."""
    assert BlurIG is BlurIntegratedGradients
    blur_ig = BlurIG(sin_model)
    assert blur_ig.has_convergence_delta()
    assert not blur_ig.multiplies_by_inputs


def test_noise_tunnel():
    """Works inside NoiseTunnel; with zero noise it averages identical runs."""
    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    blur_ig = BlurIG(model)
    nt = NoiseTunnel(blur_ig)
    smooth = nt.attribute(x, nt_type="smoothgrad", nt_samples=2, target=1, n_steps=5)
    plain = blur_ig.attribute(x, target=1, n_steps=5)
    assert smooth.shape == x.shape and not torch.allclose(smooth, plain), "noise must matter"
    still = nt.attribute(x, nt_type="smoothgrad", nt_samples=2, stdevs=0.0, target=1, n_steps=5)
    torch.testing.assert_close(still, plain, msg="zero noise must give the plain attribution")


def test_captum_metrics():
    """captum.metrics.infidelity and sensitivity_max accept BlurIG."""
    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    blur_ig = BlurIG(model)
    attr = blur_ig.attribute(x, target=2, n_steps=5)

    def perturb(inputs):
        noise = 0.01 * torch.randn_like(inputs)
        return noise, inputs - noise

    infid = infidelity(model, perturb, x, attr, target=2, n_perturb_samples=3)
    sens = sensitivity_max(blur_ig.attribute, x, target=2, n_steps=5, n_perturb_samples=2)
    for name, value in [("infidelity", infid), ("sensitivity_max", sens)]:
        assert value.shape == (2,) and bool(torch.isfinite(value).all()), name


def test_target_forms_match_the_reference():
    """Int, list, 1-d and 0-d tensor targets give PAIR's per-example maps (float64 CNN)."""
    model = tiny_cnn().double()
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    blur_ig = BlurIG(model)

    def reference(targets):
        return torch.stack(
            [
                pair_blur_ig(model, x[i], t, batch_size=1, max_sigma=3.0, steps=6)
                for i, t in enumerate(targets)
            ]
        )

    per_example = reference([4, 0, 3])
    assert per_example.abs().max() > 1e-3, "the test needs a model with real gradients"
    for target in ([4, 0, 3], torch.tensor([4, 0, 3])):
        got = blur_ig.attribute(x, target=target, max_sigma=3.0, n_steps=6)
        torch.testing.assert_close(got, per_example, rtol=1e-9, atol=1e-12, msg=repr(target))
    all_4 = reference([4, 4, 4])
    for target in (4, torch.tensor(4), torch.tensor([4])):
        got = blur_ig.attribute(x, target=target, max_sigma=3.0, n_steps=6)
        torch.testing.assert_close(got, all_4, rtol=1e-9, atol=1e-12, msg=repr(target))


def test_captum_testing_model():
    """Captum's test ConvNet, with random head weights so that its gradients are not ~0
    (all-ones weights make its softmax flat), matches PAIR's reference."""
    basic_models = pytest.importorskip("captum.testing.helpers.basic_models")
    model = basic_models.BasicModel_ConvNet().double()
    with torch.no_grad():
        model.fc1.weight.normal_()
        model.fc2.weight.normal_()
    x = 4 * torch.rand(2, 1, 10, 10, dtype=torch.float64)
    got = BlurIG(model).attribute(x, target=[3, 7], max_sigma=3.0, n_steps=8)
    for i, target in enumerate([3, 7]):
        ref = pair_blur_ig(model, x[i], target, batch_size=1, max_sigma=3.0, steps=8)
        assert ref.abs().max() > 1e-3, "the test needs a model with real gradients"
        torch.testing.assert_close(got[i], ref, rtol=1e-9, atol=1e-12, msg=f"example {i}")


def test_tuple_targets_for_multi_dim_outputs():
    """A tuple target indexes an (N, 2, 5) output like the flat index it stands for."""
    model = tiny_cnn(classes=10)
    x = torch.rand(2, 3, 16, 16)
    flat = BlurIG(model).attribute(x, target=[3, 7], n_steps=5)
    grid = BlurIG(lambda t: model(t).reshape(-1, 2, 5))
    torch.testing.assert_close(grid.attribute(x, target=[(0, 3), (1, 2)], n_steps=5), flat)
    torch.testing.assert_close(
        grid.attribute(x, target=(0, 3), n_steps=5),
        BlurIG(model).attribute(x, target=3, n_steps=5),
    )


@pytest.mark.parametrize(
    "target", [10, -11, [1, 2, 3], (0, 1), torch.tensor([1, 2, 3]), 1.5, "a"], ids=repr
)
def test_invalid_targets_raise_like_integrated_gradients(target):
    """Every bad target raises the same exception type as Captum's IntegratedGradients."""
    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(Exception) as from_ig:
        IntegratedGradients(model).attribute(x, target=target, n_steps=4)
    with pytest.raises(Exception) as from_ours:
        BlurIG(model).attribute(x, target=target, n_steps=4)
    assert type(from_ours.value) is from_ig.type, f"{from_ours.value!r} vs {from_ig.value!r}"


class TwoInputModel(nn.Module):
    """F(a, b; scale, offset) = (conv(a) + Σ sin(b)) · scale + offset, additive in a and b."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def part_a(self, a):
        return torch.tanh(self.conv(a)).flatten(1).sum(1)

    def forward(self, a, b, scale=1.0, offset=0.0):
        return (self.part_a(a) + sin_model(b)) * scale.reshape(-1) + offset


def test_tuple_inputs_and_additional_forward_args():
    """Tuple in, tuple out; each input follows its own blur path; extra args are expanded."""
    model = TwoInputModel()
    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 1, 5, 7)
    scale = torch.tensor([[2.0], [-1.0]])
    kwargs = dict(max_sigma=4.0, n_steps=6)
    (attr_a, attr_b), delta = BlurIG(model).attribute(
        (a, b), additional_forward_args=(scale, 3.0), return_convergence_delta=True, **kwargs
    )
    assert attr_a.shape == a.shape and attr_b.shape == b.shape, "one attribution per input"
    for i in range(2):
        s = float(scale[i])
        only_a = BlurIG(lambda t, s=s: model.part_a(t) * s).attribute(a[i : i + 1], **kwargs)
        only_b = BlurIG(lambda t, s=s: sin_model(t) * s).attribute(b[i : i + 1], **kwargs)
        torch.testing.assert_close(attr_a[i : i + 1], only_a, msg=f"input a, example {i}")
        torch.testing.assert_close(attr_b[i : i + 1], only_b, msg=f"input b, example {i}")
    with torch.no_grad():
        gap = model(a, b, scale, 3.0) - model(
            gaussian_blur(a, 4.0), gaussian_blur(b, 4.0), scale, 3.0
        )
    torch.testing.assert_close(delta, attr_a.flatten(1).sum(1) + attr_b.flatten(1).sum(1) - gap)


def test_no_side_effects():
    """No hooks left, inputs unchanged, no requires_grad added, model grads untouched."""
    model = tiny_cnn()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    x = torch.rand(2, 3, 16, 16)
    x_before = x.clone()
    BlurIG(model).attribute(x, target=1, n_steps=5, return_convergence_delta=True)
    assert torch.equal(x, x_before) and not x.requires_grad, "inputs must be left alone"
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, torch.full_like(p, 7.0)), f"grad of {name} changed"
    for m in model.modules():
        hooks = (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks)
        assert not any(hooks), f"hook left on {m}"


def test_inputs_that_require_grad():
    """Inputs that require grad give the same attributions and keep their flag."""
    x = torch.rand(1, 3, 8, 8)
    plain = BlurIG(sin_model).attribute(x, n_steps=4, max_sigma=2.0)
    leaf = x.clone().requires_grad_()
    torch.testing.assert_close(BlurIG(sin_model).attribute(leaf, n_steps=4, max_sigma=2.0), plain)
    assert leaf.requires_grad and leaf.grad is None


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs, kwargs, error, message",
    [
        (
            torch.rand(4, 4),
            {},
            ValueError,
            WRONG_DIMS.format(name="inputs", ndim=4, layout="(N, C, H, W)", shape=(4, 4)),
        ),
        (
            torch.zeros(1, 3, 4, 4, dtype=torch.uint8),
            {},
            TypeError,
            NOT_FLOAT.format(name="inputs", dtype=torch.uint8),
        ),
        (torch.full((1, 1, 4, 4), math.nan), {}, ValueError, NOT_FINITE.format(name="inputs")),
        (
            None,
            {"max_sigma": -1.0},
            ValueError,
            NEGATIVE.format(name="max_sigma", low=0.0, value=-1.0),
        ),
        (
            None,
            {"max_sigma": math.inf},
            ValueError,
            NOT_FINITE_NUMBER.format(name="max_sigma", value=math.inf),
        ),
        (None, {"max_sigma": "big"}, TypeError, "max_sigma must be a real number"),
        (None, {"n_steps": 0}, ValueError, NEGATIVE.format(name="n_steps", low=1, value=0)),
        (None, {"n_steps": 2.5}, TypeError, "n_steps must be an integer"),
        (None, {"grad_step": 0.0}, ValueError, NOT_POSITIVE.format(name="grad_step", value=0.0)),
        (None, {"grad_step": -0.1}, ValueError, NOT_POSITIVE.format(name="grad_step", value=-0.1)),
        (None, {"internal_batch_size": 0}, ValueError, "internal_batch_size must be >= 1"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_names_the_argument(inputs, kwargs, error, message):
    """Bad images and settings raise a ValueError/TypeError naming the argument."""
    x = torch.rand(1, 3, 4, 4) if inputs is None else inputs
    with pytest.raises(error, match=re.escape(message)):
        BlurIG(sin_model).attribute(x, **kwargs)


@pytest.mark.parametrize(
    "inputs",
    [np.zeros((1, 3, 4, 4)), [torch.rand(1, 3, 4, 4)], (torch.rand(1, 3, 4, 4), 2.0)],
    ids=["numpy", "list", "tuple-with-float"],
)
def test_non_tensor_inputs_raise_type_error(inputs):
    """Anything but a tensor or a tuple of tensors is a TypeError naming inputs."""
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor"):
        BlurIG(sin_model).attribute(inputs)


def test_mismatched_tuple_batch_sizes():
    """Tuple inputs with different N are refused before any model call."""
    with pytest.raises(ValueError, match="same batch size"):
        BlurIG(sin_model).attribute((torch.rand(1, 1, 4, 4), torch.rand(2, 1, 4, 4)))


# --- devices ------------------------------------------------------------------------------


def test_cuda_matches_cpu(cuda_device):
    """CUDA and CPU agree, blur and attributions, with the result on the input's device."""
    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(
        gaussian_blur(x.to(cuda_device), [0.0, 1.3, 40.0]).cpu(), gaussian_blur(x, [0.0, 1.3, 40.0])
    )
    cpu = BlurIG(model).attribute(x, target=[1, 2], n_steps=10, max_sigma=8.0)
    gpu = BlurIG(model.to(cuda_device)).attribute(
        x.to(cuda_device), target=[1, 2], n_steps=10, max_sigma=8.0, internal_batch_size=8
    )
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5 * cpu.abs().max().item())
