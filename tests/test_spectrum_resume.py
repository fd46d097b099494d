"""rank_spectrum's resume: a checkpoint is only ever continued by the same run.

Every hostile resume (other images, fewer images, another batch size, other weights,
other labels) must raise a ValueError naming what differs and leave the file as it was;
the same run must resume to exactly the uninterrupted result; Ctrl-C must save what was
counted; a CLI run killed with SIGKILL at random points must resume to the same CSV bytes.
"""

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from captum_rig import rank_spectrum
from captum_rig._checkpoint import model_digest as _model_digest

HERE = Path(__file__).resolve().parent


class Net(nn.Module):
    """A tiny float64 CNN that counts its calls and raises KeyboardInterrupt on call ``stop``."""

    def __init__(self, seed=0, stop=None):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 3, padding=1).double()
        self.bn = nn.BatchNorm2d(4).double()
        self.fc = nn.Linear(4 * 8 * 8, 5).double()
        self.calls, self.images, self.stop = 0, 0, stop

    def forward(self, x):
        self.calls += 1
        if self.calls == self.stop:
            raise KeyboardInterrupt("Ctrl-C from the test")
        self.images += len(x)
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def make_data(n=40, seed=0):
    """``n`` float64 images (3, 8, 8) in [0, 1] and labels for 5 classes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64)
    return x, torch.randint(5, (n,), generator=g)


X, Y = make_data()
RANKS = [0, 2, 5, 8]
# Forward calls per batch of 4 images: at batch_size=64 the reference and one chunk of the
# 3 computed ranks (8 is the image itself); at batch_size=4 the reference and one per rank.
CALLS_PER_BATCH = {64: 2, 4: 4}
# Images through the model per batch of 4: the reference and 3 ranks.
IMAGES_PER_BATCH = 4 * 4


def loader(x=X, y=Y, batch_size=4):
    """A DataLoader of (images, labels) batches, in order."""
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def interrupted_run(path, data, after_batches=3, **kwargs):
    """Runs until Ctrl-C in batch ``after_batches`` (0-based); returns the file's bytes."""
    calls = CALLS_PER_BATCH[kwargs.get("batch_size", 64)]
    model = Net(stop=calls * after_batches + 1)
    with pytest.raises(KeyboardInterrupt):
        rank_spectrum(model, data, RANKS, progress=False, checkpoint=path, **kwargs)
    saved = torch.load(path, weights_only=True)
    assert saved["state"]["next_batch"] == after_batches, "the counted batches are saved"
    return path.read_bytes()


def sha256(tensor):
    """An independent digest: dtype, shape, then the bytes numpy sees."""
    h = hashlib.sha256(f"{tensor.dtype}:{tuple(tensor.shape)};".encode())
    h.update(np.ascontiguousarray(tensor.numpy()).tobytes())
    return h.digest()


# -- the same run ----------------------------------------------------------------------


