"""The shared context managers: files written whole or not at all, eval mode."""

import os
import stat

import pytest
from torch import nn

from captum_rig._context import atomic_path, eval_mode


def test_atomic_path_writes_whole_file_with_umask_permissions(tmp_path):
    """On success the file appears with a plain open()'s permissions, no temp left."""
    target = tmp_path / "out.csv"
    with atomic_path(target) as tmp:
        assert tmp.endswith(".csv"), "the extension is kept for format-sniffing writers"
        with open(tmp, "w") as f:
            f.write("a,b\n")
    assert target.read_text() == "a,b\n", "the file holds what was written"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask, (
        "permissions as a plain open() under the umask"
    )
    assert os.listdir(tmp_path) == ["out.csv"], "no temporary file is left"


def test_atomic_path_leaves_old_file_on_failure(tmp_path):
    """An error mid-write leaves the previous file untouched and no temporary file."""
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"], (
        "old file untouched and no temporary file left"
    )


def test_eval_mode_restores_each_submodule_flag():
    """Every submodule's own training flag comes back; plain functions are ignored."""
    model = nn.Sequential(nn.Dropout(), nn.BatchNorm1d(3))
    model[1].eval()
    with eval_mode(model, len):
        assert not any(m.training for m in model.modules()), "every module is in eval mode inside"
    assert model.training and model[0].training and not model[1].training, (
        "each module's own training flag is restored"
    )
