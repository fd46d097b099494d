#!/usr/bin/env python
"""Wall time of ``captum-rig demo`` per stage, and the share of the 60 s budget it uses.

Usage::

    python benchmarks/bench_demo.py [--threads 2] [--repeat 1] [--quick] [--log]

Prints seconds per stage (setup, attributions, rank galleries, rank spectra, scores,
report) and the total, then ``total / 60 s``. ``--quick`` runs the small settings the
tests use; ``--log`` prints each stage as it starts, as ``captum-rig demo`` does. Timings
only; nothing is asserted.
"""

import argparse
import tempfile
import time

import torch

from captum_rig.demo import run_demo

BUDGET_S = 60.0
QUICK = dict(n_images=2, n_eval=6, n_spectrum=24, n_steps=4, score_steps=4, dpi=40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs (default 1)")
    parser.add_argument("--quick", action="store_true", help="the tests' small settings")
    parser.add_argument("--log", action="store_true", help="print each stage as it starts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else {}
    for run in range(args.repeat):
        timings: dict = {}
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            run_demo(out, timings=timings, log=print if args.log else None, **settings)
            total = time.perf_counter() - t0
        print(f"run {run + 1} ({args.threads} threads{', quick' if args.quick else ''}):")
        for stage, seconds in timings.items():
            print(f"  {stage:<20s} {seconds:6.2f} s  ({seconds / total:5.1%})")
        print(
            f"  {'total':<20s} {total:6.2f} s  = {total / BUDGET_S:.2f} × the "
            f"{BUDGET_S:.0f} s budget"
        )


if __name__ == "__main__":
    main()
