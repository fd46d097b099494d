"""The scratch-vs-fine-tuned example on its CIFAR-10 path (the generated folder)."""

import csv
import json

import pytest
import torch


@pytest.mark.slow
def test_scratch_vs_finetuned_example_on_a_generated_cifar10(tmp_path):
    """The example runs its CIFAR-10 path on a generated folder with a local init file."""
    import importlib.util
    from pathlib import Path

    torchvision = pytest.importorskip("torchvision")
    from captum_rig.synthetic import write_cifar10_folder

    root = write_cifar10_folder(tmp_path / "cifar", n_train=16, n_test=8)
    init = tmp_path / "init.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), init)
    path = Path(__file__).resolve().parents[2] / "examples" / "scratch_vs_finetuned.py"
    spec = importlib.util.spec_from_file_location("_scratch_vs_finetuned", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    code = module.main([
        "--data", "cifar10", "--cifar-root", str(root), "--arch", "resnet18",
        "--weights", str(init), "--epochs", "1", "--n-train", "16", "--n-test", "4",
        "--batch-size", "8", "--n-bisect", "2", "--steps", "2", "--n-iter", "2",
        "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert code in (0, None), code
    with open(out / "stability.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["attack"]) for r in rows] == [
        ("scratch", "pgd"), ("scratch", "gaussian"), ("finetuned", "pgd"),
        ("finetuned", "gaussian"),
    ], rows  # fmt: skip
    assert all(r["lipschitz_bound"] for r in rows), "a ResNet must get a bound"
    md = (out / "stability.md").read_text(encoding="utf-8")
    assert md.startswith("# Stability: 4 images from CIFAR-10 in "), md
    assert "**scratch**" in md and "**finetuned**" in md, "the per-model bounds are missing"
    record = json.loads((out / "stability.json").read_text())
    assert set(record["weight_spectra"]) == {"scratch", "finetuned"}, list(record)
    assert set(record["feature_map_spectra"]) == {"scratch", "finetuned"}, list(record)
