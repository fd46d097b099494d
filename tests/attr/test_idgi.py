"""IDGI (Yang et al. 2023, Eq. 5) on RIG, LayerRIG and BlurIG, against literal loops of
the paper's formula written here with autograd, one path point at a time."""

import pytest
import torch
from _reference import TinyConvNet
from captum.attr import NoiseTunnel
from torch import nn

from captum_rig import RIG, BlurIG, LayerRIG
from captum_rig.attr._idgi import idgi_shares, match_nodes
from captum_rig.attr.blur_path import blur_sigmas, gaussian_blur
from captum_rig.attr.rank_path import path_nodes, rank_nodes

PATH_METHODS = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
PATH_METHODS += ["gausslegendre"]


def _model() -> nn.Module:
    """A smooth CNN in float64: real, varying gradients."""
    torch.manual_seed(0)
    return TinyConvNet(width=4, padding=0).double().eval()


def _grad_and_output(forward, points, target):
    """∂F_target/∂x and F_target at one point of every input (tuples), per example."""
    points = tuple(p.detach().clone().requires_grad_() for p in points)
    out = forward(*points)
    value = out[torch.arange(out.shape[0]), target]
    grads = torch.autograd.grad(value.sum(), points)
    return grads, value.detach()


def _idgi_loop(forward, node_points, edge_points, target):
    """Σ_j g_j² / ‖g_j‖² · (F(e_{j+1}) - F(e_j)), Eq. (5), one node at a time.

    ``node_points[j]`` and ``edge_points[j]`` are tuples with one tensor per input.
    """
    total = None
    for j, node in enumerate(node_points):
        grads, _ = _grad_and_output(forward, node, target)
        _, start = _grad_and_output(forward, edge_points[j], target)
        _, stop = _grad_and_output(forward, edge_points[j + 1], target)
        norm = sum((g**2).flatten(1).sum(1) for g in grads)
        terms = [g**2 / norm.view(-1, 1, 1, 1) * (stop - start).view(-1, 1, 1, 1) for g in grads]
        total = terms if total is None else [t + s for t, s in zip(total, terms)]
    return tuple(total)


def _rank_points(inputs, method, n_steps):
    """The rank path's nodes and cell edges, as tuples of one point per input."""
    nodes = rank_nodes(inputs, None, method, n_steps)
    alphas, edges = path_nodes(method, n_steps)

    def at(fractions):
        return [
            tuple(p.images(torch.tensor([f * p.width]))[0] for p in nodes.paths) for f in fractions
        ]

    return at(alphas.tolist()), at(edges.tolist())


def test_riemann_left_is_the_papers_formula_literally():
    """Points x_j = x(j/m · w), j = 0..m-1, x_m = x: Eq. (5) exactly."""
    model, m = _model(), 7
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    target = torch.tensor([1, 3])
    w = 6
    points = [(RIG_path_point(x, j / m * w),) for j in range(m)] + [(x,)]
    expected = _idgi_loop(model, points[:-1], points, target)[0]
    got = RIG(model).attribute(x, target=target, method="riemann_left", n_steps=m, idgi=True)
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-10)


def RIG_path_point(x, t):  # noqa: N802 - reads as the path x(t) of RIG
    """x(t) on the rank path from 0, built from low_rank here (independent of RankPath)."""
    from captum_rig import low_rank

    k = int(t)
    lower = low_rank(x, k)
    return lower + (t - k) * (low_rank(x, min(k + 1, min(x.shape[-2:]))) - lower)


@pytest.mark.parametrize("method", PATH_METHODS)
def test_every_rule_equals_the_loop_over_its_cells(method):
    """Other rules: each node's g² splits its cell's output change."""
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    nodes, edges = _rank_points((x,), method, 5)
    expected = _idgi_loop(model, nodes, edges, torch.tensor([0, 2]))[0]
    got, delta = RIG(model).attribute(
        x, target=[0, 2], method=method, n_steps=5, idgi=True, return_convergence_delta=True
    )
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)
    assert delta.abs().max() < 1e-10, "complete by construction"


@pytest.mark.parametrize("method", PATH_METHODS)
@pytest.mark.parametrize("n_steps", [2, 3, 7])
def test_linear_model_gives_w_squared_share_of_the_output_change(method, n_steps):
    """F = w·x: w² / ‖w‖² · (F(x) - F(b)), any rule, any n_steps, with a baseline."""
    torch.manual_seed(1)
    weight = torch.randn(1, 3, 5, 7, dtype=torch.float64)

    def forward(x):
        return torch.stack([(x * weight).sum((1, 2, 3)), -(x * weight).sum((1, 2, 3))], 1)

    x = torch.rand(3, 3, 5, 7, dtype=torch.float64)
    b = torch.full((1, 3, 1, 1), 0.3, dtype=torch.float64)
    got = RIG(forward).attribute(
        x, target=1, method=method, n_steps=n_steps, idgi=True, baselines=b
    )
    change = forward(x)[:, 1] - forward(b.expand_as(x))[:, 1]
    expected = weight**2 / (weight**2).sum() * change.view(-1, 1, 1, 1)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_one_step_is_one_share_of_the_whole_change():
    """n_steps=1 (Gauss-Legendre): one gradient splits all of F(x) - F(0)."""
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    got, delta = RIG(model).attribute(
        x, target=0, method="gausslegendre", n_steps=1, idgi=True, return_convergence_delta=True
    )
    assert delta.abs().max() < 1e-10
    with pytest.raises(ValueError, match="n_steps must be at least 2"):
        RIG(model).attribute(x, target=0, method="riemann_left", n_steps=1, idgi=True)


