"""Tests for captum_rig.demo: shipped assets, demo models, and the demo job."""

import csv
import importlib
import os
import re
import signal
import subprocess
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from captum_rig import rank_contributions
from captum_rig.demo import (
    ASSETS,
    DEMO_MODELS,
    OUTPUTS,
    PHOTOS,
    SHAPES_TEST_SEED,
    build_demo_model,
    load_demo_model,
    load_photo,
    run_demo,
)
from captum_rig.methods import METHODS
from captum_rig.synthetic import make_shapes

SMALL = dict(n_images=2, n_eval=6, n_spectrum=24, n_steps=4, score_steps=4, dpi=40)
STAGES = [
    "setup",
    "attributions",
    "rank galleries",
    "rank spectra",
    "rank contributions",
    "scores",
    "report",
]


def _counting_rank_contributions(calls):
    """rank_contributions that records its inputs and the model rows it evaluated."""
    original = rank_contributions

    def spy(forward_func, inputs, **kwargs):
        rows = []

        def counted(x, *args):
            rows.append(x.shape[0])
            return forward_func(x, *args)

        result = original(counted, inputs, **kwargs)
        calls.append({"inputs": inputs.clone(), "evaluations": sum(rows), **kwargs})
        return result

    return spy


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    """One small demo run with every method, shared by the tests that only read its output.

    Returns (out folder, written paths, logged lines with the staged files at each, stage
    timings, the demo's rank_contributions calls).
    """
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("demo")
    lines, timings, calls = [], {}, []

    def log(line):
        # what the staging folder holds when a stage is announced
        made = sorted(p.name for p in out.glob(".captum-rig-demo-*/*"))
        lines.append((line, made))

    module = importlib.import_module("captum_rig.attr.rank_contributions")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "rank_contributions", _counting_rank_contributions(calls))
        paths = run_demo(out, log=log, timings=timings, **SMALL)
    return out, paths, lines, timings, calls


def _by_key(paths):
    return {key: p for key, p in zip(OUTPUTS, paths)}


# -- assets ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DEMO_MODELS))
def test_demo_weights_load_with_weights_only(name):
    """Each shipped state_dict loads with weights_only=True into build_demo_model()."""
    state = torch.load(ASSETS / DEMO_MODELS[name], map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    assert set(state) == set(build_demo_model().state_dict()), "keys match the factory"
    model = load_demo_model(name)
    assert not model.training, "loaded in eval mode"
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 6)


def test_assets_are_small():
    """All shipped demo data together stays under 5 MB."""
    total = sum(p.stat().st_size for p in ASSETS.iterdir() if p.is_file())
    assert total < 5 * 2**20, f"assets take {total / 2**20:.1f} MB"


@pytest.mark.parametrize("name", list(PHOTOS))
def test_photos_load_and_are_licensed(name):
    """Each photo is a 3×128×128 float image in [0, 1], listed in PHOTOS_LICENSE.md."""
    x = load_photo(name)
    assert x.shape == (3, 128, 128) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.std()) > 0.05
    text = (ASSETS / "PHOTOS_LICENSE.md").read_text(encoding="utf-8")
    assert f"`{name}.png`" in text and PHOTOS[name]["author"] in text


def test_asset_loader_errors():
    """Unknown names raise a ValueError naming the argument."""
    with pytest.raises(ValueError, match="name must be one of"):
        load_demo_model("robust")
    with pytest.raises(ValueError, match="name must be one of"):
        load_photo("lena")
    with pytest.raises(ValueError, match="num_classes"):
        build_demo_model(0)


# -- the demo job ------------------------------------------------------------------------


def test_run_demo_returns_the_written_paths(demo_out):
    """A list of every output in OUTPUTS order (report.md last), and no stray file."""
    out, paths = demo_out[:2]
    assert isinstance(paths, list), type(paths)
    assert [p.name for p in paths] == list(OUTPUTS.values()), paths
    assert paths[-1].name == "report.md"
    for path in paths:
        assert path.parent == out, path
        assert path.is_file() and path.stat().st_size > 0, f"{path.name} missing or empty"
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS.values()), "stray files"


@pytest.mark.parametrize("key", [k for k, name in OUTPUTS.items() if name.endswith(".png")])
def test_run_demo_figures_not_blank(demo_out, key):
    """Every figure has many distinct colours, not one flat colour."""
    with Image.open(_by_key(demo_out[1])[key]) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 100, f"{key} looks blank"


