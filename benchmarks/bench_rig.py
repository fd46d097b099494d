"""RIG against Captum's IntegratedGradients at equal gradient evaluations, side by side.

Prints, from one run on one machine:
- wall time of RIG (method="paper", all w ranks) over IG (n_steps=w), same model
  (torchvision ResNet-18, random weights), input and internal_batch_size; target <= 1.10;
- peak memory of RIG over IG, each measured in a fresh child process (CPU: peak RSS
  above the RSS before the call; CUDA: torch.cuda.max_memory_allocated); target <= 1.2;
- the share of RIG's time spent on the SVD and rank images (no model);
- rank-k image throughput for 224×224×3 images (low_rank, and every rank via RankPath).

With ``--busy`` all of it runs beside a busy neighbour (a second, CPU-bound Python
process), as on a shared machine, and it also prints the time of the input's SVD with
torch's default thread count over the time with one thread (RankPath uses one).

With ``--megapixel`` it prints only the peak memory of RIG with its defaults (every rank,
default internal_batch_size) on one 1024×1024 RGB image through a small CNN, in a fresh
child process; target < 1.5 GB.

Usage:
    python benchmarks/bench_rig.py                 # full size: 224×224, w = 224 steps
    python benchmarks/bench_rig.py --size 64 --repeats 1   # quick
    python benchmarks/bench_rig.py --size 64 --repeats 1 --busy
    python benchmarks/bench_rig.py --megapixel
"""

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Tuple

import torch
import torchvision
from captum.attr import IntegratedGradients
from torch import nn

from captum_rig import RIG, RankPath, low_rank
from captum_rig.attr import _path

METHODS = ("rig", "ig")
MEGAPIXEL = 1024  # height = width of the --megapixel image


def build(size: int, device: str):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    x = torch.rand(1, 3, size, size, device=device)
    return model, x


def attribute(name: str, model, x, batch: int, n_steps=None):
    """One attribution; n_steps=None: every rank (RIG) and as many IG steps."""
    if name == "rig":
        return RIG(model).attribute(x, target=3, internal_batch_size=batch, n_steps=n_steps)
    n_steps = n_steps or min(x.shape[-2:])
    return IntegratedGradients(model).attribute(
        x, target=3, n_steps=n_steps, internal_batch_size=batch
    )


def warm_up(model, x, batch: int) -> None:
    """Full-size chunks, so kernel selection and allocator growth stay out of the timing."""
    for name in METHODS:
        attribute(name, model, x, batch, n_steps=batch)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(name: str, size: int, batch: int, device: str) -> None:
    """Runs one method once in this fresh process and prints its peak memory."""
    model, x = build(size, device)
    warm_up(model, x, batch)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        attribute(name, model, x, batch)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = rss_bytes()
        attribute(name, model, x, batch)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    print(json.dumps({"peak": peak}))


@contextlib.contextmanager
def busy_neighbour(active: bool):
    """A second CPU-bound Python process for the duration of the block (if ``active``)."""
    if not active:
        yield
        return
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it get scheduled
        yield
    finally:
        neighbour.kill()
        neighbour.wait()


def svd_thread_ratio(x: torch.Tensor, repeats: int) -> tuple:
    """Median SVD time of ``x`` with torch's default thread count and with one thread."""
    default = torch.get_num_threads()
    times = {}
    for threads in (default, 1):
        torch.set_num_threads(threads)
        try:
            torch.linalg.svd(x, full_matrices=False)  # warm-up
            runs = []
            for _ in range(max(3, repeats)):
                start = time.perf_counter()
                torch.linalg.svd(x, full_matrices=False)
                runs.append(time.perf_counter() - start)
        finally:
            torch.set_num_threads(default)
        times[threads] = statistics.median(runs)
    return default, times[default], times[1]


