"""Tests for captum_rig.stability: norms, Lipschitz bounds, distortion, spectra, tables."""

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _reference import LinearTwoClass
from torch import nn

from captum_rig.robustness import pgd_attack
from captum_rig.stability import (
    StabilityReport,
    compare_stability,
    conv2d_norm_bound,
    conv2d_operator_norm,
    feature_map_spectra,
    gaussian_minimal_distortion,
    layer_operator_norms,
    lipschitz_analysis,
    lipschitz_bound,
    minimal_distortion,
    stability_analysis,
    weight_spectra,
)


class Normalize(nn.Module):
    """``(x - mean) / std`` with buffers, like captum_rig.models.Normalize."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

    def forward(self, x):
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def chain_model(dtype=torch.float64) -> nn.Sequential:
    """A plain chain with every supported layer type, on (N, 3, 8, 8) images."""
    model = nn.Sequential(
        Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3]),
        nn.Conv2d(3, 4, 3, stride=1, padding=1),
        nn.BatchNorm2d(4),
        nn.LeakyReLU(0.1),
        nn.MaxPool2d(3, stride=1, padding=1),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1),
        nn.ReLU(inplace=True),
        nn.AvgPool2d(3, stride=1, padding=1),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 10),
        nn.Tanh(),
        nn.Linear(10, 5),
    ).to(dtype)
    with torch.no_grad():
        model[2].running_mean.uniform_(-0.5, 0.5)
        model[2].running_var.uniform_(0.1, 3.0)
        model[2].weight.uniform_(-2, 2)
    return model


def full_matrix(forward, shape) -> torch.Tensor:
    """The matrix of a linear map, by pushing an identity basis through it."""
    n = math.prod(shape)
    basis = torch.eye(n, dtype=torch.float64).view(n, *shape)
    return forward(basis).reshape(n, -1).T


def linear_two_class(w: torch.Tensor, b: float) -> nn.Module:
    """Logits ``[0, w·x + b]``: predicts class 1 where ``w·x + b > 0``."""
    return LinearTwoClass(w.double(), b)


def hooks_left(model: nn.Module) -> list:
    """Names of submodules that still carry forward (pre-)hooks."""
    return [name for name, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]


# --------------------------------------------------------------------------- operator norms


CONVS = {
    "plain": dict(in_channels=2, out_channels=3, kernel_size=3),
    "stride2-pad1": dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1),
    "stride3-k2": dict(in_channels=1, out_channels=2, kernel_size=2, stride=3),
    "dilation2-pad2": dict(in_channels=2, out_channels=2, kernel_size=3, padding=2, dilation=2),
    "groups2": dict(in_channels=4, out_channels=2, kernel_size=3, padding=1, groups=2),
    "rect": dict(in_channels=2, out_channels=3, kernel_size=(1, 3), stride=(2, 1)),
    "circular": dict(
        in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="circular"
    ),
    "reflect-stride2": dict(
        in_channels=2,
        out_channels=2,
        kernel_size=3,
        stride=2,
        padding=1,
        padding_mode="reflect",
    ),  # fmt: skip
    "same": dict(in_channels=2, out_channels=3, kernel_size=4, padding="same"),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("size", [(6, 6), (7, 5)], ids=["6x6", "7x5"])
@pytest.mark.parametrize("name", list(CONVS))
def test_conv_norm_matches_full_matrix(name, size):
    """Power iteration equals the largest singular value of the conv's full matrix."""
    conv = nn.Conv2d(**CONVS[name])
    shape = (conv.in_channels,) + size
    weight = conv.weight.detach().double()
    matrix = full_matrix(lambda v: conv._conv_forward(v, weight, None), shape)
    exact = torch.linalg.matrix_norm(matrix, 2).item()
    estimate = conv2d_operator_norm(conv, size)
    assert estimate == pytest.approx(exact, rel=1e-9), f"{name}: {estimate} vs exact {exact}"
    assert estimate <= exact * (1 + 1e-9), "power iteration must approach from below"


def test_conv_norm_is_seeded_and_shape_forms_agree():
    """Same seed, same number; (H, W), (C, H, W) and (N, C, H, W) sizes agree."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    a = conv2d_operator_norm(conv, (8, 8), n_iter=20, seed=1)
    b = conv2d_operator_norm(conv, (3, 8, 8), n_iter=20, seed=1)
    c = conv2d_operator_norm(conv, (5, 3, 8, 8), n_iter=20, seed=1)
    assert a == b == c, f"input size forms disagree: {a}, {b}, {c}"


def test_linear_norm_is_exact():
    """nn.Linear's norm is its largest singular value."""
    model = nn.Sequential(nn.Linear(7, 5))
    (layer,) = layer_operator_norms(model, torch.rand(2, 7))
    exact = torch.linalg.svdvals(model[0].weight.detach().double())[0].item()
    assert layer.norm == pytest.approx(exact, rel=1e-12), "Linear norm is not exact"
    assert layer.kind == "Linear" and layer.input_shape == (2, 7), layer


