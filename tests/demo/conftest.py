"""Fixtures of the demo tests: one small demo run, shared by the tests that read it."""

import importlib

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from captum_rig.demo import run_demo

from ._helpers import SMALL, counting_rank_contributions


@pytest.fixture(scope="session")
def demo_out(tmp_path_factory):
    """One small demo run with every method, shared by the tests that only read its output.

    Returns (out folder, written paths, logged lines with the staged files at each, stage
    timings, the demo's rank_contributions calls).
    """
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("demo")
    lines, timings, calls = [], {}, []

    def log(line):
        # what the staging folder holds when a stage is announced
        made = sorted(p.name for p in out.glob(".captum-rig-demo-*/*"))
        lines.append((line, made))

    module = importlib.import_module("captum_rig.attr.rank_contributions")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "rank_contributions", counting_rank_contributions(calls))
        paths = run_demo(out, log=log, timings=timings, **SMALL)
    return out, paths, lines, timings, calls
