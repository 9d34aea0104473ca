"""Metric names in one scheme (qwenrl/metrics.py), and old run folders still plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from app.charts import eval_figure, metrics_figure
from app.jobs import run_metrics
from qwenrl.metrics import RENAMED, current_name, current_row, read_metrics

#: two steps of a GRPO run (nft, with the auxiliary distillation term) as trainers wrote them before the scheme
OLD_ROWS = [
    {"step": 0, "eval/accuracy": 0.25, "eval/families/single": 0.5, "eval/reward/mean": 0.4,
     "eval/monitor/reward/mean": 0.3, "eval/rewards/aesthetics/mean": 0.6},
    {"step": 1, "reward/mean": 0.5, "reward/std": 0.1, "reward/frac_none": 0.0, "rewards/strict/mean": 0.25,
     "frac_reward_zero_std": 0.5, "frac_groups_filtered": 0.0, "frac_samples_trained": 1.0, "loss": 0.2, "kl": 0.01,
     "nft/loss_pos": 0.1, "nft/loss_neg": 0.3, "nft/optimality_mean": 0.5, "nft/velocity_gap": 1e-4, "nft/old_decay": 0.5,
     "grad_norm": 1.5, "updates": 2, "guided_fraction": 0.0, "lr": 3e-4, "samples_per_s": 4.0, "step_seconds": 30.0,
     "rollout_seconds": 10.0, "reward_seconds": 5.0, "update_seconds": 15.0, "distill/velocity_gap/t2i": 0.02,
     "distill/velocity_gap": 0.02},
    {"step": 2, "reward/mean": 0.7, "reward/std": 0.1, "loss": 0.1, "step_seconds": 90.0, "eval/accuracy": 0.5},
]


def load_objectives():
    spec = importlib.util.spec_from_file_location("objectives", Path(__file__).resolve().parents[1] / "benchmarks" / "objectives.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_old_name_has_a_place_in_the_scheme():
    prefixes = ("rewards/", "losses/", "charts/", "eval/")
    for row in OLD_ROWS:
        for key in current_row(row):
            assert key == "step" or key.startswith(prefixes), key
    assert all(new.startswith(prefixes) for new in RENAMED.values())
    assert current_name("eval/reward/mean") == "eval/rewards/total/mean"
    assert current_name("eval/monitor/reward/mean") == "eval/monitor/rewards/total/mean"
    assert current_name("eval/t2i/reward/mean") == "eval/t2i/rewards/total/mean"
    assert current_name("distill/velocity_gap/edit") == "losses/distill/edit"
    assert current_name("rewards/strict/mean") == "rewards/strict/mean"  # a current name stays as it is
    assert current_name("losses/total") == "losses/total"


def test_old_run_folders_still_plot(tmp_path):
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in OLD_ROWS) + '{"step": 3, "rew')
    rows = run_metrics(run)  # the half-written last line is skipped
    assert [r["step"] for r in rows] == [0, 1, 2] and rows == read_metrics(run / "metrics.jsonl")
    assert rows[1]["rewards/total/mean"] == 0.5 and rows[1]["losses/nft_old_gap"] == 1e-4
    assert rows[1]["charts/step_seconds"] == 30.0 and rows[1]["losses/distill/t2i"] == 0.02
    curves = {trace.name for trace in metrics_figure(rows).data}
    assert {"rewards/total/mean", "rewards/strict/mean"} <= curves
    held_out = {trace.name for trace in eval_figure(rows).data}
    assert "overall" in held_out and "single" in held_out
    points = load_objectives().curve(run)
    assert [p["accuracy"] for p in points] == [0.25, 0.5] and points[1]["minutes"] == (30.0 + 90.0) / 60


def test_a_new_run_reads_the_same(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(current_row(r)) + "\n" for r in OLD_ROWS))
    assert read_metrics(tmp_path / "metrics.jsonl") == [current_row(r) for r in OLD_ROWS]


def test_a_png_chart_without_kaleido_is_refused_with_the_install_line(tmp_path, monkeypatch):
    import sys

    from app.charts import save_png

    monkeypatch.setitem(sys.modules, "kaleido", None)  # import kaleido raises ImportError
    with pytest.raises(SystemExit, match=r"pip install -e '\.\[bench\]'"):
        save_png(eval_figure([]), tmp_path / "chart.png")
    assert not (tmp_path / "chart.png").exists()
