"""How close is RIG's paper method with ``n_steps`` ranks to its full sum over every rank?

For each model, RIG's full sum (``method="paper"``, ``n_steps=None``: every rank
``1..w-1``) is compared with ``n_steps`` in (8, 16, 32, 64) for two groupings of the ranks:

- ``current``: :func:`captum_rig.attr.rank_path.paper_rank_weights` as the package ships
  it (what ``RIG.attribute(n_steps=m)`` evaluates);
- ``uniform``: ``m`` groups of (near-)equal rank count, each group's summed weight put on
  its middle rank (the lower middle for an even count).

Per ``n_steps`` and grouping it prints, as means over the images: the Pearson correlation
of the flattened ``(C, H, W)`` maps, the top-10 % overlap (the share of the 10 % pixels
with the largest ``|attribution|`` summed over channels that both maps pick) and the
relative L1 error ``|A_m - A_full|_1 / |A_full|_1``. With ``--markdown FILE`` it also
writes the results as a Markdown table.

Every rank's gradient is computed once, and each grouping is a weighted sum of those
gradients; one ``RIG.attribute`` call per model checks that this reproduces the package.

Models (no download; fixed seeds):
- ``resnet18``: torchvision ResNet-18, random weights (seed 0), ImageNet normalisation
  inside, at 224 px on the shipped photo ``chelsea`` (upsampled from 128 px; ``--photos``
  for others), ``w = 224``;
- ``resnet18_fc`` (with ``--fc``, or by itself when the first one's maps are near zero):
  the same ResNet-18 with its ``fc`` re-initialised from seed 1;
- ``demo``: ``load_demo_model("natural")`` at 32 px on held-out synthetic shapes
  (``SHAPES_TEST_SEED``), ``w = 32``: ``n_steps >= 31`` is the full sum itself.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_rig_grouping.py
    python benchmarks/bench_rig_grouping.py --fc --markdown table.md
    python benchmarks/bench_rig_grouping.py --photos chelsea coffee astronaut
"""

import argparse
import math
import time
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from captum_rig import RIG
from captum_rig.attr.rank_path import BaselineRankPath, paper_rank_weights
from captum_rig.data import load_photo
from captum_rig.demo import SHAPES_TEST_SEED
from captum_rig.models import load_demo_model
from captum_rig.synthetic import make_shapes

STEPS = (8, 16, 32, 64)
GROUPINGS = ("current", "uniform")
TOP = 0.10  # share of pixels in the top-|attribution| overlap
NEAR_ZERO = 1e-6  # mean |attribution| below which a map counts as degenerate

# A grouping: (ranks, weights), as paper_rank_weights returns them.
Grouping = Tuple[List[int], List[float]]