class NoLen:
    """Batches of an iterable without ``len``."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


@pytest.mark.parametrize("kind", ["loader", "tensor", "no len", "no labels"])
def test_same_run_resumes_to_the_uninterrupted_result(tmp_path, kind):
    """Interrupted and resumed with the same model and data: the uninterrupted spectrum."""
    data = {
        "loader": lambda: dict(data=loader()),
        "tensor": lambda: dict(data=X, labels=Y, batch_size=4),
        "no len": lambda: dict(data=NoLen(list(loader()))),
        "no labels": lambda: dict(data=[b[0] for b in loader()]),
    }[kind]
    expected = rank_spectrum(Net(), ranks=RANKS, progress=False, **data())
    path = tmp_path / "run.ckpt"
    interrupted_run(path, **data())  # Ctrl-C in batch 3
    model = Net()
    resumed = rank_spectrum(model, ranks=RANKS, progress=False, checkpoint=path, **data())
    assert resumed == expected, "the resumed run equals the uninterrupted one"
    assert model.images == 7 * IMAGES_PER_BATCH, "the 3 counted batches were not computed again"
    assert not path.exists(), "the checkpoint is removed once the run completes"


def test_checkpoint_records_model_counts_and_batch_digests(tmp_path):
    """The file holds the model's SHA-256, the data's sizes and per-batch SHA-256s."""
    path = tmp_path / "run.ckpt"
    interrupted_run(path, loader(), after_batches=2)
    saved = torch.load(path, weights_only=True)
    identity = saved["identity"]
    model = Net()
    h = hashlib.sha256()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().numpy().tobytes())
    assert identity["model"] == h.hexdigest(), "SHA-256 over names, dtypes, shapes and bytes"
    assert (identity["n_images"], identity["n_batches"], identity["batch_size"]) == (40, 10, 4)
    digests = saved["state"]["digests"]
    assert digests.shape == (2, 64), "one digest per batch counted"
    for i in range(2):
        images, labels = X[4 * i : 4 * i + 4], Y[4 * i : 4 * i + 4]
        assert bytes(digests[i].tolist()) == sha256(images) + sha256(labels), f"batch {i}"


def test_model_digest_sees_buffers_and_not_plain_functions():
    """A changed buffer changes the digest; a plain function is recorded as None."""
    a, b = Net(), Net()
    assert _model_digest(a) == _model_digest(b), "same weights, same digest"
    b.bn.running_mean += 1e-12
    assert _model_digest(a) != _model_digest(b), "a buffer's bytes are part of the digest"
    assert _model_digest(lambda x: a(x)) is None, "a plain function cannot be hashed"
    assert _model_digest(a.bfloat16()) is not None, "bfloat16 weights hash too"


def test_plain_function_model_resumes(tmp_path):
    """A model that is not an nn.Module is not checked, and still resumes exactly."""
    net = Net().eval()  # a plain function is not put in eval mode for the run
    expected = rank_spectrum(lambda x: net(x), loader(), RANKS, progress=False)
    path = tmp_path / "run.ckpt"
    interrupted_run(path, loader())
    net = Net().eval()
    resumed = rank_spectrum(lambda x: net(x), loader(), RANKS, progress=False, checkpoint=path)
    assert resumed == expected, "the resumed run equals the uninterrupted one"


# -- hostile resumes -------------------------------------------------------------------


def _other_images():
    x = X.clone()
    x[5, 0, 0, 0] = 1 - x[5, 0, 0, 0]  # one pixel of one image of batch 1
    return dict(data=loader(x))


def _other_labels():
    y = Y.clone()
    y[9] = (y[9] + 1) % 5  # one label of batch 2
    return dict(data=loader(y=y))


HOSTILE = {
    "other images": (_other_images, "batch 1's images differ from the checkpoint's"),
    "other labels": (_other_labels, "batch 2's labels differ from the checkpoint's"),
    "another folder": (
        lambda: dict(data=loader(make_data(seed=1)[0])),
        "batch 0's images differ from the checkpoint's",
    ),
    "fewer images (--limit)": (
        lambda: dict(data=DataLoader(Subset(TensorDataset(X, Y), range(10)), batch_size=4)),
        "the data has 10 images, the checkpoint 40; the data has 3 batches, the checkpoint 10",
    ),
    "more images": (
        lambda: dict(data=loader(torch.cat([X, X[:4]]), torch.cat([Y, Y[:4]]))),
        "the data has 44 images, the checkpoint 40",
    ),
    "other DataLoader batch size": (
        lambda: dict(data=loader(batch_size=2)),
        "it was written with batch_size=4, but this call has batch_size=2",
    ),
    "other model weights": (
        lambda: dict(data=loader(), model=Net(seed=1)),
        "the model's weights differ from the checkpoint's",
    ),
    "other ranks": (
        lambda: dict(data=loader(), ranks=[0, 8]),
        "it was written with ranks=[0, 2, 5, 8], but this call has ranks=[0, 8]",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_resume_raises_naming_the_difference(tmp_path, case):
    """Other data, model or arguments: a ValueError naming what differs; file unchanged."""
    make, message = HOSTILE[case]
    path = tmp_path / "run.ckpt"
    before = interrupted_run(path, loader())
    kwargs = {"ranks": RANKS, **make()}
    model = kwargs.pop("model", Net())
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        rank_spectrum(model, progress=False, checkpoint=path, **kwargs)
    assert f"checkpoint {str(path)!r} does not match this call: " in str(error.value)
    assert path.read_bytes() == before, "a refused resume leaves the checkpoint as it was"
    assert rank_spectrum(Net(), loader(), RANKS, progress=False, checkpoint=path) == (
        rank_spectrum(Net(), loader(), RANKS, progress=False)
    ), "the right call still resumes it"


def test_tensor_data_with_fewer_images_raises(tmp_path):
    """Tensor data: fewer images than the checkpoint's is named before any forward."""
    path = tmp_path / "run.ckpt"
    interrupted_run(path, X, labels=Y, batch_size=4)
    model = Net()
    with pytest.raises(ValueError, match="the data has 30 images, the checkpoint 40"):
        rank_spectrum(model, X[:30], RANKS, Y[:30], batch_size=4, progress=False, checkpoint=path)
    assert model.calls == 0, "refused before any forward pass"


