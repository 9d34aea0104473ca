"""The GPU benchmark script checks itself on the CPU (tiny dimensions), for both objectives; the
objectives comparison reads run folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_pairwise import RED_LEFT, RED_RIGHT, RELATION

REPO = Path(__file__).resolve().parents[1]


def _benchmark(name: str):
    """A benchmark script, imported as a module (its main() is not run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    objectives = _benchmark("objectives")
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


def test_judge_rl_reads_held_out_and_training_pass_rates_of_both_arms(tmp_path):
    """benchmarks/judge_rl.py: the judge's held-out pass rate from the trained reward or from the
    monitor, training batches averaged in windows, runs without a judge verdict refused."""
    judge_rl = _benchmark("judge_rl")
    learned, checker = tmp_path / "learned", tmp_path / "checker"
    for run in (learned, checker):
        run.mkdir()
    (learned / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 0, "eval/accuracy": 0.3, "eval/rewards/judge/mean": 0.4},
        {"step": 1, "rewards/judge/mean": 0.5, "rewards/strict/mean": 0.25},
        {"step": 2, "rewards/judge/mean": 0.7, "rewards/strict/mean": 0.35, "eval/accuracy": 0.32, "eval/rewards/judge/mean": 0.6},
        {"step": 3, "rewards/judge/mean": 0.9, "rewards/strict/mean": 0.4},
    ]))
    (checker / "metrics.jsonl").write_text(json.dumps({"step": 0, "eval/accuracy": 0.3, "eval/monitor/rewards/judge/mean": 0.4}) + "\n")
    got = judge_rl.read_run(learned, window=2)
    assert got["held_out"] == [{"step": 0, "checker": 0.3, "judge": 0.4}, {"step": 2, "checker": 0.32, "judge": 0.6}]
    assert got["training_batches"] == [{"steps": [1, 2], "judge": pytest.approx(0.6), "checker": pytest.approx(0.3)},
                                       {"steps": [3, 3], "judge": 0.9, "checker": 0.4}]
    assert judge_rl.read_run(checker, window=5) == {"held_out": [{"step": 0, "checker": 0.3, "judge": 0.4}], "training_batches": []}
    (checker / "metrics.jsonl").write_text(json.dumps({"step": 0, "eval/accuracy": 0.3}) + "\n")
    with pytest.raises(SystemExit, match="no judge verdict held out"):
        judge_rl.read_run(checker, window=5)
    out = tmp_path / "judge_rl.json"
    judge_rl.main([f"learned={learned}", "--window", "2", "--json", str(out)])
    assert json.loads(out.read_text())["curves"]["learned"] == json.loads(json.dumps(got))
    with pytest.raises(SystemExit, match="LABEL=VALUE"):
        judge_rl.main(["no-label-here"])
    # held-out gains, each against the reference run's
    gains = judge_rl.held_out_gains({"ref": {"held_out": [{"step": 0, "checker": 0.3}, {"step": 30, "checker": 0.4}]},
                                     "other": {"held_out": [{"step": 0, "checker": 0.3}, {"step": 30, "checker": 0.38}]}}, "ref")
    assert gains["other"]["gain"] == pytest.approx(0.08) and gains["other"]["of_reference"] == pytest.approx(0.8)
    assert gains["ref"]["of_reference"] == pytest.approx(1.0) and gains["ref"]["steps"] == [0, 30]
    with pytest.raises(SystemExit, match="--reference 'nope'"):
        judge_rl.held_out_gains(gains and {"ref": {"held_out": [{"step": 0, "checker": 0.3}]}}, "nope")
    with pytest.raises(SystemExit, match="give LABEL=RUN folders"):
        judge_rl.main([])
    # the final checkpoints' gain: per-prompt differences, 2 samples per prompt, 3 prompts
    g = judge_rl.paired_gain([True, False, False, False, True, True], [True, True, True, False, True, True], samples=2)
    assert (g["before"], g["after"]) == (pytest.approx(0.5), pytest.approx(5 / 6))
    assert g["gain"] == pytest.approx(1 / 3) and g["se"] == pytest.approx(np.std([0.5, 0.5, 0.0], ddof=1) / np.sqrt(3))
    with pytest.raises(ValueError, match="prompt-major"):
        judge_rl.paired_gain([True, False, True], [True, True, True], samples=2)
    (learned / "checkpoints" / "step-000020").mkdir(parents=True)
    (learned / "checkpoints" / "step-000100").mkdir()
    (learned / "checkpoints" / "step-000030").mkdir()
    assert judge_rl.last_checkpoint(learned).name == "step-000100"
    with pytest.raises(SystemExit, match="no checkpoints"):
        judge_rl.last_checkpoint(checker)
    with pytest.raises(SystemExit, match="--reference 'nope'"):
        judge_rl.final_gains({"learned": str(learned)}, 2, "nope")
    with pytest.raises(SystemExit, match="needs --grid"):
        judge_rl.main(["--fooled", "data/models/shapes-base"])


def test_judge_rl_fooled_grid_holds_what_the_judge_passes_and_the_checker_fails(tmp_path):
    from qwenrl.world.prompt_sets import load_prompt_set

    judge_rl = _benchmark("judge_rl")
    got = judge_rl.fooled(REPO / "data" / "models" / "shapes-base", tmp_path / "fooled.png", limit=24, count=4)
    assert got["n"] == 24 and 0 <= got["fooled"] <= min(got["judge_passes"], 24 - got["checker_passes"])
    assert sum(got["fooled_by_family"].values()) == got["fooled"] and len(got["shown"]) == min(4, got["fooled"])
    texts = {it.text for it in load_prompt_set("t2i", "test", limit=24)}
    for shown in got["shown"]:
        assert shown["prompt"] in texts and "passes (pass at 10/10)" in shown["rationale"]
    assert (tmp_path / "fooled.png").is_file() == bool(got["fooled"])
    assert json.loads((tmp_path / "fooled.json").read_text())["fooled"] == got["fooled"]


