"""Train a classifier on rank-k (or high-rank-only) images; test on full-rank images.

The paper's Sec. 5 (Tables 2-3): train on images truncated to their top ``k`` singular
values per channel (``--rank K``), or with those removed (``--rank K --reverse``), and
report clean top-1 accuracy on the *full-rank* test set. Without ``--rank`` the model is
trained normally. Truncated training images are computed once and cached on disk
(:class:`captum_rig.transforms.RankTruncatedDataset`); augmentation (random crop with
4-pixel padding, horizontal flip) is applied after the truncation and preserves rank.

Defaults are the common CIFAR-10 recipe: ResNet-18 with a 3×3 stem, SGD with momentum
0.9, learning rate 0.1, weight decay 5e-4, batch 128, cosine schedule, 200 epochs. The
paper does not restate its exact schedule, so these are the usual values, not the
paper's. Shrink with ``--epochs``, ``--limit-train``, ``--batch-size``, ``--model``.

Data, offline only:
  --data cifar10:PATH   CIFAR-10 in torchvision's format under PATH (cifar-10-batches-py)
  --data synthetic      the seeded shapes of captum_rig.synthetic (6 classes)

Outputs in ``--out``: ``checkpoint.pt`` (after every epoch; ``--resume`` continues from
it), ``model.pt`` (the final model's state_dict, normalization included) and
``metrics.json``; all written atomically, tensors loadable with ``weights_only=True``.

Examples:
    python examples/train_lowrank.py --data cifar10:~/data --rank 8 --out runs/rank8
    python examples/train_lowrank.py --data synthetic --model small_cnn --epochs 5 \\
        --rank 8 --reverse --out runs/synthetic-high
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from captum_rig.data import load_cifar10
from captum_rig.lowrank import drop_top_ranks, low_rank
from captum_rig.models import CIFAR10_MEAN, CIFAR10_STD, MODEL_NAMES, cifar_model
from captum_rig.synthetic import SyntheticShapes
from captum_rig.transforms import RankTruncatedDataset

SYNTHETIC_MEAN = (0.5, 0.5, 0.5)
SYNTHETIC_STD = (0.25, 0.25, 0.25)
# what must agree between a checkpoint and a resumed run
RESUME_KEYS = ("data", "rank", "reverse", "model", "limit_train", "seed", "synthetic_cue")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Defaults are the common CIFAR-10 recipe; the paper does not restate its "
        "exact training schedule.",
    )
    p.add_argument("--data", default="synthetic", help="cifar10:PATH or synthetic")
    p.add_argument("--rank", type=int, default=None, help="train on rank-K images")
    p.add_argument(
        "--reverse", action="store_true", help="with --rank: drop the top K ranks instead"
    )
    p.add_argument("--model", default="resnet18", choices=MODEL_NAMES)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", choices=("cosine", "step"), default="cosine")
    p.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    p.add_argument("--limit-train", type=int, default=None, help="use the first N images")
    p.add_argument("--limit-test", type=int, default=None, help="use the first N images")
    p.add_argument("--synthetic-train", type=int, default=10000, help="synthetic train size")
    p.add_argument("--synthetic-test", type=int, default=2000, help="synthetic test size")
    p.add_argument("--synthetic-cue", type=float, default=0.0, help="high-rank cue of make_shapes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="runs/train_lowrank", help="output folder")
    p.add_argument("--cache-dir", default=None, help="rank cache (default: OUT/cache)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="E",
        help="stop after epoch E (the schedule still spans --epochs); --resume continues",
    )
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "synthetic_train", "synthetic_test"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("limit_train", "limit_test", "threads", "stop_after"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.rank is not None and args.rank < 0:
        p.error("--rank must be >= 0")
    if args.reverse and args.rank is None:
        p.error("--reverse needs --rank")
    return args


class _Mapped(Dataset):
    """Applies ``transform`` to the images of an ``(image, label)`` dataset."""

    def __init__(self, dataset: Dataset, transform: Any) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Tuple[Any, Any]:
        image, label = self.dataset[i]
        return (self.transform(image) if self.transform else image), label


def _first(dataset: Dataset, n: Optional[int]) -> Dataset:
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))


def load_data(args: argparse.Namespace) -> Dict[str, Any]:
    """Train and test datasets of [0, 1] tensors, class count, normalization, cache key."""
    if args.data == "synthetic":
        kw = dict(cue=args.synthetic_cue)
        train = SyntheticShapes(args.synthetic_train, seed=args.seed, **kw)
        test = SyntheticShapes(args.synthetic_test, seed=args.seed + 10_000, **kw)
        key = f"synthetic-seed{args.seed}-n{args.synthetic_train}-cue{args.synthetic_cue:g}"
        info = dict(num_classes=len(train.classes), mean=SYNTHETIC_MEAN, std=SYNTHETIC_STD)
    elif args.data.startswith("cifar10:"):
        root = os.path.expanduser(args.data[len("cifar10:") :])
        if not root:
            raise ValueError("--data cifar10:PATH needs a PATH")
        train, test = load_cifar10(root, train=True), load_cifar10(root, train=False)
        key = "cifar10-train"
        info = dict(num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    else:
        raise ValueError(f"--data must be cifar10:PATH or synthetic, got {args.data!r}")
    train, test = _first(train, args.limit_train), _first(test, args.limit_test)
    if args.limit_train is not None:
        key += f"-first{len(train)}"
    return dict(train=train, test=test, key=key, **info)


def _augmentation(enabled: bool):
    if not enabled:
        return None
    from torchvision import transforms as T

    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])


def _atomic_save(obj: Any, path: Path, as_json: bool = False) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if as_json:
            with open(tmp, "w") as f:
                json.dump(obj, f, indent=2)
        else:
            torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 256, truncate=None
) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (optionally truncating each batch)."""
    model.eval()
    correct = total = 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        x, y = x.to(device), y.to(device)
        if truncate is not None:
            x = truncate(x)
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def learning_rate(epoch: int, args: argparse.Namespace) -> float:
    """The learning rate of 0-based ``epoch``: a closed form, so resuming is exact."""
    if args.schedule == "cosine":
        return args.lr * 0.5 * (1 + math.cos(math.pi * epoch / args.epochs))
    return args.lr * 0.1 ** sum(epoch >= int(args.epochs * f) for f in (0.5, 0.75))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the training; returns 0, or 2 after printing a one-line error."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    try:
        return _run(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)  # main() may run in-process (tests)


