"""Tests for captum_rig.stability.layers: layer norms and the one table of rules."""

import pytest
import torch
import torch.nn.functional as F
from _reference import chain_model, full_matrix
from torch import nn

from captum_rig.stability import (
    RULES,
    layer_operator_norms,
    lipschitz_analysis,
    lipschitz_bound,
)
from captum_rig.stability.layers import ACTIVATION


def test_linear_norm_is_exact():
    """nn.Linear's norm is its largest singular value: certified within 10⁻⁶ above it, or
    exactly with ``certified=False``."""
    model = nn.Sequential(nn.Linear(7, 5))
    (layer,) = layer_operator_norms(model, torch.rand(2, 7))
    exact = torch.linalg.svdvals(model[0].weight.detach().double())[0].item()
    assert exact <= layer.norm <= exact * (1 + 1e-6), "Linear norm is not certified and tight"
    assert layer.kind == "Linear" and layer.input_shape == (2, 7), layer
    (layer,) = layer_operator_norms(model, torch.rand(2, 7), certified=False)
    assert layer.norm == pytest.approx(exact, rel=1e-12), "Linear norm is not exact"


def test_layer_norms_of_every_kind_match_full_matrices():
    """Conv, BatchNorm, avg-pool norms equal their full matrices' on the seen sizes."""
    model = chain_model().eval()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    layers = {layer.name: layer for layer in layer_operator_norms(model, x, certified=False, tol=0)}
    assert list(layers) == [str(i) for i in range(len(model))], "a layer call is missing"
    # BatchNorm in eval mode: a diagonal scaling
    bn = model[2]
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).abs().max().item()
    assert layers["2"].norm == pytest.approx(scale), "BatchNorm norm"
    # the avg-pool is linear: compare with its full matrix on the 6 × 4 × 4 input it sees
    assert layers["7"].input_shape == (1, 6, 4, 4), layers["7"]
    exact = torch.linalg.matrix_norm(full_matrix(model[7], (6, 4, 4)), 2).item()
    assert layers["7"].norm == pytest.approx(exact, rel=1e-9), "avg-pool norm"
    conv = model[5]
    w = conv.weight.detach()
    exact = torch.linalg.matrix_norm(
        full_matrix(lambda v: conv._conv_forward(v, w, None), (4, 8, 8)), 2
    ).item()
    assert layers["5"].norm == pytest.approx(exact, rel=1e-9), "strided conv norm"
    assert layers["0"].norm == pytest.approx(1 / 0.2), "normalization: max 1/std"
    assert layers["3"].norm == 1.0 and layers["11"].norm == 1.0, "LeakyReLU(0.1), Tanh: 1"
    assert layers["4"].norm == pytest.approx(3.0), "3×3 max-pool, stride 1: √9"
    assert layers["8"].norm == 1.0 and layers["9"].norm == 1.0, "Dropout, Flatten: 1"


@pytest.mark.parametrize(
    "pool, expected",
    [
        (nn.MaxPool2d(2), 1.0),
        (nn.MaxPool2d(3, stride=2), 2.0),
        (nn.MaxPool2d(2, stride=1), 2.0),
        (nn.AvgPool2d(2), 0.5),
        (nn.AdaptiveAvgPool2d(1), 1 / 8),
    ],
    ids=["max2", "max3s2", "max2s1", "avg2", "adaptive-avg"],
)
def test_pooling_norms(pool, expected):
    """Max-pool: √(windows per pixel); avg-pool over k×k disjoint windows: 1/k."""
    (layer,) = layer_operator_norms(nn.Sequential(pool), torch.rand(1, 2, 8, 8))
    assert layer.norm == pytest.approx(expected, rel=1e-6), f"{pool}: {layer.norm}"


def test_torchvision_normalize_and_unnamed_root():
    """torchvision's Normalize counts as max 1/std; a bare layer as model gets a name."""
    transforms = pytest.importorskip("torchvision.transforms")
    model = nn.Sequential(transforms.Normalize([0.5, 0.5], [0.25, 0.5]))
    (layer,) = layer_operator_norms(model, torch.rand(1, 2, 4, 4))
    assert layer.norm == pytest.approx(4.0), f"Normalize norm {layer.norm}"
    (root,) = layer_operator_norms(nn.Linear(3, 2), torch.rand(1, 3))
    assert root.name == "(model)" and root.norm is not None, root


