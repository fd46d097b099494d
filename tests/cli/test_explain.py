"""``captum-rig explain``: attribution figures for every registered method, targets, sizes,
model specs, pretrained weights and the gradient evaluations spent.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from captum_rig.attr.registry import METHOD_NAMES

from ._helpers import (
    assert_user_error,
    figure_pixels,
    files_in,
    load_image_like_the_cli,
    run,
    write_png,
)


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
            "grey.png is greyscale (mode L) but the model takes RGB images; pass --convert",
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
    from captum_rig.loading import pretrained as loading

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(work / "hub"))
    monkeypatch.setattr(loading, "_online", lambda url, timeout=3.0: False)
    code, _, err = run(
        capsys, "explain", "a.png", "--model", "torchvision:resnet18", "--pretrained"
    )
    assert_user_error(code, err, "no network")


def test_explain_pretrained_from_cache_names_classes(capsys, work, monkeypatch):
    """--pretrained with the weights in the hub cache: no network, ImageNet class names."""
    import torchvision

    from captum_rig.loading import pretrained as loading

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


def test_explain_figure_names_the_model_and_random_weights(capsys, work, monkeypatch):
    """The title names the model and says when its weights are random; each row label is
    the file name over the target, two phrases on two lines."""
    import captum_rig.viz

    saved = []
    monkeypatch.setattr(captum_rig.viz, "save_figure", lambda fig, path, **kw: saved.append(fig))
    long_name = "a_rather_long_holiday_photo_of_the_cat_in_the_garden.png"
    (work / long_name).write_bytes((work / "a.png").read_bytes())
    code, _, err = run(
        capsys, "explain", long_name, "--model", "torchvision:squeezenet1_1", "--num-classes", 6,
        "--methods", "saliency", "--out", "fig.png",
    )  # fmt: skip
    assert code == 0, err
    title = saved[0]._suptitle.get_text()
    assert title.startswith("torchvision:squeezenet1_1") and "random weights" in title, title
    label = saved[0].axes[0].get_ylabel()
    first, second = label.split("\n")
    assert first.startswith("a_rather") and first.endswith("garden.png"), label
    assert second.startswith("target "), label

    saved.clear()
    code, _, err = run(
        capsys, "explain", "a.png", "--model", "net.py:make", "--weights", "net.pt",
        "--methods", "saliency", "--out", "fig.png",
    )  # fmt: skip
    assert code == 0, err
    title = saved[0]._suptitle.get_text()
    assert title == "net.py:make, weights net.pt", f"trained weights: no warning, got {title!r}"