def test_arena_judges_difference_intervals_and_own_votes():
    import math

    import pandas as pd

    aj = _benchmark("arena_judges")
    rows = []
    for i in range(400):  # strong beats the base 3 times in 4; level wins half its battles
        rows.append({"model_a": "strong", "model_b": "shapes-base", "winner": "model_a" if i % 4 else "model_b", "tstamp": 10.0 + i})
        rows.append({"model_a": "shapes-base", "model_b": "level", "winner": "model_a" if i % 2 else "model_b", "tstamp": 10.0 + i})
    rows += [{"model_a": "level", "model_b": "shapes-base", "winner": "model_a", "tstamp": 1.0}] * 300  # an earlier run's votes
    frame = pd.DataFrame(rows)

    own = aj.own_votes(frame, started=5.0)
    assert len(own) == 800 and own["tstamp"].min() >= 5.0

    diffs = aj.difference_intervals(own, "shapes-base", rounds=200, seed=0)
    point, low, high = diffs["strong"]
    assert math.isclose(point, 400 * math.log10(3), abs_tol=1.0)  # BT on the Elo scale: 3:1 odds
    assert 0 < low < point < high
    point, low, high = diffs["level"]
    assert abs(point) < 1.0 and low < 0 < high
    # the earlier run's 300 wins of "level" would have shown a gain that is not in this run
    assert aj.difference_intervals(frame, "shapes-base", rounds=50, seed=0)["level"][1] > 0


def test_arena_judges_markdown_shows_each_judge_and_the_difference_to_the_base():
    aj = _benchmark("arena_judges")
    row = lambda m, elo: {"model": m, "elo": elo, "ci_low": elo - 5, "ci_high": elo + 5, "votes": 100, "win_rate": 0.5}
    judge = {"rows": [row("shapes-grpo-edit", 1040.0), row("shapes-base", 960.0)],
             "vs_base": {"shapes-grpo-edit": {"elo": 80.0, "low": 60.0, "high": 101.0}}}
    results = {"battles": 100, "pool_size": 10, "margin": 0.02, "seconds": 60.0,
               "tasks": {"edit": {"judges": {j: judge for j in aj.JUDGES}, "humanlike_decided_by": {"checker": 30, "tie": 70},
                                  "components": {"shapes-base": {"total": 0.9, "aesthetic": 0.95}}}}}
    md = aj.markdown(results)
    assert "| shapes-grpo-edit | 1040 (+80 [+60, +101]) | 1040 (+80 [+60, +101]) | 1040 (+80 [+60, +101]) |" in md
    assert "| shapes-base | 960 | 960 | 960 |" in md
    assert "decided by: checker 30, tie 70" in md and "| shapes-base | 0.950 | 0.900 |" in md


def test_arena_ceiling_counts_humanlike_outcomes_over_every_pair_of_a_prompt():
    import numpy as np

    ac = _benchmark("arena_ceiling")
    # prompt 0: A passes twice (0.99, 0.95), B passes (0.98) and fails (0.40)
    # prompt 1: A fails (0.50) and its second image is missing; B fails twice (0.45, 0.60)
    passed_a = np.array([[True, True], [False, False]])
    score_a = np.array([[0.99, 0.95], [0.50, np.nan]])
    passed_b = np.array([[True, False], [False, False]])
    score_b = np.array([[0.98, 0.40], [0.45, 0.60]])
    got = ac.outcome_counts(passed_a, score_a, passed_b, score_b, margin=0.02)
    # 0.99 v 0.98 tie (gap 0.01); 0.99 v fail win; 0.95 v 0.98 loss (gap 0.03); 0.95 v fail win;
    # 0.50 v 0.45 win (gap 0.05, both fail); 0.50 v 0.60 loss; the missing image plays no pair
    assert got == {"wins": 3, "ties": 1, "losses": 2}
    h = ac.head_to_head(got)
    assert abs(h["score"] - 3.5 / 6) < 1e-12
    assert abs(h["elo"] - 400 * np.log10(3.5 / 2.5)) < 1e-9
    assert ac.elo_of_score(0.5) == 0.0


def test_arena_ceiling_of_a_base_that_passes_half_its_images():
    import numpy as np

    ac = _benchmark("arena_ceiling")
    # prompt 0: the base passes with 0.97 and 1.00 (a 0.03 gap); prompt 1: it never passes
    passed = np.array([[True, True], [False, False]])
    score = np.array([[0.97, 1.00], [0.30, 0.30]])
    c = ac.ceilings(passed, score, margin=0.02)
    # base's looks: prompt 0 pairs its passes with each other: 0.97 v 0.97 tie, 0.97 v 1.00 loss,
    # 1.00 v 0.97 win, 1.00 v 1.00 tie; prompt 1: 4 wins against failing images
    assert {k: c["perfect_accuracy_base_looks"][k] for k in ("wins", "ties", "losses")} == {"wins": 5, "ties": 2, "losses": 1}
    # perfect looks (1.0): beats 0.97 by more than the margin, ties 1.00, wins prompt 1
    assert {k: c["perfect_accuracy_perfect_looks"][k] for k in ("wins", "ties", "losses")} == {"wins": 6, "ties": 2, "losses": 0}
    spread = ac.pass_pair_spread(passed, score, margin=0.02)
    assert spread["pairs"] == 1 and abs(spread["mean_abs_diff"] - 0.03) < 1e-12 and spread["share_above_margin"] == 1.0


