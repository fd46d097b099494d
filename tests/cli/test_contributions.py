"""``captum-rig contributions``: the CSV and the figure equal the library's numbers."""

import re

import numpy as np
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
        # Printed with 6 significant digits: compared as numbers, since the last digit
        # can differ with the batch the model runs in (x and 0 together, or apart).
        printed = re.search(r"sum of contributions (\S+), F\(x\) - F\(0\) = (\S+)$", line)
        assert printed, line
        total = float(expected.double().sum())
        assert float(printed[1]) == pytest.approx(total, rel=1e-5, abs=1e-9), line
        assert float(printed[2]) == pytest.approx(delta, rel=1e-5, abs=1e-9), line
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


@pytest.mark.parametrize(
    "extra, cost",
    [
        ([], "48 (4 per rank, 12 ranks) per image, 2 images"),
        (["--bands", "0,1,2,4,12"], "20 (5 per band, 4 bands) per image, 2 images"),
        (["--n-steps", 30], "30 per image, 2 images"),
    ],
)
def test_contributions_announce_their_cost_before_the_work(capsys, work, monkeypatch, extra, cost):
    """The gradient evaluations are printed (stderr) before the first one is spent."""
    import captum_rig

    def stop(*args, **kwargs):
        raise ValueError("stopped before the work")

    monkeypatch.setattr(captum_rig, "rank_contributions", stop)
    code, _, err = run(
        capsys, "contributions", "a.png", "b.png", "--model", "net.py:make", "--out", "rc", *extra
    )
    lines = err.strip().splitlines()
    assert code == 2 and lines[-1] == "captum-rig: error: stopped before the work", err
    assert f"gradient evaluations: {cost}" in lines, err


def test_contributions_answer_ctrl_c_during_a_big_svd(work):
    """SIGINT while a 4096² image's SVD runs: exit 130 at once, nothing written."""
    huge_image(work / "huge.png")
    argv = ["contributions", "huge.png", "--bands", "0,1,4096", "--max-pixels", 0, "--out", "rc"]
    code, err = interrupt_in_the_svd(work, argv)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "captum-rig: interrupted", err
    assert "gradient evaluations: 10 (5 per band, 2 bands) per image, 1 image" in err, err
    assert not (work / "rc").exists(), "nothing written"


def test_frequency_contributions_match_the_library(capsys, work):
    """--axis frequency: CSV rows (radius bands, the first from 0) equal the library's."""
    from captum_rig.fourier import frequency_contributions

    code, out, err = run(
        capsys, "contributions", "a.png", "--axis", "frequency", "--model", "net.py:make",
        "--weights", "net.pt", "--bands", "0,1,2,4,10", "--n-steps", 10, "--target", 1,
        "--out", "fc",
    )  # fmt: skip
    assert code == 0, err
    assert "gradient evaluations: 10 per image, 1 image" in err, err
    assert files_in(work / "fc") == ["frequency_contributions.csv", "frequency_contributions.png"]
    rows = read_csv(work / "fc" / "frequency_contributions.csv")
    edges = [(float(r["band_start"]), float(r["band_end"])) for r in rows[:5]]
    assert edges == [(0, 0), (0, 1), (1, 2), (2, 4), (4, 10)], edges
    model = load_model(f"{work / 'net.py'}:make", weights=work / "net.pt")
    x = load_image_like_the_cli(work / "a.png", None).unsqueeze(0)
    expected = frequency_contributions(model, x, target=1, bands=[0, 1, 2, 4, 10], n_steps=10)
    got = torch.tensor([float(r["value"]) for r in rows]).reshape(3, 5)
    assert torch.allclose(got, expected[0], atol=1e-6), (got, expected)
    total = float(re.search(r"sum of contributions (\S+),", out)[1])
    assert total == pytest.approx(float(expected.double().sum()), rel=1e-5, abs=1e-9), out
    assert figure_pixels(work / "fc" / "frequency_contributions.png").std() > 10, "blank"


def test_frequency_contributions_of_a_linear_model_are_its_band_images(capsys, work):
    """For a linear model band j's entry is w_target · (low_pass(x, r_j) - low_pass(x, r_j-1)),
    the default bands the mean, then rings of width 1 up to ceil(sqrt(4² + 4²)) = 6."""
    from captum_rig.fourier import low_pass

    write_png(work / "s.png", 8, 8, seed=3)
    torch.manual_seed(0)
    flat = load_model(f"{work / 'net.py'}:flat")
    torch.save(flat.state_dict(), work / "flat.pt")
    code, out, err = run(
        capsys, "contributions", "s.png", "--axis", "frequency", "--model", "net.py:flat",
        "--weights", "flat.pt", "--target", 2, "--no-cumulative", "--out", "fc",
    )  # fmt: skip
    assert code == 0, err
    assert "gradient evaluations: 35 (5 per band, 7 bands) per image, 1 image" in err, err
    rows = read_csv(work / "fc" / "frequency_contributions.csv")
    x = load_image_like_the_cli(work / "s.png", None).double()
    w = flat[1].weight.detach().double()[2].reshape(3, 8, 8)
    passes = [torch.zeros_like(x)] + [low_pass(x, r) for r in range(7)]
    expected = [
        float((w[c] * (passes[j + 1] - passes[j])[c]).sum()) for c in range(3) for j in range(7)
    ]
    got = [float(r["value"]) for r in rows]
    assert np.allclose(got, expected, atol=1e-5), (got, expected)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--bands", "0,2,1,10"], "argument --bands: band edges must be strictly increasing"),
        (["--bands=-1,10"], "argument --bands: band edges must be >= 0"),
        (["--bands", "0,x"], "argument --bands: band edges must be numbers"),
        (["--bands", "0,1,5"], "--bands must end at or above the largest radius 10 of a.png"),
        (["--bands", "0,1,2,10", "--n-steps", 3], "--n-steps must be at least the number of"),
        (["--n-steps", 5], "--n-steps must be at least the number of bands (11 for a.png)"),
    ],
)
def test_frequency_contributions_errors(capsys, work, extra, match):
    """Bands not increasing, negative or too short, too few steps: exit 2, one line."""
    code, _, err = run(
        capsys, "contributions", "a.png", "--axis", "frequency", "--model", "net.py:make",
        "--out", "fc", *extra,
    )  # fmt: skip
    assert_user_error(code, err, match)
    assert not (work / "fc").exists(), "nothing may be written on an error"
