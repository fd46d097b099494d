"""rank_spectrum speed, side by side in one run.

Two ratios per configuration:

1. ``spectrum / forward``: ``rank_spectrum`` time over the forward-only bound, i.e. the
   same number of images (images x ranks) pushed through the same model at the same
   batch size, with no SVD and no rank images. Target: <= 1.2.
2. ``literal / spectrum``: a literal Algorithm 1 (one numpy SVD per image, channel and
   rank, one forward per rank image) over ``rank_spectrum`` on the same few images and
   ranks: the speed-up.

The ranks are spread evenly over 0..w and include w (whose prediction is the full-rank
reference, shared with the forward-only bound's count).

Usage (defaults are the lead's full run; shrink for a smoke test):
    python benchmarks/bench_spectrum.py
    python benchmarks/bench_spectrum.py --n-images 4 --n-ranks 3 --literal-images 1 \
        --literal-ranks 2 --configs cnn-32 resnet18-32
"""

import argparse

import numpy as np
import torch
from _forward import CONFIGS, forward_only, timed

from captum_rig.spectrum import rank_spectrum


def spread(width: int, n: int) -> list:
    """``n`` ranks spread evenly over 0..width, always including width."""
    n = max(1, min(n, width + 1))
    if n == 1:
        return [width]
    return sorted({round(i * width / (n - 1)) for i in range(n)})


def literal_algorithm_1(model, x: torch.Tensor, ranks: list) -> list:
    """Per image, rank and channel one numpy SVD; one forward per rank image."""
    device = next(model.parameters()).device
    xs = x.cpu().numpy()
    agree = np.zeros(len(ranks))
    with torch.no_grad():
        for n in range(len(xs)):
            full = model(x[n : n + 1].to(device)).argmax(1).item()
            for j, k in enumerate(ranks):
                image = np.empty_like(xs[n])
                for c in range(xs.shape[1]):
                    u, s, vt = np.linalg.svd(xs[n, c], full_matrices=False)
                    image[c] = (u[:, :k] * s[:k]) @ vt[:k]
                prediction = model(torch.from_numpy(image)[None].to(device)).argmax(1).item()
                agree[j] += prediction == full
    return list(agree / len(xs))


def bench(name: str, args: argparse.Namespace, device: torch.device) -> str:
    """One table row: both ratios for one configuration."""
    build, size = CONFIGS[name]
    model = build().to(device).eval()
    shape = (3, size, size)
    x = torch.rand(args.n_images, *shape, device=device)
    ranks = spread(size, args.n_ranks)
    forward_only(model, args.batch_size, shape, args.batch_size, device)  # warm-up

    t_forward = timed(
        lambda: forward_only(model, len(x) * len(ranks), shape, args.batch_size, device),
        args.repeats,
        device,
    )
    t_spectrum = timed(
        lambda: rank_spectrum(model, x, ranks, batch_size=args.batch_size, progress=False),
        args.repeats,
        device,
    )

    small = x[: args.literal_images]
    few = spread(size, args.literal_ranks)
    t_literal = timed(lambda: literal_algorithm_1(model, small, few), 1, device)
    fast = rank_spectrum(model, small, few, batch_size=args.batch_size, progress=False)
    t_fast = timed(
        lambda: rank_spectrum(model, small, few, batch_size=args.batch_size, progress=False),
        args.repeats,
        device,
    )
    # float32 SVDs differ in the last bits; a flipped near-tie is possible, rarely
    same = np.allclose(fast.agreement, literal_algorithm_1(model, small, few))
    return (
        f"{name:<13}{len(x):>7}{len(ranks):>6}{t_forward:>11.3f}{t_spectrum:>12.3f}"
        f"{t_spectrum / t_forward:>7.2f}  | {len(small):>4}{len(few):>6}{t_literal:>11.3f}"
        f"{t_fast:>12.3f}{t_literal / t_fast:>9.1f}{'yes' if same else 'NO':>6}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--n-images", type=int, default=64, help="images for ratio 1")
    parser.add_argument("--n-ranks", type=int, default=17, help="ranks for ratio 1")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--literal-images", type=int, default=4, help="images for ratio 2")
    parser.add_argument("--literal-ranks", type=int, default=5, help="ranks for ratio 2")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(
        f"device={device} threads={torch.get_num_threads()} batch_size={args.batch_size} "
        f"repeats={args.repeats} torch={torch.__version__}"
    )
    header = (
        f"{'config':<13}{'images':>7}{'ranks':>6}{'forward_s':>11}{'spectrum_s':>12}"
        f"{'ratio':>7}  | {'imgs':>4}{'ranks':>6}{'literal_s':>11}{'spectrum_s':>12}"
        f"{'speedup':>9}{'same':>6}"
    )
    print(header)
    print("-" * len(header))
    for name in args.configs:
        print(bench(name, args, device))
    print("ratio = spectrum / forward-only bound (target <= 1.2); speedup = literal / spectrum")


if __name__ == "__main__":
    main()
