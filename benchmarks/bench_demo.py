#!/usr/bin/env python
"""Wall time of ``captum-rig demo`` per stage, and against the 12 s target.

Usage::

    python benchmarks/bench_demo.py [--threads 2] [--repeat 1] [--quick] [--log] [--compare]

Prints seconds per stage (setup, attributions, rank galleries, rank spectra, rank
contributions, rank or frequency, scores, report) and the total of the demo in this
process (the shell's ``captum-rig demo`` adds the start-up, about 2 s of imports), then
``total / 12 s``, and the same total without the rank-or-frequency stage (measured in the
same run: on a shared machine, separate runs differ more than the stage costs).
``--compare`` also runs the demo with its models as loaded (BatchNorm layers kept,
channels-first) instead of the inference copies the demo runs, alternating the two, and
prints each stage's ratio. ``--quick`` runs the small settings the tests use; ``--log``
prints each stage as it starts, as ``captum-rig demo`` does. Timings only; nothing is
asserted.
"""

import argparse
import contextlib
import tempfile
import time
from typing import Dict, Iterator

import torch

import captum_rig.demo.stages as stages
from captum_rig.demo import run_demo

TARGET_S = 12.0
FOURIER_STAGE = "rank or frequency"
QUICK = dict(n_images=2, n_eval=6, n_spectrum=24, n_steps=4, score_steps=4, dpi=40)


@contextlib.contextmanager
def models_as_loaded() -> Iterator[None]:
    """The demo with its models as loaded: no BatchNorm folding, no channels-last."""
    fast = stages.inference_model
    stages.inference_model = lambda model: model
    try:
        yield
    finally:
        stages.inference_model = fast


def timed_run(args: argparse.Namespace, as_loaded: bool = False) -> Dict[str, float]:
    """One demo run into a temporary folder: seconds per stage, and ``total``."""
    settings = QUICK if args.quick else {}
    timings: Dict[str, float] = {}
    context = models_as_loaded() if as_loaded else contextlib.nullcontext()
    with context, tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run_demo(out, timings=timings, log=print if args.log else None, **settings)
        timings["total"] = time.perf_counter() - t0
    return timings


def report(run: int, args: argparse.Namespace, timings: Dict[str, float]) -> None:
    """Seconds per stage and the total against the target."""
    total = timings["total"]
    print(f"run {run} ({args.threads} threads{', quick' if args.quick else ''}):")
    for stage, seconds in timings.items():
        if stage != "total":
            print(f"  {stage:<20s} {seconds:6.2f} s  ({seconds / total:5.1%})")
    share = total / TARGET_S
    print(f"  {'total':<20s} {total:6.2f} s  = {share:.2f} × the {TARGET_S:.0f} s target")
    if FOURIER_STAGE in timings:
        without = total - timings[FOURIER_STAGE]
        print(
            f"  {'without the stage':<20s} {without:6.2f} s  "
            f"({FOURIER_STAGE}: {timings[FOURIER_STAGE] / without:+.1%})"
        )


def compare(fast: Dict[str, float], loaded: Dict[str, float]) -> None:
    """Each stage with the inference models and with the models as loaded, and the ratio."""
    print(f"  {'stage':<20s} {'inference':>9s} {'as loaded':>9s} {'ratio':>6s}")
    for stage in fast:
        ratio = fast[stage] / loaded[stage] if loaded[stage] > 0 else float("nan")
        print(f"  {stage:<20s} {fast[stage]:8.2f}s {loaded[stage]:8.2f}s {ratio:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs (default 1)")
    parser.add_argument("--quick", action="store_true", help="the tests' small settings")
    parser.add_argument("--log", action="store_true", help="print each stage as it starts")
    parser.add_argument("--compare", action="store_true", help="also run with the models as loaded")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for run in range(1, args.repeat + 1):
        fast = timed_run(args)
        report(run, args, fast)
        if args.compare:
            compare(fast, timed_run(args, as_loaded=True))


if __name__ == "__main__":
    main()
