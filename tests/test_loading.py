"""Tests for captum_rig.loading: model specs, checkpoints, pretrained weights, preprocessing."""

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from _reference import USER_MODEL_SOURCE
from torch import nn

from captum_rig import loading
from captum_rig.loading import (
    SOURCES,
    ModelSource,
    ModelSpec,
    Preprocessing,
    load_model,
    load_pixel_model,
    load_state_dict,
    model_preprocessing,
)
from captum_rig.loading import pretrained as hub
from captum_rig.synthetic import SHAPES

NET = (
    USER_MODEL_SOURCE
    + """

def fixed():
    return make(3)

def not_a_model():
    return 3

class Nets:
    @staticmethod
    def grey(num_classes=2):
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(2, num_classes))

NOT_CALLABLE = 1
"""
)


@pytest.fixture
def net_file(tmp_path: Path) -> Path:
    """A user's model file with factories."""
    path = tmp_path / "net.py"
    path.write_text(NET)
    return path


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache and no network; fails the test if torchvision downloads."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "_online", lambda url, timeout=3.0: False)

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)


# --------------------------------------------------------------------------- specs


def test_torchvision_spec_builds_eval_model_without_weights():
    """torchvision:<name> gives the torchvision builder's model, in eval mode."""
    model = load_model("torchvision:resnet18", num_classes=7)
    assert isinstance(model, torchvision.models.ResNet), type(model)
    assert not model.training, "model must be in eval mode"
    assert model.fc.out_features == 7, model.fc


def test_unknown_torchvision_name_lists_close_names():
    """A typo gives a ValueError naming close torchvision names."""
    with pytest.raises(ValueError, match=r"unknown torchvision model 'resnet19'.*resnet18"):
        load_model("torchvision:resnet19")


@pytest.mark.parametrize("spec", ["resnet18", "torchvision:", ":make", "net.py:", ""])
def test_malformed_spec(spec):
    """A spec that is neither form is a ValueError quoting it."""
    with pytest.raises(ValueError, match="model spec must be"):
        load_model(spec)


def test_spec_must_be_a_string():
    """A non-string spec is a TypeError."""
    with pytest.raises(TypeError, match="model spec must be"):
        load_model(nn.Linear(2, 2))


def test_factory_from_file(net_file):
    """path/to/file.py:factory imports the file and calls the factory."""
    model = load_model(f"{net_file}:make", num_classes=4)
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 4), "num_classes must reach the factory"
    assert not model.training, "model must be in eval mode"


def test_factory_dotted_attribute(net_file):
    """module:Class.method works for nested factories."""
    model = load_model(f"{net_file}:Nets.grey")
    assert model(torch.rand(1, 1, 5, 5)).shape == (1, 2), "the nested factory must be called"


def test_factory_from_importable_module():
    """An importable module name works too (here torch.nn:Identity)."""
    assert isinstance(load_model("torch.nn:Identity"), nn.Identity), "module:factory"


def test_missing_file_and_module(tmp_path):
    """A missing .py file is FileNotFoundError; a missing module a ValueError."""
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(f"{tmp_path / 'nope.py'}:make")
    with pytest.raises(ValueError, match="cannot import 'no_such_module_xyz'"):
        load_model("no_such_module_xyz:make")


def test_missing_factory_lists_close_names(net_file):
    """A factory name that is not there is a ValueError naming close ones."""
    with pytest.raises(ValueError, match=r"has no attribute 'mkae'.*make"):
        load_model(f"{net_file}:mkae")


def test_factory_must_be_callable_and_return_a_module(net_file):
    """A non-callable attribute, or a factory returning a non-module, is a TypeError."""
    with pytest.raises(TypeError, match="not callable"):
        load_model(f"{net_file}:NOT_CALLABLE")
    with pytest.raises(TypeError, match="returned int, expected a torch.nn.Module"):
        load_model(f"{net_file}:not_a_model")


def test_num_classes_for_factory_without_it(net_file):
    """num_classes for a factory that does not take it is a ValueError."""
    with pytest.raises(ValueError, match="does not take a num_classes"):
        load_model(f"{net_file}:fixed", num_classes=3)


