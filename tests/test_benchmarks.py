"""The GPU benchmark script checks itself on the CPU (tiny dimensions), for both objectives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_grpo_gpu_benchmark_runs_both_objectives_in_cpu_smoke_mode(tmp_path):
    out = tmp_path / "never-written.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/grpo_gpu.py", "--cpu-smoke", "--objective", "both", "--steps", "2", "--prompts", "1",
         "--group-size", "4", "--num-steps", "3", "--sde-steps", "2", "--train-batch", "4", "--out", str(out)],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    assert [r["objective"] for r in results] == ["flow_grpo", "nft"]
    for r in results:
        assert r["seconds_per_step"] > 0 and r["samples_per_step"] == 4 and r["lora_parameters"] > 0
    assert results[0]["sde_steps"] == 2 and results[1]["sde_steps"] is None and results[1]["epochs"] == 2
    assert "nft / flow_grpo seconds per step" in proc.stderr
    assert not out.exists()  # smoke runs write no results


def test_grpo_gpu_benchmark_refuses_to_run_without_a_gpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU visible, even on a machine that has one
    proc = subprocess.run([sys.executable, "benchmarks/grpo_gpu.py", "--objective", "nft"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "needs a CUDA GPU" in proc.stderr