def test_arena_ceiling_takes_bundled_names_and_run_checkpoints_and_refuses_others(tmp_path):
    ac = _benchmark("arena_ceiling")
    run = tmp_path / "ckpt"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    paths = ac.model_paths(["shapes-base", f"mine={run}"])
    assert list(paths) == ["shapes-base", "mine"]  # the first stays the base
    assert paths["shapes-base"] == REPO / "data" / "models" / "shapes-base" and paths["mine"] == run
    with pytest.raises(SystemExit, match="not a bundled model"):
        ac.model_paths(["shapes-nope"])
    with pytest.raises(SystemExit, match="LABEL=CHECKPOINT"):
        ac.model_paths([f"x={tmp_path}"])


def test_judge_speed_times_judges_on_the_same_samples_and_refuses_a_folder_without_a_judge(tmp_path, capsys):
    """benchmarks/judge_speed.py: every judge answers the same samples each round; a folder that
    holds no judge is refused before anything runs."""
    speed = _benchmark("judge_speed")
    judge = REPO / "data" / "models" / "shapes-judge"
    speed.main([f"a={judge}", f"b={judge}", "--limit", "2", "--rounds", "2", "--threads", "1", "--out", str(tmp_path / "speed.json")])
    result = json.loads((tmp_path / "speed.json").read_text())
    for task in ("t2i", "edit"):
        a, b = result["tasks"][task]["a"], result["tasks"][task]["b"]
        assert a["samples"] == b["samples"] == 2 and len(a["seconds"]) == 2 and a["samples_per_s"] > 0
        assert (a["answer_chars_mean"], a["answer_chars_max"]) == (b["answer_chars_mean"], b["answer_chars_max"])  # same judge, same answers
    assert "| t2i |" in (tmp_path / "speed.md").read_text()
    with pytest.raises(SystemExit):
        speed.main([f"x={tmp_path}"])
    assert "expected NAME=FOLDER" in capsys.readouterr().err


def test_judge_train_speed_times_both_bucket_settings_on_one_model(tmp_path, capsys):
    """benchmarks/judge_train_speed.py: each setting trains the same model on the same data folder
    for the asked steps per stage; bucketed batches pad fewer tokens; a missing data folder is refused."""
    from tests.test_judge import TINY
    from training import judge as tj

    data = tmp_path / "data"
    tj.ensure_data(tj.JudgeConfig(**TINY), data)
    speed = _benchmark("judge_train_speed")
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps({**TINY, "data_dir": str(data), "caption_steps": 4}))  # JSON is YAML
    args = ["--config", str(config), "--steps", "4", "--rounds", "2", "--threads", "1", "--buckets", "1", "4", "--out", str(tmp_path / "s.json")]
    speed.main(args)
    result = json.loads((tmp_path / "s.json").read_text())["settings"]
    assert set(result) == {"caption/1", "caption/4", "judge/1", "judge/4"}
    assert all(r["steps"] == 8 and r["median_seconds"] > 0 for r in result.values())
    assert result["judge/1"]["time_ratio"] == 1.0 and result["judge/4"]["token_ratio"] < 1.0
    assert "| judge | 4 |" in (tmp_path / "s.md").read_text()
    with pytest.raises(SystemExit):
        speed.main(["--config", str(config), "--set", f"data_dir={tmp_path / 'missing'}"])
    assert "is not a folder" in capsys.readouterr().err


def test_judge_benchmark_separates_reading_from_reasoning(monkeypatch):
    """benchmarks/judge.py's measure(): an answer that reads the image right (objects and positions)
    but writes the wrong verdicts counts against the judge's agreement, not against its reading —
    the checker's rules applied to what it says it saw still agree."""
    from types import SimpleNamespace

    from qwenrl.rewards.shapes_cot import target_for

    bench = _benchmark("judge")
    relation, left, right = RELATION, RED_LEFT, RED_RIGHT

    def answer(sample):  # the checker's own answer with positions, except that it calls every image a pass
        text = target_for(sample, positions=True).text
        return text.replace("not met", "met").rsplit("Score:", 1)[0] + "Score: 10/10"

    fake = SimpleNamespace(options=SimpleNamespace(batch_size=8), metrics={},
                           generate=lambda samples: [answer(s) for s in samples])
    monkeypatch.setattr(bench, "judge_component", lambda task, path: fake)
    out = bench.measure("t2i", [relation, relation], ["m", "m"], np.stack([left, right]), REPO / "data" / "models" / "shapes-judge")
    assert out["agreement"] == 0.5 and out["seen_matches_parser"] == 1.0 and out["positions_within_1px"] == 1.0
    assert out["agreement_if_verdicts_followed_its_reading"] == 1.0 and out["own_verdicts_follow_its_reading"] == 0.5
    assert out["confusion"]["judge_passes_checker_fails"] == 1
    # the reader judge takes the rules' verdict: it agrees on both, and nothing was misread
    assert out["reader"]["agreement"] == 1.0 and out["reader"]["unreadable"] == 0.0
    assert out["reader"]["disagreements_by_misread"] == {} and out["reader"]["misread_share"] == {"nothing": 1.0}