def test_layer_norms_of_every_kind_match_full_matrices():
    """Conv, BatchNorm, avg-pool norms equal their full matrices' on the seen sizes."""
    model = chain_model().eval()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    layers = {layer.name: layer for layer in layer_operator_norms(model, x)}
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


# --------------------------------------------------------------------------- Lipschitz bound


def test_lipschitz_bound_above_empirical_ratios():
    """‖f(x) − f(y)‖ / ‖x − y‖ never exceeds the bound, on random and close pairs."""
    model = chain_model()
    x = torch.rand(64, 3, 8, 8, dtype=torch.float64)
    bound = lipschitz_bound(model, x[:1])
    assert bound is not None and bound > 0, f"no bound for a plain chain: {bound}"
    y = torch.rand_like(x)
    close = x + 1e-4 * torch.randn_like(x)
    model.eval()
    with torch.no_grad():
        for other in (y, close):
            ratio = (model(x) - model(other)).norm(dim=1) / (x - other).flatten(1).norm(dim=1)
            assert ratio.max().item() <= bound, f"ratio {ratio.max().item()} > bound {bound}"
    # a gradient-ascended pair gets closer to the bound but still stays below it
    delta = (1e-3 * torch.randn_like(x[:8])).requires_grad_(True)
    optimizer = torch.optim.Adam([delta], lr=1e-3)
    for _ in range(30):
        ratio = (model(x[:8] + delta) - model(x[:8])).norm(dim=1) / delta.flatten(1).norm(dim=1)
        optimizer.zero_grad()
        (-ratio.sum()).backward()
        optimizer.step()
    assert ratio.max().item() <= bound, f"ascended ratio {ratio.max().item()} > bound {bound}"


def test_lipschitz_bound_of_linear_chain():
    """For Linear–Linear, the bound is ‖W2‖‖W1‖ ≥ ‖W2 W1‖ (the true constant)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Linear(6, 3)).double()
    bound = lipschitz_bound(model, torch.rand(1, 3, 2, 2, dtype=torch.float64))
    w1, w2 = model[1].weight.detach(), model[2].weight.detach()
    product = (torch.linalg.matrix_norm(w1, 2) * torch.linalg.matrix_norm(w2, 2)).item()
    assert bound == pytest.approx(product), "bound is not the product of the norms"
    assert bound >= torch.linalg.matrix_norm(w2 @ w1, 2).item(), "bound below the truth"


class Residual(nn.Module):
    """y = relu(bn(conv(x)) + x), the addition in place as torchvision's BasicBlock."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

    def forward(self, x):
        out = self.bn(self.conv(x))
        out += x
        return self.head(self.relu(out))


class ReluResidual(nn.Module):
    """y = relu(conv(x)) + x: its bound is ‖conv‖ + 1."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)

    def forward(self, x):
        return F.relu(self.conv(x)) + x


class Functional(nn.Module):
    """A functional F.relu and a constant factor between two layers."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        return self.b(F.relu(self.a(x)) * 3)


class Concat(nn.Module):
    """y = cat([conv_a(x), conv_b(x)]): its bound is √(‖a‖² + ‖b‖²)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(2, 1, 1)

    def forward(self, x):
        return torch.flatten(torch.cat([self.a(x), self.b(x)], dim=1), 1)


class Product(nn.Module):
    """y = a(x) · b(x): a product of two moving tensors has no global constant."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x):
        return self.a(x) * self.b(x)


def exact_conv_norm(conv: nn.Conv2d, shape) -> float:
    """The conv's largest singular value from its full matrix on ``shape`` inputs."""
    w = conv.weight.detach().double()
    return torch.linalg.matrix_norm(
        full_matrix(lambda v: conv._conv_forward(v, w, None), shape), 2
    ).item()


def empirical_ratio(model: nn.Module, x: torch.Tensor) -> float:
    """Largest ‖f(x) − f(y)‖ / ‖x − y‖ over random and close pairs around ``x``."""
    model.eval()
    y = torch.rand_like(x)
    close = x + 1e-3 * torch.randn_like(x)
    with torch.no_grad():
        ratios = [
            ((model(x) - model(o)).flatten(1).norm(dim=1) / (x - o).flatten(1).norm(dim=1)).max()
            for o in (y, close)
        ]
    return max(r.item() for r in ratios)


