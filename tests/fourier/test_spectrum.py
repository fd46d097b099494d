"""frequency_spectrum (Algorithm 1 over radii) and FrequencySpectrum."""

import json
import os

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from captum_rig import RankSpectrum, rank_spectrum
from captum_rig.fourier import FrequencySpectrum, default_radii, frequency_spectrum, max_radius
from captum_rig.spectrum import Spectrum, accuracy_gap

from ._numpy_fourier import numpy_low_pass

matplotlib.use("Agg")


def tiny_model(classes=5, shape=(3, 8, 10), seed=0):
    """A small CNN with a bias towards no class: predictions change with the filter."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(shape[0], 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * shape[1] * shape[2], classes),
    ).double()


class MeanOnly(nn.Module):
    """Logits from the channel means only: blind to every non-zero frequency."""

    def __init__(self, channels=3, classes=4):
        super().__init__()
        self.linear = nn.Linear(channels, classes).double()

    def forward(self, x):
        return self.linear(x.mean((-2, -1)))


class Counting(nn.Module):
    """Counts the images and the largest batch the wrapped model sees."""

    def __init__(self, model):
        super().__init__()
        self.model, self.images, self.largest = model, 0, 0

    fail_after = None

    def forward(self, x):
        if self.fail_after is not None and self.images // len(x) >= self.fail_after:
            raise KeyboardInterrupt("stopped by the test")
        self.images += len(x)
        self.largest = max(self.largest, len(x))
        return self.model(x)


def make_data(n=6, shape=(3, 8, 10), seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g, dtype=torch.float64)
    return x, torch.randint(5, (n,), generator=g)


def literal_spectrum(model, x, labels, radii, reverse):
    """Per image, per radius: a numpy FFT low-pass of every channel, one forward each."""
    agree, correct = np.zeros(len(radii)), np.zeros(len(radii))
    with torch.no_grad():
        for n in range(x.shape[0]):
            full = model(x[n : n + 1]).argmax(1).item()
            for j, r in enumerate(radii):
                low = numpy_low_pass(x[n].numpy(), r)
                image = x[n].numpy() - low if reverse else low
                p = model(torch.from_numpy(image)[None]).argmax(1).item()
                agree[j] += p == full
                correct[j] += p == labels[n].item()
    return list(agree / len(x)), list(correct / len(x))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(3, 8, 10), (3, 7, 7)], ids=str)
def test_matches_literal_fft_algorithm(shape, reverse):
    """Agreement and accuracy equal a literal loop with numpy FFT filters."""
    model = tiny_model(shape=shape).eval()
    x, y = make_data(shape=shape)
    radii = [0, 1, 1.5, 2, 3.2, 5, max_radius(*shape[1:])]
    got = frequency_spectrum(model, x, radii, labels=y, reverse=reverse, progress=False)
    agree, correct = literal_spectrum(model, x, y, radii, reverse)
    assert got.radii == [float(r) for r in radii] and got.reverse is reverse
    np.testing.assert_allclose(got.agreement, agree)
    np.testing.assert_allclose(got.accuracy, correct)
    assert got.n_images == 6


def test_mean_only_model_is_blind_to_every_nonzero_frequency():
    """Low-pass images keep the mean: agreement 1 at every radius; high-pass: one answer."""
    model = MeanOnly()
    x, _ = make_data(n=10)
    s = frequency_spectrum(model, x, progress=False)
    assert s.agreement == [1.0] * len(s.radii)
    blank = model(torch.zeros(1, 3, 8, 10, dtype=torch.float64)).argmax(1).item()
    share = (model(x).argmax(1) == blank).double().mean().item()
    reverse = frequency_spectrum(model, x, reverse=True, progress=False)
    np.testing.assert_allclose(reverse.agreement, share, atol=1e-12)


def test_default_radii_and_no_forward_for_the_full_image():
    """Radii 0..ceil(max radius); the last is x itself and costs no forward."""
    model = Counting(tiny_model())
    x, _ = make_data(n=5)
    s = frequency_spectrum(model, x, batch_size=4, progress=False)
    assert s.radii == default_radii(8, 10) == [float(r) for r in range(8)]
    assert s.agreement[-1] == 1.0 and s.accuracy is None
    assert model.images == 5 * len(s.radii), "one reference forward plus every radius but the last"
    assert model.largest <= 4, "batch_size bounds every forward"


def test_tensor_dataloader_and_batch_size_agree():
    """The counts do not depend on how the data comes or on batch_size."""
    model = tiny_model()
    x, y = make_data(n=7)
    a = frequency_spectrum(model, x, labels=y, progress=False)
    b = frequency_spectrum(model, DataLoader(TensorDataset(x, y), batch_size=3), progress=False)
    c = frequency_spectrum(model, (x, y), batch_size=2, progress=False)
    assert a == b == c


def test_resume_after_interruption(tmp_path):
    """An interrupted run resumes from its checkpoint to the uninterrupted result."""
    model = tiny_model()
    x, y = make_data(n=8)
    expected = frequency_spectrum(model, x, labels=y, batch_size=2, progress=False)
    failing = Counting(model)
    failing.fail_after = 20  # 8 forwards a batch of two images: inside the third batch

    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        frequency_spectrum(failing, x, labels=y, batch_size=2, progress=False, checkpoint=path)
    assert path.exists(), "the counts so far were saved"
    with pytest.raises(ValueError, match="radii"):
        frequency_spectrum(failing, x, [0, 1], y, batch_size=2, progress=False, checkpoint=path)
    with pytest.raises(ValueError):
        rank_spectrum(failing, x, labels=y, batch_size=2, progress=False, checkpoint=path)
    failing.fail_after = None
    got = frequency_spectrum(failing, x, labels=y, batch_size=2, progress=False, checkpoint=path)
    assert got == expected and not path.exists()
    assert failing.images < 20 * 2 + 8 * 8, "the counted batches were skipped"


def test_csv_dict_round_trip_and_plot(tmp_path):
    """to_csv/from_csv and to_dict/from_dict give the spectrum back; plot draws radii."""
    x, y = make_data()
    s = frequency_spectrum(tiny_model(), x, [0, 1.5, 4], y, reverse=True, progress=False)
    assert isinstance(s, Spectrum) and not isinstance(s, RankSpectrum)
    path = tmp_path / "f.csv"
    s.to_csv(path)
    assert path.read_text().splitlines()[0] == "radius,agreement,accuracy,n_images,reverse"
    assert FrequencySpectrum.from_csv(path) == s
    d = s.to_dict()
    assert list(d) == ["radii", "agreement", "accuracy", "n_images", "reverse"]
    assert json.loads(json.dumps(d)) == d and FrequencySpectrum.from_dict(d) == s
    with pytest.raises(ValueError, match="not a frequency spectrum CSV"):
        RankSpectrum(ranks=[0], agreement=[1.0], accuracy=None, n_images=1).to_csv(path)
        FrequencySpectrum.from_csv(path)
    fig, ax = s.plot(label="model", metric="accuracy")
    assert list(ax.lines[0].get_xdata()) == s.radii
    assert list(ax.lines[0].get_ydata()) == s.accuracy
    assert "radius" in ax.get_xlabel() and "removed" in ax.get_xlabel()
    assert ax.get_legend() is not None
    _, ax = s.plot()
    assert ax.get_ylabel() == "agreement with the unfiltered prediction"
    assert os.listdir(tmp_path) == ["f.csv"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(radii=[0, -1]), ValueError, r"radii\[1\] must be >= 0"),
        (dict(radii=[]), ValueError, "radii must not be empty"),
        (dict(radii="0,1"), TypeError, "radii must be a sequence"),
        (dict(radii=[0, float("inf")]), ValueError, r"radii\[1\] must be finite"),
        (dict(reverse=1), TypeError, "reverse must be a bool"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(labels=torch.zeros(2, dtype=torch.long)), ValueError, "labels must have shape"),
    ],
    ids=["negative", "empty", "str", "inf", "reverse", "batch_size", "labels"],
)
def test_bad_input_raises_naming_the_argument(kwargs, error, message):
    """Negative radii and other bad arguments raise before any forward, naming them."""
    model = Counting(tiny_model())
    x, _ = make_data()
    with pytest.raises(error, match=message):
        frequency_spectrum(model, x, progress=False, **kwargs)
    assert model.images == 0


def test_result_validates_its_fields():
    """Radii are checked like the function's, values per radius counted."""
    with pytest.raises(ValueError, match="radii must be >= 0|radii\\[0\\] must be >= 0"):
        FrequencySpectrum([-1.0], [1.0], None, 1)
    with pytest.raises(ValueError, match="agreement must have one value per radius"):
        FrequencySpectrum([0.0, 1.0], [1.0], None, 1)


def test_accuracy_gap_of_frequency_spectra():
    """accuracy_gap compares two frequency spectra over their shared radii, not a mix."""
    a = FrequencySpectrum([0, 1.5, 3], [1, 1, 1], [0.5, 0.75, 1.0], 4)
    b = FrequencySpectrum([1.5, 3], [1, 1], [0.25, 1.0], 4)
    assert accuracy_gap(a, b) == ([1.5, 3.0], [0.5, 0.0])
    with pytest.raises(TypeError, match="spectra of one axis"):
        accuracy_gap(a, RankSpectrum([0], [1.0], [1.0], 1))
    with pytest.raises(ValueError, match="share no radius"):
        accuracy_gap(a, FrequencySpectrum([2], [1.0], [1.0], 1))
