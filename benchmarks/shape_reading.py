"""How well judges that write positions read shapes, side by side on the same held-out samples.

For each judge folder and task: the four bundled models' test samples (one per prompt, the seeds
``benchmarks/judge.py`` uses), judged through the task's ``vlm`` reward config pointed at that
folder. Per judge and task:

* the share of parsed objects whose shape word is the parser's (``blob`` below the checker's
  template IoU of 0.5), overall, by size, by true shape and, for the recognisable ones, by the
  checker's own margin (its best template IoU minus the runner-up's);
* the reader's pass/fail agreement with the checker (the rules on each answer's reading).

The margin bins say how much of what is left is learnable: a shape the checker itself calls by
less than 0.05 IoU is a near tie between two templates at 32×32 pixels.

    python benchmarks/shape_reading.py third=data/models/shapes-judge-positions \\
        shipped=data/models/shapes-judge-reader [--limit 250]

Prints a markdown table and writes benchmarks/results/shape_reading.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from judge import MODELS, judge_component, sample_models, shape_reads, shapes_read_summary  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "shape_reading.json"


def read_shapes(task: str, items: list, images: np.ndarray, folder: Path) -> dict[str, Any]:
    """One judge on one task's samples: its shape reads and the reader's agreement with the checker."""
    from qwenrl.rewards import Sample
    from qwenrl.rewards.shapes import parsed_scene
    from qwenrl.rewards.shapes_cot import read_answer, rule_verdicts, target_for

    judge = judge_component(task, folder)
    samples = [Sample.from_spec(img, it) for img, it in zip(images, items)]
    answers: list[str] = []
    for start in range(0, len(samples), judge.options.batch_size):
        answers += judge.generate(samples[start:start + judge.options.batch_size])
    reads, agree = [], []
    for s, it, answer in zip(samples, items, answers):
        passed = target_for(s).passed
        reading = read_answer(answer)
        reads += shape_reads(reading, parsed_scene(s))
        rules = rule_verdicts(reading, it)
        agree.append(rules is not None and rules.passed == passed)
    return {**shapes_read_summary(reads), "reader_agreement": float(np.mean(agree)), "samples": len(samples)}


def table(result: dict[str, Any]) -> str:
    """The markdown table: per judge and task, shapes read right overall, small, and per margin bin."""
    bins = list(next(iter(next(iter(result["judges"].values())).values()))["by_margin"])
    head = ["judge", "task", "reader agreement", "shapes right", "small shapes"] + [f"margin {b}" for b in bins]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, tasks in result["judges"].items():
        for task, r in tasks.items():
            cells = [name, task, f"{r['reader_agreement']:.1%}", f"{r['right']:.1%}", f"{r['by_size'].get('small', 0):.1%}"]
            cells += [f"{b['right']:.1%} of {b['n']}" if b["right"] is not None else "—" for b in r["by_margin"].values()]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("judges", nargs="+", metavar="NAME=FOLDER", help="judge folders that write positions")
    ap.add_argument("--tasks", nargs="+", default=["t2i", "edit"], choices=["t2i", "edit"])
    ap.add_argument("--limit", type=int, default=250, help="test prompts per model and task")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    judges = {}
    for spec in args.judges:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not (Path(folder) / "config.json").is_file():
            ap.error(f"expected NAME=FOLDER with a judge folder, got {spec!r}")
        judges[name] = Path(folder)

    import torch

    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"judges": {n: {} for n in judges}, "folders": {n: str(f) for n, f in judges.items()},
                              "models": MODELS, "limit": args.limit, "load_before": os.getloadavg()}
    t0 = time.time()
    for task in args.tasks:
        items, _, images = sample_models(task, MODELS, args.limit, 0)
        for name, folder in judges.items():
            result["judges"][name][task] = read_shapes(task, items, images, folder)
    result["minutes"] = (time.time() - t0) / 60
    result["load_after"] = os.getloadavg()
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
