"""Tests for captum_rig.stability.distortion: closed forms, brackets, the one search."""

import math

import pytest
import torch
from _reference import LinearTwoClass, chain_model
from torch import nn

from captum_rig.robustness import pgd_attack
from captum_rig.stability import distortion, gaussian_minimal_distortion, minimal_distortion
from captum_rig.stability.distortion import DistortionSearch, pgd_search


def linear_two_class(w: torch.Tensor, b: float) -> nn.Module:
    """Logits ``[0, w·x + b]``: predicts class 1 where ``w·x + b > 0``."""
    return LinearTwoClass(w.double(), b)


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
    tol = result.resolutions
    assert bool((tol <= result.budgets / 2**14 + 1e-15).all()), "resolution above radius/2**14"
    assert result.tolerance == pytest.approx(tol.max().item()), "tolerance is the widest"
    assert bool(result.found.all()), "every image is within max_eps of the boundary"
    assert bool((result.values >= exact - 1e-9).all()), (
        f"found a flip closer than the hyperplane: {result.values} < {exact}"
    )
    assert bool((result.values <= exact + tol + 1e-9).all()), f"{result.values} vs {exact}"
    assert bool((result.budgets - tol <= exact + 1e-12).all()), "bracket misses the truth"
    assert result.mean == pytest.approx(exact.mean().item(), abs=result.tolerance), "mean"


def test_pgd_minimal_distortion_bracket_on_a_convnet():
    """At the returned radius PGD flips the prediction; a resolution below it, not."""
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
    below = (result.budgets[found] - result.resolutions[found]).clamp_min(0).float()
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
    tol = result.resolutions[crosses]
    budget = result.budgets[crosses]
    assert bool((budget >= sigma_star[crosses]).all()), "flip below σ*"
    assert bool((budget <= sigma_star[crosses] + tol + 1e-12).all()), "σ* outside the bracket"
    expected_l2 = budget * noise[crosses].flatten(1).norm(dim=1)
    assert torch.allclose(result.values[crosses], expected_l2), "values are not σ‖n‖₂"
    assert bool(torch.isinf(result.values[~crosses]).all()), "no flip must give inf"
    assert result.mean == pytest.approx(result.values[crosses].mean().item()), "mean"


def test_gaussian_bracket_and_seed_on_a_convnet():
    """Flip at the returned σ, none a resolution below; the seed fixes the result."""
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
        below = (sigma - result.resolutions[found].float().view(-1, 1, 1, 1)).clamp_min(0)
        before = model((x[found] + below * noise[found]).clamp(0, 1)).argmax(1)
    assert bool((at != y0[found]).all()), "no flip at the returned σ"
    assert bool((before == y0[found]).all()), "a flip below the bracket"


# --------------------------------------------------------------------------- the one search


class Threshold(nn.Module):
    """Two classes on (N, 1, 1, 1) inputs: class 1 exactly where x > 0.5."""

    def forward(self, x):
        z = x.flatten(1)[:, :1] - 0.5
        return torch.cat([torch.zeros_like(z), z], dim=1)


def test_search_brackets_each_images_threshold():
    """Shifting x up by b flips it at b* = 0.5 − x: b* ≤ budget ≤ b* + resolution, and the
    value is the flipping shift's norm; inf where b* is beyond the largest budget."""
    x = torch.tensor([0.1, 0.3, 0.45, 0.49, 0.0], dtype=torch.float64).view(-1, 1, 1, 1)

    def perturb(xs, y0, budget, index):
        return xs + budget.view(-1, 1, 1, 1)

    search = DistortionSearch(Threshold(), "shift", "L2", 0.45, 10, lambda batch: perturb)
    for batch in x.split(2):
        search.add(batch)
    result = search.result()
    exact = 0.5 - x.flatten()
    inside = exact <= 0.45
    assert torch.equal(result.found, inside), result.found
    budget = result.budgets[inside]
    assert bool((result.resolutions[inside] <= budget / 2**10).all()), result.resolutions
    assert bool((budget >= exact[inside]).all()), f"{budget} below {exact[inside]}"
    assert bool((budget <= exact[inside] + result.resolutions[inside]).all()), f"{budget}"
    assert torch.allclose(result.values[inside], budget, rtol=1e-12), "the value is the shift"
    assert bool(torch.isinf(result.values[~inside]).all()), result.values