def test_judge_benchmark_names_what_a_reading_got_wrong():
    """misread(): the first fact of the Seen line that differs from the parser's objects."""
    from qwenrl.rewards.shapes_cot import read_answer, seen_text
    from qwenrl.world.parse import parse
    from qwenrl.world.scene import Obj, Scene, render

    bench = _benchmark("judge")
    parsed = parse(render(Scene("white", (Obj("circle", "red", "small", 3, 10), Obj("square", "blue", "large", 16, 8)))))
    right = seen_text(parsed, positions=True)

    def reading(seen):
        return read_answer(f"Requirements: (1) x.\nSeen: {seen}.\n(1) met.\nScore: 10/10")

    assert bench.misread(reading(right), parsed) == "nothing"
    assert bench.misread(reading(right.replace("on white", "on black")), parsed) == "background"
    assert bench.misread(reading(right.split("; ", 1)[1]), parsed) == "object count"
    assert bench.misread(reading(right.replace("circle", "triangle")), parsed) == "shape"
    assert bench.misread(reading(right.replace("red", "green")), parsed) == "colour"
    assert bench.misread(reading(right.replace("small", "large", 1)), parsed) == "size"
    swapped = right.replace("small red", "small TMP").replace("large blue", "large red").replace("small TMP", "small blue")
    assert bench.misread(reading(swapped), parsed) == "binding"
    x, y = (int(v) for v in right.split(" at ")[1].split(";")[0].split())
    assert bench.misread(reading(right.replace(f"at {x} {y}", f"at {x + 3} {y}", 1)), parsed) == "position"
    assert bench.misread(read_answer("Score: 10/10"), parsed) == "unreadable"
    # each object's shape against the word written nearest it
    margins = {o.shape: o.shape_margin for o in parsed.objects}
    assert sorted(bench.shape_reads(reading(right), parsed)) == [("large", "square", "square", margins["square"]),
                                                                  ("small", "circle", "circle", margins["circle"])]
    wrong = bench.shape_reads(reading(right.replace("circle", "square")), parsed)
    assert sorted(r[:3] for r in wrong) == [("large", "square", "square"), ("small", "circle", "square")]
    summary = bench.shapes_read_summary(wrong)
    assert {k: summary[k] for k in ("n", "right", "by_size", "by_shape")} == {
        "n": 2, "right": 0.5, "by_size": {"large": 1.0, "small": 0.0}, "by_shape": {"circle": 0.0, "square": 1.0}}
    assert sum(b["n"] for b in summary["by_margin"].values()) == 2  # each recognisable shape in one margin bin
    close = bench.shapes_read_summary([("small", "circle", "square", 0.01), ("small", "square", "square", 0.02),
                                       ("large", "circle", "circle", 0.3), ("small", "blob", "circle", 0.0)])
    assert close["by_margin"]["0-0.05"] == {"n": 2, "right": 0.5} and close["by_margin"]["0.2+"] == {"n": 1, "right": 1.0}
    assert close["by_margin"]["0.05-0.1"] == {"n": 0, "right": None} and close["n"] == 4  # the blob counts overall only
    far = right.replace(f"at {x} {y}", f"at {x + 9} {y}", 1)  # the circle's word is written 9 px away: not matched
    assert [r[1] for r in bench.shape_reads(reading(far), parsed)] == ["square"]
    assert bench.shape_reads(read_answer("Score: 10/10"), parsed) == []


def test_judge_benchmark_pairwise_with_rule_verdicts_is_written_as_json(monkeypatch):
    """measure_pairwise(verdict_source="rules"): answers that read both images right but call
    every requirement met still pick the passing image; the figures serialise as JSON."""
    import json

    from qwenrl.rewards.pairwise import PairwiseLocalJudge
    from qwenrl.rewards.shapes_cot import target_for
    from qwenrl.rewards.vlm import VLMLocalJudge
    from qwenrl.rewards import Sample

    bench = _benchmark("judge")
    relation, left, right = RELATION, RED_LEFT, RED_RIGHT

    def generate(self, requests, max_new_tokens):
        out = []
        for images, _ in requests:
            t = target_for(Sample.from_spec(images[-1], relation), positions=True)
            out.append(t.text.replace("not met", "met").rsplit("Score:", 1)[0] + "Score: 10/10")
        return out

    monkeypatch.setattr(PairwiseLocalJudge, "_generate", generate)
    monkeypatch.setattr(VLMLocalJudge, "load", lambda self: None)
    got = {source: bench.measure_pairwise("t2i", [relation, relation], ["m1", "m2"], np.stack([left, right]),
                                          REPO / "data" / "models" / "shapes-judge-positions", 0, verdict_source=source)
           for source in ("answer", "rules")}
    assert got["rules"]["decisive_pairs"] == 1 and got["rules"]["decisive_accuracy"] == 1.0 and got["rules"]["verdicts"] == "rules"
    assert got["answer"]["decisive_accuracy"] == 0.0  # the written verdicts call both images a pass: a tie
    json.dumps(got)


