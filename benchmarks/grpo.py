"""Seconds per GRPO step on the Shapes world, on the CPU, for both objectives side by side.

Runs ``training.grpo`` with the shipped Shapes configs of a task — ``shapes_grpo_{task}.yaml``
(the forward-process objective the recipe ships) and ``shapes_grpo_{task}_flow.yaml``
(Flow-GRPO) — for a few steps each, without evaluation or checkpoints, alternating the two
configs step block by step block so that both see the same machine, and reports the median step
time over the steps after each run's first. The model is ``data/models/shapes-base`` when it
exists; otherwise a randomly initialised ShapesPolicy of the same (default) size, which costs the
same per step, and the result says so.

    python benchmarks/grpo.py [--steps 6] [--threads 2] [--task t2i] [--config PATH ...]

Prints a summary and writes benchmarks/results/grpo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "grpo.json"
BASE = REPO / "data" / "models" / "shapes-base"
PARTS = ("step_seconds", "rollout_seconds", "reward_seconds", "update_seconds")  #: charts/… in the runs' metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="steps per config (the first of each run is not timed)")
    ap.add_argument("--rounds", type=int, default=2, help="alternations: each config runs steps/rounds steps per round, resuming")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--task", choices=["t2i", "edit"], default="t2i")
    ap.add_argument("--config", action="append", type=Path, help="configs to time (default: the task's nft and Flow-GRPO Shapes configs)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="", help="free text stored with the result (e.g. other load on the machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from qwenrl.models.shapes import ShapesPolicy
    from training.grpo import GRPOConfig, train

    configs = args.config or [REPO / "training" / "configs" / f"shapes_grpo_{args.task}{s}.yaml" for s in ("", "_flow")]
    per_round = max(1, args.steps // args.rounds)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model, random_init = BASE, not (BASE / "manifest.json").exists()
        if random_init:
            torch.manual_seed(0)
            model = Path(tmp) / "random-shapes"
            ShapesPolicy().save(model, name="random-shapes", lineage=["random-shapes"], parent=None)

        def cfg_for(path: Path, steps: int) -> GRPOConfig:
            return GRPOConfig.from_yaml(path, model=str(model), steps=steps, eval_every=0, save_every=0, state_every=1,
                                        threads=args.threads, cpu=True)

        for r in range(1, args.rounds + 1):  # config A steps, config B steps, A resumes, B resumes, …
            for i, path in enumerate(configs):
                train(cfg_for(path, per_round * r), Path(tmp) / f"run{i}")
        for i, path in enumerate(configs):
            cfg = cfg_for(path, per_round * args.rounds)
            rows = [json.loads(line) for line in (Path(tmp) / f"run{i}" / "metrics.jsonl").read_text().splitlines()]
            timed = [row for row in rows if row["step"] % per_round != 1] or rows  # each resumed block's first step warms up
            med = {k: statistics.median(row[f"charts/{k}"] for row in timed) for k in PARTS}
            results.append({
                "config": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
                "objective": cfg.objective, "num_prompts": cfg.num_prompts, "group_size": cfg.group_size,
                "num_steps": cfg.num_steps, "cfg_mode": cfg.cfg_mode, "num_inner_epochs": cfg.num_inner_epochs,
                "updates_per_epoch": cfg.updates_per_epoch, "steps_timed": len(timed),
                "seconds_per_step": med["step_seconds"], "samples_per_s": cfg.num_prompts * cfg.group_size / med["step_seconds"],
                **{k: med[k] for k in PARTS[1:]},
            })

    n_params = sum(p.numel() for p in ShapesPolicy().transformer.parameters())
    out = {
        "benchmark": "grpo",
        "task": args.task,
        "model": "data/models/shapes-base" if not random_init else "random-init ShapesPolicy (default size; base not yet trained)",
        "random_init": random_init,
        "transformer_parameters": n_params,
        "runs": results,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for r in results:
        print(f"{r['config']} ({r['objective']}, {r['num_prompts']}×{r['group_size']} samples, {r['num_steps']} sampling steps, "
              f"{args.threads} threads): {r['seconds_per_step']:.2f} s/step, {r['samples_per_s']:.1f} samples/s "
              f"(rollout {r['rollout_seconds']:.2f} s, reward {r['reward_seconds']:.2f} s, update {r['update_seconds']:.2f} s)"
              + ("  [random-init model]" if random_init else ""))
    if len(results) == 2:
        a, b = results
        print(f"ratio {a['objective']} / {b['objective']} seconds per step: {a['seconds_per_step'] / b['seconds_per_step']:.2f}; "
              f"samples/s: {a['samples_per_s'] / b['samples_per_s']:.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