@pytest.mark.parametrize(
    "source, spec, where",
    [
        ("import sys\n\ndef make():\n    sys.exit(0)\n", "make", "the factory"),
        ("import sys\nsys.exit(3)\n\ndef make():\n    pass\n", "make", "running"),
    ],
)
def test_factory_or_file_calling_sys_exit_is_an_error(tmp_path, source, spec, where):
    """sys.exit in the user's file or factory is a ValueError naming the spec, not an exit."""
    path = tmp_path / "exiting.py"
    path.write_text(source)
    with pytest.raises(ValueError, match=rf"{where}.* called sys.exit\(\d\) instead of"):
        load_model(f"{path}:{spec}")


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_bad_num_classes(bad):
    """num_classes must be a positive int."""
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        load_model("torchvision:resnet18", num_classes=bad)


def test_device_argument(net_file):
    """device= moves the model there."""
    model = load_model(f"{net_file}:make", device="cpu")
    assert next(model.parameters()).device.type == "cpu", "model on the asked device"


# --------------------------------------------------------------------------- checkpoints


def _make(net_file, **kwargs):
    return load_model(f"{net_file}:make", **kwargs)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "model_state_dict", "module."])
def test_checkpoint_loads(net_file, tmp_path, wrap):
    """A state dict, a training checkpoint dict, or a DataParallel state dict all load."""
    source = _make(net_file)
    state = source.state_dict()
    if wrap == "module.":
        obj = {f"module.{k}": v for k, v in state.items()}
    elif wrap == "plain":
        obj = state
    else:
        obj = {wrap: state, "epoch": 3}
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    model = _make(net_file, weights=path)
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), f"{k} not loaded"
    assert not model.training, "model must be in eval mode"


def test_checkpoint_shape_mismatch_names_file_and_keys(net_file, tmp_path):
    """A checkpoint for other num_classes: ValueError naming the file and the keys."""
    path = tmp_path / "ten.pt"
    torch.save(_make(net_file, num_classes=10).state_dict(), path)
    with pytest.raises(ValueError) as info:
        _make(net_file, weights=path)
    message = str(info.value)
    assert str(path) in message and "6.weight (10, 16) vs (5, 16)" in message, message
    assert "--num-classes" in message, message
    assert "\n" not in message, "one line"


def test_checkpoint_missing_and_unexpected_keys(net_file, tmp_path):
    """Missing and unexpected keys are both named, the first few of each."""
    state = _make(net_file).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["0.bias"]
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing keys 0\.bias; unexpected keys extra\.weight"):
        _make(net_file, weights=path)


def test_checkpoint_of_another_architecture_lists_first_keys(net_file, tmp_path):
    """A resnet checkpoint in a small net: the first three keys, and the count."""
    path = tmp_path / "resnet.pt"
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), path)
    with pytest.raises(
        ValueError, match=r"unexpected keys conv1\.weight, .*, \.\.\. \(\d+ in all\)"
    ):
        _make(net_file, weights=path)


def test_unreadable_checkpoint(net_file, tmp_path):
    """A file that is not a checkpoint is a ValueError naming it."""
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="cannot read checkpoint .*junk.pt"):
        _make(net_file, weights=path)


def test_checkpoint_with_code_is_refused(net_file, tmp_path):
    """weights_only=True: a pickle with arbitrary objects does not load."""
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _make(net_file).state_dict(), "fn": Path}, path)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        _make(net_file, weights=path)


def test_pickled_module_gets_a_resave_hint_not_weights_only_false(net_file, tmp_path):
    """A whole pickled model: the error says how to re-save it, never weights_only=False."""
    path = tmp_path / "whole.pt"
    torch.save(_make(net_file), path)
    with pytest.raises(ValueError, match="holds Python objects other than tensors") as error:
        _make(net_file, weights=path)
    assert "torch.save(model.state_dict(), PATH)" in str(error.value)
    assert "weights_only=False" not in str(error.value)


@pytest.mark.parametrize(
    "kind, match",
    [
        ("folder", "it is a folder"),
        ("empty", "the file is empty"),
        ("device", "it is not a regular file"),
    ],
)
def test_weights_that_are_not_regular_files(net_file, tmp_path, kind, match):
    """A folder, an empty file or a device (/dev/null) is named for what it is."""
    if kind == "device":
        path = Path("/dev/null")
        if not path.exists():
            pytest.skip("no /dev/null")
    else:
        path = tmp_path / "w.pt"
        path.mkdir() if kind == "folder" else path.write_bytes(b"")
    with pytest.raises(ValueError, match=f"cannot read checkpoint {path}: {match}"):
        _make(net_file, weights=path)