def test_reader_calibration_counts_agreement_and_the_answers_a_threshold_changes():
    """reader_calibration.agreement(): answers that read right agree with the checker as written;
    a threshold low enough to call a confident circle a blob changes that answer and fails it."""
    from types import SimpleNamespace

    from qwenrl.rewards import Sample
    from qwenrl.rewards.reader import SHAPE_WORDS
    from qwenrl.rewards.shapes_cot import target_for
    from qwenrl.world.grammar import T2IPrompt
    from qwenrl.world.scene import Obj, Scene, render

    bench = _benchmark("reader_calibration")
    prompt = T2IPrompt("a red circle", "single", {"objects": [{"color": "red", "shape": "circle", "count": 1}],
                                                   "relation": None, "background": None})
    sample = Sample.from_spec(render(Scene("white", (Obj("circle", "red", "large", 8, 8),))), prompt)
    words = target_for(sample, positions=True).text.replace("\n", " \n ").split(" ")
    ids_of = {w: 100 + k for k, w in enumerate(SHAPE_WORDS)}
    vocab = {w: ids_of.get(w, 200 + k) for k, w in enumerate(dict.fromkeys(words))}
    inverse = {i: w for w, i in {**vocab, **ids_of}.items()}
    ids = [vocab[w] for w in words]
    pieces = [w if w == "\n" else " " + w for w in words]
    probs = [[0.7, 0.0, 0.0, 0.3]] * len(ids)  # circle, with blob a 30% share
    judge = SimpleNamespace(decode_ids=lambda row: " ".join(inverse[i] for i in row).replace(" \n ", "\n"))
    data = {"samples": [sample], "names": ["m"], "passed": [True], "rows": [(ids, pieces, probs)], "shape_ids": ids_of}
    assert bench.agreement(data, judge, None) == {"blob_at": None, "agreement": 1.0, "answers_changed": 0, "by_model": {"m": 1.0}}
    assert bench.agreement(data, judge, 0.5)["answers_changed"] == 0
    low = bench.agreement(data, judge, 0.2)
    assert low["answers_changed"] == 1 and low["agreement"] == 0.0


def test_shape_reading_benchmark_reads_judges_side_by_side(monkeypatch, tmp_path, capsys):
    """benchmarks/shape_reading.py: a judge that writes the checker's own answer reads every shape
    right and its reader agrees with the checker; the table and JSON say so; a bad judge spec is refused."""
    from types import SimpleNamespace

    from qwenrl.rewards.shapes_cot import target_for

    bench = _benchmark("shape_reading")
    fake = SimpleNamespace(options=SimpleNamespace(batch_size=8),
                           generate=lambda samples: [target_for(s, positions=True).text for s in samples])
    monkeypatch.setattr(bench, "judge_component", lambda task, path: fake)
    out = bench.read_shapes("t2i", [RELATION, RELATION], np.stack([RED_LEFT, RED_RIGHT]), REPO / "data" / "models" / "shapes-judge")
    assert out["reader_agreement"] == 1.0 and out["right"] == 1.0 and out["n"] == 4 and out["samples"] == 2
    assert sum(b["n"] for b in out["by_margin"].values()) == 4
    text = bench.table({"judges": {"exact": {"t2i": out}}})
    assert "| exact | t2i | 100.0% | 100.0% |" in text
    with pytest.raises(SystemExit):
        bench.main([f"x={tmp_path}"])
    assert "expected NAME=FOLDER" in capsys.readouterr().err


def test_reader_probability_scores_thresholds_and_margins_against_the_checker():
    """benchmarks/reader_probability.py on hand-made readings: three images of one prompt, the
    checker passes only the first; the greedy readings pass the first two (the second is a close
    call the reader missed), but P(pass) ranks them 0.9 > 0.6, so the margin-0 preference gets the
    decisive pair the greedy tie lost."""
    bench = _benchmark("reader_probability")
    data = {"checker": [(True, True), (True, False), (False, False)],
            "greedy": [(True, True), (True, True), None],
            "soft": {"shape": [0.9, 0.6, None]}}
    pw = bench.pointwise(data, "shape")
    assert pw["greedy"] == pytest.approx(2 / 3)
    assert pw["by_tau"]["0.7"] == 1.0 and pw["by_tau"]["0.5"] == pytest.approx(2 / 3)
    pairs = [(0, 1), (1, 2), (2, 0)]
    out = bench.pairwise(data, "shape", pairs)
    assert out["pairs"] == 3 and out["decisive_pairs"] == 2  # (0, 1) and (2, 0); (1, 2) both fail
    # greedy: (0, 1) tie (wrong), (1, 2) A (right: 1 of 2 met beats 0), (2, 0) B (right)
    assert out["greedy"] == {"decisive": 0.5, "all": pytest.approx(2 / 3), "ties": pytest.approx(1 / 3)}
    assert out["by_margin"]["0.0"]["decisive"] == 1.0 and out["by_margin"]["0.0"]["ties"] == 0.0
    assert out["by_margin"]["0.2"]["decisive"] == 1.0  # 0.9 - 0.6 > 0.2


def test_reader_probability_without_decisive_pairs_writes_none_not_nan():
    bench = _benchmark("reader_probability")
    data = {"checker": [(True,), (True,)], "greedy": [(True,), (False,)], "soft": {"shape": [0.9, 0.2]}}
    out = bench.pairwise(data, "shape", [(0, 1)])
    assert out["decisive_pairs"] == 0 and out["greedy"]["decisive"] is None and out["greedy"]["all"] == 0.0
    assert bench.pct(None) == "n/a" and bench.pct(0.5) == "50.0%"


