"""Tests for rank_contributions, against numpy SVDs and the model's own outputs."""

import numpy as np
import pytest
import torch
from _reference import CallLog, TinyConvNet
from torch import nn

from captum_rig import rank_contributions

BANDS = [0, 1, 2, 3, 4, 6, 8, 12, 16]


class Linear(nn.Module):
    """F(x)_j = <W_j, x>: gradient W_j everywhere."""

    def __init__(self, shape=(3, 16, 16), classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.weight = nn.Parameter(torch.randn(classes, *shape, dtype=torch.float64))

    def forward(self, x):
        return torch.einsum("nchw,jchw->nj", x, self.weight)


def _smooth_cnn() -> nn.Module:
    torch.manual_seed(0)
    return TinyConvNet(classes=10).eval()


def _numpy_terms(x: torch.Tensor, weight: torch.Tensor) -> np.ndarray:
    """<W_c, σ_i u_i v_iᵀ> per example, channel and rank, from numpy's SVD."""
    u, s, vh = np.linalg.svd(x.double().numpy(), full_matrices=False)
    return np.einsum("ncik,nck,nckj,ncij->nck", u, s, vh, weight.detach().numpy())


@pytest.mark.parametrize("n_steps", [None, 16])
def test_linear_model_is_exact(n_steps):
    """For F = <W, x>, entry [n, c, i] is <W_c, σ_{i+1} u_{i+1} v_{i+1}ᵀ> exactly."""
    model = Linear()
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    out = rank_contributions(model, x, target=[1, 3], n_steps=n_steps)
    assert out.shape == (2, 3, 16) and out.dtype == torch.float64
    w = model.weight[[1, 3]][:, None].expand(2, 1, 3, 16, 16)[:, 0]
    np.testing.assert_allclose(out.numpy(), _numpy_terms(x, w), atol=1e-10)


def test_linear_model_with_baselines_splits_x_minus_b():
    """With baselines the components are those of x - b, and they sum to F(x) - F(b)."""
    model = Linear()
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    b = torch.rand(1, 3, 1, 1, dtype=torch.float64)
    out = rank_contributions(model, x, target=2, baselines=b)
    w = model.weight[2].expand(2, 3, 16, 16)
    np.testing.assert_allclose(out.numpy(), _numpy_terms(x - b, w), atol=1e-10)
    with torch.no_grad():
        gap = model(x)[:, 2] - model(b.expand_as(x))[:, 2]
    torch.testing.assert_close(out.sum((1, 2)), gap)


def test_additional_forward_args_reach_the_model():
    """Extra forward arguments are passed on: a scale argument scales every entry."""
    model = Linear()

    def scaled(x, scale):
        return model(x) * scale

    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    plain = rank_contributions(model, x, target=1, bands=[0, 2, 16])
    tripled = rank_contributions(scaled, x, target=1, additional_forward_args=3.0, bands=[0, 2, 16])
    torch.testing.assert_close(tripled, 3 * plain)


def test_bands_are_sums_of_entries_for_a_linear_model():
    """Band j equals the sum of the full entries r_j..r_{j+1}-1 (linear model)."""
    model = Linear()
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    full = rank_contributions(model, x, target=0)
    bands = rank_contributions(model, x, target=0, bands=BANDS)
    expected = torch.stack([full[..., a:b].sum(-1) for a, b in zip(BANDS, BANDS[1:])], -1)
    assert bands.shape == (3, 3, len(BANDS) - 1)
    torch.testing.assert_close(bands, expected)


@pytest.mark.parametrize("bands", [None, BANDS])
def test_sums_to_output_difference_on_a_small_cnn(bands):
    """At the defaults the entries sum to F(x) - F(0) within 1 %."""
    model = _smooth_cnn()
    x = torch.rand(4, 3, 16, 16)
    out = rank_contributions(model, x, target=3, bands=bands)
    with torch.no_grad():
        gap = model(x)[:, 3] - model(torch.zeros_like(x))[:, 3]
    error = (out.sum((1, 2)) - gap).abs() / gap.abs()
    assert error.max() < 0.01, (out.sum((1, 2)), gap)


def test_gradient_evaluations_are_counted():
    """8 bands cost <= 40 gradient evaluations per image; n_steps sets the count."""
    model = CallLog(_smooth_cnn())
    x = torch.rand(3, 3, 16, 16)
    rank_contributions(model, x, target=0, bands=BANDS)
    assert model.examples <= 40 * 3, model.examples
    model.seen.clear()
    rank_contributions(model, x, target=0, n_steps=20, internal_batch_size=12)
    assert model.examples == 20 * 3, model.examples
    assert model.calls == 5, model.calls  # ceil(20 points / (12 // 3) per pass)


def test_batch_equals_per_example_and_tuple_inputs():
    """A batch equals per-example runs; a tuple in gives a tuple out summing to the gap."""
    model = _smooth_cnn()
    x = torch.rand(2, 3, 16, 16)
    batch = rank_contributions(model, x, target=[1, 5], bands=[0, 4, 16])
    singles = torch.cat(
        [
            rank_contributions(model, x[i : i + 1], target=t, bands=[0, 4, 16])
            for i, t in [(0, 1), (1, 5)]
        ]
    )
    torch.testing.assert_close(batch, singles, atol=1e-6, rtol=1e-4)

    def two(a, b):
        return model(a + b)

    a, b = x, torch.rand(2, 3, 16, 16) * 0.2
    out = rank_contributions(two, (a, b), target=2, n_steps=64)
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 3, 16)] * 2
    with torch.no_grad():
        gap = model(a + b)[:, 2] - model(torch.zeros_like(a))[:, 2]
    torch.testing.assert_close(out[0].sum((1, 2)) + out[1].sum((1, 2)), gap, atol=1e-3, rtol=1e-2)


