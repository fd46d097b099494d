"""Tests for captum_rig.spectrum: rank_spectrum (Algorithm 1) and RankSpectrum."""

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import captum_rig.spectrum as spectrum_module
from captum_rig._checks import (
    NOT_A_BATCH,
    NOT_A_TENSOR,
    NOT_AN_INT,
    NOT_FINITE,
    NOT_FLOAT,
    OUT_OF_RANGE,
    WRONG_LENGTH,
)
from captum_rig.spectrum import RankSpectrum, accuracy_gap, rank_spectrum

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_torchrun_spectrum", HERE / "_torchrun_spectrum.py")
helper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helper)
tiny_model, tiny_data = helper.tiny_model, helper.tiny_data


# -- the oracle ------------------------------------------------------------------------


def literal_algorithm_1(model, x, labels, ranks, reverse):
    """Algorithm 1 as written: per image, per rank, per channel one numpy SVD."""
    model = model.eval()
    agree = np.zeros(len(ranks))
    correct = np.zeros(len(ranks))
    with torch.no_grad():
        for n in range(x.shape[0]):
            full = model(x[n : n + 1]).argmax(1).item()
            for j, k in enumerate(ranks):
                image = np.empty(x.shape[1:])
                for c in range(x.shape[1]):
                    channel = x[n, c].numpy()
                    u, s, vt = np.linalg.svd(channel, full_matrices=False)
                    kept = (u[:, :k] * s[:k]) @ vt[:k]
                    image[c] = channel - kept if reverse else kept
                image = torch.from_numpy(image)[None].to(x.dtype)
                prediction = model(image).argmax(1).item()
                agree[j] += prediction == full
                if labels is not None:
                    correct[j] += prediction == labels[n].item()
    n = x.shape[0]
    return list(agree / n), None if labels is None else list(correct / n)


def make_data(n=6, shape=(3, 8, 10), seed=3):
    """Random float64 images in [0, 1] and labels for 5 classes."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=torch.float64), torch.randint(
        5, (n,), generator=g
    )


class Counting(nn.Module):
    """Counts the images the wrapped model sees; raises after ``fail_after`` calls."""

    def __init__(self, model, fail_after=None):
        super().__init__()
        self.model, self.images, self.calls, self.fail_after = model, 0, 0, fail_after

    def forward(self, x):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("interrupted by the test")
        self.calls += 1
        self.images += len(x)
        return self.model(x)


def pixels(fig):
    """Number of distinct RGBA colours in the rendered figure."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba()).reshape(-1, 4)
    return len(np.unique(rgba, axis=0))


# -- Algorithm 1 -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 8, 8), (3, 8, 10), (3, 10, 7)], ids=str)
@pytest.mark.parametrize("reverse", [False, True], ids=["keep", "reverse"])
def test_matches_literal_algorithm_1(shape, reverse):
    """Agreement and accuracy per rank equal a per-image, per-channel numpy SVD loop."""
    model = tiny_model()
    x, y = make_data(shape=shape)
    ranks = list(range(min(shape[1:]) + 1))
    got = rank_spectrum(model, x, labels=y, reverse=reverse, batch_size=5, progress=False)
    agreement, accuracy = literal_algorithm_1(model, x, y, ranks, reverse)
    assert got.ranks == ranks, "default ranks must be 0..w"
    assert got.agreement == pytest.approx(agreement, abs=0), "agreement differs from oracle"
    assert got.accuracy == pytest.approx(accuracy, abs=0), "accuracy differs from oracle"
    assert got.n_images == 6 and got.reverse is reverse, "image count and reverse flag recorded"
    assert min(got.agreement) < 1.0, "the oracle comparison is vacuous: flat spectrum"


