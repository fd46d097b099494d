"""Tests for captum_rig.metrics: mask energy and deletion/insertion against hand-computed values."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from captum_rig.metrics import accuracy, deletion_insertion, mask_energy, mean_colour_baseline

# -- mask energy -----------------------------------------------------------------------


def test_mask_energy_hand_computed_4x4():
    """A 4×4 map with mass 1+2+3+4 on the object out of 20 in all scores 10/20."""
    a = torch.zeros(1, 2, 4, 4)
    a[0, 0, 0, 0], a[0, 1, 0, 0] = 1.0, -2.0  # on the object: |1| + |-2| = 3
    a[0, 0, 1, 1] = 3.0  # on the object
    a[0, 1, 1, 0] = -4.0  # on the object
    a[0, 0, 3, 3] = 6.0  # off
    a[0, 1, 2, 3] = -4.0  # off
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, :2, :2] = True
    assert mask_energy(a, masks).tolist() == [10 / 20], "(3 + 3 + 4) / (10 + 6 + 4)"


def test_mask_energy_extremes_and_even_spread():
    """All mass on the mask scores 1, none scores 0, an even spread scores the mask's area."""
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:, :2, :] = True
    a = torch.zeros(3, 3, 4, 4)
    a[0, :, 0, 0] = -2.0  # sign does not matter
    a[1, :, 3, 3] = 1.0
    a[2] = 1.0
    np.testing.assert_allclose(mask_energy(a, masks).numpy(), [1.0, 0.0, 0.5])


def test_mask_energy_zero_map_is_nan():
    """An all-zero map has no mass to share: NaN, not 0 or an error."""
    masks = torch.ones(1, 4, 4, dtype=torch.bool)
    assert torch.isnan(mask_energy(torch.zeros(1, 3, 4, 4), masks)).all(), "zero map: NaN"


def test_mask_energy_accepts_float_masks():
    """A 0/1 float mask gives the same scores as the bool mask."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 6, 6, generator=g)
    masks = torch.rand(2, 6, 6, generator=g) > 0.5
    torch.testing.assert_close(mask_energy(a, masks.float()), mask_energy(a, masks))


def _dilate_loop(mask: np.ndarray, t: int) -> np.ndarray:
    """Reference dilation: a pixel is in when some mask pixel is within t in each axis."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for i in range(h):
        for j in range(w):
            out[i, j] = mask[max(0, i - t) : i + t + 1, max(0, j - t) : j + t + 1].any()
    return out


def test_mask_energy_tolerance_is_a_square_dilation():
    """tolerance=t counts mass within t pixels (Chebyshev) of the mask, as a loop says."""
    g = torch.Generator().manual_seed(1)
    a = torch.rand(3, 2, 9, 7, generator=g)
    masks = torch.rand(3, 9, 7, generator=g) > 0.85
    mass = a.abs().sum(1).double().numpy()
    for t in (1, 2):
        expected = [
            mass[n][_dilate_loop(masks[n].numpy(), t)].sum() / mass[n].sum() for n in range(3)
        ]
        np.testing.assert_allclose(mask_energy(a, masks, tolerance=t).numpy(), expected)


def test_mask_energy_tolerance_one_pixel():
    """Mass one pixel diagonal from a one-pixel mask is on it with tolerance 1, not 0 or 2 away."""
    masks = torch.zeros(1, 5, 5, dtype=torch.bool)
    masks[0, 2, 2] = True
    a = torch.zeros(1, 1, 5, 5)
    a[0, 0, 1, 1] = 1.0  # diagonal neighbour
    a[0, 0, 0, 4] = 1.0  # two pixels away
    assert mask_energy(a, masks).tolist() == [0.0]
    assert mask_energy(a, masks, tolerance=1).tolist() == [0.5]
    assert mask_energy(a, masks, tolerance=2).tolist() == [1.0]


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((torch.zeros(4, 4), torch.zeros(1, 4, 4, dtype=torch.bool)), ValueError, "attributions"),
        (([[1.0]], torch.zeros(1, 4, 4, dtype=torch.bool)), TypeError, "attributions"),
        ((torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 3, dtype=torch.bool)), ValueError, "masks"),
        ((torch.zeros(1, 3, 4, 4), [[True]]), TypeError, "masks"),
        ((torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4), -1), ValueError, "tolerance"),
        ((torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4), 1.5), TypeError, "tolerance"),
        ((torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4), True), TypeError, "tolerance"),
    ],
)
def test_mask_energy_bad_input(args, error, match):
    """Bad shapes, types and tolerances raise errors naming the argument."""
    with pytest.raises(error, match=match):
        mask_energy(*args)


