"""The paper's rank findings in miniature, offline, on generated data (a few minutes on CPU).

A small synthetic study, not ImageNet or CIFAR-10: :func:`captum_rig.synthetic.make_shapes`
images (six shape classes, 32×32) carrying a planted high-rank cue (class-coloured pixel
noise). Two small CNNs are trained: one on full-rank images ("natural"), one on their
rank-8 copies ("low-rank"). Then the rank spectra (paper Algorithm 1) of both, on
full-rank test images truncated to rank k (natural direction) and with the top k ranks
removed (reverse direction). Expected (paper Sec. 4-5): the low-rank-trained model keeps
more accuracy at low ranks; the natural model also classifies images whose top ranks are
gone, i.e. it uses information in ranks the low-rank model never saw.

Writes ``OUT/miniature_study.json`` and ``OUT/miniature_study.png`` (default
``runs/miniature_study``). The documentation's copies live in ``docs/img``, tracked by
git: writing there takes ``--update-docs`` (any other folder holding those two tracked
files is refused too), so a run never replaces them by accident.

Example:
    python examples/miniature_study.py --out runs/miniature_study
    python examples/miniature_study.py --out docs/img --update-docs   # the docs' figure
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from captum_rig.lowrank import low_rank
from captum_rig.models import SmallCNN, with_normalization
from captum_rig.spectrum import rank_spectrum
from captum_rig.synthetic import make_shapes

RANKS = [1, 2, 4, 8, 16, 32]
REVERSE_RANKS = [0, 1, 2, 4, 8, 16, 24]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-rank", type=int, default=8)
    p.add_argument("--cue", type=float, default=0.1, help="strength of the high-rank cue")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", default="runs/miniature_study")
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="allow replacing files tracked by git (the documentation's docs/img copies)",
    )
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    tracked = _tracked(Path(args.out))
    if tracked and not args.update_docs:
        p.error(
            f"--out {args.out} holds files tracked by git ({', '.join(tracked)}): pass "
            "--update-docs to replace them, or choose another folder"
        )
    for name in ("n_train", "n_test", "epochs", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 1 <= args.train_rank <= 32:
        p.error("--train-rank must be in 1..32")
    return args


def _tracked(out: Path) -> list:
    """The output files already in ``out`` that git tracks (none outside a repository)."""
    names = ("miniature_study.json", "miniature_study.png")
    existing = [out / name for name in names if (out / name).is_file()]
    if not existing:
        return []
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--", *[p.name for p in existing]],
            cwd=out, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(set(listed.stdout.split())) if listed.returncode == 0 else []


def train(images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    """SmallCNN, SGD + one-cycle schedule, random horizontal flips; returns it in eval mode."""
    torch.manual_seed(seed)
    model = with_normalization(SmallCNN(6), (0.5,) * 3, (0.25,) * 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    batch = 128
    steps = epochs * ((len(images) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(images))
        for i in range(0, len(images), batch):
            idx = perm[i : i + batch]
            x = images[idx]
            flip = torch.rand(len(idx)) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            loss = nn.functional.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def plot(results: Dict[str, Dict[str, list]], path: Path, train_rank: int, chance: float):
    """Two panels: accuracy vs rank kept (natural) and vs ranks removed (reverse)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    styles = {"natural": ("tab:blue", "o"), "low-rank": ("tab:orange", "s")}
    for ax, direction, ranks, xlabel in (
        (axes[0], "natural", RANKS, "rank k kept (rank-k test images)"),
        (axes[1], "reverse", REVERSE_RANKS, "top k ranks removed (test images)"),
    ):
        for name, (colour, marker) in styles.items():
            label = (
                "trained on full-rank images"
                if name == "natural"
                else (f"trained on rank-{train_rank} images")
            )
            ax.plot(ranks, results[name][direction], marker=marker, color=colour, label=label)
        ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        ax.axvline(train_rank, color="grey", ls="--", lw=0.8)
        ax.set_xscale("symlog", base=2, linthresh=1)
        ax.set_xlim(ranks[0] - 0.25 * max(ranks[0], 1), ranks[-1] * 1.15)
        ax.set_xticks(ranks)
        ax.set_xticklabels([str(r) for r in ranks])
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].set_title("Low-rank inputs")
    axes[1].set_title("High-rank-only inputs (reverse)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("Miniature study: synthetic 32×32 shapes with a high-rank cue (not ImageNet)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the study; writes the JSON and the figure; returns 0."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)  # main() may run in-process (tests)


def _run(args: argparse.Namespace) -> int:
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    t0 = time.time()
    tr = make_shapes(args.n_train, seed=args.seed, cue=args.cue)
    te = make_shapes(args.n_test, seed=args.seed + 1, cue=args.cue)
    models = {
        "natural": train(tr.images, tr.labels, args.epochs, args.seed),
        "low-rank": train(low_rank(tr.images, args.train_rank), tr.labels, args.epochs, args.seed),
    }
    say(f"trained both models in {time.time() - t0:.0f}s")
    results: Dict[str, Dict[str, list]] = {}
    for name, model in models.items():
        results[name] = {}
        for direction, ranks in (("natural", RANKS), ("reverse", REVERSE_RANKS)):
            spectrum = rank_spectrum(
                model,
                te.images,
                ranks=ranks,
                labels=te.labels,
                reverse=direction == "reverse",
                batch_size=500,
                progress=False,
            )
            results[name][direction] = [round(a, 4) for a in spectrum.accuracy]
            say(f"{name:9s} {direction:8s}", dict(zip(ranks, results[name][direction])))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = dict(
        config=vars(args),
        ranks=RANKS,
        reverse_ranks=REVERSE_RANKS,
        accuracy=results,
        seconds=round(time.time() - t0, 1),
    )
    tmp = out / ".miniature_study.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out / "miniature_study.json")
    plot(results, out / "miniature_study.png", args.train_rank, 1 / 6)
    say(f"done in {time.time() - t0:.0f}s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
