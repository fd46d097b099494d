"""``captum-rig robustness``: PGD tables of several models, labels and errors."""

import pytest

from ._helpers import (
    assert_user_error,
    files_in,
    read_csv,
    run,
    write_png,
)


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
