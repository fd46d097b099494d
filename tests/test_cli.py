"""Tests for the ``captum-rig`` command: every subcommand, every user error, exit codes.

Most tests call ``main([...])`` in-process (fast) and read ``capsys``; a few run the real
command in a subprocess (``python -m captum_rig.cli`` and the ``captum-rig`` script).
"""

import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from _reference import USER_MODEL_SOURCE
from PIL import Image

from captum_rig.cli import main, parse_ranks
from captum_rig.loading import load_model
from captum_rig.lowrank import drop_top_ranks, low_rank
from captum_rig.methods import METHOD_NAMES

NET = (
    USER_MODEL_SOURCE
    + """

def flat():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))


class Flaky(nn.Module):
    # make(), counting forward calls in $CALLS; Ctrl-C at call $FAIL_AT if set

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)  # the same model in every run
        self.net = make()

    def forward(self, x):
        with open(os.environ["CALLS"], "a") as f:
            f.write(".")
        with open(os.environ["CALLS"]) as f:
            calls = len(f.read())
        if calls == int(os.environ.get("FAIL_AT", "0")):
            raise KeyboardInterrupt
        return self.net(x)
"""
)


# --------------------------------------------------------------------------- helpers


def run(capsys, *argv):
    """main(argv) in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, match=""):
    """Exit 2, exactly one line 'captum-rig: error: ...' on stderr, no traceback."""
    lines = err.strip().splitlines()
    assert code == 2, f"exit code {code}, stderr: {err}"
    assert len(lines) == 1, f"expected one stderr line, got: {err!r}"
    assert lines[0].startswith("captum-rig: error: "), lines[0]
    assert "Traceback" not in err, err
    assert match in lines[0], f"{match!r} not in {lines[0]!r}"


def write_png(path, h=12, w=16, mode="RGB", seed=0):
    """A random PNG (or any Pillow format from the suffix) of size h×w."""
    rng = np.random.default_rng(seed)
    shape = (h, w) if mode == "L" else (h, w, len(mode))
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode=mode).save(path)
    return Path(path)


def files_in(folder):
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with a model file, two RGB PNGs, a greyscale PNG and a checkpoint."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(NET)
    write_png(tmp_path / "a.png", seed=0)
    write_png(tmp_path / "b.png", seed=1)
    write_png(tmp_path / "grey.png", mode="L")
    spec = f"{tmp_path / 'net.py'}:make"
    torch.save(load_model(spec).state_dict(), tmp_path / "net.pt")
    torch.save(load_model(spec, num_classes=9).state_dict(), tmp_path / "nine.pt")
    return tmp_path


@pytest.fixture
def labelled_folder(work):
    """An image folder with two class subfolders of 8×8 PNGs."""
    for c, name in enumerate(("cat", "dog")):
        (work / "data" / name).mkdir(parents=True)
        for i in range(3):
            write_png(work / "data" / name / f"{i}.png", 8, 8, seed=10 * c + i)
    return work / "data"


# --------------------------------------------------------------------------- parsing


def test_parse_ranks_ranges_include_the_end_on_the_grid():
    """a:b:s includes b when b is on the grid; lists and ranges mix; sorted, unique."""
    assert parse_ranks("0:224:8")[-1] == 224, "0:224:8 must end at 224"
    assert len(parse_ranks("0:224:8")) == 29, "0, 8, ..., 224"
    assert parse_ranks("0:10:4") == [0, 4, 8], "10 is not on the grid"
    assert parse_ranks("3:5") == [3, 4, 5], "a:b has step 1, inclusive"
    assert parse_ranks("8,0:4:2, 2") == [0, 2, 4, 8], "comma lists, duplicates removed"


@pytest.mark.parametrize("text", ["a", "1:2:3:4", "5:1", "0:8:0", "-1", ",", "1.5"])
def test_parse_ranks_rejects(text):
    """Malformed --ranks are a UsageError (a ValueError)."""
    with pytest.raises(ValueError, match="--ranks"):
        parse_ranks(text)


def test_help_exits_zero(capsys):
    """--help prints usage and returns 0, for the command and every subcommand."""
    for argv in (["--help"], *([c, "--help"] for c in cli_commands())):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and "usage: captum-rig" in out, (argv, code, out)


def cli_commands():
    return ["demo", "explain", "lowrank", "spectrum", "robustness"]


def test_methods_help_lists_the_registry(capsys):
    """explain --help names every registered method (one registry, no second list)."""
    _, out, _ = run(capsys, "explain", "--help")
    for name in METHOD_NAMES:
        assert name in out, f"{name} missing from --help"


@pytest.mark.parametrize(
    "argv, match",
    [
        ([], "required"),
        (["nonsense"], "invalid choice"),
        (["lowrank", "a.png", "--out", "x.png"], "--rank"),
        (["lowrank", "a.png", "--rank", "two", "--out", "x.png"], "invalid int"),
        (["explain", "a.png"], "--model SPEC is required"),
        (["explain", "a.png", "--model", "x:y", "--model", "z:w"], "one --model"),
        (["explain", "a.png", "--model", "x:y", "--weights", "1", "--weights", "2"], "twice"),
        (["explain", "a.png", "--model", "x:y", "--n-steps", "0"], "positive integer"),
        (["explain", "a.png", "--model", "x:y", "--target", "cat"], "--target"),
        (["robustness", "--model", "x:y", "--data", "d", "--eps", "big"], "4/255"),
        (["robustness", "--model", "x:y", "--data", "d", "--norm", "l1"], "invalid choice"),
        (["robustness", "--model", "x:y", "--data", "d", "--eps", "300/255"], "--eps must be in"),
        (["robustness", "--model", "x:y", "--data", "d", "--alpha", "2"], "--alpha must be in"),
        (
            ["robustness", "--model", "x:y", "--data", "d", "--name", "a", "--name", "b"],
            "--name given 2 times for 1 --model",
        ),
        (
            [
                "spectrum",
                "--model",
                "x:y",
                "--model",
                "x:z",
                "--data",
                "d",
                "--name",
                "a",
                "--name",
                "a",
            ],
            "--name labels must differ",
        ),
        (["spectrum", "--model", "x:y", "--data", "d", "--ranks", "1:"], "--ranks"),
    ],
)
def test_usage_errors_are_one_line(capsys, work, argv, match):
    """argparse errors too are one line and exit 2 (not argparse's usage block)."""
    code, out, err = run(capsys, *argv)
    assert_user_error(code, err, match)
    assert files_in(work) == ["a.png", "b.png", "grey.png", "net.pt", "net.py", "nine.pt"]


# --------------------------------------------------------------------------- lowrank


def stretched(x):
    """min..max of x mapped to 0..1 (the --rescale reference)."""
    return (x - x.min()) / (x.max() - x.min())


@pytest.mark.parametrize(
    "extra, reference",
    [
        ([], lambda x: low_rank(x, 3).clamp(0, 1)),
        (["--rescale"], lambda x: stretched(low_rank(x, 3))),
        (["--reverse"], lambda x: stretched(drop_top_ranks(x, 3))),
        (["--reverse", "--no-rescale"], lambda x: drop_top_ranks(x, 3).clamp(0, 1)),
    ],
)
def test_lowrank_writes_the_rank_k_image(capsys, work, extra, reference):
    """lowrank writes the rank-k (or reverse) image; a reverse image is stretched by default."""
    code, out, err = run(capsys, "lowrank", "a.png", "--rank", 3, "--out", "low.png", *extra)
    assert code == 0, err
    assert "wrote low.png" in out, out
    written = np.asarray(Image.open("low.png"), dtype=np.float64) / 255
    x = torch.from_numpy(np.asarray(Image.open("a.png"), dtype=np.float64) / 255)
    expected = reference(x.permute(2, 0, 1)).permute(1, 2, 0)
    assert written.shape == (12, 16, 3), written.shape
    assert np.abs(written - expected.numpy()).max() <= 0.5 / 255 + 1e-9, "not the expected image"


def test_lowrank_randomized_svd(capsys, work):
    """--svd randomized writes low_rank(x, k, method="randomized") of the image."""
    code, out, err = run(
        capsys, "lowrank", "a.png", "--rank", 2, "--svd", "randomized", "--out", "fast.png"
    )
    assert code == 0, err
    x = torch.from_numpy(np.asarray(Image.open("a.png"), dtype=np.float64) / 255)
    expected = low_rank(x.permute(2, 0, 1), 2, method="randomized").permute(1, 2, 0)
    written = np.asarray(Image.open("fast.png"), dtype=np.float64) / 255
    error = np.abs(written - expected.clamp(0, 1).numpy()).max()
    assert error <= 0.5 / 255 + 1e-9, f"not the randomized rank-2 image: {error}"


def test_lowrank_reverse_is_visible_by_default(capsys, work):
    """A reverse image spans the full 0..255 range by default, not a near-black clip."""
    assert run(capsys, "lowrank", "a.png", "--rank", 1, "--reverse", "--out", "r.png")[0] == 0
    assert run(capsys, "lowrank", "a.png", "--rank", 1, "--reverse", "--no-rescale",
               "--out", "dark.png")[0] == 0  # fmt: skip
    shown, dark = np.asarray(Image.open("r.png")), np.asarray(Image.open("dark.png"))
    assert shown.min() == 0 and shown.max() == 255, (shown.min(), shown.max())
    assert dark.mean() < shown.mean() / 2, "clipping the reverse image darkens it"


def test_lowrank_full_rank_and_rank_zero(capsys, work):
    """Rank w gives the image back exactly; rank 0 a black image."""
    assert run(capsys, "lowrank", "a.png", "--rank", 12, "--out", "full.png")[0] == 0
    assert np.array_equal(np.asarray(Image.open("full.png")), np.asarray(Image.open("a.png")))
    assert run(capsys, "lowrank", "a.png", "--rank", 0, "--out", "zero.png")[0] == 0
    assert not np.asarray(Image.open("zero.png")).any(), "rank 0 is black"


def test_lowrank_greyscale_and_rescale(capsys, work):
    """A greyscale image stays greyscale; --rescale stretches min..max to 0..255."""
    code, _, err = run(
        capsys, "lowrank", "grey.png", "--rank", 2, "--reverse", "--rescale", "--out", "g.png"
    )
    assert code == 0, err
    img = Image.open("g.png")
    assert img.mode == "L" and img.size == (16, 12), (img.mode, img.size)
    pixels = np.asarray(img)
    assert pixels.min() == 0 and pixels.max() == 255, "rescaled to the full range"


def test_lowrank_output_keeps_umask_permissions(capsys, work):
    """The renamed temporary file gets ordinary permissions, not mkstemp's 0600."""
    assert run(capsys, "lowrank", "a.png", "--rank", 1, "--out", "p.png")[0] == 0
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat("p.png").st_mode & 0o777 == 0o666 & ~umask, oct(os.stat("p.png").st_mode)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["a.png", "--rank", 13], "--rank must be in 0..12"),
        (["a.png", "--rank", -1], "--rank must be in 0..12"),
        (["missing.png", "--rank", 1], "no such image file: missing.png"),
        (["net.py", "--rank", 1], "not an image file"),
        (["truncated.png", "--rank", 1], "truncated.png"),
        ([".", "--rank", 1], "is a folder"),
    ],
)
def test_lowrank_errors(capsys, work, argv, match):
    """Bad ranks and unreadable files: one line, exit 2, no output file."""
    data = (work / "a.png").read_bytes()
    (work / "truncated.png").write_bytes(data[: len(data) // 2])
    before = files_in(work)
    code, _, err = run(capsys, "lowrank", *argv, "--out", "out.png")
    assert_user_error(code, err, match)
    assert files_in(work) == before, "no output file, no temporary file"


@pytest.mark.parametrize(
    "out, match",
    [("out.xyz", "must end in one of"), ("nodir/out.png", "does not exist"), (".", "folder")],
)
def test_lowrank_bad_output(capsys, work, out, match):
    """An output with an unknown extension or in a missing folder is refused up front."""
    code, _, err = run(capsys, "lowrank", "a.png", "--rank", 1, "--out", out)
    assert_user_error(code, err, match)


# --------------------------------------------------------------------------- explain


def figure_pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_explain_every_registered_method(capsys, work, method):
    """explain runs every method of the registry and writes a figure that is not blank."""
    code, out, err = run(
        capsys, "explain", "a.png", "b.png", "--model", "net.py:make", "--weights", "net.pt",
        "--methods", method, "--n-steps", 4, "--out", "fig.png", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert "a.png: target" in out and "wrote fig.png" in out, out
    pixels = figure_pixels(work / "fig.png")
    assert pixels.std() > 10, "the figure is blank"
    assert files_in(work).count("fig.png") == 1 and not [
        f for f in files_in(work) if f.endswith(".tmp")
    ], files_in(work)


def test_explain_all_methods_target_and_sizes(capsys, work):
    """Default methods (all), a fixed target, images of different sizes, --weights first."""
    write_png(work / "small.png", 9, 9, seed=3)
    code, out, err = run(
        capsys, "explain", "a.png", "small.png", "--weights", "net.pt", "--model", "net.py:make",
        "--target", 2, "--n-steps", 3, "--out", "fig.pdf",
    )  # fmt: skip
    assert code == 0, err
    assert out.count("target 2") == 2, out
    assert (work / "fig.pdf").read_bytes().startswith(b"%PDF"), "a PDF figure"


def test_explain_auto_target_is_the_prediction(capsys, work):
    """--target auto (the default) explains each image's predicted class."""
    code, out, err = run(
        capsys, "explain", "a.png", "--model", "net.py:make", "--methods", "saliency",
        "--out", "fig.png",
    )  # fmt: skip
    assert code == 0, err
    line = out.splitlines()[0]
    target = line.split("target ")[1].split(" ")[0]
    assert line.endswith(f"predicted {target}"), line


def test_explain_convert_greyscale(capsys, work):
    """--convert repeats a grey channel for an RGB model instead of refusing the image."""
    code, out, err = run(
        capsys, "explain", "grey.png", "--model", "net.py:make", "--methods", "saliency",
        "--convert", "--out", "f.png",
    )  # fmt: skip
    assert code == 0, err


def test_explain_image_size_and_normalization(capsys, work):
    """--image-size resizes and crops; --mean/--std wrap the model with Normalize."""
    code, out, err = run(
        capsys, "explain", "a.png", "--model", "net.py:make", "--methods", "saliency",
        "--image-size", 8, "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2", "--out", "f.png",
    )  # fmt: skip
    assert code == 0, err


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--methods", "rig,gradcam"], "unknown attribution method 'gradcam'"),
        (["--methods", "rgi"], "did you mean rig"),
        (["--methods", ","], "no attribution method"),
        (["--target", 5], "--target 5 is out of range: the model has 5 classes"),
        (["--target", -1], "out of range"),
        (["--weights", "nine.pt"], "nine.pt does not fit"),
        (["--weights", "net.py"], "cannot read checkpoint"),
        (["--weights", "none.pt"], "no such file"),
        (["--pretrained"], "torchvision specs only"),
        (["--device", "tpu"], "--device"),
    ],
)
def test_explain_errors(capsys, work, extra, match):
    """Bad methods, targets, checkpoints: one line, exit 2, no output file."""
    before = files_in(work)
    code, _, err = run(capsys, "explain", "a.png", "--model", "net.py:make", *extra)
    assert_user_error(code, err, match)
    assert files_in(work) == before, "no figure written"


@pytest.mark.parametrize(
    "image, model, match",
    [
        (
            "grey.png",
            "net.py:make",
            "grey.png is greyscale (mode L) but RGB (channels=3) was asked for; pass "
            "convert=True (captum-rig: --convert)",
        ),
        ("missing.png", "net.py:make", "no such image file"),
        ("net.py", "net.py:make", "not an image file"),
        ("a.png", "torchvision:resnet19", "did you mean: resnet18"),
        ("a.png", "nope.py:make", "no such file"),
        ("a.png", "net.py:mkae", "did you mean: make"),
        ("a.png", "resnet18", "model spec must be"),
        ("a.png", "net.py:flat", "cannot take a.png"),
    ],
)
def test_explain_input_errors(capsys, work, image, model, match):
    """Bad images and model specs: one line, exit 2, no output file."""
    before = files_in(work)
    code, _, err = run(capsys, "explain", image, "--model", model, "--methods", "saliency")
    assert_user_error(code, err, match)
    assert files_in(work) == before, "no figure written"


def test_explain_pretrained_offline(capsys, work, monkeypatch):
    """--pretrained with no network and no cache: one line, at once."""
    from captum_rig import loading

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(work / "hub"))
    monkeypatch.setattr(loading, "_online", lambda url, timeout=3.0: False)
    code, _, err = run(
        capsys, "explain", "a.png", "--model", "torchvision:resnet18", "--pretrained"
    )
    assert_user_error(code, err, "no network")