def test_subset_of_ranks_in_given_order():
    """A rank subset, unsorted and with repeats, gives the oracle's values in that order."""
    model = tiny_model()
    x, y = make_data()
    ranks = [8, 2, 0, 5, 2]
    got = rank_spectrum(model, x, ranks=ranks, labels=y, progress=False)
    agreement, accuracy = literal_algorithm_1(model, x, y, ranks, reverse=False)
    assert got.ranks == ranks, "ranks in the order given"
    assert got.agreement == agreement and got.accuracy == accuracy, (
        "values equal the oracle's, rank by rank"
    )


def test_full_rank_agreement_is_exactly_one():
    """At k = w (reverse: k = 0) the image is x itself: agreement exactly 1.0."""
    model = tiny_model().float()
    x = torch.rand(7, 3, 9, 6)
    forward = rank_spectrum(model, x, progress=False)
    backward = rank_spectrum(model, x, reverse=True, progress=False)
    assert forward.agreement[-1] == 1.0 and forward.ranks[-1] == 6, (
        "keeping all w ranks is the image itself"
    )
    assert backward.agreement[0] == 1.0 and backward.ranks[0] == 0, (
        "removing no rank is the image itself"
    )
    assert forward.accuracy is None and backward.accuracy is None, "no labels, no accuracy"


def test_full_rank_prediction_is_the_plain_prediction():
    """Accuracy at full rank equals the plain model's accuracy on the untouched images."""
    model = tiny_model().float()
    x = torch.rand(10, 3, 8, 8)
    y = torch.randint(5, (10,))
    with torch.no_grad():
        plain = (model(x).argmax(1) == y).double().mean().item()
    got = rank_spectrum(model, x, labels=y, ranks=[3, 8], batch_size=4, progress=False)
    assert got.accuracy[1] == plain, "full-rank accuracy is the plain accuracy"
    rev = rank_spectrum(model, x, labels=y, ranks=[0], reverse=True, progress=False)
    assert rev.accuracy[0] == plain, "reverse k=0 accuracy is the plain accuracy"


def test_tensor_and_dataloader_agree():
    """A tensor with labels, a DataLoader and a list of batches give the same spectrum."""
    model = tiny_model()
    x, y = make_data(n=7)
    from_tensor = rank_spectrum(model, x, labels=y, progress=False)
    from_loader = rank_spectrum(
        model, DataLoader(TensorDataset(x, y), batch_size=3), progress=False
    )
    from_list = rank_spectrum(model, [x[:4], x[4:]], progress=False)
    from_singles = rank_spectrum(model, [(x[:2],), (x[2:],)], progress=False)
    from_pair = rank_spectrum(model, (x, y), progress=False)
    assert from_tensor == from_loader, "a DataLoader must give the tensor's spectrum"
    assert from_pair == from_tensor, "an (images, labels) pair must give the tensor's spectrum"
    assert from_list.agreement == from_tensor.agreement and from_list.accuracy is None, (
        "a list of image batches counts the same, without accuracy"
    )
    assert from_singles == from_list, "(images,) batches equal bare image batches"


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100])
def test_batch_size_invariance(batch_size):
    """The spectrum does not depend on how many images go through one forward."""
    model = tiny_model()
    x, y = make_data(n=7)
    expected = rank_spectrum(model, x, labels=y, batch_size=2, progress=False)
    assert rank_spectrum(model, x, labels=y, batch_size=batch_size, progress=False) == expected, (
        "the spectrum must not depend on batch_size"
    )


def test_forwards_are_batched_and_never_redundant():
    """Each forward sees at most batch_size images; the full rank is not forwarded twice."""
    model = Counting(tiny_model())
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    x, _ = make_data(n=6, shape=(3, 8, 8))
    rank_spectrum(model, x, batch_size=4, progress=False)
    assert max(seen) <= 4, f"a forward saw {max(seen)} images, batch_size is 4"
    assert model.images == 6 * 9, "one reference forward plus ranks 0..7 per image"


