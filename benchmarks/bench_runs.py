"""attribute_dataset speed, side by side in one run.

Three ratios:

1. ``run / floor``: ``attribute_dataset`` with RIG over an image folder, against the cost
   floor: the same number of forward+backward passes (each image's prediction, then
   ``n_steps`` path images per image in chunks of RIG's ``internal_batch_size``) in a
   bare loop over the same batches. Goal: <= 1.15.
2. ``1 process / 2 processes``: the same run under ``torchrun`` with 2 processes against
   1, one thread each (the time inside process 0, from a barrier to the file). Goal:
   >= 1.7 on 2 free cores.
3. ``run / no file``: ``attribute_dataset`` against the same work (predictions and RIG's
   ``attribute`` per batch) without parts, checkpoints or the HDF5 file. Goal: <= 1.05.

Each single-process timing is the best of ``--repeats``, interleaved, so that a busy
machine disturbs the ratios less. On a GPU (``--device cuda``) the run's images/s is the
number to report (e.g. ``--model resnet50 --size 224``).

Usage:
    python benchmarks/bench_runs.py                     # 64 images, small CNN, 32 px
    python benchmarks/bench_runs.py --n-images 16 --repeats 1 --no-torchrun   # smoke
    python benchmarks/bench_runs.py --model resnet50 --size 224 --device cuda --no-torchrun
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from captum_rig._tables import markdown_table
from captum_rig.attr.registry import get_method
from captum_rig.data import image_dataset
from captum_rig.runs import attribute_dataset


def make_model(name: str, classes: int = 10) -> nn.Module:
    """``cnn`` (a small CIFAR-style CNN) or a torchvision ResNet, random weights, seeded."""
    torch.manual_seed(0)
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 8 * 8, classes),
        ).eval()  # fmt: skip
    import torchvision

    return getattr(torchvision.models, name)(weights=None, num_classes=classes).eval()


def make_folder(root: Path, n: int, size: int) -> Path:
    """``n`` random images of ``size`` px in 4 class folders."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / "data" / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root / "data"


def floor(model, loader, n_steps: int, chunk: int, device) -> float:
    """The bare loop: the same forward+backward passes as RIG, nothing else."""
    start = time.perf_counter()
    for x, _ in loader:
        x = x.to(device)
        with torch.no_grad():
            target = model(x).argmax(1)
        path = x.repeat(n_steps, 1, 1, 1)  # (n_steps * B, C, H, W), step-major as RIG
        targets = target.repeat(n_steps)
        for i in range(0, path.shape[0], chunk):
            p = path[i : i + chunk].clone().requires_grad_()
            out = model(p).gather(1, targets[i : i + chunk, None]).sum()
            torch.autograd.grad(out, p)
    _sync(device)
    return time.perf_counter() - start


def no_file(model, loader, n_steps: int, device) -> float:
    """The run's work without its files: predictions and RIG's attribute per batch."""
    rig = get_method("rig")
    start = time.perf_counter()
    for x, _ in loader:
        x = x.to(device)
        with torch.no_grad():
            target = model(x).argmax(1)
        rig.attribute(model, x, target=target, n_steps=n_steps).cpu()
    _sync(device)
    return time.perf_counter() - start


def run(model, loader, n_steps: int, device, path: Path) -> float:
    start = time.perf_counter()
    attribute_dataset(model, loader, path, "rig", n_steps=n_steps, device=device, progress=False)
    return time.perf_counter() - start


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def single(args, root: Path) -> dict:
    """Best-of-``repeats`` times of the floor, the run without files, and the run."""
    device = torch.device(args.device)
    model = make_model(args.model).to(device)
    dataset, _ = image_dataset(make_folder(root, args.n_images, args.size))
    loader = DataLoader(dataset, batch_size=args.batch_size)
    chunk = get_method("rig").defaults["internal_batch_size"]
    times = {"floor": [], "no file": [], "run": []}
    run(model, loader, args.n_steps, device, root / "warm.h5")  # warm-up
    for _ in range(args.repeats):
        times["floor"].append(floor(model, loader, args.n_steps, chunk, device))
        times["no file"].append(no_file(model, loader, args.n_steps, device))
        times["run"].append(run(model, loader, args.n_steps, device, root / "maps.h5"))
    return {k: min(v) for k, v in times.items()}


def worker(args) -> None:
    """One torchrun process: the run from a barrier to the file; process 0 prints it."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    model = make_model(args.model)
    loader = DataLoader(image_dataset(args.worker)[0], batch_size=args.batch_size)
    out = Path(args.worker).parent / f"maps{dist.get_world_size()}.h5"
    dist.barrier()
    seconds = run(model, loader, args.n_steps, "cpu", out)
    if dist.get_rank() == 0:
        print(json.dumps({"seconds": seconds}))
    dist.destroy_process_group()


def torchrun(args, root: Path, n: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    cmd += [str(n), __file__, "--worker", str(root / "data"), "--model", args.model]
    cmd += ["--n-steps", str(args.n_steps), "--batch-size", str(args.batch_size)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cnn", help="cnn, resnet18, resnet50, ...")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--n-images", type=int, default=64)
    p.add_argument("--n-steps", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the one process")
    p.add_argument("--no-torchrun", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    torch.set_num_threads(args.threads)  # on a shared machine 2 threads can be far slower
    with tempfile.TemporaryDirectory() as tmp:
        t = single(args, Path(tmp))
        rows = [
            ["images/s (run)", args.n_images / t["run"]],
            ["run / floor (goal <= 1.15)", t["run"] / t["floor"]],
            ["run / no file (goal <= 1.05)", t["run"] / t["no file"]],
        ]
        if not args.no_torchrun:
            one, two = torchrun(args, Path(tmp), 1), torchrun(args, Path(tmp), 2)
            rows.append(["1 process / 2 processes (goal >= 1.7)", one / two])
            rows.append(["seconds, 1 and 2 processes", f"{one:.2f}, {two:.2f}"])
    print(f"{args.model} at {args.size} px, {args.n_images} images, RIG n_steps={args.n_steps}, "
          f"batch {args.batch_size}, {args.device}, {torch.get_num_threads()} threads, "
          f"seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))  # fmt: skip
    print(markdown_table(["measure", "value"], rows))


if __name__ == "__main__":
    main()
