"""Tests for the graph interpreter: residual, dense and functional models, torchvision."""

import math

import pytest
import torch
import torch.nn.functional as F
from _reference import empirical_ratio, exact_conv_norm, hooks_left
from torch import nn

from captum_rig.stability import lipschitz_analysis, lipschitz_bound


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


def test_relu_residual_bound_is_norm_plus_one():
    """y = relu(conv(x)) + x: the bound is the conv's exact norm + 1."""
    model = ReluResidual().double().eval()
    report = lipschitz_analysis(
        model, torch.rand(1, 2, 6, 6, dtype=torch.float64), certified=False, tol=0
    )
    expected = exact_conv_norm(model.conv, (2, 6, 6)) + 1
    assert report.bound == pytest.approx(expected, rel=1e-9), report
    assert report.note == "composed along the model's graph", report.note


def test_in_place_residual_block_bound():
    """In-place ``out += x`` then a head: (‖bn‖·‖conv‖ + 1)·‖fc‖, checked numerically."""
    model = Residual().double().eval()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    bound = lipschitz_bound(model, x, certified=False, tol=0)
    bn = model.bn
    bn_norm = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).abs().max().item()
    fc = torch.linalg.matrix_norm(model.head[1].weight.detach(), 2).item()
    expected = (bn_norm * exact_conv_norm(model.conv, (3, 8, 8)) + 1) * fc
    assert bound == pytest.approx(expected, rel=1e-9), f"{bound} vs {expected}"
    assert empirical_ratio(model, torch.rand(32, 3, 8, 8, dtype=torch.float64)) <= bound


def test_concat_rule():
    """Concatenation: √(‖a‖² + ‖b‖²), with exact conv norms from full matrices."""
    model = Concat().double()
    bound = lipschitz_bound(
        model, torch.rand(1, 2, 5, 5, dtype=torch.float64), certified=False, tol=0
    )
    a = exact_conv_norm(model.a, (2, 5, 5))
    b = torch.linalg.matrix_norm(model.b.weight.detach().view(1, 2), 2).item()
    assert bound == pytest.approx(math.hypot(a, b), rel=1e-9), f"{bound} vs {math.hypot(a, b)}"


def test_functional_relu_and_constant_factor():
    """F.relu is 1-Lipschitz and ``* 3`` scales by 3: 3‖A‖‖B‖."""
    model = Functional()
    bound = lipschitz_bound(model, torch.rand(1, 4))
    layers = (model.a, model.b)
    norms = [torch.linalg.matrix_norm(m.weight.detach().double(), 2).item() for m in layers]
    exact = 3 * norms[0] * norms[1]  # each certified norm at most 10⁻⁶ above its own
    assert exact <= bound <= exact * (1 + 1e-6) ** 2, (bound, exact)


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
