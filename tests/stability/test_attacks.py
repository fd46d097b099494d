"""Tests for captum_rig.stability.attacks: minimal-norm attacks and the best per image."""

import math

import pytest
import torch
from _reference import LinearTwoClass

from captum_rig.stability import (
    AttackSearch,
    MinimalDistortion,
    best_distortion,
    minimal_distortion,
)


class Shift(torch.nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x):
        return x + self.c


def linear_setup():
    """A 2-class linear model on 1×4×4 images and images at known distances from its
    boundary (|w·x + b| / ‖w‖ in L2, / ‖w‖₁ in L∞), all well inside the box."""
    torch.manual_seed(0)
    w = torch.linspace(-1.0, 1.5, 16, dtype=torch.float64)
    w[w.abs() < 0.1] = 0.3
    x = torch.full((5, 1, 4, 4), 0.5, dtype=torch.float64)
    z_target = torch.tensor([-0.2, 0.3, -0.05, 0.1, 0.4], dtype=torch.float64)
    z = x.flatten(1) @ w
    x += ((z_target - z) / (w @ w)).view(-1, 1, 1, 1) * w.view(1, 1, 4, 4)
    # float32: torchattacks' DeepFool and FAB make float32 tensors of their own
    return LinearTwoClass(w.float(), 0.0), x.float(), w, z_target


@pytest.mark.parametrize(
    "attack, norm", [("deepfool", "L2"), ("fab", "L2"), ("fab", "Linf"), ("cw", "L2")]
)
def test_attacks_on_a_linear_model_come_close_to_the_exact_distance(attack, norm):
    """Every value flips the prediction (never closer than the hyperplane), and the
    minimal-norm attacks land near it: DeepFool and FAB within a few percent, CW (a
    penalty method, fixed c) within a factor 3."""
    model, x, w, z = linear_setup()
    if attack == "cw":
        # torchattacks' CW masks the true class's logit to 0 before taking the largest
        # other one: with every other logit negative it sees no margin. Shifted logits.
        model = torch.nn.Sequential(model, Shift(10.0))
    dual = w.norm() if norm == "L2" else w.abs().sum()
    exact = z.abs() / dual
    result = minimal_distortion(model, x, norm=norm, attack=attack)
    assert result.method == ("fab_" + norm.lower() if attack == "fab" else attack)
    assert result.norm == norm and result.tolerance == 0.0
    found = result.found
    assert bool(found.all()), result.values
    assert bool((result.values[found] >= exact[found] * (1 - 1e-6)).all()), result.values
    slack = 3.0 if attack == "cw" else 1.1
    assert bool((result.values[found] <= exact[found] * slack + 1e-6).all()), (
        result.values,
        exact,
    )
    assert torch.equal(result.budgets, result.values)


def test_attacks_leave_the_global_random_state_and_the_images_alone():
    model, x, _, _ = linear_setup()
    before, copy = torch.random.get_rng_state(), x.clone()
    AttackSearch(model, "fab", "Linf", seed=3).run(x, batch_size=2)
    assert torch.equal(torch.random.get_rng_state(), before), "FAB reseeded the global RNG"
    assert torch.equal(x, copy)


def test_attacks_fed_in_pieces_equal_the_whole_call():
    model, x, _, _ = linear_setup()
    whole = AttackSearch(model, "deepfool").run(x, batch_size=5)
    pieces = AttackSearch(model, "deepfool").run(x, batch_size=2)
    assert torch.allclose(whole.values, pieces.values), (whole.values, pieces.values)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"attack": "deepfool", "norm": "Linf"}, "minimises the L2 norm, not Linf"),
        ({"attack": "cw", "norm": "Linf"}, "minimises the L2 norm"),
        ({"attack": "boundary"}, "attack"),
        ({"attack": "fab", "steps": 0}, "steps"),
    ],
)
def test_bad_attack_arguments(kwargs, match):
    model, x, _, _ = linear_setup()
    with pytest.raises(ValueError, match=match):
        minimal_distortion(model, x, **kwargs)


def test_best_distortion_is_the_smallest_per_image():
    inf = math.inf
    a = MinimalDistortion("a", "L2", torch.tensor([1.0, inf, 5.0]),
                          torch.tensor([1.0, inf, 5.0]), 0.1, size=4)  # fmt: skip
    b = MinimalDistortion("b", "L2", torch.tensor([2.0, 3.0, 4.0]),
                          torch.tensor([2.0, 3.0, 4.0]), 0.0, size=4)  # fmt: skip
    best = best_distortion([a, b])
    assert best.method == "best" and best.values.tolist() == [1.0, 3.0, 4.0]
    assert best.resolutions.tolist() == pytest.approx([0.1, 0.0, 0.0])
    assert best.n_found == 3 and best.mean == pytest.approx(8 / 3)
    assert best.to_dict()["mean_rms"] == pytest.approx(8 / 3 / 2)
    linf = MinimalDistortion("c", "Linf", torch.ones(3), torch.ones(3), 0.0)
    with pytest.raises(ValueError, match="one norm"):
        best_distortion([a, linf])
    with pytest.raises(ValueError, match="at least one"):
        best_distortion([])
