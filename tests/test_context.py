"""The shared context managers: files written whole or not at all, staging folders, eval
mode."""

import os
import stat

import pytest
from torch import nn

from captum_rig._context import (
    STAGING,
    atomic_path,
    check_writable,
    eval_mode,
    host_name,
    make_folder,
    pid_alive,
    publish,
    remove_empty,
    remove_stale_staging,
    staged_output,
)


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


# -- check_writable --------------------------------------------------------------------


def test_check_writable_file_in_existing_folder_leaves_no_trace(tmp_path):
    """A file path in a writable folder passes; the probe file is gone, no file made."""
    (tmp_path / "old.csv").write_text("keep")
    got = check_writable(str(tmp_path / "old.csv"), "out")
    assert got == tmp_path / "old.csv", "the path comes back as a Path"
    assert os.listdir(tmp_path) == ["old.csv"], "the probe file is removed"
    assert (tmp_path / "old.csv").read_text() == "keep", "an existing file is untouched"
    check_writable(tmp_path / "new.csv", "out")
    assert os.listdir(tmp_path) == ["old.csv"], "nothing is created for a new file path"


def test_check_writable_creates_missing_folders_only_when_asked(tmp_path):
    """A missing folder is an error naming the argument, or created with create=True."""
    with pytest.raises(ValueError, match=r"^out '.*run.csv' is not a writable file: the folder"):
        check_writable(tmp_path / "a" / "b" / "run.csv", "out")
    assert os.listdir(tmp_path) == [], "nothing is created without create=True"
    check_writable(tmp_path / "a" / "b" / "run.csv", "checkpoint", create=True)
    assert (tmp_path / "a" / "b").is_dir() and os.listdir(tmp_path / "a" / "b") == []
    with pytest.raises(ValueError, match="^cache_dir .* the folder .* does not exist"):
        check_writable(tmp_path / "c", "cache_dir", folder=True)
    check_writable(tmp_path / "c" / "d", "cache_dir", folder=True, create=True)
    assert (tmp_path / "c" / "d").is_dir(), "a folder path is created itself"


def test_check_writable_refuses_wrong_kinds(tmp_path):
    """A folder given as a file, a file given as a folder or parent, a bad type: errors."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(ValueError, match="out .* is a folder; a file path is expected"):
        check_writable(tmp_path, "out")
    with pytest.raises(
        ValueError, match="cache_dir .* not a writable folder: .*blocker' is a file"
    ):
        check_writable(blocker, "cache_dir", folder=True, create=True)
    with pytest.raises(ValueError, match="checkpoint .* not a writable file: .*blocker' is a file"):
        check_writable(blocker / "c.ckpt", "checkpoint", create=True)
    with pytest.raises(ValueError, match="checkpoint .* not a writable file: Not a directory"):
        check_writable(blocker / "sub" / "c.ckpt", "checkpoint", create=True)
    with pytest.raises(TypeError, match="checkpoint must be a str or PathLike, got int"):
        check_writable(3, "checkpoint")
    assert os.listdir(tmp_path) == ["blocker"], "nothing is left behind"


# -- staging folders -----------------------------------------------------------------------


def _dead_pid():
    """The id of a process that has exited and been reaped."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_staged_output_publishes_and_removes_the_staging_folder(tmp_path):
    """Files written to the staging folder are moved into out, readable; staging is gone."""
    out = tmp_path / "a" / "out"
    with staged_output(out) as staging:
        assert staging.parent == out and staging.name.startswith(STAGING + host_name())
        assert f"-{os.getpid()}-" in staging.name, "the staging folder names its process"
        for name in ("b.txt", "a.txt"):
            (staging / name).write_text(name)
        written = publish([staging / "b.txt", staging / "a.txt"], out)
    assert written == [out / "b.txt", out / "a.txt"], "the new paths, in the order given"
    assert sorted(os.listdir(out)) == ["a.txt", "b.txt"], "only the files, no staging folder"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in written), "readable by all"


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_staged_output_failure_leaves_out_as_it_was(tmp_path, exception):
    """An error (or Ctrl-C) removes the staging folder and the folders the call created."""
    with pytest.raises(exception), staged_output(tmp_path / "new" / "out") as staging:
        (staging / "half.png").write_text("half")
        raise exception
    assert os.listdir(tmp_path) == [], "created folders are removed while empty"
    (tmp_path / "given").mkdir()
    (tmp_path / "given" / "notes.txt").write_text("mine")
    with pytest.raises(exception), staged_output(tmp_path / "given") as staging:
        raise exception
    assert os.listdir(tmp_path / "given") == ["notes.txt"], "a given folder stays as it was"


@pytest.mark.skipif(os.name != "posix", reason="process liveness is checked on POSIX only")
def test_stale_staging_of_dead_processes_on_this_host_is_removed(tmp_path):
    """Only this host's staging folders whose process is gone are removed."""
    host = host_name()
    dead = f"{STAGING}{host}-{_dead_pid()}-ab_12cd"
    keep = [
        f"{STAGING}{host}-{os.getpid()}-x1y2z3",  # alive: this process
        f"{STAGING}another.host-{_dead_pid()}-x1y2z3",  # cannot be checked here
        f"{STAGING}k3j2h1",  # no process id in the name
    ]
    for name in [dead, *keep]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.md").write_text("partial")
    not_a_folder = f"{STAGING}{host}-{_dead_pid()}-file"
    (tmp_path / not_a_folder).write_text("a file, not a folder")
    remove_stale_staging(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([*keep, not_a_folder]), "only the dead one goes"


def test_pid_alive_and_host_name():
    """This process is alive, a reaped one is not; the host name is safe in a file name."""
    assert pid_alive(os.getpid()) and not pid_alive(_dead_pid())
    assert host_name() and all(c.isalnum() or c in "._" for c in host_name())


def test_make_folder_and_remove_empty(tmp_path):
    """make_folder returns what it created, deepest first; remove_empty stops at content."""
    created = make_folder(tmp_path / "a" / "b" / "c")
    assert created == [tmp_path / "a" / "b" / "c", tmp_path / "a" / "b", tmp_path / "a"]
    assert make_folder(tmp_path / "a") == [], "nothing created for an existing folder"
    (tmp_path / "a" / "keep.txt").write_text("x")
    remove_empty(created)
    assert os.listdir(tmp_path / "a") == ["keep.txt"], "stops at the first folder not empty"
