"""Tests for captum_rig.stability.spectra: weight and feature-map spectra, streams."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _reference import hooks_left
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from captum_rig.stability import feature_map_spectra, weight_spectra


def test_weight_spectra_match_numpy():
    """Singular values of conv weights reshaped (out, in·kh·kw) and of linear weights."""
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Conv2d(5, 4, 2, groups=1), nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    )  # fmt: skip
    spectra = weight_spectra(model)
    assert list(spectra) == ["0", "2", "4"], list(spectra)
    for name, values in spectra.items():
        w = dict(model.named_modules())[name].weight.detach().numpy()
        expected = np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)
        np.testing.assert_allclose(values.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_feature_map_spectra_match_numpy_on_hooked_activations():
    """Mean over images and channels of numpy SVDs of each layer's output maps."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2), nn.ReLU()
    ).double()
    images = torch.rand(5, 3, 9, 8, dtype=torch.float64)
    spectra = feature_map_spectra(model, images, batch_size=2)
    assert list(spectra) == ["0", "2"], list(spectra)
    with torch.no_grad():
        outputs = {"0": model[0](images)}
        outputs["2"] = model[2](model[1](outputs["0"]))
    for name, maps in outputs.items():
        expected = np.linalg.svd(maps.numpy(), compute_uv=False).mean(axis=(0, 1))
        assert spectra[name].shape == (min(maps.shape[-2:]),), spectra[name].shape
        np.testing.assert_allclose(spectra[name].numpy(), expected, rtol=1e-6)
    relu = feature_map_spectra(model, images, layers=["1"])
    expected = np.linalg.svd(F.relu(outputs["0"]).numpy(), compute_uv=False).mean(axis=(0, 1))
    np.testing.assert_allclose(relu["1"].numpy(), expected, rtol=1e-6)
    assert hooks_left(model) == [], "hooks left"


def test_spectra_bad_input():
    """Unknown layer names, non-4-d outputs and images outside [0, 1] are refused."""
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 2))
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="layers must name modules.*'nope'"):
        feature_map_spectra(model, x, layers=["0", "nope"])
    with pytest.raises(ValueError, match="layers: the output of '2'"):
        feature_map_spectra(model, x, layers=["2"])
    with pytest.raises(ValueError, match=r"images must hold pixel values in \[0, 1\]"):
        feature_map_spectra(model, x * 2)
    with pytest.raises(ValueError, match="layers: the model has no Conv2d"):
        feature_map_spectra(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), x)
    assert hooks_left(model) == [], "hooks left after an error"


# --------------------------------------------------------------------------- streams


def spectra_model() -> nn.Module:
    """Two convolutions, the second strided."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2)
    ).double()


def test_feature_map_spectra_of_a_stream_equal_the_tensor_call():
    """A DataLoader, a pair, a generator of images, a list of uneven batches: the same
    spectra as the concatenated tensor, bit for bit (the same batches of batch_size)."""
    model = spectra_model()
    images = torch.rand(7, 3, 9, 8, dtype=torch.float64)
    labels = torch.arange(7)
    whole = feature_map_spectra(model, images, batch_size=3)
    streams = {
        "loader": DataLoader(TensorDataset(images, labels), batch_size=5),
        "pair": (images, labels),
        "generator": (x for x in images.split(4)),
        "uneven": [images[:1], images[1:6], images[6:]],
    }
    for kind, data in streams.items():
        got = feature_map_spectra(model, data, batch_size=3)
        assert list(got) == list(whole), kind
        for name in whole:
            assert torch.equal(got[name], whole[name]), f"{kind}, layer {name}"


def test_feature_map_spectra_hold_one_batch_at_a_time():
    """Loader batches of 5 are cut to batch_size 2: no forward pass sees more."""
    model = spectra_model()
    seen = []
    model[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    loader = DataLoader(TensorDataset(torch.rand(7, 3, 8, 8, dtype=torch.float64)), batch_size=5)
    feature_map_spectra(model, loader, batch_size=2)
    assert seen == [2, 2, 2, 1], seen


def test_feature_map_spectra_bad_streams():
    """Batches of different shapes, an empty stream, pixels outside [0, 1] in a batch."""
    model = spectra_model()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"data batch 1 has images of shape \(C, H, W\)"):
        feature_map_spectra(model, [x, torch.rand(2, 3, 9, 9, dtype=torch.float64)])
    with pytest.raises(ValueError, match="data must not be empty"):
        feature_map_spectra(model, [])
    with pytest.raises(ValueError, match=r"images in data batch 1 must hold pixel values"):
        feature_map_spectra(model, [x, x * 3])
    assert hooks_left(model) == [], "hooks left after an error"
