"""Lipschitz bounds: their cost, their tightness, and the measured lower bound beside them.

Four tables, measured side by side in one run (torchvision models with random weights,
no downloads):

1. Cost: the certified ``lipschitz_bound`` of ResNet-50 and ResNet-18 at ``--size`` px
   (the second call: the first warms up tracing and LAPACK), in units of one forward +
   backward pass of the same model on the same input (median of 5).
2. Certified bound / converged power-iteration product (each layer's norm from below,
   run to a relative tolerance of 1e-6), ResNet-18 at ``--size`` px.
3. Per layer kind, certified norm / exact norm at 12×12 and 32×32 inputs (exact: the
   explicit matrix's largest singular value where it has at most 2¹² columns, else
   converged power iteration, marked ``*``).
4. Certified bound / ``local_lipschitz`` (the largest input-Jacobian norm at
   ``--n-inputs`` random images, a lower bound): ResNet-18 at ``--size`` px and the
   demo models at 32 px.

Usage:
    python benchmarks/bench_stability.py
    python benchmarks/bench_stability.py --size 64 --skip-resnet50   # a smoke test
"""

import argparse
import math
import time

import torch
from torch import nn

from captum_rig._tables import markdown_table, number
from captum_rig.stability import (
    layer_operator_norms,
    lipschitz_analysis,
    lipschitz_bound,
    local_lipschitz,
)


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def pass_seconds(model: nn.Module, x: torch.Tensor, repeat: int = 3) -> float:
    """Median seconds of one forward + backward pass (gradient of the logits' sum)."""
    times = []
    for _ in range(repeat):
        z = x.clone().requires_grad_(True)
        _, t = timed(lambda z=z: model(z).sum().backward())
        times.append(t)
    return sorted(times)[len(times) // 2]


def bench_cost(args: argparse.Namespace) -> None:
    import torchvision

    rows = []
    names = ["resnet18"] + ([] if args.skip_resnet50 else ["resnet50"])
    for name in names:
        model = torchvision.models.get_model(name, weights=None).eval()
        x = torch.rand(1, 3, args.size, args.size)
        one = pass_seconds(model, x, repeat=5)
        lipschitz_bound(model, x)  # warm-up: tracing, first LAPACK calls
        bound, t = timed(lambda m=model, v=x: lipschitz_bound(m, v))
        rows.append([name, number(t, 1, fixed=True), number(one, 2, fixed=True),
                     number(t / one, 1, fixed=True), number(bound)])  # fmt: skip
    print(f"\n## certified lipschitz_bound at {args.size} px: cost in passes\n")
    print(markdown_table(["model", "seconds", "one fwd+bwd (s)", "passes", "bound"], rows))


def bench_power(args: argparse.Namespace) -> None:
    import torchvision

    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(1, 3, args.size, args.size)
    cert, t_cert = timed(lambda: lipschitz_bound(model, x))
    power, t_power = timed(lambda: lipschitz_bound(model, x, certified=False, n_iter=300))
    print(f"\n## ResNet-18 at {args.size} px: certified / converged power product\n")
    rows = [
        ["certified", number(cert), number(t_cert, 1, fixed=True)],
        ["power iteration (tol 1e-6)", number(power), number(t_power, 1, fixed=True)],
    ]
    print(markdown_table(["method", "bound", "seconds"], rows))
    print(f"\ncertified / power: bound {cert / power:.4f}, time {t_cert / t_power:.2f}")


KINDS = {
    "conv 3×3": lambda: nn.Conv2d(4, 8, 3, padding=1),
    "conv 3×3 stride 2": lambda: nn.Conv2d(4, 4, 3, stride=2, padding=1),
    "conv 1×1": lambda: nn.Conv2d(4, 8, 1),
    "depthwise 3×3": lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4),
    "conv 7×7 stride 2": lambda: nn.Conv2d(3, 4, 7, stride=2, padding=3),
    "avg pool 3 s1": lambda: nn.AvgPool2d(3, stride=1, padding=1),
    "avg pool 2": lambda: nn.AvgPool2d(2),
    "adaptive avg 5": lambda: nn.AdaptiveAvgPool2d(5),
    "bilinear ×2": lambda: nn.Upsample(scale_factor=2, mode="bilinear"),
    "batch norm": lambda: nn.BatchNorm2d(4),
}


def _exact(module: nn.Module, shape) -> tuple:
    """The exact norm (explicit matrix) or converged power iteration (marked)."""
    n = math.prod(shape)
    if n <= 4096:
        basis = torch.eye(n, dtype=torch.float64).view(n, *shape)
        with torch.no_grad():
            zero = module(torch.zeros((1,) + tuple(shape), dtype=torch.float64))
            matrix = (module(basis) - zero).reshape(n, -1)
        return float(torch.linalg.matrix_norm(matrix, 2)), ""
    x = torch.rand((1,) + tuple(shape), dtype=torch.float64)
    (layer,) = layer_operator_norms(module, x, certified=False, n_iter=500, tol=0)
    return layer.norm, "*"


def bench_layers(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    rows = []
    for name, make in KINDS.items():
        module = make().double().eval()
        if isinstance(module, nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
        row = [name]
        for size in (12, 32):
            channels = module.in_channels if isinstance(module, nn.Conv2d) else 4
            shape = (channels, size, size)
            x = torch.rand((1,) + shape, dtype=torch.float64)
            (layer,) = layer_operator_norms(module, x)
            exact, mark = _exact(module, shape)
            row.append(number(layer.norm / exact, 4, fixed=True) + mark)
        rows.append(row)
    print("\n## per layer kind: certified / exact norm\n")
    print(markdown_table(["layer", "12×12", "32×32"], rows, align="lrr"))


def bench_local(args: argparse.Namespace) -> None:
    import torchvision

    from captum_rig.models import load_demo_model

    models = {
        f"resnet18 ({args.size} px)": (torchvision.models.resnet18(weights=None), args.size),
        "demo natural (32 px)": (load_demo_model("natural"), 32),
        "demo lowrank8 (32 px)": (load_demo_model("lowrank8"), 32),
    }
    rows = []
    for name, (model, size) in models.items():
        model.eval()
        xs = torch.rand(args.n_inputs, 3, size, size, generator=torch.Generator().manual_seed(1))
        report = lipschitz_analysis(model, xs[:1], blocks=False, lower=False)
        low = local_lipschitz(model, xs, n_iter=30, tol=1e-4)
        rows.append([name, number(report.bound), number(low), number(report.bound / low)])
    print(f"\n## certified bound / local_lipschitz ({args.n_inputs} random images)\n")
    print(markdown_table(["model", "certified bound", "local ‖J‖₂", "bound / local"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224, help="ResNet input size")
    parser.add_argument("--n-inputs", type=int, default=4, help="images for local_lipschitz")
    parser.add_argument("--skip-resnet50", action="store_true")
    parser.add_argument("--only", choices=["cost", "power", "layers", "local"], default=None)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    steps = {"layers": bench_layers, "local": bench_local, "power": bench_power,
             "cost": bench_cost}  # fmt: skip
    for name, step in steps.items():
        if args.only in (None, name):
            step(args)


if __name__ == "__main__":
    main()