# --------------------------------------------------------------------------- the one table

IMAGE = (1, 2, 6, 6)
SIGNAL = (1, 2, 6)
VOLUME = (1, 2, 3, 3, 3)


def _bn(module: nn.Module) -> nn.Module:
    """A BatchNorm with non-trivial statistics and scale."""
    with torch.no_grad():
        module.running_var.uniform_(0.5, 2.0)
        module.weight.uniform_(-2, 2)
    return module


# How each spelling in RULES is called here and on what input, where the default (the
# module class without arguments, ``f(x)``, ``x.m()``, on IMAGE) does not do.
CALLS = {
    nn.Linear: (lambda: nn.Linear(8, 5), (1, 8)),
    nn.Conv2d: (lambda: nn.Conv2d(2, 3, 3, padding=1), IMAGE),
    nn.BatchNorm1d: (lambda: _bn(nn.BatchNorm1d(2)), SIGNAL),
    nn.BatchNorm2d: (lambda: _bn(nn.BatchNorm2d(2)), IMAGE),
    nn.BatchNorm3d: (lambda: _bn(nn.BatchNorm3d(2)), VOLUME),
    nn.AvgPool1d: (lambda: nn.AvgPool1d(3, stride=1, padding=1), SIGNAL),
    nn.AvgPool2d: (lambda: nn.AvgPool2d(3, stride=1, padding=1), IMAGE),
    nn.AvgPool3d: (lambda: nn.AvgPool3d(2, stride=1), VOLUME),
    nn.AdaptiveAvgPool1d: (lambda: nn.AdaptiveAvgPool1d(4), SIGNAL),
    nn.AdaptiveAvgPool2d: (lambda: nn.AdaptiveAvgPool2d(4), IMAGE),
    nn.AdaptiveAvgPool3d: (lambda: nn.AdaptiveAvgPool3d(2), VOLUME),
    F.avg_pool1d: (lambda: lambda x: F.avg_pool1d(x, 2), SIGNAL),
    F.avg_pool2d: (lambda: lambda x: F.avg_pool2d(x, 3, 1, 1), IMAGE),
    F.avg_pool3d: (lambda: lambda x: F.avg_pool3d(x, 2, 1), VOLUME),
    F.adaptive_avg_pool1d: (lambda: lambda x: F.adaptive_avg_pool1d(x, 4), SIGNAL),
    F.adaptive_avg_pool2d: (lambda: lambda x: F.adaptive_avg_pool2d(x, 4), IMAGE),
    F.adaptive_avg_pool3d: (lambda: lambda x: F.adaptive_avg_pool3d(x, 2), VOLUME),
    torch.mean: (lambda: lambda x: torch.mean(x, dim=1), IMAGE),
    "mean": (lambda: lambda x: x.mean(dim=(2, 3)), IMAGE),
    nn.Upsample: (lambda: nn.Upsample(scale_factor=2, mode="bilinear"), IMAGE),
    F.interpolate: (lambda: lambda x: F.interpolate(x, scale_factor=1.5), IMAGE),
    nn.MaxPool2d: (lambda: nn.MaxPool2d(3, stride=1, padding=1), IMAGE),
    F.max_pool2d: (lambda: lambda x: F.max_pool2d(x, 2), IMAGE),
    nn.AdaptiveMaxPool2d: (lambda: nn.AdaptiveMaxPool2d(4), IMAGE),
    F.adaptive_max_pool2d: (lambda: lambda x: F.adaptive_max_pool2d(x, 4), IMAGE),
    nn.LeakyReLU: (lambda: nn.LeakyReLU(-2.5), IMAGE),
    nn.ELU: (lambda: nn.ELU(alpha=2.0), IMAGE),
    F.leaky_relu: (lambda: lambda x: F.leaky_relu(x, 0.2), IMAGE),
    F.elu: (lambda: lambda x: F.elu(x, alpha=1.5), IMAGE),
    "relu_": (lambda: lambda x: x.clone().relu_(), IMAGE),
    torch.relu_: (lambda: lambda x: torch.relu_(x.clone()), IMAGE),
    torch.sum: (lambda: lambda x: torch.sum(x, dim=1), IMAGE),
    "sum": (lambda: lambda x: x.sum(dim=(2, 3)), IMAGE),
    torch.chunk: (lambda: lambda x: torch.cat(torch.chunk(x, 2, 3)[::-1], 1), IMAGE),
    torch.split: (lambda: lambda x: torch.cat(torch.split(x, 4, 3)[::-1], 3), IMAGE),
    torch.unbind: (lambda: lambda x: torch.stack(torch.unbind(x, 1)[::-1], 1), IMAGE),
    torch.tensor_split: (lambda: lambda x: torch.cat(torch.tensor_split(x, 3, 2), 3), IMAGE),
    "chunk": (lambda: lambda x: torch.cat(x.chunk(3, 2)[::-1], 2), IMAGE),
    "split": (lambda: lambda x: torch.cat(x.split(1, 1)[::-1], 1), IMAGE),
    "unbind": (lambda: lambda x: torch.stack(x.unbind(2), 3), IMAGE),
    "tensor_split": (lambda: lambda x: torch.cat(x.tensor_split(2, 3)[::-1], 3), IMAGE),
    "tanh_": (lambda: lambda x: x.clone().tanh_(), IMAGE),
    "sigmoid_": (lambda: lambda x: x.clone().sigmoid_(), IMAGE),
    nn.Unflatten: (lambda: nn.Unflatten(1, (2, 1)), IMAGE),
    torch.flatten: (lambda: lambda x: torch.flatten(x, 1), IMAGE),
    torch.reshape: (lambda: lambda x: torch.reshape(x, (-1, 2, 36)), IMAGE),
    torch.unsqueeze: (lambda: lambda x: torch.unsqueeze(x, 1), IMAGE),
    torch.transpose: (lambda: lambda x: torch.transpose(x, 2, 3), IMAGE),
    torch.permute: (lambda: lambda x: torch.permute(x, (0, 2, 3, 1)), IMAGE),
    torch.t: (lambda: lambda x: torch.t(x.flatten(1)), IMAGE),
    "flatten": (lambda: lambda x: x.flatten(1), IMAGE),
    "view": (lambda: lambda x: x.view(-1, 72), IMAGE),
    "reshape": (lambda: lambda x: x.reshape(-1, 12, 6), IMAGE),
    "permute": (lambda: lambda x: x.permute(0, 2, 3, 1), IMAGE),
    "transpose": (lambda: lambda x: x.transpose(1, 2), IMAGE),
    "unsqueeze": (lambda: lambda x: x.unsqueeze(1), IMAGE),
    "t": (lambda: lambda x: x.flatten(1).t(), IMAGE),
    "to": (lambda: lambda x: x.to(torch.float64), IMAGE),
    nn.Dropout1d: (lambda: nn.Dropout1d(), SIGNAL),
    nn.Dropout3d: (lambda: nn.Dropout3d(), VOLUME),
    F.dropout1d: (lambda: lambda x: F.dropout1d(x, training=False), SIGNAL),
    F.dropout3d: (lambda: lambda x: F.dropout3d(x, training=False), VOLUME),
}
try:
    from torchvision.ops import StochasticDepth, stochastic_depth

    CALLS[StochasticDepth] = (lambda: StochasticDepth(0.3, "row"), IMAGE)
    CALLS[stochastic_depth] = (lambda: lambda x: stochastic_depth(x, 0.3, "row", False), IMAGE)
