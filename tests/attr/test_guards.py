"""What every attribute call checks around its work: a baseline passed where the target
goes, a train-mode model's BatchNorm statistics, a large convergence delta; and numpy
band arrays for rank_contributions."""

import warnings

import numpy as np
import pytest
import torch
from _reference import TinyConvNet
from captum.attr import IntegratedGradients, NoiseTunnel
from torch import nn

from captum_rig import RIG, BlurIG, LayerRIG, rank_contributions


def _model() -> nn.Module:
    torch.manual_seed(0)
    return TinyConvNet(width=4, padding=0).double().eval()


class BatchNormNet(nn.Module):
    """A conv, BatchNorm, a head: in train mode every forward pass moves the statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.bn(self.conv(x))).flatten(1))


# ---- a baseline passed second (Captum's IntegratedGradients order) ------------------

CALLS = {
    "rig": lambda m: RIG(m).attribute,
    "layer": lambda m: LayerRIG(m, m.conv).attribute,
    "blurig": lambda m: BlurIG(m).attribute,
}


@pytest.mark.parametrize("name", list(CALLS))
def test_a_baseline_second_raises_one_type_error_naming_the_keyword(name):
    """attribute(x, b, t) and attribute(x, b, target=t) say what to do, before any work.

    Before: "got multiple values for argument 'target'" and a failure inside forward.
    """
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    attribute = CALLS[name](model)
    keyword = "baselines=" if name != "blurig" else "needs no baseline"
    for baseline in (torch.zeros_like(x), torch.full((1, 3, 6, 6), 0.5, dtype=torch.float64)):
        with pytest.raises(TypeError, match=keyword) as info:
            attribute(x, baseline, 1)
        assert "second argument is target" in str(info.value)
        with pytest.raises(TypeError, match=keyword):
            attribute(x, baseline, target=1)


def test_a_tuple_of_baselines_second_is_named_too():
    """Tuple inputs: a tuple of floating tensors shaped like them is a baseline."""
    a, c = torch.rand(2, 3, 6, 6), torch.rand(2, 1, 6, 6)

    def forward(p, q):
        return (p.sum((1, 2, 3)) + q.sum((1, 2, 3)))[:, None]

    with pytest.raises(TypeError, match="baselines="):
        RIG(forward).attribute((a, c), (torch.zeros_like(a), torch.zeros_like(c)), 0)


@pytest.mark.parametrize(
    "target, shaped",
    [
        (1, False),
        ([0, 2], False),
        (torch.tensor([0, 2]), False),
        (torch.tensor(1), False),
        ((1, 0), True),
        ([(1, 0), (0, 2)], True),
    ],
    ids=["int", "list", "tensor", "scalar-tensor", "tuple", "list-of-tuples"],
)
def test_every_captum_target_form_still_works_positionally(target, shaped):
    """attribute(x, target) keeps working for ints, lists, tensors and tuples."""
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    torch.manual_seed(0)
    head = nn.Linear(3, 6).double()

    def forward(inputs):
        out = head(inputs.mean((2, 3)))
        return out.reshape(-1, 2, 3) if shaped else out

    positional = RIG(forward).attribute(x, target, method="riemann_trapezoid", n_steps=3)
    keyword = RIG(forward).attribute(x, target=target, method="riemann_trapezoid", n_steps=3)
    torch.testing.assert_close(positional, keyword)
    assert positional.abs().max() > 0


# ---- BatchNorm running statistics of a train-mode model ------------------------------


def _bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "bn." in k}


@pytest.mark.parametrize(
    "run",
    [
        lambda m, x: RIG(m).attribute(x, target=0, n_steps=3),
        lambda m, x: RIG(m).attribute(
            x, target=0, method="gausslegendre", n_steps=4, return_convergence_delta=True
        ),
        lambda m, x: RIG(m).attribute(x, target=0, method="riemann_left", n_steps=4, idgi=True),
        lambda m, x: LayerRIG(m, m.conv).attribute(x, target=0, n_steps=3),
        lambda m, x: LayerRIG(m, m.conv).attribute(
            x, target=0, method="riemann_middle", n_steps=4, return_convergence_delta=True
        ),
        lambda m, x: BlurIG(m).attribute(x, target=0, n_steps=4, max_sigma=2.0),
        lambda m, x: NoiseTunnel(RIG(m)).attribute(
            x, nt_samples=2, stdevs=0.1, target=0, method="gausslegendre", n_steps=3
        ),
        lambda m, x: rank_contributions(m, x, target=0, bands=[0, 2, 6]),
    ],
    ids=[
        "rig",
        "rig-path-delta",
        "rig-idgi",
        "layer",
        "layer-path-delta",
        "blurig",
        "noise",
        "contributions",
    ],
)
def test_train_mode_batchnorm_statistics_are_left_alone(run):
    """A train-mode model keeps its running statistics and its train mode.

    Before: every path point's pass moved running_mean/var (Captum's IG does too).
    """
    torch.manual_seed(0)
    model = BatchNormNet().train()
    x = torch.rand(2, 3, 6, 6)
    before = _bn_state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(model, x)
    after = _bn_state(model)
    assert model.training and model.bn.training
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_captum_ig_moves_the_statistics_this_package_does_not():
    """The reference behaviour this guards against: Captum's IG updates them."""
    torch.manual_seed(0)
    model = BatchNormNet().train()
    before = _bn_state(model)
    IntegratedGradients(model).attribute(torch.rand(2, 3, 6, 6), target=0, n_steps=3)
    assert not torch.equal(before["bn.running_mean"], model.bn.running_mean)


