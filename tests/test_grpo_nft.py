"""The forward-process objective (``objective: nft``) of the GRPO trainer: the loss and its
limits, the optimality mapping, rollouts, the old policy, resume, two processes, configs, and
an end-to-end check that it moves held-out samples toward what it rewards.

Tiny random Shapes policies and the small reward of ``tests/test_grpo.py``; the end-to-end
check runs on the bundled base.
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

from qwenrl.models import load_policy
from qwenrl.models.base import Conditioning
from qwenrl.rewards.base import JUDGE_KINDS
from qwenrl.world.prompt_sets import load_prompt_set
from tests.test_grpo import REPO, TIMING, overrides, tiny_policy, world  # noqa: F401  (world is a fixture)
from tests.test_grpo_learns import BASE, mean_x
from training.common import ConfigError, VelocityModel, draw_items
from training.grpo import (
    GRPOConfig,
    NFTDraws,
    group_advantages,
    guided_prompts,
    nft_batch_loss,
    nft_loss,
    nft_optimality,
    reward_range_mask,
    rollout_groups,
    top_selection,
    train,
)


def small_nft(world: dict[str, str], **values) -> GRPOConfig:
    """An nft config a step of which takes a fraction of a second."""
    base = dict(
        model=world["base"], reward=world["reward"], objective="nft", num_prompts=2, group_size=4, num_steps=4,
        rollout_batch_prompts=1, train_batch_size=8, steps=2, eval_every=0, state_every=1, save_every=0,
        reward_range_threshold=0.0, lr=1e-3, cpu=True, nft_old_decay=0.5, num_inner_epochs=2, updates_per_epoch=1,
    )
    base.update(values)
    return GRPOConfig(**base)


# -- the loss ----------------------------------------------------------------------------------


def test_nft_loss_is_flow_matching_when_every_sample_is_optimal_and_beta_is_one():
    g = torch.Generator().manual_seed(0)
    v, v_old, u = (torch.randn(5, 4, 3, 3, generator=g) for _ in range(3))
    loss, pos, neg = nft_loss(v, v_old, u, torch.ones(5), nft_beta=1.0)
    torch.testing.assert_close(loss, ((v - u) ** 2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(pos, loss)
    torch.testing.assert_close(neg, ((2 * v_old - v - u) ** 2).mean(dim=(1, 2, 3)))


def test_nft_loss_is_flow_matching_of_the_old_velocity_when_the_policy_has_not_moved():
    g = torch.Generator().manual_seed(1)
    v_old, u = torch.randn(6, 2, 4, 4, generator=g), torch.randn(6, 2, 4, 4, generator=g)
    fm = ((v_old - u) ** 2).mean(dim=(1, 2, 3))
    for beta in (0.1, 1.0, 2.5):
        loss, _, _ = nft_loss(v_old.clone(), v_old, u, torch.rand(6, generator=g), nft_beta=beta)
        torch.testing.assert_close(loss, fm)


def test_nft_gradient_pulls_good_samples_toward_the_target_and_pushes_bad_ones_away():
    """At v = v_old the gradient is 2b(2o − 1)(v − u)/n: a descent step moves v toward u for o > ½,
    away for o < ½, and not at all for o = ½ (a group's average sample)."""
    g = torch.Generator().manual_seed(2)
    v_old, u = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    v = v_old.clone().requires_grad_(True)
    o = torch.tensor([1.0, 0.0, 0.5])
    loss, _, _ = nft_loss(v, v_old, u, o, nft_beta=0.7)
    loss.sum().backward()
    expected = 2 * 0.7 * (2 * o - 1).view(-1, 1) * (v_old - u) / 8
    torch.testing.assert_close(v.grad, expected)


def test_optimality_mapping_by_hand():
    r = np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0], [0.2, 0.4, 0.6, 0.8]])
    adv = group_advantages(r, "none", adv_clip_max=5.0)
    np.testing.assert_allclose(adv[0], [0.5, -0.5, -0.5, 0.5])
    np.testing.assert_allclose(adv[1], [0.25, 0.25, 0.25, -0.75])
    np.testing.assert_allclose(nft_optimality(adv)[0], [0.75, 0.25, 0.25, 0.75])
    np.testing.assert_allclose(nft_optimality(adv)[1], [0.625, 0.625, 0.625, 0.125])
    # a group-std normaliser saturates binary rewards at the clip: o is 1 or 0
    np.testing.assert_allclose(nft_optimality(group_advantages(r, "group"))[0], [1.0, 0.0, 0.0, 1.0], atol=1e-3)
    assert nft_optimality(np.array([7.0, -7.0, 0.0])).tolist() == [1.0, 0.0, 0.5]
    # advantage_scale W undoes a composite's weighted mean: weights 1 and 0.5 give the total
    # (s + 0.5 c) / 1.5, and 1.5 × its advantages are those of s + 0.5 c, before the clip
    s_, c_ = np.array([[1.0, 0.0, 1.0, 0.0]]), np.array([[0.2, 0.8, 1.0, 0.4]])
    np.testing.assert_allclose(group_advantages((s_ + 0.5 * c_) / 1.5, "none", scale_by=1.5),
                               group_advantages(s_ + 0.5 * c_, "none"))
    np.testing.assert_allclose(group_advantages(s_, "none", adv_clip_max=0.6, scale_by=2.0), [[0.6, -0.6, 0.6, -0.6]])
    # groups that all pass or all fail carry no signal and are filtered out
    binary = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert reward_range_mask(binary, 0.5).tolist() == [False, False, True]


