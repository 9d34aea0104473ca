"""GRPO trainer: log-prob bookkeeping, advantage maths, KL, updates, multi-process, resume, configs, CLI.

Everything runs on tiny random Shapes policies (a few thousand parameters) with a small
programmatic reward, for a few steps, on one CPU core.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from qwenrl.models.shapes import ShapesPolicy
from training.common import ConfigError, RESUMABLE_KEYS, VelocityModel, draw_items, field_docs, frozen_copy, load_config
from training.grpo import (
    GRPOConfig,
    grpo_loss,
    group_advantages,
    guided_prompts,
    reward_range_mask,
    rollout_groups,
    train,
)

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "vae": {"block_out_channels": [16, 16, 16]},
    "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1},
    "transformer": {"num_layers": 1, "attention_head_dim": 8, "num_attention_heads": 2},
}
TIMING = ("charts/samples_per_s", "charts/step_seconds", "charts/rollout_seconds", "charts/reward_seconds", "charts/update_seconds")


def tiny_policy(seed: int = 0) -> ShapesPolicy:
    torch.manual_seed(seed)
    return ShapesPolicy(TINY)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict[str, str]:
    """A tiny base, a tiny teacher and a small t2i reward, saved once per session."""
    root = tmp_path_factory.mktemp("grpo-world")
    tiny_policy(0).save(root / "base", name="tiny-base", lineage=["tiny-base"], parent=None)
    tiny_policy(1).save(root / "teacher", name="tiny-teacher", lineage=["tiny-teacher"], parent=None)
    reward = {
        "name": "tiny_t2i",
        "task": "t2i",
        "components": {
            "alignment": {"judge": "shapes_alignment", "weight": 0.7},
            "aesthetics": {"judge": "shapes_aesthetics", "weight": 0.3},
            "strict": {"judge": "shapes_oracle", "weight": 0.0},
        },
    }
    (root / "reward.yaml").write_text(yaml.safe_dump(reward))
    return {"base": str(root / "base"), "teacher": str(root / "teacher"), "reward": str(root / "reward.yaml"), "root": str(root)}


def small(world: dict[str, str], **values) -> GRPOConfig:
    """A GRPO config a step of which takes a fraction of a second."""
    base = dict(
        model=world["base"], reward=world["reward"], num_prompts=2, group_size=4, num_steps=4, sde_window=[0, 2],
        rollout_batch_prompts=1, train_batch_size=8, steps=2, eval_every=0, state_every=1, save_every=0,
        reward_range_threshold=0.0, lr=1e-3, cpu=True,
    )
    base.update(values)
    return GRPOConfig(**base)


def overrides(cfg: GRPOConfig) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in vars(cfg).items() if v is not None]


# -- advantages and filtering ------------------------------------------------------------------


def test_group_advantages_per_group_and_over_the_batch():
    r = np.array([[0.0, 1.0], [0.5, 0.5], [0.2, 0.6]])
    adv = group_advantages(r, "group", adv_clip_max=10)
    np.testing.assert_allclose(adv[0], np.array([-0.5, 0.5]) / (0.5 + 1e-4))  # (r - mean) / (std + eps)
    np.testing.assert_allclose(adv[1], [0.0, 0.0])  # no spread: no signal
    np.testing.assert_allclose(adv[2], [-0.2 / (0.2 + 1e-4), 0.2 / (0.2 + 1e-4)])
    batch = group_advantages(r, "batch", adv_clip_max=10)
    std = r.std()
    np.testing.assert_allclose(batch[2], (r[2] - 0.4) / (std + 1e-4))
    assert np.all(np.abs(group_advantages(r * 1000, "batch", adv_clip_max=0.5)) <= 0.5)


def test_missing_rewards_get_zero_advantage_and_are_left_out():
    r = np.array([[0.0, np.nan, 1.0, 1.0]])
    adv = group_advantages(r, "group")
    assert adv[0, 1] == 0.0
    mean, std = 2 / 3, np.std([0.0, 1.0, 1.0])
    np.testing.assert_allclose(adv[0, [0, 2]], (np.array([0.0, 1.0]) - mean) / (std + 1e-4))


def test_reward_range_filter_drops_groups_without_signal():
    r = np.array([[0.3, 0.3, 0.3], [0.3, 0.31, 0.3], [0.0, 0.5, 1.0], [np.nan, 0.9, np.nan]])
    np.testing.assert_array_equal(reward_range_mask(r, 0.05), [False, False, True, False])
    np.testing.assert_array_equal(reward_range_mask(r, 0.0), [False, True, True, False])


def test_family_weights_steer_the_drawn_prompts():
    from collections import Counter

    weights = {"position": 3.0, "two_objects": 1.0}
    drawn = [it for step in range(40) for it in draw_items("t2i", 8, 0, step, family_weights=weights)]
    counts = Counter(it.family for it in drawn)
    assert set(counts) == {"position", "two_objects"}  # families left out get weight 0
    assert 0.65 < counts["position"] / len(drawn) < 0.85  # 3:1 → 0.75
    assert all(it.split == "train" for it in drawn)
    assert [it.text for it in draw_items("t2i", 8, 0, 5, family_weights=weights)] == [it.text for it in drawn[40:48]]  # pure in (seed, step)
    edits = draw_items("edit", 16, 0, 0, family_weights={"move": 1.0})
    assert {it.family for it in edits} == {"move"} and all(it.split == "train" for it in edits)
    uniform = Counter(it.family for step in range(40) for it in draw_items("t2i", 8, 0, step))
    assert len(uniform) == 5


def test_hybrid_cfg_guides_the_configured_fraction_of_groups(world):
    cfg = small(world, num_prompts=8, rollout_batch_prompts=1, cfg_mode="hybrid", guidance_scale=2.0, hybrid_guided_fraction=0.25)
    picks = [guided_prompts(cfg, step) for step in range(5)]
    assert all(p.sum() == 2 for p in picks)
    assert len({tuple(p) for p in picks}) > 1  # a different quarter each step
    assert guided_prompts(small(world, cfg_mode="guided", guidance_scale=2.0), 0).all()
    assert not guided_prompts(small(world), 0).any()


# -- the loss --------------------------------------------------------------------------------------


def hp(cfg: GRPOConfig) -> dict[str, float]:
    return {"noise_level": cfg.noise_level, "clip_range": cfg.clip_range, "beta": cfg.beta}


def _rollouts(world, policy, **values):
    cfg = small(world, **values)
    items = draw_items("t2i", cfg.num_prompts, cfg.seed, 0)
    return cfg, rollout_groups(policy, items, guided_prompts(cfg, 0), 0, cfg.num_prompts, cfg, 1.0, 0)


@pytest.mark.parametrize("cfg_mode", ["none", "hybrid"])
def test_recomputed_log_probs_match_the_recorded_ones(world, cfg_mode):
    """At the first inner step the policy has not moved: the ratio is 1 and nothing is clipped."""
    policy = tiny_policy()
    cfg, pieces = _rollouts(world, policy, cfg_mode=cfg_mode, guidance_scale=3.0, hybrid_guided_fraction=0.5, clip_range=1e-4)
    assert {pc.guidance_scale for pc in pieces} == ({1.0} if cfg_mode == "none" else {1.0, 3.0})
    model = VelocityModel(policy)
    for pc in pieces:
        rows = torch.arange(len(pc.index))
        for t in cfg.trained_steps():
            tt = torch.full_like(rows, t)
            _, stats = grpo_loss(model, None, pc, rows, tt, torch.ones(len(rows)), **hp(cfg))
            assert stats["ratio_deviation"] / len(rows) < 1e-5
            assert stats["clipfrac"] == 0
        assert torch.all(pc.log_probs[:, cfg.sde_window[1]:] == 0)  # ODE steps record nothing


def test_kl_is_zero_when_the_policy_is_its_reference(world):
    policy = tiny_policy()
    cfg, pieces = _rollouts(world, policy, beta=0.04)
    model, ref = VelocityModel(policy), VelocityModel(frozen_copy(policy))
    rows = torch.arange(len(pieces[0].index))
    loss, stats = grpo_loss(model, ref, pieces[0], rows, torch.zeros_like(rows), torch.zeros(len(rows)), **hp(cfg))
    assert stats["kl"] == 0 and torch.all(loss == 0)
    # LoRA: the reference is the model with adapters off, identical until the adapters train.
    policy.enable_lora(rank=4)
    def reference(*args):
        with policy.disabled_adapters():
            return model(*args)
    _, stats = grpo_loss(model, reference, pieces[0], rows, torch.zeros_like(rows), torch.zeros(len(rows)), **hp(cfg))
    assert stats["kl"] == 0
    # once the policy moves, the KL is positive
    with torch.no_grad():
        for p in policy.transformer.parameters():
            if p.requires_grad:
                p.add_(0.05)
    _, stats = grpo_loss(model, reference, pieces[0], rows, torch.zeros_like(rows), torch.zeros(len(rows)), **hp(cfg))
    assert stats["kl"] > 0


def test_frozen_reference_shares_frozen_modules_and_copies_the_trained_one():
    policy = tiny_policy()
    policy.requires_grad_(False)
    policy.transformer.requires_grad_(True)
    ref = frozen_copy(policy)
    assert ref.vae is policy.vae and ref.text_encoder is policy.text_encoder
    assert ref.transformer is not policy.transformer
    assert not any(p.requires_grad for p in ref.parameters())
    assert all(p.requires_grad for p in policy.transformer.parameters())


# -- training ----------------------------------------------------------------------------------------


def test_one_step_changes_the_trained_parameters_only(world, tmp_path):
    result = train(small(world, steps=1), tmp_path / "run")
    base = {stem: load_file(Path(world["base"]) / f"{stem}.safetensors") for stem in ("transformer", "text_encoder", "vae")}
    ckpt = Path(result["checkpoint"])
    new = {stem: load_file(ckpt / f"{stem}.safetensors") for stem in base}
    assert any(not torch.equal(base["transformer"][k], new["transformer"][k]) for k in base["transformer"])
    for stem in ("text_encoder", "vae"):
        assert all(torch.equal(base[stem][k], new[stem][k]) for k in base[stem])
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert manifest["name"] == "grpo-t2i@step1" and manifest["parent"] == "tiny-base"
    assert manifest["lineage"] == ["tiny-base", "grpo-t2i@step1"]
    assert manifest["trainer"] == "grpo" and manifest["task"] == "t2i" and manifest["step"] == 1
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for key in ("rewards/total/mean", "rewards/total/std", "rewards/frac_zero_std", "losses/total", "losses/approx_kl",
                "losses/clipfrac", "losses/kl", "charts/lr", "charts/samples_per_s", "charts/step_seconds",
                "rewards/alignment/mean", "rewards/aesthetics/mean", "rewards/strict/mean"):
        assert key in rows[-1], key
    assert (tmp_path / "run" / "config.yaml").exists()


def test_lora_step_trains_adapters_and_exports_a_plain_checkpoint(world, tmp_path):
    result = train(small(world, steps=1, trainable="lora", lora_rank=4, beta=0.01, ema_decay=0.9), tmp_path / "run")
    manifest = json.loads((Path(result["checkpoint"]) / "manifest.json").read_text())
    assert manifest["policy"] == "shapes"
    state = load_file(tmp_path / "run" / "state" / "model.safetensors")
    assert state and all("lora_" in k for k in state)
    from qwenrl.models import load_policy

    load_policy(result["checkpoint"])  # merged: loads as a plain Shapes policy


def test_evaluation_writes_grids_rationales_and_eval_metrics(world, tmp_path):
    run = tmp_path / "run"
    train(small(world, steps=1, eval_every=1, eval_limit=4, eval_num_steps=2, eval_grid_size=4), run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
    assert {"eval/accuracy", "eval/rewards/total/mean", "eval/rewards/aesthetics/mean"} <= set(rows[1])
    records = json.loads((run / "samples" / "step-000001.json").read_text())
    assert len(records) == 4 and all(r["rationale"] and "passed" in r for r in records)
    assert (run / "samples" / "step-000001.png").exists()


def test_monitor_reward_is_judged_on_held_out_samples_and_never_trained_on(world, tmp_path):
    """A second reward watched at evaluation: logged under eval/monitor/, its score and rationale
    beside the trained reward's in the records; the update sees only the trained reward."""
    monitor = {"name": "watch", "task": "t2i", "components": {"strict": {"judge": "shapes_oracle", "weight": 1.0}}}
    (tmp_path / "watch.yaml").write_text(yaml.safe_dump(monitor))
    kw = dict(steps=1, eval_every=1, eval_limit=4, eval_num_steps=2, eval_grid_size=4)
    watched = train(small(world, monitor_reward=str(tmp_path / "watch.yaml"), **kw), tmp_path / "watched")
    plain = train(small(world, **kw), tmp_path / "plain")
    rows = [json.loads(line) for line in (tmp_path / "watched" / "metrics.jsonl").read_text().splitlines()]
    for row in (rows[0], rows[1]):
        # the monitor's only part is the strict checker: its mean is the held-out accuracy
        assert row["eval/monitor/rewards/total/mean"] == pytest.approx(row["eval/accuracy"])
        assert row["eval/monitor/rewards/strict/mean"] == pytest.approx(row["eval/accuracy"])
    assert rows[1]["rewards/total/mean"] is not None and not any("monitor" in k for k in rows[1] if not k.startswith("eval/"))
    records = json.loads((tmp_path / "watched" / "samples" / "step-000001.json").read_text())
    assert all(r["monitor_reward"] == float(r["passed"]) and r["monitor_rationale"] for r in records)
    # watching changes nothing that is trained
    a = load_file(Path(watched["checkpoint"]) / "transformer.safetensors")
    b = load_file(Path(plain["checkpoint"]) / "transformer.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_exactly(world, tmp_path):
    cfg4 = small(world, steps=4, state_every=2, cfg_mode="hybrid", guidance_scale=2.0, hybrid_guided_fraction=0.5, ema_decay=0.5)
    train(cfg4, tmp_path / "straight")
    train(small(world, steps=2, state_every=2, cfg_mode="hybrid", guidance_scale=2.0, hybrid_guided_fraction=0.5, ema_decay=0.5), tmp_path / "resumed")
    train(cfg4, tmp_path / "resumed")
    for stem in ("model", "optimizer", "ema"):
        a = load_file(tmp_path / "straight" / "state" / f"{stem}.safetensors")
        b = load_file(tmp_path / "resumed" / "state" / f"{stem}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), stem

    def metrics(run):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]

    assert metrics("straight") == metrics("resumed")


def test_resume_refuses_a_different_config(world, tmp_path):
    train(small(world, steps=1), tmp_path / "run")
    with pytest.raises(ConfigError, match="different config.*lr"):
        train(small(world, steps=2, lr=5e-4), tmp_path / "run")
    assert "steps" in RESUMABLE_KEYS


def test_a_run_from_before_a_new_field_resumes_while_the_field_keeps_its_default(world, tmp_path):
    train(small(world, steps=1), tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    del saved["lr_schedule"]  # as a run folder written before the field existed
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(saved))
    assert train(small(world, steps=2), tmp_path / "run")["step"] == 2
    with pytest.raises(ConfigError, match="different config.*lr_schedule"):
        train(small(world, steps=3, lr_schedule="cosine"), tmp_path / "run")


def test_two_processes_match_one(world, tmp_path):
    """accelerate launch, 2 CPU processes (gloo): each holds whole groups; gradients are all-reduced."""
    cfg = small(world, num_prompts=4, rollout_batch_prompts=2, steps=2, cfg_mode="hybrid", guidance_scale=2.0, hybrid_guided_fraction=0.5)
    train(cfg, tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(REPO / "training/configs/accelerate/cpu_2proc.yaml"),
           "-m", "training.grpo", "--run", str(tmp_path / "two")] + [a for o in overrides(cfg) for a in ("--set", o)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(tmp_path / "one" / "state" / "model.safetensors")
    b = load_file(tmp_path / "two" / "state" / "model.safetensors")
    base = load_file(Path(world["base"]) / "transformer.safetensors")
    moved = max((a[k] - base[k.removeprefix("transformer.")]).abs().max().item() for k in a)
    gap = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 1e-4 and gap < 1e-3 * moved
    rows = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("one", "two")]
    for r1, r2 in zip(*rows):
        assert r1["rewards/total/mean"] == pytest.approx(r2["rewards/total/mean"], abs=1e-9)
        assert r1["losses/total"] == pytest.approx(r2["losses/total"], rel=1e-3, abs=1e-8)


@pytest.mark.parametrize("family", ["sd3", "qwen-image"])
def test_one_lora_step_on_a_tiny_diffusers_pipeline(world, tmp_path, family):
    from tests.tiny_diffusers import build_tiny_pipeline

    build_tiny_pipeline(family).save_pretrained(tmp_path / family)
    result = train(small(world, model=str(tmp_path / family), height=32, width=32, trainable="lora", lora_rank=4, steps=1,
                         num_steps=3, group_size=2, beta=0.01, eval_every=1, eval_at_start=False, eval_limit=2, eval_num_steps=2),
                   tmp_path / "run")
    manifest = json.loads((Path(result["checkpoint"]) / "manifest.json").read_text())
    assert manifest["policy"] == "diffusers" and manifest["trainable"] == "lora" and manifest["parent"] == family
    lora = load_file(Path(result["checkpoint"]) / "lora.safetensors")
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)  # B starts at zero: it moved
    assert result["metrics"]["charts/updates"] == 2
    assert "eval/rewards/total/mean" in result["metrics"] and "eval/accuracy" not in result["metrics"]  # no strict checker off the Shapes world


