"""evaluate_attributions: scores equal deletion_insertion on the same images and maps,
Student-t intervals, streaming a batch at a time, mismatched data refused; the figure."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from captum_rig.metrics import deletion_insertion
from captum_rig.runs import (
    ScoreTable,
    attribute_dataset,
    evaluate_attributions,
    mean_interval,
    read_attributions,
    sparseness,
)
from captum_rig.viz.scores import plot_score_distributions, save_score_distributions

HERE = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("_helper", HERE / "_torchrun_attribute.py")
helper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helper)


@pytest.fixture(scope="module")
def maps_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("maps") / "maps.h5"
    return attribute_dataset(
        helper.tiny_model(), helper.tiny_data(), path, "saliency,ig", n_steps=3, progress=False
    )


def test_scores_equal_deletion_insertion_on_the_whole_set(maps_file):
    model = helper.tiny_model()
    table = evaluate_attributions(maps_file, model, helper.tiny_data(), n_steps=4, progress=False)
    x = torch.cat([b[0] for b in helper.tiny_data()])
    with read_attributions(maps_file) as maps:
        for m in ("saliency", "ig"):
            direct = deletion_insertion(model, x, maps.maps(m), maps.targets, n_steps=4)
            for s in ("deletion_auc", "insertion_auc"):
                torch.testing.assert_close(table.per_image[m][s], direct[s])
                row = next(r for r in table.rows if (r.method, r.score) == (m, s))
                assert row.mean == pytest.approx(float(direct[s].mean()))
                assert row.n_images == 9
        torch.testing.assert_close(table.per_image[m]["sparseness"], sparseness(maps.maps(m)))
    assert [r.method for r in table.rows] == ["saliency"] * 3 + ["ig"] * 3


def test_streams_one_batch_at_a_time(maps_file):
    """The model sees at most one data batch of images per forward (batch_size=2)."""
    sizes = []
    model = helper.tiny_model()
    model.register_forward_hook(lambda mod, inp, out: sizes.append(inp[0].shape[0]))
    evaluate_attributions(maps_file, model, helper.tiny_data(), methods=["ig"], n_steps=2,
                          batch_size=2, progress=False)  # fmt: skip
    assert max(sizes) <= 2


def test_other_data_is_refused(maps_file):
    data = helper.tiny_data()
    with pytest.raises(ValueError, match="data has 8 images, but the file holds maps of 9"):
        evaluate_attributions(maps_file, helper.tiny_model(), data[:4], progress=False)
    with pytest.raises(ValueError, match="more images than the file's 9 maps"):
        evaluate_attributions(maps_file, helper.tiny_model(), data + data, progress=False)
    with pytest.raises(ValueError, match="no maps of 'rig'"):
        evaluate_attributions(maps_file, helper.tiny_model(), data, methods=["rig"])
    other = helper.tiny_model()
    with torch.no_grad():
        other.net[-1].bias += 1
    with pytest.raises(ValueError, match="model: its weights differ"):
        evaluate_attributions(maps_file, other, data, progress=False)
    table = evaluate_attributions(maps_file, other, data, progress=False, same_model=False)
    assert table.rows[0].n_images == 9


@pytest.mark.parametrize("n", [2, 3, 5, 30, 250])
def test_interval_is_students_t(n):
    x = torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    mean, low, high = mean_interval(x, 0.9)
    expected = stats.t.interval(0.9, n - 1, loc=float(x.mean()), scale=float(x.std()) / n**0.5)
    assert mean == pytest.approx(float(x.mean()))
    assert (low, high) == pytest.approx(expected, rel=1e-7)


def test_interval_edge_cases():
    assert math.isnan(mean_interval([1.0])[1])
    with pytest.raises(ValueError, match="must not be empty"):
        mean_interval([])
    with pytest.raises(ValueError, match="confidence"):
        mean_interval([1.0, 2.0], 1.0)


def test_table_markdown_csv_and_json(tmp_path, maps_file):
    table = evaluate_attributions(
        maps_file, helper.tiny_model(), helper.tiny_data(), n_steps=2, progress=False
    )
    text = table.to_markdown()
    assert text.splitlines()[0] == "| method | score | mean | 95% interval | images |"
    assert len(text.splitlines()) == 8
    table.to_csv(tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "method,score,mean,low,high,n_images"
    table.to_json(tmp_path / "s.json")
    assert "per_image" not in table.to_dict() and len(table.to_dict()["rows"]) == 6


def test_figure_of_the_distributions(tmp_path):
    t = ScoreTable.from_scores(
        {m: {"deletion_auc": torch.rand(12), "insertion_auc": torch.rand(12)} for m in "abc"}
    )
    fig, axes = plot_score_distributions(t)
    assert len(axes) == 2 and [x.get_text() for x in axes[1].get_xticklabels()] == list("abc")
    save_score_distributions(t, tmp_path / "s.png")
    from PIL import Image

    assert np.asarray(Image.open(tmp_path / "s.png").convert("L")).std() > 10
    with pytest.raises(ValueError, match="no 'x'"):
        plot_score_distributions(t, scores=["x"])
    with pytest.raises(TypeError, match="ScoreTable"):
        plot_score_distributions({})


def test_sparseness_is_the_gini_index():
    a = torch.rand(3, 2, 4, 5, generator=torch.Generator().manual_seed(0)) - 0.5
    x = np.sort(a.abs().sum(1).flatten(1).double().numpy(), axis=1)
    n = x.shape[1]
    i = np.arange(1, n + 1)
    expected = ((2 * i - n - 1) * x).sum(1) / (n * x.sum(1))
    np.testing.assert_allclose(sparseness(a).numpy(), expected)
    assert sparseness(torch.zeros(1, 3, 2, 2)).tolist() == [0.0]
