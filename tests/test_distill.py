"""On-policy distillation: batch mixing, velocity matching, checkpoints, resume, GRPO's auxiliary term."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.test_grpo import TIMING, small, tiny_policy, world  # noqa: F401  (the session fixture)
from training.common import ConfigError, VelocityModel, encode_items
from training.distill import DistillConfig, draw_mixed, pick_timesteps, rollout_with_teachers, task_counts, train, velocity_gap
from training.grpo import train as train_grpo


def tiny(world, **values) -> DistillConfig:  # noqa: F811
    base = dict(
        student=world["base"], teachers={"t2i": world["teacher"], "edit": world["teacher"]}, batch_size=4, num_steps=4,
        steps=2, eval_every=0, state_every=1, save_every=0, lr=1e-3, warmup_steps=0, cpu=True,
    )
    base.update(values)
    return DistillConfig(**base)


def test_batches_mix_tasks_by_weight():
    assert task_counts({"t2i": 0.5, "edit": 0.5}, 16) == {"t2i": 8, "edit": 8}
    assert task_counts({"t2i": 0.7, "edit": 0.3}, 16) == {"t2i": 11, "edit": 5}
    assert task_counts({"t2i": 1.0, "edit": 0.0}, 5) == {"t2i": 5}
    mixed = draw_mixed({"t2i": 0.5, "edit": 0.5}, 6, seed=0, step=3)
    assert [t for t, _ in mixed] == ["t2i"] * 3 + ["edit"] * 3
    assert all(it.task == t for t, it in mixed)
    assert [it.text for _, it in mixed] == [it.text for _, it in draw_mixed({"t2i": 0.5, "edit": 0.5}, 6, seed=0, step=3)]
    assert pick_timesteps(10, None, 0, 0) == list(range(10))
    picked = pick_timesteps(10, 3, 0, 0)
    assert len(picked) == 3 and picked == sorted(set(picked))


def test_velocity_gap_is_zero_against_itself_and_positive_against_another_model():
    student = tiny_policy(0)
    mixed = draw_mixed({"t2i": 0.5, "edit": 0.5}, 4, seed=0, step=0)
    kwargs = dict(num_steps=3, shift=1.0, noise_level=0.0, guidance_scale=1.0, teacher_guidance_scale=1.0, timesteps=[0, 2], seed=0)
    model = VelocityModel(student)
    rows = torch.arange(2)
    same = rollout_with_teachers(student, {"t2i": student, "edit": student}, mixed, 0, 4, **kwargs)
    assert [p.task for p in same] == ["t2i", "edit"]
    assert all(torch.allclose(velocity_gap(model, p, rows, pos), torch.zeros(2), atol=1e-10) for p in same for pos in (0, 1))
    other = tiny_policy(1)
    diff = rollout_with_teachers(student, {"t2i": other, "edit": other}, mixed, 0, 4, **kwargs)
    assert all((velocity_gap(model, p, rows, 0) > 0).all() for p in diff)


def test_distillation_lowers_the_velocity_gap(world, tmp_path):  # noqa: F811
    result = train(tiny(world, steps=12, batch_size=8, timesteps_per_trajectory=2), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for task in ("t2i", "edit"):
        gaps = [r[f"losses/distill/{task}"] for r in rows]
        assert sum(gaps[-3:]) < 0.8 * sum(gaps[:3]), (task, gaps)
    manifest = json.loads((Path(result["checkpoint"]) / "manifest.json").read_text())
    assert manifest["trainer"] == "distill" and manifest["task"] == "t2i+edit" and manifest["name"] == "distill@step12"
    assert manifest["parent"] == "tiny-base" and manifest["teachers"] == {"t2i": "tiny-teacher", "edit": "tiny-teacher"}
    assert manifest["lineage"] == ["tiny-base", "distill@step12"]


def test_distillation_resumes_exactly(world, tmp_path):  # noqa: F811
    train(tiny(world, steps=4, state_every=2), tmp_path / "straight")
    train(tiny(world, steps=2, state_every=2), tmp_path / "resumed")
    train(tiny(world, steps=4, state_every=2), tmp_path / "resumed")
    for stem in ("model", "optimizer"):
        a = load_file(tmp_path / "straight" / "state" / f"{stem}.safetensors")
        b = load_file(tmp_path / "resumed" / "state" / f"{stem}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), stem

    def metrics(run):
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert metrics("straight") == metrics("resumed")


def test_evaluation_covers_every_task(world, tmp_path):  # noqa: F811
    train(tiny(world, steps=1, eval_every=1, eval_limit=2, eval_num_steps=2), tmp_path / "run")
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"eval/t2i/accuracy", "eval/edit/accuracy", "eval/t2i/rewards/aesthetics/mean", "eval/edit/rewards/aesthetics/mean"} <= set(last)
    assert (tmp_path / "run" / "samples" / "step-000001-edit.png").exists()


def test_grpo_with_an_auxiliary_distillation_term(world, tmp_path):  # noqa: F811
    cfg = small(world, steps=1, distill_teachers={"edit": world["teacher"]}, distill_weight=0.5, distill_prompts=2, distill_timesteps=2)
    result = train_grpo(cfg, tmp_path / "run")
    assert result["metrics"]["losses/distill/edit"] > 0


def test_the_unconditional_anchor_matches_the_teachers_text_dropped_velocity():
    """distill_null: the same states with the text dropped on both sides; zero gap against itself,
    and the target is the teacher's unconditional velocity, not its conditional one."""
    from training.grpo import unconditional_piece
    from qwenrl.sampling import guided_velocity

    student, teacher = tiny_policy(0), tiny_policy(1)
    mixed = draw_mixed({"edit": 1.0}, 2, seed=0, step=0)
    kwargs = dict(num_steps=3, shift=1.0, noise_level=0.0, guidance_scale=1.0, teacher_guidance_scale=1.0, timesteps=[0, 2], seed=0)
    [dp] = rollout_with_teachers(student, {"edit": teacher}, mixed, 0, 2, **kwargs)
    items = [it for _, it in mixed]
    null = unconditional_piece(student, teacher, items, dp)
    assert null.task == "edit" and torch.equal(null.latents, dp.latents) and null.timesteps == dp.timesteps
    want = guided_velocity(teacher, dp.latents[:, 2], dp.sigmas[2], encode_items(teacher, items, null=True), 1.0, None)
    assert torch.allclose(null.teacher_velocity[:, 1], want) and not torch.allclose(null.teacher_velocity, dp.teacher_velocity)
    rows = torch.arange(2)
    itself = unconditional_piece(student, student, items, dp)
    assert torch.allclose(velocity_gap(VelocityModel(student), itself, rows, 0), torch.zeros(2), atol=1e-10)
    assert (velocity_gap(VelocityModel(student), null, rows, 0) > 0).all()