# -- configs and CLI ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, message",
    [
        ({"group_size": 1}, "group_size is 1.*at least 2"),
        ({"sde_window": [3, 9]}, r"sde_window \[3, 9\] lies outside the schedule of 4 steps"),
        ({"sde_window": [2, 2]}, "sde_window"),
        ({"reward": "nope/missing.yaml"}, "reward config 'nope/missing.yaml' not found"),
        ({"model": "data/models/no-such-model"}, "model 'data/models/no-such-model' not found"),
        ({"task": "video"}, "unknown task 'video'"),
        ({"task": "edit"}, "is for task 't2i' but task is 'edit'"),
        ({"monitor_reward": "training/configs/rewards/shapes_edit.yaml"}, "monitor_reward .* is for task 'edit' but task is 't2i'"),
        ({"monitor_reward": "nope/watch.yaml"}, "reward config 'nope/watch.yaml' not found"),
        ({"lr": -1e-4}, "learning rate must be >= 0"),
        ({"cfg_mode": "guided"}, "needs guidance_scale > 1"),
        ({"cfg_mode": "sometimes"}, "cfg_mode must be one of"),
        ({"std_mode": "global"}, "std_mode must be one of"),
        ({"noise_level": 0.0}, "noise_level must be > 0"),
        ({"rollout_batch_prompts": 3}, "must divide num_prompts"),
        ({"distill_weight": 0.5}, "needs distill_teachers"),
        ({"distill_null": True}, "distill_null anchors the auxiliary distillation term, which is off"),
        ({"distill_teachers": {"t2i": "data/models/none"}}, "distill teacher for t2i 'data/models/none' not found"),
        ({"trainable": "half"}, "trainable must be"),
        ({"family_weights": {"move": 1.0}}, r"unknown t2i families \['move'\]"),
        ({"family_weights": {"position": -1.0}}, "weights must be numbers >= 0"),
        ({"family_weights": {"position": 0.0}}, "at least one family needs a positive weight"),
    ],
)
def test_bad_configs_fail_clearly(world, values, message):
    with pytest.raises(ConfigError, match=message):
        small(world, **values)