class RecordingRankPath(spectrum_module.RankPath):
    """A RankPath that records how many rank images each chunk holds at once."""

    held: list = []

    def chunks(self, *args, **kwargs):
        for start, x_t in super().chunks(*args, **kwargs):
            RecordingRankPath.held.append(x_t.shape[0] * x_t.shape[1])
            yield start, x_t


def whole_rank_forwards(n: int, batch_size: int, n_ranks: int) -> list:
    """The forwards of one SVD batch of n images, written out by hand from the contract.

    The reference forward of the n images, then the rank images in chunks of as many
    whole ranks as fit in ``batch_size`` (at least one), each chunk cut into forwards of
    at most ``batch_size`` images.
    """

    def cut(m):
        return [min(batch_size, m - s) for s in range(0, m, batch_size)]

    per_chunk = max(1, batch_size // n)
    sizes = cut(n)
    for first in range(0, n_ranks, per_chunk):
        sizes += cut(n * min(per_chunk, n_ranks - first))
    return sizes


@pytest.mark.parametrize(
    "n, svd_batch, batch_size, expected",
    [
        # 3 images, 7 per forward: two whole ranks (6 images) per forward
        (3, None, 7, [3] + [6] * 4),
        # a 6-image loader batch and 4 per forward: one rank per chunk, cut 4 + 2
        (6, 6, 4, [4, 2] * 9),
        # 10 images cut into SVD batches of 4, 4 and 2 (tensor data)
        (10, None, 4, [4] * 9 + [4] * 9 + [2] + [4] * 4),
        # 2 images, 16 per forward: all 8 computed ranks in one forward
        (2, None, 16, [2, 16]),
    ],
    ids=["two-ranks-per-forward", "rank-wider-than-batch", "tensor-svd-batches", "one-chunk"],
)
def test_rank_chunks_fill_batch_size_and_never_exceed_it(
    monkeypatch, n, svd_batch, batch_size, expected
):
    """Forwards follow whole-rank chunking exactly; no chunk holds more than batch_size."""
    monkeypatch.setattr(spectrum_module, "RankPath", RecordingRankPath)
    RecordingRankPath.held = []
    seen = []
    model = tiny_model()
    model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    x, y = make_data(n=n, shape=(3, 8, 8))
    data = x if svd_batch is None else DataLoader(TensorDataset(x, y), batch_size=svd_batch)
    rank_spectrum(model, data, batch_size=batch_size, progress=False)
    step = svd_batch or batch_size
    n_svd = [min(step, n - s) for s in range(0, n, step)]
    assert expected == sum((whole_rank_forwards(m, batch_size, 8) for m in n_svd), []), (
        "the hand-written case disagrees with the chunking rule"
    )
    assert len(seen) == len(expected), (
        f"{len(seen)} forward passes, chunking implies {len(expected)}"
    )
    assert seen == expected, f"forward sizes {seen}, expected {expected}"
    assert max(seen) <= batch_size, f"a forward saw {max(seen)} > batch_size images"
    held = RecordingRankPath.held
    limit = max(batch_size, max(n_svd))  # one whole rank of a batch wider than batch_size
    assert max(held) <= limit, f"a rank chunk held {max(held)} images at once, limit {limit}"
    assert sum(held) == 8 * n, "every computed rank image is made exactly once"


def test_progress_bar(capsys):
    """progress=True draws a tqdm bar on stderr, progress=False prints nothing."""
    model = tiny_model()
    x, _ = make_data()
    rank_spectrum(model, x, progress=False)
    assert capsys.readouterr().err == "", "progress=False prints nothing"
    rank_spectrum(model, x, progress=True)
    assert "rank spectrum" in capsys.readouterr().err, "progress=True shows the bar"


def test_eval_mode_during_run_and_training_flags_restored():
    """The run is in eval mode; every module's own training flag is restored after."""
    model = nn.Sequential(tiny_model(), nn.Dropout(0.9))
    model.train()
    model[0][1].eval()  # a submodule deliberately in eval mode
    x, y = make_data()
    got = rank_spectrum(model, x, labels=y, progress=False)
    oracle = literal_algorithm_1(copy.deepcopy(model), x, y, got.ranks, reverse=False)
    assert (got.agreement, got.accuracy) == oracle, "dropout was active during the run"
    assert model.training and model[1].training and model[0].training, "training flags restored"
    assert not model[0][1].training, "a module that was in eval mode must stay there"


def test_inputs_and_model_untouched():
    """Data, labels and parameters are not modified, even by an in-place model."""

    class InPlace(nn.Module):
        def forward(self, x):
            return x.mul_(0.5)

    model = nn.Sequential(InPlace(), tiny_model())
    x, y = make_data()
    x0, y0 = x.clone(), y.clone()
    params = [p.clone() for p in model.parameters()]
    rank_spectrum(model, x, labels=y, progress=False)
    rank_spectrum(model, DataLoader(TensorDataset(x, y), batch_size=4), progress=False)
    assert torch.equal(x, x0) and torch.equal(y, y0), "data and labels unchanged"
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params)), (
        "parameters unchanged"
    )
    assert all(p.grad is None for p in model.parameters()), "no gradients left on the model"


