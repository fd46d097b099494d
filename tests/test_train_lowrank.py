"""Tests for examples/train_lowrank.py and examples/miniature_study.py, end to end on tiny data."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from captum_rig.models import cifar_model
from captum_rig.synthetic import write_cifar10_folder

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    """Imports an example script as a module."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train():
    """The train_lowrank example module."""
    return _load("train_lowrank")


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A tiny generated CIFAR-10 folder."""
    return write_cifar10_folder(tmp_path_factory.mktemp("cifar"), n_train=48, n_test=24, seed=0)


def _argv(cifar, out, *extra):
    """Tiny-run arguments."""
    return [
        "--data", f"cifar10:{cifar}", "--model", "small_cnn", "--batch-size", "16",
        "--lr", "0.05", "--out", str(out), "--threads", str(torch.get_num_threads()),
        "--quiet", *extra,
    ]  # fmt: skip


def test_train_rank_k_end_to_end(train, cifar, tmp_path):
    """A rank-8 run writes metrics, a weights_only checkpoint and the rank cache."""
    out = tmp_path / "run"
    assert train.main(_argv(cifar, out, "--rank", "8", "--epochs", "2")) == 0, "run failed"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_done"] == 2 and len(metrics["history"]) == 2, metrics["history"]
    assert 0.0 <= metrics["test_acc"] <= 1.0, metrics["test_acc"]
    assert "test_acc_at_train_rank" in metrics, sorted(metrics)
    assert metrics["n_train"] == 48 and metrics["n_test"] == 24, metrics
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and state["config"]["rank"] == 8, state["epoch"]
    model = cifar_model("small_cnn", 10)
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    assert [p.name for p in (out / "cache").iterdir()] == ["cifar10-train_lowrank8.pt"], (
        "rank cache missing or misnamed"
    )
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")], "temporary files left"


def test_train_resume_continues_and_matches(train, cifar, tmp_path):
    """Stopping after epoch 1, then --resume, equals an uninterrupted 2-epoch run."""
    first = ("--rank", "4", "--reverse", "--epochs", "2", "--stop-after", "1")
    train.main(_argv(cifar, tmp_path / "a", *first))
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["epochs_done"] == 1
    code = train.main(
        _argv(cifar, tmp_path / "a", "--rank", "4", "--reverse", "--epochs", "2", "--resume")
    )
    assert code == 0, "resume failed"
    train.main(_argv(cifar, tmp_path / "b", "--rank", "4", "--reverse", "--epochs", "2"))
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    for key in b:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), f"{key} differs"
    history = json.loads((tmp_path / "a" / "metrics.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2], history
    assert (tmp_path / "a" / "cache" / "cifar10-train_droptop4.pt").exists(), "no droptop cache"


def test_train_resume_rejects_other_settings(train, cifar, tmp_path, capsys):
    """--resume with another rank exits 2 with a one-line error."""
    train.main(_argv(cifar, tmp_path, "--rank", "4", "--epochs", "1"))
    code = train.main(_argv(cifar, tmp_path, "--rank", "8", "--epochs", "2", "--resume"))
    assert code == 2, "mismatched resume should fail"
    assert "rank=4 vs 8" in capsys.readouterr().err, "error should name the difference"


def test_train_normal_and_synthetic(train, tmp_path):
    """Normal training on synthetic data (no --rank) runs and reports accuracy."""
    argv = [
        "--data", "synthetic", "--synthetic-train", "60", "--synthetic-test", "30",
        "--model", "small_cnn", "--epochs", "1", "--batch-size", "20", "--out",
        str(tmp_path), "--quiet", "--schedule", "step", "--no-augment",
    ]  # fmt: skip
    assert train.main(argv) == 0, "synthetic run failed"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "test_acc_at_train_rank" not in metrics and metrics["n_test"] == 30, metrics


def test_train_resnet18_builds_for_cifar(train, cifar, tmp_path):
    """The default model (CIFAR ResNet-18) trains one tiny epoch."""
    argv = _argv(cifar, tmp_path, "--epochs", "1", "--limit-train", "8", "--limit-test", "4")
    argv[argv.index("small_cnn")] = "resnet18"
    assert train.main(argv) == 0, "resnet18 run failed"
    assert json.loads((tmp_path / "metrics.json").read_text())["n_train"] == 8


def test_train_bad_arguments(train, tmp_path, capsys):
    """A missing CIFAR-10 folder exits 2 with one line; bad flags exit via argparse."""
    assert train.main(["--data", f"cifar10:{tmp_path}", "--out", str(tmp_path / "o")]) == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err, "error should say what is missing"
    assert train.main(["--data", "imagenet", "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(SystemExit):
        train.main(["--reverse"])
    with pytest.raises(SystemExit):
        train.main(["--epochs", "0"])


def test_miniature_study_tiny_run(tmp_path):
    """The miniature study runs on a tiny budget and writes its numbers and a non-blank figure."""
    import matplotlib.image

    study = _load("miniature_study")
    argv = ["--n-train", "60", "--n-test", "30", "--epochs", "1", "--out", str(tmp_path)]
    argv += ["--threads", str(torch.get_num_threads())]
    assert study.main([*argv, "--quiet"]) == 0, "study failed"
    report = json.loads((tmp_path / "miniature_study.json").read_text())
    for name in ("natural", "low-rank"):
        assert len(report["accuracy"][name]["natural"]) == len(study.RANKS), report["accuracy"]
        assert len(report["accuracy"][name]["reverse"]) == len(study.REVERSE_RANKS), report
    pixels = matplotlib.image.imread(tmp_path / "miniature_study.png")
    assert pixels.shape[0] > 200 and float(pixels[..., :3].std()) > 0.05, "figure looks blank"
