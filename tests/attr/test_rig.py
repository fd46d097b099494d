"""RankIntegratedGradients against a plain loop of Eq. (3), analytic oracles and Captum."""

import copy
import math

import pytest
import torch
from _reference import (
    BasicModel_ConvNet_One_Conv,
    CallLog,
    SinModel,
    TinyConvNet,
    numpy_rank_k,
)
from captum.attr import IntegratedGradients, NoiseTunnel
from captum.metrics import infidelity, sensitivity_max
from torch import nn

from captum_rig import RIG, RankIntegratedGradients
from captum_rig._captum import SUPPORTED_METHODS
from captum_rig.attr.rank_path import paper_rank_weights

PATH_METHODS = sorted(SUPPORTED_METHODS)


def eq3_loop(model, x, target, channel_max=False, multiply_by_inputs=False, baseline=None):
    """Eq. (3) as written: for k = 1..w, the rank-k image from numpy's SVD (of x - b,
    shifted by the baseline b), its gradient by plain autograd, weight (w - k) / w, summed."""
    w = min(x.shape[-2:])
    b = torch.zeros_like(x) if baseline is None else torch.broadcast_to(baseline, x.shape)
    total = 0
    for k in range(1, w + 1):
        x_k = b + torch.from_numpy(numpy_rank_k((x - b).double().numpy(), k)).to(x.dtype)
        x_k.requires_grad_()
        model(x_k)[:, target].sum().backward()
        grad = x_k.grad * (x - b) if multiply_by_inputs else x_k.grad
        if channel_max:
            grad = grad.amax(dim=1, keepdim=True)
        total = total + (w - k) / w * grad
    return total


@pytest.fixture
def model():
    """A small smooth CNN in float64, 3 channels, 5 classes."""
    return TinyConvNet().double()


class TestPaperMethod:
    """method="paper": Eq. (3) of arXiv:2012.03516."""

    @pytest.mark.parametrize("shape", [(2, 3, 6, 6), (1, 3, 5, 8), (2, 3, 9, 4)])
    def test_matches_plain_loop(self, model, shape, device):
        """Per channel, equal to a plain loop over ranks with numpy SVDs (on CPU)."""
        x = torch.rand(shape, dtype=torch.float64)
        expected = eq3_loop(model, x, 2)
        got = RIG(copy.deepcopy(model).to(device)).attribute(x.to(device), target=2)
        torch.testing.assert_close(got.cpu(), expected)

    def test_channel_max_matches_plain_loop(self, model):
        """channel_reduction="max" is the paper's exact channel-max form, (N, 1, H, W)."""
        x = torch.rand(2, 3, 7, 7, dtype=torch.float64)
        got = RIG(model).attribute(x, target=1, channel_reduction="max")
        assert got.shape == (2, 1, 7, 7)
        torch.testing.assert_close(got, eq3_loop(model, x, 1, channel_max=True))

    def test_multiply_by_inputs(self, model):
        """multiply_by_inputs=True multiplies each rank's gradient by the input."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        rig = RIG(model, multiply_by_inputs=True)
        assert rig.multiplies_by_inputs
        torch.testing.assert_close(
            rig.attribute(x, target=0), eq3_loop(model, x, 0, multiply_by_inputs=True)
        )
        torch.testing.assert_close(
            rig.attribute(x, target=0, channel_reduction="max"),
            eq3_loop(model, x, 0, channel_max=True, multiply_by_inputs=True),
        )

    def test_grouped_sum_tracks_the_full_sum(self, model):
        """n_steps=m with m ranks of equal mass approximates the full sum on a CNN, better
        as m grows."""
        x = torch.rand(3, 3, 24, 24, dtype=torch.float64)
        full = RIG(model).attribute(x, target=2)
        errors = []
        for m in (2, 6, 12):
            approx = RIG(model).attribute(x, target=2, n_steps=m)
            errors.append(float((approx - full).norm() / full.norm()))
        assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05, errors

    def test_subsampled_is_exact_for_constant_gradients(self):
        """With n_steps=m < w, a model of constant gradient gets the full sum exactly."""
        lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 10 * 10, 4)).double()
        x = torch.rand(2, 3, 10, 10, dtype=torch.float64)
        full = RIG(lin).attribute(x, target=3)
        for m in (1, 3, 4):
            torch.testing.assert_close(RIG(lin).attribute(x, target=3, n_steps=m), full)

    def test_n_steps_evaluates_that_many_ranks(self, model):
        """n_steps=m pushes m rank images per example through the model, each of rank
        at most its rank (a logging model records them)."""
        x = torch.rand(1, 3, 9, 9, dtype=torch.float64)
        log = CallLog(model)
        RIG(log).attribute(x, target=0, n_steps=3)
        seen = torch.cat(log.seen)
        assert seen.shape[0] == 3
        ranks = torch.linalg.matrix_rank(seen, atol=1e-8)
        assert ranks.amax(dim=1).tolist() == paper_rank_weights(9, 3)[0]

    def test_full_path_evaluates_w_minus_1_ranks(self, model):
        """Without n_steps, ranks 1..w-1 are evaluated once each (rank w has weight 0)."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        log = CallLog(model)
        RIG(log).attribute(x, target=0)
        seen = torch.cat(log.seen)
        assert seen.shape[0] == 2 * 5
        ranks = torch.linalg.matrix_rank(seen, atol=1e-8).amax(dim=1)
        assert ranks.tolist() == [k for k in range(1, 6) for _ in range(2)], "step-major"