def test_device(device):
    """Runs on every available device and gives the CPU result."""
    model = tiny_model()
    x, y = make_data()
    expected = rank_spectrum(model, x, labels=y, progress=False)
    got = rank_spectrum(model.to(device), x.to(device), labels=y.to(device), progress=False)
    assert got == expected, "the spectrum on the device differs from the CPU one"
    assert rank_spectrum(model, x, labels=y, device=device, progress=False) == expected, (
        "device= gives the CPU spectrum"
    )


# -- RankSpectrum ----------------------------------------------------------------------


@pytest.mark.parametrize("with_labels", [True, False])
def test_csv_and_dict_round_trip(tmp_path, with_labels):
    """to_csv/from_csv and to_dict/from_dict give back an equal spectrum, no temp file."""
    x, y = make_data()
    spectrum = rank_spectrum(
        tiny_model(), x, labels=y if with_labels else None, reverse=True, progress=False
    )
    path = tmp_path / "spectrum.csv"
    spectrum.to_csv(path)
    assert os.listdir(tmp_path) == ["spectrum.csv"], "temporary file left behind"
    assert RankSpectrum.from_csv(path) == spectrum, "CSV round trip from a Path"
    assert RankSpectrum.from_csv(str(path)) == spectrum, "CSV round trip from a str"
    d = spectrum.to_dict()
    assert json.loads(json.dumps(d)) == d, "to_dict must be JSON-ready"
    assert RankSpectrum.from_dict(d) == spectrum, "dict round trip"
    header = path.read_text().splitlines()[0]
    assert header == "rank,agreement,accuracy,n_images,reverse", "CSV header"


def test_from_csv_rejects_other_files(tmp_path):
    """A CSV that is not a spectrum, or a missing file, raises ValueError naming path."""
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a rank spectrum CSV"):
        RankSpectrum.from_csv(bad)
    bad.write_text("rank,agreement,accuracy,n_images,reverse\n0,1.5,,3,False\n")
    with pytest.raises(ValueError, match=r"agreement must hold fractions in \[0, 1\]"):
        RankSpectrum.from_csv(bad)
    with pytest.raises(ValueError, match="could not be read"):
        RankSpectrum.from_csv(tmp_path / "missing.csv")


def test_spectrum_validates_fields():
    """Mismatched lengths and bad n_images are rejected with the field's name."""
    with pytest.raises(ValueError, match="agreement must have one value per rank"):
        RankSpectrum([0, 1], [1.0], None, 3)
    with pytest.raises(ValueError, match="n_images must be >= 1"):
        RankSpectrum([0], [1.0], None, 0)
    with pytest.raises(ValueError, match="missing the keys"):
        RankSpectrum.from_dict({"ranks": [0]})


