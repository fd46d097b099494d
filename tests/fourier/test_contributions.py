"""frequency_contributions: exact for linear models, complete, split by radius band."""

import numpy as np
import pytest
import torch
from _reference import TinyConvNet
from torch import nn

from captum_rig.fourier import frequency_contributions, low_pass, max_radius

from ._numpy_fourier import numpy_low_pass


def linear_model(shape=(3, 8, 8), classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), classes)).double()


class MeanOnly(nn.Module):
    """Logits from the channel means: only the zero frequency carries evidence."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2).double()

    def forward(self, x):
        return torch.tanh(self.linear(x.mean((-2, -1))))


def data(n=2, shape=(3, 8, 8), seed=4):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("bands", [None, [0, 2, 5, 6], [1.5, 3, 100]], ids=str)
def test_linear_model_is_exact_band_by_band(bands):
    """For F(x) = w·x + b: c_{n,c,j} = Σ_hw w_c · (low_pass(x, r_j) - low_pass(x, r_{j-1}))."""
    model = linear_model()
    x = data()
    got = frequency_contributions(model, x, target=1, bands=bands)
    edges = bands or list(range(7))
    weight = model[1].weight[1].reshape(3, 8, 8).detach().numpy()
    previous = np.zeros(x.shape)
    expected = np.zeros((2, 3, len(edges)))
    for j, r in enumerate(edges):
        low = numpy_low_pass(x.numpy(), r)
        expected[:, :, j] = ((low - previous) * weight).sum((-2, -1))
        previous = low
    assert got.shape == (2, 3, len(edges)) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-10)


def test_sums_to_the_output_difference():
    """Σ_{c,j} c = F(x) - F(0) for a CNN (quadrature), exactly for a linear model."""
    x = data(shape=(3, 8, 8))
    model = linear_model()
    delta = (model(x) - model(torch.zeros_like(x)))[:, 2]
    torch.testing.assert_close(frequency_contributions(model, x, 2, n_steps=7).sum((1, 2)), delta)
    net = TinyConvNet().double()
    target = torch.tensor([0, 1])
    delta = (net(x) - net(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    got = frequency_contributions(net, x, target, bands=[0, 2, 4, 6], n_steps=64).sum((1, 2))
    torch.testing.assert_close(got, delta, rtol=2e-3, atol=2e-3)


def test_mean_only_model_puts_everything_in_the_zero_band():
    """A model of the channel means gets all of F(x) - F(0) from the radius-0 band."""
    x, model = data(), MeanOnly()
    c = frequency_contributions(model, x, target=0)
    assert bool((c[:, :, 1:].abs() < 1e-12).all()), "no evidence above the zero frequency"
    delta = (model(x) - model(torch.zeros_like(x)))[:, 0]
    torch.testing.assert_close(c.sum((1, 2)), delta, atol=1e-6, rtol=0)


def test_coarse_bands_are_sums_of_fine_bands():
    """Merging bands adds their contributions (linear model: exactly)."""
    model = linear_model()
    x = data()
    fine = frequency_contributions(model, x, 0)
    coarse = frequency_contributions(model, x, 0, bands=[2, 6])
    torch.testing.assert_close(coarse[..., 0], fine[..., :3].sum(-1))
    torch.testing.assert_close(coarse[..., 1], fine[..., 3:].sum(-1))


def test_baselines_and_tuples():
    """With a baseline the path starts there (sum F(x) - F(b)); tuple in, tuple out."""
    model = linear_model()
    x, b = data(), torch.full((1, 3, 8, 8), 0.5, dtype=torch.float64)
    c = frequency_contributions(model, x, 0, baselines=b)
    torch.testing.assert_close(c.sum((1, 2)), (model(x) - model(b))[:, 0])
    weight = model[1].weight[0].reshape(3, 8, 8)
    torch.testing.assert_close(c[..., 0], (low_pass(x - b, 0) * weight).sum((-2, -1)))

    def two(a, z):
        return model(a) + model(z)

    out = frequency_contributions(two, (x, x.flip(-1)), target=0)
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 3, 7)] * 2


def test_internal_batch_size_does_not_change_the_result():
    """Chunks of the path points give the same sums."""
    net = TinyConvNet().double()
    x = data(n=3)
    a = frequency_contributions(net, x, 0, n_steps=21)
    b = frequency_contributions(net, x, 0, n_steps=21, internal_batch_size=3)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(bands=[0, 3, 2, 6]), ValueError, "bands must be strictly increasing"),
        (dict(bands=[0, 3, 3, 6]), ValueError, "bands must be strictly increasing"),
        (dict(bands=[0, 3, 5]), ValueError, "bands must end at or beyond the largest radius"),
        (dict(bands=[-1, 6]), ValueError, r"bands\[0\] must be >= 0"),
        (dict(bands=[]), ValueError, "bands must not be empty"),
        (dict(bands="0,6"), TypeError, "bands must be a sequence"),
        (dict(bands=[0, 6], n_steps=1), ValueError, "n_steps must be >= 2"),
        (dict(inputs=torch.rand(3, 8, 8)), ValueError, "inputs must have 4 dims"),
    ],
    ids=["decreasing", "repeated", "short", "negative", "empty", "str", "n_steps", "dims"],
)
def test_bad_input_raises_naming_the_argument(kwargs, error, message):
    """Bands that are not increasing or do not cover every frequency: errors naming them."""
    call = dict(forward_func=linear_model(), inputs=data(), target=0)
    call.update(kwargs)
    with pytest.raises(error, match=message):
        frequency_contributions(**call)
    assert max_radius(8, 8) > 5