def test_damaged_checkpoint_is_one_clear_value_error(net_file, tmp_path):
    """Bytes that break the unpickler oddly (a KeyError inside it) still give a ValueError."""
    path = tmp_path / "junk.pt"
    path.write_bytes(b"hello world garbage")
    with pytest.raises(ValueError, match="junk.pt: not a PyTorch checkpoint"):
        _make(net_file, weights=path)


def test_module_doc_says_python_specs_run_code():
    """The loading reference says that a file or module spec runs that code."""
    assert "*runs*, that module or file" in loading.__doc__


def test_checkpoint_not_a_state_dict(net_file, tmp_path):
    """A tensor saved on its own is not a state dict."""
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="expected a state dict of tensors"):
        _make(net_file, weights=path)


def test_missing_checkpoint(net_file, tmp_path):
    """A missing weights file is FileNotFoundError."""
    with pytest.raises(FileNotFoundError, match="no such file"):
        _make(net_file, weights=tmp_path / "nope.pt")


def test_load_state_dict_changes_model_in_place(net_file, tmp_path):
    """load_state_dict returns the model it loaded into."""
    model, path = _make(net_file), tmp_path / "w.pt"
    torch.save(_make(net_file).state_dict(), path)
    assert load_state_dict(model, path) is model, "same object back"


# --------------------------------------------------------------------------- pretrained


def test_pretrained_offline_fails_fast_in_one_line(offline):
    """Offline, with nothing cached: one RuntimeError line naming the cache path."""
    with pytest.raises(RuntimeError) as info:
        load_model("torchvision:resnet18", pretrained=True)
    message = str(info.value)
    assert "no network" in message and "resnet18-f37072fd.pth" in message, message
    assert "--weights" in message and "\n" not in message, message


def test_pretrained_uses_the_cache_without_network(monkeypatch, tmp_path):
    """A cached weights file is used without probing the network."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "squeezenet1_1-b8a52dc0.pth").write_bytes(b"")

    def no_probe(url, timeout=3.0):
        raise AssertionError("probed the network although the file is cached")

    state = torchvision.models.squeezenet1_1().state_dict()
    monkeypatch.setattr(hub, "_online", no_probe)
    monkeypatch.setattr(
        torchvision.models._api.WeightsEnum, "get_state_dict", lambda self, **kw: state
    )
    model = load_model("torchvision:squeezenet1_1", pretrained=True)
    assert torch.equal(model.state_dict()["features.0.weight"], state["features.0.weight"])


def test_pretrained_download_error_is_one_line(monkeypatch, tmp_path):
    """A failing download (network up but broken) is one RuntimeError line."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(hub, "_online", lambda url, timeout=3.0: True)

    def fail(self, **kwargs):
        raise urllib.error.URLError("connection reset\nby peer")

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", fail)
    with pytest.raises(RuntimeError, match="cannot download the pretrained weights of resnet18"):
        load_model("torchvision:resnet18", pretrained=True)


def test_online_probe_is_bounded(monkeypatch):
    """_online returns False on a connection error instead of raising."""

    def refuse(address, timeout=None):
        assert timeout is not None, "the probe must have a timeout"
        raise OSError("unreachable")

    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    assert hub._online("https://download.pytorch.org/models/x.pth") is False


def test_pretrained_conflicts(net_file, offline):
    """pretrained with weights, with a factory, or with other num_classes: ValueError."""
    with pytest.raises(ValueError, match="not both"):
        load_model("torchvision:resnet18", pretrained=True, weights="w.pt")
    with pytest.raises(ValueError, match="torchvision specs only"):
        load_model(f"{net_file}:make", pretrained=True)
    with pytest.raises(ValueError, match="has 1000 classes, got num_classes=10"):
        load_model("torchvision:resnet18", pretrained=True, num_classes=10)


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("name, crop, resize", [("resnet18", 224, 256), ("inception_v3", 299, 342)])
def test_torchvision_preprocessing(name, crop, resize):
    """torchvision specs get their weights' evaluation transform and ImageNet stats."""
    p = model_preprocessing(f"torchvision:{name}")
    assert (p.crop_size, p.resize_size) == (crop, resize), p
    assert p.mean == pytest.approx((0.485, 0.456, 0.406)), p
    assert p.std == pytest.approx((0.229, 0.224, 0.225)), p
    assert p.categories is None, "class names only for pretrained weights"
    assert len(model_preprocessing(f"torchvision:{name}", pretrained=True).categories) == 1000


