"""fourier_heat_map against a literal loop over every DFT frequency, and its guarantees."""

import numpy as np
import pytest
import torch
from torch import nn

from captum_rig.fourier import fourier_basis, fourier_heat_map
from captum_rig.fourier.heat_map import _distinct_frequencies, _signs

from ._numpy_fourier import numpy_basis


class MeanOnly(nn.Module):
    """Two classes by the sign of the mean of channel 0 minus 0.5."""

    def forward(self, x):
        m = x[:, 0].mean((-2, -1)) - 0.5
        return torch.stack([m, -m], 1)


class Counting(nn.Module):
    """Counts the images and the largest batch the wrapped model sees."""

    def __init__(self, model):
        super().__init__()
        self.model, self.images, self.largest = model, 0, 0

    def forward(self, x):
        self.images += len(x)
        self.largest = max(self.largest, len(x))
        return self.model(x)


def tiny_model(shape=(3, 8, 8), classes=4):
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), classes)).double()


def images(n=5, shape=(3, 8, 8), seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=torch.float64) * 0.6 + 0.2


def literal_heat_map(model, x, labels, eps, seed, clip):
    """Every (i, j) of the DFT on its own: numpy basis image, signs, clip, one forward each."""
    h, w = x.shape[-2:]
    _, _, which = _distinct_frequencies(h, w)
    rates = np.zeros((h, w))
    with torch.no_grad():
        for i in range(h):
            for j in range(w):
                u = torch.from_numpy(numpy_basis(h, w, i, j))
                s = _signs(seed, int(which[i, j]), x.shape[0], x.shape[1]).double()
                perturbed = x + eps * s[:, :, None, None] * u
                if clip:
                    perturbed = perturbed.clamp(0, 1)
                rates[i, j] = (model(perturbed).argmax(1) != labels).double().mean().item()
    return np.fft.fftshift(rates)


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 7, 6)], ids=str)
@pytest.mark.parametrize("clip", [True, False])
def test_matches_literal_loop(shape, clip):
    """The map equals a literal per-frequency loop with numpy's inverse FFT basis images."""
    model = tiny_model(shape)
    x = images(shape=shape)
    y = torch.tensor([0, 1, 2, 3, 0])
    got = fourier_heat_map(model, x, y, eps=3.0, seed=5, clip=clip, progress=False)
    expected = literal_heat_map(model, x, y, 3.0, 5, clip)
    assert got.shape == shape[1:] and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected)


def test_mean_only_model_is_blind_to_every_nonzero_frequency():
    """Only the zero frequency (the centre) changes the mean: the rest of the map is 0."""
    x = torch.full((6, 3, 8, 8), 0.55, dtype=torch.float64)
    heat = fourier_heat_map(MeanOnly(), x, None, eps=4.0, clip=False, progress=False)
    centre = heat[4, 4].item()
    heat[4, 4] = 0
    assert bool((heat == 0).all()), "no other frequency changes the mean"
    assert 0 < centre <= 1, "eps / sqrt(HW) = 0.5 flips every image with a negative sign"


def test_zero_frequency_at_the_centre_and_point_symmetric():
    """Entry (H//2 + fy, W//2 + fx) is frequency (fy, fx); f and -f share their value."""
    model = tiny_model((3, 9, 8))
    x = images(n=8, shape=(3, 9, 8))
    heat = fourier_heat_map(model, x, torch.zeros(8, dtype=torch.long), 6.0, progress=False)
    unshifted = torch.fft.ifftshift(heat)
    mirrored = torch.roll(unshifted.flip(0, 1), shifts=(1, 1), dims=(0, 1))
    assert torch.equal(unshifted, mirrored)
    dc = torch.full((4, 1, 9, 8), 0.52)
    dc = fourier_heat_map(MeanOnly(), dc, None, 4.0, clip=False, progress=False)
    assert dc.argmax().item() == 4 * 8 + 4


def test_seeded_and_independent_of_batching():
    """The same seed gives the same map for any batch size; another seed, other signs."""
    model = Counting(tiny_model())
    x = images(n=7)
    y = torch.randint(4, (7,))
    a = fourier_heat_map(model, x, y, 5.0, batch_size=64, progress=False)
    model.largest = 0
    b = fourier_heat_map(model, x, y, 5.0, batch_size=5, progress=False)
    assert model.largest <= 5, "batch_size bounds every forward"
    c = fourier_heat_map(model, x, y, 5.0, batch_size=1, progress=False)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, fourier_heat_map(model, x, y, 5.0, seed=1, progress=False))


def test_one_forward_per_image_and_distinct_basis_image():
    """(H·W - 4) / 2 + 4 forwards per image on 8x8: f and -f are one image, evaluated once.

    The four self-conjugate frequencies (0 or 4 on each axis) are their own pair.
    """
    model = Counting(tiny_model())
    fourier_heat_map(model, images(n=3), torch.zeros(3, dtype=torch.long), 1.0, progress=False)
    assert model.images == 3 * 34, "34 distinct basis images of 8x8"
    fourier_heat_map(model, images(n=3), None, 1.0, progress=False)
    assert model.images == 2 * 3 * 34 + 3, "and the clean predictions when there are no labels"


def test_basis_images_are_yins():
    """fourier_basis equals the inverse DFT of a pair of deltas, normalised."""
    fy, fx, _ = _distinct_frequencies(6, 5)
    got = fourier_basis(6, 5, fy, fx)
    for k in range(len(fy)):
        expected = numpy_basis(6, 5, int(fy[k]) % 6, int(fx[k]) % 5)
        np.testing.assert_allclose(got[k].numpy(), expected, atol=1e-12)


def test_eval_mode_and_progress(capsys):
    """The model runs in eval mode, its flag comes back; the bar is drawn when asked."""
    model = tiny_model().train()
    fourier_heat_map(model, images(n=2), None, 1.0)
    assert model.training
    assert "Fourier heat map" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(eps=0.0), ValueError, "eps must be > 0"),
        (dict(eps=-1.0), ValueError, "eps must be > 0"),
        (dict(images=torch.rand(2, 3, 8, 8) * 2), ValueError, r"images must hold pixel values"),
        (dict(images=torch.rand(3, 8, 8)), ValueError, "images must have 4 dims"),
        (dict(labels=torch.zeros(3, dtype=torch.long)), ValueError, "labels must have shape"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(clip=1), TypeError, "clip must be a bool"),
        (dict(model="net"), TypeError, "model must be callable"),
    ],
    ids=["eps 0", "eps < 0", "box", "dims", "labels", "seed", "batch_size", "clip", "model"],
)
def test_bad_input_raises_naming_the_argument(kwargs, error, message):
    """eps <= 0, images outside [0, 1] and other bad arguments: errors naming them."""
    call = dict(model=tiny_model(), images=torch.rand(2, 3, 8, 8), labels=None, eps=1.0)
    call.update(kwargs)
    with pytest.raises(error, match=message):
        fourier_heat_map(progress=False, **call)