class TestPathMethod:
    """method=<Captum rule>: the complete integral along the continuous rank path."""

    @pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle", "riemann_trapezoid"])
    def test_analytic_sin_model(self, method, device):
        """For F = Σ sin(x) the exact attribution of pixel i is sin(x_i)."""
        x = torch.rand(2, 3, 6, 5, dtype=torch.float64, device=device)
        attr = RIG(SinModel()).attribute(x, target=0, method=method, n_steps=300)
        torch.testing.assert_close(attr, torch.sin(x), atol=5e-5, rtol=0)

    @pytest.mark.parametrize("method", PATH_METHODS)
    def test_exactly_complete_for_linear_models(self, method, device):
        """Any rule, any n_steps: a linear model's attributions are exactly a ⊙ x, the same
        as Captum's IntegratedGradients with a zero baseline."""
        lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 7 * 6, 4)).double().to(device)
        x = torch.rand(2, 3, 7, 6, dtype=torch.float64, device=device)
        attr, delta = RIG(lin).attribute(
            x, target=1, method=method, n_steps=5, return_convergence_delta=True
        )
        ig = IntegratedGradients(lin).attribute(x, target=1, n_steps=5)
        torch.testing.assert_close(attr, ig)
        assert delta.abs().max() < 1e-12, f"delta {delta}"

    @pytest.mark.parametrize("n_steps", [8, 32, 128])
    def test_convergence_delta_shrinks(self, model, n_steps):
        """The completeness gap of a CNN falls as n_steps grows (Gauss-Legendre)."""
        x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
        _, delta = RIG(model).attribute(
            x, target=4, method="gausslegendre", n_steps=n_steps, return_convergence_delta=True
        )
        assert delta.shape == (3,)
        bound = {8: 2e-2, 32: 2e-3, 128: 2e-4}[n_steps]
        assert delta.abs().max() < bound, f"delta {delta} at n_steps={n_steps}"

    def test_path_points_have_bounded_rank(self, model):
        """Every point x(t) the model sees has rank at most ceil(t)."""
        x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
        log = CallLog(model)
        RIG(log).attribute(x, target=0, method="riemann_right", n_steps=8)
        seen = torch.cat(log.seen)
        ranks = torch.linalg.matrix_rank(seen, atol=1e-8).amax(dim=1)
        assert ranks.tolist() == list(range(1, 9))
        torch.testing.assert_close(seen[-1], x[0])

    def test_matches_captum_ig_on_elementwise_model(self):
        """On an element-wise model every complete path agrees: RIG ≈ Captum's IG."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        rig = RIG(SinModel()).attribute(x, target=0, method="gausslegendre", n_steps=200)
        ig = IntegratedGradients(SinModel()).attribute(x, target=0, n_steps=200)
        torch.testing.assert_close(rig, ig, atol=1e-4, rtol=0)

    def test_paper_delta_is_reported(self, model):
        """For "paper" the delta measures the distance from completeness; shape (N,)."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        attr, delta = RIG(model).attribute(x, target=0, return_convergence_delta=True)
        expected = attr.sum((1, 2, 3)) - (model(x)[:, 0] - model(torch.zeros_like(x))[:, 0])
        torch.testing.assert_close(delta, expected)


