"""Tests of what the demo ships with: the two CNNs' weights and the photographs."""

import pytest
import torch

from captum_rig.data import PHOTOS, load_photo
from captum_rig.models import ASSETS, DEMO_MODELS, build_demo_model, load_demo_model


@pytest.mark.parametrize("name", list(DEMO_MODELS))
def test_demo_weights_load_with_weights_only(name):
    """Each shipped state_dict loads with weights_only=True into build_demo_model()."""
    state = torch.load(ASSETS / DEMO_MODELS[name], map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    assert set(state) == set(build_demo_model().state_dict()), "keys match the factory"
    model = load_demo_model(name)
    assert not model.training, "loaded in eval mode"
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 6)


def test_assets_are_small():
    """All shipped demo data together stays under 5 MB."""
    total = sum(p.stat().st_size for p in ASSETS.iterdir() if p.is_file())
    assert total < 5 * 2**20, f"assets take {total / 2**20:.1f} MB"


@pytest.mark.parametrize("name", list(PHOTOS))
def test_photos_load_and_are_licensed(name):
    """Each photo is a 3×128×128 float image in [0, 1], listed in PHOTOS_LICENSE.md."""
    x = load_photo(name)
    assert x.shape == (3, 128, 128) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.std()) > 0.05
    text = (ASSETS / "PHOTOS_LICENSE.md").read_text(encoding="utf-8")
    assert f"`{name}.png`" in text and PHOTOS[name]["author"] in text


def test_asset_loader_errors():
    """Unknown names raise a ValueError naming the argument."""
    with pytest.raises(ValueError, match="name must be one of"):
        load_demo_model("robust")
    with pytest.raises(ValueError, match="name must be one of"):
        load_photo("lena")
    with pytest.raises(ValueError, match="num_classes"):
        build_demo_model(0)