def test_explain_pretrained_from_cache_names_classes(capsys, work, monkeypatch):
    """--pretrained with the weights in the hub cache: no network, ImageNet class names."""
    import torchvision

    from captum_rig import loading

    (work / "hub" / "checkpoints").mkdir(parents=True)
    (work / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth").write_bytes(b"")
    state = torchvision.models.squeezenet1_1().state_dict()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(work / "hub"))
    monkeypatch.setattr(loading, "_online", lambda url, timeout=3.0: pytest.fail("probed"))
    monkeypatch.setattr(
        torchvision.models._api.WeightsEnum, "get_state_dict", lambda self, **kw: state
    )
    code, out, err = run(
        capsys, "explain", "a.png", "--model", "torchvision:squeezenet1_1", "--pretrained",
        "--methods", "saliency", "--target", 281, "--out", "f.png",
    )  # fmt: skip
    assert code == 0, err
    assert "target 281 (tabby)" in out, out
    assert Image.open("f.png").size[0] > 100, "a figure at the model's 224×224 input"


# --------------------------------------------------------------------------- spectrum


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_spectrum_on_a_labelled_folder(capsys, work, labelled_folder):
    """spectrum writes spectrum.csv (one row per rank, with accuracy) and spectrum.png."""
    code, out, err = run(
        capsys, "spectrum", "--model", "net.py:make", "--weights", "net.pt",
        "--data", labelled_folder, "--ranks", "0:8:4", "--batch-size", 4, "--out", "sp",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    rows = read_csv(work / "sp" / "spectrum.csv")
    assert [int(r["rank"]) for r in rows] == [0, 4, 8], rows
    assert float(rows[-1]["agreement"]) == 1.0, "full rank agrees with itself"
    assert all(r["accuracy"] != "" and r["n_images"] == "6" for r in rows), rows
    assert figure_pixels(work / "sp" / "spectrum.png").std() > 10, "blank plot"
    assert files_in(work / "sp") == ["spectrum.csv", "spectrum.png"], "no checkpoint left"


def test_spectrum_flat_folder_limit_reverse_resume(capsys, work, labelled_folder):
    """A flat folder has no labels; --limit, --reverse and --resume (no checkpoint yet)."""
    flat = work / "flat"
    flat.mkdir()
    for p in (labelled_folder / "cat").iterdir():
        shutil.copy(p, flat / p.name)
    code, out, err = run(
        capsys, "spectrum", "--model", "net.py:make", "--data", flat, "--limit", 2,
        "--reverse", "--resume", "--out", "sp",
    )  # fmt: skip
    assert code == 0, err
    assert "no checkpoint" in err, err
    rows = read_csv(work / "sp" / "spectrum.csv")
    assert len(rows) == 9 and rows[0]["accuracy"] == "" and rows[0]["n_images"] == "2", rows
    assert float(rows[0]["agreement"]) == 1.0, "reverse rank 0 is the image itself"


def test_spectrum_resume_uses_the_checkpoint(capsys, work, labelled_folder, monkeypatch):
    """--resume passes the checkpoint in --out; without it a stale one is removed."""
    seen = []
    import captum_rig.spectrum as spectrum

    real = spectrum.rank_spectrum

    def spy(*args, **kwargs):
        seen.append(Path(kwargs["checkpoint"]).exists())
        return real(*args, **kwargs)

    monkeypatch.setattr(spectrum, "rank_spectrum", spy)
    (work / "sp").mkdir()
    for resume in (True, False):
        (work / "sp" / ".spectrum.ckpt").write_bytes(b"stale")
        argv = ["spectrum", "--model", "net.py:make", "--data", labelled_folder, "--out", "sp"]
        code, _, err = run(capsys, *argv, *(["--resume"] * resume))
        if resume:
            assert_user_error(code, err, "checkpoint")  # the library refuses a bad file
        else:
            assert code == 0, err
    assert seen == [True, False], seen


def test_spectrum_interrupted_then_resumed(capsys, work, labelled_folder, monkeypatch):
    """Ctrl-C mid-run: exit 130, one line with the batches saved and the command that resumes."""
    calls = work / "calls.txt"
    monkeypatch.setenv("CALLS", str(calls))
    argv = ["spectrum", "--model", "net.py:Flaky", "--data", labelled_folder, "--batch-size", 2]
    assert run(capsys, *argv, "--out", "whole")[0] == 0
    expected = read_csv(work / "whole" / "spectrum.csv")
    n_batches = -(-int(expected[0]["n_images"]) // 2)
    total = len(calls.read_text())
    calls.write_text("")
    monkeypatch.setenv("FAIL_AT", str(total // 2 + 1))
    code, _, err = run(capsys, *argv, "--out", "sp")
    line = re.fullmatch(
        r"captum-rig: interrupted: (\d+) of (\d+) batches of Flaky counted and saved; "
        r"resume with: (.+)",
        err.strip(),
    )
    assert code == 130 and line, (code, err)
    assert 0 < int(line[1]) < n_batches and int(line[2]) == n_batches, line[0]
    assert files_in(work / "sp") == [".spectrum.ckpt"], "only the checkpoint after Ctrl-C"
    command = shlex.split(line[3])
    assert command == ["captum-rig", *map(str, argv), "--out", "sp", "--resume"], command
    monkeypatch.delenv("FAIL_AT")
    code, _, err = run(capsys, *command[1:])  # the printed command, as a user would paste it
    assert code == 0, err
    assert read_csv(work / "sp" / "spectrum.csv") == expected, "resumed == uninterrupted"
    assert ".spectrum.ckpt" not in files_in(work / "sp"), "checkpoint removed when done"


def test_spectrum_on_fake_cifar10(capsys, work):
    """cifar10:PATH reads a CIFAR-10 folder in torchvision's format."""
    from captum_rig.synthetic import write_cifar10_folder

    write_cifar10_folder(work / "cifar", n_train=5, n_test=6)
    code, out, err = run(
        capsys, "spectrum", "--model", "net.py:make", "--data", f"cifar10:{work / 'cifar'}",
        "--ranks", "0,16,32", "--out", "sp",
    )  # fmt: skip
    assert code == 0, err
    assert [r["n_images"] for r in read_csv(work / "sp" / "spectrum.csv")] == ["6"] * 3


@pytest.mark.parametrize(
    "data, extra, match",
    [
        ("empty", [], "no images"),
        ("missing", [], "image folder missing does not exist"),
        ("cifar10:missing", [], "CIFAR-10 not found"),
        ("data", ["--ranks", "0:40:8"], "must be in 0..8"),
        ("data", ["--model", "demo:natural"], "different input sizes"),
        ("flat", ["--metric", "accuracy"], "has no labels"),
        ("greys", [], "g.png is greyscale"),
        ("mixed", [], "--image-size"),
    ],
)
def test_spectrum_errors(capsys, work, labelled_folder, data, extra, match):
    """Empty or missing folders, ranks beyond w, mismatched images: exit 2, no output."""
    (work / "empty").mkdir()
    (work / "empty" / "notes.txt").write_text("no images here")
    (work / "greys").mkdir()
    write_png(work / "greys" / "g.png", 8, 8, mode="L")
    (work / "mixed").mkdir()
    write_png(work / "mixed" / "a.png", 8, 8)
    (work / "flat").mkdir()
    write_png(work / "flat" / "x.png", 8, 8)
    write_png(work / "mixed" / "b.png", 9, 8)
    code, _, err = run(
        capsys, "spectrum", "--model", "net.py:make", "--data", data, *extra, "--out", "sp"
    )
    assert_user_error(code, err, match)
    assert not (work / "sp").exists(), "no output folder left behind"


# --------------------------------------------------------------------------- robustness


def test_robustness_two_models_side_by_side(capsys, work, labelled_folder):
    """Two --model/--weights pairs: a Markdown table with both, and a CSV with two rows."""
    code, out, err = run(
        capsys, "robustness", "--model", "net.py:make", "--weights", "net.pt",
        "--model", "net.py:make", "--data", labelled_folder, "--eps", "8/255", "--steps", 2,
        "--out", "rob.csv", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "| net |" in out and "| make |" in out and "targeted Linf PGD" in out, out
    rows = read_csv(work / "rob.csv")
    assert [r["model"] for r in rows] == ["net", "make"], rows
    assert all(r["n_images"] == "6" for r in rows), rows


def test_robustness_untargeted_l2(capsys, work, labelled_folder):
    """--untargeted --norm l2 reach evaluate_robustness; no --out: table only."""
    code, out, err = run(
        capsys, "robustness", "--model", "net.py:make", "--data", labelled_folder,
        "--untargeted", "--norm", "L2", "--eps", "0.5", "--steps", 1, "--limit", 3,
    )  # fmt: skip
    assert code == 0, err
    assert "untargeted L2 PGD" in out and "3 images" in out, out


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--data", "flat"], "has no labels"),
        (["--data", "data", "--out", "rob.txt"], "must end in one of .csv"),
        (["--data", "data", "--weights", "nine.pt"], "nine.pt does not fit"),
    ],
)
def test_robustness_errors(capsys, work, labelled_folder, extra, match):
    """Unlabelled data, a bad --out, a misfit checkpoint: exit 2, no CSV."""
    (work / "flat").mkdir()
    write_png(work / "flat" / "x.png", 8, 8)
    code, _, err = run(capsys, "robustness", "--model", "net.py:make", *extra)
    assert_user_error(code, err, match)
    assert not list(work.glob("*.csv")) and not list(work.glob("*.txt")), files_in(work)


# --------------------------------------------------------------------------- demo


def test_demo_calls_run_demo(capsys, work, monkeypatch):
    """demo --out DIR calls run_demo(DIR, log=print), prints its stages, files and report."""
    calls = []

    def run_demo(out_dir, *, log=None, **kwargs):
        calls.append((Path(out_dir), kwargs))
        log("[1/2] setup: a fake stage")
        log("[2/2] report: report.md")
        return [Path(out_dir) / "figure.png", Path(out_dir) / "report.md"]

    fake = types.ModuleType("captum_rig.demo")
    fake.run_demo = run_demo
    monkeypatch.setitem(sys.modules, "captum_rig.demo", fake)
    code, out, err = run(capsys, "demo", "--out", "d")
    assert code == 0, err
    assert calls == [(Path("d"), {})], calls
    lines = out.splitlines()
    assert lines[:2] == ["[1/2] setup: a fake stage", "[2/2] report: report.md"], lines
    assert f"  {Path('d') / 'figure.png'}" in lines, "each written file is listed"
    assert lines[-1] == f"open {Path('d') / 'report.md'} to read the report", lines[-1]
    code, out, err = run(capsys, "demo", "--out", "d", "--methods", "saliency,rig")
    assert code == 0, err
    assert calls[-1] == (Path("d"), {"methods": ["saliency", "rig"]}), calls
    code, out, err = run(capsys, "demo", "--out", "d", "--methods", "gradcam")
    assert_user_error(code, err, "unknown attribution method 'gradcam'")


# --------------------------------------------------------------------------- first hour


def test_version(capsys):
    """--version prints 'captum-rig 0.1.0' (the package's __version__) and exits 0."""
    import captum_rig

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"captum-rig {captum_rig.__version__}", out
    assert captum_rig.__version__ == "0.1.0", captum_rig.__version__


@pytest.mark.parametrize(
    "command, flags",
    [
        ("robustness", ["--eps", "4/255", "--steps", "20", "--norm", "linf", "--seed", "0",
                        "--batch-size", "64", "--split", "test"]),
        ("spectrum", ["--metric", "agreement", "--out", "spectrum", "--seed", "0"]),
        ("explain", ["--target", "auto", "--out", "explain.png"]),
        ("demo", ["--out", "captum-rig-demo"]),
    ],
)  # fmt: skip
def test_help_states_defaults(capsys, command, flags):
    """Each option with a default names it in --help as '(default: VALUE)'."""
    _, out, _ = run(capsys, command, "--help")
    text = " ".join(out.split()).split("options:", 1)[1]  # after the usage; unwrapped
    for flag, value in zip(flags[::2], flags[1::2]):
        block = text.split(flag + " ", 1)[1]
        assert f"(default: {value})" in block[:400], (
            f"{command} {flag}: no default in {block[:400]}"
        )


def test_help_explains_the_ranks_syntax(capsys):
    """spectrum --help shows the --ranks syntax with an example and the default."""
    _, out, _ = run(capsys, "spectrum", "--help")
    text = " ".join(out.split())
    assert "a:b[:step]" in text and "0:224:8" in text and "(default: all" in text, text


def test_explain_demo_model_names_the_shapes(capsys, work):
    """--model demo:natural needs no file: 32×32 input, predictions named by the shapes."""
    from captum_rig.models import load_demo_model
    from captum_rig.synthetic import SHAPES, make_shapes

    batch = make_shapes(1, size=48, seed=3)  # bigger than 32: resized by the model's input
    Image.fromarray((batch.images[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(
        "shape.png"
    )
    code, out, err = run(
        capsys, "explain", "shape.png", "--model", "demo:natural", "--methods", "saliency",
        "--out", "f.png",
    )  # fmt: skip
    assert code == 0, err
    x = load_image_like_the_cli("shape.png", 32)
    with torch.no_grad():
        predicted = int(load_demo_model("natural")(x.unsqueeze(0)).argmax(1))
    assert f"predicted {predicted} ({SHAPES[predicted]})" in out, out
    assert "random weights" not in err, err


def load_image_like_the_cli(path, size):
    """The image as the CLI gives it to a model with a size×size input."""
    from captum_rig.data import load_image

    return load_image(path, size=size)


@pytest.mark.parametrize("spec", ["demo:natural", "demo:lowrank8"])
def test_demo_specs_in_robustness_and_names(capsys, work, labelled_folder, spec):
    """Demo specs work in robustness, and --name labels the rows (paired in order)."""
    code, out, err = run(
        capsys, "robustness", "--model", spec, "--model", "net.py:make",
        "--name", "shipped", "--name", "mine", "--data", labelled_folder, "--steps", 1,
        "--image-size", 8, "--num-classes", 6,
        "--out", "rob.csv", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "| shipped |" in out and "| mine |" in out, out
    assert [r["model"] for r in read_csv(work / "rob.csv")] == ["shipped", "mine"]


def test_spectrum_several_models(capsys, work, labelled_folder, monkeypatch):
    """Several --model: one CSV and one curve each, named by --name, y axis = the metric."""
    from captum_rig import viz
    from captum_rig.spectrum import rank_spectrum

    drawn = {}
    real = viz.plot_spectra

    def spy(spectra, **kwargs):
        fig, ax = real(spectra, **kwargs)
        drawn.update(labels=[line.get_label() for line in ax.lines], ylabel=ax.get_ylabel())
        return fig, ax

    monkeypatch.setattr(viz, "plot_spectra", spy)
    code, out, err = run(
        capsys, "spectrum", "--model", "net.py:make", "--weights", "net.pt",
        "--model", "net.py:make", "--name", "trained", "--data", labelled_folder,
        "--ranks", "0:8:4", "--metric", "accuracy", "--out", "sp",
    )  # fmt: skip
    assert code == 0, err
    assert files_in(work / "sp") == ["spectrum.png", "spectrum_make.csv", "spectrum_trained.csv"]
    assert drawn["labels"] == ["trained", "make"], drawn
    assert drawn["ylabel"] == "top-1 accuracy", drawn
    images = torch.stack(
        [load_image_like_the_cli(p, 8) for p in sorted(labelled_folder.rglob("*.png"))]
    )
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    model = load_model(f"{work / 'net.py'}:make", weights=work / "net.pt")
    expected = rank_spectrum(model, images, ranks=[0, 4, 8], labels=labels, progress=False)
    rows = read_csv(work / "sp" / "spectrum_trained.csv")
    assert [float(r["accuracy"]) for r in rows] == pytest.approx(expected.accuracy), rows
    assert figure_pixels(work / "sp" / "spectrum.png").std() > 10, "blank plot"


def test_spectrum_resume_reads_back_finished_models(capsys, work, labelled_folder, monkeypatch):
    """--resume keeps a model whose CSV is complete instead of counting it again."""
    import captum_rig.spectrum as spectrum

    argv = ["spectrum", "--model", "net.py:make", "--model", "demo:natural", "--data",
            labelled_folder, "--image-size", 8, "--num-classes", 6, "--out", "sp"]  # fmt: skip
    assert run(capsys, *argv)[0] == 0
    before = {p.name: p.read_text() for p in (work / "sp").glob("*.csv")}
    monkeypatch.setattr(spectrum, "rank_spectrum", lambda *a, **k: pytest.fail("recounted"))
    code, out, err = run(capsys, *argv, "--resume")
    assert code == 0, err
    assert {p.name: p.read_text() for p in (work / "sp").glob("*.csv")} == before
    assert sorted(before) == ["spectrum_make.csv", "spectrum_natural.csv"], sorted(before)


def test_seed_makes_random_weights_repeatable(capsys, work):
    """The same command twice predicts the same; the seed, not luck, fixes the weights."""
    argv = ["explain", "a.png", "--model", "net.py:make", "--methods", "saliency",
            "--target", 0, "--out", "f.png"]  # fmt: skip
    first, second = run(capsys, *argv)[1], run(capsys, *argv)[1]
    assert first == second, (first, second)
    probabilities = {run(capsys, *argv, "--seed", s)[1].split("p = ")[1][:5] for s in range(4)}
    assert len(probabilities) > 1, "different seeds should give different random models"


# --------------------------------------------------------------------------- subprocess


def subprocess_run(argv, cwd):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_module_entry_point_success_and_error(work):
    """python -m captum_rig.cli: exit 0 on success, 2 and one clean line on a user error."""
    ok = subprocess_run(
        [sys.executable, "-m", "captum_rig.cli", "lowrank", "a.png", "--rank", "2", "--out",
         "l.png"], work,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert Image.open(work / "l.png").size == (16, 12)
    bad = subprocess_run(
        [sys.executable, "-m", "captum_rig.cli", "explain", "grey.png", "--model", "net.py:make",
         "--out", "f.png"], work,
    )  # fmt: skip
    assert_user_error(bad.returncode, bad.stderr, "greyscale")
    assert not (work / "f.png").exists()


def test_console_script(work):
    """The installed captum-rig script runs the same main."""
    script = Path(sys.executable).with_name("captum-rig")
    assert script.exists(), "pip install -e . installs the captum-rig script beside python"
    done = subprocess_run(
        [str(script), "explain", "a.png", "--model", "net.py:make", "--methods", "rig,saliency",
         "--n-steps", "3", "--out", "fig.png"], work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert figure_pixels(work / "fig.png").std() > 10, "blank figure"
    bad = subprocess_run([str(script), "lowrank", "a.png", "--rank", "99", "--out", "x.png"], work)
    assert_user_error(bad.returncode, bad.stderr, "--rank must be in 0..12")


def test_lowrank_answers_ctrl_c_during_a_big_svd(work):
    """SIGINT in the SVD of a 17 Mpx image (limit lifted): exit 130 at once, no output file."""
    noise = np.random.default_rng(0).integers(0, 256, (4100, 4100), dtype=np.uint8)
    Image.fromarray(noise).save(work / "huge.png")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    argv = ["lowrank", "huge.png", "--rank", "3", "--out", "h.png", "--max-pixels", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "captum_rig.cli", *argv],
        cwd=work, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        note = proc.stderr.readline()  # printed just before the SVD starts
        assert "Ctrl-C stops it" in note, note
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        # The SVD alone takes minutes on one thread: an exit within this bound means Ctrl-C
        # was answered, not waited out (it takes well under a second when answered).
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["captum-rig: interrupted"], err
    assert not any(p.name.startswith((".h.", "h.")) for p in work.iterdir()), "no output"


# --------------------------------------------------------------------------- hostile inputs

COUNTING = """
import os

from torch import nn


class Counting(nn.Module):
    # a small CNN for any image size; adds each batch's size to the file $SAMPLES

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5),
        )

    def forward(self, x):
        with open(os.environ["SAMPLES"], "a") as f:
            f.write(f"{x.shape[0]}\\n")
        return self.net(x)
"""


@pytest.fixture
def counting(work, monkeypatch):
    """The model spec of a CNN that logs its batch sizes, and a function reading the total."""
    (work / "counting.py").write_text(COUNTING)
    log = work / "samples.txt"
    monkeypatch.setenv("SAMPLES", str(log))

    def samples():
        if not log.exists():
            return 0
        total = sum(int(n) for n in log.read_text().split())
        log.unlink()
        return total

    return "counting.py:Counting", samples


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    "argv, match",
    [
        (["explain", "a.png", "--out", "/proc/e.png"], "--out '/proc/e.png' is not a writable"),
        (["spectrum", "--data", "data", "--out", "/proc"], "--out '/proc' is not a writable"),
        (["spectrum", "--data", "data", "--out", "/proc/sp"], "--out '/proc/sp' is not a"),
        (["spectrum", "--data", "data", "--out", "a.png/sp"], "the folder of --out"),
        (["robustness", "--data", "data", "--out", "/proc/r.csv"], "--out '/proc/r.csv' is not"),
        (["robustness", "--data", "data", "--out", "a.png/r.csv"], "the folder of --out"),
    ],
)
def test_outputs_are_checked_before_any_work(capsys, work, labelled_folder, counting, argv, match):
    """An --out that cannot be written fails first, naming --out, before the model runs once."""
    spec, samples = counting
    before = files_in(work)
    code, _, err = run(capsys, *argv, "--model", spec)
    assert_user_error(code, err, match)
    assert ".tmp" not in err, "the error names the option, not a temporary file"
    assert samples() == 0, "the model ran before the output was checked"
    assert files_in(work) == before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    "argv",
    [
        ["lowrank", "a.png", "--rank", 1, "--out", "/proc/x.png"],
        ["lowrank", "a.png", "--rank", 1, "--out", "a.png/x.png"],
        ["demo", "--out", "/proc/demo"],
    ],
)
def test_lowrank_and_demo_outputs_are_checked(capsys, work, argv):
    """lowrank and demo refuse an --out they cannot write, before reading or computing."""
    code, _, err = run(capsys, *argv)
    assert_user_error(code, err, "--out")


def test_big_images_are_refused_until_max_pixels_lifts_the_limit(capsys, work):
    """Above 4096×4096 (or --max-pixels N) an image is refused, naming --max-pixels."""
    Image.new("L", (4100, 4100)).save(work / "big.png")  # zeros: a small file
    code, _, err = run(capsys, "lowrank", "big.png", "--rank", 1, "--out", "o.png")
    assert_user_error(code, err, "4100×4100 = 16,810,000 pixels, more than max_pixels")
    assert "--max-pixels" in err and not (work / "o.png").exists()
    write_png(work / "mid.png", 30, 40)
    code, _, err = run(capsys, "lowrank", "mid.png", "--rank", 1, "--out", "o.png",
                       "--max-pixels", 1199)  # fmt: skip
    assert_user_error(code, err, "--max-pixels")
    for limit in (1200, 0):  # exactly at the limit, and no limit
        code, _, err = run(capsys, "lowrank", "mid.png", "--rank", 1, "--out", "o.png",
                           "--max-pixels", limit)  # fmt: skip
        assert code == 0, err
    code, _, err = run(capsys, "explain", "mid.png", "--model", "net.py:make", "--out", "f.png",
                       "--max-pixels", 100)  # fmt: skip
    assert_user_error(code, err, "--max-pixels")


def test_explain_spends_at_most_captum_igs_default(capsys, work, counting):
    """Default: each method spends <= 50 gradient evaluations; 'all' gives RIG every rank."""
    spec, samples = counting
    write_png(work / "big.png", 64, 80)
    argv = ["explain", "big.png", "--model", spec, "--out", "f.png", "--no-progress"]
    cases = [  # (--n-steps, method, the count printed, samples the model sees)
        ([], "rig", "rig 50", 50),
        ([], "ig", "ig 50", 50),
        ([], "blurig", "blurig 50", 50),
        ([], "saliency", "saliency 1", 1),
        (["--n-steps", "all"], "rig", "rig 63 (every rank)", 63),
        (["--n-steps", "all"], "blurig", "blurig 100", 100),
        (["--n-steps", 7], "rig", "rig 7", 7),
    ]
    for extra, method, printed, n in cases:
        code, _, err = run(capsys, *argv, "--methods", method, *extra)
        assert code == 0, err
        assert f"gradient evaluations per image: {printed}\n" in err, err
        assert samples() == 1 + n, (method, extra)  # one forward for the prediction


def test_explain_resizes_to_the_model_input_when_known(capsys, work, counting):
    """demo models see 32×32 whatever the file's size; factory models the file's own size."""
    write_png(work / "big.png", 48, 64)
    code, _, err = run(capsys, "explain", "big.png", "--model", "demo:natural", "--methods",
                       "rig", "--out", "f.png")  # fmt: skip
    assert code == 0, err
    assert "rig 31 (every rank)" in err, "32×32: ranks 1..31"
    code, _, err = run(capsys, "explain", "big.png", "--model", counting[0], "--methods", "rig",
                       "--n-steps", "all", "--out", "f.png")  # fmt: skip
    assert code == 0, err
    assert "rig 47 (every rank)" in err, "48×64 as it is: ranks 1..47"


def test_data_and_weights_that_are_files_of_the_wrong_kind(capsys, work, labelled_folder):
    """--data FILE says it is a file and what --data takes; --weights /dev/null is no file."""
    code, _, err = run(capsys, "spectrum", "--model", "net.py:make", "--data", "a.png")
    assert_user_error(code, err, "--data 'a.png' is a file; --data takes a folder of images")
    if Path("/dev/null").exists():
        code, _, err = run(capsys, "explain", "a.png", "--model", "net.py:make", "--weights",
                           "/dev/null", "--out", "f.png")  # fmt: skip
        assert_user_error(code, err, "/dev/null: it is not a regular file")
    torch.save(load_model("net.py:make"), work / "whole.pt")  # a pickled module, not a state dict
    code, _, err = run(capsys, "explain", "a.png", "--model", "net.py:make", "--weights",
                       "whole.pt", "--out", "f.png")  # fmt: skip
    assert_user_error(code, err, "holds Python objects other than tensors")
    assert "torch.save(model.state_dict(), PATH)" in err and "weights_only=False" not in err


def test_help_says_a_python_model_spec_runs_code(capsys):
    """--help of every command with --model says a file or module spec runs that code."""
    for command in ("explain", "spectrum", "robustness"):
        assert main([command, "--help"]) == 0
        assert "RUNS, the module or file" in " ".join(capsys.readouterr().out.split())


def test_random_torchvision_weights_are_announced(capsys, tmp_path):
    """A torchvision model without --weights/--pretrained is said to be random, once."""
    import argparse

    import torchvision

    from captum_rig import cli

    args = argparse.Namespace(
        num_classes=None, mean=None, std=None, no_normalize=False, image_size=None
    )
    entry = {"spec": "torchvision:resnet18", "weights": None, "pretrained": False}
    cli._load(entry, args, "cpu")
    assert capsys.readouterr().err.count("has random weights") == 1
    weights = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    cli._load({**entry, "weights": str(weights)}, args, "cpu")
    assert "random weights" not in capsys.readouterr().err


# --------------------------------------------------------------------------- contributions


def test_contributions_and_stability_help(capsys):
    """contributions and stability have --help pages naming their own options."""
    for command, flag in (("contributions", "--bands"), ("stability", "--attacks")):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and flag in out, (command, out)


def test_contributions_match_the_library(capsys, work):
    """CSV rows, printed sums and F(x) - F(0) equal a direct rank_contributions call."""
    from captum_rig import rank_contributions

    code, out, err = run(
        capsys, "contributions", "a.png", "b.png", "--model", "net.py:make", "--weights",
        "net.pt", "--bands", "0,1,2,4,12", "--n-steps", 10, "--target", 1, "--out", "rc",
    )  # fmt: skip
    assert code == 0, err
    assert files_in(work / "rc") == ["contributions.csv", "rank_contributions.png"]
    rows = read_csv(work / "rc" / "contributions.csv")
    assert len(rows) == 2 * 3 * 4, "two images, three channels, four bands"
    model = load_model(f"{work / 'net.py'}:make", weights=work / "net.pt")
    for name, line in zip(("a.png", "b.png"), out.splitlines()):
        x = load_image_like_the_cli(work / name, None).unsqueeze(0)
        expected = rank_contributions(model, x, target=1, bands=[0, 1, 2, 4, 12], n_steps=10)
        mine = [r for r in rows if r["image"] == name]
        assert [(int(r["band_start"]), int(r["band_end"])) for r in mine[:4]] == [
            (0, 1), (1, 2), (2, 4), (4, 12)
        ], mine  # fmt: skip
        got = torch.tensor([float(r["value"]) for r in mine]).reshape(3, 4)
        assert torch.allclose(got, expected[0], atol=1e-6), (got, expected)
        with torch.no_grad():
            delta = float(model(x)[0, 1] - model(torch.zeros_like(x))[0, 1])
        assert f"sum of contributions {float(expected.double().sum()):.6g}" in line, line
        assert f"F(x) - F(0) = {delta:.6g}" in line, line
    assert figure_pixels(work / "rc" / "rank_contributions.png").std() > 10, "blank figure"


def test_contributions_of_a_linear_model_are_its_svd_terms(capsys, work):
    """For a linear model each rank's entry is w_target · σ_i u_i v_iᵀ (numpy SVD), exactly."""
    write_png(work / "s.png", 8, 8, seed=3)
    torch.manual_seed(0)
    flat = load_model(f"{work / 'net.py'}:flat")
    torch.save(flat.state_dict(), work / "flat.pt")
    code, out, err = run(
        capsys, "contributions", "s.png", "--model", "net.py:flat", "--weights", "flat.pt",
        "--target", 2, "--n-steps", 8, "--no-cumulative", "--out", "rc",
    )  # fmt: skip
    assert code == 0, err
    rows = read_csv(work / "rc" / "contributions.csv")
    x = load_image_like_the_cli(work / "s.png", None).double().numpy()
    w = flat[1].weight.detach().double().numpy()[2].reshape(3, 8, 8)
    expected = []
    for c in range(3):
        u, s, vt = np.linalg.svd(x[c])
        expected += [float((w[c] * s[i] * np.outer(u[:, i], vt[i])).sum()) for i in range(8)]
    got = [float(r["value"]) for r in rows]
    assert [int(r["band_start"]) for r in rows] == list(range(8)) * 3, rows
    assert np.allclose(got, expected, atol=1e-5), (got, expected)
    total, delta = out.split("sum of contributions ")[1].split(", F(x) - F(0) = ")
    assert float(total) == pytest.approx(float(delta.split()[0]), rel=1e-4), out


def test_contributions_notes_a_large_quadrature_gap(capsys, work):
    """Too few steps for wide bands: a note on stderr says so; the linear model gets none."""
    code, out, err = run(
        capsys, "contributions", "a.png", "--model", "net.py:make", "--weights", "net.pt",
        "--bands", "0,12", "--n-steps", 1, "--target", 1, "--out", "rc",
    )  # fmt: skip
    assert code == 0, err
    total, delta = out.split("sum of contributions ")[1].split(", F(x) - F(0) = ")
    gap = abs(float(total) - float(delta.split()[0])) / abs(float(delta.split()[0]))
    assert gap > 0.05, f"the setting should leave a visible gap, got {gap:.3f}"
    assert "note: the sums miss F(x) - F(0)" in err, err
    write_png(work / "s.png", 8, 8, seed=3)
    flat = load_model(f"{work / 'net.py'}:flat")
    torch.save(flat.state_dict(), work / "flat.pt")
    code, _, err = run(
        capsys, "contributions", "s.png", "--model", "net.py:flat", "--weights", "flat.pt",
        "--bands", "0,8", "--n-steps", 1, "--out", "rc2",
    )  # fmt: skip
    assert code == 0 and "note:" not in err, err


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--bands", "0,4,8"], "--bands must end at min(H, W) = 12 of a.png"),
        (["--bands", "2,4,12"], "argument --bands: expected at least two edges starting at 0"),
        (["--bands", "0,x"], "argument --bands: band edges must be integers"),
        (["--bands", "0,1,2,4,12", "--n-steps", 2], "--n-steps must be at least the number"),
        (["--n-steps", 11], "--n-steps must be at least the number of bands (12 for a.png)"),
        (["--target", 99], "--target 99 is out of range"),
        (["--target", "cat"], "--target"),
        (["--model", "net.py:make"], "one --model"),
    ],
)
def test_contributions_errors(capsys, work, extra, match):
    """Bad bands, steps, targets and models: exit 2, one line, no output folder."""
    code, _, err = run(
        capsys, "contributions", "a.png", "--model", "net.py:make", "--out", "rc", *extra
    )
    assert_user_error(code, err, match)
    assert not (work / "rc").exists(), "nothing may be written on an error"


def test_contributions_missing_image(capsys, work):
    """A missing image is named before the model is built; nothing is written."""
    code, _, err = run(
        capsys, "contributions", "a.png", "nope.png", "--model", "net.py:make", "--out", "rc"
    )
    assert_user_error(code, err, "nope.png")
    assert not (work / "rc").exists()


# --------------------------------------------------------------------------- stability


STABILITY_FAST = ["--steps", 2, "--n-bisect", 3, "--n-iter", 3, "--no-progress"]

CONV_NET = """
from torch import nn

def convnet():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    )
"""


def test_stability_matches_compare_stability(capsys, work, labelled_folder):
    """Table (stdout, .md, .csv, .json) and spectra equal direct library calls."""
    from captum_rig.stability import compare_stability, feature_map_spectra, weight_spectra

    # Nearly linear, so that small perturbations change predictions and distortions are finite.
    (work / "conv.py").write_text(CONV_NET)
    spec = f"{work / 'conv.py'}:convnet"
    for seed, file in ((0, "first.pt"), (1, "second.pt")):
        torch.manual_seed(seed)
        torch.save(load_model(spec).state_dict(), work / file)
    code, out, err = run(
        capsys, "stability", "--model", "conv.py:convnet", "--weights", "first.pt", "--name",
        "first", "--model", "conv.py:convnet", "--weights", "second.pt", "--name", "second",
        "--data", labelled_folder, "--out", "st", *STABILITY_FAST,
    )  # fmt: skip
    assert code == 0, err
    assert files_in(work / "st") == [
        "feature_map_spectra.png", "stability.csv", "stability.json", "stability.md",
        "weight_norms.png", "weight_spectra.png",
    ]  # fmt: skip
    models = {
        "first": load_model(spec, weights=work / "first.pt"),
        "second": load_model(spec, weights=work / "second.pt"),
    }
    images = torch.stack(
        [load_image_like_the_cli(p, 8) for p in sorted(labelled_folder.rglob("*.png"))]
    )
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    table = compare_stability(models, images, labels, steps=2, n_bisect=3, n_iter=3, progress=False)
    assert table.to_markdown() in out, out
    assert table.to_markdown() in (work / "st" / "stability.md").read_text()
    rows = read_csv(work / "st" / "stability.csv")
    assert [(r["model"], r["attack"]) for r in rows] == [
        (r.model, r.attack) for r in table.rows
    ], rows  # fmt: skip
    got = [float(r["average_distortion"]) for r in rows]
    assert np.isfinite(got).all(), f"no prediction changed, nothing compared: {got}"
    assert got == pytest.approx([r.average_distortion for r in table.rows], rel=1e-6), got
    record = json.loads((work / "st" / "stability.json").read_text())
    assert record["n_images"] == 6 and len(record["rows"]) == 4, record["rows"]
    for name, model in models.items():
        for layer, s in weight_spectra(model).items():
            got = record["weight_spectra"][name][layer]
            assert np.allclose(got, s.numpy(), rtol=1e-6), (name, layer)
        for layer, s in feature_map_spectra(model, images).items():
            got = record["feature_map_spectra"][name][layer]
            assert np.allclose(got, s.numpy(), rtol=1e-6), (name, layer)
    for figure in ("weight_spectra.png", "weight_norms.png", "feature_map_spectra.png"):
        assert figure_pixels(work / "st" / figure).std() > 10, f"blank {figure}"


def test_stability_model_without_convolutions(capsys, work, labelled_folder):
    """A model with no Conv2d gets no feature-map figure, a note instead; JSON is valid."""
    code, out, err = run(
        capsys, "stability", "--model", "net.py:flat", "--data", labelled_folder,
        "--attacks", "gaussian", "--out", "st", *STABILITY_FAST,
    )  # fmt: skip
    assert code == 0, err
    assert "note: no feature-map spectra for flat" in err, err
    assert "feature_map_spectra.png" not in files_in(work / "st")
    record = json.loads((work / "st" / "stability.json").read_text())
    assert [r["attack"] for r in record["rows"]] == ["gaussian"], record["rows"]
    assert record["feature_map_spectra"] == {}, record["feature_map_spectra"]


@pytest.mark.parametrize(
    "data, extra, match",
    [
        ("flat", [], "has no labels"),
        ("data", ["--attacks", "fgsm"], "argument --attacks"),
        ("data", ["--norm", "l1"], "invalid choice"),
        ("data", ["--layers", "nosuch"], "--layers for model make"),
        ("missing", [], "missing"),
    ],
)
def test_stability_errors(capsys, work, labelled_folder, data, extra, match):
    """Unlabelled data, unknown attacks, norms and layers: exit 2, one line, nothing written."""
    (work / "flat").mkdir()
    write_png(work / "flat" / "x.png", 8, 8)
    code, _, err = run(
        capsys, "stability", "--model", "net.py:make", "--data", work / data, "--out", "st",
        *STABILITY_FAST, *extra,
    )  # fmt: skip
    assert_user_error(code, err, match)
    assert not (work / "st").exists(), "nothing may be written on an error"
