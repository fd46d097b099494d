"""``captum-rig attribute``: the HDF5 file, Ctrl-C and ``--resume``, refusals in one line,
and a run killed with SIGKILL at random points that resumes to the same content.
"""

import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from captum_rig.runs import parts_folder, read_attributions

from ._helpers import assert_user_error, run

ROOT = Path(__file__).resolve().parent.parent.parent


def content(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}, {
            k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()
        }


def assert_same_content(a, b):
    (da, aa), (db, ab) = content(a), content(b)
    assert list(da) == list(db) and aa == ab
    for k in da:
        np.testing.assert_array_equal(da[k], db[k], err_msg=k)


def test_attribute_writes_the_file(capsys, work, labelled_folder):
    code, out, err = run(
        capsys, "attribute", "--model", "net.py:make", "--weights", "net.pt",
        "--data", labelled_folder, "--methods", "rig,saliency", "--n-steps", 3,
        "--batch-size", 4, "--out", "maps.h5", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == "wrote maps.h5"
    assert re.search(r"6 images, rig, saliency: [\d.]+ images/s", err), err
    with read_attributions(work / "maps.h5") as maps:
        assert maps.methods == ("rig", "saliency") and len(maps) == 6
        assert maps.maps("rig").shape == (6, 3, 8, 8)
        assert maps.labels.tolist() == [0, 0, 0, 1, 1, 1]
        assert [os.path.relpath(f, labelled_folder) for f in maps.files][:2] == [
            "cat/0.png", "cat/1.png",
        ]  # fmt: skip
        assert maps.attributes["model"] == "net.py:make"
        assert maps.attributes["source"] == str(labelled_folder)
        assert maps.attributes["n_steps"] == 3 and maps.attributes["batch_size"] == 4


def test_target_label_needs_labels(capsys, work):
    (work / "flat").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(work / "flat" / "x.png")
    code, _, err = run(
        capsys, "attribute", "--model", "net.py:make", "--weights", "net.pt",
        "--data", work / "flat", "--target", "label", "--out", "m.h5",
    )  # fmt: skip
    assert_user_error(code, err, "has no labels")


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--out", "maps.csv"], "must end in one of .h5, .hdf5"),
        (["--out", "no/maps.h5"], "does not exist"),
        (["--out", "m.h5", "--methods", "rig,gradcam"], "--methods: unknown attribution method"),
    ],
)
def test_usage_errors_are_one_line(capsys, work, labelled_folder, argv, match):
    code, _, err = run(
        capsys, "attribute", "--model", "net.py:make", "--weights", "net.pt",
        "--data", labelled_folder, *argv,
    )  # fmt: skip
    assert_user_error(code, err, match)
    assert not (work / "m.h5").exists()


def test_interrupted_then_resumed_and_refused_with_other_settings(
    capsys, work, labelled_folder, monkeypatch
):
    """Ctrl-C: exit 130 and the command that resumes; another --methods or --n-steps on
    resume: exit 2 naming it; the printed command: the uninterrupted file."""
    calls = work / "calls.txt"
    monkeypatch.setenv("CALLS", str(calls))
    argv = ["attribute", "--model", "net.py:Flaky", "--data", labelled_folder]
    argv += ["--batch-size", 2, "--methods", "saliency", "--no-progress"]
    assert run(capsys, *argv, "--out", "whole.h5")[0] == 0
    total = len(calls.read_text())  # forward calls: 2 per batch
    calls.write_text("")
    monkeypatch.setenv("FAIL_AT", str(total // 2 + 1))
    code, _, err = run(capsys, *argv, "--out", "maps.h5")
    line = re.fullmatch(
        r"captum-rig: interrupted: (\d+) of 3 batches saved; resume with: (.+)", err.strip()
    )
    assert code == 130 and line, (code, err)
    assert not (work / "maps.h5").exists()
    for other, match in ((["--methods", "ig"], "methods=['saliency'], but this call has"),
                         (["--target", "label"], "target='auto', but this call has")):  # fmt: skip
        code, _, err = run(capsys, *argv, *other, "--out", "maps.h5", "--resume")
        assert_user_error(code, err, match)
    monkeypatch.delenv("FAIL_AT")
    command = shlex.split(line[2])
    assert command[-1] == "--resume"
    code, _, err = run(capsys, *command[1:])
    assert code == 0, err
    assert_same_content(work / "maps.h5", work / "whole.h5")
    assert not parts_folder(work / "maps.h5").exists()


# -- SIGKILL ---------------------------------------------------------------------------


def _image_folder(root: Path, n: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / "data" / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            folder / f"{i:02d}.png"
        )
    return root / "data"


def _cli(data: Path, out: Path, *extra: str) -> list:
    return [
        sys.executable, "-m", "captum_rig.cli", "attribute", "--model", "demo:natural",
        "--data", str(data), "--batch-size", "2", "--methods", "rig,saliency",
        "--n-steps", "16", "--no-progress", "--out", str(out), *extra,
    ]  # fmt: skip


def _run_and_kill(cmd: list, state: Path, delay: float, env: dict) -> bool:
    """Starts ``cmd``; SIGKILLs it ``delay`` s after the checkpoint changes. True: killed."""
    before = state.stat().st_mtime_ns if state.exists() else None
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        now = state.stat().st_mtime_ns if state.exists() else None
        if now is not None and now != before:
            time.sleep(delay)
            break
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert killed or proc.returncode == 0, err.decode()[-2000:]
    return killed


@pytest.mark.slow
def test_cli_killed_at_random_points_resumes_to_the_same_content(tmp_path):
    """SIGKILL at seeded random points, resume with the same command: the same maps."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    data = _image_folder(tmp_path)
    reference = tmp_path / "reference.h5"
    uninterrupted = subprocess.Popen(
        _cli(data, reference), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    out = tmp_path / "maps.h5"
    state = parts_folder(out) / "state"
    rng = random.Random(0)
    kills = 0
    for attempt in range(2):
        extra = ("--resume",) if attempt else ()
        if not _run_and_kill(_cli(data, out, *extra), state, rng.uniform(0, 0.3), env):
            break
        kills += 1
        if out.exists():  # killed after the rename: the file is whole
            with read_attributions(out) as maps:
                assert len(maps) == 24
    else:
        done = subprocess.run(_cli(data, out, "--resume"), env=env, capture_output=True)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert kills >= 1, "no run was killed: the test did not test resuming"
    _, err = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, err.decode()[-2000:]
    assert_same_content(out, reference)
    assert not parts_folder(out).exists()


@pytest.mark.slow
def test_cli_under_torchrun_writes_the_one_process_file(tmp_path):
    """``torchrun --nproc_per_node 2 -m captum_rig.cli attribute``: the processes join the
    group (gloo) themselves, and the file is the one a single process writes."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    data = _image_folder(tmp_path, n=10)
    one = subprocess.run(_cli(data, tmp_path / "one.h5"), env=env, capture_output=True)
    assert one.returncode == 0, one.stderr.decode()[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    torchrun += ["--nproc_per_node", "2", "-m", *_cli(data, tmp_path / "two.h5")[2:]]
    two = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("wrote") == 1, "process 0 reports, once"
    assert (tmp_path / "two.h5").read_bytes() == (tmp_path / "one.h5").read_bytes()