class TestCaptumCitizenship:
    """Captum's conventions: batches, tuples, targets, extra args, its own tools."""

    @pytest.mark.parametrize("method", ["paper", "gausslegendre"])
    def test_batch_equals_per_example(self, model, method, device):
        """A batch gives each example what it gets alone, with per-example targets."""
        model = model.to(device)
        x = torch.rand(3, 3, 6, 6, dtype=torch.float64, device=device)
        target = [0, 3, 1]
        batch = RIG(model).attribute(x, target=target, method=method, n_steps=12)
        for i in range(3):
            alone = RIG(model).attribute(x[i : i + 1], target=target[i], method=method, n_steps=12)
            torch.testing.assert_close(batch[i : i + 1], alone)

    @pytest.mark.parametrize("method", ["paper", "riemann_trapezoid"])
    @pytest.mark.parametrize("internal_batch_size", [2, 3, 7, 100])
    def test_internal_batch_size_invariance(self, model, method, internal_batch_size):
        """Chunking the path changes nothing but memory."""
        x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
        ref = RIG(model).attribute(x, target=1, method=method, n_steps=9)
        with pytest.warns(UserWarning) if internal_batch_size < 2 else _nothing():
            got = RIG(model).attribute(
                x, target=1, method=method, n_steps=9, internal_batch_size=internal_batch_size
            )
        torch.testing.assert_close(got, ref)

    @pytest.mark.parametrize("internal_batch_size, calls", [(2, 9), (4, 5), (6, 3), (18, 1)])
    def test_model_calls_are_batched(self, model, internal_batch_size, calls):
        """ceil(steps / (internal_batch_size // N)) forward passes, as in Captum."""
        x = torch.rand(2, 3, 10, 10, dtype=torch.float64)
        log = CallLog(model)
        RIG(log).attribute(x, target=0, internal_batch_size=internal_batch_size)
        assert len(log.seen) == calls and sum(len(s) for s in log.seen) == 2 * 9

    def test_internal_batch_size_below_batch_warns_like_captum(self, model):
        """internal_batch_size < N warns as Captum does, and still computes."""
        x = torch.rand(3, 3, 5, 5, dtype=torch.float64)
        with pytest.warns(UserWarning, match="Internal batch size cannot be less"):
            got = RIG(model).attribute(x, target=0, internal_batch_size=2)
        torch.testing.assert_close(got, RIG(model).attribute(x, target=0))

    @pytest.mark.parametrize("method", ["paper", "gausslegendre"])
    def test_tuple_inputs(self, method):
        """Tuple in, tuple out; each tensor gets its own rank path."""

        def forward(a, b):
            return (a.sum((2, 3)) @ torch.ones(3, 2, dtype=a.dtype)) + b.sin().sum((1, 2, 3))[
                :, None
            ]

        a = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        b = torch.rand(2, 1, 6, 6 if method == "paper" else 9, dtype=torch.float64)
        attr = RIG(forward).attribute((a, b), target=1, method=method, n_steps=200)
        assert isinstance(attr, tuple) and attr[0].shape == a.shape and attr[1].shape == b.shape
        if method != "paper":
            torch.testing.assert_close(attr[0], a, atol=1e-6, rtol=0)  # linear in a
            torch.testing.assert_close(attr[1], torch.sin(b), atol=1e-4, rtol=0)
        else:  # ∂F/∂a = 1 at every rank: Σ_k (w - k)/w = (w - 1)/2; b by the loop
            torch.testing.assert_close(attr[0], torch.full_like(a, 2.5))
            torch.testing.assert_close(attr[1], eq3_loop(SinModel(), b, 0))

    def test_paper_needs_one_width_for_tuples(self, model):
        """method="paper" with inputs of different min(H, W) is a clear ValueError."""
        with pytest.raises(ValueError, match="same min"):
            RIG(lambda a, b: a.sum((1, 2, 3))[:, None]).attribute(
                (torch.rand(1, 3, 6, 6), torch.rand(1, 3, 4, 4)), target=0
            )

    def test_additional_forward_args(self):
        """additional_forward_args are expanded over path steps, as in Captum."""
        net = BasicModel_ConvNet_One_Conv()
        x = 10 * torch.rand(2, 1, 4, 4)
        x2 = 10 * torch.rand(2, 1, 4, 4)
        attr = RIG(net).attribute(x, target=1, additional_forward_args=(x2,))
        loop = 0
        for k in range(1, 4):
            x_k = torch.from_numpy(numpy_rank_k(x.numpy(), k)).float().requires_grad_()
            net(x_k, x2)[:, 1].sum().backward()
            loop = loop + (4 - k) / 4 * x_k.grad
        torch.testing.assert_close(attr, loop)
        assert attr.abs().sum() > 0, "the test needs a non-zero gradient"

    @pytest.mark.parametrize(
        "target",
        [2, torch.tensor(2), torch.tensor([2]), [1, 4], torch.tensor([1, 4]), [(1,), (4,)]],
    )
    def test_every_target_form_matches_captum_layout(self, model, target):
        """Valid targets of every Captum form give what an explicit per-example loop gives."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        attr = RIG(model).attribute(x, target=target)
        flat = torch.as_tensor(target).reshape(-1).tolist()
        flat = flat * 2 if len(flat) == 1 else flat
        for i in range(2):
            torch.testing.assert_close(attr[i : i + 1], eq3_loop(model, x[i : i + 1], flat[i]))

    def test_tuple_target_for_multidim_output(self):
        """A tuple target indexes a multi-dimensional output, as in Captum."""

        def forward(x):
            return x.sum((1, 2))  # (N, W): target (j,) picks column j

        x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
        attr = RIG(forward).attribute(x, target=(3,), method="gausslegendre", n_steps=4)
        expected = torch.zeros_like(x)
        expected[..., 3] = x[..., 3]
        torch.testing.assert_close(attr, expected)

    @pytest.mark.parametrize("target", [None, 7, [0], [0, 1, 2], torch.tensor([[0, 1]]), 1.5])
    def test_invalid_targets_behave_as_in_captum(self, model, target):
        """Whatever Captum's IntegratedGradients does with a target, RIG does too."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        ig_error = _error_of(lambda: IntegratedGradients(model).attribute(x, target=target))
        rig_error = _error_of(lambda: RIG(model).attribute(x, target=target))
        assert type(rig_error) is type(ig_error), f"IG: {ig_error!r}, RIG: {rig_error!r}"

    def test_noise_tunnel(self, model):
        """NoiseTunnel(RIG) runs SmoothGrad over RIG and keeps the shape."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        nt = NoiseTunnel(RIG(model))
        attr = nt.attribute(x, nt_type="smoothgrad", nt_samples=3, stdevs=0.0, target=1)
        torch.testing.assert_close(attr, RIG(model).attribute(x, target=1))
        attr, delta = nt.attribute(
            x,
            nt_type="smoothgrad_sq",
            nt_samples=2,
            stdevs=0.0,
            target=1,
            method="gausslegendre",
            n_steps=8,
            return_convergence_delta=True,
        )
        plain, plain_delta = RIG(model).attribute(
            x, target=1, method="gausslegendre", n_steps=8, return_convergence_delta=True
        )
        torch.testing.assert_close(attr, plain**2)
        torch.testing.assert_close(delta, plain_delta.repeat_interleave(2))

    def test_captum_metrics(self, model):
        """captum.metrics.infidelity and sensitivity_max accept RIG."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        rig = RIG(model)
        attr = rig.attribute(x, target=0, method="gausslegendre", n_steps=8)

        def perturb(inputs):
            noise = 0.01 * torch.randn_like(inputs)
            return noise, inputs - noise

        score = infidelity(model, perturb, x, attr, target=0)
        assert score.shape == (2,) and bool(torch.isfinite(score).all())
        sens = sensitivity_max(rig.attribute, x, target=0, n_perturb_samples=2)
        assert sens.shape == (2,) and bool(torch.isfinite(sens).all())

    def test_captum_testing_model(self):
        """Captum's own test ConvNet, given random head weights so that its gradients are
        not ~0 (all-ones weights make its softmax flat), equals the loop of Eq. (3)."""
        basic_models = pytest.importorskip("captum.testing.helpers.basic_models")
        net = basic_models.BasicModel_ConvNet().double()
        with torch.no_grad():
            net.fc1.weight.normal_()
            net.fc2.weight.normal_()
        x = 4 * torch.rand(2, 1, 10, 10, dtype=torch.float64)
        attr = RIG(net).attribute(x, target=3)
        expected = eq3_loop(net, x, 3)
        assert expected.abs().max() > 1e-3, "the test needs a model with real gradients"
        torch.testing.assert_close(attr, expected)

    def test_leaves_no_trace(self, model):
        """No hooks, no parameter grads, inputs and their requires_grad untouched."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        before = x.clone()
        RIG(model).attribute(x, target=0, return_convergence_delta=True)
        RIG(model).attribute(x, target=0, method="gausslegendre", n_steps=4)
        assert torch.equal(x, before) and not x.requires_grad
        assert all(p.grad is None for p in model.parameters())
        for m in model.modules():
            assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks

    def test_input_requiring_grad_is_fine(self, model):
        """An input that already requires grad gives the same answer and no grad."""
        x = torch.rand(1, 3, 6, 6, dtype=torch.float64)
        got = RIG(model).attribute(x.clone().requires_grad_(), target=0)
        torch.testing.assert_close(got, RIG(model).attribute(x, target=0))

    def test_is_a_gradient_attribution(self, model):
        """RIG is Captum's GradientAttribution and RankIntegratedGradients itself."""
        from captum.attr import GradientAttribution

        assert RIG is RankIntegratedGradients
        assert isinstance(RIG(model), GradientAttribution) and RIG(model).has_convergence_delta()

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision_inputs(self, dtype):
        """Half inputs work (SVD upcast), come back in their dtype and match float32 to
        half precision."""
        model = TinyConvNet()
        x = torch.rand(1, 3, 8, 8)
        ref = RIG(model).attribute(x, target=0)
        attr = RIG(copy.deepcopy(model).to(dtype)).attribute(x.to(dtype), target=0)
        assert attr.dtype == dtype and attr.shape == ref.shape
        error = (attr.float() - ref).abs().max() / ref.abs().max()
        assert error < 0.05, f"relative error {error:.3g} in {dtype}"

    def test_cuda_matches_cpu(self, model, cuda_device):
        """CPU and CUDA agree to float tolerance, for both methods."""
        x = torch.rand(2, 3, 8, 8)
        cpu_model = model.float()
        gpu_model = TinyConvNet().to(cuda_device)
        gpu_model.load_state_dict(cpu_model.state_dict())
        for kwargs in (dict(), dict(method="gausslegendre", n_steps=16)):
            cpu = RIG(cpu_model).attribute(x, target=1, **kwargs)
            gpu = RIG(gpu_model).attribute(x.to(cuda_device), target=1, **kwargs)
            torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-3)


