"""``captum-rig lowrank``: the rank-k image of a file, its errors, Ctrl-C in a big SVD."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from captum_rig.lowrank import drop_top_ranks, low_rank

from ._helpers import (
    assert_user_error,
    files_in,
    run,
)


def stretched(x):
    """min..max of x mapped to 0..1 (the --rescale reference)."""
    return (x - x.min()) / (x.max() - x.min())


@pytest.mark.parametrize(
    "extra, reference",
    [
        ([], lambda x: low_rank(x, 3).clamp(0, 1)),
        (["--rescale"], lambda x: stretched(low_rank(x, 3))),
        (["--reverse"], lambda x: stretched(drop_top_ranks(x, 3))),
        (["--reverse", "--no-rescale"], lambda x: drop_top_ranks(x, 3).clamp(0, 1)),
    ],
)
def test_lowrank_writes_the_rank_k_image(capsys, work, extra, reference):
    """lowrank writes the rank-k (or reverse) image; a reverse image is stretched by default."""
    code, out, err = run(capsys, "lowrank", "a.png", "--rank", 3, "--out", "low.png", *extra)
    assert code == 0, err
    assert "wrote low.png" in out, out
    written = np.asarray(Image.open("low.png"), dtype=np.float64) / 255
    x = torch.from_numpy(np.asarray(Image.open("a.png"), dtype=np.float64) / 255)
    expected = reference(x.permute(2, 0, 1)).permute(1, 2, 0)
    assert written.shape == (12, 16, 3), written.shape
    assert np.abs(written - expected.numpy()).max() <= 0.5 / 255 + 1e-9, "not the expected image"


def test_lowrank_randomized_svd(capsys, work):
    """--svd randomized writes low_rank(x, k, method="randomized") of the image."""
    code, out, err = run(
        capsys, "lowrank", "a.png", "--rank", 2, "--svd", "randomized", "--out", "fast.png"
    )
    assert code == 0, err
    x = torch.from_numpy(np.asarray(Image.open("a.png"), dtype=np.float64) / 255)
    expected = low_rank(x.permute(2, 0, 1), 2, method="randomized").permute(1, 2, 0)
    written = np.asarray(Image.open("fast.png"), dtype=np.float64) / 255
    error = np.abs(written - expected.clamp(0, 1).numpy()).max()
    assert error <= 0.5 / 255 + 1e-9, f"not the randomized rank-2 image: {error}"


def test_lowrank_reverse_is_visible_by_default(capsys, work):
    """A reverse image spans the full 0..255 range by default, not a near-black clip."""
    assert run(capsys, "lowrank", "a.png", "--rank", 1, "--reverse", "--out", "r.png")[0] == 0
    assert run(capsys, "lowrank", "a.png", "--rank", 1, "--reverse", "--no-rescale",
               "--out", "dark.png")[0] == 0  # fmt: skip
    shown, dark = np.asarray(Image.open("r.png")), np.asarray(Image.open("dark.png"))
    assert shown.min() == 0 and shown.max() == 255, (shown.min(), shown.max())
    assert dark.mean() < shown.mean() / 2, "clipping the reverse image darkens it"


def test_lowrank_full_rank_and_rank_zero(capsys, work):
    """Rank w gives the image back exactly; rank 0 a black image."""
    assert run(capsys, "lowrank", "a.png", "--rank", 12, "--out", "full.png")[0] == 0
    assert np.array_equal(np.asarray(Image.open("full.png")), np.asarray(Image.open("a.png")))
    assert run(capsys, "lowrank", "a.png", "--rank", 0, "--out", "zero.png")[0] == 0
    assert not np.asarray(Image.open("zero.png")).any(), "rank 0 is black"


def test_lowrank_greyscale_and_rescale(capsys, work):
    """A greyscale image stays greyscale; --rescale stretches min..max to 0..255."""
    code, _, err = run(
        capsys, "lowrank", "grey.png", "--rank", 2, "--reverse", "--rescale", "--out", "g.png"
    )
    assert code == 0, err
    img = Image.open("g.png")
    assert img.mode == "L" and img.size == (16, 12), (img.mode, img.size)
    pixels = np.asarray(img)
    assert pixels.min() == 0 and pixels.max() == 255, "rescaled to the full range"


def test_lowrank_output_keeps_umask_permissions(capsys, work):
    """The renamed temporary file gets ordinary permissions, not mkstemp's 0600."""
    assert run(capsys, "lowrank", "a.png", "--rank", 1, "--out", "p.png")[0] == 0
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat("p.png").st_mode & 0o777 == 0o666 & ~umask, oct(os.stat("p.png").st_mode)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["a.png", "--rank", 13], "--rank must be in 0..12"),
        (["a.png", "--rank", -1], "--rank must be in 0..12"),
        (["missing.png", "--rank", 1], "no such image file: missing.png"),
        (["net.py", "--rank", 1], "not an image file"),
        (["truncated.png", "--rank", 1], "truncated.png"),
        ([".", "--rank", 1], "is a folder"),
    ],
)
def test_lowrank_errors(capsys, work, argv, match):
    """Bad ranks and unreadable files: one line, exit 2, no output file."""
    data = (work / "a.png").read_bytes()
    (work / "truncated.png").write_bytes(data[: len(data) // 2])
    before = files_in(work)
    code, _, err = run(capsys, "lowrank", *argv, "--out", "out.png")
    assert_user_error(code, err, match)
    assert files_in(work) == before, "no output file, no temporary file"


@pytest.mark.parametrize(
    "out, match",
    [("out.xyz", "must end in one of"), ("nodir/out.png", "does not exist"), (".", "folder")],
)
def test_lowrank_bad_output(capsys, work, out, match):
    """An output with an unknown extension or in a missing folder is refused up front."""
    code, _, err = run(capsys, "lowrank", "a.png", "--rank", 1, "--out", out)
    assert_user_error(code, err, match)


def test_lowrank_answers_ctrl_c_during_a_big_svd(work):
    """SIGINT in the SVD of a 17 Mpx image (limit lifted): exit 130 at once, no output file."""
    noise = np.random.default_rng(0).integers(0, 256, (4100, 4100), dtype=np.uint8)
    Image.fromarray(noise).save(work / "huge.png")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    argv = ["lowrank", "huge.png", "--rank", "3", "--out", "h.png", "--max-pixels", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "captum_rig.cli", *argv],
        cwd=work, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        note = proc.stderr.readline()  # printed just before the SVD starts
        assert "Ctrl-C stops it" in note, note
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        # The SVD alone takes minutes on one thread: an exit within this bound means Ctrl-C
        # was answered, not waited out (it takes well under a second when answered).
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["captum-rig: interrupted"], err
    assert not any(p.name.startswith((".h.", "h.")) for p in work.iterdir()), "no output"
