"""``captum-rig heatmap``: the CSV and the figure equal the library's Fourier heat maps;
its cost is announced first; bad ``--eps`` is refused in one line."""

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


def _folder_images(folder):
    return torch.stack([load_image_like_the_cli(p, 8) for p in sorted(folder.rglob("*.png"))])


def test_heatmap_matches_the_library(capsys, work, labelled_folder):
    """heatmap.csv holds fourier_heat_map's rates per frequency (zero frequency at (0, 0))."""
    from captum_rig.fourier import fourier_heat_map

    code, out, err = run(
        capsys, "heatmap", "--model", "net.py:make", "--weights", "net.pt", "--data",
        labelled_folder, "--eps", 0.5, "--batch-size", 16, "--out", "hm",
    )  # fmt: skip
    assert code == 0, err
    assert "forward passes: 6 images × 34 frequencies = 204 per model, 204 in all" in err, err
    assert files_in(work / "hm") == ["heatmap.csv", "heatmap.png"]
    model = load_model(f"{work / 'net.py'}:make", weights=work / "net.pt")
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    expected = fourier_heat_map(model, _folder_images(labelled_folder), labels, 0.5, progress=False)
    rows = read_csv(work / "hm" / "heatmap.csv")
    assert len(rows) == 64 and {r["model"] for r in rows} == {"net"}, rows[:2]
    got = torch.zeros(8, 8, dtype=torch.float64)
    for r in rows:
        got[int(r["fy"]) + 4, int(r["fx"]) + 4] = float(r["error_rate"])
    assert torch.equal(got, expected), (got, expected)
    assert out.splitlines()[0].startswith(f"net: mean error rate {float(expected.mean()):.3f}")
    assert figure_pixels(work / "hm" / "heatmap.png").std() > 10, "blank figure"


def test_heatmap_of_several_models_on_one_scale(capsys, work, labelled_folder, monkeypatch):
    """Two models: one panel each, one colour scale (the largest rate of both), one CSV."""
    from captum_rig.viz import fourier

    seen = {}
    real = fourier.plot_fourier_heat_maps

    def spy(maps, **kwargs):
        fig, axes = real(maps, **kwargs)
        seen.update(labels=list(maps), limits={ax.images[0].get_clim() for ax in axes})
        seen.update(top=max(float(m.max()) for m in maps.values()))
        return fig, axes

    monkeypatch.setattr(fourier, "plot_fourier_heat_maps", spy)
    code, out, err = run(
        capsys, "heatmap", "--model", "net.py:make", "--weights", "net.pt", "--name", "trained",
        "--model", "net.py:make", "--name", "random", "--data", labelled_folder, "--eps", 3,
        "--out", "hm",
    )  # fmt: skip
    assert code == 0, err
    assert "= 204 per model, 408 in all" in err, err
    assert seen["labels"] == ["trained", "random"], seen
    assert seen["limits"] == {(0.0, max(seen["top"], 0.01))}, seen
    rows = read_csv(work / "hm" / "heatmap.csv")
    assert [r["model"] for r in rows[::64]] == ["trained", "random"], len(rows)


def test_heatmap_without_labels_counts_changed_predictions(capsys, work):
    """A flat folder has no labels: the rates are against the clean predictions."""
    from captum_rig.fourier import fourier_heat_map

    (work / "flat").mkdir()
    for i in range(3):
        write_png(work / "flat" / f"{i}.png", 8, 8, seed=i)
    code, _, err = run(
        capsys, "heatmap", "--model", "net.py:make", "--data", "flat", "--eps", 1.5,
        "--no-clip", "--seed", 3, "--out", "hm",
    )  # fmt: skip
    assert code == 0, err
    torch.manual_seed(3)  # the CLI seeds torch with --seed before building the model
    model = load_model(f"{work / 'net.py'}:make")
    expected = fourier_heat_map(
        model, _folder_images(work / "flat"), None, 1.5, seed=3, clip=False, progress=False
    )
    rows = read_csv(work / "hm" / "heatmap.csv")
    got = [float(r["error_rate"]) for r in rows]
    assert got == expected.reshape(-1).tolist()


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--eps", 0], "argument --eps: must be a finite number > 0, got '0'"),
        (["--eps", -1], "argument --eps: must be a finite number > 0"),
        (["--eps", "inf"], "argument --eps: must be a finite number > 0"),
        (["--eps", "x"], "argument --eps: expected a number > 0, got 'x'"),
        ([], "the following arguments are required: --eps"),
    ],
)
def test_heatmap_errors(capsys, work, labelled_folder, extra, match):
    """eps <= 0, not a number, or missing: exit 2, one line, no output folder."""
    code, _, err = run(
        capsys, "heatmap", "--model", "net.py:make", "--data", labelled_folder, *extra,
        "--out", "hm",
    )  # fmt: skip
    assert_user_error(code, err, match)
    assert not (work / "hm").exists()


def test_distinct_frequencies_count_each_pair_once():
    """f and -f give one basis image; the self-conjugate ones (0 and Nyquist) count once."""
    from captum_rig.cli.heatmap import distinct_frequencies
    from captum_rig.fourier import fourier_heat_map

    calls = []

    def model(x):
        calls.append(len(x))
        return torch.zeros(len(x), 2)

    for h, w in [(8, 8), (5, 5), (6, 7), (1, 4)]:
        calls.clear()
        fourier_heat_map(model, torch.rand(1, 1, h, w), torch.tensor([0]), 1.0, progress=False)
        assert distinct_frequencies(h, w) == sum(calls), (h, w)
