"""Tests for captum_rig.stability.local: the input-Jacobian norm, a lower bound."""

import pytest
import torch
from _reference import chain_model, hooks_left
from torch import nn

from captum_rig.stability import lipschitz_bound, local_lipschitz


def _jacobian_norms(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Each image's ‖J(x)‖₂ from its explicit Jacobian's SVD."""
    norms = []
    for x in images:
        jac = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x)
        norms.append(torch.linalg.matrix_norm(jac.reshape(-1, x.numel()), 2))
    return torch.stack(norms)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 3)),
        lambda: nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)
        ),
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.GELU(), nn.Linear(5, 4)),
    ],
    ids=["tanh-mlp", "conv-relu", "gelu-mlp"],
)
def test_matches_explicit_jacobian_svd(make):
    """Per image, the estimate equals the explicit Jacobian's top singular value."""
    torch.manual_seed(0)
    model = make().double()
    images = torch.rand(5, 3, 2, 2, dtype=torch.float64)
    got = local_lipschitz(model, images, n_iter=500, tol=1e-12, per_image=True)
    want = _jacobian_norms(model, images)
    assert got.shape == (5,), got.shape
    assert torch.allclose(got, want, rtol=1e-6), (got, want)
    assert (got <= want * (1 + 1e-9)).all(), "an estimate above the Jacobian norm"
    assert local_lipschitz(model, images, n_iter=500, tol=1e-12) == pytest.approx(
        float(want.max()), rel=1e-6
    ), "the default is the largest image's norm"


def test_linear_model_gives_its_exact_norm():
    """For a linear model the Jacobian is the weight: the norm is ‖W‖₂ at every image."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 10)).double()
    exact = float(torch.linalg.matrix_norm(model[1].weight.detach(), 2))
    got = local_lipschitz(model, torch.rand(3, 3, 4, 4, dtype=torch.float64), tol=1e-12,
                          n_iter=1000, per_image=True)  # fmt: skip
    assert torch.allclose(got, torch.full((3,), exact, dtype=torch.float64), rtol=1e-7), got


def test_between_measured_ratio_and_bound():
    """local ≤ the certified bound, and the model's chain gets a positive lower bound."""
    model = chain_model()
    images = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    low = local_lipschitz(model, images)
    high = lipschitz_bound(model, images[:1])
    assert 0 < low <= high, (low, high)


def test_batches_and_chunks_agree_and_nothing_changes():
    """Chunks give the same norms; images, training flags and hooks are untouched."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(),
                          nn.Linear(6, 2)).double().train()  # fmt: skip
    model[2].running_var.fill_(2.0)
    images = torch.rand(6, 3, 2, 2, dtype=torch.float64)
    before = images.clone()
    whole = local_lipschitz(model, images, per_image=True, batch_size=6, tol=0, n_iter=200)
    parts = local_lipschitz(model, images, per_image=True, batch_size=2, tol=0, n_iter=200)
    assert torch.allclose(whole, parts, rtol=1e-9), (whole, parts)
    assert torch.equal(images, before), "images changed"
    assert model.training and model[2].training, "training flags not restored"
    assert not images.requires_grad and not hooks_left(model), "a stray flag or hook"


def test_falls_back_without_forward_mode():
    """An op without a forward-mode rule still works (double backward)."""

    class NoForward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    class Net(nn.Module):
        def forward(self, x):
            return NoForward.apply(x.flatten(1))

    got = local_lipschitz(Net(), torch.rand(2, 3, dtype=torch.float64))
    assert got == pytest.approx(2.0), got


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"images": torch.zeros(2, 3, dtype=torch.long)}, TypeError),
        ({"images": torch.zeros(0, 3)}, ValueError),
        ({"n_iter": 0}, ValueError),
        ({"tol": -1.0}, ValueError),
        ({"batch_size": 0}, ValueError),
        ({"model": "nope"}, TypeError),
    ],
)
def test_bad_arguments(kwargs, error):
    """Bad arguments get a TypeError/ValueError naming them."""
    args = {"model": nn.Linear(3, 2), "images": torch.rand(2, 3)}
    args.update(kwargs)
    with pytest.raises(error, match=next(iter(kwargs))):
        local_lipschitz(**args)
