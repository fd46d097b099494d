"""``captum-rig spectrum``: CSVs and figures of one or several models, data sources,
checkpoints, Ctrl-C and ``--resume``.
"""

import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from captum_rig.loading import load_model

from ._helpers import (
    assert_user_error,
    figure_pixels,
    files_in,
    load_image_like_the_cli,
    read_csv,
    run,
    write_png,
)
from ._interrupt import huge_image, interrupt_in_the_svd


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
    # no checkpoint left; the record of how the CSV was counted (for --resume)
    assert files_in(work / "sp") == [".spectrum.run", "spectrum.csv", "spectrum.png"]


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
    assert files_in(work / "sp") == [
        ".spectrum_make.run",
        ".spectrum_trained.run",
        "spectrum.png",
        "spectrum_make.csv",
        "spectrum_trained.csv",
    ]
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


def _spectrum_argv(data, **changes):
    """The spectrum command line of the resume tests, with options replaced or added."""
    options = {"--model": "net.py:make", "--weights": "net.pt", "--data": data,
               "--ranks": "0:8:4", "--out": "sp", **changes}  # fmt: skip
    argv = ["spectrum"]
    for option, value in options.items():
        argv += [option] if value is True else [option, value]
    return argv


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"--weights": "other.pt"}, "the model's weights differ"),
        ({"--limit": 4}, "--data has 4 images, the CSV 6"),
        ({"--ranks": "0:8:2"}, "counted with --ranks [0, 4, 8], this call has [0, 2, 4, 6, 8]"),
        ({"--reverse": True}, "counted with --reverse not given, this call has given"),
        ({"repaint": True}, "the images of --data differ"),
    ],
)
def test_spectrum_resume_refuses_a_finished_csv_of_other_settings(
    capsys, work, labelled_folder, monkeypatch, changes, match
):
    """--resume with another model, data, ranks or --reverse: exit 2 naming the difference;
    the finished CSV is neither read back as this call's nor overwritten."""
    import captum_rig.spectrum as spectrum

    assert run(capsys, *_spectrum_argv(labelled_folder))[0] == 0
    before = (work / "sp" / "spectrum.csv").read_text()
    torch.manual_seed(123)
    torch.save(load_model(f"{work / 'net.py'}:make").state_dict(), work / "other.pt")
    if changes.pop("repaint", False):  # as many images, one of them other pixels
        write_png(labelled_folder / "cat" / "0.png", 8, 8, seed=99)
    monkeypatch.setattr(spectrum, "rank_spectrum", lambda *a, **k: pytest.fail("recounted"))
    code, _, err = run(capsys, *_spectrum_argv(labelled_folder, **changes), "--resume")
    assert_user_error(code, err, "--resume: sp/spectrum.csv does not match this call")
    assert match in err, err
    assert (work / "sp" / "spectrum.csv").read_text() == before


def test_spectrum_resume_reads_back_another_batch_size(capsys, work, labelled_folder, monkeypatch):
    """The batch size does not change the counts: a finished CSV is read back."""
    import captum_rig.spectrum as spectrum

    assert run(capsys, *_spectrum_argv(labelled_folder, **{"--batch-size": 4}))[0] == 0
    monkeypatch.setattr(spectrum, "rank_spectrum", lambda *a, **k: pytest.fail("recounted"))
    code, out, err = run(capsys, *_spectrum_argv(labelled_folder), "--resume")
    assert code == 0 and "6 images, 3 ranks" in out, err


def test_spectrum_resume_counts_a_csv_without_record_again(capsys, work, labelled_folder):
    """A CSV whose record is missing (or damaged) proves nothing: it is counted again."""
    assert run(capsys, *_spectrum_argv(labelled_folder))[0] == 0
    expected = read_csv(work / "sp" / "spectrum.csv")
    (work / "sp" / "spectrum.csv").write_text("rank,agreement,accuracy,n_images,reverse\n")
    for damage in (lambda p: p.unlink(), lambda p: p.write_bytes(b"not a record")):
        damage(work / "sp" / ".spectrum.run")
        code, _, err = run(capsys, *_spectrum_argv(labelled_folder), "--resume")
        assert code == 0 and "no record of how sp/spectrum.csv was counted" in err, err
        assert read_csv(work / "sp" / "spectrum.csv") == expected


def test_spectrum_answers_ctrl_c_during_a_big_svd(work):
    """SIGINT while a 4096² image's SVD runs: exit 130 at once with the one-line note."""
    (work / "huge").mkdir()
    huge_image(work / "huge" / "h.png")
    argv = ["spectrum", "--data", "huge", "--ranks", "0,1", "--max-pixels", 0, "--out", "sp"]
    code, err = interrupt_in_the_svd(work, argv)
    assert code == 130, err
    assert err.strip().splitlines() == [
        "captum-rig: interrupted before the first batch of Stamped was counted; nothing to resume"
    ], err
    assert not (work / "sp").exists(), "nothing to resume: no output folder"


def test_spectrum_frequency_axis_matches_the_library(capsys, work, labelled_folder):
    """--axis frequency: frequency_spectrum.csv equals frequency_spectrum on the same images;
    the figure is drawn against the radius; --resume reads it back."""
    from captum_rig.fourier import frequency_spectrum

    argv = _spectrum_argv(labelled_folder, **{"--axis": "frequency", "--radii": "0:6:2,1.5"})
    del argv[argv.index("--ranks") : argv.index("--ranks") + 2]
    code, out, err = run(capsys, *argv, "--metric", "accuracy")
    assert code == 0, err
    assert "6 images, 5 radii" in out, out
    assert files_in(work / "sp") == [
        ".frequency_spectrum.run", "frequency_spectrum.csv", "frequency_spectrum.png"
    ]  # fmt: skip
    rows = read_csv(work / "sp" / "frequency_spectrum.csv")
    images = torch.stack(
        [load_image_like_the_cli(p, 8) for p in sorted(labelled_folder.rglob("*.png"))]
    )
    model = load_model(f"{work / 'net.py'}:make", weights=work / "net.pt")
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    expected = frequency_spectrum(
        model, images, radii=[0, 1.5, 2, 4, 6], labels=labels, progress=False
    )
    assert [float(r["radius"]) for r in rows] == [0, 1.5, 2, 4, 6], rows
    assert [float(r["accuracy"]) for r in rows] == pytest.approx(expected.accuracy), rows
    assert figure_pixels(work / "sp" / "frequency_spectrum.png").std() > 10, "blank plot"
    code, _, err = run(capsys, *argv, "--radii", "0,1", "--resume")
    assert_user_error(code, err, "counted with --radii [0.0, 1.5, 2.0, 4.0, 6.0], this call")


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--axis", "frequency", "--radii", "-1"], "argument --radii: radii must be >= 0"),
        (["--axis", "frequency", "--radii", "1,x"], "argument --radii: radii must be numbers"),
        (["--axis", "frequency", "--ranks", "0,1"], "--ranks is for --axis rank"),
        (["--radii", "1"], "--radii is for --axis frequency"),
        (["--axis", "fourier"], "argument --axis: invalid choice"),
    ],
)
def test_spectrum_frequency_axis_errors(capsys, work, labelled_folder, extra, match):
    """Negative or malformed radii, options of the other axis: exit 2, one line, no output."""
    code, _, err = run(
        capsys, "spectrum", "--model", "net.py:make", "--data", labelled_folder, *extra,
        "--out", "sp",
    )  # fmt: skip
    assert_user_error(code, err, match)
    assert not (work / "sp").exists(), "no output folder left behind"
