"""Scratch vs fine-tuned: the "Intriguing properties revisited" stability study, runnable.

One residual network, two ways: trained from scratch on the target task, and pre-trained
on another task, then fine-tuned, with the same target budget. The test accuracy after
each target epoch (the ``history``) shows what pre-training buys; then
:func:`captum_rig.stability.compare_stability` puts them side by side (clean accuracy,
the certified Lipschitz upper bound and the local lower bound, average minimal
distortions under PGD's search, DeepFool, FAB, CW, their best per image, and Gaussian
noise; in L2 and, for PGD and FAB, in L∞), and the weight and feature-map spectra are
drawn layer by layer.

Two data paths:

- ``--data synthetic`` (default; offline, CPU, a few minutes): generated gratings. The
  source task has 16 classes (8 orientations × 2 spatial frequencies, at random
  positions, window sizes, phases, colours and contrasts); the target task has 4 other
  orientations, half-way between the source's, at a third frequency, and only
  ``--n-train`` labelled images. Oriented-edge features learnt on the source transfer.
- ``--data cifar10 --cifar-root DIR``: CIFAR-10 in torchvision's format (never
  downloaded) and a torchvision network (``--arch resnet50``) trained from scratch vs
  fine-tuned from ``--weights imagenet`` (read from the local torch hub cache, never
  downloaded) or from a state-dict file. Images are upsampled to ``--image-size`` inside
  the model, so distortions stay in CIFAR's own 32×32 pixels. Meant for a GPU.

Writes, all together or none, ``OUT/stability.md`` (the tables and each model's
per-block Lipschitz bounds), ``OUT/stability.csv``, ``OUT/stability.json`` (the table,
``history``, the per-stage ``seconds``, the settings and the layer spectra),
``OUT/history.png``, ``OUT/weight_norms.png``, ``OUT/weight_spectra.png`` and
``OUT/feature_map_spectra.png``.

Example:
    python examples/scratch_vs_finetuned.py --out runs/stability
    python examples/scratch_vs_finetuned.py --data cifar10 --cifar-root ~/data \\
        --arch resnet50 --weights imagenet --image-size 224 --epochs 5 --out runs/r50
"""

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from captum_rig.models import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    with_normalization,
)
from captum_rig.stability import (
    ATTACKS,
    check_stability_outputs,
    compare_stability,
    feature_map_spectra,
    weight_spectra,
    write_stability,
)
from captum_rig.viz import plot_layer_norms, plot_layer_spectra, save_figure

SOURCE = tuple((22.5 * i, f) for f in (3.0, 6.0) for i in range(8))
"""The source task's 16 classes: (orientation in degrees, cycles per image)."""
TARGET = tuple((11.25 + 45.0 * i, 4.5) for i in range(4))
"""The target task's 4 classes: orientations half-way between the source's, a new frequency."""
NORMS = ("L2", "Linf")
FIGURES = ("history.png", "weight_norms.png", "weight_spectra.png", "feature_map_spectra.png")

SMOKE_ARGV = [
    "--n-pretrain", "48", "--n-train", "24", "--n-test", "8", "--n-attack", "4",
    "--epochs", "2", "--pretrain-epochs", "1", "--width", "4", "--n-bisect", "2",
    "--steps", "2", "--n-iter", "2", "--attacks", "pgd,deepfool,gaussian", "--out", "{tmp}",
    "--quiet",
]  # fmt: skip


