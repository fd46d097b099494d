"""Tests for LayerRankIntegratedGradients, against loops with hooks written here."""

import pytest
import torch
from _reference import TinyConvNet
from captum.attr import LayerAttribution
from captum.attr._utils.attribution import GradientAttribution
from torch import nn

from captum_rig import RIG, LayerRankIntegratedGradients, LayerRIG, low_rank

PATH_METHODS = ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_middle"]


class TwoInputs(nn.Module):
    """Two images, one conv each, merged before the head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3)
        self.conv_b = nn.Conv2d(1, 4, 3)
        self.merge = nn.Identity()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, a, b):
        return self.fc(torch.tanh(self.merge(self.conv_a(a) + self.conv_b(b))).flatten(1))


def _model(act: type = nn.Softplus) -> TinyConvNet:
    """Identity at the input, a 4-channel conv, ``act``, a linear head."""
    torch.manual_seed(0)
    return TinyConvNet(width=4, padding=0, act=act).eval()


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def _layer_grad(model, layer, inputs, target, to_input=False, **kwargs):
    """∂F_target/∂a at ``inputs`` with a hook of our own, shape of a."""
    saved = {}

    def hook(module, inp, out=None):
        value = inp[0] if to_input else out
        value.retain_grad()
        saved["a"] = value

    inputs = tuple(x.clone().requires_grad_() for x in inputs)
    handle = (
        layer.register_forward_pre_hook(hook) if to_input else layer.register_forward_hook(hook)
    )
    try:
        out = model(*inputs, **kwargs)
    finally:
        handle.remove()
    out[torch.arange(out.shape[0]), target].sum().backward()
    return saved["a"].grad.detach()


def _paper_loop(model, layer, inputs, target, baselines=None, to_input=False, **kwargs):
    """Σ_{k=1}^{w} (w - k)/w · ∂F(x_k)/∂a, one rank at a time."""
    w = min(inputs[0].shape[-2:])
    baselines = baselines or tuple(torch.zeros_like(x) for x in inputs)
    total = 0
    for k in range(1, w + 1):
        x_k = tuple(b + low_rank(x - b, k) for x, b in zip(inputs, baselines))
        total = total + (w - k) / w * _layer_grad(model, layer, x_k, target, to_input, **kwargs)
    return total


def test_is_a_captum_layer_attribution():
    """LayerRIG is the class and a Captum LayerAttribution + GradientAttribution."""
    model = _model()
    lrig = LayerRIG(model, model.conv)
    assert LayerRIG is LayerRankIntegratedGradients
    assert isinstance(lrig, LayerAttribution) and isinstance(lrig, GradientAttribution)
    assert lrig.has_convergence_delta()


@pytest.mark.parametrize("to_input", [False, True])
def test_paper_equals_loop_over_ranks(to_input):
    """method='paper' equals the explicit weighted loop over every rank, output or input."""
    model = _model()
    x = torch.rand(2, 3, 7, 6)
    target = torch.tensor([1, 3])
    attr = LayerRIG(model, model.act).attribute(x, target=target, attribute_to_layer_input=to_input)
    expected = _paper_loop(model, model.act, (x,), target, to_input=to_input)
    assert attr.shape == (2, 4, 5, 4)
    torch.testing.assert_close(attr, expected, atol=1e-6, rtol=1e-4)


def test_paper_with_baselines_and_forward_args():
    """Baselines shift the path to b + low_rank(x - b, k); extra args reach the model."""
    model = _model()
    x, b = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 6, 6)
    attr = LayerRIG(model, model.conv).attribute(
        x, target=2, additional_forward_args=(2.0,), baselines=b
    )
    expected = _paper_loop(model, model.conv, (x,), torch.tensor([2, 2]), (b,), scale=2.0)
    torch.testing.assert_close(attr, expected, atol=1e-6, rtol=1e-4)


def test_paper_multiply_by_inputs_scales_by_layer_change():
    """multiply_by_inputs multiplies the paper sum by a(x) - a(b), computed here."""
    model = _model()
    x, b = torch.rand(2, 3, 6, 6), torch.full((1, 3, 1, 1), 0.5)
    attr = LayerRIG(model, model.conv, multiply_by_inputs=True).attribute(x, target=4, baselines=b)
    with torch.no_grad():
        change = model.conv(x) - model.conv(b.expand_as(x))
    expected = _paper_loop(model, model.conv, (x,), torch.tensor([4, 4]), (b,)) * change
    torch.testing.assert_close(attr, expected, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("method", ["paper", *PATH_METHODS])
def test_identity_layer_equals_rig(method):
    """At an identity layer on the input, LayerRIG equals RIG for every method."""
    model = _model()
    x = torch.rand(3, 3, 8, 8)
    for mult in (False, True) if method == "paper" else (False,):
        ours = LayerRIG(model, model.inp, multiply_by_inputs=mult).attribute(
            x, target=[0, 1, 4], method=method, n_steps=12
        )
        rig = RIG(model, multiply_by_inputs=mult).attribute(
            x, target=[0, 1, 4], method=method, n_steps=12
        )
        torch.testing.assert_close(ours, rig, atol=1e-6, rtol=1e-4)


def test_layer_input_of_first_layer_equals_rig():
    """attribute_to_layer_input at the first conv is RIG's input attribution."""
    model = _model()
    x = torch.rand(2, 3, 8, 8)
    ours = LayerRIG(model, model.conv).attribute(
        x, target=1, method="gausslegendre", n_steps=10, attribute_to_layer_input=True
    )
    rig = RIG(model).attribute(x, target=1, method="gausslegendre", n_steps=10)
    torch.testing.assert_close(ours, rig, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("method", PATH_METHODS)
def test_path_methods_are_complete_at_a_conv_layer(method):
    """Path methods sum to F(x) - F(x(0)), checked with the model's own outputs."""
    model = _model()
    x, b = torch.rand(2, 3, 8, 8), torch.full((1, 3, 1, 1), 0.3)
    tolerance = 2e-2 if method == "riemann_left" else 2e-3  # a first-order rule
    for baselines, start in ((None, torch.zeros_like(x)), (b, b.expand_as(x))):
        attr, delta = LayerRIG(model, model.conv).attribute(
            x, target=2, method=method, n_steps=64, baselines=baselines,
            return_convergence_delta=True,
        )  # fmt: skip
        with torch.no_grad():
            gap = model(x)[:, 2] - model(start)[:, 2]
        total = attr.sum((1, 2, 3))
        torch.testing.assert_close(total - gap, delta, atol=1e-5, rtol=1e-4)
        assert (total - gap).abs().max() < tolerance * gap.abs().max(), (total, gap)


def test_path_method_complete_for_relu_to_quadrature_error():
    """With ReLU, the conductance form stays complete up to a small quadrature error."""
    model = _model(nn.ReLU)
    x = torch.rand(2, 3, 8, 8)
    _, delta = LayerRIG(model, model.act).attribute(
        x, target=0, method="riemann_trapezoid", n_steps=256, return_convergence_delta=True
    )
    with torch.no_grad():
        gap = model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]
    assert delta.abs().max() < 0.02 * gap.abs().max(), (delta, gap)