def megapixel_child() -> None:
    """RIG with its defaults on a 1024×1024 RGB image: prints peak RSS and the baseline."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(16, 10),
    ).eval()  # fmt: skip
    x = torch.rand(1, 3, MEGAPIXEL, MEGAPIXEL)
    model(x[..., :64, :64])
    base = rss_bytes()
    start = time.perf_counter()
    RIG(model).attribute(x, target=3)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    per_pass = _path.points_per_pass(1, None, _path.example_bytes((x,)))
    print(json.dumps({"peak": peak, "base": base, "seconds": seconds, "per_pass": per_pass}))


def megapixel() -> None:
    out = subprocess.run(
        [sys.executable, __file__, "--child", "megapixel"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(
        f"RIG defaults, 1x3x{MEGAPIXEL}x{MEGAPIXEL}, small CNN, {r['per_pass']} rank images "
        "per pass "
        f"(DEFAULT_PASS_BYTES = {_path.DEFAULT_PASS_BYTES / 2**20:.0f} MiB): peak RSS "
        f"{r['peak'] / 2**30:.2f} GiB ({(r['peak'] - r['base']) / 2**20:.0f} MiB above the "
        f"{r['base'] / 2**20:.0f} MiB of a process with torch loaded) in {r['seconds']:.0f} s"
        "   target < 1.5 GB"
    )


def peak_memory(name: str, args) -> int:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            name,
            "--size",
            str(args.size),
            "--batch",
            str(args.batch),
            "--device",
            args.device,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["peak"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="image height = width")
    parser.add_argument("--batch", type=int, default=16, help="internal_batch_size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--busy", action="store_true", help="run beside a busy neighbour")
    parser.add_argument("--megapixel", action="store_true", help="peak memory at 1024x1024")
    parser.add_argument("--child", choices=(*METHODS, "megapixel"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "megapixel":
        return megapixel_child()
    if args.child:
        return child(args.child, args.size, args.batch, args.device)
    if args.megapixel:
        return megapixel()
    with busy_neighbour(args.busy):
        return compare(args)


def compare(args) -> None:
    """RIG and IG side by side (see the module docstring)."""
    model, x = build(args.size, args.device)
    w = args.size
    print(
        f"device={args.device} threads={torch.get_num_threads()} input=1x3x{w}x{w} "
        f"internal_batch_size={args.batch} RIG evals={w - 1} IG evals={w}"
        + (" busy neighbour: yes" if args.busy else "")
    )
    warm_up(model, x, args.batch)
    rig_t, ig_t = median_times(model, x, args)
    overhead = path_overhead(x, args.batch, args.device)
    rig_mem, ig_mem = peak_memory("rig", args), peak_memory("ig", args)
    images, per_image, all_ranks = low_rank_throughput(args.device)

    print(f"{'':28}{'RIG':>10}{'IG':>10}{'ratio':>8}")
    print(
        f"{'wall time (s, median)':28}{rig_t:10.2f}{ig_t:10.2f}{rig_t / ig_t:8.3f}   target <= 1.10"
    )
    print(
        f"{'time per gradient eval (ms)':28}{1e3 * rig_t / (w - 1):10.1f}"
        f"{1e3 * ig_t / w:10.1f}{(rig_t / (w - 1)) / (ig_t / w):8.3f}"
    )
    print(
        f"{'peak memory (MiB)':28}{rig_mem / 2**20:10.1f}{ig_mem / 2**20:10.1f}"
        f"{rig_mem / ig_mem:8.3f}   target <= 1.2"
    )
    print(
        f"SVD + all {w - 1} rank images, no model: {overhead:.3f} s "
        f"= {100 * overhead / rig_t:.1f}% of RIG's time"
    )
    print(
        f"low_rank(k=10), 224x224x3: {1 / per_image:.1f} images/s "
        f"({1e3 * per_image:.1f} ms/image, batch of 16)"
    )
    print(
        f"all 225 rank images of one 224x224x3 image: {all_ranks:.3f} s "
        f"({225 / all_ranks:.0f} rank images/s)"
    )
    if args.busy and args.device == "cpu":
        threads, default_t, one_t = svd_thread_ratio(images[:1], args.repeats)
        print(
            f"SVD of 1x3x224x224 beside a busy neighbour: {threads} threads "
            f"{1e3 * default_t:.0f} ms, 1 thread {1e3 * one_t:.0f} ms, "
            f"ratio {default_t / one_t:.1f}"
        )


def median_times(model, x: torch.Tensor, args) -> Tuple[float, float]:
    """Median wall times of RIG and IG, interleaved, so drift hits both alike."""
    times = {name: [] for name in METHODS}
    for _ in range(args.repeats):
        for name in METHODS:
            sync(args.device)
            start = time.perf_counter()
            attribute(name, model, x, args.batch)
            sync(args.device)
            times[name].append(time.perf_counter() - start)
    rig_t, ig_t = (statistics.median(times[n]) for n in METHODS)
    return rig_t, ig_t


def path_overhead(x: torch.Tensor, batch: int, device: str) -> float:
    """Seconds for the SVD and every rank image of ``x``, without the model."""
    sync(device)
    start = time.perf_counter()
    path = RankPath(x)
    for _ in path.chunks(range(1, min(x.shape[-2:])), batch):
        pass
    sync(device)
    return time.perf_counter() - start


def low_rank_throughput(device: str) -> Tuple[torch.Tensor, float, float]:
    """Rank-k images for a batch of 224×224×3 images: (the images, seconds per image of
    low_rank(k=10), seconds for all 225 rank images of one image)."""
    images = torch.rand(16, 3, 224, 224, device=device)
    low_rank(images[:2], 10)
    sync(device)
    start = time.perf_counter()
    low_rank(images, 10)
    sync(device)
    per_image = (time.perf_counter() - start) / len(images)
    start = time.perf_counter()
    for _ in RankPath(images[:1]).chunks(range(225), 32):
        pass
    sync(device)
    return images, per_image, time.perf_counter() - start


if __name__ == "__main__":
    main()
