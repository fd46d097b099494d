"""``captum-rig evaluate``: the Markdown table of the library's scores, CSV/JSON with
``--out``, the figure, and one-line refusals."""

import json

import pytest
import torch

from captum_rig.data import image_dataset
from captum_rig.loading import load_model
from captum_rig.runs import evaluate_attributions

from ._helpers import assert_user_error, figure_pixels, read_csv, run


@pytest.fixture
def maps(capsys, work, labelled_folder):
    code, _, err = run(
        capsys, "attribute", "--model", "net.py:make", "--weights", "net.pt",
        "--data", labelled_folder, "--methods", "saliency,ig", "--n-steps", 2,
        "--batch-size", 4, "--out", "maps.h5", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    return work / "maps.h5"


def _evaluate(capsys, labelled_folder, *extra):
    return run(
        capsys, "evaluate", "maps.h5", "--model", "net.py:make", "--weights", "net.pt",
        "--data", labelled_folder, "--batch-size", 4, "--n-steps", 4, "--no-progress", *extra,
    )  # fmt: skip


def test_evaluate_prints_the_library_table_and_writes_files(capsys, work, labelled_folder, maps):
    code, out, err = _evaluate(
        capsys, labelled_folder, "--out", "scores.csv", "--figure", "scores.png"
    )
    assert code == 0, err
    model = load_model("net.py:make")
    model.load_state_dict(torch.load(work / "net.pt", weights_only=True))
    data, _ = image_dataset(labelled_folder)
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    expected = evaluate_attributions(maps, model, loader, n_steps=4, progress=False)
    lines = out.splitlines()
    assert lines[: len(expected.to_markdown().splitlines())] == expected.to_markdown().splitlines()
    assert lines[-2:] == ["wrote scores.csv", "wrote scores.png"]
    rows = read_csv(work / "scores.csv")
    assert [(r["method"], r["score"]) for r in rows] == [
        (m, s) for m in ("saliency", "ig") for s in ("deletion_auc", "insertion_auc", "sparseness")
    ]
    assert float(rows[0]["mean"]) == pytest.approx(expected.rows[0].mean)
    assert figure_pixels(work / "scores.png").std() > 10


def test_evaluate_json_and_one_method(capsys, work, labelled_folder, maps):
    code, out, err = _evaluate(capsys, labelled_folder, "--methods", "ig", "--out", "s.json")
    assert code == 0, err
    rows = json.loads((work / "s.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["ig"] * 3 and rows[0]["n_images"] == 6


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--limit", "4"], "data has 4 images, but the file holds maps of 6"),
        (["--out", "s.txt"], "must end in one of .csv, .json"),
        (["--figure", "s.gif"], "--figure"),
        (["--methods", "rig"], "no maps of 'rig'"),
        (["--confidence", "2"], "--confidence must be in (0, 1)"),
    ],
)
def test_evaluate_refusals_are_one_line(capsys, work, labelled_folder, maps, extra, match):
    code, _, err = _evaluate(capsys, labelled_folder, *extra)
    assert_user_error(code, err, match)


def test_evaluate_missing_maps(capsys, work, labelled_folder):
    code, _, err = _evaluate(capsys, labelled_folder)
    assert_user_error(code, err, "MAPS 'maps.h5' is not a file")


def test_evaluate_refuses_other_images_of_the_same_count(capsys, work, labelled_folder, maps):
    (labelled_folder / "dog" / "2.png").rename(labelled_folder / "dog" / "9.png")
    code, _, err = _evaluate(capsys, labelled_folder)
    assert_user_error(code, err, "data image 5 is")
    assert "dog/9.png" in err and "dog/2.png" in err


def test_attribute_and_evaluate_on_cifar10(capsys, work):
    """CIFAR-10 images are named by their index in the split."""
    from captum_rig.runs import read_attributions
    from captum_rig.synthetic import write_cifar10_folder

    write_cifar10_folder(work / "cifar", n_train=2, n_test=5)
    argv = ["--model", "net.py:make", "--weights", "net.pt", "--data", f"cifar10:{work / 'cifar'}"]
    code, _, err = run(capsys, "attribute", *argv, "--methods", "saliency", "--out", "c.h5",
                       "--limit", 3, "--no-progress")  # fmt: skip
    assert code == 0, err
    with read_attributions(work / "c.h5") as maps:
        assert maps.files == ["0", "1", "2"] and maps.maps("saliency").shape == (3, 3, 32, 32)
    code, out, err = run(capsys, "evaluate", "c.h5", *argv, "--limit", 3, "--n-steps", 2,
                         "--no-progress")  # fmt: skip
    assert code == 0 and "| saliency | deletion_auc |" in out, err


def test_evaluate_refuses_another_model(capsys, work, labelled_folder, maps):
    code, _, err = run(
        capsys, "evaluate", "maps.h5", "--model", "net.py:make", "--weights", "nine.pt",
        "--num-classes", 9, "--data", labelled_folder, "--no-progress",
    )  # fmt: skip
    assert_user_error(code, err, "model: its weights differ from those the maps were computed")