def test_run_demo_logs_each_stage_as_it_starts(demo_out):
    """log gets "[i/7] stage: ..." before each stage's work, in the order timings records."""
    lines, timings = demo_out[2:4]
    assert list(timings) == STAGES, timings
    assert all(t >= 0 for t in timings.values()), timings
    assert [line.split(": ")[0] for line, _ in lines] == [
        f"[{i}/7] {name}" for i, name in enumerate(STAGES, 1)
    ], lines
    attributions = lines[1][0]
    for m in METHODS.values():
        assert m.title in attributions, f"{m.title} not announced: {attributions}"
    made = {line.split(": ")[0]: files for line, files in lines}
    assert made["[1/7] setup"] == [], "nothing written before the first stage"
    assert "comparison_shapes.png" not in made["[2/7] attributions"], "announced after its work"
    assert "comparison_shapes.png" in made["[3/7] rank galleries"], made
    assert "rank_gallery.png" not in made["[3/7] rank galleries"], "announced after its work"
    assert "rank_contributions.png" not in made["[5/7] rank contributions"], "announced late"
    assert "rank_contributions.png" in made["[6/7] scores"], made
    assert "scores.csv" not in made["[6/7] scores"] and "report.md" not in made["[7/7] report"]


def test_run_demo_report_and_scores(demo_out):
    """The report names every method, holds the score table; scores.csv has every row."""
    report = _by_key(demo_out[1])["report"].read_text(encoding="utf-8")
    assert "| method | mask energy" in report, "score table header"
    for m in METHODS.values():
        assert f"| {m.title} |" in report, f"{m.title} missing from the table"
    for name in OUTPUTS.values():
        if name.endswith(".png"):
            assert f"({name})" in report, f"report does not embed {name}"
    with open(_by_key(demo_out[1])["scores"], newline="") as f:
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


def test_run_demo_rank_contributions_cost_and_images(demo_out):
    """Both models are split on the held-out scored images, at most 40 gradients per image."""
    calls = demo_out[4]
    shapes = make_shapes(SMALL["n_spectrum"], seed=SHAPES_TEST_SEED)
    assert len(calls) == 2, "one call per demo model"
    for call in calls:
        assert torch.equal(call["inputs"], shapes.images[: SMALL["n_eval"]])
        assert torch.equal(call["target"], shapes.labels[: SMALL["n_eval"]])
        per_image = call["evaluations"] / SMALL["n_eval"]
        assert 6 <= per_image <= 40, f"{per_image} gradient evaluations per image"


def test_run_demo_rank_contributions_report_numbers(demo_out):
    """The report's top-k shares and sums equal a direct rank_contributions call."""
    report = _by_key(demo_out[1])["report"].read_text(encoding="utf-8")
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
    with open(_by_key(demo_out[1])["scores"], newline="") as f:
        random = [r for r in csv.DictReader(f) if r["method"] == "random"][0]
    masks = make_shapes(SMALL["n_spectrum"], seed=SHAPES_TEST_SEED).masks[: SMALL["n_eval"]]
    area = masks.flatten(1).double().mean(1).mean().item()
    assert float(random["mask_energy"]) == pytest.approx(area, rel=1e-9)


def test_run_demo_report_with_every_method(demo_out):
    """With several methods the report names a winner per score and explains Blur IG's border."""
    report = _by_key(demo_out[1])["report"].read_text(encoding="utf-8")
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
    with open(_by_key(paths)["scores"], newline="") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["rig", "random"]


def test_run_demo_failure_leaves_nothing(tmp_path, monkeypatch):
    """A failure in the last stage leaves no file and no temporary folder behind."""
    import captum_rig.demo as demo

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(demo, "_report", boom)
    with pytest.raises(RuntimeError, match="boom"):
        run_demo(tmp_path, methods=["saliency"], **SMALL)
    assert list(tmp_path.iterdir()) == [], "partial output left behind"


def test_run_demo_without_rig_has_no_channel_max_figure(tmp_path):
    """Without RIG: no rig_channel_max.png, and the report neither embeds nor describes it."""
    paths = run_demo(tmp_path, methods=["saliency", "ig"], **SMALL)
    names = [p.name for p in paths]
    assert names == [n for k, n in OUTPUTS.items() if k != "rig_channel_max"], names
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names), "stray files"
    report = paths[-1].read_text(encoding="utf-8")
    assert OUTPUTS["rig_channel_max"] not in report and "Eq. (3)" not in report, report


