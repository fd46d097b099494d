"""Tests for captum_rig._checks: the validators every module shares, and their messages."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from captum_rig._checks import (
    BAD_LOGITS,
    EXTRA_LABELS,
    NEED_LABELS,
    NO_MODELS,
    NOT_A_BATCH,
    NOT_A_MODEL,
    NOT_CALLABLE,
    NOT_DATA,
    NOT_IN_BOX,
    NOT_LABELS,
    NOT_MODELS,
    UNKNOWN_CHOICE,
    WRONG_DEVICE,
    WRONG_DIMS,
    WRONG_LENGTH,
    check_batches,
    check_choice,
    check_images,
    check_labels,
    check_model,
    check_models,
    check_norm,
    check_pixels,
    model_device,
    model_logits,
)


def images(n=5, h=4, w=6):
    """Random float images (N, 3, H, W) in [0, 1]."""
    return torch.rand(n, 3, h, w)


# -- images and pixels -----------------------------------------------------------------


def test_check_images_accepts_one_of_several_dims():
    """A tuple of allowed dims accepts each of them and names all of them when refusing."""
    assert check_images(torch.rand(3, 4, 4), "x", ndim=(3, 4)).dim() == 3
    assert check_images(torch.rand(1, 3, 4, 4), "x", ndim=(3, 4)).dim() == 4
    with pytest.raises(ValueError) as info:
        check_images(torch.rand(4, 4), "x", ndim=(3, 4), layout="(C, H, W) or (N, C, H, W)")
    assert str(info.value) == WRONG_DIMS.format(
        name="x", ndim="3 or 4", layout="(C, H, W) or (N, C, H, W)", shape=(4, 4)
    )


def test_check_pixels_box_and_slack():
    """Values outside [0, 1] are refused with their range; slack tolerates round-off only."""
    x = images()
    assert check_pixels(x, "data") is x, "a valid tensor comes back unchanged"
    with pytest.raises(ValueError) as info:
        check_pixels(x * 2 - 1, "data")
    low, high = float((x * 2 - 1).min()), float((x * 2 - 1).max())
    assert str(info.value) == NOT_IN_BOX.format(name="data", low=low, high=high)
    nudged = x.clone()
    nudged[0, 0, 0, 0] = 1.0005
    assert check_pixels(nudged, "x", slack=1e-3) is nudged, "round-off within slack passes"
    with pytest.raises(ValueError, match="x must hold pixel values in"):
        check_pixels(nudged, "x")
    with pytest.raises(TypeError, match="x must be a floating point tensor"):
        check_pixels((x * 255).byte(), "x")


# -- labels ----------------------------------------------------------------------------


def test_check_labels_converts_and_refuses():
    """Integer labels of any kind become int64 (N,); floats, bools and wrong shapes raise."""
    got = check_labels(torch.tensor([0, 2, 1], dtype=torch.int32), 3)
    assert got.dtype == torch.int64 and got.tolist() == [0, 2, 1], "int32 becomes int64"
    assert check_labels([1, 0], 2).tolist() == [1, 0], "a list is accepted"
    assert check_labels(np.array([4, 4, 1]), 3).tolist() == [4, 4, 1], "NumPy is accepted"
    with pytest.raises(TypeError) as info:
        check_labels(torch.tensor([0.0, 1.0]), 2, name="targets")
    assert str(info.value) == NOT_LABELS.format(name="targets", got="dtype torch.float32")
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        check_labels(torch.tensor([True, False]), 2)
    with pytest.raises(TypeError, match="got object"):
        check_labels(object(), 2)
    with pytest.raises(ValueError) as info:
        check_labels(torch.zeros(2, 3, dtype=torch.long), 2)
    assert str(info.value) == WRONG_LENGTH.format(name="labels", n=2, shape=(2, 3))


# -- choices, models -------------------------------------------------------------------


def test_check_choice_ignores_case_and_returns_the_canonical_spelling():
    """'linf' is 'Linf'; anything else lists the choices."""
    assert check_norm("linf") == "Linf" and check_norm("L2") == "L2"
    assert check_choice("HEAT_MAP", "method", ("heat_map",)) == "heat_map"
    for bad in ("L1", None, 2):
        with pytest.raises(ValueError) as info:
            check_norm(bad)
        assert str(info.value) == UNKNOWN_CHOICE.format(
            name="norm", choices=["Linf", "L2"], got=bad
        )


def test_check_model_module_or_callable():
    """Modules pass; plain functions pass only when module=False; the rest raise."""
    net = nn.Linear(2, 2)
    assert check_model(net) is net
    with pytest.raises(TypeError) as info:
        check_model(len, name="models['f']")
    assert str(info.value) == NOT_A_MODEL.format(
        name="models['f']", got="builtin_function_or_method"
    )
    assert check_model(len, module=False) is len
    with pytest.raises(TypeError) as info:
        check_model("resnet", module=False)
    assert str(info.value) == NOT_CALLABLE.format(name="model", got="str")


def test_check_models_names_and_devices():
    """One module is named "model"; mappings keep their names; devices must match."""
    net = nn.Linear(2, 2)
    assert check_models(net) == {"model": net}, "a single module gets the name 'model'"
    assert check_models({1: net}) == {"1": net}, "names become strings"
    assert check_models({"a": net}, device="cpu") == {"a": net}, "on the right device"
    with pytest.raises(ValueError) as info:
        check_models({"a": net}, device="meta")
    assert str(info.value) == WRONG_DEVICE.format(
        device=torch.device("meta"), name="a", got=torch.device("cpu")
    ), "a model elsewhere is refused, not moved"
    with pytest.raises(ValueError) as info:
        check_models({})
    assert str(info.value) == NO_MODELS, "an empty mapping is refused"
    with pytest.raises(TypeError) as info:
        check_models([net])
    assert str(info.value) == NOT_MODELS.format(got="list"), "a list is not a mapping"
    with pytest.raises(TypeError, match=r"models\['f'\] must be a torch.nn.Module"):
        check_models({"f": len})


def test_model_device_first_parameter_or_buffer_else_cpu():
    """Parameters first, then buffers; parameterless modules and functions are on CPU."""
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.BatchNorm1d(2).requires_grad_(False)) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu"), "no tensors: CPU"
    assert model_device(lambda x: x) == torch.device("cpu"), "a function: CPU"
    meta = nn.Module()
    meta.register_buffer("b", torch.zeros(1, device="meta"))
    assert model_device(meta) == torch.device("meta"), "a buffer's device counts"


def test_model_logits_checks_the_output_shape():
    """(B, classes) comes back; other outputs raise with the shape they had."""
    x = images(n=4)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 6, 5))
    assert model_logits(net, x).shape == (4, 5)
    with pytest.raises(ValueError) as info:
        model_logits(lambda t: t.sum((1, 2, 3)), x, name="model 'a'")
    assert str(info.value) == BAD_LOGITS.format(name="model 'a'", n=4, got=(4,))
    with pytest.raises(ValueError, match="it returned tuple"):
        model_logits(lambda t: (t,), x)


# -- batches ---------------------------------------------------------------------------


def collect(checked):
    """The (images, labels) batches of a Batches, as lists."""
    return [(x, y) for x, y in checked.batches]


def test_check_batches_tensor_pair_and_iterable_give_the_same_batches():
    """A tensor with labels, an (images, labels) pair and a loader yield the same data."""
    x, y = images(n=7), torch.randint(0, 3, (7,))
    from_tensor = check_batches(x, y, batch_size=3)
    assert (from_tensor.length, from_tensor.from_tensor) == (3, True)
    from_pair = check_batches((x, y), None, batch_size=3)
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    from_loader = check_batches(loader, None, batch_size=99)
    assert (from_loader.length, from_loader.from_tensor) == (3, False), "len(loader) is used"
    for a, b, c in zip(collect(from_tensor), collect(from_pair), collect(from_loader)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[0], c[0]), "same images"
        assert torch.equal(a[1], b[1]) and torch.equal(a[1], c[1]), "same labels"
    assert [len(b[0]) for b in collect(check_batches(x, None, 3))] == [3, 3, 1]
    two_batches = check_batches((x[:4], x[4:]), None, batch_size=3)
    assert [b[1] for b in collect(two_batches)] == [None, None], "two image batches, no pair"


def test_check_batches_iterable_forms_and_length():
    """Bare tensors and 1-tuples have no labels; a generator has no length."""
    x = images(n=4)
    got = collect(check_batches([x[:2], (x[2:],)], None, batch_size=8))
    assert [b[1] for b in got] == [None, None]
    assert check_batches((b for b in [x]), None, batch_size=8).length is None
    three = collect(check_batches([(x, torch.arange(4), "paths")], None, batch_size=8))
    assert three[0][1].tolist() == [0, 1, 2, 3], "extra items after the labels are ignored"


def test_check_batches_checks_each_batch_when_reached():
    """A bad later batch raises only when it is reached, named by its index."""
    x = images(n=4)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    checked = check_batches([x, nan], None, batch_size=8)
    first = next(checked.batches)
    assert torch.equal(first[0], x), "the good first batch comes through"
    with pytest.raises(ValueError, match="images in data batch 1 contains NaN"):
        next(checked.batches)
    with pytest.raises(ValueError, match=r"labels in data batch 0 must have shape \(4,\)"):
        collect(check_batches([(x, torch.arange(3))], None, batch_size=8))
    with pytest.raises(ValueError, match="images in data batch 0 must hold pixel values"):
        collect(check_batches([(x + 1, torch.arange(4))], None, batch_size=8, box=True))


def test_check_batches_labels_rules():
    """Labels: required when asked, refused beside a pair or an iterable."""
    x, y = images(n=4), torch.arange(4)
    with pytest.raises(ValueError) as info:
        check_batches(x, None, batch_size=2, labels_required=True)
    assert str(info.value) == NEED_LABELS
    for data in ((x, y), [(x, y)]):
        with pytest.raises(ValueError) as info:
            check_batches(data, y, batch_size=2)
        assert str(info.value) == EXTRA_LABELS
    with pytest.raises(TypeError) as info:
        collect(check_batches([x], None, batch_size=2, labels_required=True))
    assert str(info.value) == NOT_A_BATCH.format(
        index=0, expected="an (images, labels) pair", got="Tensor"
    )
    with pytest.raises(TypeError) as info:
        collect(check_batches([x, ()], None, batch_size=2))
    assert str(info.value) == NOT_A_BATCH.format(
        index=1, expected="images or (images, labels)", got="tuple of length 0"
    )


@pytest.mark.parametrize("data", [3, "images", {"x": 1}], ids=["int", "str", "dict"])
def test_check_batches_refuses_other_data(data):
    """Numbers, strings and mappings are not data."""
    with pytest.raises(TypeError) as info:
        check_batches(data, None, batch_size=2)
    assert str(info.value) == NOT_DATA.format(got=type(data).__name__)


def test_check_batches_box_on_tensor_data():
    """With box=True a tensor outside [0, 1] is refused as data; without, it passes."""
    x = images() * 3
    assert check_batches(x, None, batch_size=2).from_tensor, "no box: accepted"
    with pytest.raises(ValueError, match=r"data must hold pixel values in \[0, 1\]"):
        check_batches(x, None, batch_size=2, box=True)


def test_check_batches_sees_a_distributed_sampler():
    """A loader with a DistributedSampler is taken as already sharded."""
    dataset = TensorDataset(images(n=4), torch.arange(4))
    sampler = DistributedSampler(dataset, num_replicas=2, rank=0, shuffle=False)
    assert check_batches(DataLoader(dataset, sampler=sampler), None, 2).presharded
    assert not check_batches(DataLoader(dataset), None, 2).presharded
