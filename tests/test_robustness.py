"""Tests for captum_rig.robustness: PGD through torchattacks and the Table 2 report."""

import csv
import math
import os

import pytest
import torch
import torch.nn.functional as F
from _reference import LinearTwoClass
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from captum_rig._checks import NOT_A_BATCH
from captum_rig.robustness import (
    RobustnessReport,
    attack_targets,
    evaluate_robustness,
    pgd_attack,
)

NUM_CLASSES = 5


def small_convnet(dtype=torch.float32) -> nn.Module:
    """A tiny conv net on (N, 3, 8, 8) images, with BatchNorm and Dropout."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, NUM_CLASSES),
    ).to(dtype)
    with torch.no_grad():  # non-trivial running statistics for eval mode
        model[1].running_mean.uniform_(-0.1, 0.1)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


def reference_pgd(model, x, y, eps, alpha, steps, norm="Linf", target=None):
    """Plain PGD, no random start, written from the Madry et al. update rule."""
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        logits = model(adv)
        loss = F.cross_entropy(logits, y if target is None else target)
        (grad,) = torch.autograd.grad(loss, adv)
        if target is not None:
            grad = -grad  # descend on the target's loss
        adv = adv.detach()
        if norm == "Linf":
            adv = adv + alpha * grad.sign()
            delta = (adv - x).clamp(-eps, eps)
        else:
            g_norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-10
            adv = adv + alpha * grad / g_norm
            delta = adv - x
            d_norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            delta = delta * torch.clamp(eps / d_norm, max=1.0)
        adv = (x + delta).clamp(0, 1)
    return adv


class ConstantModel(nn.Module):
    """Always predicts ``cls``; its gradient is zero, so no attack can move it."""

    def __init__(self, cls: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        logits = torch.zeros(num_classes)
        logits[cls] = 1.0
        self.register_buffer("logits", logits)

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(1, keepdim=True)


def linear_two_class(margin: float, size: int = 4) -> tuple:
    """A 2-class linear model and one image at L∞ distance margin/‖w‖₁ from the boundary.

    Logits are ``[0, w·x + b]`` with ``w = ±1``; the image is 0.5 everywhere and
    predicted as class 0 with ``w·x + b = -margin``.
    """
    d = size * size
    w = torch.where(torch.arange(d) % 3 == 0, -1.0, 1.0).double()
    x = torch.full((1, 1, size, size), 0.5, dtype=torch.float64)
    b = -margin - float(w @ x.flatten())
    return LinearTwoClass(w, b), x, w


@pytest.fixture
def data():
    """Sixteen 8×8 RGB images in [0, 1] with labels."""
    return torch.rand(16, 3, 8, 8), torch.randint(0, NUM_CLASSES, (16,))


# --------------------------------------------------------------------------- pgd_attack


@pytest.mark.parametrize("targeted", [True, False], ids=["targeted", "untargeted"])
@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_pgd_matches_reference_loop(targeted, norm):
    """Without random start, pgd_attack equals a plain PGD loop written here."""
    model = small_convnet(torch.float64).eval()
    x = torch.rand(6, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, NUM_CLASSES, (6,))
    target = (y + 2) % NUM_CLASSES if targeted else None
    eps = 8 / 255 if norm == "Linf" else 0.5
    alpha = eps / 4
    ours = pgd_attack(model, x, y, targets=target, eps=eps, steps=7, norm=norm, random_start=False)
    ref = reference_pgd(model, x, y, eps, alpha, steps=7, norm=norm, target=target)
    assert torch.allclose(ours, ref, atol=1e-10), (
        f"max diff {(ours - ref).abs().max().item():.3g} from the reference loop"
    )
    assert (ours - x).abs().max() > 0, "the attack did not move the images"


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_pgd_stays_in_ball_and_box(norm, device):
    """The perturbation respects ‖δ‖ ≤ ε and the images stay in [0, 1], random start on."""
    model = small_convnet().to(device)
    x = torch.rand(8, 3, 8, 8, device=device)
    x[:2] = x[:2].round()  # pixels on the box faces
    y = torch.randint(0, NUM_CLASSES, (8,), device=device)
    eps = 4 / 255 if norm == "Linf" else 0.3
    adv = pgd_attack(model, x, y, targets=(y + 1) % NUM_CLASSES, eps=eps, norm=norm)
    delta = (adv - x).flatten(1)
    size = delta.abs().max(1).values if norm == "Linf" else delta.norm(dim=1)
    assert bool((size <= eps * (1 + 1e-5) + 1e-7).all()), f"‖δ‖ = {size.max()} > ε = {eps}"
    assert adv.min() >= 0 and adv.max() <= 1, "adversarial images left [0, 1]"
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device, (
        "shape, dtype or device changed"
    )


def test_pgd_default_alpha_and_eps():
    """Defaults are ε = 4/255, 20 steps and α = ε/4 = 1/255: same as spelling them out."""
    model = small_convnet().eval()
    x, y = torch.rand(4, 3, 8, 8), torch.randint(0, NUM_CLASSES, (4,))
    default = pgd_attack(model, x, y, random_start=False)
    explicit = pgd_attack(model, x, y, eps=4 / 255, alpha=1 / 255, steps=20, random_start=False)
    assert torch.equal(default, explicit), "defaults are not eps=4/255, alpha=1/255, 20 steps"


def test_pgd_is_seeded_and_keeps_global_rng():
    """The random start depends on seed only and the global random state is untouched."""
    model = small_convnet()
    x, y = torch.rand(4, 3, 8, 8), torch.randint(0, NUM_CLASSES, (4,))
    state = torch.get_rng_state()
    a = pgd_attack(model, x, y, seed=3)
    assert torch.equal(torch.get_rng_state(), state), "pgd_attack changed the global RNG"
    b = pgd_attack(model, x, y, seed=3)
    c = pgd_attack(model, x, y, seed=4)
    assert torch.equal(a, b), "same seed, different adversarial images"
    assert not torch.equal(a, c), "different seeds gave the same random start"


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_pgd_per_image_eps_equals_one_by_one(norm):
    """A (N,) tensor eps gives each image what a scalar-eps run on it alone gives."""
    model = small_convnet(torch.float64).eval()
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, NUM_CLASSES, (4,))
    eps = torch.tensor([0.0, 0.01, 0.05, 0.2], dtype=torch.float64)
    batch = pgd_attack(model, x, y, eps=eps, steps=5, norm=norm, random_start=False)
    for i in range(4):
        one = pgd_attack(
            model,
            x[i : i + 1],
            y[i : i + 1],
            eps=float(eps[i]),
            steps=5,
            norm=norm,
            random_start=False,
        )
        assert torch.allclose(batch[i : i + 1], one, atol=1e-12), f"image {i} differs"
    assert torch.isfinite(batch).all(), "per-image eps produced NaN"
    assert torch.equal(batch[0], x[0]), "eps = 0 moved the image"


def test_pgd_leaves_model_and_inputs_alone():
    """Training flags restored, inputs unchanged, no requires_grad or .grad left."""
    model = small_convnet().train()
    model[1].eval()  # a mixed state must come back exactly
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(4, 3, 8, 8), torch.randint(0, NUM_CLASSES, (4,))
    x_copy = x.clone()
    adv = pgd_attack(model, x, y, targets=(y + 1) % NUM_CLASSES)
    assert [m.training for m in model.modules()] == flags, "training flags not restored"
    assert torch.equal(x, x_copy), "inputs were modified"
    assert not adv.requires_grad and not x.requires_grad, "stray requires_grad"
    assert all(p.grad is None for p in model.parameters()), "parameter gradients left"
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), f"model state {k} changed (BatchNorm in train mode?)"


def test_pgd_under_no_grad():
    """pgd_attack works when called inside torch.no_grad()."""
    model = small_convnet()
    x, y = torch.rand(2, 3, 8, 8), torch.randint(0, NUM_CLASSES, (2,))
    with torch.no_grad():
        adv = pgd_attack(model, x, y, random_start=False)
    assert (adv - x).abs().max() > 0, "no attack happened under no_grad"


# --------------------------------------------------------------------------- targets


def test_attack_targets_never_the_label_and_deterministic():
    """Targets differ from labels, cover every wrong class and repeat for one seed."""
    labels = torch.arange(10).repeat(50)
    a = attack_targets(labels, 10, generator=7)
    b = attack_targets(labels, 10, generator=7)
    assert torch.equal(a, b), "same seed, different targets"
    assert bool((a != labels).all()), "a target equals its label"
    assert bool(((a >= 0) & (a < 10)).all()), "target out of range"
    offsets = (a - labels - 1) % 10
    assert set(offsets.tolist()) == set(range(9)), "not every wrong class is drawn"


def test_same_targets_for_every_model(data):
    """Targets depend on labels and seed only, not on the models compared."""
    x, y = data
    a = evaluate_robustness(small_convnet(), x, y, steps=1, progress=False, batch_size=5)
    b = evaluate_robustness(
        {"m1": small_convnet(), "m2": ConstantModel(0)},
        x,
        y,
        steps=1,
        progress=False,
        batch_size=5,
    )
    assert torch.equal(a.targets, b.targets), "targets changed with the models"
    assert bool((a.targets != y).all()), "a target equals its label"
    c = evaluate_robustness(small_convnet(), x, y, steps=1, progress=False, seed=1)
    assert not torch.equal(a.targets, c.targets), "the seed does not change the targets"


def test_identical_models_identical_rows(data):
    """Two copies of a model get the same images, targets and random starts: same row."""
    x, y = data
    model = small_convnet()
    copy = small_convnet()
    copy.load_state_dict(model.state_dict())
    report = evaluate_robustness({"a": model, "b": copy}, x, y, progress=False, batch_size=6)
    a, b = report["a"], report["b"]
    assert torch.equal(a.adversarial_predictions, b.adversarial_predictions), (
        "copies of one model were attacked differently"
    )
    assert a.to_dict() | {"model": "b"} == b.to_dict(), "rows of identical models differ"


# --------------------------------------------------------------------------- rates


def test_rates_hand_counted_constant_model(data):
    """A model that always says class 2: rates are counts of labels/targets equal to 2."""
    x, y = data
    report = evaluate_robustness(ConstantModel(2), x, y, progress=False)
    row = report.rows[0]
    t = report.targets
    assert row.clean_accuracy == pytest.approx((y == 2).double().mean().item()), "clean acc"
    assert row.attack_success_rate == pytest.approx((t == 2).double().mean().item()), (
        "targeted success must count predictions equal to the target"
    )
    assert row.recovery_rate == pytest.approx((y == 2).double().mean().item()), "recovery"
    untargeted = evaluate_robustness(ConstantModel(2), x, y, targeted=False, progress=False)
    # untargeted: the images labelled 2 are the correct ones, and none of them flips
    assert untargeted.rows[0].attack_success_rate == 0.0, "a constant model never flips"
    assert untargeted.targets is None, "untargeted report has targets"


@pytest.mark.parametrize("targeted", [True, False], ids=["targeted", "untargeted"])
def test_rates_hand_counted_from_adversarial_images(data, targeted):
    """Rates equal counts over predictions on adversarial images made here."""
    x, y = data
    model = small_convnet().eval()
    report = evaluate_robustness(
        model,
        x,
        y,
        eps=16 / 255,
        targeted=targeted,
        random_start=False,
        progress=False,
        batch_size=16,
    )
    adv = pgd_attack(model, x, y, targets=report.targets, eps=16 / 255, random_start=False)
    with torch.no_grad():
        clean_pred = model(x).argmax(1)
        adv_pred = model(adv).argmax(1)
    n = len(y)
    row = report.rows[0]
    correct = clean_pred == y
    expected_success = (
        (adv_pred == report.targets).sum().item() / n
        if targeted
        else (adv_pred[correct] != y[correct]).sum().item() / correct.sum().item()
    )
    assert row.clean_accuracy == pytest.approx((clean_pred == y).sum().item() / n), "clean"
    assert row.attack_success_rate == pytest.approx(expected_success), "success rate"
    assert row.recovery_rate == pytest.approx((adv_pred == y).sum().item() / n), "recovery"
    assert row.n_images == n, "wrong image count"
    assert 0 < row.attack_success_rate, "a 16/255 attack on a random net should succeed"


def test_linear_targeted_attack_provably_succeeds_or_fails():
    """Margin m, ‖w‖₁ = 16: ε > m/16 flips every image to the target, ε < m/16 never."""
    margin = 0.01
    model, x, w = linear_two_class(margin)
    x = x.repeat(3, 1, 1, 1)
    y = torch.zeros(3, dtype=torch.long)
    needed = margin / w.abs().sum().item()  # 6.25e-4
    win = evaluate_robustness(model, x, y, eps=1.6 * needed, progress=False)
    lose = evaluate_robustness(model, x, y, eps=0.6 * needed, progress=False)
    assert bool((win.targets == 1).all()), "with 2 classes the target is the other class"
    assert win.rows[0].clean_accuracy == 1.0, "the image should be classified as 0"
    assert win.rows[0].attack_success_rate == 1.0, "an ε above the margin must succeed"
    assert win.rows[0].recovery_rate == 0.0, "no image should recover"
    assert lose.rows[0].attack_success_rate == 0.0, "an ε below the margin cannot succeed"
    assert lose.rows[0].recovery_rate == 1.0, "every image must keep its label"


def test_untargeted_success_counts_flips_of_correct_predictions(data):
    """Untargeted: success = flips among the correctly classified images, so the images
    recovered include every correct image that did not flip."""
    x, y = data
    report = evaluate_robustness(
        {"a": small_convnet(), "b": small_convnet()},
        x,
        y,
        targeted=False,
        norm="L2",
        eps=0.5,
        progress=False,
    )
    for row in report.rows:
        correct = row.clean_predictions == report.labels
        flipped = row.adversarial_predictions[correct] != report.labels[correct]
        assert row.attack_success_rate == pytest.approx(flipped.double().mean().item())
        kept = row.clean_accuracy * (1 - row.attack_success_rate)
        assert row.recovery_rate >= kept - 1e-12, row.model
    assert "over the correctly classified images" in report.to_markdown()


def test_untargeted_success_leaves_out_misclassified_images():
    """A model wrong on every image: nothing to flip, so the rate is NaN, not 100 %."""
    x = torch.rand(6, 3, 8, 8)
    y = torch.full((6,), 1)
    report = evaluate_robustness(ConstantModel(2), x, y, targeted=False, progress=False)
    assert report.rows[0].clean_accuracy == 0.0
    assert math.isnan(report.rows[0].attack_success_rate), report.rows[0]
    half = torch.tensor([2, 2, 2, 1, 1, 1])
    report = evaluate_robustness(ConstantModel(2), x, half, targeted=False, progress=False)
    assert report.rows[0].attack_success_rate == 0.0, "three correct, none flipped"


def test_iterable_data_equals_tensor_data(data):
    """A DataLoader, a list of batches, a pair and a tensor give the same report."""
    x, y = data
    model = small_convnet()
    kwargs = dict(steps=3, progress=False, batch_size=4)
    ref = evaluate_robustness(model, x, y, **kwargs)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    as_list = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 16, 4)]
    for other in (loader, as_list, (x, y)):
        report = evaluate_robustness(model, other, **kwargs)
        assert report.to_dict() == ref.to_dict(), f"{type(other).__name__} differs"
        assert torch.equal(report.targets, ref.targets), "targets differ"


def test_evaluate_restores_model_and_rng(data):
    """Flags restored, inputs untouched, global RNG untouched, no grads left."""
    x, y = data
    model = small_convnet().train()
    x_copy = x.clone()
    state = torch.get_rng_state()
    evaluate_robustness(model, x, y, steps=2, progress=False)
    assert model.training and model[1].training, "training flag not restored"
    assert torch.equal(x, x_copy), "images modified"
    assert torch.equal(torch.get_rng_state(), state), "global RNG state changed"
    assert all(p.grad is None for p in model.parameters()), "parameter gradients left"


def test_progress_bar_runs(data, capsys):
    """progress=True draws a tqdm bar on stderr and prints nothing on stdout."""
    x, y = data
    evaluate_robustness(small_convnet(), x, y, steps=1, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "", f"unexpected stdout: {captured.out!r}"
    assert "PGD" in captured.err, "no progress bar"


# --------------------------------------------------------------------------- report


def test_report_outputs(data, tmp_path):
    """to_dict, to_csv (atomic, readable) and to_markdown carry every model's numbers."""
    x, y = data
    report = evaluate_robustness(
        {"natural": small_convnet(), "robust": ConstantModel(1)},
        x,
        y,
        steps=2,
        progress=False,
    )
    assert isinstance(report, RobustnessReport), "wrong return type"
    d = report.to_dict()
    assert [r["model"] for r in d["rows"]] == ["natural", "robust"], "rows out of order"
    assert d["eps"] == pytest.approx(4 / 255) and d["alpha"] == pytest.approx(1 / 255), d
    path = tmp_path / "table2.csv"
    report.to_csv(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["natural", "robust"], "csv rows"
    assert float(rows[1]["recovery_rate"]) == pytest.approx(report["robust"].recovery_rate), (
        "the CSV holds the report's recovery rate"
    )
    assert os.listdir(tmp_path) == ["table2.csv"], "temporary file left behind"
    md = report.to_markdown()
    assert "| natural |" in md and "| robust |" in md, md
    assert "attack success" in md and "targeted Linf PGD" in md, md
    with pytest.raises(KeyError, match="nope"):
        report["nope"]


def test_to_csv_failure_leaves_old_file(data, tmp_path, monkeypatch):
    """A write that fails midway leaves the previous file and no temporary file."""
    x, y = data
    report = evaluate_robustness(small_convnet(), x, y, steps=1, progress=False)
    path = tmp_path / "table.csv"
    path.write_text("old")

    def boom(self, row):
        raise OSError("disk full")

    monkeypatch.setattr(csv.DictWriter, "writerow", boom)
    with pytest.raises(OSError, match="disk full"):
        report.to_csv(path)
    assert path.read_text() == "old", "the old file was overwritten"
    assert os.listdir(tmp_path) == ["table.csv"], "temporary file left behind"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(eps=-0.1), ValueError, "eps must be"),
        (dict(eps=float("nan")), ValueError, "eps must be"),
        (dict(eps="big"), TypeError, "eps must be a real number"),
        (dict(steps=0), ValueError, "steps must be >= 1"),
        (dict(steps=2.5), TypeError, "steps must be an integer"),
        (dict(alpha=0.0), ValueError, "alpha must be"),
        (dict(norm="L1"), ValueError, "norm must be one of"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    ],
)
def test_bad_settings(data, kwargs, error, match):
    """Bad settings raise an error that names the argument."""
    x, y = data
    with pytest.raises(error, match=match):
        evaluate_robustness(small_convnet(), x, y, progress=False, **kwargs)
    if "batch_size" not in kwargs:
        with pytest.raises(error, match=match):
            pgd_attack(small_convnet(), x, y, **kwargs)


