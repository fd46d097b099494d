"""BlurIG against Captum's IntegratedGradients and PAIR's reference BlurIG, side by side.

Prints, from one run on one machine, same model (torchvision ResNet-18, random weights),
same input (1×3×size×size) and the same number of gradient evaluations (n_steps):
- wall time of BlurIG over Captum IG at equal n_steps and internal_batch_size;
  target <= 1.15 (the blur path costs little next to the model);
- the share of BlurIG's time spent blurring (the path and its σ-derivative, no model);
- BlurIG's speed-up over PAIR's ``saliency.core.BlurIG.GetMask`` (scipy blur on the CPU,
  the model called through a ``call_model_function`` on the same device), at PAIR's
  ``batch_size=1`` and at its best batch size among ``--pair-batches``.

With ``--memory``: peak memory of BlurIG over Captum IG at equal ``internal_batch_size``
on a big image (default 2048×2048, a tiny conv + global-pool model), target <= 1.2. Each
method runs in a fresh child process that reports its own peak resident set size
(``ru_maxrss``, which sees torch's allocator where tracemalloc does not) and, on CUDA,
``torch.cuda.max_memory_allocated``; a child that only builds the model and the input
gives the baseline both share.

Usage:
    python benchmarks/bench_blur_ig.py                       # full size: 224×224, 100 steps
    python benchmarks/bench_blur_ig.py --size 32 --steps 8 --repeats 1 --pair-batches 1,8
    python benchmarks/bench_blur_ig.py --memory              # 2048×2048, 8 steps, batch 4
"""

import argparse
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict

import numpy as np
import saliency.core as saliency
import torch
import torchvision
from captum.attr import IntegratedGradients
from torch import nn

from captum_rig.attr.blur_ig import BlurIG, _BlurPath, blur_sigmas

TARGET = 3


def build(size: int, device: str):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    x = torch.rand(1, 3, size, size, device=device)
    return model, x


class TinyConvNet(nn.Module):
    """A 3→8 conv, ReLU, global average pool and a linear head: activations ~ the input's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def memory_child(method: str, args) -> None:
    """Runs one method on the tiny model and prints this process's peak memory."""
    torch.manual_seed(0)
    model = TinyConvNet().eval().to(args.device)
    x = torch.rand(1, 3, args.size, args.size, device=args.device)
    kwargs = dict(target=TARGET, n_steps=args.steps, internal_batch_size=args.batch)
    if method == "blur_ig":
        BlurIG(model).attribute(x, max_sigma=args.max_sigma, **kwargs)
    elif method == "ig":
        IntegratedGradients(model).attribute(x, **kwargs)
    cuda = torch.cuda.max_memory_allocated() if args.device.startswith("cuda") else 0
    # ru_maxrss is in KiB on Linux.
    print(f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024} {cuda}")


def memory_report(args) -> None:
    """Peak memory of a baseline, IG and BlurIG, each in a fresh child process."""
    print(
        f"device={args.device} input=1x3x{args.size}x{args.size} n_steps={args.steps} "
        f"internal_batch_size={args.batch} max_sigma={args.max_sigma} model=TinyConvNet"
    )
    peaks = {}
    for method in ("baseline", "ig", "blur_ig"):
        child = [sys.executable, __file__, "--memory-child", method, "--device", args.device]
        child += ["--size", str(args.size), "--steps", str(args.steps)]
        child += ["--batch", str(args.batch), "--max-sigma", str(args.max_sigma)]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        line = next(line for line in out.splitlines() if line.startswith("peak "))
        peaks[method] = [int(v) / 2**20 for v in line.split()[1:]]
    print(f"{'':26}{'peak RSS MiB':>14}{'above baseline':>16}{'CUDA MiB':>10}")
    base = peaks["baseline"][0]
    for method, label in (
        ("baseline", "model + input"),
        ("ig", "Captum IG"),
        ("blur_ig", "BlurIG"),
    ):
        rss, cuda = peaks[method]
        print(f"{label:26}{rss:14.0f}{rss - base:16.0f}{cuda:10.0f}")
    (ours, ours_cuda), (ig, ig_cuda) = peaks["blur_ig"], peaks["ig"]
    print(f"BlurIG / IG peak RSS: {ours / ig:.3f} (target <= 1.2)")
    print(f"BlurIG / IG above baseline: {(ours - base) / (ig - base):.3f}")
    if ig_cuda:
        print(f"BlurIG / IG peak CUDA memory: {ours_cuda / ig_cuda:.3f}")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def pair_blur_ig(model, x: torch.Tensor, args, batch_size: int) -> np.ndarray:
    """PAIR's GetMask on the (H, W, C) image; gradients by torch on x's device."""
    device = x.device

    def call_model_function(batch, call_model_args=None, expected_keys=None):
        images = torch.from_numpy(np.asarray(batch, dtype=np.float32)).to(device)
        images = images.permute(0, 3, 1, 2).requires_grad_()
        (grad,) = torch.autograd.grad(model(images)[:, TARGET].sum(), images)
        return {saliency.INPUT_OUTPUT_GRADIENTS: grad.permute(0, 2, 3, 1).cpu().numpy()}

    return saliency.BlurIG().GetMask(
        x[0].permute(1, 2, 0).cpu().numpy(),
        call_model_function,
        max_sigma=args.max_sigma,
        steps=args.steps,
        batch_size=batch_size,
    )