@pytest.mark.parametrize("attack", ["pgd", "gaussian"])
def test_both_attacks_run_the_one_search(attack, monkeypatch):
    """minimal_distortion and gaussian_minimal_distortion bisect through one loop, one
    call per batch of batch_size."""
    calls = []
    original = distortion._bisect

    def counted(model, images, perturb, high, n_bisect):
        calls.append(images.shape[0])
        return original(model, images, perturb, high, n_bisect)

    monkeypatch.setattr(distortion, "_bisect", counted)
    model = chain_model(torch.float32).eval()
    x = torch.rand(5, 3, 8, 8)
    if attack == "pgd":
        minimal_distortion(model, x, steps=2, n_bisect=2, batch_size=2)
    else:
        gaussian_minimal_distortion(model, x, n_bisect=2, batch_size=2)
    assert calls == [2, 2, 1], calls


def test_search_fed_in_any_pieces_equals_the_whole_call():
    """PGD works per image: a search fed batch by batch gives the one-call result."""
    model = chain_model(torch.float32).eval()
    x = torch.rand(5, 3, 8, 8)
    whole = minimal_distortion(model, x, norm="Linf", steps=3, n_bisect=4, batch_size=5)
    search = pgd_search(model, x[0].numel(), norm="Linf", steps=3, n_bisect=4)
    for batch in (x[:1], x[1:4], x[4:]):
        search.add(batch)
    pieces = search.result()
    assert torch.allclose(pieces.values, whole.values, equal_nan=True), (pieces, whole)
    assert torch.equal(pieces.budgets, whole.budgets), (pieces.budgets, whole.budgets)
    assert pieces.to_dict() == pytest.approx(whole.to_dict(), nan_ok=True)


# --------------------------------------------------------------------------- from small up


class Band(nn.Module):
    """Two classes: class 1 exactly where the mean pixel m is in (0.5, 0.7).

    A large step carries the mean across the band: PGD at a large radius oscillates
    around it and ends outside, while a small radius stops inside.
    """

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True)
        g = 1 - ((m - 0.6) / 0.1) ** 2
        return torch.cat([torch.zeros_like(g), g], dim=1)


def test_search_finds_flips_below_a_largest_budget_that_does_not_flip():
    """A band of the threshold model: x = 0.1 flips for shifts in (0.4, 0.8), not at the
    largest budget 1; the search from small budgets up finds 0.4 (a search that starts
    at the largest budget reports inf)."""

    class Window(nn.Module):
        def forward(self, x):
            z = x.flatten(1)[:, :1]
            inside = ((z > 0.5) & (z < 0.9)).to(z.dtype)
            return torch.cat([torch.zeros_like(z), inside], dim=1)

    x = torch.tensor([0.1, 0.3], dtype=torch.float64).view(-1, 1, 1, 1)

    def perturb(xs, y0, budget, index):
        return xs + budget.view(-1, 1, 1, 1)

    result = DistortionSearch(Window(), "shift", "L2", 1.0, 12, lambda batch: perturb).run(x, 2)
    assert bool(result.found.all()), result.values
    exact = 0.5 - x.flatten()
    assert torch.allclose(result.budgets, exact, atol=float(result.tolerance)), result.budgets
    assert result.tolerance <= 0.5 / 2**12, result.tolerance


@pytest.mark.parametrize("norm", ["L2", "Linf"])
def test_pgd_flips_at_small_radii_that_fail_at_the_box_diagonal(norm):
    """Uniform images at 0.3 and 0.35 (L2) or 0.25 (L∞) flip with PGD at radius 2 (L2,
    2/√48 for L∞) but not at the
    diagonal of the box; the minimal distortion is the distance to the band, δ = (0.5 − m)
    per pixel, within the reported resolution (it was inf before the search went up)."""
    model = Band()
    means = (0.3, 0.35) if norm == "L2" else (0.3, 0.25)
    x = torch.stack([torch.full((3, 4, 4), m, dtype=torch.float64) for m in means])
    y0 = model(x).argmax(1)
    assert bool((y0 == 0).all())
    diagonal = math.sqrt(48)
    high, small = (diagonal, 2.0) if norm == "L2" else (1.0, 2.0 / diagonal)
    for eps, flips in ((high, False), (small, True)):
        adv = pgd_attack(model, x, y0, eps=eps, steps=20, norm=norm, random_start=False)
        assert bool(((model(adv).argmax(1) != y0) == flips).all()), (norm, eps)
    result = minimal_distortion(model, x, norm=norm)
    per_pixel = 0.5 - torch.tensor(means, dtype=torch.float64)
    exact = per_pixel * (diagonal if norm == "L2" else 1.0)
    assert bool(result.found.all()), result.values
    assert torch.allclose(result.values, exact, atol=2 * result.tolerance + 1e-6), result.values
    assert result.relative_tolerance <= 2**-12, result.relative_tolerance
    summary = result.to_dict()
    assert summary["mean_255"] == pytest.approx(255 * result.mean)
    if norm == "L2":
        assert summary["mean_rms"] == pytest.approx(per_pixel.mean().item(), abs=1e-3)
    else:
        assert math.isnan(summary["mean_rms"])