def _interrupt(monkeypatch, stage):
    """Makes the demo stage ``stage`` (a function name in captum_rig.demo) raise Ctrl-C."""
    import captum_rig.demo as demo

    def ctrl_c(state):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, stage, ctrl_c)


def test_run_demo_ctrl_c_removes_the_folder_it_created(tmp_path, monkeypatch):
    """Ctrl-C after figures were staged removes the out folder and the parents it made."""
    _interrupt(monkeypatch, "_rank_galleries")
    with pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path / "new" / "out", methods=["saliency"], **SMALL)
    assert list(tmp_path.iterdir()) == [], "created folders left behind"


@pytest.mark.parametrize("content", [[], ["notes.txt"]], ids=["empty", "with-a-file"])
def test_run_demo_ctrl_c_leaves_a_given_folder_as_it_was(tmp_path, monkeypatch, content):
    """Ctrl-C leaves an out folder that existed before the run exactly as it was."""
    out = tmp_path / "out"
    out.mkdir()
    for name in content:
        (out / name).write_text("mine")
    _interrupt(monkeypatch, "_setup")
    with pytest.raises(KeyboardInterrupt):
        run_demo(out, methods=["saliency"], **SMALL)
    assert sorted(p.name for p in out.iterdir()) == content
    assert all((out / name).read_text() == "mine" for name in content)


def _dead_pid():
    """The id of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _staging_folders(out):
    return sorted(p.name for p in out.glob(".captum-rig-demo-*"))


@pytest.mark.skipif(os.name != "posix", reason="process liveness is checked on POSIX only")
def test_run_demo_removes_staging_of_dead_processes(tmp_path, monkeypatch):
    """The next run removes a dead process's staging folder on this host, and no other."""
    import captum_rig.demo as demo

    host = demo._host()
    dead = tmp_path / f".captum-rig-demo-{host}-{_dead_pid()}-ab_12cd"
    keep = [
        f".captum-rig-demo-{host}-{os.getpid()}-x1y2z3",  # alive: this process
        f".captum-rig-demo-another.host-{_dead_pid()}-x1y2z3",  # cannot be checked here
        ".captum-rig-demo-k3j2h1",  # no process id in the name
    ]
    for folder in [dead, *(tmp_path / name for name in keep)]:
        folder.mkdir()
        (folder / "report.md").write_text("partial")
    _interrupt(monkeypatch, "_setup")
    with pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path, methods=["saliency"], **SMALL)
    assert _staging_folders(tmp_path) == sorted(keep)


_KILLED_RUN = """
import sys, time
from captum_rig.demo import run_demo

def log(line):
    print(line, flush=True)
    if line.startswith("[3/7]"):
        time.sleep(600)  # killed here, with the first figures staged

run_demo(sys.argv[1], methods=["saliency"], log=log, n_images=1, n_eval=2, n_spectrum=4,
         n_steps=2, score_steps=2, dpi=20)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_run_demo_cleans_up_after_a_sigkilled_run(tmp_path, monkeypatch):
    """A run killed with SIGKILL leaves its staging folder; the next run removes it."""
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_RUN), str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("[3/7]"):
                break
        assert lines and lines[-1].startswith("[3/7]"), lines
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    staged = _staging_folders(out)
    assert len(staged) == 1 and (out / staged[0] / "comparison_shapes.png").is_file(), staged
    _interrupt(monkeypatch, "_setup")
    with pytest.raises(KeyboardInterrupt):
        run_demo(out, methods=["saliency"], **SMALL)
    assert list(out.iterdir()) == [], "the killed run's staging folder is still there"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(photo="lena"), ValueError, "photo"),
        (dict(n_eval=0), ValueError, "n_eval"),
        (dict(n_steps=1.5), TypeError, "n_steps"),
        (dict(n_images=True), TypeError, "n_images"),
        (dict(dpi=5), ValueError, "dpi"),
        (dict(methods=["rigg"]), ValueError, "unknown attribution method"),
        (dict(log="print"), TypeError, "log"),
    ],
)
def test_run_demo_bad_arguments(tmp_path, kwargs, error, match):
    """Bad arguments raise an error naming the argument before anything is written."""
    with pytest.raises(error, match=match):
        run_demo(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists(), "nothing written for bad arguments"


def test_run_demo_out_dir_is_a_file(tmp_path):
    """An out_dir that is a file is a clear ValueError."""
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        run_demo(f, **SMALL)