def _arguments(argv=None) -> argparse.Namespace:
    """The command line, with the sizes' defaults for timing or for --memory filled in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, help="image height = width (224; 2048 --memory)")
    parser.add_argument("--steps", type=int, help="n_steps of every method (100; 8 --memory)")
    parser.add_argument("--batch", type=int, help="internal_batch_size (16; 4 --memory)")
    parser.add_argument("--memory", action="store_true", help="peak memory instead of time")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--max-sigma", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--pair-batches", default="1,4,16,64", help="PAIR batch sizes to try (comma-separated)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    big = args.memory or args.memory_child
    for name, timing, memory in (("size", 224, 2048), ("steps", 100, 8), ("batch", 16, 4)):
        if getattr(args, name) is None:
            setattr(args, name, memory if big else timing)
    return args


def _methods(model, x: torch.Tensor, args) -> Dict[str, Callable[[], object]]:
    """The timed calls: our BlurIG, Captum's IG, and our blur path without the model."""

    def blur_ig():
        return BlurIG(model).attribute(
            x,
            target=TARGET,
            max_sigma=args.max_sigma,
            n_steps=args.steps,
            internal_batch_size=args.batch,
        )

    def ig():
        return IntegratedGradients(model).attribute(
            x, target=TARGET, n_steps=args.steps, internal_batch_size=args.batch
        )

    sigmas = blur_sigmas(args.max_sigma, args.steps)

    def blur_only():
        path = _BlurPath(x)
        for start in range(0, args.steps, args.batch):
            path.images_and_velocity(sigmas[start : min(start + args.batch, args.steps)], 0.01)

    return {"blur_ig": blur_ig, "ig": ig, "blur_only": blur_only}


def _report(times: Dict[str, float], pair: Dict[int, float], rel: float) -> None:
    """Prints the medians, their ratios and the distance from PAIR's numbers."""
    ours, ig_t, blur_t = (times[k] for k in ("blur_ig", "ig", "blur_only"))
    best = min(pair, key=pair.get)
    print(f"{'':34}{'seconds':>10}{'ratio':>10}")
    print(f"{'Captum IG':34}{ig_t:10.3f}")
    print(f"{'BlurIG (ours)':34}{ours:10.3f}{ours / ig_t:10.3f}   BlurIG / IG, target <= 1.15")
    print(f"{'  of which blur path, no model':34}{blur_t:10.3f}{blur_t / ours:10.3f}   share")
    for b, t in pair.items():
        label = f"PAIR BlurIG, batch_size={b}" + (" (best)" if b == best else "")
        print(f"{label:34}{t:10.3f}{t / ours:10.2f}x  speed-up of ours")
    print(f"max |ours - PAIR(batch_size=1)| / max |PAIR| = {rel:.2e} (float32)")


def main(argv=None) -> None:
    args = _arguments(argv)
    if args.memory_child:
        return memory_child(args.memory_child, args)
    if args.memory:
        return memory_report(args)
    pair_batches = sorted({int(b) for b in args.pair_batches.split(",")} | {1})

    model, x = build(args.size, args.device)
    methods = _methods(model, x, args)
    print(
        f"device={args.device} threads={torch.get_num_threads()} input=1x3x{args.size}x"
        f"{args.size} n_steps={args.steps} internal_batch_size={args.batch} "
        f"max_sigma={args.max_sigma}"
    )
    # Warm-up: kernel selection and allocator growth stay out of the timing.
    for run in methods.values():
        run()
    times = {name: [] for name in methods}
    for _ in range(args.repeats):  # interleaved, so drift hits every method alike
        for name, run in methods.items():
            times[name].append(timed(args.device, run))

    pair = {}
    for b in pair_batches:
        pair[b] = statistics.median(
            timed(args.device, lambda b=b: pair_blur_ig(model, x, args, b))
            for _ in range(args.repeats)
        )

    # The same numbers as PAIR (batch_size=1), as a sanity check of what is being timed.
    ref = pair_blur_ig(model, x, args, 1)
    attr = methods["blur_ig"]()[0].permute(1, 2, 0).cpu().numpy()
    rel = float(np.abs(attr - ref).max() / max(np.abs(ref).max(), 1e-30))
    _report({name: statistics.median(t) for name, t in times.items()}, pair, rel)


if __name__ == "__main__":
    main()