# -- deletion / insertion ---------------------------------------------------------------


class _Linear(torch.nn.Module):
    """Class 1 logit = Σ_p w_p x_p over a 2×2 one-channel image, class 0 logit = 0."""

    def __init__(self, weights):
        super().__init__()
        self.w = torch.tensor(weights, dtype=torch.float32).view(1, 1, 2, 2)
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        s = (x * self.w).sum((1, 2, 3))
        return torch.stack([torch.zeros_like(s), s], 1)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _trapezoid_quarters(p):
    """Trapezoid rule over five equally spaced points in [0, 1]."""
    return 0.25 * (p[0] / 2 + p[1] + p[2] + p[3] + p[4] / 2)


def test_deletion_insertion_known_order_hand_computed():
    """Weights 1..4, map ranks pixels 1, 2, 3, 0: curves and AUCs as worked out by hand."""
    model = _Linear([1.0, 2.0, 3.0, 4.0])
    x = torch.ones(1, 1, 2, 2)
    a = torch.tensor([0.1, 0.4, 0.3, 0.2]).view(1, 1, 2, 2)  # order: pixel 1, 2, 3, 0
    r = deletion_insertion(model, x, a, target=1, n_steps=4, baseline=torch.zeros_like(x))
    deletion = [_sigmoid(z) for z in (10, 8, 5, 1, 0)]  # remove w=2, then 3, then 4, then 1
    insertion = [_sigmoid(z) for z in (0, 2, 5, 9, 10)]
    np.testing.assert_allclose(r["fractions"].numpy(), [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(r["deletion"][0].numpy(), deletion, rtol=1e-6)
    np.testing.assert_allclose(r["insertion"][0].numpy(), insertion, rtol=1e-6)
    np.testing.assert_allclose(r["deletion_auc"].item(), _trapezoid_quarters(deletion), rtol=1e-6)
    np.testing.assert_allclose(r["insertion_auc"].item(), _trapezoid_quarters(insertion), rtol=1e-6)


def test_scores_on_every_device(device):
    """Both scores run where the tensors live and give the CPU's hand-computed values."""
    model = _Linear([1.0, 2.0, 3.0, 4.0])
    model.w = model.w.to(device)
    x = torch.ones(1, 1, 2, 2, device=device)
    a = torch.tensor([0.1, 0.4, 0.3, 0.2], device=device).view(1, 1, 2, 2)
    r = deletion_insertion(model, x, a, target=1, n_steps=4, baseline=torch.zeros_like(x))
    assert r["deletion_auc"].device.type == device.type, r["deletion_auc"].device
    deletion = [_sigmoid(z) for z in (10, 8, 5, 1, 0)]
    np.testing.assert_allclose(r["deletion"][0].cpu().numpy(), deletion, rtol=1e-6)
    masks = torch.zeros(1, 2, 2, dtype=torch.bool, device=device)
    masks[0, 0] = True  # pixels 0 and 1: mass 0.5 of 1.0
    np.testing.assert_allclose(mask_energy(a, masks, tolerance=1).cpu().numpy(), [1.0])
    np.testing.assert_allclose(mask_energy(a, masks).cpu().numpy(), [0.5], rtol=1e-6)


def test_deletion_insertion_target_zero():
    """Scoring class 0 gives 1 − p(class 1) at every step."""
    model = _Linear([1.0, 2.0, 3.0, 4.0])
    x = torch.ones(1, 1, 2, 2)
    a = torch.tensor([0.1, 0.4, 0.3, 0.2]).view(1, 1, 2, 2)
    base = torch.zeros_like(x)
    r0 = deletion_insertion(model, x, a, target=0, n_steps=4, baseline=base)
    r1 = deletion_insertion(model, x, a, target=1, n_steps=4, baseline=base)
    torch.testing.assert_close(r0["deletion"], 1 - r1["deletion"])


def test_deletion_insertion_ties_break_by_pixel_index():
    """Equal importance deletes pixels in row-major order; the sign of a map does not matter."""
    model = _Linear([1.0, 2.0, 3.0, 4.0])
    x = torch.ones(1, 1, 2, 2)
    base = torch.zeros_like(x)
    ties = deletion_insertion(model, x, torch.ones(1, 1, 2, 2), 1, n_steps=4, baseline=base)
    expected = [_sigmoid(z) for z in (10, 9, 7, 4, 0)]  # pixel 0, 1, 2, then 3
    np.testing.assert_allclose(ties["deletion"][0].numpy(), expected, rtol=1e-6)
    a = torch.tensor([0.1, 0.4, 0.3, 0.2]).view(1, 1, 2, 2)
    pos = deletion_insertion(model, x, a, 1, n_steps=4, baseline=base)
    neg = deletion_insertion(model, x, -a, 1, n_steps=4, baseline=base)
    torch.testing.assert_close(pos["deletion"], neg["deletion"])


def test_deletion_insertion_ties_on_a_large_map():
    """On a 16×16 map of equal importance, deletion takes pixels in row-major order."""

    class FirstRows(torch.nn.Module):
        # class 1 logit: the brightness of the first four rows (the first 64 pixels)
        def forward(self, x):
            s = 10 * x[:, :, :4].mean((1, 2, 3))
            return torch.stack([torch.zeros_like(s), s], 1)

    x = torch.ones(1, 1, 16, 16)
    r = deletion_insertion(
        FirstRows(), x, torch.ones_like(x), 1, n_steps=4, baseline=torch.zeros_like(x)
    )
    # after 64 deletions (a quarter) the first four rows are gone: logit 0
    np.testing.assert_allclose(r["deletion"][0, :2].numpy(), [_sigmoid(10), 0.5], rtol=1e-6)


def test_deletion_insertion_int_target_means_every_image():
    """target=1 scores class 1 of every image, as target=[1, 1, 1] does."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 2, 2, generator=g)
    a = torch.rand(3, 1, 2, 2, generator=g)
    model = _Linear([1.0, -2.0, 3.0, 0.5])
    one = deletion_insertion(model, x, a, 1, n_steps=4)
    listed = deletion_insertion(model, x, a, [1, 1, 1], n_steps=4)
    torch.testing.assert_close(one["deletion"], listed["deletion"])
    zero = deletion_insertion(model, x, a, 0, n_steps=4)
    assert not torch.allclose(zero["deletion"], one["deletion"]), "the class matters"


def test_deletion_insertion_sums_channels_of_the_map():
    """Importance is |a| summed over channels: two channels rank like their absolute sum."""
    model = _Linear([1.0, 2.0, 3.0, 4.0])
    x = torch.ones(1, 1, 2, 2)
    base = torch.zeros_like(x)
    a2 = torch.tensor([[0.1, -0.1, 0.0, 0.2], [0.0, -0.3, 0.3, 0.0]]).view(1, 2, 2, 2)
    summed = a2.abs().sum(1, keepdim=True)  # 0.1, 0.4, 0.3, 0.2
    r2 = deletion_insertion(model, x, a2, 1, n_steps=4, baseline=base)
    r1 = deletion_insertion(model, x, summed, 1, n_steps=4, baseline=base)
    torch.testing.assert_close(r2["deletion"], r1["deletion"])


def test_deletion_insertion_uneven_steps():
    """With 3 steps over 4 pixels the fractions are round(s·4/3)/4: 0, 1/4, 3/4, 1."""
    model = _Linear([1.0, 2.0, 3.0, 4.0])
    x = torch.ones(1, 1, 2, 2)
    r = deletion_insertion(model, x, torch.ones(1, 1, 2, 2), 1, n_steps=3)
    np.testing.assert_allclose(r["fractions"].numpy(), [0, 0.25, 0.75, 1])


def test_deletion_insertion_default_baseline_is_mean_colour():
    """No baseline means each image's mean colour: deletion ends at the mean-colour image."""
    model = _Linear([1.0, 2.0, 3.0, 4.0])
    x = torch.tensor([0.0, 1.0, 1.0, 1.0]).view(1, 1, 2, 2)  # mean 0.75
    r = deletion_insertion(model, x, torch.rand(1, 1, 2, 2), 1, n_steps=2)
    np.testing.assert_allclose(r["deletion"][0, -1].item(), _sigmoid(0.75 * 10), rtol=1e-6)
    np.testing.assert_allclose(r["insertion"][0, 0].item(), _sigmoid(0.75 * 10), rtol=1e-6)
    torch.testing.assert_close(mean_colour_baseline(x), torch.full_like(x, 0.75))


class _RegionModel(torch.nn.Module):
    """Class 1 logit grows with the brightness of the top-left quadrant; class 0 is 0."""

    def forward(self, x):
        s = 20 * (x[:, :, :4, :4].mean((1, 2, 3)) - 0.5)
        return torch.stack([torch.zeros_like(s), s], 1)


def test_deletion_insertion_good_map_beats_bad_map():
    """Deleting the region the model reads first drops p fastest; ends are the two images."""
    images = torch.ones(2, 3, 8, 8)
    good = torch.zeros(2, 1, 8, 8)
    good[..., :4, :4] = 1.0  # the region the model reads
    bad = 1.0 - good
    target = torch.tensor([1, 1])
    baseline = torch.zeros_like(images)
    r_good = deletion_insertion(_RegionModel(), images, good, target, 4, baseline=baseline)
    r_bad = deletion_insertion(_RegionModel(), images, bad, target, 4, baseline=baseline)
    p_image, p_base = torch.sigmoid(torch.tensor(10.0)), torch.sigmoid(torch.tensor(-10.0))
    for r in (r_good, r_bad):
        assert r["deletion"].shape == (2, 5), r["deletion"].shape
        torch.testing.assert_close(r["deletion"][:, 0].float(), p_image.expand(2))
        torch.testing.assert_close(r["deletion"][:, -1].float(), p_base.expand(2))
        torch.testing.assert_close(r["insertion"][:, 0].float(), p_base.expand(2))
    assert (r_good["deletion_auc"] < r_bad["deletion_auc"] - 0.3).all(), "good map deletes faster"
    assert (r_good["insertion_auc"] > r_bad["insertion_auc"] + 0.3).all(), "and inserts faster"


def test_deletion_insertion_batches_equal_one_pass():
    """batch_size only splits the forward passes: ceil(N·(steps+1)/batch) calls, same curves."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 2, 2, generator=g)
    a = torch.rand(3, 1, 2, 2, generator=g)
    target = torch.tensor([1, 0, 1])
    one = _Linear([1.0, -2.0, 3.0, 0.5])
    many = _Linear([1.0, -2.0, 3.0, 0.5])
    r_one = deletion_insertion(one, x, a, target, n_steps=4)
    r_many = deletion_insertion(many, x, a, target, n_steps=4, batch_size=4)
    for key in ("deletion", "insertion", "deletion_auc", "insertion_auc"):
        torch.testing.assert_close(r_many[key], r_one[key])
    assert one.calls == [15, 15], one.calls
    assert many.calls == [4, 4, 4, 3] * 2, many.calls


def test_deletion_insertion_per_image_equals_batch():
    """Each image's curves are those of running it alone."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 8, 8, generator=g)
    a = torch.randn(3, 3, 8, 8, generator=g)
    target = torch.tensor([1, 0, 1])
    batch = deletion_insertion(_RegionModel(), x, a, target, n_steps=5)
    for n in range(3):
        alone = deletion_insertion(_RegionModel(), x[n : n + 1], a[n : n + 1], target[n], 5)
        torch.testing.assert_close(alone["deletion"][0], batch["deletion"][n])
        torch.testing.assert_close(alone["insertion"][0], batch["insertion"][n])


def test_deletion_insertion_leaves_inputs_alone():
    """Images, maps and baseline are not modified."""
    x = torch.rand(2, 3, 8, 8)
    a = torch.randn(2, 3, 8, 8)
    b = torch.rand(2, 3, 8, 8)
    copies = [t.clone() for t in (x, a, b)]
    deletion_insertion(_RegionModel(), x, a, torch.tensor([1, 0]), 4, baseline=b)
    for before, after in zip(copies, (x, a, b)):
        assert torch.equal(before, after), "input modified"


def _with(a, image, value):
    """``a`` with one value of map ``image`` replaced by ``value`` (NaN, inf)."""
    a[image, 0, 2, 3] = value
    return a


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_steps=0), ValueError, "n_steps"),
        (dict(n_steps=2.0), TypeError, "n_steps"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(attributions=torch.rand(2, 3, 4, 8)), ValueError, "attributions"),
        (dict(attributions=torch.rand(3, 8, 8)), ValueError, "attributions"),
        (dict(images=torch.rand(3, 8, 8)), ValueError, "images"),
        (dict(images=torch.ones(2, 3, 8, 8, dtype=torch.uint8)), TypeError, "images"),
        (dict(target=torch.tensor([0, 1, 1])), ValueError, "target"),
        (dict(target=torch.tensor([0.0, 1.0])), TypeError, "target"),
        (dict(target=torch.tensor([0, 2])), ValueError, "target"),
        (dict(target=torch.tensor([-1, 0])), ValueError, "target"),
        (dict(baseline=torch.rand(1, 3, 8, 8)), ValueError, "baseline"),
        (dict(model="resnet"), TypeError, "model"),
        (dict(attributions=_with(torch.rand(2, 3, 8, 8), 1, math.nan)), ValueError, "finite"),
        (dict(attributions=_with(torch.rand(2, 3, 8, 8), 0, math.inf)), ValueError, r"\[0\]"),
    ],
)
def test_deletion_insertion_bad_input(kwargs, error, match):
    """Mismatched shapes, bad counts and classes raise errors naming the argument."""
    args = dict(
        model=_RegionModel(),
        images=torch.rand(2, 3, 8, 8),
        attributions=torch.rand(2, 3, 8, 8),
        target=torch.tensor([0, 1]),
    )
    args.update(kwargs)
    with pytest.raises(error, match=match):
        deletion_insertion(**args)