def test_relu_residual_bound_is_norm_plus_one():
    """y = relu(conv(x)) + x: the bound is the conv's exact norm + 1."""
    model = ReluResidual().double()
    report = lipschitz_analysis(model, torch.rand(1, 2, 6, 6, dtype=torch.float64))
    expected = exact_conv_norm(model.conv, (2, 6, 6)) + 1
    assert report.bound == pytest.approx(expected, rel=1e-9), report
    assert report.note == "composed along the model's graph", report.note


def test_in_place_residual_block_bound():
    """In-place ``out += x`` then a head: (‖bn‖·‖conv‖ + 1)·‖fc‖, checked numerically."""
    model = Residual().double().eval()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    bound = lipschitz_bound(model, x)
    bn = model.bn
    bn_norm = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).abs().max().item()
    fc = torch.linalg.matrix_norm(model.head[1].weight.detach(), 2).item()
    expected = (bn_norm * exact_conv_norm(model.conv, (3, 8, 8)) + 1) * fc
    assert bound == pytest.approx(expected, rel=1e-9), f"{bound} vs {expected}"
    assert empirical_ratio(model, torch.rand(32, 3, 8, 8, dtype=torch.float64)) <= bound


def test_concat_rule():
    """Concatenation: √(‖a‖² + ‖b‖²), with exact conv norms from full matrices."""
    model = Concat().double()
    bound = lipschitz_bound(model, torch.rand(1, 2, 5, 5, dtype=torch.float64))
    a = exact_conv_norm(model.a, (2, 5, 5))
    b = torch.linalg.matrix_norm(model.b.weight.detach().view(1, 2), 2).item()
    assert bound == pytest.approx(math.hypot(a, b), rel=1e-9), f"{bound} vs {math.hypot(a, b)}"


def test_functional_relu_and_constant_factor():
    """F.relu is 1-Lipschitz and ``* 3`` scales by 3: 3‖A‖‖B‖."""
    model = Functional()
    bound = lipschitz_bound(model, torch.rand(1, 4))
    layers = (model.a, model.b)
    norms = [torch.linalg.matrix_norm(m.weight.detach().double(), 2).item() for m in layers]
    assert bound == pytest.approx(3 * norms[0] * norms[1], rel=1e-9), bound


@pytest.mark.parametrize(
    "model, names",
    [
        (Product(), ["mul", "'mul'"]),
        (nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)), ["'1'", "LayerNorm"]),
    ],
    ids=["product", "unknown-layer"],
)
def test_unknown_op_gives_none_with_a_note(model, names):
    """An op with no known constant: None, and the note names it."""
    report = lipschitz_analysis(model, torch.rand(1, 4))
    assert report.bound is None, report.bound
    for name in names:
        assert name in report.note, f"{name!r} not in {report.note!r}"
    assert lipschitz_bound(model, torch.rand(1, 4)) is None, "lipschitz_bound disagrees"


def test_untraceable_model_gives_none_with_a_note():
    """Data-dependent control flow cannot be traced: None, the note says so."""

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 2)

        def forward(self, x):
            return self.a(x) if x.sum() > 0 else -self.a(x)

    report = lipschitz_analysis(Branchy(), torch.rand(1, 4))
    assert report.bound is None and "could not trace" in report.note, report.note


def tiny_densenet():
    """A two-block DenseNet small enough for CPU tests."""
    torchvision = pytest.importorskip("torchvision")
    return torchvision.models.DenseNet(
        growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=3
    )


def small_vgg(torchvision):
    """VGG-11 with a narrow classifier (its 25088×4096 layer is slow on a CPU)."""
    model = torchvision.models.vgg11(weights=None, num_classes=4)
    model.classifier[0] = nn.Linear(512 * 7 * 7, 32)
    model.classifier[3] = nn.Linear(32, 32)
    model.classifier[6] = nn.Linear(32, 4)
    return model


ARCHS = {
    "resnet18": lambda tv: tv.models.resnet18(weights=None, num_classes=4),
    "vgg11": lambda tv: small_vgg(tv),
    "densenet": lambda tv: tiny_densenet(),
    "mobilenet_v2": lambda tv: tv.models.mobilenet_v2(weights=None, num_classes=4),
}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_torchvision_architectures_get_a_bound(arch):
    """ResNet, VGG, DenseNet and MobileNetV2 get a bound above measured ratios; no hooks."""
    torchvision = pytest.importorskip("torchvision")
    model = ARCHS[arch](torchvision)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2, 3, 32, 32)
    report = lipschitz_analysis(model, x[:1], n_iter=10)
    assert report.bound is not None, report.note
    assert empirical_ratio(model, x) <= report.bound, "a measured ratio exceeds the bound"
    assert hooks_left(model) == [], "hooks left"
    kinds = {
        "resnet18": "BasicBlock",
        "densenet": "_DenseBlock",
        "mobilenet_v2": "InvertedResidual",
    }
    if arch in kinds:
        assert report.blocks and {b.kind for b in report.blocks} == {kinds[arch]}, report.blocks
        assert all(b.norm is not None and b.norm > 0 for b in report.blocks), report.blocks
    else:
        assert report.blocks == [], "VGG has no residual block"