def test_conditioning_where_mixes_rows_and_pads_sequences():
    a = Conditioning({"hidden": torch.ones(3, 2, 4), "pooled": torch.ones(3, 4)})
    b = Conditioning({"hidden": torch.zeros(3, 5, 4), "pooled": torch.zeros(3, 4)})
    mixed = a.where(torch.tensor([False, True, False]), b)
    assert mixed["hidden"].shape == (3, 5, 4)
    assert mixed["pooled"][:, 0].tolist() == [1.0, 0.0, 1.0]
    assert mixed["hidden"][0, 2:].abs().sum() == 0  # padded
    with pytest.raises(ValueError, match="one length"):
        a.where(torch.tensor([True]), b)


# -- rollouts and the batch loss ---------------------------------------------------------------------


def _nft_rollouts(world, policy, **values):
    cfg = small_nft(world, **values)
    items = draw_items("t2i", cfg.num_prompts, cfg.seed, 0)
    return cfg, rollout_groups(policy, items, guided_prompts(cfg, 0), 0, cfg.num_prompts, cfg, 1.0, 0)


def test_nft_rollouts_keep_clean_latents_and_the_null_prompt(world):
    policy = tiny_policy()
    cfg, pieces = _nft_rollouts(world, policy, cfg_mode="hybrid", guidance_scale=2.0, hybrid_guided_fraction=0.5)
    for pc in pieces:
        assert pc.log_probs is None and pc.sigmas is None
        assert pc.latents.shape == (len(pc.index), *policy.latent_shape())
        assert pc.null_cond is not None and len(pc.null_cond) == len(pc.index)  # for text dropout
    assert {pc.guidance_scale for pc in pieces} == {1.0, 2.0}
    _, raw = _nft_rollouts(world, policy, nft_reencode=False)
    _, enc = _nft_rollouts(world, policy, nft_reencode=True)
    assert not torch.allclose(raw[0].latents, enc[0].latents)
    np.testing.assert_array_equal(raw[0].images, enc[0].images)  # the same samples, two latent views


