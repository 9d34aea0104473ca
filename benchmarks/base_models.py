"""Base models side by side: strict accuracy per family on both tasks, composite and aesthetics.

    python benchmarks/base_models.py old=data/models/shapes-base \\
        even3k=runs/pretrain-even/checkpoints/step-003000 --samples-per-prompt 4

Each model is measured as the seed recipe benches (``training.recipe.bench``: the test split with
``--samples-per-prompt`` images per prompt, seeds 0, 1, …; the compositional split with one), with
its own sampling settings. Written for the continued pretraining of round seven
(docs/training.md): how much a base gains from more denoiser steps with every edit family drawn
as often. Writes ``benchmarks/results/base_models.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import checkpoint_specs, write_report  # noqa: E402

TASKS = ("t2i", "edit")


def markdown(models: dict[str, dict], samples: int) -> str:
    """One table per task: overall, compositional (t2i), every family, composite and aesthetics."""
    lines = []
    for task in TASKS:
        first = next(iter(models.values()))["bench"][f"{task}/test"]
        families = sorted(first["families"])
        comp = task == "t2i"
        lines += [f"### {task} (test split, {samples} images per prompt)", "",
                  "| model | overall | " + ("compositional | " if comp else "") + " | ".join(families) + " | composite | aesthetics |",
                  "|---|---|" + ("---|" if comp else "") + "---|" * (len(families) + 2)]
        for label, row in models.items():
            b = row["bench"][f"{task}/test"]
            cells = [f"{100 * b['accuracy']:.1f}%"]
            if comp:
                cells.append(f"{100 * row['bench']['t2i/compositional']['accuracy']:.1f}%")
            cells += [f"{100 * b['families'][f]:.1f}%" for f in families]
            cells += [f"{b['reward']:.3f}", f"{b['aesthetics']:.3f}"]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def sample_grids(path: str, folder: Path, label: str, n: int = 8) -> list[Path]:
    """``{label}_t2i_test.png`` (n evenly spaced test prompts, seed 0) and ``{label}_edit_test.png``
    (n test edits: the sources above, the results below), at 4× scale, for the docs."""
    import numpy as np

    from qwenrl.evaluation import evaluate
    from qwenrl.imageio import grid, save_png
    from qwenrl.models import load_policy
    from qwenrl.world.prompt_sets import load_prompt_set
    from qwenrl.world.scene import render

    policy, written = load_policy(path), []
    for task in TASKS:
        images = evaluate(policy, task, "test", limit=n, keep_images=True)["images"]
        if task == "edit":
            images = np.concatenate([np.stack([render(e.source) for e in load_prompt_set(task, "test", limit=n)]), images])
        written.append(save_png(grid(np.asarray(images), cols=n, scale=4), folder / f"{label}_{task}_test.png"))
    return written


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="LABEL=CHECKPOINT")
    ap.add_argument("--samples-per-prompt", type=int, default=4)
    ap.add_argument("--limit", type=int, default=None, help="an evenly spaced subset of N prompts per split")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "base_models.json")
    ap.add_argument("--grids", type=Path, metavar="FOLDER", help="also write each model's sample grids there (LABEL_TASK_test.png)")
    args = ap.parse_args(argv)
    from training.recipe import bench

    out = {"what": "models side by side, benched as the seed recipe benches (docs/training.md, Rounds seven and eight)",
           "command": "python benchmarks/base_models.py " + " ".join(args.models) + f" --samples-per-prompt {args.samples_per_prompt}"
           + (f" --limit {args.limit}" if args.limit else ""), "models": {}}
    for label, path in checkpoint_specs(args.models):
        t0 = time.perf_counter()
        row = {"path": path, "bench": bench(path, ("test", "compositional"), args.limit, samples_per_prompt=args.samples_per_prompt)}
        row["seconds"] = time.perf_counter() - t0
        if args.grids:
            row["grids"] = [str(p) for p in sample_grids(path, args.grids, label)]
        out["models"][label] = row
        print(f"{label}: t2i {100 * row['bench']['t2i/test']['accuracy']:.1f}%, edit {100 * row['bench']['edit/test']['accuracy']:.1f}% "
              f"({row['seconds']:.0f} s)", flush=True)
    out["markdown"] = markdown(out["models"], args.samples_per_prompt)
    write_report(args.out, out, out["markdown"])
    return out


if __name__ == "__main__":
    main()