def test_resnet_bound_is_the_product_of_its_stages():
    """A ResNet's graph bound equals stem norms × block bounds × pool × fc."""
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None, num_classes=4)
    report = lipschitz_analysis(model, torch.rand(1, 3, 32, 32), n_iter=5)
    assert len(report.blocks) == 8 and report.blocks[0].name == "layer1.0", report.blocks
    norms = {layer.name: layer.norm for layer in report.layers}
    product = math.prod(norms[n] for n in ("conv1", "bn1", "relu", "maxpool", "avgpool", "fc"))
    product *= math.prod(block.norm for block in report.blocks)
    assert report.bound == pytest.approx(product, rel=1e-9), f"{report.bound} vs {product}"
    assert sum(layer.kind == "Conv2d" for layer in report.layers) == 20, "conv calls missing"


# --------------------------------------------------------------------------- certified


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("size", [(6, 6), (7, 5), (12, 12)], ids=["6x6", "7x5", "12x12"])
@pytest.mark.parametrize("name", list(CONVS))
def test_gram_bound_is_above_the_exact_norm(name, size):
    """Gram iteration never falls below the full matrix's norm, and stays close to it."""
    conv = nn.Conv2d(**CONVS[name])
    exact = exact_conv_norm(conv, (conv.in_channels,) + size)
    bound = conv2d_norm_bound(conv, size)
    assert bound >= exact * (1 - 1e-12), f"{name}: bound {bound} < exact {exact}"
    assert bound <= 2.0 * exact, f"{name}: bound {bound} far above exact {exact}"


@pytest.mark.parametrize("stride", [1, 2])
def test_gram_bound_is_exact_for_circular_convolutions(stride):
    """Circular padding is a circular convolution: the bound equals the exact norm."""
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=stride, padding_mode="circular")
    exact = exact_conv_norm(conv, (3, 8, 8))
    assert conv2d_norm_bound(conv, (8, 8), n_iter=12) == pytest.approx(exact, rel=1e-3)


def test_gram_iteration_on_matrices():
    """On plain matrices: above the largest singular value, within rank^(1/2^(t+1))."""
    from captum_rig.stability import _gram_bound

    matrices = torch.randn(5, 7, 4, dtype=torch.float64) * torch.logspace(-3, 3, 5).view(5, 1, 1)
    exact = torch.linalg.matrix_norm(matrices, 2)
    for t in (1, 3, 8):
        bound = _gram_bound(matrices, t)
        assert bool((bound >= exact * (1 - 1e-12)).all()), f"t={t}: {bound} < {exact}"
        assert bool((bound <= exact * 4 ** (1 / 2 ** (t + 1)) * (1 + 1e-12)).all()), t


def test_certified_model_bound_is_above_power_iteration():
    """Certified bound ≥ the power-iteration one and ≥ measured ratios, and says so."""
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=4)
    x = torch.rand(2, 3, 16, 16)
    power = lipschitz_analysis(model, x[:1], n_iter=10, blocks=False)
    certified = lipschitz_analysis(model, x[:1], certified=True, gram_iter=6, blocks=False)
    assert certified.bound >= power.bound * (1 - 1e-6), (certified.bound, power.bound)
    assert "certified" in certified.method and "power iteration" in power.method
    assert empirical_ratio(model, x) <= certified.bound, "a measured ratio above the bound"


def test_no_hooks_left_even_on_error():
    """Hooks are removed after the analysis and after a forward pass that raises."""
    model = chain_model()
    stability_analysis(model, torch.rand(2, 3, 8, 8, dtype=torch.float64), n_bisect=2)
    assert hooks_left(model) == [], "hooks left after stability_analysis"

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 4)

        def forward(self, x):
            self.layer(x)
            raise RuntimeError("forward failed")

    broken = Broken()
    with pytest.raises(RuntimeError, match="forward failed"):
        layer_operator_norms(broken, torch.rand(1, 4))
    assert hooks_left(broken) == [], "hooks left after a failing forward"


