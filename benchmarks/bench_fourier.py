"""frequency_spectrum and fourier_heat_map speed over their forward-only bounds.

Two ratios per configuration, in one run:

1. ``spectrum / forward``: ``frequency_spectrum`` time over the forward-only bound, the
   same number of images (images x radii) pushed through the same model at the same
   batch size, with no DFT and no filtered images. The default radii end at one that
   keeps every frequency, whose prediction is the reference (one forward per image in
   both). Target: <= 1.2.
2. ``heat map / forward``: ``fourier_heat_map`` time over the bound of ``H·W`` forward
   passes per image (one per DFT frequency), on 32x32 images. Target: <= 1.3 (the map
   evaluates each pair of frequencies ``f``, ``-f`` once, so about half the bound's
   images).

Usage (defaults are a full run; shrink for a smoke test):
    python benchmarks/bench_fourier.py
    python benchmarks/bench_fourier.py --n-images 4 --heat-images 2 --configs cnn-32
"""

import argparse
from typing import List

import torch
from _forward import CONFIGS as ALL_CONFIGS
from _forward import forward_only, timed

from captum_rig._tables import markdown_table
from captum_rig.fourier import default_radii, fourier_heat_map, frequency_spectrum

CONFIGS = {name: ALL_CONFIGS[name] for name in ("cnn-32", "resnet18-32")}


def bench(name: str, args: argparse.Namespace, device: torch.device) -> List[object]:
    """One table row: both ratios for one configuration."""
    build, size = CONFIGS[name]
    model = build().to(device).eval()
    shape = (3, size, size)
    x = torch.rand(args.n_images, *shape, device=device)
    radii = default_radii(size, size)
    forward_only(model, args.batch_size, shape, args.batch_size, device)  # warm-up
    t_bound = timed(
        lambda: forward_only(model, len(x) * len(radii), shape, args.batch_size, device),
        args.repeats,
        device,
    )
    t_spectrum = timed(
        lambda: frequency_spectrum(model, x, batch_size=args.batch_size, progress=False),
        args.repeats,
        device,
    )
    heat = x[: args.heat_images].clamp(0, 1)
    labels = torch.zeros(len(heat), dtype=torch.long, device=device)
    t_heat_bound = timed(
        lambda: forward_only(model, len(heat) * size * size, shape, args.batch_size, device),
        args.repeats,
        device,
    )
    t_heat = timed(
        lambda: fourier_heat_map(
            model, heat, labels, eps=4.0, batch_size=args.batch_size, progress=False
        ),
        args.repeats,
        device,
    )
    return [
        name,
        len(x),
        len(radii),
        t_bound,
        t_spectrum,
        t_spectrum / t_bound,
        len(heat),
        t_heat_bound,
        t_heat,
        t_heat / t_heat_bound,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--n-images", type=int, default=64, help="images for ratio 1")
    parser.add_argument("--heat-images", type=int, default=8, help="images for ratio 2")
    parser.add_argument("--batch-size", type=int, default=64)
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
    header = [
        "config",
        "images",
        "radii",
        "forward_s",
        "spectrum_s",
        "ratio",
        "heat images",
        "H·W forward_s",
        "heat map_s",
        "ratio",
    ]
    print(markdown_table(header, [bench(name, args, device) for name in args.configs]))
    print("ratios: spectrum / its forward-only bound (target <= 1.2); heat map / H·W forwards")
    print("per image (target <= 1.3)")


if __name__ == "__main__":
    main()