def test_chunks_give_the_same_result():
    """Cells whose end node falls in the next pass wait for it: any internal_batch_size."""
    model = _model()
    x = torch.rand(3, 3, 6, 6, dtype=torch.float64)
    kwargs = dict(target=[0, 1, 2], n_steps=9, idgi=True)
    for method in ("riemann_left", "riemann_right", "gausslegendre"):
        whole = RIG(model).attribute(x, method=method, **kwargs)
        for size in (3, 6, 12):
            parts = RIG(model).attribute(x, method=method, internal_batch_size=size, **kwargs)
            torch.testing.assert_close(parts, whole, rtol=1e-9, atol=1e-12)


def test_tuple_inputs_share_one_norm():
    """Two inputs: ‖g‖² runs over both; the loop sees the same."""

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Conv2d(3, 2, 3).double(), nn.Conv2d(1, 2, 3).double()

        def forward(self, p, q):
            return torch.tanh(self.a(p) + self.b(q)).flatten(1)[:, :4]

    model = Two()
    inputs = (
        torch.rand(2, 3, 6, 6, dtype=torch.float64),
        torch.rand(2, 1, 6, 6, dtype=torch.float64),
    )
    nodes, edges = _rank_points(inputs, "riemann_middle", 4)
    expected = _idgi_loop(model, nodes, edges, torch.tensor([3, 1]))
    got = RIG(model).attribute(inputs, target=[3, 1], method="riemann_middle", n_steps=4, idgi=True)
    assert isinstance(got, tuple) and len(got) == 2
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-9)
    change = (
        model(*inputs)[torch.arange(2), [3, 1]]
        - model(*(0 * t for t in inputs))[torch.arange(2), [3, 1]]
    )
    torch.testing.assert_close(got[0].sum((1, 2, 3)) + got[1].sum((1, 2, 3)), change.detach())


@pytest.mark.parametrize(
    "target",
    [2, [0, 3], torch.tensor([1, 2]), torch.tensor(2)],
    ids=["int", "list", "tensor", "0d"],
)
def test_every_target_form_equals_per_example_runs(target):
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    batch = RIG(model).attribute(x, target=target, method="gausslegendre", n_steps=4, idgi=True)
    per = torch.as_tensor(target).expand(2).tolist()
    for i in range(2):
        single = RIG(model).attribute(
            x[i : i + 1], target=per[i], method="gausslegendre", n_steps=4, idgi=True
        )
        torch.testing.assert_close(batch[i : i + 1], single, rtol=1e-9, atol=1e-12)


def test_tuple_target_for_a_shaped_output():
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)

    def shaped(inputs):
        return model(inputs)[:, :4].reshape(-1, 2, 2)

    got = RIG(shaped).attribute(x, target=(1, 0), method="riemann_left", n_steps=4, idgi=True)
    flat = RIG(model).attribute(x, target=2, method="riemann_left", n_steps=4, idgi=True)
    torch.testing.assert_close(got, flat)


def test_noise_tunnel_each_sample_complete():
    """Inside NoiseTunnel: every noisy copy's attributions sum to its output change."""
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    smooth, delta = NoiseTunnel(RIG(model)).attribute(
        x,
        nt_samples=3,
        stdevs=0.1,
        target=1,
        method="riemann_trapezoid",
        n_steps=3,
        idgi=True,
        return_convergence_delta=True,
    )
    assert smooth.shape == x.shape and delta.shape == (6,)
    assert delta.abs().max() < 1e-10
    plain = NoiseTunnel(RIG(model)).attribute(
        x, nt_samples=2, stdevs=0.0, target=1, method="riemann_left", n_steps=3, idgi=True
    )
    torch.testing.assert_close(
        plain, RIG(model).attribute(x, target=1, method="riemann_left", n_steps=3, idgi=True)
    )


def test_no_hooks_no_grads_inputs_untouched():
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    copy = x.clone()
    RIG(model).attribute(x, target=0, method="gausslegendre", n_steps=3, idgi=True)
    LayerRIG(model, model.conv).attribute(x, target=0, method="riemann_left", n_steps=3, idgi=True)
    BlurIG(model).attribute(x, target=0, n_steps=3, max_sigma=2.0, idgi=True)
    assert torch.equal(x, copy) and not x.requires_grad and x.grad is None
    assert all(p.grad is None for p in model.parameters())
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    assert hooks == 0


