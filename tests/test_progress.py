"""Progress with a time estimate on long commands: the helper, `arena auto`, `qwenrl bench` and the recipe."""

from __future__ import annotations

import io

from click.testing import CliRunner

from app.cli import arena
from qwenrl.commands import bench
from qwenrl.progress import Progress, duration, time_left
from tests.studio_support import make_tiny_models
import json

from training.recipe import STAGES, recorded_seconds, stage_timing, time_left_estimate, timing_table


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_lines_say_how_long_is_left():
    clock, out = Clock(), io.StringIO()
    progress = Progress("arena auto", 100, "battles", stream=out, every_s=10, clock=clock)
    for k in range(1, 101):
        clock.now = k * 0.5  # half a second per battle
        progress.update(k)
    lines = out.getvalue().splitlines()
    assert lines[0] == "arena auto: 1/100 battles (1%), 0s elapsed, about 50s left"
    assert "arena auto: 21/100 battles (21%), 10s elapsed, about 40s left" in lines
    assert lines[-1] == "arena auto: 100/100 battles (100%), 50s elapsed"
    assert len(lines) <= 7  # not a line per battle in a log
    assert duration(3725) == "1h02m" and duration(245) == "4m05s" and time_left(10, 0, 5) == "time left not known yet"


def test_the_recipe_estimates_what_is_left_from_the_recorded_run():
    recorded = recorded_seconds()
    assert set(recorded) == set(STAGES)
    total = sum(recorded.values())
    assert time_left_estimate({}, recorded) == f"about {duration(total)} left for the recipe"
    half = {"grpo_t2i": recorded["grpo_t2i"] / 2}  # this machine runs at twice the recorded pace
    assert time_left_estimate(half, recorded) == f"about {duration((total - recorded['grpo_t2i']) / 2)} left for the recipe"
    assert "no recorded run" in time_left_estimate({}, {})


def test_a_stage_finished_by_an_earlier_call_counts_its_steps_time(tmp_path):
    """A resumed recipe reports the seconds its steps took in every call, not this call's few."""
    run = tmp_path / "grpo-t2i"
    run.mkdir()
    run.joinpath("metrics.jsonl").write_text("".join(json.dumps({"step": k, "charts/step_seconds": 15.0}) + "\n" for k in range(1, 91)))
    load = {"mean": 0.2, "max": 0.3, "samples": 2}
    resumed = stage_timing(3.0, load, run)
    assert resumed["seconds"] == 90 * 15.0 and resumed["earlier_calls"] and resumed["steps"] == 90
    fresh = stage_timing(1400.0, load, run)  # this call ran every step (plus evaluations)
    assert fresh["seconds"] == 1400.0 and "earlier_calls" not in fresh
    rows = timing_table({"grpo_t2i": resumed, "grpo_edit": fresh})
    assert rows[2] == "| grpo_t2i | 22.5 | 90 | 15.0 | earlier call (steps' own time) |"
    assert rows[3] == "| grpo_edit | 23.3 | 90 | 15.0 | 0.20 / 0.30 |"


def test_arena_auto_and_bench_report_the_time_left(tmp_path):
    models = make_tiny_models(tmp_path / "models", ["tiny-a", "tiny-b"])
    result = CliRunner().invoke(arena, ["auto", "--workspace", str(tmp_path / "ws"), "--task", "t2i", "--battles", "5",
                                        "--models-dir", str(models), "--pool-size", "2"])
    assert result.exit_code == 0, result.output
    assert "left)" in result.stderr and "gallery tiny-a: " in result.stderr  # the gallery fill
    assert "arena auto (t2i, judge oracle): 5/5 battles (100%)" in result.stderr
    result = CliRunner().invoke(bench, ["--model", str(models / "tiny-a"), "--task", "t2i", "--limit", "4", "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "t2i/test" in result.stderr and "<" in result.stderr  # tqdm: elapsed<left, in a log too