def test_plot_draws_the_spectrum_through_viz():
    """RankSpectrum.plot draws the metric per rank (via viz) on a standalone figure."""
    model = tiny_model()
    x, y = make_data()
    a = rank_spectrum(model, x, labels=y, progress=False)
    figures_before = plt.get_fignums()
    fig, ax = a.plot(label="natural")
    assert plt.get_fignums() == figures_before, "plot must not use pyplot's figure state"
    assert ax.figure is fig and len(ax.lines) == 1 and pixels(fig) > 5, "blank figure"
    assert list(ax.lines[0].get_xdata()) == a.ranks, "x is the rank"
    assert list(ax.lines[0].get_ydata()) == a.agreement, "y is the agreement"
    assert ax.get_ylabel() == "agreement with full-rank prediction", "y axis names the metric"
    assert ax.get_legend() is not None, "a label gives a legend"
    fig2, ax2 = a.plot(ax=ax, metric="accuracy")
    assert fig2 is fig and ax2 is ax and len(ax.lines) == 2, "draws on the given axes"
    assert list(ax.lines[1].get_ydata()) == a.accuracy, "y is the accuracy"


def test_plot_errors():
    """Unknown metrics and accuracy without labels raise, naming the metric."""
    s = RankSpectrum([0, 1], [0.5, 1.0], None, 2)
    with pytest.raises(ValueError, match="metric must be one of"):
        s.plot(metric="loss")
    with pytest.raises(ValueError, match="needs a spectrum computed with labels"):
        s.plot(metric="accuracy")


def test_accuracy_gap():
    """The gap is first minus second accuracy over the shared ranks, in first's order."""
    a = RankSpectrum([4, 0, 2], [1, 1, 1], [0.75, 0.5, 0.25], 4)
    b = RankSpectrum([0, 2, 3], [1, 1, 1], [0.25, 0.5, 1.0], 4)
    assert accuracy_gap(a, b) == ([0, 2], [0.25, -0.25]), "first minus second on shared ranks"
    with pytest.raises(ValueError, match="second has no accuracy"):
        accuracy_gap(a, RankSpectrum([0], [1.0], None, 1))
    with pytest.raises(ValueError, match="share no rank"):
        accuracy_gap(a, RankSpectrum([1], [1.0], [1.0], 1))


# -- resume ----------------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint_every", [1, 100])
def test_resume_after_interruption(tmp_path, checkpoint_every):
    """An interrupted run resumes from its checkpoint, skips counted batches, same result."""
    x, y = make_data(n=9)
    batches = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 9, 2)]
    expected = rank_spectrum(tiny_model(), batches, progress=False)
    path = tmp_path / "spectrum.ckpt"
    with pytest.raises(RuntimeError, match="interrupted"):
        rank_spectrum(
            Counting(tiny_model()),  # the same model (names included) as the resumed run's
            helper.Interrupted(batches, 2),
            progress=False,
            checkpoint=path,
            checkpoint_every=checkpoint_every,
        )
    assert os.listdir(tmp_path) == ["spectrum.ckpt"], "checkpoint missing or temp left"
    saved = torch.load(path, weights_only=True)
    assert saved["state"]["next_batch"] == 2 and saved["state"]["n_images"] == 4, (
        "the checkpoint records the batches counted"
    )
    model = Counting(tiny_model())
    resumed = rank_spectrum(model, batches, progress=False, checkpoint=path)
    assert resumed == expected, "the resumed run equals the uninterrupted one"
    assert model.images == 5 * 9, "batches 0 and 1 (4 images) must not be recomputed"
    assert not path.exists(), "the checkpoint is removed once the run completes"


