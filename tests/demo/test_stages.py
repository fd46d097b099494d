"""Tests for captum_rig.demo.stages: the demo job, its stages, its staging folder."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from captum_rig._context import host_name
from captum_rig.attr.registry import METHODS
from captum_rig.demo import OUTPUTS, SHAPES_TEST_SEED, run_demo
from captum_rig.synthetic import make_shapes

from ._helpers import SMALL, STAGES, by_key


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
    with Image.open(by_key(demo_out[1])[key]) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 100, f"{key} looks blank"


def test_run_demo_logs_each_stage_as_it_starts(demo_out):
    """log gets "[i/8] stage: ..." before each stage's work, in the order timings records."""
    lines, timings = demo_out[2:4]
    assert list(timings) == STAGES, timings
    assert all(t >= 0 for t in timings.values()), timings
    assert [line.split(": ")[0] for line, _ in lines] == [
        f"[{i}/8] {name}" for i, name in enumerate(STAGES, 1)
    ], lines
    attributions = lines[1][0]
    for m in METHODS.values():
        assert m.title in attributions, f"{m.title} not announced: {attributions}"
    made = {line.split(": ")[0]: files for line, files in lines}
    assert made["[1/8] setup"] == [], "nothing written before the first stage"
    assert "comparison_shapes.png" not in made["[2/8] attributions"], "announced after its work"
    assert "comparison_shapes.png" in made["[3/8] rank galleries"], made
    assert "rank_gallery.png" not in made["[3/8] rank galleries"], "announced after its work"
    assert "rank_contributions.png" not in made["[5/8] rank contributions"], "announced late"
    assert "rank_contributions.png" in made["[6/8] rank or frequency"], made
    assert "rank_or_frequency.png" not in made["[6/8] rank or frequency"], "announced late"
    assert "rank_or_frequency.png" in made["[7/8] scores"], made
    assert "scores.csv" not in made["[7/8] scores"] and "report.md" not in made["[8/8] report"]


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


def test_run_demo_failure_leaves_nothing(tmp_path, monkeypatch):
    """A failure in the last stage leaves no file and no temporary folder behind."""
    import captum_rig.demo.stages as demo

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(demo, "report", boom)
    with pytest.raises(RuntimeError, match="boom"):
        run_demo(tmp_path, methods=["saliency"], **SMALL)
    assert list(tmp_path.iterdir()) == [], "partial output left behind"


def _interrupt(monkeypatch, stage):
    """Makes the demo stage ``stage`` (a function name in captum_rig.demo.stages) raise
    Ctrl-C."""
    import captum_rig.demo.stages as demo

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
    host = host_name()
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
    if line.startswith("[3/8]"):
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
            if line.startswith("[3/8]"):
                break
        assert lines and lines[-1].startswith("[3/8]"), lines
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


def test_run_demo_computes_each_methods_maps_once(tmp_path, monkeypatch):
    """Each method runs once on the scored images (the figure shows their first rows) and
    once on the photo; the scores reuse the first run."""
    from captum_rig.attr.registry import AttributionMethod

    calls = []
    original = AttributionMethod.attribute

    def counted(self, model, inputs, *args, **kwargs):
        calls.append((self.name, inputs.shape[0]))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(AttributionMethod, "attribute", counted)
    run_demo(tmp_path, methods=["saliency", "ig"], **SMALL)
    assert sorted(calls) == sorted(
        [("saliency", SMALL["n_eval"]), ("saliency", 1), ("ig", SMALL["n_eval"]), ("ig", 1)]
    ), calls
