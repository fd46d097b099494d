"""attribute_dataset: the file's layout and order, maps equal to direct calls, resume,
refusals naming what differs, and torchrun with 2 processes (one of them dying)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

from captum_rig.attr.registry import get_method
from captum_rig.data import image_dataset
from captum_rig.runs import (
    FILE_FORMAT,
    AttributionFile,
    attribute_dataset,
    parts_folder,
    read_attributions,
)

HERE = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "_torchrun_attribute", HERE / "_torchrun_attribute.py"
)
helper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helper)
SETTINGS = helper.SETTINGS
METHODS = SETTINGS["methods"].split(",")


def content(path):
    """Every dataset of the file as numpy arrays, and its root attributes."""
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in f}
        return data, {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()}


def assert_same_content(a, b):
    (da, aa), (db, ab) = content(a), content(b)
    assert list(da) == list(db) and aa == ab
    for k in da:
        np.testing.assert_array_equal(da[k], db[k], err_msg=k)


def batches():
    return helper.tiny_data()


# -- the file --------------------------------------------------------------------------


def test_layout_dtypes_chunks_and_attributes(tmp_path):
    path = attribute_dataset(helper.tiny_model(), batches(), tmp_path / "maps.h5", **SETTINGS)
    with h5py.File(path, "r") as f:
        assert list(f) == [*METHODS, "targets", "predictions", "labels", "files"]
        for m in METHODS:
            d = f[m]
            assert d.shape == (9, 3, 8, 8) and d.dtype == np.float32
            assert d.chunks == (1, 3, 8, 8) and d.compression == "gzip"
        for name in ("targets", "predictions", "labels"):
            assert f[name].shape == (9,) and f[name].dtype == np.int64
        assert [s.decode() for s in f["files"][:]] == [str(i) for i in range(9)]
        attrs = dict(f.attrs)
    assert attrs["format"] == FILE_FORMAT and attrs["model"] == "Counted"
    assert list(attrs["methods"]) == METHODS and attrs["n_steps"] == 3
    assert attrs["target"] == "auto" and attrs["version"] == "0.1.0"
    assert len(attrs["model_digest"]) == 64
    assert not parts_folder(path).exists(), "the parts are removed once merged"


def test_stored_maps_equal_direct_attribute_calls(tmp_path):
    """Each stored map is the method's attribute on that batch, and on that image alone."""
    model = helper.tiny_model()
    path = attribute_dataset(model, batches(), tmp_path / "maps.h5", **SETTINGS)
    with read_attributions(path) as maps:
        start = 0
        for x, y in batches():
            n = len(x)
            predicted = model(x).argmax(1)
            assert maps.predictions[start : start + n].tolist() == predicted.tolist()
            assert maps.targets[start : start + n].tolist() == predicted.tolist()
            assert maps.labels[start : start + n].tolist() == y.tolist()
            for m in METHODS:
                direct = get_method(m).attribute(model, x, target=predicted, n_steps=3)
                stored = maps.maps(m, start, start + n)
                assert torch.equal(stored, direct.float()), m
                alone = get_method(m).attribute(model, x[:1], target=predicted[:1], n_steps=3)
                torch.testing.assert_close(stored[:1], alone.float(), rtol=1e-5, atol=1e-6)
            start += n


