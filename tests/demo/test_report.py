"""Tests for captum_rig.demo.report: what report.md and scores.csv say, and that the
numbers are the library's."""

import csv
import re

import pytest
import torch

from captum_rig import rank_contributions
from captum_rig.attr.registry import METHODS
from captum_rig.demo import OUTPUTS, SHAPES_TEST_SEED, run_demo
from captum_rig.models import load_demo_model
from captum_rig.synthetic import make_shapes

from ._helpers import SMALL, by_key


def test_run_demo_report_and_scores(demo_out):
    """The report names every method, holds the score table; scores.csv has every row."""
    report = by_key(demo_out[1])["report"].read_text(encoding="utf-8")
    assert "| method | mask energy" in report, "score table header"
    for m in METHODS.values():
        assert f"| {m.title} |" in report, f"{m.title} missing from the table"
    for name in OUTPUTS.values():
        if name.endswith(".png"):
            assert f"({name})" in report, f"report does not embed {name}"
    with open(by_key(demo_out[1])["scores"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == [*METHODS, "random"]
    for r in rows:
        assert 0 <= float(r["mask_energy"]) <= 1 and 0 <= float(r["deletion_auc"]) <= 1
        assert f"| {r['title']} | {float(r['mask_energy']):.3f}" in report, "table = csv"


def _contributions_table(report):
    """The rank-contribution section's table: model title -> {column header: cell}."""
    section = report.split("## Where in the spectrum the evidence comes from", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    table = {}
    for row in rows[1:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        table[cells[0]] = dict(zip(header[1:], cells[1:]))
    return table


def test_run_demo_rank_contributions_report_numbers(demo_out):
    """The report's top-k shares and sums equal a direct rank_contributions call."""
    report = by_key(demo_out[1])["report"].read_text(encoding="utf-8")
    table = _contributions_table(report)
    assert set(table) == {"natural", "trained on rank 8"}, table
    shapes = make_shapes(SMALL["n_spectrum"], seed=SHAPES_TEST_SEED)
    x, y = shapes.images[: SMALL["n_eval"]], shapes.labels[: SMALL["n_eval"]]
    bands = [0, 1, 2, 4, 8, 16, 32]
    for name, title in (("natural", "natural"), ("lowrank8", "trained on rank 8")):
        model = load_demo_model(name)
        c = rank_contributions(model, x, target=y, bands=bands, n_steps=40).double()
        per_band = c.sum(dim=(0, 1))
        top = dict(zip(bands[1:], (per_band.cumsum(0) / per_band.sum()).tolist()))
        for k in (1, 2, 4, 8, 16):
            shown = float(table[title][f"top {k}"].rstrip("%"))
            assert shown == pytest.approx(100 * top[k], abs=0.5 + 1e-6), (title, k, top[k])
        with torch.no_grad():
            rise = (model(x) - model(torch.zeros_like(x))).gather(1, y[:, None]).sum()
        shown = float(table[title]["bands' sum / (F(x) − F(0))"])
        assert shown == pytest.approx(float(per_band.sum() / rise), abs=0.005 + 1e-6)
        assert f"{top[4]:.0%} (*{title}*)" in report, "top-4 sentence"
    assert re.search(r"; the top 8, -?\d+% and -?\d+%\.", report), "top-8 sentence"


def test_run_demo_random_row_scores_the_mask_area(demo_out):
    """The random map's mask energy is the scored masks' mean area (its expected share)."""
    with open(by_key(demo_out[1])["scores"], newline="") as f:
        random = [r for r in csv.DictReader(f) if r["method"] == "random"][0]
    masks = make_shapes(SMALL["n_spectrum"], seed=SHAPES_TEST_SEED).masks[: SMALL["n_eval"]]
    area = masks.flatten(1).double().mean(1).mean().item()
    assert float(random["mask_energy"]) == pytest.approx(area, rel=1e-9)


def test_run_demo_report_with_every_method(demo_out):
    """With several methods the report names a winner per score and explains Blur IG's border."""
    report = by_key(demo_out[1])["report"].read_text(encoding="utf-8")
    assert "Most mass on the object: **" in report, "winner sentence"
    assert "Blur IG blurs with zero padding" in report
    assert "RIG, Integrated Gradients and Blur IG used 4 steps (RIG: ranks)." in report


def test_run_demo_report_with_one_method(tmp_path):
    """With RIG alone: no winner, no word on Blur IG, only RIG's and random's rows."""
    paths = run_demo(tmp_path, methods=["rig"], **SMALL)
    report = paths[-1].read_text(encoding="utf-8")
    assert "Most mass on the object" not in report and "fastest" not in report, "a winner of one"
    assert "Blur IG" not in report and "BlurIG" not in report, "Blur IG was not run"
    assert "| RIG |" in report and "RIG used 4 steps (RIG: ranks)." in report
    assert "RIG puts " in report, "RIG against an even spread"
    with open(by_key(paths)["scores"], newline="") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["rig", "random"]


def test_run_demo_without_rig_has_no_channel_max_figure(tmp_path):
    """Without RIG: no rig_channel_max.png, and the report neither embeds nor describes it."""
    paths = run_demo(tmp_path, methods=["saliency", "ig"], **SMALL)
    names = [p.name for p in paths]
    assert names == [n for k, n in OUTPUTS.items() if k != "rig_channel_max"], names
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names), "stray files"
    report = paths[-1].read_text(encoding="utf-8")
    assert OUTPUTS["rig_channel_max"] not in report and "Eq. (3)" not in report, report
