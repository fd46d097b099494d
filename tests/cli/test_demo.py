"""``captum-rig demo``: the command calls the library's demo and prints what it wrote."""

import sys
import types
from pathlib import Path

from ._helpers import (
    assert_user_error,
    run,
)


def test_demo_calls_run_demo(capsys, work, monkeypatch):
    """demo --out DIR calls run_demo(DIR, log=print), prints its stages, files and report."""
    calls = []

    def run_demo(out_dir, *, log=None, **kwargs):
        calls.append((Path(out_dir), kwargs))
        log("[1/2] setup: a fake stage")
        log("[2/2] report: report.md")
        return [Path(out_dir) / "figure.png", Path(out_dir) / "report.md"]

    fake = types.ModuleType("captum_rig.demo")
    fake.run_demo = run_demo
    monkeypatch.setitem(sys.modules, "captum_rig.demo", fake)
    code, out, err = run(capsys, "demo", "--out", "d")
    assert code == 0, err
    assert calls == [(Path("d"), {})], calls
    lines = out.splitlines()
    assert lines[:2] == ["[1/2] setup: a fake stage", "[2/2] report: report.md"], lines
    assert f"  {Path('d') / 'figure.png'}" in lines, "each written file is listed"
    assert lines[-1] == f"open {Path('d') / 'report.md'} to read the report", lines[-1]
    code, out, err = run(capsys, "demo", "--out", "d", "--methods", "saliency,rig")
    assert code == 0, err
    assert calls[-1] == (Path("d"), {"methods": ["saliency", "rig"]}), calls
    code, out, err = run(capsys, "demo", "--out", "d", "--methods", "gradcam")
    assert_user_error(code, err, "unknown attribution method 'gradcam'")