def test_clarity_benchmark_names_why_a_text_to_image_image_fails():
    """failure_causes(): each cause the checker's objects show, from renders whose faults are known."""
    from qwenrl.world.check import check_image
    from qwenrl.world.grammar import T2IPrompt
    from qwenrl.world.scene import Obj, Scene, render

    bench = _benchmark("clarity")
    red, blue = {"color": "red", "shape": "circle", "count": 1}, {"color": "blue", "shape": "square", "count": 1}
    two = T2IPrompt("a red circle and a blue square", "two_objects", {"objects": [red, blue]})
    left = T2IPrompt("a red circle left of a blue square", "position",
                     {"objects": [red, blue], "relation": {"a": 0, "rel": "left of", "b": 1}})

    def causes(prompt, *objs):
        image = render(Scene("white", objs))
        result = check_image(prompt, image)
        assert not result.passed
        return bench.failure_causes(prompt, result)

    circle, square = Obj("circle", "red", "small", 3, 10), Obj("square", "blue", "large", 16, 8)
    assert causes(left, circle.moved_to(18, 10), square.moved_to(2, 8)) == {"relation"}
    assert causes(two, circle) == {"colour missing"}
    assert causes(two, Obj("triangle", "red", "small", 3, 10), square) == {"shape read as another"}  # a clear misreading
    # every wanted object there: an extra one (or a wrong background) is the cause
    assert causes(two, circle, square, Obj("square", "green", "small", 3, 24)) == {"extra or background"}
    assert causes(two, Obj("circle", "green", "small", 3, 10), square, Obj("triangle", "green", "small", 3, 24)) == {
        "colour missing", "extra objects"}


def test_move_failures_sorts_the_checkers_reasons_and_measures_the_move():
    """reason_kind() on the checker's own reasons; along() is the grammar's 8 px on the target's
    render, 0 on the source's and −8 on the move the other way."""
    from qwenrl.world.check import check_image
    from qwenrl.world.contrast import one_fact_away
    from qwenrl.world.grammar import MOVE_STEP, sample_edit
    from qwenrl.world.parse import parse
    from qwenrl.world.scene import render

    bench = _benchmark("move_failures")
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    rng = np.random.default_rng(0)
    while True:
        task = sample_edit(rng, family="move", split="train")
        back = [alt for _, alt in one_fact_away(task, split=None) if alt.instruction.split()[-1] == opposite[task.instruction.split()[-1]]]
        if back:
            break
    assert bench.along(task, parse(render(task.target))) == pytest.approx(MOVE_STEP, abs=0.5)
    assert bench.along(task, parse(render(task.source))) == pytest.approx(0.0, abs=0.5)
    assert bench.along(task, parse(render(back[0].target))) == pytest.approx(-MOVE_STEP, abs=0.5)
    reasons = check_image(task, render(task.source)).reasons
    assert reasons and {bench.reason_kind(r) for r in reasons} == {"moved too little or the wrong way"}
    assert bench.reason_kind("drifted 5.0 px sideways") == "drifted sideways"
    assert bench.reason_kind("extra small red circle at (3, 4)") == "an extra object"
    assert bench.reason_kind("the small red circle is missing") == "an object missing or displaced"