def test_factory_preprocessing_reads_channels(net_file):
    """Factory specs: no resize, no normalization, channels from the first conv."""
    model = load_model(f"{net_file}:Nets.grey")
    assert model_preprocessing(f"{net_file}:Nets.grey", model) == Preprocessing(in_channels=1)


def test_pixel_model_normalizes_inside(net_file):
    """load_pixel_model puts Normalize(mean, std) in front: model(x) == net((x - m) / s)."""
    model, prep = load_pixel_model("torchvision:resnet18", num_classes=3)
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model[1]((x - mean) / std)
        torch.testing.assert_close(model(x), expected)
    assert not model.training, "wrapped model must be in eval mode"


def test_pixel_model_overrides(net_file):
    """mean/std override; normalize=False or a factory without stats: no wrapping."""
    spec = f"{net_file}:make"
    model, prep = load_pixel_model(spec)
    assert not isinstance(model, nn.Sequential) or len(model) == 7, "factory models unwrapped"
    assert prep.mean is None, prep
    model, prep = load_pixel_model(spec, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert prep.mean == (0.5,) * 3 and len(model) == 2, "wrapped with the given stats"
    model, prep = load_pixel_model("torchvision:resnet18", num_classes=2, normalize=False)
    assert isinstance(model, torchvision.models.ResNet) and prep.mean is None, prep
    with pytest.raises(ValueError, match="both mean and std"):
        load_pixel_model(spec, mean=(0.5,) * 3)


def test_normalized_is_models_with_normalization(net_file):
    """normalized() is models.with_normalization, on the model's device and in its mode."""
    from captum_rig.models import Normalize

    net = load_model(f"{net_file}:make").train()
    wrapped = loading.normalized(net, (0.5,) * 3, (0.25,) * 3)
    assert isinstance(wrapped[0], Normalize) and wrapped[1] is net, wrapped
    assert wrapped.training, "the wrapped model keeps the model's mode"
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(wrapped(x), net((x - 0.5) / 0.25))


# --------------------------------------------------------------------------- demo specs


@pytest.mark.parametrize("name", ["natural", "lowrank8"])
def test_demo_spec_loads_the_shipped_model(name):
    """demo:<name> is load_demo_model(name): same weights, eval mode, no extra wrapping."""
    from captum_rig.models import load_demo_model

    model, prep = load_pixel_model(f"demo:{name}")
    reference = load_demo_model(name)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    assert not model.training, "eval mode"
    assert type(model) is type(reference) and len(model) == len(reference), "not re-wrapped"


def test_demo_spec_preprocessing_knows_input_and_classes():
    """Demo specs: 32×32 input, RGB, the six shapes' names, no outside normalization."""
    from captum_rig.synthetic import SHAPES

    p = model_preprocessing("demo:natural")
    assert p == Preprocessing(crop_size=32, in_channels=3, categories=SHAPES), p


def test_demo_spec_with_weights_and_errors(tmp_path):
    """--weights loads over the demo network; bad names, classes and pretrained are refused."""
    from captum_rig.models import build_demo_model

    torch.manual_seed(0)
    own = build_demo_model()
    torch.save(own.state_dict(), tmp_path / "own.pt")
    model = load_model("demo:natural", weights=tmp_path / "own.pt")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), own.eval()(x))
    assert load_model("demo:natural", num_classes=6).training is False, "6 classes is fine"
    with pytest.raises(ValueError, match="unknown demo model 'robust': choose from natural"):
        load_model("demo:robust")
    with pytest.raises(ValueError, match="the demo models have 6 classes, got num_classes=3"):
        load_model("demo:natural", num_classes=3)
    with pytest.raises(ValueError, match="pretrained weights are for torchvision specs only"):
        load_model("demo:natural", pretrained=True)
    with pytest.raises(ValueError, match="model spec must be"):
        load_model("demo:")


# --------------------------------------------------------------------------- ModelSpec


