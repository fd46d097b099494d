"""Scratch vs fine-tuned: the "Intriguing properties revisited" stability study, runnable.

One residual network, two ways: trained from scratch on the target task, and pre-trained
on another task, then fine-tuned. :func:`captum_rig.stability.compare_stability` puts
them side by side (clean accuracy, average minimal distortion under PGD and Gaussian
noise, the Lipschitz upper bound through the residual graph), and the weight and
feature-map spectra are drawn layer by layer.

Two data paths:

- ``--data synthetic`` (default; offline, CPU, several minutes): a small ResNet is
  pre-trained on generated shape images of three classes (disk, square, triangle) and
  fine-tuned on three other shapes (cross, ring, diamond), against the same network
  trained on those from scratch.
- ``--data cifar10 --cifar-root DIR``: CIFAR-10 in torchvision's format (never
  downloaded) and a torchvision network (``--arch resnet50``) trained from scratch vs
  fine-tuned from ``--weights imagenet`` (read from the local torch hub cache, never
  downloaded) or from a state-dict file. Images are upsampled to ``--image-size`` inside
  the model, so distortions stay in CIFAR's own 32×32 pixels. Meant for a GPU.

Writes ``OUT/stability.md`` (the table and each model's per-block Lipschitz bounds),
``OUT/stability.csv``, ``OUT/stability.json`` (the table, the layer spectra) through
:func:`captum_rig.stability.write_stability`, and ``OUT/weight_spectra.png`` and
``OUT/feature_map_spectra.png``.

Example:
    python examples/scratch_vs_finetuned.py --out runs/stability
    python examples/scratch_vs_finetuned.py --data cifar10 --cifar-root ~/data \\
        --arch resnet50 --weights imagenet --image-size 224 --epochs 5 --out runs/r50
"""

import argparse
import copy
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from captum_rig._context import atomic_path
from captum_rig.models import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    with_normalization,
)
from captum_rig.stability import (
    compare_stability,
    feature_map_spectra,
    weight_spectra,
    write_stability,
)
from captum_rig.synthetic import make_shapes
from captum_rig.viz import plot_layer_norms, plot_layer_spectra

PRETRAIN_SHAPES = ("disk", "square", "triangle")
TARGET_SHAPES = ("cross", "ring", "diamond")

SMOKE_ARGV = [
    "--n-pretrain", "48", "--n-train", "24", "--n-test", "8", "--epochs", "1",
    "--pretrain-epochs", "1", "--width", "4", "--n-bisect", "2", "--steps", "2",
    "--n-iter", "2", "--out", "{tmp}", "--quiet",
]  # fmt: skip


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
    p.add_argument("--n-pretrain", type=int, default=4000, help="pre-training images (synthetic)")
    p.add_argument("--n-train", type=int, default=600, help="target-task training images")
    p.add_argument("--n-test", type=int, default=100, help="test images (accuracy, attacks)")
    p.add_argument("--pretrain-epochs", type=int, default=12)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width", type=int, default=16, help="channels of the small ResNet")
    p.add_argument("--n-bisect", type=int, default=8, help="bisection steps of the attacks")
    p.add_argument("--steps", type=int, default=10, help="PGD steps per radius")
    p.add_argument("--n-iter", type=int, default=50, help="power iterations per conv")
    p.add_argument("--certified", action="store_true", help="Gram-iteration bounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--out", default="runs/scratch_vs_finetuned")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    for name in ("n_pretrain", "n_train", "n_test", "epochs", "batch_size", "width",
                 "n_bisect", "steps", "n_iter", "threads", "image_size"):  # fmt: skip
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


def shapes_task(n: int, seed: int, shapes: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    batch = make_shapes(n, size=32, seed=seed, shapes=shapes)
    return batch.images, batch.labels


def cifar_split(root: str, train: bool, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    from captum_rig.data import load_cifar10

    data = load_cifar10(root, train=train)
    n = min(n, len(data))
    images = torch.stack([data[i][0] for i in range(n)])
    labels = torch.tensor([int(data[i][1]) for i in range(n)])
    return images, labels


def train(model, images, labels, epochs, lr, args, device, what) -> nn.Module:
    """SGD with momentum and a cosine schedule, random flips; returns the model in eval mode."""
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * -(-len(images) // args.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(epochs):
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
        if not args.quiet:
            print(f"  {what}: epoch {epoch + 1}/{epochs}, loss {loss.item():.3f}", flush=True)
    return model.eval()


def build_models(args: argparse.Namespace, device: torch.device):
    """``(scratch, fine-tuned, test images, test labels)`` for the chosen data path."""
    if args.data == "synthetic":
        x_pre, y_pre = shapes_task(args.n_pretrain, args.seed + 10, PRETRAIN_SHAPES)
        x_tr, y_tr = shapes_task(args.n_train, args.seed + 1, TARGET_SHAPES)
        x_te, y_te = shapes_task(args.n_test, args.seed + 2, TARGET_SHAPES)
        torch.manual_seed(args.seed)
        scratch = small_resnet(len(TARGET_SHAPES), args.width)
        torch.manual_seed(args.seed)
        pretrained = small_resnet(len(PRETRAIN_SHAPES), args.width)
        train(pretrained, x_pre, y_pre, args.pretrain_epochs, 0.05, args, device, "pre-train")
        finetuned = new_head(copy.deepcopy(pretrained), len(TARGET_SHAPES)).to(device)
    else:
        x_tr, y_tr = cifar_split(args.cifar_root, True, args.n_train)
        x_te, y_te = cifar_split(args.cifar_root, False, args.n_test)
        torch.manual_seed(args.seed)
        scratch, finetuned = cifar_models(args)
    train(scratch, x_tr, y_tr, args.epochs, 0.05, args, device, "scratch")
    train(finetuned, x_tr, y_tr, args.epochs, 0.01, args, device, "fine-tune")
    return scratch, finetuned, x_te, y_te


# --------------------------------------------------------------------------- main


def write_outputs(
    args: argparse.Namespace,
    out: Path,
    table: Any,
    models: Dict[str, nn.Module],
    images: torch.Tensor,
) -> None:
    """stability.md (with each model's per-block bounds), .csv, .json, and two figures."""
    weights = {name: weight_spectra(m) for name, m in models.items()}
    maps = {name: feature_map_spectra(m, images[:16]) for name, m in models.items()}
    data = "generated shapes" if args.data == "synthetic" else f"CIFAR-10 in {args.cifar_root}"
    summary = {"data": data, "n_images": len(images), "weight_spectra": weights,
               "feature_map_spectra": maps}  # fmt: skip
    write_stability(out, table, summary, lipschitz=True)
    fig, _ = plot_layer_norms(weights, title="largest singular value of each weight")
    with atomic_path(out / "weight_spectra.png") as tmp:
        fig.savefig(tmp, dpi=110)
    fig, _ = plot_layer_spectra(maps, max_layers=4, title="feature-map singular values")
    with atomic_path(out / "feature_map_spectra.png") as tmp:
        fig.savefig(tmp, dpi=110)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scratch, finetuned, images, labels = build_models(args, device)
    models = {"scratch": scratch, "finetuned": finetuned}
    table = compare_stability(
        models, images, labels, n_bisect=args.n_bisect, steps=args.steps,
        n_iter=args.n_iter, certified=args.certified, seed=args.seed,
        batch_size=args.batch_size, progress=not args.quiet,
    )  # fmt: skip
    write_outputs(args, out, table, models, images)
    if not args.quiet:
        print(table.to_markdown())
        print(f"wrote {out}/stability.csv, .md, .json and two figures "
              f"in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