def test_run_curves_blocks_training_rewards_and_reads_every_evaluation(tmp_path, monkeypatch):
    bench = _benchmark("run_curves")
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": 0, "eval/accuracy": 0.5, "eval/families/move": 0.25}]
    rows += [{"step": s, "rewards/total/mean": s / 10, "charts/step_seconds": 10.0 + s} for s in range(1, 6)]
    rows += [{"step": 5, "eval/accuracy": 0.75, "eval/families/move": 0.5}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = bench.curves(run, 2, "move")
    assert c["train_reward_by_block"] == pytest.approx({"1-2": 0.15, "3-4": 0.35, "5-5": 0.5})
    assert c["eval"][0]["move"] == 0.25 and c["eval"][5]["accuracy"] == 0.75 and c["median_step_seconds"] == 13.0
    monkeypatch.setattr(sys, "argv", ["run_curves.py", f"a={run}", f"b={tmp_path / 'nothing'}"])
    with pytest.raises(SystemExit, match="no metrics.jsonl"):
        bench.main()


def test_move_rate_learns_on_the_answer_key_and_writes_its_curve(tmp_path):
    """Two supervised updates of 8 moves on the bundled base: the curve has its three readings."""
    out = tmp_path / "move_rate.json"
    proc = subprocess.run([sys.executable, "benchmarks/move_rate.py", "--updates", "2", "--batch", "8", "--eval-every", "1",
                           "--samples", "1", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    curve = json.loads(out.read_text())["curve"]
    assert [p["updates"] for p in curve] == [0, 1, 2]
    assert all(0.0 <= p["move"] <= 1.0 for p in curve) and all(np.isfinite(p["loss"]) and p["loss"] > 0 for p in curve[1:])


def test_base_models_tables_every_family_and_refuses_a_bad_model(tmp_path):
    """markdown() lays out one row per model and a column per family; a spec without a checkpoint
    is refused with the form it wants."""
    bench = _benchmark("base_models")

    def entry(acc, fams):
        return {"accuracy": acc, "families": fams, "reward": 0.8, "aesthetics": 0.95}

    row = {"bench": {"t2i/test": entry(0.3, {"single": 0.9, "position": 0.15}), "t2i/compositional": entry(0.25, {}),
                     "edit/test": entry(0.79, {"move": 0.243, "add": 0.75})}}
    md = bench.markdown({"old": row, "new": row}, 4)
    assert "| model | overall | compositional | position | single | composite | aesthetics |" in md
    assert "| old | 30.0% | 25.0% | 15.0% | 90.0% | 0.800 | 0.950 |" in md
    assert "| new | 79.0% | 75.0% | 24.3% | 0.800 | 0.950 |" in md  # editing: no compositional column
    with pytest.raises(SystemExit, match="LABEL=CHECKPOINT"):
        bench.main(["old", "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="LABEL=CHECKPOINT"):
        bench.main([f"old={tmp_path}", "--out", str(tmp_path / "x.json")])


def test_base_models_grids_show_sources_above_edits(tmp_path):
    """sample_grids(): one row of text-to-image samples; for editing, the test sources above the
    model's results, at 4× scale."""
    from qwenrl.imageio import load_png
    from qwenrl.world.prompt_sets import load_prompt_set
    from qwenrl.world.scene import render

    bench = _benchmark("base_models")
    t2i, edit = bench.sample_grids("data/models/shapes-base", tmp_path, "base", n=2)
    assert t2i.name == "base_t2i_test.png" and load_png(t2i).shape == (36 * 4, 70 * 4, 3)
    grid = load_png(edit)
    assert grid.shape == (70 * 4, 70 * 4, 3)
    first_source = render(load_prompt_set("edit", "test", limit=2)[0].source)
    assert np.array_equal(grid[8:8 + 128:4, 8:8 + 128:4], first_source)


def test_edit_looks_measures_the_spread_among_passing_images_only():
    """benchmarks/edit_looks.py: pairs and best-of-k use the passing images of a prompt, by hand."""
    looks = _benchmark("edit_looks")
    passed = np.array([[True, True, True, False], [True, False, False, False]])
    fid = np.array([[1.0, 0.96, 0.84, 0.10], [0.7, 0.2, 0.2, 0.2]])
    # prompt 0's passes: 1.0, 0.96, 0.84 -> gaps 0.04, 0.16, 0.12; prompt 1 has one pass, no pair
    assert np.allclose(sorted(looks.pass_pair_gaps(passed, fid)), [0.04, 0.12, 0.16])  # arena_ceiling's, shared
    assert np.allclose(looks.best_over_mean(passed, fid), [1.0 - (1.0 + 0.96 + 0.84) / 3])
    s = looks.looks_summary(passed, fid, gap=0.1)
    assert s["pairs"] == 3 and abs(s["pairs_over_0.05"] - 2 / 3) < 1e-12 and abs(s["pairs_over_gap"] - 2 / 3) < 1e-12
    assert s["prompts"] == 1 and abs(s["fidelity_of_passes"] - (1.0 + 0.96 + 0.84 + 0.7) / 4) < 1e-12
    assert s["passes_below_0.9"] == 0.5 and s["pass_rate"] == 0.5


def test_edit_looks_end_to_end_on_two_prompts_writes_tables_and_a_grid(tmp_path):
    from qwenrl.imageio import load_png

    looks = _benchmark("edit_looks")
    out = looks.main(["base=data/models/shapes-base", "--limit", "2", "--samples-per-prompt", "2",
                      "--grid", str(tmp_path / "g.png"), "--out", str(tmp_path / "looks.json")])
    row = out["models"]["base"]
    assert 0 <= row["pass_rate"] <= 1 and row["pairs"] <= 2
    assert "| base |" in (tmp_path / "looks.md").read_text()
    # rows only for prompts whose images all pass: the base passes both edits of both prompts here
    assert out["grid"] == str(tmp_path / "g.png") and load_png(tmp_path / "g.png").shape[1] == (3 * 34 + 2) * 4
    assert looks.widest_grid({"passed": np.zeros((1, 2), bool), "fidelity": np.ones((1, 2))}, rows=4) is None
    with pytest.raises(SystemExit):
        looks.main(["base=data/models/shapes-base", "--samples-per-prompt", "1"])


def _probe_scenes() -> np.ndarray:
    from qwenrl.world.scene import Obj, Scene, render

    return np.stack([render(Scene("white", (Obj("circle", "red", "large", 2, 2), Obj("square", "blue", "small", 20, 20)))),
                     render(Scene("black", (Obj("triangle", "green", "large", 16, 4),)))])


def test_encoder_probe_labels_objects_the_checkers_way_and_bins_by_its_margin():
    """benchmarks/encoder_probe.py: every parsed object gets the checker's class and margin; the
    summary counts right names overall and by margin bin, blobs only in the overall figure."""
    probe = _benchmark("encoder_probe")
    objects = probe.objects_of(_probe_scenes())
    assert [(o[0], probe.CLASSES[o[2]]) for o in objects] == [(0, "circle"), (0, "square"), (1, "triangle")]
    assert all(o[1].shape == (32, 32) and o[1].any() and o[3] > 0.1 for o in objects)
    blob = (1, np.zeros((32, 32), bool), probe.CLASSES.index("blob"), 0.01)
    hand = [(0, None, 0, 0.02), (0, None, 1, 0.03), (0, None, 2, 0.5), blob]
    s = probe.summary(hand, np.array([0, 0, 2, 3]))
    assert s["n"] == 4 and s["right"] == 0.75
    assert s["by_margin"]["0-0.05"] == {"n": 2, "right": 0.5} and s["by_margin"]["0.2+"] == {"n": 1, "right": 1.0}
    assert s["by_margin"]["0.05-0.1"] == {"n": 0, "right": None}
    assert s["images_all_right"] == 0.5  # image 0 has a misnamed square, image 1's blob is right
    assert probe.close_call_share(hand, 0.05) == {"images": 2, "with_close_call": 1, "share": 0.5}  # the blob does not count
    images, owners, masks, labels, scores = probe.pack(objects, _probe_scenes(), [2, 0])
    assert len(images) == 2 and owners.tolist() == [1, 0] and labels.tolist() == [2, 0] and masks.shape == (2, 32, 32)
    assert scores.shape == (2, 3) and scores[0].argmax() == 2 and scores[1].argmax() == 0  # triangle, circle


def test_encoder_probes_name_objects_and_a_cnn_learns_the_renders(tmp_path):
    """Each probe gives one row of class scores per object; trained a few dozen steps on clean
    renders, the full-resolution CNN names their shapes; a folder without chunks is refused."""
    import torch

    probe = _benchmark("encoder_probe")
    images = _probe_scenes()
    objects = probe.objects_of(images)
    for name in ("vit4", "vit2", "cnn", "mask-cnn", "crop-mlp", "mask-crop-mlp"):
        model, params = probe.build_probe(name, REPO / "data" / "models" / "shapes-judge-reader")
        ims, owners, masks, *_ = probe.pack(objects, images, list(range(len(objects))))
        assert model(ims, owners, masks).shape == (3, len(probe.CLASSES))
    frozen, params = probe.build_probe("shipped-frozen", REPO / "data" / "models" / "shapes-judge-reader")
    assert {id(p) for p in params} == {id(p) for p in frozen.head.parameters()}
    torch.manual_seed(0)
    cnn, params = probe.build_probe("cnn", REPO)
    probe.train_probe(cnn, params, objects, images, steps=60, lr=3e-3, seed=0)
    assert probe.summary(objects, probe.predict(cnn, objects, images))["right"] == 1.0
    with pytest.raises(SystemExit, match="no .*chunks"):
        probe.folder_images(tmp_path, None)
    with pytest.raises(SystemExit, match="unknown probe"):
        probe.build_probe("resnet", REPO)


def test_encoder_probe_iou_objective_and_centred_crops():
    """The ``iou`` objective names shapes by the checker's rule on predicted template IoUs (a blob
    below its threshold) and learns clean renders; the crop probes cut a window centred on the
    object's centroid, so the same square drawn anywhere gives the same mask window."""
    import torch

    probe = _benchmark("encoder_probe")
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.3, 0.45, 0.2], [0.4, 0.6, 0.59]])
    assert probe.class_of_scores(scores).tolist() == [0, probe.CLASSES.index("blob"), 1]
    images = _probe_scenes()
    objects = probe.objects_of(images)
    assert all(np.isclose(o[4].max(), 1.0) and o[4].argmax() == o[2] for o in objects)  # exact renders fit their template
    crop = probe.CropProbe(window=20, from_mask=True)
    square = np.zeros((2, 32, 32), bool)
    square[0, 2:10, 3:11] = square[1, 20:28, 19:27] = True
    windows = crop.crops(images, np.array([0, 0]), square)
    assert windows.shape == (2, 20, 20, 1) and (windows[0] == windows[1]).all() and windows[0].sum() == 64
    cnn, params = probe.build_probe("mask-crop-mlp", REPO)
    probe.train_probe(cnn, params, objects, images, steps=80, lr=3e-3, seed=0, objective="iou")
    assert probe.summary(objects, probe.predict(cnn, objects, images, "iou"))["right"] == 1.0


def test_checker_stability_summaries_by_hand():
    """benchmarks/checker_stability.py (its per-image measure is qwenrl.world.stability's, tested
    there): the summary counts samples, edits and close calls; the decisive pairs and a judge's
    agreement are split by whether an image is one pixel from the other verdict."""
    bench = _benchmark("checker_stability")
    hand = [{"passed": True, "edits": 4, "flips": 1, "shape_flips": 1, "close_call": True},
            {"passed": False, "edits": 4, "flips": 0, "shape_flips": 2, "close_call": False},
            {"passed": True, "edits": 2, "flips": 0, "shape_flips": 0, "close_call": False}]
    s = bench.summarise(hand)
    assert s["samples"] == 3 and np.isclose(s["pass_rate"], 2 / 3) and np.isclose(s["verdict_one_pixel_away"], 1 / 3)
    assert np.isclose(s["shapes_one_pixel_away"], 2 / 3) and s["edits"] == 10 and s["edits_flipping_verdict"] == 0.1
    assert s["verdict_one_pixel_away_close_call"] == 1.0 and s["verdict_one_pixel_away_no_close_call"] == 0.0
    # two prompts, three models: prompt 0 passed by models 0 (one pixel away) and 2, prompt 1 by models 0 and 1
    grid = [dict(hand[0]), {**hand[2], "passed": True}, {**hand[1]}, {**hand[2]}, {**hand[2], "passed": True}, {**hand[1]}]
    pairs = [(0, 2), (0, 4), (2, 4), (1, 3), (1, 5), (3, 5)]  # rows model by model: two models' samples of one prompt
    assert bench.decisive_pairs(grid, pairs) == {"decisive_pairs": 4, "one_pixel_away": 1, "share": 0.25}
    # a judge's reads split by stability: right on the stable samples, wrong (or unreadable) on the one a pixel from flipping
    split = bench.judge_split(hand, [(False, True), (False, False), (True, True)])
    assert split["agreement"] == {"n": 3, "right": 2 / 3} and split["agreement_one_pixel_away"] == {"n": 1, "right": 0.0}
    assert split["agreement_verdict_stable"] == {"n": 2, "right": 1.0}
    assert split["seen_right_shapes_one_pixel_away"] == {"n": 2, "right": 0.5} and split["seen_right_shapes_stable"]["n"] == 1
    assert bench.judge_split(hand[:1], [(None, False)])["agreement"] == {"n": 1, "right": 0.0}  # unreadable disagrees



def test_checker_stability_refuses_bad_arguments_before_sampling(tmp_path):
    bench = _benchmark("checker_stability")
    with pytest.raises(SystemExit, match="at least 1"):
        bench.main(["--edits", "0"])
    with pytest.raises(SystemExit, match="--pair-judge .*not a judge folder"):
        bench.main(["--pair-judge", str(tmp_path / "missing"), "--out", str(tmp_path / "out.json")])
    assert not (tmp_path / "out.json").exists()
