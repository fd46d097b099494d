"""BlurIG against Captum's IntegratedGradients and PAIR's reference BlurIG, side by side.

Prints, from one run on one machine, same model (torchvision ResNet-18, random weights),
same input (1×3×size×size) and the same number of gradient evaluations (n_steps):
- wall time of BlurIG over Captum IG at equal n_steps and internal_batch_size;
  target <= 1.15 (the blur path costs little next to the model);
- the share of BlurIG's time spent blurring (the path and its σ-derivative, no model);
- BlurIG's speed-up over PAIR's ``saliency.core.BlurIG.GetMask`` (scipy blur on the CPU,
  the model called through a ``call_model_function`` on the same device), at PAIR's
  ``batch_size=1`` and at its best batch size among ``--pair-batches``.

Usage:
    python benchmarks/bench_blur_ig.py                       # full size: 224×224, 100 steps
    python benchmarks/bench_blur_ig.py --size 32 --steps 8 --repeats 1 --pair-batches 1,8
"""

import argparse
import statistics
import time

import numpy as np
import saliency.core as saliency
import torch
import torchvision
from captum.attr import IntegratedGradients

from captum_rig.attr.blur_ig import BlurIG, _BlurPath, blur_sigmas

TARGET = 3


def build(size: int, device: str):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    x = torch.rand(1, 3, size, size, device=device)
    return model, x


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="image height = width")
    parser.add_argument("--steps", type=int, default=100, help="n_steps of every method")
    parser.add_argument("--batch", type=int, default=16, help="internal_batch_size")
    parser.add_argument("--max-sigma", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--pair-batches", default="1,4,16,64", help="PAIR batch sizes to try (comma-separated)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    pair_batches = sorted({int(b) for b in args.pair_batches.split(",")} | {1})

    model, x = build(args.size, args.device)

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

    print(
        f"device={args.device} threads={torch.get_num_threads()} input=1x3x{args.size}x"
        f"{args.size} n_steps={args.steps} internal_batch_size={args.batch} "
        f"max_sigma={args.max_sigma}"
    )
    # Warm-up: kernel selection and allocator growth stay out of the timing.
    blur_ig(), ig(), blur_only()
    times = {"blur_ig": [], "ig": [], "blur_only": []}
    for _ in range(args.repeats):  # interleaved, so drift hits every method alike
        times["blur_ig"].append(timed(args.device, blur_ig))
        times["ig"].append(timed(args.device, ig))
        times["blur_only"].append(timed(args.device, blur_only))
    ours, ig_t, blur_t = (statistics.median(times[k]) for k in ("blur_ig", "ig", "blur_only"))

    pair = {}
    for b in pair_batches:
        pair[b] = statistics.median(
            timed(args.device, lambda b=b: pair_blur_ig(model, x, args, b))
            for _ in range(args.repeats)
        )
    best = min(pair, key=pair.get)

    # The same numbers as PAIR (batch_size=1), as a sanity check of what is being timed.
    ref = pair_blur_ig(model, x, args, 1)
    attr = blur_ig()[0].permute(1, 2, 0).cpu().numpy()
    rel = float(np.abs(attr - ref).max() / max(np.abs(ref).max(), 1e-30))

    print(f"{'':34}{'seconds':>10}{'ratio':>10}")
    print(f"{'Captum IG':34}{ig_t:10.3f}")
    print(f"{'BlurIG (ours)':34}{ours:10.3f}{ours / ig_t:10.3f}   BlurIG / IG, target <= 1.15")
    print(f"{'  of which blur path, no model':34}{blur_t:10.3f}{blur_t / ours:10.3f}   share")
    for b, t in pair.items():
        label = f"PAIR BlurIG, batch_size={b}" + (" (best)" if b == best else "")
        print(f"{label:34}{t:10.3f}{t / ours:10.2f}x  speed-up of ours")
    print(f"max |ours - PAIR(batch_size=1)| / max |PAIR| = {rel:.2e} (float32)")


if __name__ == "__main__":
    main()