except ImportError:  # torchvision is optional
    pass
for _f in (F.dropout, F.dropout2d, F.alpha_dropout, F.feature_alpha_dropout):
    CALLS[_f] = (lambda f=_f: lambda x: f(x, 0.5, training=False), IMAGE)


def _spelling_id(spelling) -> str:
    return spelling if isinstance(spelling, str) else getattr(spelling, "__name__", str(spelling))


SPELLINGS = [
    pytest.param(rule, spelling, id=f"{rule.name}-{_spelling_id(spelling)}")
    for rule in RULES
    for spelling in (*rule.modules, *rule.functions, *rule.methods)
]


class Apply(nn.Module):
    """A model that applies one spelling: a submodule, a function or a Tensor method."""

    def __init__(self, spelling) -> None:
        super().__init__()
        make, self.shape = CALLS.get(spelling, (None, IMAGE))
        if make is not None:
            self.call = make()
        elif isinstance(spelling, type):
            self.call = spelling()
        elif isinstance(spelling, str):
            self.call = lambda x: getattr(x, spelling)()
        else:
            self.call = spelling

    def forward(self, x):
        return self.call(x)


def _pair_ratios(model: nn.Module, shape, pairs: int = 8) -> float:
    """Largest ‖f(x) − f(y)‖ / ‖x − y‖ over random and close pairs of single inputs."""
    ratios = []
    with torch.no_grad():
        for _ in range(pairs):
            x = torch.randn(shape, dtype=torch.float64)
            for y in (torch.randn_like(x), x + 1e-4 * torch.randn_like(x)):
                ratios.append(((model(x) - model(y)).norm() / (x - y).norm()).item())
    return max(ratios)


