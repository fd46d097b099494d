"""Tests for captum_rig._checkpoint: the tensor hasher and the state-file validator."""

import pytest
import torch
from torch import nn

from captum_rig._checkpoint import (
    BATCH_PARTS,
    Checkpoint,
    Progress,
    StateError,
    TensorHash,
    batch_digest,
    differences,
    model_digest,
    read_state,
    write_state,
)


def _hash(x: torch.Tensor, **kwargs) -> str:
    return TensorHash().tensor(x, **kwargs).hexdigest()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int64])
def test_hash_is_stable_across_calls_and_copies(dtype):
    """The same values give the same digest, call after call, copy or view."""
    x = torch.arange(24).view(2, 3, 4).to(dtype)
    first = _hash(x, described=True)
    assert first == _hash(x, described=True), "a second call agrees"
    assert first == _hash(x.clone(), described=True), "a copy agrees"
    assert first == _hash(x.transpose(0, 1).contiguous().transpose(0, 1), described=True), (
        "memory layout is not part of the digest"
    )


@pytest.mark.parametrize("index", [0, 7, 23])
def test_hash_differs_on_one_flipped_element(index):
    """Changing one element anywhere changes the digest."""
    x = torch.rand(2, 3, 4)
    y = x.clone()
    y.view(-1)[index] += 1
    assert _hash(x) != _hash(y), f"element {index} changed"


def test_described_hash_sees_dtype_and_shape():
    """With described=True equal bytes of another shape hash differently."""
    x = torch.arange(6.0)
    assert _hash(x) == _hash(x.view(2, 3)), "bytes alone: shape unseen"
    assert _hash(x, described=True) != _hash(x.view(2, 3), described=True), "shape seen"


def test_hash_of_a_cast_equals_the_hash_of_the_cast_tensor():
    """dtype= casts before hashing (the rank cache hashes float32 pixels)."""
    x = torch.rand(3, 4, dtype=torch.float64)
    assert _hash(x, dtype=torch.float32) == _hash(x.float()), "cast first"
    h = TensorHash().integer(-3).digest()
    assert h == TensorHash().tensor(torch.tensor([-3])).digest(), "integer() is int64 bytes"


def test_batch_digest_parts_and_model_digest():
    """A batch digest is images then labels; a model digest covers buffers."""
    x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 3])
    d, e = batch_digest(x, y), batch_digest(x, y.flip(0))
    (_, images), (_, labels) = BATCH_PARTS
    assert d[images] == e[images] and d[labels] != e[labels], "only the labels differ"
    a, b = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    assert model_digest(a) == model_digest(b), "same weights, same digest"
    b.running_mean += 1
    assert model_digest(a) != model_digest(b), "a buffer is part of the digest"


def test_differences_name_the_key_that_differs():
    """The validator names each differing key, and only those."""
    saved = {"ranks": [0, 8], "reverse": False, "batch_size": 4, "model": "abc"}
    now = {"ranks": [0, 8], "reverse": True, "batch_size": 4, "model": "abc"}
    assert differences(saved, now) == [
        "it was written with reverse=False, but this call has reverse=True"
    ], "one key differs"
    assert differences(saved, dict(saved)) == [], "no difference"
    now = {**saved, "model": "def", "n_images": 30}
    assert differences({**saved, "n_images": 40}, now) == [
        "the model's weights differ from the checkpoint's",
        "the data has 30 images, the checkpoint 40",
    ], "run identity worded as such"
    custom = differences({"k": 1}, {"k": 2}, lambda key, a, b: f"{key}: {a} -> {b}")
    assert custom == ["k: 1 -> 2"], "a describe function words it"


def test_state_file_round_trip_and_refusals(tmp_path):
    """write_state/read_state round-trip; another format or a broken file is a StateError."""
    path = tmp_path / "s.pt"
    assert read_state(path, "job/1") is None, "no file, no state"
    write_state(path, "job/1", {"x": torch.arange(3)})
    assert torch.equal(read_state(path, "job/1")["x"], torch.arange(3)), "round trip"
    with pytest.raises(StateError, match="it has format 'job/1', not 'job/2'"):
        read_state(path, "job/2")
    path.write_bytes(b"junk")
    with pytest.raises(StateError, match="could not be read"):
        read_state(path, "job/1")


def test_checkpoint_refuses_other_settings_naming_them(tmp_path):
    """A checkpoint opened with other identity or settings names the differing key."""
    path = tmp_path / "run.ckpt"
    zeros = {"hits": torch.zeros(3, dtype=torch.int64)}
    record = Checkpoint.open(path, {"batch_size": 4}, format="job/1", what="job")
    progress = record.start({"radii": [1, 2, 3]}, zeros)
    record.save(progress.add(0, 4, {"hits": torch.ones(3, dtype=torch.int64)}, b"\0" * 64))
    with pytest.raises(ValueError, match="batch_size=4, but this call has batch_size=2"):
        Checkpoint.open(path, {"batch_size": 2}, format="job/1", what="job")
    again = Checkpoint.open(path, {"batch_size": 4}, format="job/1", what="job")
    with pytest.raises(ValueError, match=r"radii=\[1, 2, 3\], but this call has radii=\[1, 2\]"):
        again.start({"radii": [1, 2]}, zeros)
    resumed = again.start({"radii": [1, 2, 3]}, zeros)
    assert isinstance(resumed, Progress) and resumed.counts["hits"].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="is not a frequency_spectrum checkpoint"):
        Checkpoint.open(
            path, {"batch_size": 4}, format="frequency_spectrum/1", what="frequency_spectrum"
        )
