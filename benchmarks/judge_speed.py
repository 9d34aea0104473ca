"""Learned judges side by side: samples per second on the same images, alternating rounds.

Each judge (``NAME=FOLDER``) answers the same ``--limit`` base-model test samples per task
through the task's reward YAML settings (``vlm_local``, batches of 64, greedy), once to warm up
and then ``--rounds`` times, the judges taking turns within a round so that a noisy machine
slows them alike. Prints and writes (``benchmarks/results/judge_speed.{json,md}``) the median
samples per second, each round's seconds, and the mean and longest answer in characters.

    python benchmarks/judge_speed.py bundled=data/models/shapes-judge positions=runs/judge-positions/checkpoints/step-003400
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.judge import judge_component, sample_models  # noqa: E402
from benchmarks.report import write_report  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "judge_speed.json"


def time_judges(judges: dict[str, Path], task: str, limit: int, rounds: int, batch: int = 64) -> dict[str, dict]:
    """Per judge: median samples/s over ``rounds`` alternating rounds on the same samples."""
    from qwenrl.rewards import Sample

    items, _, images = sample_models(task, ["shapes-base"], limit, 0)
    samples = [Sample.from_spec(im, it) for im, it in zip(images, items)]
    components = {name: judge_component(task, path) for name, path in judges.items()}
    for c in components.values():
        c.generate(samples[:8])  # load and warm up outside the timing
    seconds: dict[str, list[float]] = {name: [] for name in components}
    lengths: dict[str, list[int]] = {}
    for _ in range(rounds):
        for name, c in components.items():
            t0 = time.perf_counter()
            answers = [a for s in range(0, len(samples), batch) for a in c.generate(samples[s:s + batch])]
            seconds[name].append(time.perf_counter() - t0)
            lengths[name] = [len(a) for a in answers]
    return {name: {"samples": len(samples), "samples_per_s": len(samples) / float(np.median(seconds[name])),
                   "seconds": seconds[name], "answer_chars_mean": float(np.mean(lengths[name])),
                   "answer_chars_max": max(lengths[name])} for name in components}


def markdown(results: dict) -> str:
    names = list(next(iter(results["tasks"].values())))
    lines = ["| task | " + " | ".join(f"{n} samples/s" for n in names) + " | " + " | ".join(f"{n} answer chars (mean / max)" for n in names) + " |",
             "|---" * (1 + 2 * len(names)) + "|"]
    for task, row in results["tasks"].items():
        lines.append(f"| {task} | " + " | ".join(f"{row[n]['samples_per_s']:.1f}" for n in names) + " | "
                     + " | ".join(f"{row[n]['answer_chars_mean']:.0f} / {row[n]['answer_chars_max']}" for n in names) + " |")
    return "\n".join(lines) + f"\n\nMedians of {results['rounds']} alternating rounds, {results['threads']} threads, load before {results['load_before']}.\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("judges", nargs="+", help="NAME=FOLDER of each judge")
    ap.add_argument("--limit", type=int, default=256, help="test prompts per task (base-model samples)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    judges = {}
    for spec in args.judges:
        name, sep, folder = spec.partition("=")
        if not sep or not (Path(folder) / "config.json").is_file():
            ap.error(f"{spec!r}: expected NAME=FOLDER with a judge's config.json in FOLDER")
        judges[name] = Path(folder)
    import torch

    torch.set_num_threads(args.threads)
    results = {"judges": {k: str(v) for k, v in judges.items()}, "rounds": args.rounds, "threads": args.threads,
               "load_before": [round(x, 2) for x in os.getloadavg()],
               "tasks": {task: time_judges(judges, task, args.limit, args.rounds) for task in ("t2i", "edit")}}
    write_report(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