@pytest.mark.parametrize(
    "text, source, name, module",
    [
        ("torchvision:resnet18", "torchvision", "resnet18", None),
        ("demo:lowrank8", "demo", "lowrank8", None),
        ("torch.nn:Identity", "python", "Identity", "torch.nn"),
        ("nets/small.py:Nets.grey", "python", "Nets.grey", "nets/small.py"),
    ],
)
def test_spec_parses_every_source(text, source, name, module):
    """One parse gives the source, the name and (for code) the module; nothing is built."""
    spec = ModelSpec.parse(text)
    assert (spec.text, spec.source, spec.name, spec.module) == (text, source, name, module)
    assert spec.model_source is SOURCES[source], "the registry entry it came from"
    assert (spec.weights, spec.pretrained) == (None, False), "no weights unless given"


def test_spec_label_and_random_weights():
    """label: weights stem, else the name, '(pretrained)' appended; random_weights for
    a bare torchvision builder only."""
    cases = [
        (ModelSpec.parse("torchvision:resnet18"), "resnet18", True),
        (ModelSpec.parse("torchvision:resnet18", pretrained=True), "resnet18 (pretrained)", False),
        (ModelSpec.parse("torchvision:resnet18", weights="runs/best.pt"), "best", False),
        (ModelSpec.parse("demo:natural"), "natural", False),
        (ModelSpec.parse("nets/a.py:make", weights=Path("w/ft.pth")), "ft", False),
        (ModelSpec.parse("nets/a.py:make"), "make", False),
    ]
    for spec, label, random in cases:
        assert spec.label == label, spec
        assert spec.random_weights is random, spec


@pytest.mark.parametrize(
    "text, hint",
    [("resnet18", "did you mean torchvision:resnet18?"), ("natural", "did you mean demo:natural?")],
)
def test_bare_name_suggests_its_source(text, hint):
    """A bare torchvision or demo name is refused with the spec it probably meant."""
    with pytest.raises(ValueError, match="model spec must be") as info:
        ModelSpec.parse(text)
    assert str(info.value).endswith(hint), str(info.value)
    with pytest.raises(ValueError) as info:
        ModelSpec.parse("no_such_thing_xyz")
    assert "did you mean" not in str(info.value), "no hint for a name no source has"


def test_spec_refusals_name_the_spec():
    """Bad specs, an unknown demo model and contradictory weights fail at parse time."""
    with pytest.raises(TypeError, match="model spec must be"):
        ModelSpec.parse(3)
    with pytest.raises(ValueError, match="unknown demo model 'robust'"):
        ModelSpec.parse("demo:robust")
    with pytest.raises(ValueError, match="not both"):
        ModelSpec.parse("torchvision:resnet18", weights="w.pt", pretrained=True)
    with pytest.raises(ValueError, match="for torchvision specs only, got 'demo:natural'"):
        ModelSpec.parse("demo:natural", pretrained=True)


def test_registry_feeds_the_error_and_the_dispatch(monkeypatch):
    """A new source is one registry entry: listed in the error, parsed, built, described."""
    extra = ModelSource(
        name="toy",
        form="toy:<width>",
        prefix="toy:",
        build=lambda spec, num_classes: nn.Linear(int(spec.name), num_classes or 2),
        preprocessing=lambda spec, model: Preprocessing(crop_size=8, in_channels=1),
        classes=lambda spec: ("even", "odd"),
    )
    monkeypatch.setitem(SOURCES, "toy", extra)
    with pytest.raises(ValueError, match="'demo:<name>', 'toy:<width>' or '<module"):
        ModelSpec.parse("?")
    spec = ModelSpec.parse("toy:4")
    assert (spec.source, spec.name, spec.label) == ("toy", "4", "4")
    assert load_model(spec, num_classes=3).in_features == 4, "the source's builder"
    prep = model_preprocessing(spec)
    assert (prep.crop_size, prep.categories) == (8, ("even", "odd")), "its preprocessing"


def test_functions_take_a_spec_or_its_text():
    """load_model, model_preprocessing and load_pixel_model accept a parsed ModelSpec."""
    spec = ModelSpec.parse("demo:natural")
    assert model_preprocessing(spec) == model_preprocessing("demo:natural")
    assert model_preprocessing(spec).categories == SHAPES, "the demo's class names"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_model(spec)(x), load_model("demo:natural")(x))
    model, prep = load_pixel_model(spec)
    assert prep.crop_size == 32 and not model.training
    with pytest.raises(TypeError, match="part of a ModelSpec"):
        load_model(spec, weights="w.pt")