@pytest.mark.parametrize("method", ["paper", "gausslegendre"])
def test_tuple_inputs(method):
    """Tuple in: the merged layer's attribution; paper equals the loop, path is complete."""
    torch.manual_seed(1)
    model = TwoInputs().eval()
    a, b = torch.rand(2, 3, 6, 6), torch.rand(2, 1, 6, 6)
    attr, delta = LayerRIG(model, model.merge).attribute(
        (a, b), target=1, method=method, n_steps=48, return_convergence_delta=True
    )
    assert isinstance(attr, torch.Tensor) and attr.shape == (2, 4, 4, 4)
    if method == "paper":
        expected = _paper_loop(model, model.merge, (a, b), torch.tensor([1, 1]))
        torch.testing.assert_close(attr, expected, atol=1e-6, rtol=1e-4)
    else:
        assert delta.abs().max() < 1e-3, delta


@pytest.mark.parametrize("method", ["paper", "riemann_middle"])
def test_batch_targets_equal_per_example(method):
    """List and tensor targets on a batch equal per-example runs with int targets."""
    model = _model()
    x = torch.rand(3, 3, 6, 6)
    lrig = LayerRIG(model, model.conv)
    targets = [4, 0, 2]
    singles = torch.cat(
        [lrig.attribute(x[i : i + 1], target=t, method=method) for i, t in enumerate(targets)]
    )
    for target in (targets, torch.tensor(targets)):
        batch = lrig.attribute(x, target=target, method=method, internal_batch_size=6)
        torch.testing.assert_close(batch, singles, atol=1e-6, rtol=1e-4)