def _measured(rule, model: nn.Module, shape) -> float:
    """The constant measured without the table: a derivative, a matrix norm, a spike."""
    with torch.no_grad():
        if rule.kind == ACTIVATION:  # the largest slope on a fine grid
            t = torch.linspace(-10, 10, 400_001, dtype=torch.float64)
            slopes = model(t.view(1, 1, 1, -1)).flatten().diff() / t.diff()
            return slopes.abs().max().item()
        if rule.kind in ("max_pool", "adaptive_max_pool"):  # a spike seen by most windows
            zero = torch.zeros(shape, dtype=torch.float64)
            spikes = torch.eye(zero.numel(), dtype=torch.float64).view(-1, *shape[1:])
            return (model(spikes) - model(zero)).flatten(1).norm(dim=1).max().item()
        # a linear or affine map: the largest singular value of its matrix
        zero = model(torch.zeros(shape, dtype=torch.float64))
        matrix = full_matrix(lambda v: model(v) - zero, shape[1:])
        return torch.linalg.matrix_norm(matrix, 2).item()


def test_every_spelling_is_in_one_rule_only():
    """No module class, function or method name has two rules (a constant is written once)."""
    spellings = [s for rule in RULES for s in (*rule.modules, *rule.functions, *rule.methods)]
    repeated = {_spelling_id(s) for s in spellings if spellings.count(s) > 1}
    assert not repeated, f"spellings in several rules: {repeated}"
    unused = set(CALLS) - set(spellings)
    assert not unused, f"CALLS names spellings that RULES no longer has: {unused}"


@pytest.mark.parametrize("rule, spelling", SPELLINGS)
def test_every_rule_gives_the_measured_constant(rule, spelling):
    """Each spelling of each rule: the bound equals the constant measured without the table
    (slope, matrix norm or spike), and no pair of inputs exceeds it."""
    model = Apply(spelling).double().eval()
    shape = model.shape
    x = torch.rand(shape, dtype=torch.float64)
    report = lipschitz_analysis(model, x, n_iter=200, tol=0, certified=False, lower=False)
    assert report.bound is not None, f"{rule.name}: {report.note}"
    measured = _measured(rule, model, shape)
    certified = lipschitz_bound(model, x)
    assert measured <= certified * (1 + 1e-9), f"{rule.name}: certified {certified} < {measured}"
    assert certified <= 1.15 * measured, f"{rule.name}: certified {certified} ≫ {measured}"
    rel = 2e-3 if rule.kind == ACTIVATION else 1e-6  # activations' constants are rounded up
    assert measured <= report.bound * (1 + 1e-9), f"{rule.name}: {measured} > {report.bound}"
    assert report.bound == pytest.approx(measured, rel=rel), f"{rule.name}: {report.bound}"
    slack = 1e-3 if spelling == "float" else 1e-9  # rounding to float32 moves close pairs
    assert _pair_ratios(model, shape) <= report.bound * (1 + slack), f"{rule.name}: a pair"
    if isinstance(spelling, type):  # the module is a layer of the report and of the list
        x = torch.rand(shape, dtype=torch.float64)
        (layer,) = layer_operator_norms(model, x, n_iter=200, tol=0, certified=False)
        assert layer.kind == spelling.__name__ and layer.norm == report.bound, layer


@pytest.mark.parametrize(
    "layer", [nn.ELU(alpha=-2.0), Apply(lambda x: F.elu(x, -2.0))], ids=["ELU", "F.elu"]
)
def test_a_negative_parameter_counts_by_its_magnitude(layer):
    """ELU with α = −2 has slope −2e^x below 0: its constant is |α| = 2, both spellings."""
    model = nn.Sequential(layer).double()
    bound = lipschitz_bound(model, torch.rand(IMAGE, dtype=torch.float64))
    assert bound == 2.0, bound
    assert _measured(RULES[[r.name for r in RULES].index("elu")], model, IMAGE) <= bound
