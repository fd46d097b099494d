#!/usr/bin/env python
"""Rebuilds the demo's shipped assets in ``captum_rig/assets/``: photos and model weights.

Run from the repository root::

    python scripts/make_demo_assets.py            # photos and both models
    python scripts/make_demo_assets.py --photos   # photos only (no training)
    python scripts/make_demo_assets.py --out /tmp/assets --n-train 120 --epochs 1  # a try

Photos: three photographs bundled with scikit-image, each public domain or CC0 (see
``captum_rig/assets/PHOTOS_LICENSE.md``), centre-cropped to a square and resized to
128×128 RGB PNG.

Models: two :func:`captum_rig.models.build_demo_model` CNNs trained on the seeded synthetic
shapes (:func:`captum_rig.synthetic.make_shapes`, train seed 1, test seed 2): ``natural``
on the images as they are, ``lowrank8`` on their rank-8 approximations (8 of 32 ranks,
:func:`captum_rig.low_rank`). Weights are saved as plain ``state_dict`` files that load
with ``torch.load(..., weights_only=True)``, together with ``demo_models.json`` (training
settings and test accuracies). Seeded and deterministic up to the CPU's float
reductions; about a minute per model on two cores.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from captum_rig import low_rank
from captum_rig._context import atomic_path
from captum_rig.data import PHOTOS
from captum_rig.demo import SHAPES_TEST_SEED
from captum_rig.metrics import accuracy
from captum_rig.models import ASSETS, DEMO_MODELS, build_demo_model
from captum_rig.synthetic import make_shapes

PHOTO_SIZE = 128
TRAIN_SEED = 1
N_TRAIN = 3000
EPOCHS = 6
BATCH = 64
LOW_RANK = 8


def _atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def make_photos(out: Path = ASSETS, size: int = PHOTO_SIZE) -> None:
    """Writes the photos: centre square crop, Lanczos resize to ``size``×``size``."""
    import skimage.data

    for name, info in PHOTOS.items():
        array = getattr(skimage.data, info["skimage"])()
        h, w = array.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(array[top : top + side, left : left + side]).convert("RGB")
        crop = crop.resize((size, size), Image.Resampling.LANCZOS)
        _atomic(out / f"{name}.png", lambda tmp, im=crop: im.save(tmp, format="PNG"))
        print(f"wrote {name}.png ({size}x{size}) from skimage.data.{info['skimage']}()")


def train_model(
    images: torch.Tensor, labels: torch.Tensor, seed: int, epochs: int = EPOCHS
) -> torch.nn.Module:
    """Adam with a one-cycle schedule, plain cross-entropy, no augmentation."""
    torch.manual_seed(seed)
    model = build_demo_model()
    steps = epochs * ((len(images) + BATCH - 1) // BATCH)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(images))
        for i in range(0, len(images), BATCH):
            idx = perm[i : i + BATCH]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def make_models(out: Path = ASSETS, n_train: int = N_TRAIN, epochs: int = EPOCHS) -> dict:
    """Trains and writes both demo models; returns their metadata."""
    train = make_shapes(n_train, seed=TRAIN_SEED)
    test = make_shapes(600, seed=SHAPES_TEST_SEED)
    sets = {"natural": train.images, "lowrank8": low_rank(train.images, LOW_RANK)}
    meta = {}
    for i, (name, images) in enumerate(sets.items()):
        t0 = time.perf_counter()
        model = train_model(images, train.labels, seed=i, epochs=epochs)
        seconds = time.perf_counter() - t0
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        _atomic(out / DEMO_MODELS[name], lambda tmp, s=state: torch.save(s, tmp))
        acc = accuracy(model, test.images, test.labels)
        acc_lr = accuracy(model, low_rank(test.images, LOW_RANK), test.labels)
        meta[name] = {
            "file": DEMO_MODELS[name],
            "trained_on": "images" if name == "natural" else f"rank-{LOW_RANK} images",
            "test_accuracy": round(acc, 4),
            f"test_accuracy_rank{LOW_RANK}": round(acc_lr, 4),
            "train_seconds": round(seconds, 1),
        }
        print(
            f"{name}: test acc {acc:.3f} (rank-{LOW_RANK} test images {acc_lr:.3f}), "
            f"{seconds:.0f} s"
        )
    meta["_settings"] = {
        "dataset": "captum_rig.synthetic.make_shapes(size=32)",
        "n_train": n_train,
        "train_seed": TRAIN_SEED,
        "n_test": 600,
        "test_seed": SHAPES_TEST_SEED,
        "epochs": epochs,
        "batch_size": BATCH,
        "optimizer": "Adam, OneCycleLR max_lr=1e-2",
        "torch": torch.__version__,
    }
    text = json.dumps(meta, indent=2) + "\n"
    _atomic(out / "demo_models.json", lambda tmp: Path(tmp).write_text(text))
    return meta


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", action="store_true", help="only the photos")
    parser.add_argument("--models", action="store_true", help="only the models")
    parser.add_argument("--out", type=Path, default=ASSETS, help="folder (default: the package's)")
    parser.add_argument("--n-train", type=int, default=N_TRAIN, help="training images per model")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="training epochs per model")
    args = parser.parse_args(argv)
    np.random.seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    both = not (args.photos or args.models)
    if args.photos or both:
        make_photos(args.out)
    if args.models or both:
        make_models(args.out, args.n_train, args.epochs)


if __name__ == "__main__":
    main()