def _attacks(text: str) -> List[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names or any(a not in ATTACKS for a in names):
        raise argparse.ArgumentTypeError(f"comma-separated names from {', '.join(ATTACKS)}")
    return names


def _norms(text: str) -> List[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in NORMS for n in names) or len(set(names)) < len(names):
        raise argparse.ArgumentTypeError(f"comma-separated norms from {', '.join(NORMS)}")
    return names


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=("synthetic", "cifar10"), default="synthetic")
    p.add_argument("--cifar-root", help="folder holding cifar-10-batches-py/ (cifar10)")
    p.add_argument("--arch", default="resnet50", help="torchvision network (cifar10)")
    p.add_argument(
        "--weights", default="imagenet",
        help="pre-trained weights of --arch (cifar10): 'imagenet' (local torch hub cache "
        "only) or a state-dict file",
    )  # fmt: skip
    p.add_argument("--image-size", type=int, default=32, help="network input size (cifar10)")
    p.add_argument("--n-pretrain", type=int, default=3000, help="source images (synthetic)")
    p.add_argument("--n-train", type=int, default=160, help="labelled target images")
    p.add_argument("--n-test", type=int, default=400, help="held-out target images (accuracy)")
    p.add_argument("--n-attack", type=int, default=100, help="test images attacked")
    p.add_argument("--pretrain-epochs", type=int, default=6)
    p.add_argument("--epochs", type=int, default=15, help="target epochs, both models")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--width", type=int, default=8, help="channels of the small ResNet")
    p.add_argument("--attacks", type=_attacks, default=list(ATTACKS), help="default: all")
    p.add_argument(
        "--norms", type=_norms, default=list(NORMS),
        help="distortion norms, each with the attacks that minimise it (default: L2,Linf)",
    )  # fmt: skip
    p.add_argument("--n-bisect", type=int, default=8, help="bisection steps of the searches")
    p.add_argument("--steps", type=int, default=10, help="PGD steps per radius")
    p.add_argument("--n-iter", type=int, default=50, help="power iterations per layer (estimates)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--out", default="runs/scratch_vs_finetuned")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    for name in ("n_pretrain", "n_train", "n_test", "n_attack", "epochs", "batch_size",
                 "width", "n_bisect", "steps", "n_iter", "threads", "image_size"):  # fmt: skip
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.pretrain_epochs < 0:
        p.error("--pretrain-epochs must be >= 0")
    if args.data == "cifar10" and not args.cifar_root:
        p.error("--data cifar10 needs --cifar-root")
    return args


# --------------------------------------------------------------------------- models


def small_resnet(num_classes: int, width: int) -> nn.Module:
    """Three torchvision BasicBlocks (width, 2·width, 4·width channels) for 32×32 images."""
    from torchvision.models.resnet import BasicBlock

    def down(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), nn.BatchNorm2d(c_out))

    w = width
    net = nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
        BasicBlock(w, w),
        BasicBlock(w, 2 * w, stride=2, downsample=down(w, 2 * w)),
        BasicBlock(2 * w, 4 * w, stride=2, downsample=down(2 * w, 4 * w)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, num_classes),
    )  # fmt: skip
    return with_normalization(net, (0.5,) * 3, (0.25,) * 3)


def new_head(model: nn.Module, num_classes: int) -> nn.Module:
    """A fresh last ``nn.Linear`` with ``num_classes`` outputs (the fine-tuning head)."""
    name, last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Linear(last.in_features, num_classes))
    return model