def test_image_folder_order_files_and_labels(tmp_path):
    """ImageFolder order (sorted classes, sorted files), paths in `files`, a --limit Subset."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for cls, names in {"b_dog": ["z.png", "a.png"], "a_cat": ["m.png", "c.png", "b.png"]}.items():
        (root / cls).mkdir(parents=True)
        for name in names:
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / cls / name)
    dataset, _ = image_dataset(root)
    loader = DataLoader(Subset(dataset, range(4)), batch_size=3)
    path = attribute_dataset(
        helper.tiny_model().float(), loader, tmp_path / "m.h5", "saliency", target="label",
        progress=False,
    )  # fmt: skip
    with AttributionFile(path) as maps:
        names = [os.path.relpath(f, root) for f in maps.files]
        assert names == ["a_cat/b.png", "a_cat/c.png", "a_cat/m.png", "b_dog/a.png"]
        assert maps.labels.tolist() == [0, 0, 0, 1] and maps.targets.tolist() == [0, 0, 0, 1]


def test_tensor_data_fixed_target_and_no_labels(tmp_path):
    x = torch.cat([b[0] for b in batches()])
    path = attribute_dataset(
        helper.tiny_model(), x, tmp_path / "m.h5", ["saliency"], target=2, batch_size=4,
        files=[f"img{i}" for i in range(9)], progress=False,
    )  # fmt: skip
    with read_attributions(path) as maps:
        assert maps.targets.tolist() == [2] * 9 and maps.labels.tolist() == [-1] * 9
        assert maps.files[-1] == "img8"
        got = list(maps.batches(4))
        assert [b.start for b in got] == [0, 4, 8] and got[2].maps["saliency"].shape[0] == 1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(methods="nope"), ValueError, "unknown attribution method 'nope'"),
        (dict(target="best"), ValueError, "target must be 'auto', 'label'"),
        (dict(n_steps=0), ValueError, "n_steps"),
        (
            dict(data=[torch.rand(2, 3, 8, 8)], target="label"),
            TypeError,
            "must be an .images, labels. pair",
        ),
        (dict(path="missing/maps.h5"), ValueError, "does not exist"),
        (dict(files=["a"]), ValueError, "files must name each of the 9 images"),
    ],
)
def test_bad_arguments_raise_naming_them(tmp_path, monkeypatch, kwargs, error, match):
    monkeypatch.chdir(tmp_path)
    args = dict(data=batches(), path=tmp_path / "m.h5", **SETTINGS)
    args.update(kwargs)
    model = helper.tiny_model()
    with pytest.raises(error, match=match):
        attribute_dataset(model, **args)
    assert not (tmp_path / "m.h5").exists()


def test_distributed_sampler_is_refused(tmp_path):
    x, y = torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)
    sampler = DistributedSampler(TensorDataset(x, y), num_replicas=2, rank=0, shuffle=False)
    loader = DataLoader(TensorDataset(x, y), batch_size=2, sampler=sampler)
    with pytest.raises(ValueError, match="DistributedSampler"):
        attribute_dataset(helper.tiny_model().float(), loader, tmp_path / "m.h5", progress=False)


def test_reader_refuses_other_files(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="could not be read as an HDF5 file"):
        read_attributions(tmp_path / "x.h5")
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f.attrs["format"] = "other"
    with pytest.raises(ValueError, match="not an attribution file"):
        read_attributions(tmp_path / "y.h5")


# -- resume ----------------------------------------------------------------------------


def test_interrupted_run_resumes_to_the_uninterrupted_file(tmp_path):
    expected = attribute_dataset(helper.tiny_model(), batches(), tmp_path / "ref.h5", **SETTINGS)
    path = tmp_path / "maps.h5"
    with pytest.raises(RuntimeError, match="fails at batch 3"):
        attribute_dataset(helper.tiny_model(), helper.FailAt(batches(), 3), path, **SETTINGS)
    assert not path.exists(), "no half-written file at the final path"
    assert sorted(p.name for p in parts_folder(path).glob("batch-*")) == [
        "batch-0000000.pt", "batch-0000001.pt", "batch-0000002.pt",
    ]  # fmt: skip
    model = helper.tiny_model()
    attribute_dataset(model, batches(), path, resume=True, **SETTINGS)
    assert model.predicted == 3, "only batches 3 and 4 (2 + 1 images) were computed"
    assert_same_content(path, expected)
    assert not parts_folder(path).exists()


def test_without_resume_partial_results_are_discarded(tmp_path):
    path = tmp_path / "maps.h5"
    with pytest.raises(RuntimeError):
        attribute_dataset(helper.tiny_model(), helper.FailAt(batches(), 2), path, **SETTINGS)
    model = helper.tiny_model()
    attribute_dataset(model, batches(), path, **SETTINGS)
    assert model.predicted == 9, "every batch computed again"


def _other_model():
    model = helper.tiny_model()
    with torch.no_grad():
        model.net[0].bias += 1
    return model


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(methods="rig,saliency"), "methods=['rig', 'saliency', 'ig'], but this call has"),
        (dict(n_steps=4), "n_steps=3, but this call has n_steps=4"),
        (dict(target="label"), "target='auto', but this call has target='label'"),
        (dict(model=_other_model), "the model's weights differ"),
        (dict(model_spec="demo:natural"), "model_spec=None, but this call has"),
        (dict(data="other"), "batch 0's images differ from the checkpoint's"),
        (dict(data="fewer"), "the data has 4 batches, the checkpoint 5"),
    ],
)
def test_resume_with_other_settings_is_refused_naming_the_difference(tmp_path, change, match):
    path = tmp_path / "maps.h5"
    with pytest.raises(RuntimeError):
        attribute_dataset(helper.tiny_model(), helper.FailAt(batches(), 3), path, **SETTINGS)
    state = parts_folder(path) / "state"
    saved = state.read_bytes()
    args = dict(SETTINGS)
    model = change.pop("model", helper.tiny_model)()
    data = batches()
    if change.get("data") == "other":
        data[0] = (data[0][0] * 0.5, data[0][1])
    elif change.get("data") == "fewer":
        data = data[:4]
    change.pop("data", None)
    args.update(change)
    with pytest.raises(ValueError, match=match.replace("[", r"\[").replace("(", r"\(")) as e:
        attribute_dataset(model, data, path, resume=True, **args)
    assert "\n" not in str(e.value), "one line"
    assert state.read_bytes() == saved, "the partial results are left as they were"
    assert not path.exists()


# -- torchrun --------------------------------------------------------------------------


def _torchrun(out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(HERE / "_torchrun_attribute.py"), str(out), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_torchrun_two_processes_write_the_one_process_file(tmp_path):
    """2 gloo processes: the 1-process file. Then a process dies mid-run; the resumed run
    computes only what was lost and ends with the same file."""
    expected = attribute_dataset(helper.tiny_model(), batches(), tmp_path / "one.h5", **SETTINGS)
    run = _torchrun(tmp_path / "two.h5")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_content(tmp_path / "two.h5", expected)
    assert (tmp_path / "two.h5").read_bytes() == expected.read_bytes(), "the same bytes"
    for rank, share in ((0, 5), (1, 4)):  # batches 0, 2, 4 and 1, 3
        got = (tmp_path / f"two.h5.{rank}.json").read_text()
        assert f'"predicted": {share}' in got and '"exists": true' in got

    dies = tmp_path / "dies.h5"
    failed = _torchrun(dies, "1")  # process 1 raises at batch 3, after computing batch 1
    assert failed.returncode != 0 and not dies.exists()
    resumed = _torchrun(dies)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_content(dies, expected)
    assert '"predicted": 2' in (tmp_path / "dies.h5.1.json").read_text(), (
        "process 1 computed batch 3 only: batch 1 was saved before it died"
    )
    assert not parts_folder(dies).exists()