@pytest.mark.parametrize(
    "bands, error",
    [
        ([1, 8, 16], ValueError),
        ([0, 8, 15], ValueError),
        ([0, 8, 8, 16], ValueError),
        ([0, 9, 4, 16], ValueError),
        ([0.0, 8.0, 16.0], TypeError),
        ([0], ValueError),
        ("0,16", TypeError),
    ],
)
def test_bad_bands_name_bands(bands, error):
    """Bands that do not run strictly from 0 to w in ints raise, naming bands."""
    with pytest.raises(error, match="bands"):
        rank_contributions(Linear(), torch.rand(1, 3, 16, 16, dtype=torch.float64), 0, bands=bands)


def test_other_bad_arguments():
    """Too few n_steps for the bands, and mismatched widths, raise naming the argument."""
    model = Linear()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="n_steps"):
        rank_contributions(model, x, 0, bands=BANDS, n_steps=4)
    with pytest.raises(ValueError, match="min"):
        rank_contributions(lambda a, b: a.sum((1, 2, 3))[:, None], (x, x[..., :8, :8]), 0)
    with pytest.raises(ValueError, match="baselines"):
        rank_contributions(model, x, 0, baselines=torch.zeros(3, 3, 16, 16))


def test_plot_rank_contributions_draws_shares():
    """The figure's curves are the cumulative and per-band shares, and it is not blank."""
    import matplotlib

    matplotlib.use("Agg")
    from captum_rig.viz import plot_rank_contributions

    c = torch.rand(2, 3, 6)
    fig, ax = plot_rank_contributions({"a": c, "b": 2 * c})
    per_rank = c.double().sum((0, 1)).numpy()
    expected = np.concatenate([[0.0], np.cumsum(per_rank) / per_rank.sum()])
    for line in ax.lines[1:]:
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-6)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    assert (pixels < 250).any(axis=-1).mean() > 0.02, "the figure is blank"
    fig, ax = plot_rank_contributions(c[..., :2], bands=[0, 2, 6], cumulative=False)
    shares = c.double().sum((0, 1))[:2].numpy() / c[..., :2].double().sum().item()
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), [*shares, shares[-1]], rtol=1e-6)
    with pytest.raises(ValueError, match="bands"):
        plot_rank_contributions(c, bands=[0, 1, 2])
    with pytest.raises(ValueError, match="contributions"):
        plot_rank_contributions(torch.zeros(2, 3, 6))
