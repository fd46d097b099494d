"""Hostile model patterns for the graph interpreter: a sound bound, or None naming why.

One list, :data:`ZOO`, of models that once got a bound below their measured ratio (or
crashed): each now gets a bound at or above ``‖f(x + d) − f(x)‖ / ‖d‖`` for random
pairs and a gradient-ascended pair, or None with a note naming the operation.
"""

from typing import Callable, NamedTuple, Optional

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_rig.stability import lipschitz_analysis, lipschitz_bound

torchvision = pytest.importorskip("torchvision")


def _fix(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        p.data.uniform_(-1, 1)
    return model.double().eval()


class _Wrap(nn.Module):
    """A small conv-linear network after a functional prefix ``pre(x)``."""

    def __init__(self, pre: Callable, post: Optional[Callable] = None, extra=None):
        super().__init__()
        self.pre, self.post, self.extra = pre, post, extra
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = self.pre(x, self)
        x = self.fc(torch.flatten(F.relu(self.conv(x)), 1))
        return x if self.post is None else self.post(x, self)


class _Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(108, 3), nn.Linear(108, 3)

    def forward(self, x):
        x = x.flatten(1)
        g = (x.mean() > 0.5).double()
        return g * self.a(x) * 100 + (1 - g) * self.b(x)


class _Route(nn.Module):
    def __init__(self):
        super().__init__()
        self.router = nn.Linear(108, 2)
        self.experts = nn.ModuleList([nn.Linear(108, 3), nn.Linear(108, 3)])

    def forward(self, x):
        x = x.flatten(1)
        pick = self.router(x).argmax(1)
        outs = torch.stack([e(x) for e in self.experts], 1)
        return outs[torch.arange(x.shape[0]), pick]


class PerImageNormalize(nn.Module):
    """Divides by the image's own std: a name that reads like ``(x − mean)/std``."""

    def __init__(self):
        super().__init__()
        self.mean, self.std = 0.5, 0.25

    def forward(self, x):
        return (x - x.mean()) / x.std()


def _hooked():
    model = _Wrap(lambda x, m: x)
    model.fc.register_forward_hook(lambda m, i, o: o * 1000)
    return model


def _pre_hooked():
    model = _Wrap(lambda x, m: x)
    model.conv.register_forward_pre_hook(lambda m, args: (args[0] * 1000,))
    return model


def _inplace_normalize():
    return nn.Sequential(
        torchvision.transforms.Normalize([0.5] * 3, [0.25] * 3, inplace=True),
        _Wrap(lambda x, m: x),
    )


class _Case(NamedTuple):
    make: Callable[[], nn.Module]
    names: tuple = ()  # None expected, the note names all of these; () = a bound


def _pre(fn):
    return lambda: _Wrap(fn)


# fmt: off
ZOO = {
    # 1: integer or boolean tensors computed from the input
    "binarise": _Case(_pre(lambda x, m: (x > 0.5).double()), ("gt",)),
    "quantise": _Case(_pre(lambda x, m: (x * 7).long().double() / 7), ("Tensor.long",)),
    "hard-gate": _Case(_Gate, ("gt",)),
    "argmax-route": _Case(_Route, ("argmax",)),
    "threshold": _Case(_pre(lambda x, m: x * (x.sum() > 6).double() * 1000), ("gt",)),
    # 2: hooks fx cannot see
    "forward-hook": _Case(_hooked, ("'fc'", "hook")),
    "forward-pre-hook": _Case(_pre_hooked, ("'conv'", "hook")),
    # 3: in-place operations on the input
    "in-place-input": _Case(_pre(lambda x, m: x.sub_(0.5).div_(0.25))),
    "in-place-normalize": _Case(_inplace_normalize),
    "in-place-mul-reuse": _Case(_pre(lambda x, m: x + x.mul_(10))),
    # 4: a class name is not a behaviour
    "per-image-normalize": _Case(lambda: nn.Sequential(PerImageNormalize(),
                                                       _Wrap(lambda x, m: x)), ("std",)),
    # 5: one rule table for module and functional forms
    "elu-module": _Case(lambda: _Wrap(lambda x, m: m.extra(x * 2), extra=nn.ELU(alpha=-3.0))),
    "elu-functional": _Case(_pre(lambda x, m: F.elu(x * 2, alpha=-3.0))),
    # 6: MC dropout keeps inputs scaled by 1/(1 − p)
    "mc-dropout": _Case(_pre(lambda x, m: F.dropout(x, 0.5, training=True))),
    # 7: centring crashed
    "centre": _Case(_pre(lambda x, m: x - x.mean())),
    "centre-batch": _Case(_pre(lambda x, m: x - x.mean(0, keepdim=True))),
    # 8: missed but conservative
    "stochastic-depth": _Case(_pre(lambda x, m: x + torchvision.ops.stochastic_depth(
        x * 3, 0.2, "row", training=False))),
    "chunk": _Case(_pre(lambda x, m: torch.cat(x.chunk(3, dim=1)[::-1], 1))),
    "relu_": _Case(_pre(lambda x, m: F.relu_(x - 0.5) * 2)),
}
# fmt: on


def _pairs(model: nn.Module, x: torch.Tensor, seeded: bool) -> float:
    """Largest ratio over random, close and gradient-ascended pairs (of ``x``'s size: a
    model may mix the examples of a batch)."""

    def f(v):
        if seeded:  # the same dropout mask for both points of a pair
            torch.manual_seed(123)
        return model(v.clone())

    best = 0.0
    with torch.no_grad():
        for scale in (1.0, 1e-1, 1e-3):
            for _ in range(3):
                d = scale * torch.randn_like(x)
                best = max(best, ((f(x + d) - f(x)).norm() / d.norm()).item())
    d = (1e-2 * torch.randn_like(x)).requires_grad_(True)
    optimizer = torch.optim.Adam([d], lr=1e-2)
    for _ in range(40):
        ratio = (f(x + d) - f(x)).norm() / d.norm()
        best = max(best, ratio.item())
        optimizer.zero_grad()
        (-ratio).backward()
        optimizer.step()
    return best


@pytest.mark.parametrize("name", list(ZOO))
def test_bound_is_sound_or_refused(name):
    """Bound ≥ every measured ratio, or None with a note naming the operation."""
    case = ZOO[name]
    model = _fix(case.make())
    x = torch.rand(4, 3, 6, 6, dtype=torch.float64)
    before = x.clone()
    report = lipschitz_analysis(model, x[:1].clone())
    if case.names:
        assert report.bound is None, f"{name}: a bound {report.bound} for a refused pattern"
        for word in case.names:
            assert word in report.note, f"{name}: {word!r} not in {report.note!r}"
        return
    assert report.bound is not None, f"{name}: {report.note}"
    measured = max(_pairs(model, x[i : i + 1], seeded=name == "mc-dropout") for i in range(2))
    assert measured <= report.bound * (1 + 1e-9), f"{name}: {measured} > {report.bound}"
    assert torch.equal(x, before), "the test's own inputs changed"


@pytest.mark.parametrize("name", ["in-place-input", "in-place-normalize"])
def test_caller_tensor_is_not_mutated(name):
    """lipschitz_bound and local_lipschitz work on a copy of the caller's tensor."""
    from captum_rig.stability import local_lipschitz

    model = _fix(ZOO[name].make())
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    before = x.clone()
    lipschitz_bound(model, x[:1])
    lipschitz_analysis(model, x[:1], certified=False)
    local_lipschitz(model, x)
    assert torch.equal(x, before), "the caller's tensor changed"


def test_elu_module_and_function_agree():
    """nn.ELU(α = −3) and F.elu(α = −3) get the same constant, |α| = 3."""
    module = lipschitz_bound(nn.ELU(alpha=-3.0), torch.rand(1, 4))
    functional = lipschitz_bound(_fix(_Wrap(lambda x, m: F.elu(x, alpha=-3.0))).fc,
                                 torch.rand(1, 144, dtype=torch.float64))  # fmt: skip
    assert module == pytest.approx(3.0), module
    assert functional is not None


def test_mc_dropout_constant():
    """F.dropout(p, training=True): 1/(1 − p) exactly on an identity model."""

    class Drop(nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.75, training=True)

    assert lipschitz_bound(Drop(), torch.rand(1, 8)) == pytest.approx(4.0)


def test_wrapped_and_scripted_models():
    """DataParallel is unwrapped; a TorchScript model is refused with a plain note."""
    inner = _fix(_Wrap(lambda x, m: x))
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    assert lipschitz_bound(nn.DataParallel(inner), x) == pytest.approx(lipschitz_bound(inner, x))
    scripted = torch.jit.script(nn.Sequential(nn.Linear(4, 2)))
    report = lipschitz_analysis(scripted, torch.rand(1, 4))
    assert report.bound is None and "TorchScript" in report.note, report.note


def test_train_mode_is_said():
    """A model in training mode gets its eval-mode bound, and the note says so."""
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).train()
    report = lipschitz_analysis(model, torch.rand(2, 4))
    assert report.bound is not None and "eval mode" in report.note, report.note
    assert model.training, "training flag not restored"


@pytest.mark.parametrize(
    "x, error, words",
    [
        (
            torch.rand(1, 3, 5, 5, dtype=torch.float64),
            ValueError,
            ["example_input", "(1, 3, 5, 5)"],
        ),
        (torch.rand(1, 3, 6, 6), TypeError, ["example_input", "float32", "float64"]),
    ],
    ids=["size", "dtype"],
)
def test_input_that_does_not_fit_gets_a_clear_error(x, error, words):
    """A wrong example size or dtype: ValueError/TypeError naming it, not fx's text."""
    model = _fix(_Wrap(lambda v, m: v))
    with pytest.raises(error) as info:
        lipschitz_bound(model, x)
    for word in words:
        assert word in str(info.value), str(info.value)
    assert "tlparse" not in str(info.value), str(info.value)
