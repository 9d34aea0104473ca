"""Hindsight groups of the forward-process objective (``nft_hindsight``): a group's images judged
again against instructions one fact away from their own, chosen where the strict checker passes
some but not all of them, and trained as extra groups with the same latents.

Choices are checked on clean renders; the trainer's path on tiny random policies (the choice
replaced, since their images pass nothing) and, for two processes, on the bundled base.
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

from qwenrl.world.check import check_image
from qwenrl.world.contrast import one_fact_away
from qwenrl.world.grammar import sample_edit, sample_t2i_prompt_in_split, scene_for_prompt
from qwenrl.world.scene import render
from tests.test_grpo import REPO, TIMING, overrides, world  # noqa: F401  (world is a fixture)
from tests.test_grpo_learns import BASE
from tests.test_grpo_nft import small_nft
from training.common import ConfigError
from training.grpo import GRPOConfig, hindsight_choices, train


def _move_with_opposite(seed: int = 0):
    """A train-split move and the same move the opposite way (also train split)."""
    rng = np.random.default_rng(seed)
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    while True:
        task = sample_edit(rng, family="move", split="train")
        word = task.instruction.split()[-1]
        alts = [alt for _, alt in one_fact_away(task) if alt.instruction.split()[-1] == opposite[word]]
        if alts:
            return task, alts[0]


def test_one_fact_away_lists_only_train_texts_and_never_the_item():
    task, _ = _move_with_opposite()
    alts = one_fact_away(task)
    assert alts and all(alt.split == "train" and alt.text != task.text and alt.family == "move" for _, alt in alts)
    assert len(one_fact_away(task, split=None)) >= len(alts)


def test_hindsight_picks_the_instruction_the_wrong_images_carry_out():
    task, opposite = _move_with_opposite()
    right, wrong = render(task.target), render(opposite.target)
    assert check_image(opposite, wrong).passed and not check_image(opposite, right).passed
    images = np.stack([right, right, wrong, wrong])
    rng = np.random.default_rng(0)
    # the other two directions pass no image, so the opposite one is the only instruction carried out in part
    assert [alt.text for alt in hindsight_choices(task, images, 3, rng)] == [opposite.text]
    assert hindsight_choices(task, images, 0, rng) == []
    # a group whose images all do the same thing has nothing to relabel
    assert hindsight_choices(task, np.stack([right] * 4), 3, rng) == []
    assert hindsight_choices(task, np.stack([wrong] * 4), 3, rng) == []


def test_hindsight_relabels_a_text_to_image_size_mistake():
    rng = np.random.default_rng(4)
    while True:
        prompt = sample_t2i_prompt_in_split(rng, "train", family="single")
        swapped = [alt for what, alt in one_fact_away(prompt) if what.startswith("size")]
        if prompt.spec["objects"][0].get("size") and swapped:
            break
    other = swapped[0]
    images = np.stack([render(scene_for_prompt(prompt, rng)), render(scene_for_prompt(other, rng))])
    picked = hindsight_choices(prompt, images, 10, np.random.default_rng(0))
    assert other.text in [p.text for p in picked]
    for p in picked:  # every pick is carried out by exactly one of the two images
        assert sum(check_image(p, img).passed for img in images) == 1


def test_hindsight_groups_train_the_same_latents_under_the_other_instruction(world, tmp_path, monkeypatch):
    import training.grpo as grpo

    def first_alternative(item, images, k, rng):  # tiny random policies pass nothing: relabel with the first alternative
        return [alt for _, alt in one_fact_away(item)][:k]

    seen, real = [], grpo.nft_batch_loss

    def spy(model, old_velocity, reference, piece, rows, draws, optimality, **kw):
        seen.append((piece.index[rows.cpu().numpy()].tolist(), [piece.items[r].text for r in rows.tolist()], piece.latents[rows].clone()))
        return real(model, old_velocity, reference, piece, rows, draws, optimality, **kw)

    monkeypatch.setattr(grpo, "hindsight_choices", first_alternative)
    monkeypatch.setattr(grpo, "nft_batch_loss", spy)
    result = train(small_nft(world, steps=1, nft_hindsight=1, num_inner_epochs=1, updates_per_epoch=1), tmp_path / "run")
    P, G = 2, 4
    latents = {}
    texts = {}
    for index, row_texts, lat in seen:
        for g, text, x in zip(index, row_texts, lat):
            latents[g], texts[g] = x, text
    hind = [g for g in latents if g >= P * G]
    assert sorted(hind) == list(range(P * G, 2 * P * G))  # slot (P + i·K + h)·G + j, K = 1
    for g in hind:
        own = g - P * G  # prompt i's sample j is i·G + j
        assert torch.equal(latents[g], latents[own]) and texts[g] != texts[own]
    row = result["metrics"]
    assert row["charts/hindsight_groups"] == P and row["charts/hindsight_groups_kept"] <= P


def test_without_hindsight_nothing_changes(world, tmp_path):
    a = train(small_nft(world, steps=1), tmp_path / "a")["metrics"]
    b = train(small_nft(world, steps=1, nft_hindsight_families=["single"]), tmp_path / "b")["metrics"]  # families alone: off
    assert not any("hindsight" in k for k in a)
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}


def test_hindsight_two_processes_match_one(tmp_path):
    """On the bundled base (whose two-object images pass about half the time, and often carry out a
    prompt one fact away instead, so groups get relabelled), hindsight slots filled on two
    processes give the one-process run's rewards and weights."""
    cfg = GRPOConfig(
        model=str(BASE), task="t2i", reward=str(REPO / "training/configs/rewards/shapes_t2i_strict.yaml"), objective="nft",
        num_prompts=4, group_size=8, rollout_batch_prompts=2, num_steps=6, cfg_mode="guided", guidance_scale=2.0,
        family_weights={"two_objects": 1.0}, nft_hindsight=2, steps=1, lr=1e-4, beta=0.0, std_mode="none", reward_range_threshold=0.5,
        num_inner_epochs=1, updates_per_epoch=1, train_batch_size=64, eval_every=0, save_every=0, state_every=1, cpu=True, seed=3,
    )
    one = train(cfg, tmp_path / "one")["metrics"]
    assert one["charts/hindsight_groups"] >= 2 and one["charts/hindsight_groups_kept"] >= 1
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(REPO / "training/configs/accelerate/cpu_2proc.yaml"),
           "-m", "training.grpo", "--run", str(tmp_path / "two")] + [a for o in overrides(cfg) for a in ("--set", o)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("charts/hindsight_groups", "charts/hindsight_groups_kept", "rewards/hindsight/mean", "rewards/total/mean"):
        assert two[key] == pytest.approx(one[key], abs=1e-9), key
    assert two["losses/total"] == pytest.approx(one["losses/total"], rel=1e-4)
    from safetensors.torch import load_file

    a = load_file(tmp_path / "one" / "state" / "model.safetensors")
    b = load_file(tmp_path / "two" / "state" / "model.safetensors")
    base = load_file(BASE / "transformer.safetensors")
    # one AdamW step moves each weight by about ±lr, its sign that of the gradient: a weight whose
    # gradient is all but zero may turn either way on a different summation order, so compare means
    moved = sum((a[k] - base[k.removeprefix("transformer.")]).abs().sum().item() for k in a)
    gap = sum((a[k] - b[k]).abs().sum().item() for k in a)
    assert moved > 0 and gap < 0.05 * moved, (gap, moved)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"nft_hindsight": -1}, r"nft_hindsight is -1; it counts hindsight groups per prompt, so use 0 \(off\) or more"),
        ({"nft_hindsight": 2, "nft_hindsight_families": ["move"]}, r"nft_hindsight_families: unknown t2i families \['move'\]"),
    ],
)
def test_bad_hindsight_configs_fail_clearly(world, values, message):
    with pytest.raises(ConfigError, match=message):
        small_nft(world, **values)


def test_hindsight_with_flow_grpo_fails_clearly(world):
    with pytest.raises(ConfigError, match="nft_hindsight: field.* of objective nft, but objective is 'flow_grpo'.*set objective: nft"):
        GRPOConfig(model=world["base"], reward=world["reward"], nft_hindsight=2)
