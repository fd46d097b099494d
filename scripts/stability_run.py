"""Regenerates the default run of examples/scratch_vs_finetuned.py shown in docs/stability.md.

Runs the example with its defaults (or takes a finished run with ``--from DIR``), copies
its ``stability.json``, ``stability.md`` (as ``stability.txt``: not a page of the site)
and figures into ``docs/stability_run/``, and
rewrites the part of ``docs/stability.md`` between the markers
``<!-- default-run:start -->`` and ``<!-- default-run:end -->`` from those files
(:func:`render`). The tests render the section again from the committed files and
compare it with the page, so the page cannot drift from the numbers.

Usage:
    python scripts/stability_run.py                 # runs the example (minutes on 2 cores)
    python scripts/stability_run.py --from runs/scratch_vs_finetuned
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "stability.md"
RUN = ROOT / "docs" / "stability_run"
FILES = (
    "stability.json", "stability.txt", "history.png", "weight_norms.png",
    "weight_spectra.png", "feature_map_spectra.png",
)  # fmt: skip
"""The files in ``docs/stability_run/``; ``stability.txt`` is the run's ``stability.md``."""
START, END = "<!-- default-run:start -->", "<!-- default-run:end -->"


def tables(stability_md: str) -> str:
    """The two tables and their notes from a run's ``stability.md`` (no heading, no
    per-model bound reports)."""
    body = stability_md.split("\n\n", 1)[1]
    return body.split("\n\n**", 1)[0].strip()


def history_table(history: Dict[str, List[float]]) -> str:
    """Test accuracy after each target epoch, one row per model."""
    epochs = max(len(h) for h in history.values())
    lines = [
        "| model | " + " | ".join(str(e) for e in range(1, epochs + 1)) + " |",
        "|---|" + "---:|" * epochs,
    ]
    for name, accuracies in history.items():
        lines.append(f"| {name} | " + " | ".join(f"{a:.3f}" for a in accuracies) + " |")
    return "\n".join(lines)


def render(run: Path = RUN) -> str:
    """The page's section from a run's files: settings, timings, history, tables, figures."""
    record = json.loads((run / "stability.json").read_text(encoding="utf-8"))
    seconds, settings = record["seconds"], record["settings"]
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total")
    conditions = record.get("conditions", "not recorded")
    return "\n".join([
        START,
        "",
        f"The default run (`python examples/scratch_vs_finetuned.py`): {settings['n_pretrain']}"
        f" source images, {settings['pretrain_epochs']} pre-training epochs, "
        f"{settings['n_train']} labelled target images, {settings['epochs']} target epochs, "
        f"test accuracy on {settings['n_test']} held-out target images, attacks on the "
        f"first {record['n_images']} of them. Wall time {seconds['total']:.0f} s ({stages}); "
        f"{conditions}.",
        "",
        "Held-out target accuracy after each target epoch:",
        "",
        history_table(record["history"]),
        "",
        tables((run / "stability.txt").read_text(encoding="utf-8")),
        "",
        "![Held-out accuracy after each target epoch](stability_run/history.png)",
        "",
        "![Largest singular value of every weight](stability_run/weight_norms.png)",
        "",
        "![Singular values of the weights, four layers](stability_run/weight_spectra.png)",
        "",
        "![Feature-map singular values, four layers](stability_run/feature_map_spectra.png)",
        "",
        END,
    ])  # fmt: skip


def page_section(text: str) -> str:
    """The page's section between the markers, markers included."""
    start, end = text.index(START), text.index(END) + len(END)
    return text[start:end]


def conditions() -> str:
    """Where the run was measured: cores, load, Python and torch versions."""
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"measured on {os.cpu_count()} CPU cores (load average {load} at the end, the "
        f"machine shared with other jobs), one torch thread, Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", help="a finished run's folder (default: run now)")
    p.add_argument("--conditions", help="where the run was measured (default: this machine now)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(args.source) if args.source else Path(tmp) / "run"
        if not args.source:
            example = ROOT / "examples" / "scratch_vs_finetuned.py"
            subprocess.run([sys.executable, str(example), "--out", str(source)], check=True)
        RUN.mkdir(exist_ok=True)
        for name in FILES:
            shutil.copyfile(source / name.replace(".txt", ".md"), RUN / name)
    record: Dict[str, Any] = json.loads((RUN / "stability.json").read_text(encoding="utf-8"))
    record["conditions"] = args.conditions or conditions()
    (RUN / "stability.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    text = PAGE.read_text(encoding="utf-8")
    PAGE.write_text(text.replace(page_section(text), render()), encoding="utf-8")
    print(f"wrote {RUN} and the default-run section of {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