def test_grpo_anchors_both_branches_when_asked(world, tmp_path):  # noqa: F811
    from training.grpo import GRPOConfig

    assert GRPOConfig.__dataclass_fields__["distill_null"].default is False
    cfg = small(world, steps=1, distill_teachers={"edit": world["teacher"]}, distill_weight=0.5, distill_prompts=2,
                distill_timesteps=2, distill_null=True)
    assert train_grpo(cfg, tmp_path / "run")["metrics"]["losses/distill/edit"] > 0


@pytest.mark.parametrize(
    "values, message",
    [
        ({"teachers": {}}, "teachers is empty"),
        ({"teachers": {"t2i": "data/models/none"}}, "teacher for t2i 'data/models/none' not found"),
        ({"task_weights": {"t2i": 1.0, "edit": 1.0}, "teachers": None}, "no edit teacher"),
        ({"task_weights": {"t2i": -1.0}}, "negative"),
        ({"timesteps_per_trajectory": 9}, "timesteps_per_trajectory"),
        ({"student": "nowhere"}, "student 'nowhere' not found"),
        ({"lr": -1.0}, "learning rate must be >= 0"),
        ({"routing": "vote"}, "unknown routing 'vote'; set routing to one of"),
        ({"absorb_guidance": True, "guidance_scale": 2.0, "teacher_guidance_scale": 2.0}, "set guidance_scale: 1.0"),
        ({"absorb_guidance": True, "teacher_guidance_scale": 1.0}, "set teacher_guidance_scale > 1"),
        ({"query_sigma_range": [0.6, 0.2]}, "query_sigma_range"),
        ({"lr_schedule": "step"}, "unknown lr_schedule 'step'"),
        ({"student_from_teacher": "edit", "teachers": None}, "student_from_teacher is 'edit', but teachers has no such task"),
    ],
)
def test_bad_distill_configs_fail_clearly(world, values, message):  # noqa: F811
    if values.get("teachers", 0) is None:
        values = {**values, "teachers": {"t2i": world["teacher"]}}
    with pytest.raises(ConfigError, match=message):
        tiny(world, **values)