def _run(args: argparse.Namespace) -> int:
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("resume", "quiet", "stop_after")}

    data = load_data(args)
    train_set = _train_set(args, data, out, device)
    torch.manual_seed(args.seed)
    model = cifar_model(args.model, data["num_classes"], data["mean"], data["std"]).to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
    )
    ckpt_path = out / "checkpoint.pt"
    history: List[Dict[str, float]] = []
    start = 0
    if args.resume and ckpt_path.exists():
        history, start = _resume(ckpt_path, config, model, opt, device)
        say(f"resumed from {ckpt_path} after epoch {start}")

    stop = args.epochs if args.stop_after is None else min(args.stop_after, args.epochs)
    for epoch in range(start, stop):
        row = _train_epoch(args, epoch, model, opt, train_set, device)
        history.append(row)
        say(
            f"epoch {epoch + 1}/{args.epochs} loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.3f} lr {row['lr']:.4g} ({row['seconds']:.1f}s)"
        )
        state = dict(
            model=model.state_dict(),
            optimizer=opt.state_dict(),
            epoch=epoch + 1,
            history=history,
            config=config,
        )
        _atomic_save(state, ckpt_path)

    metrics: Dict[str, Any] = dict(
        config=config,
        epochs_done=len(history),
        n_train=len(train_set),
        n_test=len(data["test"]),
        history=history,
        test_acc=evaluate(model, data["test"], device),
    )
    if args.rank is not None:
        k = args.rank
        cut = (lambda x: drop_top_ranks(x, k)) if args.reverse else (lambda x: low_rank(x, k))
        metrics["test_acc_at_train_rank"] = evaluate(model, data["test"], device, truncate=cut)
    _atomic_save(model.state_dict(), out / "model.pt")
    _atomic_save(metrics, out / "metrics.json", as_json=True)
    say(f"full-rank test accuracy {metrics['test_acc']:.4f} -> {out / 'metrics.json'}")
    return 0


def _train_set(
    args: argparse.Namespace, data: Dict[str, Any], out: Path, device: torch.device
) -> Dataset:
    """The training images: rank-truncated once (cached) with ``--rank``, augmented on access."""
    augment = _augmentation(not args.no_augment)
    if args.rank is None:
        return _Mapped(data["train"], augment)
    return RankTruncatedDataset(
        data["train"],
        args.rank,
        reverse=args.reverse,
        cache_dir=args.cache_dir or out / "cache",
        key=data["key"],
        transform=augment,
        device=device,
    )


def _resume(
    path: Path,
    config: Dict[str, Any],
    model: nn.Module,
    opt: torch.optim.Optimizer,
    device: torch.device,
) -> Tuple[List[Dict[str, float]], int]:
    """Loads the checkpoint into ``model`` and ``opt``; its history and epochs done."""
    state = torch.load(path, map_location=device, weights_only=True)
    theirs = state.get("config", {})
    diff = [k for k in RESUME_KEYS if theirs.get(k) != config.get(k)]
    if diff:
        raise ValueError(
            f"--resume: {path} was written with other settings ("
            + ", ".join(f"{k}={theirs.get(k)!r} vs {config.get(k)!r}" for k in diff)
            + ")"
        )
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return list(state["history"]), int(state["epoch"])


def _train_epoch(
    args: argparse.Namespace,
    epoch: int,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    train_set: Dataset,
    device: torch.device,
) -> Dict[str, float]:
    """One epoch of SGD over ``train_set``; its row of the history."""
    t0 = time.time()
    for group in opt.param_groups:
        group["lr"] = learning_rate(epoch, args)
    # per-epoch seeding: a resumed run draws the same batches and augmentations
    torch.manual_seed(args.seed * 100_003 + epoch)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=False)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    loss_sum = correct = total = 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    row = dict(
        epoch=epoch + 1,
        train_loss=loss_sum / total,
        train_acc=correct / total,
        lr=opt.param_groups[0]["lr"],
        seconds=time.time() - t0,
    )
    if not math.isfinite(row["train_loss"]):
        raise ValueError(f"training diverged at epoch {epoch + 1} (loss {row['train_loss']})")
    return row


if __name__ == "__main__":
    sys.exit(main())
