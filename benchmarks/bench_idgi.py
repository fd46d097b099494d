"""IDGI against the same path without it: the time ratio at equal gradient evaluations.

Prints, from one run on one machine, the wall time of ``idgi=True`` over the same call
without it (same model, input, target, rule, ``n_steps`` and ``internal_batch_size``),
for RIG with ``method="riemann_left"`` (the paper's points: the outputs come with the
gradients, one extra forward pass for ``F(x)``; target <= 1.05), RIG with
``"gausslegendre"`` (whose cell edges are not nodes: a forward pass per edge, so about
4/3 is expected) and Blur IG (left Riemann in σ, one extra forward pass). Calls are
interleaved and the median of ``--repeats`` is taken, so a busy machine slows both
sides alike; the ratio of this process's CPU times is printed too (less sensitive to
other processes on a shared machine).

Models: the demo's small CNN at 32 px and torchvision's ResNet-18 with random weights at
``--size`` pixels.

Usage:
    python benchmarks/bench_idgi.py                        # 112 px, 32 evaluations
    python benchmarks/bench_idgi.py --size 64 --repeats 3  # quick
    python benchmarks/bench_idgi.py --threads 1            # on a shared machine
"""

import argparse
import functools
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch
import torchvision

from captum_rig import RIG, BlurIG
from captum_rig.models import build_demo_model

# (label, attribution class, keyword arguments besides idgi)
CASES = (
    ("RIG riemann_left", RIG, {"method": "riemann_left"}),
    ("RIG gausslegendre", RIG, {"method": "gausslegendre"}),
    ("BlurIG", BlurIG, {"max_sigma": 10.0}),
)


def build(name: str, size: int, device: str) -> Tuple[torch.nn.Module, torch.Tensor]:
    """(model, input) with fixed random weights."""
    torch.manual_seed(0)
    if name == "small_cnn":
        return build_demo_model().eval().to(device), torch.rand(1, 3, 32, 32, device=device)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    return model, torch.rand(1, 3, size, size, device=device)


def timed(call: Callable[[], object], device: str) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(model, x, args) -> Dict[str, List[Tuple[float, float]]]:
    """{case: [(wall, CPU) medians without IDGI, with IDGI]}, calls interleaved."""
    times: Dict[str, List[List[Tuple[float, float]]]] = {label: [[], []] for label, _, _ in CASES}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for label, cls, kwargs in CASES:
            for idgi in (False, True):
                call = functools.partial(
                    cls(model).attribute,
                    x,
                    target=3,
                    n_steps=args.steps,
                    internal_batch_size=args.batch,
                    idgi=idgi,
                    **kwargs,
                )
                if repeat:
                    times[label][int(idgi)].append(timed(call, args.device))
                else:
                    call()
    return {
        label: [tuple(statistics.median(column) for column in zip(*runs)) for runs in pair]
        for label, pair in times.items()
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112, help="ResNet-18 image height = width")
    parser.add_argument("--steps", type=int, default=32, help="gradient evaluations")
    parser.add_argument("--batch", type=int, default=16, help="internal_batch_size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1: steadier on a busy host)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"device={args.device} threads={torch.get_num_threads()} evaluations={args.steps} "
        f"internal_batch_size={args.batch} repeats={args.repeats} (medians)"
    )
    for name in ("small_cnn", "resnet18"):
        model, x = build(name, args.size, args.device)
        shape = "x".join(str(d) for d in x.shape)
        for label, (plain, idgi) in compare(model, x, args).items():
            print(
                f"{name} {shape} {label:>17}: without {plain[0]:.3f} s, with IDGI "
                f"{idgi[0]:.3f} s, ratio {idgi[0] / plain[0]:.3f} (CPU time ratio "
                f"{idgi[1] / plain[1]:.3f})"
            )


if __name__ == "__main__":
    main()