def test_no_hooks_left_also_after_an_exception():
    """Hooks are removed after a run and after a run that raises."""
    model = _model()
    x = torch.rand(2, 3, 6, 6)
    for method in ("paper", "gausslegendre"):
        LayerRIG(model, model.conv, multiply_by_inputs=True).attribute(
            x, target=0, method=method, n_steps=4
        )
        assert _hooks(model) == 0
        with pytest.raises((IndexError, RuntimeError)):
            LayerRIG(model, model.conv).attribute(x, target=99, method=method, n_steps=4)
        assert _hooks(model) == 0


def test_inputs_untouched_and_no_requires_grad():
    """The caller's tensor keeps its values and gets no requires_grad."""
    model = _model()
    x = torch.rand(2, 3, 6, 6)
    copy = x.clone()
    LayerRIG(model, model.conv).attribute(x, target=0, method="gausslegendre", n_steps=4)
    assert torch.equal(x, copy) and not x.requires_grad


def test_bad_arguments_name_themselves():
    """Bad method, layer, n_steps and baselines raise errors naming the argument."""
    model = _model()
    x = torch.rand(1, 3, 6, 6)
    with pytest.raises(TypeError, match="layer"):
        LayerRIG(model, "conv")
    lrig = LayerRIG(model, model.conv)
    with pytest.raises(ValueError, match="method"):
        lrig.attribute(x, target=0, method="simpson")
    with pytest.raises(ValueError, match="n_steps"):
        lrig.attribute(x, target=0, n_steps=0)
    with pytest.raises(ValueError, match="baselines"):
        lrig.attribute(x, target=0, baselines=torch.zeros(2, 3, 5, 5))
    with pytest.raises(ValueError, match="layer"):
        LayerRIG(model, nn.Conv2d(3, 4, 3)).attribute(x, target=0, method="gausslegendre")


class Split(nn.Module):
    """A layer with two outputs: the first two channels and the rest."""

    def forward(self, x):
        return x[:, :2], x[:, 2:]


class TwoOutputs(nn.Module):
    """A conv whose output is split in two and merged again."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 4, 3)
        self.split = Split()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        a, b = self.split(torch.tanh(self.conv(x)))
        return self.fc(torch.cat([a * b.mean(1, keepdim=True), b], 1).mean((2, 3)))


def test_layer_with_two_outputs_gives_a_tuple():
    """A layer with a tuple output gets a tuple of attributions, complete together."""
    model = TwoOutputs().eval()
    x = torch.rand(2, 3, 7, 7)
    attr, delta = LayerRIG(model, model.split).attribute(
        x, target=1, method="gausslegendre", n_steps=64, return_convergence_delta=True
    )
    assert isinstance(attr, tuple) and [a.shape for a in attr] == [(2, 2, 5, 5)] * 2
    with torch.no_grad():
        gap = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    total = sum(a.sum((1, 2, 3)) for a in attr)
    torch.testing.assert_close(total, gap, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(delta, total - gap, atol=1e-6, rtol=1e-4)


class CalledTwice(nn.Module):
    """One conv applied twice (the same weights on two feature maps)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 6 * 6, 2)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(torch.tanh(self.conv(x)))).flatten(1))


@pytest.mark.parametrize("method", ["paper", "gausslegendre", "riemann_trapezoid"])
def test_layer_called_twice_is_refused(method):
    """A layer called twice has no single value per example: a clear error, not wrong sums.

    Before, the path methods took the layer's value at its first call and the gradient at
    its last, so the attributions summed to 0.1 where F(x) - F(0) was -0.01.
    """
    torch.manual_seed(0)
    model = CalledTwice().eval()
    x = torch.rand(2, 3, 6, 6)
    with pytest.raises(ValueError, match=r"layer is called 2 times"):
        LayerRIG(model, model.conv).attribute(x, target=0, method=method, n_steps=8)
    assert _hooks(model) == 0
    # A layer called once in the same model still works.
    LayerRIG(model, model.fc).attribute(x, target=0, method=method, n_steps=8)