def test_bad_data(data):
    """Integer, out-of-box, empty data and wrong labels raise naming the argument."""
    x, y = data
    model = small_convnet()
    run = lambda *a, **k: evaluate_robustness(model, *a, progress=False, **k)  # noqa: E731
    with pytest.raises(TypeError, match="data must be a floating point"):
        run((x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match=r"data must hold pixel values in \[0, 1\]"):
        run(x * 2 - 1, y)
    with pytest.raises(ValueError, match=r"labels must have shape \(16,\)"):
        run(x, y[:-1])
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        run(x, y.float())
    with pytest.raises(ValueError, match="labels is required"):
        run(x)
    with pytest.raises(ValueError, match="labels must be None"):
        run([(x, y)], labels=y)
    with pytest.raises(ValueError, match="data must not be empty"):
        run([])
    with pytest.raises(ValueError, match="data must not be empty"):
        run(x[:0], y[:0])
    with pytest.raises(ValueError, match=r"labels must be class indices in 0\.\.4"):
        run(x, y + NUM_CLASSES)
    with pytest.raises(ValueError, match=r"labels in data batch 1 must have shape \(4,\)"):
        run([(x[:4], y[:4]), (x[4:8], y[:3])])
    with pytest.raises(ValueError, match=r"images in data batch 1 must hold pixel values"):
        run([(x[:4], y[:4]), (x[4:8] + 2, y[4:8])])
    with pytest.raises(TypeError) as info:
        run([x])
    assert str(info.value) == NOT_A_BATCH.format(
        index=0, expected="an (images, labels) pair", got="Tensor"
    ), "a batch without labels is refused: the attack needs them"
    with pytest.raises(ValueError, match="labels must be None"):
        run((x, y), labels=y)


def test_bad_models(data):
    """Non-modules, empty dicts and disagreeing class counts raise clearly."""
    x, y = data
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        evaluate_robustness({"f": lambda t: t}, x, y, progress=False)
    with pytest.raises(ValueError, match="models must not be empty"):
        evaluate_robustness({}, x, y, progress=False)
    with pytest.raises(ValueError, match="same number of classes"):
        evaluate_robustness(
            {"a": small_convnet(), "b": ConstantModel(0, num_classes=7)},
            x,
            y,
            progress=False,
        )
    with pytest.raises(ValueError, match="logits of shape"):
        evaluate_robustness(nn.Flatten(0), x, y, progress=False)
    with pytest.raises(ValueError, match="per-image eps needs random_start=False"):
        pgd_attack(small_convnet(), x, y, eps=torch.full((16,), 0.1))


def test_every_model_is_checked_before_any_attack(data):
    """A model with another class count is refused before the first model is attacked."""
    x, y = data
    first = small_convnet()
    calls = []
    first.register_forward_pre_hook(lambda m, args: calls.append(len(args[0])))
    with pytest.raises(ValueError, match="same number of classes"):
        evaluate_robustness(
            {"a": first, "b": ConstantModel(0, num_classes=7)}, x, y, steps=3, progress=False
        )
    assert calls == [16], f"only the clean forward of the first batch may run, got {calls}"