def test_yaml_loading_overrides_and_unknown_keys(world, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"model": world["base"], "reward": world["reward"], "lr": "1e-4", "group_size": 4, "rollout_batch_prompts": 1}))
    cfg = GRPOConfig.from_yaml(f, ["lr=2e-4", "sde_window=[0, 3]", "distill_teachers.t2i=" + world["teacher"]])
    assert cfg.lr == 2e-4 and isinstance(cfg.lr, float) and cfg.sde_window == [0, 3] and cfg.distill_teachers == {"t2i": world["teacher"]}
    with pytest.raises(ConfigError, match=r"unknown GRPOConfig key\(s\) \['learning_rate'\]"):
        GRPOConfig.from_yaml(f, ["learning_rate=1e-3"])
    with pytest.raises(ConfigError, match="group_size must be an integer"):
        GRPOConfig.from_yaml(f, ["group_size=many"])


def test_bundled_configs_use_known_fields(world):
    from training.distill import DistillConfig

    for path in sorted((REPO / "training" / "configs").glob("*.yaml")):
        if path.name.startswith(("shapes_pretrain", "judge")):  # not trainer configs of GRPO/distill
            continue
        raw = yaml.safe_load(path.read_text())
        cls = DistillConfig if "distill" in path.name else GRPOConfig
        fields = set(field_docs(cls))
        assert set(raw) <= fields, (path.name, set(raw) - fields)
        reward = raw.get("reward")
        if reward:
            assert (REPO / reward).is_file(), reward
    cfg = load_config(GRPOConfig, REPO / "training/configs/shapes_grpo_edit_flow.yaml", model=world["base"])
    assert cfg.task == "edit" and cfg.cfg_mode == "hybrid" and cfg.objective == "flow_grpo"