def test_iterable_without_len_that_runs_out_raises(tmp_path):
    """Batches without len, fewer than the checkpoint counted: named after the loop."""
    path = tmp_path / "run.ckpt"
    interrupted_run(path, NoLen(list(loader())), after_batches=3)
    with pytest.raises(ValueError, match="the data has 2 batches, but the checkpoint counted 3"):
        rank_spectrum(Net(), NoLen(list(loader())[:2]), RANKS, progress=False, checkpoint=path)
    assert path.exists(), "the checkpoint is kept"


# -- interrupts and paths --------------------------------------------------------------


def test_ctrl_c_saves_one_counted_batch_whatever_checkpoint_every(tmp_path):
    """Ctrl-C in batch 1 saves batch 0 with checkpoint_every=100; in batch 0, nothing."""
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        rank_spectrum(
            Net(stop=1), loader(), RANKS, progress=False, checkpoint=path, checkpoint_every=100
        )
    assert os.listdir(tmp_path) == [], "nothing counted, nothing saved, no temporary file"
    interrupted_run(path, loader(), after_batches=1, checkpoint_every=100)


def test_second_ctrl_c_during_the_final_save_is_held(tmp_path, monkeypatch):
    """A Ctrl-C during a save and another during the save on the way out: still saved."""
    save = torch.save

    def save_under_ctrl_c(obj, f):
        os.kill(os.getpid(), signal.SIGINT)  # the default handler: KeyboardInterrupt
        time.sleep(0.05)  # let it be delivered here, mid-save
        save(obj, f)

    monkeypatch.setattr(torch, "save", save_under_ctrl_c)
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        rank_spectrum(Net(), loader(), RANKS, progress=False, checkpoint=path, checkpoint_every=1)
    monkeypatch.setattr(torch, "save", save)
    assert torch.load(path, weights_only=True)["state"]["next_batch"] == 1, (
        "the save on the way out survived the second Ctrl-C"
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "handler restored"
    assert os.listdir(tmp_path) == ["run.ckpt"], "no temporary file left"


def test_checkpoint_folder_created_or_refused_before_any_batch(tmp_path):
    """A missing folder is created; a folder that cannot be made fails before any forward."""
    path = tmp_path / "new" / "deeper" / "run.ckpt"
    rank_spectrum(Net(), loader(), RANKS, progress=False, checkpoint=path)
    assert (tmp_path / "new" / "deeper").is_dir() and not path.exists(), "made, then removed"
    (tmp_path / "blocker").write_text("")
    model = Net()
    with pytest.raises(ValueError, match="^checkpoint .* is not a writable file"):
        rank_spectrum(model, loader(), RANKS, progress=False, checkpoint=tmp_path / "blocker" / "c")
    assert model.calls == 0, "refused before any forward pass"


# -- the CLI under SIGKILL -------------------------------------------------------------


def _image_folder(root: Path, n: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / "data" / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return root / "data"


def _cli(data: Path, out: Path, *extra: str) -> list:
    return [
        sys.executable,
        "-m",
        "captum_rig.cli",
        "spectrum",
        "--model",
        "demo:natural",
        "--data",
        str(data),
        "--batch-size",
        "1",
        "--ranks",
        "0:32:4",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def _run_and_kill(cmd: list, checkpoint: Path, delay: float, env: dict) -> bool:
    """Starts ``cmd``; SIGKILLs it ``delay`` s after the checkpoint changes. True: killed."""
    before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        now = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
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
def test_cli_killed_at_random_points_resumes_to_the_same_csv(tmp_path):
    """SIGKILL at seeded random points, resume with the same command: same CSV bytes."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    data = _image_folder(tmp_path)
    reference = tmp_path / "reference"
    # The uninterrupted run, beside the others (one CLI start costs seconds).
    uninterrupted = subprocess.Popen(
        _cli(data, reference), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    out = tmp_path / "out"
    checkpoint = out / ".spectrum.ckpt"
    rng = random.Random(0)
    kills = 0
    # Each run is killed a random moment after its checkpoint was (re)written, mid-batch or
    # mid-save; each next run resumes from whatever the killed one left, until one ends.
    for attempt in range(2):
        extra = ("--resume",) if attempt else ()
        if not _run_and_kill(_cli(data, out, *extra), checkpoint, rng.uniform(0, 0.3), env):
            break
        kills += 1
    else:
        run = subprocess.run(_cli(data, out, "--resume"), env=env, capture_output=True)
        assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert kills >= 1, "no run was killed: the test did not test resuming"
    _, err = uninterrupted.communicate(timeout=120)
    assert uninterrupted.returncode == 0, err.decode()[-2000:]
    expected = (reference / "spectrum.csv").read_bytes()
    assert (out / "spectrum.csv").read_bytes() == expected, "the resumed CSV differs"
    assert not checkpoint.exists(), "the checkpoint is removed once the run completes"


# -- what the CLI's resume record and Ctrl-C line read -----------------------------------


def test_stream_digest_sees_every_image_and_label_whatever_the_batch_size():
    """Same images and labels in other batches: same digest; any pixel or label changed,
    images reordered, or no labels: another digest. A StreamDigest passes batches through
    unchanged and forwards the loader's attributes (so a checkpoint sees the same run)."""
    from captum_rig._checkpoint import StreamDigest, stream_digest

    data = TensorDataset(X, Y)
    digest = stream_digest(DataLoader(data, batch_size=4))
    assert stream_digest(DataLoader(data, batch_size=7)) == digest
    assert stream_digest([(X, Y)]) == digest
    other = X.clone()
    other[13, 1, 2, 3] += 1e-9
    for changed in ([(other, Y)], [(X, Y.roll(1))], [(X.flip(0), Y.flip(0))], [X]):
        assert stream_digest(changed) != digest
    loader = DataLoader(data, batch_size=8)
    seen = StreamDigest(loader)
    assert len(seen) == 5 and seen.batch_size == 8 and seen.dataset is data
    with pytest.raises(RuntimeError, match="no complete pass"):
        seen.hexdigest()
    batches = list(seen)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, loader))
    assert seen.hexdigest() == digest


def test_saved_batches_counts_a_checkpoint_and_nothing_else(tmp_path):
    """The batches an interrupted run saved; 0 for no file or another file."""
    from captum_rig._checkpoint import saved_batches

    path = tmp_path / "run.ckpt"
    interrupted_run(path, loader(), after_batches=3)  # Ctrl-C in batch 3: 0, 1, 2 saved
    assert saved_batches(path) == 3
    assert saved_batches(tmp_path / "none.ckpt") == 0
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    assert saved_batches(tmp_path / "junk.ckpt") == 0