class TestBaselines:
    """baselines=b: the rank path of x - b from b, complete to F(x) - F(b)."""

    def test_paper_matches_plain_loop(self, model):
        """ "paper" with a baseline is Σ (w - k)/w · ∂F/∂x at b + low_rank(x - b, k)."""
        x = torch.rand(2, 3, 7, 6, dtype=torch.float64)
        b = torch.rand(2, 3, 7, 6, dtype=torch.float64)
        got = RIG(model).attribute(x, target=3, baselines=b)
        torch.testing.assert_close(got, eq3_loop(model, x, 3, baseline=b))
        assert not torch.allclose(got, RIG(model).attribute(x, target=3)), "b must matter"

    def test_paper_channel_max_and_multiply_by_inputs(self, model):
        """channel_reduction and multiply_by_inputs (by x - b) follow the loop too."""
        x = torch.rand(1, 3, 6, 6, dtype=torch.float64)
        b = torch.rand(1, 3, 1, 1, dtype=torch.float64)
        rig = RIG(model, multiply_by_inputs=True)
        got = rig.attribute(x, target=0, baselines=b, channel_reduction="max")
        expected = eq3_loop(model, x, 0, channel_max=True, multiply_by_inputs=True, baseline=b)
        torch.testing.assert_close(got, expected)

    @pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle"])
    def test_sin_model_is_complete_to_the_baseline(self, method):
        """F = Σ sin(x): every pixel gets exactly sin(x_i) - sin(b_i)."""
        x = torch.rand(2, 3, 6, 5, dtype=torch.float64)
        b = torch.rand(2, 3, 6, 5, dtype=torch.float64)
        attr, delta = RIG(SinModel()).attribute(
            x, target=0, method=method, n_steps=300, baselines=b, return_convergence_delta=True
        )
        torch.testing.assert_close(attr, torch.sin(x) - torch.sin(b), atol=5e-5, rtol=0)
        assert delta.abs().max() < 1e-4, f"delta {delta}"

    @pytest.mark.parametrize("method", PATH_METHODS)
    def test_linear_model_equals_captum_ig(self, method):
        """A linear model: exactly a ⊙ (x - b), as Captum's IG with the same baselines."""
        lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 7 * 6, 4)).double()
        x = torch.rand(2, 3, 7, 6, dtype=torch.float64)
        b = torch.rand(1, 3, 7, 6, dtype=torch.float64)
        attr, delta = RIG(lin).attribute(
            x, target=1, method=method, n_steps=5, baselines=b, return_convergence_delta=True
        )
        ig = IntegratedGradients(lin).attribute(x, target=1, n_steps=5, baselines=b)
        torch.testing.assert_close(attr, ig)
        assert delta.abs().max() < 1e-12, f"delta {delta}"

    def test_paper_delta_uses_the_baseline(self, model):
        """The paper method's delta is Σ attr - (F(x) - F(b))."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        b = torch.full_like(x, 0.3)
        attr, delta = RIG(model).attribute(
            x, target=0, baselines=0.3, return_convergence_delta=True
        )
        expected = attr.sum((1, 2, 3)) - (model(x)[:, 0] - model(b)[:, 0])
        torch.testing.assert_close(delta, expected)

    @pytest.mark.parametrize("method", ["paper", "riemann_trapezoid"])
    def test_equivalent_forms(self, model, method):
        """0 equals None bit for bit; a number equals its full tensor; (C, 1, 1) and
        (1, C, H, W) broadcast like their expansions; a 1-tuple equals its entry."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        rig = RIG(model)
        kwargs = dict(target=1, method=method, n_steps=7)
        none = rig.attribute(x, **kwargs)
        assert torch.equal(rig.attribute(x, baselines=0, **kwargs), none)
        torch.testing.assert_close(
            rig.attribute(x, baselines=0.25, **kwargs),
            rig.attribute(x, baselines=torch.full_like(x, 0.25), **kwargs),
        )
        per_channel = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)[:, None, None]
        torch.testing.assert_close(
            rig.attribute(x, baselines=per_channel, **kwargs),
            rig.attribute(x, baselines=per_channel.expand(2, 3, 6, 6).clone(), **kwargs),
        )
        one = torch.rand(1, 3, 6, 6, dtype=torch.float64)
        torch.testing.assert_close(
            rig.attribute(x, baselines=(one,), **kwargs),
            rig.attribute(x, baselines=one.expand(2, -1, -1, -1).clone(), **kwargs),
        )

    def test_tuple_inputs(self):
        """One baseline per input of a tuple (or one number for all), each its own path."""

        def forward(a, c):
            return (a.sin().sum((1, 2, 3)) + 2 * c.sum((1, 2, 3)))[:, None]

        a = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        c = torch.rand(2, 1, 5, 8, dtype=torch.float64)
        ba, bc = torch.rand(2, 3, 6, 6, dtype=torch.float64), 0.5
        attr = RIG(forward).attribute(
            (a, c), target=0, method="gausslegendre", n_steps=200, baselines=(ba, bc)
        )
        torch.testing.assert_close(attr[0], a.sin() - ba.sin(), atol=1e-4, rtol=0)
        torch.testing.assert_close(attr[1], 2 * (c - bc), atol=1e-10, rtol=0)
        same = RIG(forward).attribute((a, c), target=0, method="gausslegendre", baselines=0.5)
        assert torch.equal(
            same[1],
            RIG(forward).attribute((a, c), target=0, method="gausslegendre", baselines=(0.5, 0.5))[
                1
            ],
        )

    def test_path_starts_at_the_baseline_and_ends_at_x(self, model):
        """The model sees b + low_rank(x - b, k): rank k after removing b, x itself last."""
        # 8 steps: Captum's nodes k/8 are exact in float32, so t lands on integer ranks.
        x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
        b = torch.rand(1, 3, 8, 8, dtype=torch.float64)
        log = CallLog(model)
        RIG(log).attribute(x, target=0, method="riemann_right", n_steps=8, baselines=b)
        seen = torch.cat(log.seen)
        ranks = torch.linalg.matrix_rank(seen - b, atol=1e-8).amax(dim=1)
        assert ranks.tolist() == list(range(1, 9))
        assert torch.equal(seen[-1], x[0]), "the last point must be x, bit for bit"
        log.seen.clear()
        RIG(log).attribute(x, target=0, method="riemann_left", n_steps=8, baselines=b)
        assert torch.equal(log.seen[0][0], b[0]), "the first point must be b"

    def test_noise_tunnel_with_baselines(self, model):
        """NoiseTunnel expands per-example baselines; zero noise gives RIG itself."""
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        b = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        nt = NoiseTunnel(RIG(model))
        for method in ("paper", "gausslegendre"):
            got = nt.attribute(
                x, nt_samples=3, stdevs=0.0, target=1, method=method, n_steps=6, baselines=b
            )
            expected = RIG(model).attribute(x, target=1, method=method, n_steps=6, baselines=b)
            torch.testing.assert_close(got, expected)

    @pytest.mark.parametrize(
        "baselines, error, message",
        [
            (torch.rand(2, 3, 5, 5), ValueError, r"baselines must broadcast to .*\(1, 3, 6, 6\)"),
            (torch.rand(3, 3, 6, 6), ValueError, "baselines must broadcast"),
            ((0.0, 1.0), ValueError, r"baselines must have one entry per input \(1\), got 2"),
            ("zero", TypeError, "baselines must be a real number"),
            ([0.0], TypeError, "baselines must be a real number"),
            (True, TypeError, "baselines must be a real number"),
            (math.inf, ValueError, "baselines must be finite"),
            (torch.full((1, 3, 1, 1), math.nan), ValueError, "baselines contains NaN"),
        ],
    )
    def test_bad_baselines(self, model, baselines, error, message):
        """Wrong baselines raise an error naming them."""
        x = torch.rand(1, 3, 6, 6, dtype=torch.float64)
        with pytest.raises(error, match=message):
            RIG(model).attribute(x, target=0, baselines=baselines)

    def test_bad_baseline_of_a_tuple_names_its_index(self, model):
        """In a tuple, the offending entry is named by its index."""
        inputs = (torch.rand(1, 3, 6, 6), torch.rand(1, 3, 6, 6))
        with pytest.raises(ValueError, match=r"baselines\[1\] must broadcast"):
            RIG(lambda a, c: (a + c).sum((1, 2, 3))[:, None]).attribute(
                inputs, target=0, baselines=(0.0, torch.rand(4, 4))
            )

    def test_baselines_is_keyword_only(self, model):
        """baselines cannot be passed by position (Captum's IG has it second)."""
        x = torch.rand(1, 3, 6, 6, dtype=torch.float64)
        with pytest.raises(TypeError):
            RIG(model).attribute(x, 0, None, None, "paper", None, None, False, 0.0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(inputs=torch.rand(6, 6)), ValueError, r"inputs must have 4 dims \(N, C, H, W\)"),
        (dict(inputs=torch.rand(3, 6, 6)), ValueError, "inputs must have 4 dims"),
        (dict(inputs=torch.ones(1, 3, 6, 6, dtype=torch.uint8)), TypeError, "floating point"),
        (dict(inputs=torch.full((1, 3, 6, 6), math.nan)), ValueError, "inputs contains NaN"),
        (dict(inputs=torch.zeros(0, 3, 6, 6)), ValueError, "inputs must not be empty"),
        (
            dict(inputs=[torch.rand(1, 3, 6, 6)]),
            TypeError,
            "inputs must be a torch.Tensor or a tuple",
        ),
        (dict(method="simpson"), ValueError, "method must be 'paper' or one of"),
        (dict(n_steps=0), ValueError, "n_steps must be >= 1"),
        (dict(n_steps=2.5), TypeError, "n_steps must be an integer"),
        (dict(channel_reduction="mean"), ValueError, "channel_reduction must be None or 'max'"),
        (
            dict(channel_reduction="max", method="gausslegendre"),
            ValueError,
            "needs method='paper'",
        ),
        (dict(internal_batch_size=0), ValueError, "internal_batch_size must be >= 1"),
    ],
)
def test_bad_input(model, kwargs, error, message):
    """Bad arguments raise a clear error naming the argument."""
    kwargs = {"inputs": torch.rand(1, 3, 6, 6, dtype=torch.float64), "target": 0, **kwargs}
    with pytest.raises(error, match=message):
        RIG(model).attribute(**kwargs)


def test_tuple_with_mismatched_batch(model):
    """Tuple inputs must share their batch size."""
    with pytest.raises(ValueError, match="same batch size"):
        RIG(lambda a, b: a.sum((1, 2, 3))[:, None]).attribute(
            (torch.rand(2, 3, 6, 6), torch.rand(3, 3, 6, 6)), target=0
        )


def _error_of(fn):
    try:
        fn()
    except Exception as error:  # noqa: BLE001 - any error is the observation
        return error
    return None


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