# ---- a convergence delta large next to F(x) - F(0) -----------------------------------


class Steep(nn.Module):
    """Sharp enough that a few quadrature nodes miss the path integral."""

    def forward(self, x):
        return torch.sin(40 * x.mean((1, 2, 3)))[:, None] + 0.01 * x.sum((1, 2, 3))[:, None]


def test_a_large_path_delta_warns_pointing_at_n_steps():
    """delta far from 0 next to F(x) - F(0): a warning naming n_steps (and idgi)."""
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"raise n_steps.*idgi=True") as record:
        _, delta = RIG(Steep()).attribute(
            x, target=0, method="gausslegendre", n_steps=2, return_convergence_delta=True
        )
    message = str(record[0].message)
    assert "RankIntegratedGradients" in message and "delta" in message
    assert delta.abs().max() > 0.05


def test_noise_tunnel_with_a_large_delta_warns():
    """RIG inside NoiseTunnel: the same warning (before: none)."""
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    with pytest.warns(UserWarning, match="raise n_steps"):
        NoiseTunnel(RIG(Steep())).attribute(
            x,
            nt_samples=2,
            stdevs=0.01,
            target=0,
            method="gausslegendre",
            n_steps=2,
            return_convergence_delta=True,
        )


def test_small_deltas_the_paper_form_and_idgi_do_not_warn():
    """A converged path, Eq. (3) (incomplete by design) and IDGI stay quiet."""
    model = _model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RIG(model).attribute(
            x, target=0, method="gausslegendre", n_steps=64, return_convergence_delta=True
        )
        RIG(model).attribute(x, target=0, return_convergence_delta=True)
        RIG(Steep()).attribute(
            x, target=0, method="riemann_left", n_steps=2, idgi=True, return_convergence_delta=True
        )


def test_layer_rig_large_delta_warns():
    """LayerRIG's path methods warn the same way."""
    model = nn.Sequential(nn.Identity(), Steep())
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    with pytest.warns(UserWarning, match="LayerRankIntegratedGradients"):
        LayerRIG(model, model[0]).attribute(
            x, target=0, method="gausslegendre", n_steps=2, return_convergence_delta=True
        )


# ---- rank_contributions' bands as numpy arrays ---------------------------------------


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_rank_contributions_takes_numpy_integer_bands(dtype):
    """np.array([0, 2, 6]) works as the list does (before: a TypeError)."""
    model = _model()
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    got = rank_contributions(model, x, target=0, bands=np.array([0, 2, 6], dtype=dtype))
    expected = rank_contributions(model, x, target=0, bands=[0, 2, 6])
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("bands", [np.array([0.0, 2.0, 6.0]), np.array([[0, 2, 6]])])
def test_rank_contributions_refuses_float_or_2d_arrays(bands):
    model = _model()
    with pytest.raises(TypeError, match="bands"):
        rank_contributions(model, torch.rand(1, 3, 6, 6, dtype=torch.float64), 0, bands=bands)