def test_accuracy_counts_correct_predictions_in_batches():
    """accuracy equals a hand count, for every batch size, and restores training mode."""
    # logits = one-hot of the first pixel's rounded value: predictions known by construction
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False), nn.Dropout(0.5))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]))
    x = torch.zeros(5, 1, 2, 2)
    predicted = torch.tensor([0, 1, 2, 2, 1])
    x.view(5, 4)[torch.arange(5), predicted] = 1.0
    labels = torch.tensor([0, 1, 2, 0, 0])  # 3 of 5 right
    model.train()
    for batch_size in (1, 2, 5, 64):
        got = accuracy(model, x, labels, batch_size=batch_size)
        assert got == 0.6, f"batch_size={batch_size}: {got}"
    assert model.training and model[2].training, "training mode not restored"


def _three_classes():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


@pytest.mark.parametrize(
    "labels, error, match",
    [
        (torch.tensor([0, 1, 2]), ValueError, r"labels must have shape \(5,\)"),
        (torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0]), TypeError, "labels must be an integer"),
        (torch.tensor([0, 1, 2, 3, 1]), ValueError, r"labels must be class indices in \[0, 2\]"),
        (torch.tensor([0, -1, 2, 0, 1]), ValueError, r"labels must be class indices"),
    ],
)
def test_accuracy_bad_labels(labels, error, match):
    """Wrong length, float labels and classes the model cannot output fail naming labels."""
    with pytest.raises(error, match=match):
        accuracy(_three_classes(), torch.rand(5, 1, 2, 2), labels, batch_size=2)
