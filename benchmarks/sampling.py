"""Sampling throughput of the bundled Shapes model and the wall time of `qwenrl bench`.

Images/s at 20 ODE steps for batches of 1 and 32, with guidance off (one pass per step) and
on (two passes batched together), measured as the median of ``--repeats`` runs after a
warm-up; then the wall time of ``qwenrl bench`` (a subprocess, including start-up) on the
t2i and edit test splits. The load average is recorded beside the figures: other jobs may
share the cores.

    python benchmarks/sampling.py [--model data/models/shapes-base] [--threads 2]

Prints a summary and writes benchmarks/results/sampling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def images_per_second(policy, batch: int, guidance: float, repeats: int) -> dict:
    from qwenrl.sampling import sample_images

    texts = ["a red circle left of a blue square"] * batch
    sample_images(policy, texts, num_steps=20, guidance_scale=guidance, seed=0)  # warm-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        sample_images(policy, texts, num_steps=20, guidance_scale=guidance, seed=r)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"batch": batch, "guidance_scale": guidance, "steps": 20, "median_seconds": med, "images_per_s": batch / med}


def bench_wall(model: str, task: str) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "qwenrl", "bench", "--model", model, "--task", task, "--json"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    res = json.loads(out.stdout)
    return {"task": task, "split": res["split"], "n_images": res["n_images"], "wall_seconds": wall,
            "sampling_and_checking_seconds": res["seconds"], "overall": res["overall"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "data" / "models" / "shapes-base"))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sampling.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from qwenrl.models import load_policy

    policy = load_policy(args.model)
    load_before = os.getloadavg()
    throughput = [images_per_second(policy, b, g, args.repeats) for b in (1, 32) for g in (1.0, 3.0)]
    walls = [bench_wall(args.model, t) for t in ("t2i", "edit")]
    result = {
        "model": os.path.relpath(args.model, ROOT),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "throughput": throughput,
        "bench_wall": walls,
    }
    for row in throughput:
        print(f"batch {row['batch']:>2}  guidance {row['guidance_scale']:.0f}  {row['images_per_s']:8.1f} images/s  (median {row['median_seconds']:.3f} s)")
    for row in walls:
        print(f"qwenrl bench --task {row['task']}: {row['n_images']} images in {row['wall_seconds']:.1f} s wall")
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
