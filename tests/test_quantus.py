"""Tests for captum_rig.quantus: the explain function Quantus calls, against direct calls."""

import copy

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency

from captum_rig import RIG, BlurIG
from captum_rig.attr.registry import METHODS
from captum_rig.models import load_demo_model
from captum_rig.quantus import explain
from captum_rig.synthetic import make_shapes

STEPS = 4

# Each registered method called directly, as a user would without the registry.
DIRECT = {
    "rig": lambda m, x, t: RIG(m).attribute(x, target=t, n_steps=STEPS),
    "ig": lambda m, x, t: IntegratedGradients(m).attribute(x, target=t, n_steps=STEPS),
    "blurig": lambda m, x, t: BlurIG(m).attribute(x, target=t, n_steps=STEPS),
    "saliency": lambda m, x, t: Saliency(m).attribute(x.clone().requires_grad_(), target=t),
}


@pytest.fixture(scope="module")
def model():
    """The demo's natural CNN, in eval mode."""
    return load_demo_model("natural")


@pytest.fixture(scope="module")
def batch():
    """Three synthetic test images (N, 3, 32, 32), their labels and (N, 1, 32, 32) masks."""
    data = make_shapes(3, seed=2)
    return data.images, data.labels, data.masks[:, None]


def test_every_registered_method_has_a_direct_reference():
    """A new registry entry needs its direct call here, so explain is tested for it."""
    assert set(DIRECT) == set(METHODS)


@pytest.mark.parametrize("name", list(METHODS))
def test_explain_equals_the_direct_call(model, batch, name):
    """NumPy in, NumPy out, the direct call's numbers: per channel and channel-summed."""
    x, y, _ = batch
    direct = DIRECT[name](model, x, y).detach()
    args = (model, x.numpy(), y.numpy())
    per_channel = explain(*args, method=name, channel_reduction=None, n_steps=STEPS)
    summed = explain(*args, method=name, n_steps=STEPS)
    assert isinstance(summed, np.ndarray) and summed.dtype == np.float32
    assert per_channel.shape == (3, 3, 32, 32) and summed.shape == (3, 1, 32, 32)
    np.testing.assert_allclose(per_channel, direct.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(summed, direct.sum(1, keepdim=True).numpy(), rtol=1e-4, atol=1e-5)


def test_explain_channel_max_is_rigs_eq3(model, batch):
    """channel_reduction="max" is RIG's own Eq. (3) form, not a max of the summed map."""
    x, y, _ = batch
    direct = RIG(model).attribute(x, target=y, n_steps=STEPS, channel_reduction="max")
    got = explain(model, x, y, channel_reduction="max", n_steps=STEPS)
    assert got.shape == (3, 1, 32, 32)
    np.testing.assert_allclose(got, direct.detach().numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "targets",
    [
        lambda y: y,
        lambda y: y.numpy(),
        lambda y: y.tolist(),
        lambda y: y.numpy().astype(np.int32),
    ],
    ids=["tensor", "numpy", "list", "numpy-int32"],
)
def test_explain_takes_numpy_or_tensors(model, batch, targets):
    """Tensors, float32/float64 arrays and every form of targets give the same maps."""
    x, y, _ = batch
    reference = explain(model, x, y, n_steps=STEPS)
    for inputs in (x, x.numpy(), x.numpy().astype(np.float64)):
        got = explain(model, inputs, targets(y), n_steps=STEPS)
        assert got.dtype == np.float32, "float64 arrays run in the model's float32"
        np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-7)


def test_explain_one_target_for_all(model, batch):
    """One int (or NumPy integer) target explains that class for every image."""
    x, _, _ = batch
    reference = explain(model, x, torch.tensor([4, 4, 4]), n_steps=STEPS)
    for target in (4, np.int64(4)):
        np.testing.assert_allclose(explain(model, x, target, n_steps=STEPS), reference)


def test_explain_leaves_model_and_inputs_alone(model, batch):
    """No change to the inputs, the model's weights, mode or requires_grad flags."""
    x, y, _ = batch
    array = x.numpy().copy()
    state = copy.deepcopy(model.state_dict())
    for name in METHODS:
        explain(model, array, y.numpy(), method=name, n_steps=STEPS)
    np.testing.assert_array_equal(array, x.numpy())
    assert not model.training
    assert all(p.requires_grad for p in model.parameters())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_explain_on_every_device(model, batch, device):
    """A model on the device, with Quantus's device keyword: the CPU's numbers."""
    x, y, _ = batch
    on_device = copy.deepcopy(model).to(device)
    got = explain(on_device, x.numpy(), y.numpy(), device=str(device), n_steps=STEPS)
    reference = explain(model, x.numpy(), y.numpy(), n_steps=STEPS)
    np.testing.assert_allclose(got, reference, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(method="rigg"), ValueError, "unknown attribution method"),
        (dict(channel_reduction="mean"), ValueError, "channel_reduction"),
        (dict(method="ig", channel_reduction="max"), ValueError, "channel_reduction"),
        (dict(inputs=np.zeros((3, 32, 32), np.float32)), ValueError, "inputs"),
        (dict(inputs=np.zeros((3, 3, 32, 32), np.uint8)), TypeError, "inputs"),
        (dict(inputs=[[0.5]]), TypeError, "inputs"),
        (dict(targets=np.array([0.0, 1.0, 2.0])), TypeError, "targets"),
        (dict(device="meta"), ValueError, "device"),
        (dict(model=lambda x: x), TypeError, "model"),
    ],
)
def test_explain_bad_arguments(model, batch, kwargs, error, match):
    """Bad arguments raise an error naming the argument."""
    x, y, _ = batch
    args = dict(model=model, inputs=x.numpy(), targets=y.numpy(), n_steps=STEPS)
    with pytest.raises(error, match=match):
        explain(**{**args, **kwargs})


def test_quantus_localisation_end_to_end(model, batch):
    """Quantus's pointing game and attribution localisation via explain, by hand."""
    quantus = pytest.importorskip("quantus")
    x, y, masks = (t.numpy() for t in batch)
    kwargs = {"method": "rig", "n_steps": STEPS}
    quiet = dict(disable_warnings=True, display_progressbar=False)
    common = dict(
        model=model,
        x_batch=x,
        y_batch=y,
        s_batch=masks,
        explain_func=explain,
        explain_func_kwargs=kwargs,
        device="cpu",  # Quantus adds it to explain's keywords
    )
    hits = quantus.PointingGame(**quiet)(**common)
    shares = quantus.AttributionLocalisation(**quiet)(**common)
    maps = explain(model, x, y, **kwargs).reshape(3, -1)
    flat = masks.reshape(3, -1)
    expected_hits = [bool(flat[i, maps[i] == maps[i].max()].any()) for i in range(3)]
    expected_shares = (np.abs(maps) * flat).sum(1) / np.abs(maps).sum(1)
    assert [bool(h) for h in hits] == expected_hits
    np.testing.assert_allclose(shares, expected_shares, rtol=1e-5)
