"""scripts/make_demo_assets.py rebuilds what the package ships (tested at tiny settings)."""

import importlib.util
import json
from pathlib import Path

import torch

from captum_rig.data import PHOTOS
from captum_rig.models import ASSETS, DEMO_MODELS, build_demo_model

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_demo_assets.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_demo_assets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_photos_are_rebuilt_bit_for_bit(tmp_path):
    """The shipped photos are exactly what the script makes from scikit-image's data."""
    _script().main(["--photos", "--out", str(tmp_path)])
    for name in PHOTOS:
        made, shipped = tmp_path / f"{name}.png", ASSETS / f"{name}.png"
        assert made.read_bytes() == shipped.read_bytes(), f"{name}.png differs from the asset"


def test_models_are_trained_and_written(tmp_path):
    """A tiny run writes both state_dicts (weights_only-loadable, fitting the demo CNN)
    and the metadata, and leaves no temporary file."""
    _script().main(["--models", "--out", str(tmp_path), "--n-train", "64", "--epochs", "1"])
    for file in DEMO_MODELS.values():
        state = torch.load(tmp_path / file, map_location="cpu", weights_only=True)
        build_demo_model().load_state_dict(state)
    meta = json.loads((tmp_path / "demo_models.json").read_text())
    assert meta["_settings"]["n_train"] == 64 and set(DEMO_MODELS) <= set(meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*DEMO_MODELS.values(), "demo_models.json"]
    )