def test_a_student_started_from_a_teacher_is_that_teacher_at_step_zero(world, tmp_path):  # noqa: F811
    cfg = tiny(world, student=world["base"], teachers={"t2i": world["teacher"], "edit": world["base"]}, student_from_teacher="t2i")
    assert cfg.student == world["teacher"]  # whatever student said
    result = train(tiny(world, teachers=cfg.teachers, student_from_teacher="t2i", steps=1, lr=0.0), tmp_path / "run")
    for part in ("transformer", "text_encoder"):  # lr 0: still the teacher
        trained = load_file(Path(result["checkpoint"]) / f"{part}.safetensors")
        teacher = load_file(Path(world["teacher"]) / f"{part}.safetensors")
        assert trained.keys() == teacher.keys() and all(torch.equal(trained[k], teacher[k]) for k in teacher), part
    manifest = json.loads((Path(result["checkpoint"]) / "manifest.json").read_text())
    assert manifest["parent"] == "tiny-teacher"


def test_seed_recipe_end_to_end_on_tiny_models(world, tmp_path):  # noqa: F811
    from training.recipe import seed_recipe

    g = ["steps=1", "num_prompts=2", "group_size=2", "rollout_batch_prompts=1", "eval_every=0", "num_steps=4", "num_inner_epochs=1"]
    d = ["steps=1", "batch_size=2", "eval_every=0", "num_steps=4", "timesteps_per_trajectory=2"]
    results = seed_recipe(out=tmp_path / "out", base=world["base"], models_dir=tmp_path / "models",
                          overrides={"t2i": g, "edit": g, "distill": d}, bench_limit=2, pass_k_samples=2)
    assert list(results["table"]) == ["shapes-base", "shapes-grpo-t2i", "shapes-grpo-edit", "shapes-distilled"]
    assert {"t2i/test", "edit/test", "t2i/compositional", "edit/compositional"} <= set(results["table"]["shapes-base"])
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| shapes-distilled |" in markdown and "pass@2 (t2i / edit)" in markdown
    pk = results["table"]["shapes-grpo-t2i"]["edit/test"]["pass_at_k"]
    assert pk["n"] == 2 and set(pk["overall"]) == {"1", "2"}
    targets = {t["target"]: t for t in results["targets"]}
    assert "whole recipe <= 60 minutes" in targets and targets["whole recipe <= 60 minutes"]["met"]
    assert any("no forgetting" in t for t in targets) and any("aesthetics" in t for t in targets)
    assert json.loads((tmp_path / "out" / "results.json").read_text())["seconds"]["pass_at_k"] > 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["seconds"]["total"] > 0
    distilled = json.loads((tmp_path / "models" / "shapes-distilled" / "manifest.json").read_text())
    # the shipped config starts the student from the text-to-image specialist (student_from_teacher: t2i)
    assert distilled["name"] == "shapes-distilled" and distilled["lineage"] == ["tiny-base", "shapes-grpo-t2i", "shapes-distilled"]
    assert distilled["parent"] == "shapes-grpo-t2i"
    assert distilled["teachers"] == {"t2i": "shapes-grpo-t2i", "edit": "shapes-grpo-edit"}
    t2i = json.loads((tmp_path / "models" / "shapes-grpo-t2i" / "manifest.json").read_text())
    assert t2i["parent"] == "tiny-base" and t2i["trainer"] == "grpo" and t2i["run_checkpoint"] == "grpo-t2i@step1"