def test_model_state_restored():
    """Training flags, parameters and the global RNG are left as they were."""
    model = chain_model().train()
    model[2].eval()
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    images_copy = images.clone()
    rng = torch.get_rng_state()
    stability_analysis(model, images, n_bisect=2, steps=2)
    assert [m.training for m in model.modules()] == flags, "training flags changed"
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), f"model state {k} changed"
    assert torch.equal(images, images_copy), "images modified"
    assert torch.equal(torch.get_rng_state(), rng), "global RNG state changed"
    assert all(p.grad is None for p in model.parameters()), "parameter gradients left"


# --------------------------------------------------------------------------- distortion


def two_class_setup():
    """A 2-class linear model on 1×4×4 images and images near its boundary."""
    w = torch.linspace(-1.0, 1.5, 16, dtype=torch.float64)
    w[w.abs() < 0.1] = 0.3  # no zero weight
    x = torch.full((6, 1, 4, 4), 0.5, dtype=torch.float64)
    x += 0.02 * torch.randn(6, 1, 4, 4, dtype=torch.float64)
    z_target = torch.tensor([-0.02, 0.03, -0.005, 0.01, 0.04, -0.03], dtype=torch.float64)
    b = 0.0
    # shift each image along w so that its logit w·x + b is z_target
    z = x.flatten(1) @ w + b
    x += ((z_target - z) / (w @ w)).view(-1, 1, 1, 1) * w.view(1, 1, 4, 4)
    return linear_two_class(w, b), x, w, z_target


@pytest.mark.parametrize("norm", ["L2", "Linf"])
def test_pgd_minimal_distortion_matches_closed_form(norm):
    """Linear 2-class model: distance |w·x+b|/‖w‖₂ (L2), /‖w‖₁ (L∞), within tolerance."""
    model, x, w, z = two_class_setup()
    dual = w.norm() if norm == "L2" else w.abs().sum()
    exact = z.abs() / dual
    result = minimal_distortion(model, x, norm=norm, max_eps=0.1, n_bisect=14)
    tol = result.tolerance
    assert tol == pytest.approx(0.1 / 2**14), "tolerance is max_eps / 2**n_bisect"
    assert bool(result.found.all()), "every image is within max_eps of the boundary"
    assert bool((result.values >= exact - 1e-9).all()), (
        f"found a flip closer than the hyperplane: {result.values} < {exact}"
    )
    assert bool((result.values <= exact + tol + 1e-9).all()), f"{result.values} vs {exact}"
    assert bool((result.budgets - tol <= exact + 1e-12).all()), "bracket misses the truth"
    assert result.mean == pytest.approx(exact.mean().item(), abs=tol), "mean distortion"


def test_pgd_minimal_distortion_bracket_on_a_convnet():
    """At the returned radius PGD flips the prediction; ``tolerance`` below it does not."""
    model = chain_model(torch.float32).eval()
    x = torch.rand(5, 3, 8, 8)
    result = minimal_distortion(model, x, norm="Linf", steps=5, n_bisect=8, batch_size=2)
    y0 = model(x).argmax(1)
    found = result.found
    assert found.any(), "PGD with ε up to 1 should flip a random convnet"
    adv = pgd_attack(
        model,
        x[found],
        y0[found],
        eps=result.budgets[found].float(),
        steps=5,
        random_start=False,
    )
    with torch.no_grad():
        assert bool((model(adv).argmax(1) != y0[found]).all()), "no flip at the budget"
    assert bool((result.values[found] <= result.budgets[found] + 1e-6).all()), (
        "‖δ‖∞ exceeds the radius"
    )
    below = (result.budgets[found] - result.tolerance).clamp_min(0).float()
    adv = pgd_attack(model, x[found], y0[found], eps=below, steps=5, random_start=False)
    with torch.no_grad():
        assert bool((model(adv).argmax(1) == y0[found]).all()), "flips below the bracket"


def test_gaussian_minimal_distortion_matches_closed_form():
    """Linear model: σ* = −z/(w·n) along the seeded noise n, found within tolerance."""
    model, x, w, z = two_class_setup()
    seed, max_sigma = 3, 0.05
    result = gaussian_minimal_distortion(
        model, x, n_bisect=14, max_sigma=max_sigma, seed=seed, batch_size=4
    )
    generator = torch.Generator().manual_seed(seed)
    noise = torch.cat(
        [torch.randn(x[i : i + 4].shape, generator=generator, dtype=x.dtype) for i in (0, 4)]
    )
    assert (max_sigma * noise.abs().max() + (x - 0.5).abs().max()) < 0.5, "clamping active"
    sigma_star = -z / (noise.flatten(1) @ w)
    crosses = (sigma_star > 0) & (sigma_star < max_sigma)
    assert crosses.any() and (~crosses).any(), "the test wants both outcomes"
    assert torch.equal(result.found, crosses), f"found {result.found} vs {crosses}"
    tol = result.tolerance
    budget = result.budgets[crosses]
    assert bool((budget >= sigma_star[crosses]).all()), "flip below σ*"
    assert bool((budget <= sigma_star[crosses] + tol + 1e-12).all()), "σ* outside the bracket"
    expected_l2 = budget * noise[crosses].flatten(1).norm(dim=1)
    assert torch.allclose(result.values[crosses], expected_l2), "values are not σ‖n‖₂"
    assert bool(torch.isinf(result.values[~crosses]).all()), "no flip must give inf"
    assert result.mean == pytest.approx(result.values[crosses].mean().item()), "mean"


