"""Ctrl-C during the SVD of a big image, in a ``captum-rig`` command run as a program."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from ._helpers import logging_cnn

# Logs the width of its inputs to $STAMP after each forward pass: the SVD of a big image
# follows its first pass (its prediction).
STAMPED = logging_cnn("Stamped", "STAMP", 'f"{x.shape[-1]} "', before=False)


def huge_image(path, size=4096):
    """A noise PNG of size×size RGB pixels (its SVD takes a minute or more on one core)."""
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    return path


def interrupt_in_the_svd(work, argv, size=4096, start_timeout=300.0):
    """Runs ``captum-rig ARGV`` in ``work`` with the model ``stamped.py:Stamped``; once it
    has predicted an image of width ``size`` (its SVD follows), sends SIGINT. Returns
    (exit code, stderr).

    An exit within the bound below means Ctrl-C was answered, not waited out.
    """
    (work / "stamped.py").write_text(STAMPED)
    stamp = work / "stamp"
    env = dict(os.environ, PYTHONWARNINGS="ignore", STAMP=str(stamp))
    proc = subprocess.Popen(
        [sys.executable, "-m", "captum_rig.cli", *map(str, argv), "--model", "stamped.py:Stamped"],
        cwd=work, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + start_timeout
        while not seen(stamp, size) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert seen(stamp, size), f"the model never saw the image: exit {proc.poll()}"
        time.sleep(5.0)  # well into the SVD (imports and checks come first)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    return proc.returncode, err


def seen(stamp, size):
    """Whether the model has predicted an image of width ``size``."""
    return stamp.exists() and str(size) in stamp.read_text().split()