def imagenet_state_dict(arch: str) -> dict:
    """torchvision's ImageNet weights of ``arch`` from the local torch hub cache, no download."""
    from torchvision.models import get_model_weights

    url = get_model_weights(arch).DEFAULT.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise SystemExit(
            f"no ImageNet weights for {arch} at {path}; put torchvision's file there "
            f"({url}) or pass --weights FILE. Nothing is downloaded."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def cifar_models(args: argparse.Namespace) -> Tuple[nn.Module, nn.Module]:
    """``(scratch, pre-trained)`` torchvision networks taking 32×32 [0, 1] images."""
    import torchvision

    scratch = torchvision.models.get_model(args.arch, weights=None, num_classes=10)
    pretrained = torchvision.models.get_model(args.arch, weights=None)
    if args.weights == "imagenet":
        state = imagenet_state_dict(args.arch)
    else:
        state = torch.load(args.weights, map_location="cpu", weights_only=True)
    pretrained.load_state_dict(state)
    new_head(pretrained, 10)

    def wrap(net: nn.Module, mean, std) -> nn.Module:
        layers = [Normalize(mean, std), net]
        if args.image_size != 32:
            resize = nn.Upsample(size=args.image_size, mode="bilinear", align_corners=False)
            layers.insert(0, resize)
        return nn.Sequential(*layers)

    return wrap(scratch, CIFAR10_MEAN, CIFAR10_STD), wrap(pretrained, IMAGENET_MEAN, IMAGENET_STD)


# --------------------------------------------------------------------------- data, training


def gratings(
    n: int, classes: Sequence[Tuple[float, float]], seed: int, size: int = 32
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``n`` images ``(n, 3, size, size)`` in [0, 1] and balanced, shuffled labels.

    Class ``c`` is a sine grating of orientation ``classes[c][0]`` degrees (± 4) and
    ``classes[c][1]`` cycles per image (± 7.5 %), random phase, under a Gaussian window
    of random centre and width, in a random colour and contrast on a random
    background, plus pixel noise (std 0.1). Deterministic given the arguments.
    """
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % len(classes))[torch.randperm(n, generator=g)]
    table = torch.tensor(classes, dtype=torch.float32)[labels]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape or (n,), generator=g)

    theta = (table[:, 0] + uniform(-4, 4)) * math.pi / 180
    freq = table[:, 1] * uniform(0.925, 1.075)
    ys, xs = torch.meshgrid(torch.arange(size) / size, torch.arange(size) / size, indexing="ij")

    def per_image(t: torch.Tensor) -> torch.Tensor:
        return t.view(-1, 1, 1)

    along = xs * per_image(theta.cos()) + ys * per_image(theta.sin())
    wave = torch.sin(2 * math.pi * per_image(freq) * along + per_image(uniform(0, 2 * math.pi)))
    cx, cy, width = uniform(0.2, 0.8), uniform(0.2, 0.8), uniform(0.15, 0.4)
    window = torch.exp(-((xs - per_image(cx)) ** 2 + (ys - per_image(cy)) ** 2)
                       / (2 * per_image(width) ** 2))  # fmt: skip
    background = uniform(0.25, 0.75, n, 3, 1, 1)
    colour = uniform(-0.5, 0.5, n, 3, 1, 1)
    colour = colour + 0.5 * colour.sign()
    contrast = uniform(0.2, 0.5, n, 1, 1, 1)
    images = background + contrast * colour * (wave * window).unsqueeze(1)
    images = images + 0.1 * torch.randn(images.shape, generator=g)
    return images.clamp(0, 1), labels


def cifar_split(root: str, train: bool, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    from captum_rig.data import load_cifar10

    data = load_cifar10(root, train=train)
    n = min(n, len(data))
    images = torch.stack([data[i][0] for i in range(n)])
    labels = torch.tensor([int(data[i][1]) for i in range(n)])
    return images, labels


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device) -> float:
    """Top-1 accuracy in eval mode, batches of 256."""
    model.eval()
    with torch.no_grad():
        correct = sum(
            int((model(x.to(device)).argmax(1).cpu() == y).sum())
            for x, y in zip(images.split(256), labels.split(256))
        )
    return correct / len(labels)


def train(model, data, epochs, lr, args, device, what, test=None) -> List[float]:
    """SGD with momentum and a cosine schedule, random flips; the model ends in eval mode.

    Returns the test accuracy after each epoch when ``test = (images, labels)`` is given.
    """
    images, labels = data
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * -(-len(images) // args.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    generator = torch.Generator().manual_seed(args.seed)
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), args.batch_size):
            index = order[start : start + args.batch_size]
            x, y = images[index].to(device), labels[index].to(device)
            flip = torch.rand(len(x), generator=generator).to(device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if test is not None:
            history.append(round(accuracy(model, *test, device), 4))
        if not args.quiet:
            tail = f", test accuracy {history[-1]:.3f}" if history else ""
            print(f"  {what}: epoch {epoch + 1}/{epochs}, loss {loss.item():.3f}{tail}", flush=True)
    model.eval()
    return history


def build_models(args: argparse.Namespace, device: torch.device, seconds: Dict[str, float]):
    """``(models, history, test images, test labels)`` for the chosen data path."""
    clock = time.perf_counter()
    if args.data == "synthetic":
        source = gratings(args.n_pretrain, SOURCE, args.seed + 10)
        target = gratings(args.n_train, TARGET, args.seed + 1)
        test = gratings(args.n_test, TARGET, args.seed + 2)
        torch.manual_seed(args.seed)
        scratch = small_resnet(len(TARGET), args.width)
        torch.manual_seed(args.seed)
        pretrained = small_resnet(len(SOURCE), args.width)
        train(pretrained, source, args.pretrain_epochs, 0.05, args, device, "pre-train")
        finetuned = new_head(copy.deepcopy(pretrained), len(TARGET)).to(device)
    else:
        target = cifar_split(args.cifar_root, True, args.n_train)
        test = cifar_split(args.cifar_root, False, args.n_test)
        torch.manual_seed(args.seed)
        scratch, finetuned = cifar_models(args)
    seconds["pre-train"] = time.perf_counter() - clock
    history = {}
    for name, model, lr in (("scratch", scratch, 0.05), ("finetuned", finetuned, 0.01)):
        clock = time.perf_counter()
        history[name] = train(model, target, args.epochs, lr, args, device, name, test)
        seconds[name] = time.perf_counter() - clock
    return {"scratch": scratch, "finetuned": finetuned}, history, test


# --------------------------------------------------------------------------- main


def history_figure(history: Dict[str, List[float]], n_train: int) -> Any:
    """Test accuracy after each target epoch, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, accuracies in history.items():
        ax.plot(range(1, len(accuracies) + 1), accuracies, marker="o", label=name)
    ax.set_xlabel(f"target epoch ({n_train} labelled images)")
    ax.set_ylabel("held-out test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def figures(models: Dict[str, nn.Module], images: torch.Tensor, history, args) -> tuple:
    """``(weight spectra, feature-map spectra, {file name: writer})``."""
    weights = {name: weight_spectra(m) for name, m in models.items()}
    maps = {name: feature_map_spectra(m, images[:16]) for name, m in models.items()}
    norms = "largest singular value of each weight"
    drawn = {
        "history.png": history_figure(history, args.n_train),
        "weight_norms.png": plot_layer_norms(weights, title=norms)[0],
        "weight_spectra.png": plot_layer_spectra(
            weights, max_layers=4, title="weight singular values"
        )[0],
        "feature_map_spectra.png": plot_layer_spectra(
            maps, max_layers=4, title="feature-map singular values"
        )[0],
    }

    def writer(fig: Any):
        return lambda path: save_figure(fig, path, dpi=110)

    writers = {name: writer(fig) for name, fig in drawn.items()}
    return weights, maps, writers


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)  # main() may run in-process (tests)


def _run(args: argparse.Namespace) -> int:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = check_stability_outputs(Path(args.out), FIGURES, name="--out")
    t0, seconds = time.perf_counter(), {}
    models, history, (images, labels) = build_models(args, device, seconds)
    images, labels = images[: args.n_attack], labels[: args.n_attack]
    clock = time.perf_counter()
    table = compare_stability(  # each attack in the norms of --norms it minimises
        models, images, labels, attacks=args.attacks, norm=args.norms, n_bisect=args.n_bisect,
        steps=args.steps, n_iter=args.n_iter, seed=args.seed, batch_size=args.batch_size,
        progress=not args.quiet,
    )  # fmt: skip
    seconds["stability"] = time.perf_counter() - clock
    clock = time.perf_counter()
    weights, maps, writers = figures(models, images, history, args)
    seconds["spectra"] = time.perf_counter() - clock
    seconds["total"] = time.perf_counter() - t0
    data = "generated gratings" if args.data == "synthetic" else f"CIFAR-10 in {args.cifar_root}"
    summary = {
        "data": data, "n_images": len(images), "history": history,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "quiet")},
        "weight_spectra": weights, "feature_map_spectra": maps,
    }  # fmt: skip
    write_stability(out, table, summary, lipschitz=True, files=writers)
    if not args.quiet:
        print(table.to_markdown())
        print("history:", history)
        print(f"wrote {out}: stability.md, .csv, .json and {len(writers)} figures "
              f"in {seconds['total']:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
