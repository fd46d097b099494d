"""Tests for captum_rig.models: Normalize, with_normalization, CIFAR models, demo models."""

import pytest
import torch
from torch import nn

from captum_rig.demo import SHAPES_TEST_SEED
from captum_rig.lowrank import low_rank
from captum_rig.metrics import accuracy
from captum_rig.models import (
    ASSETS,
    CIFAR10_MEAN,
    CIFAR10_STD,
    DEMO_INPUT_SIZE,
    DEMO_MODELS,
    MODEL_NAMES,
    SHAPES_MEAN,
    SHAPES_STD,
    Normalize,
    SmallCNN,
    build_demo_model,
    cifar_model,
    load_demo_model,
    with_normalization,
)
from captum_rig.synthetic import make_shapes


def test_normalize_matches_torchvision():
    """Normalize equals torchvision's Normalize, for (C, H, W) and (N, C, H, W)."""
    from torchvision import transforms as T

    x = torch.rand(2, 3, 5, 5)
    ours, theirs = Normalize(CIFAR10_MEAN, CIFAR10_STD), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6), "batch normalization differs"
    assert torch.allclose(ours(x[0]), theirs(x[0]), atol=1e-6), "single image differs"
    assert "mean" in dict(ours.named_buffers()), "mean should be a buffer"
    assert ours(x.double()).dtype == torch.float64, "dtype not kept"


def test_with_normalization():
    """with_normalization puts Normalize first, shares the model, leaves it unchanged."""
    model = nn.Conv2d(3, 2, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = with_normalization(model, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    x = torch.rand(2, 3, 4, 4)
    assert isinstance(net, nn.Sequential) and net[1] is model, "model not wrapped as is"
    assert torch.allclose(net(x), model((x - 0.5) / 0.2), atol=1e-6), "wrong output"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"model parameter {k} changed"


@pytest.mark.parametrize(
    "mean, std, error, match",
    [
        ((0.5, 0.5), (0.2, 0.2, 0.2), ValueError, "one value per channel"),
        ((0.5,), (0.0,), ValueError, "std must be positive"),
        ((0.5,), (float("nan"),), ValueError, "std contains NaN"),
        ("abc", (1.0,), TypeError, "mean must be a sequence of floats"),
    ],
)
def test_normalize_errors(mean, std, error, match):
    """Bad mean/std raise errors naming them."""
    with pytest.raises(error, match=match):
        Normalize(mean, std)


def test_normalize_wrong_channels():
    """Input with the wrong channel count raises naming x."""
    with pytest.raises(ValueError, match="x must have shape"):
        Normalize((0.5,) * 3, (0.2,) * 3)(torch.rand(2, 1, 4, 4))
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        with_normalization("model", (0.5,), (0.2,))


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_cifar_model_shapes(name):
    """CIFAR models map (N, 3, 32, 32) to (N, classes), normalization first."""
    model = cifar_model(name, num_classes=6).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 6), out.shape
    assert isinstance(model[0], Normalize), "Normalize should come first"


def test_cifar_model_errors():
    """Unknown names and bad class counts are rejected."""
    assert "resnet18" in MODEL_NAMES and "small_cnn" in MODEL_NAMES, MODEL_NAMES
    with pytest.raises(ValueError, match="name must be one of"):
        cifar_model("alexnet2")
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        SmallCNN(0)


# demo models ---------------------------------------------------------------------------


def test_build_demo_model_normalizes_first():
    """The demo CNN starts with Normalize(SHAPES_MEAN, SHAPES_STD): it takes [0, 1] pixels."""
    model = build_demo_model(4).eval()
    first = model[0]
    assert isinstance(first, Normalize), type(first)
    assert first.mean.flatten().tolist() == list(SHAPES_MEAN), first.mean
    assert first.std.flatten().tolist() == list(SHAPES_STD), first.std
    x = torch.rand(2, 3, DEMO_INPUT_SIZE, DEMO_INPUT_SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), model[1:](first(x))), "Normalize is the first step"
        assert model(x).shape == (2, 4)


def test_load_demo_model_reads_the_shipped_weights():
    """Each demo model holds its assets file's weights exactly, in eval mode."""
    for name, file in DEMO_MODELS.items():
        model = load_demo_model(name)
        state = torch.load(ASSETS / file, map_location="cpu", weights_only=True)
        assert not model.training, f"{name} not in eval mode"
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), f"{name}: {key} differs from {file}"


def test_demo_models_differ():
    """natural and lowrank8 are two different trained networks."""
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        a, b = load_demo_model("natural")(x), load_demo_model("lowrank8")(x)
    assert not torch.allclose(a, b), "the two demo models give the same logits"


def test_demo_model_errors():
    """Unknown demo names and bad class counts raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=r"name must be one of \['natural', 'lowrank8'\]"):
        load_demo_model("robust")
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        build_demo_model(0)


def test_demo_models_have_one_home():
    """The demo's model names live in models.py only: captum_rig.demo does not re-export them."""
    from captum_rig import demo

    for name in ("load_demo_model", "build_demo_model", "DEMO_MODELS", "ASSETS"):
        assert not hasattr(demo, name), f"captum_rig.demo re-exports {name}"


# The shipped demo models ---------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_test():
    """The held-out synthetic test split the demo models are scored on."""
    return make_shapes(300, seed=SHAPES_TEST_SEED)


def test_natural_model_well_above_chance(shapes_test):
    """The natural model classifies the synthetic test set far above chance (1/6)."""
    acc = accuracy(load_demo_model("natural"), shapes_test.images, shapes_test.labels)
    assert acc > 0.8, f"natural model accuracy {acc:.3f}"


def test_lowrank_model_well_above_chance_on_low_rank(shapes_test):
    """The rank-8 model classifies rank-8 test images far above chance."""
    model = load_demo_model("lowrank8")
    acc = accuracy(model, low_rank(shapes_test.images, 8), shapes_test.labels)
    assert acc > 0.8, f"low-rank model accuracy on rank-8 images {acc:.3f}"
