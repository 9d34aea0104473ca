"""Seconds per GRPO step and samples per second on the Shapes world, on the CPU.

Runs ``training.grpo`` with ``training/configs/shapes_grpo_{task}.yaml`` (8 prompts × 8 samples,
10 sampling steps, SDE and training on the first 5, hybrid CFG) for a few steps, without
evaluation or checkpoints, and reports the median over the steps after the first. The model is
``data/models/shapes-base`` when it exists; otherwise a randomly initialised ShapesPolicy of the
same (default) size, which costs the same per step, and the result says so.

    python benchmarks/grpo.py [--steps 6] [--threads 2] [--task t2i]

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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="GRPO steps to run (the first is not timed)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--task", choices=["t2i", "edit"], default="t2i")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="", help="free text stored with the result (e.g. other load on the machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from qwenrl.models.shapes import ShapesPolicy
    from training.grpo import GRPOConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        model, random_init = BASE, not (BASE / "manifest.json").exists()
        if random_init:
            torch.manual_seed(0)
            model = Path(tmp) / "random-shapes"
            ShapesPolicy().save(model, name="random-shapes", lineage=["random-shapes"], parent=None)
        cfg = GRPOConfig.from_yaml(
            REPO / "training" / "configs" / f"shapes_grpo_{args.task}.yaml",
            model=str(model), steps=args.steps, eval_every=0, save_every=0, state_every=0, threads=args.threads, cpu=True,
        )
        train(cfg, Path(tmp) / "run")
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]

    timed = rows[1:] or rows
    med = {k: statistics.median(r[k] for r in timed) for k in ("step_seconds", "rollout_seconds", "reward_seconds", "update_seconds")}
    n_params = sum(p.numel() for p in ShapesPolicy().transformer.parameters())
    result = {
        "benchmark": "grpo",
        "task": args.task,
        "model": "data/models/shapes-base" if not random_init else "random-init ShapesPolicy (default size; base not yet trained)",
        "random_init": random_init,
        "transformer_parameters": n_params,
        "trainable": cfg.trainable,
        "num_prompts": cfg.num_prompts,
        "group_size": cfg.group_size,
        "num_steps": cfg.num_steps,
        "sde_window": cfg.sde_window,
        "cfg_mode": cfg.cfg_mode,
        "hybrid_guided_fraction": cfg.hybrid_guided_fraction,
        "steps_timed": len(timed),
        "seconds_per_step": med["step_seconds"],
        "samples_per_s": cfg.num_prompts * cfg.group_size / med["step_seconds"],
        "rollout_seconds": med["rollout_seconds"],
        "reward_seconds": med["reward_seconds"],
        "update_seconds": med["update_seconds"],
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"GRPO step ({args.task}, {cfg.num_prompts}×{cfg.group_size} samples, {cfg.num_steps} steps, {args.threads} threads): "
          f"{med['step_seconds']:.2f} s/step, {result['samples_per_s']:.1f} samples/s "
          f"(rollout {med['rollout_seconds']:.2f} s, reward {med['reward_seconds']:.2f} s, update {med['update_seconds']:.2f} s)"
          + ("  [random-init model]" if random_init else ""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