def test_seed_recipe_trains_against_the_learned_judge_when_asked(tmp_path, monkeypatch):
    """``--reward learned``: each specialist's GRPO config gets the learned judge's composite and a
    KL anchor (a --t2i-set still wins), and the models go to OUT/models unless --models-dir says."""
    from click.testing import CliRunner

    from training import grpo, recipe
    from training.cli import experiment

    seen = []

    class Stop(Exception):
        pass

    def fake_train(cfg, run):
        seen.append(cfg)
        raise Stop

    monkeypatch.setattr(grpo, "train", fake_train)
    with pytest.raises(Stop):
        recipe.seed_recipe(out=tmp_path / "o", models_dir=tmp_path / "m", reward="learned")
    assert Path(seen[0].reward).name == "shapes_t2i_learned.yaml" and seen[0].beta == recipe.LEARNED_BETA
    with pytest.raises(Stop):
        recipe.seed_recipe(out=tmp_path / "o", models_dir=tmp_path / "m", reward="learned", overrides={"t2i": ["beta=0.05"]})
    assert seen[1].beta == 0.05
    with pytest.raises(Stop):
        recipe.seed_recipe(out=tmp_path / "o", models_dir=tmp_path / "m")
    assert Path(seen[2].reward).name == "shapes_t2i_strict.yaml" and seen[2].beta == 0.03  # the shipped config's own
    with pytest.raises(Stop):
        recipe.seed_recipe(out=tmp_path / "o", models_dir=tmp_path / "m", reward="reader")
    assert Path(seen[3].reward).name == "shapes_t2i_reader.yaml" and seen[3].beta == recipe.LEARNED_BETA
    with pytest.raises(ValueError, match="reward must be one of"):
        recipe.seed_recipe(out=tmp_path / "o", models_dir=tmp_path / "m", reward="judge")
    calls = []
    monkeypatch.setattr(recipe, "seed_recipe", lambda **kw: calls.append(kw) or {"markdown": "ok"})
    out = tmp_path / "learned-run"
    assert CliRunner().invoke(experiment, ["seed-recipe", "--out", str(out), "--reward", "learned"]).exit_code == 0
    assert calls[0]["reward"] == "learned" and calls[0]["models_dir"] == str(out / "models")
    assert CliRunner().invoke(experiment, ["seed-recipe", "--out", str(out)]).exit_code == 0
    assert calls[1]["reward"] == "config" and calls[1]["models_dir"] == "data/models"
    assert CliRunner().invoke(experiment, ["seed-recipe", "--out", str(out), "--reward", "reader"]).exit_code == 0
    assert calls[2]["reward"] == "reader" and calls[2]["models_dir"] == str(out / "models")


# -- routing, absorbed guidance, query states ---------------------------------------------------


def by_hand_guided(teacher, items, x, sigma, scale):
    """v_u + w·(v_c − v_u), written out from the teacher's two passes."""
    with torch.no_grad():
        v_c = teacher.velocity(x, torch.full((len(x),), float(sigma)), encode_items(teacher, items))
        v_u = teacher.velocity(x, torch.full((len(x),), float(sigma)), encode_items(teacher, items, null=True))
    return v_u + scale * (v_c - v_u)


def test_routing_sends_each_sample_to_its_task_teacher():
    student, t2i_teacher, edit_teacher = tiny_policy(0), tiny_policy(1), tiny_policy(2)
    mixed = draw_mixed({"t2i": 0.5, "edit": 0.5}, 4, seed=0, step=0)
    kw = dict(num_steps=3, shift=1.0, noise_level=0.0, guidance_scale=1.0, teacher_guidance_scale=1.0, timesteps=[1], seed=0)
    pieces = rollout_with_teachers(student, {"t2i": t2i_teacher, "edit": edit_teacher}, mixed, 0, 4, routing="task", **kw)
    assert [p.task for p in pieces] == ["t2i", "edit"]
    for piece, teacher, other in zip(pieces, (t2i_teacher, edit_teacher), (edit_teacher, t2i_teacher)):
        items = [it for t, it in mixed if t == piece.task]
        x, s = piece.latents[:, 1], piece.sigmas[1]
        assert torch.allclose(piece.teacher_velocity[:, 0], by_hand_guided(teacher, items, x, s, 1.0), atol=1e-5), piece.task
        assert not torch.allclose(piece.teacher_velocity[:, 0], by_hand_guided(other, items, x, s, 1.0), atol=1e-3)
    # soft mixing: the weighted mean of both teachers, whatever the sample's task
    soft = rollout_with_teachers(student, {"t2i": t2i_teacher, "edit": edit_teacher}, mixed, 0, 4, routing="mixture",
                                 mixture={"t2i": 0.25, "edit": 0.75}, **kw)
    for piece in soft:
        items = [it for t, it in mixed if t == piece.task]
        x, s = piece.latents[:, 1], piece.sigmas[1]
        want = 0.25 * by_hand_guided(t2i_teacher, items, x, s, 1.0) + 0.75 * by_hand_guided(edit_teacher, items, x, s, 1.0)
        assert torch.allclose(piece.teacher_velocity[:, 0], want, atol=1e-5)