def test_every_config_field_is_documented():
    from training.distill import DistillConfig

    docs = (REPO / "docs" / "training.md").read_text()
    for cls in (GRPOConfig, DistillConfig):
        fields = [f for f in cls.__dataclass_fields__]
        described = field_docs(cls)
        assert set(fields) == set(described), set(fields) - set(described)
        missing = [f for f in fields if f"`{f}`" not in docs]
        assert not missing, f"{cls.__name__} fields missing from docs/training.md: {missing}"


def test_cli_smoke(world, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cfg = small(world, steps=1, eval_every=1, eval_limit=2, eval_num_steps=2)
    sets = [a for o in overrides(cfg) for a in ("--set", o)]
    proc = subprocess.run([sys.executable, "-m", "qwenrl", "train", "grpo", "--run", str(tmp_path / "run"), *sets],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["checkpoint"].endswith("step-000001")
    assert "[grpo" in proc.stderr  # progress goes to stderr
    bad = subprocess.run([sys.executable, "-m", "qwenrl", "train", "grpo", "--run", str(tmp_path / "bad"), *sets, "--set", "group_size=1"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "group_size is 1" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_commands_have_help():
    from click.testing import CliRunner

    from training.cli import experiment, train as train_group

    runner = CliRunner()
    for group, args in ((train_group, ["grpo", "--help"]), (train_group, ["distill", "--help"]), (experiment, ["seed-recipe", "--help"])):
        res = runner.invoke(group, args)
        assert res.exit_code == 0 and "Example" in res.output, res.output