def test_zero_gradient_steps_give_zeros_not_nan():
    """A flat model: ‖g‖ = 0 everywhere, no output change, attributions 0."""
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    got = RIG(lambda t: 0 * t.sum((1, 2, 3))[:, None]).attribute(
        x, target=0, method="riemann_left", n_steps=3, idgi=True
    )
    assert torch.equal(got, torch.zeros_like(x))


def test_idgi_needs_a_path_method():
    model = _model()
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="idgi=True needs a path method"):
        RIG(model).attribute(x, target=0, idgi=True)
    with pytest.raises(ValueError, match="idgi=True needs a path method"):
        LayerRIG(model, model.conv).attribute(x, target=0, idgi=True)


# ---- LayerRIG --------------------------------------------------------------------------


def _layer_grad(model, layer, point, target):
    saved = {}

    def hook(_module, _inp, out):
        out.retain_grad()
        saved["a"] = out

    handle = layer.register_forward_hook(hook)
    try:
        out = model(point.clone().requires_grad_())
    finally:
        handle.remove()
    out[torch.arange(out.shape[0]), target].sum().backward()
    return saved["a"].grad.detach()


@pytest.mark.parametrize("method", ["riemann_left", "gausslegendre"])
def test_layer_rig_equals_the_loop_and_is_complete(method):
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    target = torch.tensor([2, 0])
    nodes, edges = _rank_points((x,), method, 5)
    expected = 0
    with torch.no_grad():
        outs = [model(e[0])[torch.arange(2), target] for e in edges]
    for j, node in enumerate(nodes):
        g = _layer_grad(model, model.conv, node[0], target)
        share = g**2 / (g**2).flatten(1).sum(1).view(-1, 1, 1, 1)
        expected = expected + share * (outs[j + 1] - outs[j]).view(-1, 1, 1, 1)
    got, delta = LayerRIG(model, model.conv).attribute(
        x, target=target, method=method, n_steps=5, idgi=True, return_convergence_delta=True
    )
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)
    assert delta.abs().max() < 1e-10


def test_layer_rig_at_an_identity_layer_equals_rig():
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    kwargs = dict(target=1, method="riemann_middle", n_steps=4, idgi=True)
    layer = LayerRIG(model, model.inp).attribute(x, **kwargs)
    torch.testing.assert_close(layer, RIG(model).attribute(x, **kwargs), rtol=1e-6, atol=1e-9)


# ---- BlurIG ----------------------------------------------------------------------------


def test_blur_ig_equals_the_loop_and_is_complete():
    """Path x = blur(x, σ_0) → blur(x, σ_n); attributions explain F(x) - F(blurred)."""
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    sigmas = blur_sigmas(3.0, 6)
    points = [(gaussian_blur(x, s),) for s in sigmas]
    expected = -_idgi_loop(model, points[:-1], points, 1)[0]
    got, delta = BlurIG(model).attribute(
        x, target=1, max_sigma=3.0, n_steps=6, idgi=True, return_convergence_delta=True
    )
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)
    assert delta.abs().max() < 1e-10


def test_blur_ig_linear_model():
    torch.manual_seed(2)
    weight = torch.randn(1, 1, 6, 6, dtype=torch.float64)

    def forward(x):
        return (x * weight).sum((1, 2, 3))[:, None]

    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    got = BlurIG(forward).attribute(x, target=0, max_sigma=2.0, n_steps=3, idgi=True)
    change = forward(x)[:, 0] - forward(gaussian_blur(x, 2.0))[:, 0]
    torch.testing.assert_close(got, weight**2 / (weight**2).sum() * change.view(-1, 1, 1, 1))


# ---- helpers -----------------------------------------------------------------------------


def test_match_nodes_and_shares():
    alphas, edges = path_nodes("riemann_left", 4)
    assert match_nodes(alphas, edges).tolist() == [0, 1, 2, 3, -1]
    alphas, edges = path_nodes("riemann_right", 4)
    assert match_nodes(alphas, edges).tolist() == [-1, 0, 1, 2, 3]
    alphas, edges = path_nodes("gausslegendre", 4)
    assert match_nodes(alphas, edges).tolist() == [-1] * 5
    g = (torch.tensor([[[3.0, 0.0]], [[0.0, 0.0]]]), torch.tensor([[[4.0]], [[0.0]]]))
    shares = idgi_shares(g)
    torch.testing.assert_close(shares[0], torch.tensor([[[9 / 25, 0.0]], [[0.0, 0.0]]]))
    torch.testing.assert_close(shares[1], torch.tensor([[[16 / 25]], [[0.0]]]))