def test_gaussian_bracket_and_seed_on_a_convnet():
    """Flip at the returned σ, none ``tolerance`` below; the seed fixes the result."""
    model = chain_model(torch.float32).eval()
    x = torch.rand(6, 3, 8, 8)
    result = gaussian_minimal_distortion(model, x, n_bisect=8, max_sigma=2.0, seed=5)
    again = gaussian_minimal_distortion(model, x, n_bisect=8, max_sigma=2.0, seed=5)
    assert torch.equal(result.budgets, again.budgets), "same seed, different result"
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    y0 = model(x).argmax(1)
    found = result.found
    assert found.any(), "σ up to 2 should flip some predictions"
    sigma = result.budgets[found].float().view(-1, 1, 1, 1)
    with torch.no_grad():
        at = model((x[found] + sigma * noise[found]).clamp(0, 1)).argmax(1)
        below = (sigma - result.tolerance).clamp_min(0)
        before = model((x[found] + below * noise[found]).clamp(0, 1)).argmax(1)
    assert bool((at != y0[found]).all()), "no flip at the returned σ"
    assert bool((before == y0[found]).all()), "a flip below the bracket"


# --------------------------------------------------------------------------- report


def test_stability_report(tmp_path):
    """stability_analysis returns layers, bound and three distortions; dict and markdown."""
    model = chain_model()
    images = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    report = stability_analysis(model, images, n_bisect=4, steps=3, n_iter=20)
    assert isinstance(report, StabilityReport), "wrong return type"
    assert sorted(report.distortions) == ["gaussian", "pgd_l2", "pgd_linf"], report.distortions
    assert report.lipschitz_bound is not None, report.lipschitz_note
    d = report.to_dict()
    json.dumps(d)  # JSON-ready (NaN allowed)
    assert len(d["layers"]) == len(model), "one layer entry per call"
    assert d["distortions"]["pgd_l2"]["n_images"] == 4, d["distortions"]
    md = report.to_markdown()
    assert "| 1 | Conv2d | 1×3×8×8 |" in md, md
    assert "Lipschitz upper bound (L2)" in md and "| pgd_linf | Linf |" in md, md
    for line in md.splitlines():
        if line.startswith("| 2 | BatchNorm2d"):
            assert line.replace("\\|", "").count("|") == 6, f"unescaped | in {line}"


# --------------------------------------------------------------------------- bad input


