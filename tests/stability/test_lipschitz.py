"""Tests for captum_rig.stability.lipschitz: the bound against measured ratios."""

import pytest
import torch
from _reference import chain_model, empirical_ratio
from torch import nn

from captum_rig.stability import lipschitz_analysis, lipschitz_bound


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
    bound = lipschitz_bound(model, torch.rand(1, 3, 2, 2, dtype=torch.float64), certified=False)
    w1, w2 = model[1].weight.detach(), model[2].weight.detach()
    product = (torch.linalg.matrix_norm(w1, 2) * torch.linalg.matrix_norm(w2, 2)).item()
    assert bound == pytest.approx(product), "bound is not the product of the norms"
    assert bound >= torch.linalg.matrix_norm(w2 @ w1, 2).item(), "bound below the truth"


def test_certified_model_bound_is_above_power_iteration():
    """Certified bound ≥ the power-iteration one and ≥ measured ratios, and says so."""
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=4)
    x = torch.rand(2, 3, 16, 16)
    power = lipschitz_analysis(model, x[:1], n_iter=10, blocks=False, certified=False)
    certified = lipschitz_analysis(model, x[:1], certified=True, blocks=False)
    assert certified.bound >= power.bound * (1 - 1e-6), (certified.bound, power.bound)
    assert "certified" in certified.method and "power iteration" in power.method
    assert empirical_ratio(model, x) <= certified.bound, "a measured ratio above the bound"


def test_gram_iter_is_deprecated_and_ignored():
    """The old Gram-iteration count still parses, warns, and changes nothing."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    x = torch.rand(1, 3, 8, 8)
    with pytest.warns(DeprecationWarning, match="gram_iter"):
        old = lipschitz_bound(model, x, gram_iter=6)
    assert old == lipschitz_bound(model, x)
