"""Fixtures of the ``captum-rig`` tests: a working folder with a model file, images and
checkpoints; a labelled image folder; a model that counts the images it sees."""

import pytest
import torch

from captum_rig.loading import load_model

from ._helpers import COUNTING, NET, write_png


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with a model file, two RGB PNGs, a greyscale PNG and a checkpoint."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(NET)
    write_png(tmp_path / "a.png", seed=0)
    write_png(tmp_path / "b.png", seed=1)
    write_png(tmp_path / "grey.png", mode="L")
    spec = f"{tmp_path / 'net.py'}:make"
    torch.save(load_model(spec).state_dict(), tmp_path / "net.pt")
    torch.save(load_model(spec, num_classes=9).state_dict(), tmp_path / "nine.pt")
    return tmp_path


@pytest.fixture
def labelled_folder(work):
    """An image folder with two class subfolders of 8×8 PNGs."""
    for c, name in enumerate(("cat", "dog")):
        (work / "data" / name).mkdir(parents=True)
        for i in range(3):
            write_png(work / "data" / name / f"{i}.png", 8, 8, seed=10 * c + i)
    return work / "data"


@pytest.fixture
def counting(work, monkeypatch):
    """The model spec of a CNN that logs its batch sizes, and a function reading the total."""
    (work / "counting.py").write_text(COUNTING)
    log = work / "samples.txt"
    monkeypatch.setenv("SAMPLES", str(log))

    def samples():
        if not log.exists():
            return 0
        total = sum(int(n) for n in log.read_text().split())
        log.unlink()
        return total

    return "counting.py:Counting", samples