def test_resume_tensor_data_interrupted_inside_the_model(tmp_path):
    """A tensor run stopped by KeyboardInterrupt mid-batch resumes to the same result."""
    x, y = make_data(n=9)
    expected = rank_spectrum(tiny_model(), x, labels=y, batch_size=2, progress=False)
    path = tmp_path / "spectrum.ckpt"
    with pytest.raises(KeyboardInterrupt):
        rank_spectrum(
            Counting(tiny_model(), fail_after=12),
            x,
            labels=y,
            batch_size=2,
            progress=False,
            checkpoint=path,
            checkpoint_every=1,
        )
    assert path.exists(), "the interrupt left a checkpoint"
    with pytest.raises(ValueError, match="batch_size=2, but this call has batch_size=3"):
        rank_spectrum(
            Counting(tiny_model()), x, labels=y, batch_size=3, progress=False, checkpoint=path
        )
    resumed = rank_spectrum(
        Counting(tiny_model()), x, labels=y, batch_size=2, progress=False, checkpoint=path
    )
    assert resumed == expected, "the resumed run equals the uninterrupted one"


def test_checkpoint_from_other_arguments_raises(tmp_path):
    """A checkpoint written with other ranks, reverse or labels, or not one, raises."""
    x, y = make_data(n=6)
    batches = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 6, 2)]
    path = tmp_path / "spectrum.ckpt"
    with pytest.raises(RuntimeError):
        rank_spectrum(tiny_model(), helper.Interrupted(batches, 2), progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="reverse=False, but this call has reverse=True"):
        rank_spectrum(tiny_model(), batches, reverse=True, progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="checkpoint .* was written with ranks="):
        rank_spectrum(tiny_model(), batches, ranks=[0, 8], progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="labels=True, but this call has labels=False"):
        rank_spectrum(tiny_model(), [b[0] for b in batches], progress=False, checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a rank_spectrum checkpoint"):
        rank_spectrum(tiny_model(), batches, progress=False, checkpoint=path)


# -- distributed -----------------------------------------------------------------------


def test_torchrun_two_processes_match_single_process(tmp_path):
    """Under torchrun (2 CPU processes, gloo) every process returns the 1-process result."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc_per_node", "2", str(HERE / "_torchrun_spectrum.py"), str(tmp_path)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    model = tiny_model()
    expected = {
        name: rank_spectrum(model, progress=False, **kwargs).to_dict()
        for name, kwargs in helper.problems(distributed=False).items()
    }
    x, y = tiny_data()
    expected["resumed"] = rank_spectrum(model, x, labels=y, progress=False).to_dict()
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.pop("checkpoint_written") and not got.pop("checkpoint_left"), (
            "each process wrote and then removed its checkpoint"
        )
        assert got == expected, f"process {rank} differs from the single-process result"


# -- bad input -------------------------------------------------------------------------


X, Y = make_data()
ERRORS = {
    "rank above w": (
        dict(ranks=[0, 9]),
        ValueError,
        OUT_OF_RANGE.format(name="ranks[1]", low=0, high=8, value=9),
    ),
    "negative rank": (dict(ranks=[-1]), ValueError, "ranks[0] must be >= 0, got -1"),
    "float rank": (dict(ranks=[2.5]), TypeError, NOT_AN_INT.format(name="ranks[0]", got=2.5)),
    "float rank tensor": (dict(ranks=torch.tensor([1.0])), TypeError, "ranks must hold integers"),
    "scalar ranks": (dict(ranks=3), TypeError, "ranks must be a sequence of integers in 0..8"),
    "empty ranks": (dict(ranks=[]), ValueError, "ranks must not be empty"),
    "integer images": (
        dict(data=(X * 255).to(torch.uint8)),
        TypeError,
        NOT_FLOAT.format(name="data", dtype=torch.uint8),
    ),
    "NaN": (
        dict(data=X.clone().index_fill_(0, torch.tensor([2]), float("nan"))),
        ValueError,
        NOT_FINITE.format(name="data"),
    ),
    "3-d images": (dict(data=X[0]), ValueError, "data must have 4 dims (N, C, H, W)"),
    "labels length": (dict(labels=Y[:4]), ValueError, "labels must have shape (6,)"),
    "float labels": (dict(labels=Y.float()), TypeError, "labels must be an integer tensor"),
    "empty tensor": (dict(data=X[:0]), ValueError, "data must not be empty"),
    "empty iterable": (dict(data=[]), ValueError, "data must not be empty"),
    "labels with loader": (dict(data=[(X, Y)], labels=Y), ValueError, "labels must be None"),
    "not data": (dict(data=3), TypeError, "data must be an image tensor"),
    "list of non tensors": (
        dict(data=[[1, 2]]),
        TypeError,
        NOT_A_TENSOR.format(name="images in data batch 0", got="int"),
    ),
    "batch not images": (
        dict(data=[X, "cat"]),
        TypeError,
        NOT_A_BATCH.format(index=1, expected="images or (images, labels)", got="str"),
    ),
    "pair with labels": (dict(data=(X, Y), labels=Y), ValueError, "labels must be None"),
    "pair labels length": (
        dict(data=(X, Y[:5]), labels=None),
        ValueError,
        WRONG_LENGTH.format(name="labels", n=6, shape=(5,)),
    ),
    "NaN in a batch": (
        dict(data=[(X[:3], Y[:3]), (X[3:] * float("nan"), Y[3:])]),
        ValueError,
        NOT_FINITE.format(name="images in data batch 1"),
    ),
    "batch labels length": (
        dict(data=[(X[:3], Y[:2])]),
        ValueError,
        "labels in data batch 0 must have shape (3,)",
    ),
    "other image shape": (
        dict(data=[X[:3], X[3:, :, :7]]),
        ValueError,
        "data batch 1 has images of shape",
    ),
    "batch_size 0": (dict(batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
    "reverse not bool": (dict(reverse="yes"), TypeError, "reverse must be a bool"),
    "model not callable": (dict(model="resnet"), TypeError, "model must be callable"),
    "model output": (
        dict(model=lambda x: x.sum((1, 2, 3))),
        ValueError,
        "model must return logits of shape",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS), ids=list(ERRORS))
def test_bad_input_raises_naming_the_argument(case):
    """Bad arguments raise TypeError/ValueError with the shared message templates."""
    overrides, error, message = ERRORS[case]
    kwargs = dict(model=tiny_model(), data=X, labels=Y, progress=False)
    if isinstance(overrides.get("data"), list):
        kwargs["labels"] = None
    kwargs.update(overrides)
    with pytest.raises(error) as info:
        rank_spectrum(**kwargs)
    assert message in str(info.value), "the message of the shared template"


# -- the shared counting loop ----------------------------------------------------------


class ScaleAxis:
    """A toy filter axis: images scaled by each value (1 is the image itself)."""

    name, key, reverse = "scale", "scales", False

    def values(self, asked, shape):
        return list(asked)

    def identity(self, value, shape):
        return value == 1

    def chunks(self, x, values, per_chunk):
        for start in range(0, len(values), per_chunk):
            scales = torch.tensor(values[start : start + per_chunk], dtype=x.dtype)
            yield start, scales[:, None, None, None, None] * x


def test_count_spectrum_runs_any_filter_axis():
    """The loop behind rank_spectrum counts along any axis, skipping identity values."""
    from captum_rig._filter_axis import count_spectrum

    model = Counting(tiny_model())
    x, y = make_data(n=5)
    counts = count_spectrum(
        model, x, ScaleAxis(), [0, 1, 2], y, 2, None, False, None, 10,
        what="scale_spectrum", format="test/1",
    )  # fmt: skip
    with torch.no_grad():
        full = model.model(x).argmax(1)
        blank = model.model(torch.zeros_like(x)).argmax(1)
        double = model.model(2 * x).argmax(1)
    expected = [(p == full).double().mean().item() for p in (blank, full, double)]
    assert counts.values == [0, 1, 2] and counts.agreement == expected
    assert counts.accuracy[1] == (full == y).double().mean().item()
    assert model.images == 5 + 10, "a reference forward and two scaled images per image"
