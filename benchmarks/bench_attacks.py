"""Minimal-norm attacks against PGD's search on the demo models: mean distortion, time.

For each demo model (``natural``, ``lowrank8``; bundled, nothing downloaded) and each
attack of :func:`captum_rig.stability.minimal_distortion` (PGD's search over the radius,
DeepFool, FAB, CW; L2 and, for PGD and FAB, L∞), on held-out generated shapes: the mean
norm of the prediction-changing perturbation found (over the images changed), the
number changed, and the wall time per image. Lower distortion at equal success is
better; ``best`` is, per image, the smallest over the attacks of that norm.

Usage:
    python benchmarks/bench_attacks.py --n-images 32 --threads 1
"""

import argparse
import sys
import time
from typing import List, Optional, Sequence

import torch

from captum_rig._tables import markdown_table, number
from captum_rig.models import load_demo_model
from captum_rig.stability import best_distortion, minimal_distortion
from captum_rig.synthetic import make_shapes

PLAN = (
    ("pgd", "L2"), ("deepfool", "L2"), ("fab", "L2"), ("cw", "L2"),
    ("pgd", "Linf"), ("fab", "Linf"),
)  # fmt: skip


def bench(model_name: str, images: torch.Tensor, steps: int, n_bisect: int) -> List[list]:
    """One table row per attack (and ``best`` per norm) for one demo model."""
    model = load_demo_model(model_name)
    rows, by_norm = [], {}
    for attack, norm in PLAN:
        start = time.perf_counter()
        pgd = {"steps": steps, "n_bisect": n_bisect} if attack == "pgd" else {}
        result = minimal_distortion(model, images, norm=norm, attack=attack, **pgd)
        seconds = (time.perf_counter() - start) / len(images)
        by_norm.setdefault(norm, []).append(result)
        rows.append([model_name, attack, norm, number(result.mean), number(result.tolerance, 2),
                     f"{result.n_found}/{len(images)}", f"{1000 * seconds:.0f}"])  # fmt: skip
    for norm, results in by_norm.items():
        best = best_distortion(results)
        rows.append([model_name, "best", norm, number(best.mean), "", f"{best.n_found}/"
                     f"{len(images)}", ""])  # fmt: skip
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-images", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="PGD steps per radius")
    p.add_argument("--n-bisect", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = make_shapes(args.n_images, seed=123).images
    rows = []
    for model_name in ("natural", "lowrank8"):
        rows += bench(model_name, images, args.steps, args.n_bisect)
    header = ["model", "attack", "norm", "mean distortion", "±", "changed", "ms per image"]
    print(markdown_table(header, rows, align="lllrrrr"))
    print(f"\n{args.n_images} generated shapes (seed 123), {args.threads} torch thread(s), "
          f"PGD {args.steps} steps per radius, {args.n_bisect} bisection steps; "
          f"torch {torch.__version__}.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