def test_absorbed_guidance_targets_the_guided_velocity_and_an_exact_student_has_zero_loss():
    student, teacher = tiny_policy(0), tiny_policy(1)
    mixed = draw_mixed({"t2i": 0.5, "edit": 0.5}, 4, seed=0, step=1)
    pieces = rollout_with_teachers(student, {"t2i": teacher, "edit": teacher}, mixed, 0, 4, num_steps=4, shift=1.0, noise_level=0.0,
                                   guidance_scale=1.0, teacher_guidance_scale=2.0, timesteps=[0, 3], seed=0)
    for piece in pieces:
        items = [it for t, it in mixed if t == piece.task]
        for pos, k in enumerate(piece.timesteps):
            x, s = piece.latents[:, k], piece.sigmas[k]
            guided = by_hand_guided(teacher, items, x, s, 2.0)
            assert torch.allclose(piece.teacher_velocity[:, pos], guided, atol=1e-5)
            assert not torch.allclose(guided, by_hand_guided(teacher, items, x, s, 1.0), atol=1e-3)  # guidance matters here

            def exact_student(latents, sigma, cond, scale, null, items=items):
                assert scale == 1.0 and null is None  # the student is queried unguided
                return by_hand_guided(teacher, items, latents, float(sigma), 2.0)

            gap = velocity_gap(exact_student, piece, torch.arange(len(items)), pos)
            assert torch.allclose(gap, torch.zeros(len(items)), atol=1e-10)


def test_query_states_come_from_the_noise_range():
    from qwenrl.sampling import sigma_schedule
    from training.distill import query_candidates

    sigmas = sigma_schedule(10, 1.0)  # 1.0, 0.9, …, 0.1, 0
    assert query_candidates(sigmas, None) == list(range(10))
    assert query_candidates(sigmas, [0.0, 0.3]) == [7, 8, 9]
    assert query_candidates(sigmas, [0.45, 0.65]) == [4, 5]
    picked = pick_timesteps(10, 2, 0, 5, candidates=[7, 8, 9])
    assert len(picked) == 2 and set(picked) <= {7, 8, 9}
    assert pick_timesteps(10, 3, 0, 5) == pick_timesteps(10, 3, 0, 5, candidates=list(range(10)))  # the same draws as before


def test_a_guidance_free_student_says_so_and_is_evaluated_unguided(world, tmp_path):  # noqa: F811
    from qwenrl.evaluation import policy_sampling_defaults
    from qwenrl.models import load_policy

    result = train(tiny(world, steps=2, guidance_scale=1.0, teacher_guidance_scale=2.0, absorb_guidance=True, query_sigma_range=[0.0, 0.5],
                        timesteps_per_trajectory=1, lr_schedule="cosine", eval_every=2, eval_limit=2, eval_num_steps=2), tmp_path / "run")
    manifest = json.loads((Path(result["checkpoint"]) / "manifest.json").read_text())
    assert manifest["sampling"]["guidance_scale"] == 1.0 and manifest["absorbed_guidance"] == 2.0
    assert policy_sampling_defaults(load_policy(result["checkpoint"]))["guidance_scale"] == 1.0
    assert "sampling" not in json.loads((Path(world["base"]) / "manifest.json").read_text())  # the base is untouched


def test_the_cosine_schedule_decays_to_its_floor():
    from training.common import lr_at

    assert [lr_at(s, 1.0, 0) for s in range(3)] == [1.0, 1.0, 1.0]
    assert [lr_at(s, 1.0, 2) for s in range(3)] == [0.5, 1.0, 1.0]
    cos = [lr_at(s, 1.0, 0, total_steps=5, schedule="cosine", min_ratio=0.1) for s in range(5)]
    assert cos[0] == pytest.approx(1.0) and cos[-1] == pytest.approx(0.1) and cos[2] == pytest.approx(0.55)
    assert all(a > b for a, b in zip(cos, cos[1:]))
    warm = [lr_at(s, 1.0, 2, total_steps=6, schedule="cosine", min_ratio=0.0) for s in range(6)]
    assert warm[:3] == [0.5, 1.0, 1.0] and warm[-1] == pytest.approx(0.0)
