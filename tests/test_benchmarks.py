"""The GPU benchmark script checks itself on the CPU (tiny dimensions), for both objectives; the
objectives comparison reads run folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_objectives_reads_curves_of_stopped_runs_and_refuses_other_folders(tmp_path):
    """benchmarks/objectives.py: minutes from the run's own step times (or a given s/step), a
    half-written last line of a stopped run skipped, a folder without evaluations refused."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("objectives", REPO / "benchmarks" / "objectives.py")
    objectives = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(objectives)
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": 0, "eval/accuracy": 0.25, "eval/families/single": 1.0}, {"step": 1, "step_seconds": 30.0},
            {"step": 2, "step_seconds": 90.0, "eval/accuracy": 0.5}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "step_se')
    points = objectives.curve(run)
    assert [(p["step"], p["minutes"], p["accuracy"]) for p in points] == [(0, 0.0, 0.25), (2, 2.0, 0.5)]
    assert points[0]["families"] == {"single": 1.0}
    assert [p["minutes"] for p in objectives.curve(run, step_seconds=15.0)] == [0.0, 0.5]
    with pytest.raises(SystemExit, match="no metrics.jsonl"):
        objectives.curve(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text(json.dumps({"step": 1, "step_seconds": 3.0}) + "\n")
    with pytest.raises(SystemExit, match="no held-out evaluation"):
        objectives.curve(tmp_path / "empty")
    with pytest.raises(SystemExit, match="LABEL=VALUE"):
        objectives.main(["no-label-here"])
