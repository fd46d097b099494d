"""Shared helpers of the ``captum-rig`` tests: running ``main``, checking one-line errors,
writing small images, reading the files a command writes.
"""

import csv
import os
import subprocess
from pathlib import Path

import numpy as np
from _reference import USER_MODEL_SOURCE
from PIL import Image

from captum_rig.cli import main

NET = (
    USER_MODEL_SOURCE
    + """

def flat():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))


class Flaky(nn.Module):
    # make(), counting forward calls in $CALLS; Ctrl-C at call $FAIL_AT if set

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)  # the same model in every run
        self.net = make()

    def forward(self, x):
        with open(os.environ["CALLS"], "a") as f:
            f.write(".")
        with open(os.environ["CALLS"]) as f:
            calls = len(f.read())
        if calls == int(os.environ.get("FAIL_AT", "0")):
            raise KeyboardInterrupt
        return self.net(x)
"""
)


def run(capsys, *argv):
    """main(argv) in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, match=""):
    """Exit 2, exactly one line 'captum-rig: error: ...' on stderr, no traceback."""
    lines = err.strip().splitlines()
    assert code == 2, f"exit code {code}, stderr: {err}"
    assert len(lines) == 1, f"expected one stderr line, got: {err!r}"
    assert lines[0].startswith("captum-rig: error: "), lines[0]
    assert "Traceback" not in err, err
    assert match in lines[0], f"{match!r} not in {lines[0]!r}"


def write_png(path, h=12, w=16, mode="RGB", seed=0):
    """A random PNG (or any Pillow format from the suffix) of size h×w."""
    rng = np.random.default_rng(seed)
    shape = (h, w) if mode == "L" else (h, w, len(mode))
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode=mode).save(path)
    return Path(path)


def files_in(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def figure_pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_image_like_the_cli(path, size):
    """The image as the CLI gives it to a model with a size×size input."""
    from captum_rig.data import load_image

    return load_image(path, size=size)


def subprocess_run(argv, cwd):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def logging_cnn(name: str, variable: str, record: str, before: bool = True) -> str:
    """The source of a small CNN for any image size, class ``name``, that appends the
    Python expression ``record`` (of its input ``x``) to the file named by the environment
    variable ``variable``, before or after each forward pass."""
    write = (
        f'        with open(os.environ["{variable}"], "a") as f:\n            f.write({record})\n'
    )
    return (
        "import os\n\nfrom torch import nn\n\n\n"
        f"class {name}(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.net = nn.Sequential(\n"
        "            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),\n"
        "            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5),\n"
        "        )\n\n"
        "    def forward(self, x):\n"
        + (write if before else "")
        + "        out = self.net(x)\n"
        + ("" if before else write)
        + "        return out\n"
    )


# Adds each batch's size to the file $SAMPLES.
COUNTING = logging_cnn("Counting", "SAMPLES", 'f"{x.shape[0]}\\n"')