def uniform_rank_weights(width: int, n_steps: int) -> Grouping:
    """Ranks ``1..w-1`` in ``n_steps`` groups of equal count, each on its middle rank."""
    ranks, weights = paper_rank_weights(width)
    if n_steps >= len(ranks):
        return ranks, weights
    bounds = [round(j * len(ranks) / n_steps) for j in range(n_steps + 1)]
    out_ranks, out_weights = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        out_ranks.append(ranks[(lo + hi - 1) // 2])
        out_weights.append(sum(weights[lo:hi]))
    return out_ranks, out_weights


def groupings(width: int) -> Dict[Tuple[str, int], Grouping]:
    """Every (grouping, n_steps) to compare, plus ``("full", 0)``: every rank."""
    out = {("full", 0): paper_rank_weights(width)}
    for m in STEPS:
        out["current", m] = paper_rank_weights(width, m)
        out["uniform", m] = uniform_rank_weights(width, m)
    return out


def rank_sums(
    model: nn.Module, x: Tensor, target: Tensor, plans: Dict, batch: int
) -> Dict[Tuple[str, int], Tensor]:
    """Each plan's weighted sum of the rank gradients, every rank's gradient computed once.

    Args:
        x: images ``(N, C, H, W)``; target: ``(N,)`` class indices.
        plans: ``{key: (ranks, weights)}``.
        batch: examples per forward/backward pass.

    Returns:
        ``{key: (N, C, H, W)}`` in float64.
    """
    path = BaselineRankPath(x)
    needed = sorted({k for ranks, _ in plans.values() for k in ranks})
    coeff = {key: dict(zip(*plan)) for key, plan in plans.items()}
    sums = {key: torch.zeros(x.shape, dtype=torch.float64) for key in plans}
    per_pass = max(1, batch // x.shape[0])
    for start in range(0, len(needed), per_pass):
        chunk = needed[start : start + per_pass]
        points = path.images(chunk).reshape(-1, *x.shape[1:]).requires_grad_()
        out = model(points).gather(1, target.repeat(len(chunk))[:, None]).sum()
        (grad,) = torch.autograd.grad(out, points)
        grad = grad.reshape(len(chunk), *x.shape).double()
        for key in plans:
            for i, k in enumerate(chunk):
                if k in coeff[key]:
                    sums[key] += coeff[key][k] * grad[i]
    return sums


def scores(maps: Tensor, full: Tensor) -> Dict[str, float]:
    """Mean over images of Pearson (and its minimum), top-10 % overlap, relative L1."""
    a, b = maps.flatten(1), full.flatten(1)
    a0, b0 = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    pearson = (a0 * b0).sum(1) / (a0.norm(dim=1) * b0.norm(dim=1))
    sa, sb = maps.abs().sum(1).flatten(1), full.abs().sum(1).flatten(1)
    k = math.ceil(TOP * sa.shape[1])
    overlap = [
        len(set(ia.tolist()) & set(ib.tolist())) / k
        for ia, ib in zip(sa.topk(k, dim=1).indices, sb.topk(k, dim=1).indices)
    ]
    rel_l1 = (a - b).abs().sum(1) / b.abs().sum(1)
    return {
        "pearson": pearson.mean().item(),
        "pearson_min": pearson.min().item(),
        "top10": sum(overlap) / len(overlap),
        "rel_l1": rel_l1.mean().item(),
    }


def check_against_rig(model, x, target, sums, batch: int) -> float:
    """Relative max difference of ``RIG.attribute(n_steps=8)`` from the reconstruction."""
    rig = RIG(model).attribute(x, target=target, n_steps=STEPS[0], internal_batch_size=batch)
    ref = sums["current", STEPS[0]]
    return ((rig.double() - ref).abs().max() / ref.abs().max()).item()


def resnet18(fc_seed=None) -> nn.Module:
    """Random ResNet-18 (seed 0), ImageNet normalisation inside; ``fc`` re-drawn if asked."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    if fc_seed is not None:
        torch.manual_seed(fc_seed)
        net.fc.reset_parameters()
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return nn.Sequential(Normalize(mean, std), net).eval()


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def photos_224(names: Sequence[str]) -> Tensor:
    """Shipped photos upsampled to ``(len(names), 3, 224, 224)``, in [0, 1]."""
    x = torch.stack([load_photo(name) for name in names])
    return F.interpolate(x, size=224, mode="bilinear", align_corners=False).clamp(0, 1)


def evaluate(name: str, model: nn.Module, x: Tensor, batch: int) -> Dict:
    """Scores of every grouping against the full sum for one model and its images."""
    with torch.no_grad():
        target = model(x).argmax(1)  # the predicted class
    width = min(x.shape[-2:])
    t0 = time.perf_counter()
    sums = rank_sums(model, x, target, groupings(width), batch)
    seconds = time.perf_counter() - t0
    full = sums["full", 0]
    rows = {(g, m): scores(sums[g, m], full) for g in GROUPINGS for m in STEPS}
    return {
        "name": name,
        "images": x.shape[0],
        "width": width,
        "seconds": seconds,
        "mean_abs": full.abs().mean().item(),
        "check": check_against_rig(model, x, target, sums, batch),
        "rows": rows,
    }


def print_result(r: Dict) -> None:
    print(
        f"\n{r['name']}: {r['images']} image(s), w = {r['width']}, every rank's gradient in "
        f"{r['seconds']:.0f} s; full-sum mean |A| = {r['mean_abs']:.3g}; "
        f"RIG(n_steps={STEPS[0]}) vs reconstruction: {r['check']:.1e} (relative max)"
    )
    print(f"{'n_steps':>7} {'grouping':>8} {'pearson':>8} {'min':>7} {'top10%':>7} {'rel L1':>7}")
    for m in STEPS:
        for g in GROUPINGS:
            s = r["rows"][g, m]
            print(
                f"{m:>7} {g:>8} {s['pearson']:8.4f} {s['pearson_min']:7.4f} "
                f"{s['top10']:7.3f} {s['rel_l1']:7.3f}"
            )


def markdown(results: Sequence[Dict]) -> str:
    """One table: a row per (model, n_steps), each cell ``current / uniform``."""
    lines = [
        "| model | n_steps | Pearson, mean (min) | top-10 % overlap | relative L1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        label = f"{r['name']} (w = {r['width']}, {r['images']} image(s))"
        for m in STEPS:
            c, u = r["rows"]["current", m], r["rows"]["uniform", m]
            lines.append(
                f"| {label} | {m} | {c['pearson']:.4f} ({c['pearson_min']:.4f}) / "
                f"{u['pearson']:.4f} ({u['pearson_min']:.4f}) | "
                f"{c['top10']:.3f} / {u['top10']:.3f} | {c['rel_l1']:.3f} / {u['rel_l1']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16, help="examples per pass")
    parser.add_argument("--demo-images", type=int, default=16)
    parser.add_argument("--photos", nargs="+", default=["chelsea"], help="for ResNet-18")
    parser.add_argument("--fc", action="store_true", help="also ResNet-18 with a re-drawn fc")
    parser.add_argument("--skip-resnet", action="store_true", help="only the demo model")
    parser.add_argument("--markdown", help="write the table to this file")
    args = parser.parse_args()

    results = []
    if not args.skip_resnet:
        results.append(evaluate("resnet18", resnet18(), photos_224(args.photos), args.batch))
        print_result(results[-1])
        if args.fc or results[-1]["mean_abs"] < NEAR_ZERO:
            results.append(
                evaluate("resnet18_fc", resnet18(fc_seed=1), photos_224(args.photos), args.batch)
            )
            print_result(results[-1])
    shapes = make_shapes(args.demo_images, seed=SHAPES_TEST_SEED)
    results.append(evaluate("demo", load_demo_model("natural"), shapes.images, args.batch))
    print_result(results[-1])
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(results))


if __name__ == "__main__":
    main()