def test_nft_batch_loss_at_the_old_policy_is_its_flow_matching_loss(world):
    policy = tiny_policy()
    cfg, pieces = _nft_rollouts(world, policy, nft_text_dropout=0.0)
    pc = pieces[0]
    n = cfg.num_prompts * cfg.group_size
    g = torch.Generator().manual_seed(3)
    draws = NFTDraws(torch.rand(n, generator=g), torch.randn(n, *policy.latent_shape(), generator=g), torch.zeros(n, dtype=torch.bool))
    model = VelocityModel(policy)
    rows = torch.arange(len(pc.index))
    opt = torch.rand(len(rows), generator=g)
    loss, stats = nft_batch_loss(model, model, None, pc, rows, draws, opt, nft_beta=1.0, beta=0.0, guided_loss=False)
    idx = torch.as_tensor(pc.index)
    s = draws.sigma[idx].view(-1, 1, 1, 1)
    xt = (1 - s) * pc.latents + s * draws.noise[idx]
    with torch.no_grad():
        fm = ((model(xt, draws.sigma[idx], pc.cond) - (draws.noise[idx] - pc.latents)) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(loss.detach(), fm, rtol=1e-5, atol=1e-6)
    assert stats["velocity_gap"] == 0 and stats["count"] == len(rows)


# -- training ---------------------------------------------------------------------------------------


def test_top_selection_by_hand():
    r = np.array([
        [1.0, 0.2, 0.9, 0.95, 0.8],    # four pass (>= 0.5): the best three by reward
        [0.1, 0.6, 0.0, 0.2, np.nan],  # one passes
        [0.3, 0.3, 0.3, 0.3, 0.3],     # none passes: nothing kept
        [0.7, 0.7, 0.7, 0.7, 0.7],     # a tie: the earlier samples
    ])
    chosen = top_selection(r, 3, 0.5)
    assert chosen.tolist() == [
        [True, False, True, True, False],
        [False, True, False, False, False],
        [False] * 5,
        [True, True, True, False, False],
    ]
    assert not top_selection(np.full((1, 4), np.nan), 2, 0.0).any()


def test_top_selection_trains_only_the_best_samples_of_each_group(world, tmp_path, monkeypatch):
    import training.grpo as grpo_module

    seen = []
    real = grpo_module.nft_batch_loss

    def spy(model, old_velocity, reference, piece, rows, draws, optimality, **kw):
        seen.append((piece.index[rows.cpu().numpy()].tolist(), optimality.tolist()))
        return real(model, old_velocity, reference, piece, rows, draws, optimality, **kw)

    monkeypatch.setattr(grpo_module, "nft_batch_loss", spy)
    # every sample passes min_reward 0, so each of the 2 groups keeps exactly its best 2 of 4
    result = train(small_nft(world, steps=1, nft_selection="top", nft_top_k=2, nft_min_reward=0.0, num_inner_epochs=1), tmp_path / "run")
    trained = sorted(i for rows, _ in seen for i in rows)
    assert len(trained) == 4 and {i // 4 for i in trained} == {0, 1}
    assert all(o == 1.0 for _, opt in seen for o in opt)
    assert result["metrics"]["charts/frac_samples_trained"] == 0.5 and result["metrics"]["charts/frac_groups_filtered"] == 0.0


def test_one_nft_step_trains_the_denoiser_and_keeps_an_old_policy(world, tmp_path):
    result = train(small_nft(world, steps=1, save_every=1), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for key in ("losses/total", "losses/nft_pos", "losses/nft_neg", "losses/nft_optimality", "losses/nft_old_gap",
                "charts/nft_old_decay", "rewards/total/mean", "rewards/strict/mean", "charts/grad_norm"):
        assert key in rows[-1], key
    assert "losses/clipfrac" not in rows[-1] and rows[-1]["charts/updates"] == 2
    base = load_file(Path(world["base"]) / "transformer.safetensors")
    new = load_file(Path(result["checkpoint"]) / "transformer.safetensors")
    assert any(not torch.equal(base[k], new[k]) for k in base)
    state = tmp_path / "run" / "state"
    model, old = load_file(state / "model.safetensors"), load_file(state / "old.safetensors")
    # θ_old = ½·θ₀ + ½·θ₁ after one step with η = ½
    for k in model:
        torch.testing.assert_close(old[k], 0.5 * base[k.removeprefix("transformer.")] + 0.5 * model[k])


def test_nft_lora_step_trains_adapters_and_lags_them(world, tmp_path):
    result = train(small_nft(world, steps=1, trainable="lora", lora_rank=4, beta=0.05, cfg_mode="guided", guidance_scale=2.0,
                             nft_guided_loss=True), tmp_path / "run")
    old = load_file(tmp_path / "run" / "state" / "old.safetensors")
    assert old and all("lora_" in k for k in old)
    assert result["metrics"]["losses/kl"] >= 0
    load_policy(result["checkpoint"])


def test_nft_resume_continues_exactly(world, tmp_path):
    kw = dict(state_every=2, cfg_mode="hybrid", guidance_scale=2.0, hybrid_guided_fraction=0.5, ema_decay=0.5, beta=0.02,
              nft_old_decay_warmup=3)
    train(small_nft(world, steps=4, **kw), tmp_path / "straight")
    train(small_nft(world, steps=2, **kw), tmp_path / "resumed")
    train(small_nft(world, steps=4, **kw), tmp_path / "resumed")
    for stem in ("model", "optimizer", "ema", "old"):
        a = load_file(tmp_path / "straight" / "state" / f"{stem}.safetensors")
        b = load_file(tmp_path / "resumed" / "state" / f"{stem}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), stem

    def metrics(run):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]

    assert metrics("straight") == metrics("resumed")
    assert [r["charts/nft_old_decay"] for r in metrics("straight")] == pytest.approx([0.5 / 3, 1 / 3, 0.5, 0.5])


def test_nft_two_processes_match_one(world, tmp_path):
    cfg = small_nft(world, num_prompts=4, rollout_batch_prompts=2, steps=2, cfg_mode="hybrid", guidance_scale=2.0, hybrid_guided_fraction=0.5)
    train(cfg, tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(REPO / "training/configs/accelerate/cpu_2proc.yaml"),
           "-m", "training.grpo", "--run", str(tmp_path / "two")] + [a for o in overrides(cfg) for a in ("--set", o)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stem in ("model", "old"):
        a = load_file(tmp_path / "one" / "state" / f"{stem}.safetensors")
        b = load_file(tmp_path / "two" / "state" / f"{stem}.safetensors")
        base = load_file(Path(world["base"]) / "transformer.safetensors")
        moved = max((a[k] - base[k.removeprefix("transformer.")]).abs().max().item() for k in a)
        gap = max((a[k] - b[k]).abs().max().item() for k in a)
        assert moved > 1e-4 and gap < 1e-3 * moved, stem
    rows = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("one", "two")]
    for r1, r2 in zip(*rows):
        assert r1["rewards/total/mean"] == pytest.approx(r2["rewards/total/mean"], abs=1e-9)
        assert r1["losses/total"] == pytest.approx(r2["losses/total"], rel=1e-3, abs=1e-8)


def test_nft_moves_samples_towards_what_it_rewards(tmp_path, monkeypatch):
    """End to end on the bundled base: a reward for drawing further right moves held-out samples right."""
    monkeypatch.setitem(JUDGE_KINDS, "test_rightward", "tests.test_grpo_learns:RightwardJudge")
    reward = tmp_path / "rightward.yaml"
    reward.write_text(yaml.safe_dump({"name": "rightward", "task": "t2i", "components": {"right": {"judge": "test_rightward", "weight": 1.0}}}))
    cfg = GRPOConfig(
        model=str(BASE), reward=str(reward), objective="nft", num_prompts=4, group_size=8, rollout_batch_prompts=4, num_steps=10,
        cfg_mode="none", steps=8, lr=1e-4, beta=0.0, reward_range_threshold=0.0, std_mode="group", num_inner_epochs=4,
        updates_per_epoch=1, weight_decay=0.0, eval_every=0, save_every=8, state_every=0, cpu=True,
    )
    texts = [p.text for p in load_prompt_set("t2i", "test", limit=32)]
    before = mean_x(load_policy(BASE), texts)
    result = train(cfg, tmp_path / "run")
    after = mean_x(load_policy(result["checkpoint"]), texts)
    assert after > before + 0.05, (before, after)


# -- configs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, message",
    [
        ({"objective": "ppo"}, r"unknown objective 'ppo'; set objective to one of \('flow_grpo', 'nft'\)"),
        ({"nft_beta": 0.0}, "nft_beta is 0.0; it must be > 0"),
        ({"nft_beta": -1.0}, "nft_beta is -1.0; it must be > 0"),
        ({"sde_window": [0, 2]}, "sde_window: field.* of objective flow_grpo, but objective is 'nft'.*remove them.*or set objective: flow_grpo"),
        ({"clip_range": 1e-4}, "clip_range: field.* of objective flow_grpo"),
        ({"noise_level": 0.5}, "noise_level: field.* of objective flow_grpo"),
        ({"nft_old_decay": 1.0}, r"nft_old_decay is 1.0; use a value in \[0, 1\)"),
        ({"nft_sample_with": "teacher"}, "nft_sample_with must be one of"),
        ({"nft_timesteps": "cosine"}, "nft_timesteps must be one of"),
        ({"nft_logit_std": 0.0}, "nft_logit_std must be > 0"),
        ({"nft_text_dropout": 1.0}, r"nft_text_dropout must lie in \[0, 1\)"),
        ({"nft_selection": "best"}, "nft_selection must be one of"),
        ({"nft_selection": "top", "nft_top_k": 9}, r"nft_top_k is 9; keep between 1 and group_size \(4\)"),
        ({"advantage_scale": 0.0}, r"advantage_scale must be positive \(1 leaves advantages as they are\), got 0.0"),
    ],
)
def test_bad_nft_configs_fail_clearly(world, values, message):
    with pytest.raises(ConfigError, match=message):
        small_nft(world, **values)


def test_top_k_is_checked_only_when_top_selection_uses_it(world):
    """Groups smaller than the default nft_top_k are fine while every sample trains (selection all)."""
    cfg = small_nft(world, group_size=2)
    assert cfg.nft_selection == "all" and cfg.nft_top_k > cfg.group_size
    with pytest.raises(ConfigError, match=r"nft_top_k is 4; keep between 1 and group_size \(2\)"):
        small_nft(world, group_size=2, nft_selection="top")


def test_nft_fields_with_flow_grpo_fail_clearly(world):
    with pytest.raises(ConfigError, match="nft_beta: field.* of objective nft, but objective is 'flow_grpo'.*set objective: nft"):
        GRPOConfig(model=world["base"], reward=world["reward"], nft_beta=0.5)


def test_the_shipped_shapes_configs_use_the_forward_process_objective(world):
    for task in ("t2i", "edit"):
        cfg = GRPOConfig.from_yaml(REPO / f"training/configs/shapes_grpo_{task}.yaml", model=world["base"],
                                   **({"reward": world["reward"]} if task == "t2i" else {}))
        assert cfg.objective == "nft" and cfg.eval_limit == 250 and cfg.num_steps <= 20
        flow = GRPOConfig.from_yaml(REPO / f"training/configs/shapes_grpo_{task}_flow.yaml", model=world["base"],
                                    **({"reward": world["reward"]} if task == "t2i" else {}))
        assert flow.objective == "flow_grpo"


def test_with_no_lag_the_anchor_is_the_step_start_not_the_moving_policy(world, tmp_path):
    """η = 0: the old policy is the weights the step started from. After the step's first
    optimizer update the policy has moved away from it, so the velocity gap is positive (an
    anchor that followed the policy within the step would leave no trust region at all)."""
    train(small_nft(world, steps=1, nft_old_decay=0.0, num_inner_epochs=3), tmp_path / "run")
    row = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert row["charts/updates"] == 3 and row["losses/nft_old_gap"] > 0
    state = tmp_path / "run" / "state"
    model, old = load_file(state / "model.safetensors"), load_file(state / "old.safetensors")
    assert all(torch.equal(model[k], old[k]) for k in model)  # after the step, θ_old = θ
