"""Lipschitz bounds: their cost, and how far above a measured local constant they sit.

Two tables, measured side by side in one run:

1. ``lipschitz_bound`` on torchvision's ResNet-50 (``weights=None``) at ``--size`` px:
   seconds with power iteration (``--n-iter`` iterations per convolution, each norm
   approached from below) and certified (Gram iteration, ``--gram-iter`` iterations,
   an upper bound per convolution), and ``certified / power`` for time and bound.
2. Bound over a measured local Lipschitz constant: the largest Jacobian spectral norm
   ``‖∂f/∂x‖₂`` at ``--n-inputs`` random inputs, by power iteration on ``JᵀJ``
   (``torch.func`` JVP and VJP), for ResNet-18 (random weights, CIFAR stem) and the
   shipped demo model. The ratio says how loose the layer-product bound is.

Usage (defaults are the full run; shrink for a smoke test):
    python benchmarks/bench_stability.py
    python benchmarks/bench_stability.py --size 64 --n-iter 3 --gram-iter 4 --n-inputs 1
"""

import argparse
import math
import time

import torch
from torch import nn

from captum_rig._tables import markdown_table, number
from captum_rig.stability import lipschitz_analysis


def local_lipschitz(model: nn.Module, x: torch.Tensor, n_iter: int, seed: int = 0) -> float:
    """``‖J_f(x)‖₂`` for one input ``x`` (1, C, H, W), by power iteration on ``JᵀJ``."""
    from torch.func import jvp, vjp

    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    v /= v.norm()
    _, pullback = vjp(model, x)
    sigma = 0.0
    for _ in range(n_iter):
        _, u = jvp(model, (x,), (v,))
        sigma = float(u.detach().norm())
        (w,) = pullback(u)
        v = w / w.norm()
    return sigma


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def bench_resnet50(args: argparse.Namespace, device: torch.device) -> None:
    import torchvision

    model = torchvision.models.resnet50(weights=None).to(device).eval()
    x = torch.rand(1, 3, args.size, args.size, device=device)
    power, t_power = timed(lambda: lipschitz_analysis(model, x, n_iter=args.n_iter, blocks=False))
    certified, t_cert = timed(
        lambda: lipschitz_analysis(model, x, certified=True, gram_iter=args.gram_iter, blocks=False)
    )
    print(f"\n## lipschitz_bound, ResNet-50 at {args.size} px on {device}\n")
    rows = [
        [report.method, number(t, 1, fixed=True), number(report.bound),
         number(math.log10(report.bound), 2, fixed=True)]
        for report, t in ((power, t_power), (certified, t_cert))
    ]  # fmt: skip
    print(markdown_table(["method", "seconds", "bound", "log10 bound"], rows))
    ratio = certified.bound / power.bound
    print(f"\ncertified / power: time {t_cert / t_power:.2f}, bound {ratio:.3g}")


def bench_ratio(args: argparse.Namespace, device: torch.device) -> None:
    from captum_rig.models import cifar_model, load_demo_model

    torch.manual_seed(0)
    models = {
        "resnet18 (CIFAR stem, random)": cifar_model("resnet18", 10),
        "demo natural": load_demo_model("natural"),
    }
    print(f"\n## bound / measured local Lipschitz constant (32 px, {args.n_inputs} inputs)\n")
    header = ["model", "bound (power)", "bound (certified)", "max local ‖J‖₂", "power / local",
              "certified / local"]  # fmt: skip
    rows = []
    for name, model in models.items():
        model = model.to(device).eval()
        generator = torch.Generator().manual_seed(1)
        xs = torch.rand(args.n_inputs, 3, 32, 32, generator=generator).to(device)
        power = lipschitz_analysis(model, xs[:1], n_iter=args.ratio_n_iter, blocks=False).bound
        cert = lipschitz_analysis(
            model, xs[:1], certified=True, gram_iter=args.gram_iter, blocks=False
        ).bound
        local = max(
            local_lipschitz(model, xs[i : i + 1], args.jacobian_iter) for i in range(len(xs))
        )
        rows.append([name, number(power), number(cert), number(local), number(power / local, 3),
                     number(cert / local, 3)])  # fmt: skip
    print(markdown_table(header, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224, help="ResNet-50 input size")
    parser.add_argument("--n-iter", type=int, default=20, help="power iterations (ResNet-50)")
    parser.add_argument("--ratio-n-iter", type=int, default=100, help="power iterations (ratios)")
    parser.add_argument("--gram-iter", type=int, default=6, help="Gram iterations")
    parser.add_argument("--n-inputs", type=int, default=4, help="inputs for the local constant")
    parser.add_argument("--jacobian-iter", type=int, default=30, help="power iterations on JᵀJ")
    parser.add_argument("--skip-resnet50", action="store_true")
    parser.add_argument("--skip-ratios", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    if not args.skip_ratios:
        bench_ratio(args, device)
    if not args.skip_resnet50:
        bench_resnet50(args, device)


if __name__ == "__main__":
    main()
