"""The attribution registry (captum_rig.attr.registry)."""

import captum
import pytest
import torch
from _reference import TinyConvNet
from captum.attr import IntegratedGradients, Saliency

from captum_rig import RIG, BlurIG
from captum_rig.attr.registry import (
    METHOD_NAMES,
    METHODS,
    UNKNOWN_METHOD,
    VARIANT_NAMES,
    VARIANTS,
    AttributionMethod,
    get_method,
    parse_methods,
)

# What each registered name must compute, built independently of the registry.
DIRECT = {
    "rig": lambda model, x, t: RIG(model).attribute(x, target=t, n_steps=4),
    "ig": lambda model, x, t: IntegratedGradients(model).attribute(x, target=t, n_steps=4),
    "blurig": lambda model, x, t: BlurIG(model).attribute(x, target=t, n_steps=4),
    "saliency": lambda model, x, t: Saliency(model).attribute(x.clone().requires_grad_(), target=t),
    "rig-idgi": lambda model, x, t: RIG(model).attribute(
        x, target=t, n_steps=4, method="riemann_left", idgi=True
    ),
    "blurig-idgi": lambda model, x, t: BlurIG(model).attribute(x, target=t, n_steps=4, idgi=True),
}


@pytest.fixture
def model():
    """A small smooth CNN in float64: real gradients everywhere."""
    return TinyConvNet().double()


def test_every_method_has_a_direct_reference():
    """The registry and this file's reference table name the same methods."""
    assert set(METHODS) | set(VARIANTS) == set(DIRECT), (
        "add a direct reference for every new method"
    )
    assert not set(METHODS) & set(VARIANTS)
    assert VARIANT_NAMES == tuple(VARIANTS)
    assert METHOD_NAMES == tuple(METHODS)
    assert all(METHODS[name].name == name for name in METHODS)


@pytest.mark.parametrize("name", METHOD_NAMES + VARIANT_NAMES)
def test_every_method_runs_and_equals_its_class(model, name):
    """Each registered method gives what its Captum-style class gives, shape of the input."""
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    method = get_method(name)
    got = method.attribute(model, x, target=[1, 3], n_steps=4)
    expected = DIRECT[name](model, x, [1, 3])
    assert got.shape == x.shape
    assert expected.abs().max() > 1e-6, "the test needs a model with real gradients"
    torch.testing.assert_close(got, expected)
    assert not x.requires_grad, "the caller's tensor must be left alone"


@pytest.mark.parametrize("name", ["rig", "ig", "blurig"])
def test_extra_arguments_reach_attribute(model, name):
    """Keyword arguments pass through to ``attribute`` and override the defaults."""
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    got, delta = get_method(name).attribute(
        model, x, target=0, n_steps=3, internal_batch_size=2, return_convergence_delta=True
    )
    build = {"rig": RIG, "ig": IntegratedGradients, "blurig": BlurIG}[name]
    expected, expected_delta = build(model).attribute(
        x, target=0, n_steps=3, internal_batch_size=2, return_convergence_delta=True
    )
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(delta, expected_delta)


def test_saliency_takes_its_own_arguments(model):
    """Saliency's ``abs=False`` reaches it: signed gradients, as Captum gives them."""
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    got = get_method("saliency").attribute(model, x, target=0, abs=False)
    expected = Saliency(model).attribute(x.clone().requires_grad_(), target=0, abs=False)
    torch.testing.assert_close(got, expected)
    assert (got < 0).any(), "signed gradients expected"


def test_n_steps_is_ignored_by_methods_without_steps(model):
    """Saliency takes no n_steps: the registry drops it instead of failing."""
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    method = get_method("saliency")
    assert not method.takes_steps
    torch.testing.assert_close(
        method.attribute(model, x, target=2, n_steps=50),
        method.attribute(model, x, target=2),
    )


@pytest.mark.parametrize(
    "name, hint",
    [
        ("rgi", "; did you mean rig?"),
        ("blur_ig", "; did you mean blurig, blurig-idgi, rig?"),
        ("zzz", ""),
    ],
)
def test_unknown_name_lists_choices_and_a_hint(name, hint):
    """An unknown name is a ValueError listing every method, with close names as a hint."""
    names = METHOD_NAMES + VARIANT_NAMES
    expected = UNKNOWN_METHOD.format(name=name, names=", ".join(names), hint=hint)
    with pytest.raises(ValueError) as error:
        get_method(name)
    assert str(error.value) == expected
    assert all(n in str(error.value) for n in names)


def test_parse_methods_splits_commas_and_drops_repeats():
    """Comma lists and repeated names give each method once, in first-seen order."""
    parsed = parse_methods(["ig, rig", "rig,,saliency", " ig "])
    assert [m.name for m in parsed] == ["ig", "rig", "saliency"]
    assert all(isinstance(m, AttributionMethod) for m in parsed)


@pytest.mark.parametrize("names", [[], [""], [" , "]])
def test_parse_methods_needs_a_name(names):
    """No name at all is a ValueError that lists the choices."""
    with pytest.raises(ValueError, match="no attribution method given; choose from rig"):
        parse_methods(names)


def test_parse_methods_rejects_unknown_names_with_hint():
    """One bad name in a list fails the whole list, naming it."""
    with pytest.raises(ValueError, match=r"unknown attribution method 'sailency'.*saliency\?"):
        parse_methods(["rig,sailency"])


def test_variants_are_named_only():
    """IDGI variants are found by name but are not in the default list (demo, explain)."""
    assert "rig-idgi" not in METHOD_NAMES and "blurig-idgi" not in METHOD_NAMES
    assert [m.name for m in parse_methods(["rig,rig-idgi", "blurig-idgi"])] == [
        "rig",
        "rig-idgi",
        "blurig-idgi",
    ]


# explain's figure passes (H, W) maps to captum.attr.visualization, which Captum 0.7
# cannot reduce over channels (an AxisError whatever the method): not this test's subject.
OLD_CAPTUM = tuple(int(p) for p in captum.__version__.split(".")[:2]) < (0, 8)


@pytest.mark.skipif(OLD_CAPTUM, reason="explain's figure needs Captum >= 0.8's visualization")
def test_explain_command_runs_rig_idgi(tmp_path, monkeypatch, capsys):
    """``captum-rig explain --methods rig-idgi`` writes its figure."""
    from _reference import USER_MODEL_SOURCE
    from PIL import Image

    from captum_rig.cli._main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(USER_MODEL_SOURCE)
    rng = torch.Generator().manual_seed(0)
    pixels = (torch.rand(12, 16, 3, generator=rng) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels, mode="RGB").save(tmp_path / "a.png")
    argv = ["explain", "a.png", "--model", "net.py:make", "--methods", "rig-idgi,blurig-idgi"]
    code = main([*argv, "--n-steps", "4", "--out", "fig.png", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "wrote fig.png" in out and (tmp_path / "fig.png").stat().st_size > 0