def test_bad_input():
    """Bad arguments raise TypeError/ValueError naming the argument."""
    model = chain_model(torch.float32)
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(TypeError, match="images must be a floating point"):
        stability_analysis(model, (x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"images must hold pixel values in \[0, 1\]"):
        minimal_distortion(model, x + 1)
    with pytest.raises(ValueError, match="images must not be empty"):
        gaussian_minimal_distortion(model, x[:0])
    with pytest.raises(ValueError, match="norm must be one of"):
        minimal_distortion(model, x, norm="L0")
    with pytest.raises(ValueError, match="norm must be one of"):
        stability_analysis(model, x, norms=("L2", "fro"))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        minimal_distortion(model, x, steps=0)
    with pytest.raises(ValueError, match="n_bisect must be >= 1"):
        minimal_distortion(model, x, n_bisect=0)
    with pytest.raises(ValueError, match="max_eps must be"):
        minimal_distortion(model, x, max_eps=-1.0)
    with pytest.raises(ValueError, match="max_sigma must be"):
        gaussian_minimal_distortion(model, x, max_sigma=0.0)
    with pytest.raises(ValueError, match="n_iter must be >= 1"):
        lipschitz_bound(model, x[:1], n_iter=0)
    with pytest.raises(ValueError, match="input_size must be"):
        conv2d_operator_norm(nn.Conv2d(3, 4, 3), (4, 8, 8))
    with pytest.raises(TypeError, match="conv must be a torch.nn.Conv2d"):
        conv2d_operator_norm(nn.Linear(3, 4), (8, 8))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        layer_operator_norms(lambda t: t, x)


def test_torchvision_normalize_and_unnamed_root():
    """torchvision's Normalize counts as max 1/std; a bare layer as model gets a name."""
    transforms = pytest.importorskip("torchvision.transforms")
    model = nn.Sequential(transforms.Normalize([0.5, 0.5], [0.25, 0.5]))
    (layer,) = layer_operator_norms(model, torch.rand(1, 2, 4, 4))
    assert layer.norm == pytest.approx(4.0), f"Normalize norm {layer.norm}"
    (root,) = layer_operator_norms(nn.Linear(3, 2), torch.rand(1, 3))
    assert root.name == "(model)" and root.norm is not None, root


def test_same_numbers_on_every_device(device):
    """Layer norms and the bound on the device equal the CPU ones; distortions run there."""
    model = chain_model(torch.float32)
    x = torch.rand(3, 3, 8, 8)
    cpu = stability_analysis(model, x, n_bisect=3, steps=2, n_iter=30)
    moved = chain_model(torch.float32)
    moved.load_state_dict(model.state_dict())
    on_device = stability_analysis(moved.to(device), x.to(device), n_bisect=3, steps=2, n_iter=30)
    for a, b in zip(cpu.layers, on_device.layers):
        if a.norm is not None:
            assert b.norm == pytest.approx(a.norm, rel=1e-6), f"{a.name}: {a.norm} vs {b.norm}"
    assert on_device.lipschitz_bound == pytest.approx(cpu.lipschitz_bound, rel=1e-6), "bound"
    for name, result in on_device.distortions.items():
        assert result.values.shape == (3,) and result.values.device.type == "cpu", name


# --------------------------------------------------------------------------- spectra


def test_weight_spectra_match_numpy():
    """Singular values of conv weights reshaped (out, in·kh·kw) and of linear weights."""
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Conv2d(5, 4, 2, groups=1), nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    )  # fmt: skip
    spectra = weight_spectra(model)
    assert list(spectra) == ["0", "2", "4"], list(spectra)
    for name, values in spectra.items():
        w = dict(model.named_modules())[name].weight.detach().numpy()
        expected = np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)
        np.testing.assert_allclose(values.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_feature_map_spectra_match_numpy_on_hooked_activations():
    """Mean over images and channels of numpy SVDs of each layer's output maps."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2), nn.ReLU()
    ).double()
    images = torch.rand(5, 3, 9, 8, dtype=torch.float64)
    spectra = feature_map_spectra(model, images, batch_size=2)
    assert list(spectra) == ["0", "2"], list(spectra)
    with torch.no_grad():
        outputs = {"0": model[0](images)}
        outputs["2"] = model[2](model[1](outputs["0"]))
    for name, maps in outputs.items():
        expected = np.linalg.svd(maps.numpy(), compute_uv=False).mean(axis=(0, 1))
        assert spectra[name].shape == (min(maps.shape[-2:]),), spectra[name].shape
        np.testing.assert_allclose(spectra[name].numpy(), expected, rtol=1e-6)
    relu = feature_map_spectra(model, images, layers=["1"])
    expected = np.linalg.svd(F.relu(outputs["0"]).numpy(), compute_uv=False).mean(axis=(0, 1))
    np.testing.assert_allclose(relu["1"].numpy(), expected, rtol=1e-6)
    assert hooks_left(model) == [], "hooks left"


def test_spectra_bad_input():
    """Unknown layer names, non-4-d outputs and images outside [0, 1] are refused."""
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 2))
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="layers must name modules.*'nope'"):
        feature_map_spectra(model, x, layers=["0", "nope"])
    with pytest.raises(ValueError, match="layers: the output of '2'"):
        feature_map_spectra(model, x, layers=["2"])
    with pytest.raises(ValueError, match=r"images must hold pixel values in \[0, 1\]"):
        feature_map_spectra(model, x * 2)
    with pytest.raises(ValueError, match="layers: the model has no Conv2d"):
        feature_map_spectra(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), x)
    assert hooks_left(model) == [], "hooks left after an error"


# --------------------------------------------------------------------------- comparison


def two_models():
    """Two small convnets with different weights."""
    torch.manual_seed(1)
    a = chain_model(torch.float32).eval()
    b = chain_model(torch.float32).eval()
    return {"scratch": a, "finetuned": b}


def test_compare_stability_rows_match_the_single_model_functions(tmp_path):
    """Each row equals minimal_distortion / gaussian / lipschitz_bound / accuracy."""
    models = two_models()
    images = torch.rand(6, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    kw = dict(n_bisect=4, steps=3, n_iter=10)
    table = compare_stability(models, images, labels, max_sigma=2.0, progress=False, **kw)
    assert [(r.model, r.attack) for r in table.rows] == [
        ("scratch", "pgd"), ("scratch", "gaussian"), ("finetuned", "pgd"),
        ("finetuned", "gaussian"),
    ], table.rows  # fmt: skip
    for row in table.rows:
        model = models[row.model]
        with torch.no_grad():
            accuracy = (model(images).argmax(1) == labels).float().mean().item()
        assert row.clean_accuracy == pytest.approx(accuracy), row
        assert row.lipschitz_bound == pytest.approx(
            lipschitz_bound(model, images[:1], n_iter=10), rel=1e-12
        ), row
        if row.attack == "pgd":
            ref = minimal_distortion(model, images, norm="L2", steps=3, n_bisect=4)
        else:
            ref = gaussian_minimal_distortion(model, images, n_bisect=4, max_sigma=2.0)
        assert row.average_distortion == pytest.approx(ref.mean, nan_ok=True), row
        assert row.average_distortion_255 == pytest.approx(255 * ref.mean, nan_ok=True), row
        assert (row.n_changed, row.n_images) == (ref.n_found, 6), row
    md = table.to_markdown()
    assert md.count("\n| scratch |") == 2 and "[0, 255]" in md and "power iteration" in md, md
    d = table.to_dict()
    json.dumps(d)
    assert d["rows"][0]["average_distortion_255"] == table.rows[0].average_distortion_255
    path = tmp_path / "table.csv"
    table.to_csv(path)
    with open(path) as f:
        read = list(csv.DictReader(f))
    assert [r["model"] for r in read] == [r.model for r in table.rows], read
    assert float(read[0]["average_distortion"]) == pytest.approx(
        table.rows[0].average_distortion, nan_ok=True
    ), read
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"], "temporary file left"


def test_compare_stability_bad_input():
    """Empty models, wrong label count, pixels outside [0, 1], unknown attack: ValueError."""
    models = two_models()
    x, y = torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="models must not be empty"):
        compare_stability({}, x, y)
    with pytest.raises(TypeError, match="models must be .*a mapping"):
        compare_stability([models["scratch"]], x, y)
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        compare_stability(models, x, y[:2])
    with pytest.raises(ValueError, match=r"images must hold pixel values in \[0, 1\]"):
        compare_stability(models, x - 0.5, y)
    with pytest.raises(ValueError, match="attacks must be one of"):
        compare_stability(models, x, y, attacks=("fgsm",))
    with pytest.raises(TypeError, match=r"models\['bad'\] must be a torch.nn.Module"):
        compare_stability({"bad": lambda t: t}, x, y)


def test_spectra_figures_are_drawn():
    """The layer-by-layer figures draw one line per model, and are not blank."""
    from captum_rig.viz import plot_layer_norms, plot_layer_spectra

    models = two_models()
    spectra = {name: weight_spectra(m) for name, m in models.items()}
    fig, axes = plot_layer_spectra(spectra, max_layers=3)
    assert axes.ndim == 2 and len(axes[0, 0].get_lines()) == 2, axes
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())
    assert pixels.std() > 1, "blank figure"
    fig, ax = plot_layer_norms(spectra)
    assert len(ax.get_lines()) == 2, ax.get_lines()
    with pytest.raises(ValueError, match="spectra"):
        plot_layer_spectra({})


# --------------------------------------------------------------------------- the example


@pytest.mark.slow
def test_scratch_vs_finetuned_example_on_a_generated_cifar10(tmp_path):
    """The example runs its CIFAR-10 path on a generated folder with a local init file."""
    import importlib.util
    from pathlib import Path

    torchvision = pytest.importorskip("torchvision")
    from captum_rig.synthetic import write_cifar10_folder

    root = write_cifar10_folder(tmp_path / "cifar", n_train=16, n_test=8)
    init = tmp_path / "init.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), init)
    path = Path(__file__).resolve().parent.parent / "examples" / "scratch_vs_finetuned.py"
    spec = importlib.util.spec_from_file_location("_scratch_vs_finetuned", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    code = module.main([
        "--data", "cifar10", "--cifar-root", str(root), "--arch", "resnet18",
        "--weights", str(init), "--epochs", "1", "--n-train", "16", "--n-test", "4",
        "--batch-size", "8", "--n-bisect", "2", "--steps", "2", "--n-iter", "2",
        "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert code in (0, None), code
    with open(out / "stability.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["attack"]) for r in rows] == [
        ("scratch", "pgd"), ("scratch", "gaussian"), ("finetuned", "pgd"),
        ("finetuned", "gaussian"),
    ], rows  # fmt: skip
    assert all(r["lipschitz_bound"] for r in rows), "a ResNet must get a bound"
