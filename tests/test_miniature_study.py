"""examples/miniature_study.py never replaces the documentation's tracked files by accident."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _study():
    path = ROOT / "examples" / "miniature_study.py"
    spec = importlib.util.spec_from_file_location("_miniature_study_guard", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_img_is_refused_without_update_docs(capsys):
    study = _study()
    with pytest.raises(SystemExit) as exit_info:
        study.parse_args(["--out", str(ROOT / "docs" / "img")])
    assert exit_info.value.code == 2
    assert "tracked by git" in capsys.readouterr().err
    args = study.parse_args(["--out", str(ROOT / "docs" / "img"), "--update-docs"])
    assert args.update_docs


def test_default_output_is_ignored_by_git(tmp_path):
    study = _study()
    assert study.parse_args([]).out == "runs/miniature_study"
    assert "/runs/" in (ROOT / ".gitignore").read_text().splitlines()
    assert study.parse_args(["--out", str(tmp_path)]).out == str(tmp_path)
