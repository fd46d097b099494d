"""Exact against randomized low_rank on one big image: time, peak memory and error.

For each image (4000×6000×3 by default) and each k, prints the wall time and the peak
memory of ``low_rank(x, k, method="randomized")`` over those of the exact SVD, each
measured in a fresh child process (CPU: peak RSS above the RSS before the call), and the
error ratio ``‖x - x̂_k‖_F / sqrt(Σ_{i>k} σ_i²)`` of the randomized result to the
Eckart–Young optimum (>= 1; 1 is optimal), σ from the exact SVD.

The exact child computes the SVD once and builds every rank-k image from it, as
``low_rank(x, k)`` does for each k: its time is the same for every k.

Images, generated here (nothing is downloaded):
- ``smooth``: a smooth random image (random 30×45 pixels, bicubic upsampling) plus
  Gaussian noise (std 0.05), clipped to [0, 1];
- ``photo``: the shipped ``astronaut.png`` (512×512) upsampled bilinearly.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_lowrank.py              # 4000×6000, k 8 32 128
    python benchmarks/bench_lowrank.py --height 400 --width 600      # quick
"""

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from captum_rig import lowrank
from captum_rig.lowrank import low_rank

IMAGES = ("smooth", "photo")
PHOTO = Path(lowrank.__file__).parent / "assets" / "astronaut.png"


def make_image(name: str, height: int, width: int) -> torch.Tensor:
    """One (3, height, width) float32 image in [0, 1], the same on every call."""
    generator = torch.Generator().manual_seed(0)
    if name == "smooth":
        small = torch.rand(1, 3, 30, 45, generator=generator)
        noise = 0.05 * torch.randn(1, 3, height, width, generator=generator)
        big = F.interpolate(small, size=(height, width), mode="bicubic", align_corners=False)
        return (big + noise).clamp(0, 1)[0]
    import numpy as np
    from PIL import Image

    photo = np.asarray(Image.open(PHOTO).convert("RGB"), dtype=np.float32) / 255
    x = torch.from_numpy(photo).permute(2, 0, 1)[None]
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)[0]


def _status_kb(field: str) -> int:
    """One ``kB`` field of /proc/self/status (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field}")


def child(image: str, method: str, ks: list, height: int, width: int) -> dict:
    """Runs in a fresh process: one method on one image; time, peak memory, errors.

    The peak is the RSS high-water mark, reset after the image is built (its temporaries
    would otherwise count), minus the RSS before the call. The exact child measures the
    SVD and the first rank-k image, what ``low_rank(x, k)`` does, then builds the others.
    """
    torch.set_num_threads(1)
    x = make_image(image, height, width)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    if method == "exact":
        u, s, vh = lowrank._svd(x)
        results = {ks[0]: (u[..., : ks[0]] * s[..., None, : ks[0]]) @ vh[..., : ks[0], :]}
    else:
        results = {ks[0]: low_rank(x, ks[0], method="randomized")}
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM") - before
    errors = {}
    for k in ks:
        r = results.pop(k) if k in results else (u[..., :k] * s[..., None, :k]) @ vh[..., :k, :]
        errors[k] = float(torch.linalg.norm((x - r).double()))
    out = {"seconds": seconds, "peak_bytes": peak, "error": errors}
    if method == "exact":
        out["optimum"] = {k: float(s[..., k:].double().square().sum().sqrt()) for k in ks}
    return out


def run_child(image: str, method: str, ks: list, height: int, width: int) -> dict:
    command = [sys.executable, __file__, "--child", image, method, *map(str, ks)]
    command += ["--height", str(height), "--width", str(width)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["error"] = {int(k): v for k, v in result["error"].items()}
    if "optimum" in result:
        result["optimum"] = {int(k): v for k, v in result["optimum"].items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--k", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--images", nargs="+", default=list(IMAGES), choices=IMAGES)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        image, method, *ks = args.child
        print(json.dumps(child(image, method, [int(k) for k in ks], args.height, args.width)))
        return
    print(f"3×{args.height}×{args.width} float32, one CPU thread, randomized with its defaults")
    print("(oversample 10, 2 power iterations). time, MB: peak memory above the input;")
    print("ratio: randomized / exact. error: ‖x - x̂_k‖_F / Eckart–Young optimum (float32 σ);")
    print("rel: the randomized error / ‖x‖_F (ratios are float32 noise when rel < 1e-6)")
    print(
        f"{'image':7} {'k':>4} {'exact s':>8} {'rand s':>7} {'ratio':>6} {'exact MB':>8} "
        f"{'rand MB':>7} {'ratio':>6} {'err exact':>9} {'err rand':>8} {'rel':>8}"
    )
    for image in args.images:
        exact = run_child(image, "exact", args.k, args.height, args.width)
        norm = float(torch.linalg.norm(make_image(image, args.height, args.width).double()))
        for k in args.k:
            fast = run_child(image, "randomized", [k], args.height, args.width)
            mb = (exact["peak_bytes"] / 2**20, fast["peak_bytes"] / 2**20)
            optimum = exact["optimum"][k]
            print(
                f"{image:7} {k:4d} {exact['seconds']:8.1f} {fast['seconds']:7.2f} "
                f"{fast['seconds'] / exact['seconds']:6.3f} {mb[0]:8.0f} {mb[1]:7.0f} "
                f"{mb[1] / mb[0]:6.3f} {exact['error'][k] / optimum:9.4f} "
                f"{fast['error'][k] / optimum:8.4f} {fast['error'][k] / norm:8.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
