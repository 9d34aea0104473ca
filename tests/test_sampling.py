"""Stateless flow-matching sampling: schedules, ODE/SDE steps and their log-probs, rollouts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from qwenrl.models.base import Conditioning, Policy
from qwenrl.sampling import (
    guided_velocity,
    ode_step,
    rollout,
    sample_images,
    sde_step,
    sigma_schedule,
    step_log_prob,
)

LATENT = (2, 3, 3)


class LinearPolicy(Policy):
    """A toy policy with a linear velocity, v = a·x + (1 + σ)·e(prompt); counts its forward passes."""

    tasks = ("t2i", "edit")

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.3))
        self.calls: list[int] = []

    def encode_prompts(self, texts, sources=None) -> Conditioning:
        emb = torch.stack([torch.full((LATENT[0],), float(len(t))) / 10 for t in texts])
        emb[:, 1] = -emb[:, 1]
        return Conditioning({"emb": emb})

    def null_conditioning(self, batch_size, sources=None) -> Conditioning:
        return Conditioning({"emb": torch.zeros(batch_size, LATENT[0])})

    def velocity(self, latents, sigma, cond) -> torch.Tensor:
        assert sigma.shape == (latents.shape[0],)
        self.calls.append(latents.shape[0])
        return self.a * latents + (1 + sigma.view(-1, 1, 1, 1)) * cond["emb"].view(-1, LATENT[0], 1, 1)

    def latent_shape(self) -> tuple[int, ...]:
        return LATENT

    def decode(self, latents) -> np.ndarray:
        img = latents.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1).permute(0, 2, 3, 1)
        return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()

    def encode_images(self, images) -> torch.Tensor:
        raise NotImplementedError

    def save(self, path: str | Path, **manifest) -> Path:
        raise NotImplementedError


@pytest.fixture
def policy() -> LinearPolicy:
    return LinearPolicy()


def _flow_grpo_mean(x, v, s, s_next, eta):
    """The Flow-GRPO formulas written out for one scalar sigma pair."""
    dt = s_next - s
    std = eta * math.sqrt(s / (1 - (s_next if s == 1 else s)))
    mean = x * (1 + std**2 / (2 * s) * dt) + v * (1 + std**2 * (1 - s) / (2 * s)) * dt
    return mean, std, std * math.sqrt(-dt)


@pytest.mark.parametrize("sigma,sigma_next", [(0.8, 0.6), (1.0, 0.9), (0.1, 0.0)])
def test_sde_log_prob_matches_a_direct_gaussian(sigma, sigma_next):
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(3, *LATENT, generator=g), torch.randn(3, *LATENT, generator=g)
    step = sde_step(x, v, sigma, sigma_next, 0.7, generator=g)

    mean, std, step_std = _flow_grpo_mean(x, v, sigma, sigma_next, 0.7)
    torch.testing.assert_close(step.mean, mean)
    torch.testing.assert_close(step.std, torch.full((3,), std))
    torch.testing.assert_close(step.step_std, torch.full((3,), step_std))
    expected = torch.distributions.Normal(mean, step_std).log_prob(step.prev_sample).mean(dim=(1, 2, 3))
    torch.testing.assert_close(step.log_prob, expected)
    assert step.log_prob.shape == (3,) and torch.isfinite(step.log_prob).all()


def test_sde_step_uses_given_noise_and_returns_fp32():
    x, v = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.bfloat16)
    noise = torch.randn(2, 4)
    step = sde_step(x, v, 0.5, 0.25, 0.5, noise=noise)
    assert step.prev_sample.dtype == step.log_prob.dtype == step.mean.dtype == torch.float32
    torch.testing.assert_close(step.prev_sample, step.mean + step.step_std[:, None] * noise)


def test_sigma_forms_broadcast_alike():
    x, v, noise = torch.randn(4, *LATENT), torch.randn(4, *LATENT), torch.randn(4, *LATENT)
    ref = sde_step(x, v, 0.6, 0.4, 0.7, noise=noise)
    for s, s_next in [
        (torch.tensor(0.6), torch.tensor(0.4)),
        (torch.full((4,), 0.6), torch.full((4,), 0.4)),
        (torch.full((4, 1, 1, 1), 0.6), torch.full((4, 1, 1, 1), 0.4)),
    ]:
        step = sde_step(x, v, s, s_next, 0.7, noise=noise)
        torch.testing.assert_close(step.prev_sample, ref.prev_sample)
        torch.testing.assert_close(step.log_prob, ref.log_prob)


def test_per_sample_sigmas_are_per_sample():
    x, v, noise = torch.randn(2, *LATENT), torch.randn(2, *LATENT), torch.randn(2, *LATENT)
    both = sde_step(x, v, torch.tensor([0.9, 0.5]), torch.tensor([0.8, 0.3]), 0.7, noise=noise)
    first = sde_step(x[:1], v[:1], 0.9, 0.8, 0.7, noise=noise[:1])
    second = sde_step(x[1:], v[1:], 0.5, 0.3, 0.7, noise=noise[1:])
    torch.testing.assert_close(both.log_prob, torch.cat([first.log_prob, second.log_prob]))
    torch.testing.assert_close(both.prev_sample, torch.cat([first.prev_sample, second.prev_sample]))


def test_noise_level_zero_is_the_ode_step_without_nan():
    x = torch.randn(2, *LATENT)
    v = torch.randn(2, *LATENT, requires_grad=True)
    step = sde_step(x, v, 1.0, 0.8, 0.0)
    torch.testing.assert_close(step.prev_sample, ode_step(x, v, 1.0, 0.8))
    torch.testing.assert_close(step.prev_sample, x + (0.8 - 1.0) * v)
    assert torch.equal(step.log_prob, torch.zeros(2))
    step.log_prob.sum().backward()
    assert torch.isfinite(v.grad).all()


def test_prev_sample_is_scored_not_redrawn():
    x, v = torch.randn(3, *LATENT), torch.randn(3, *LATENT)
    drawn = sde_step(x, v, 0.7, 0.5, 0.7, generator=torch.Generator().manual_seed(1))
    again = sde_step(x, v, 0.7, 0.5, 0.7, prev_sample=drawn.prev_sample)
    assert torch.equal(again.prev_sample, drawn.prev_sample)
    torch.testing.assert_close(torch.exp(again.log_prob - drawn.log_prob), torch.ones(3), rtol=0, atol=1e-6)
    moved = sde_step(x, v, 0.7, 0.5, 0.7, prev_sample=drawn.prev_sample + 0.5)
    assert (moved.log_prob < drawn.log_prob).all()


def test_sde_step_rejects_steps_towards_noise():
    x = torch.randn(1, 4)
    with pytest.raises(ValueError, match="sigma > sigma_next"):
        sde_step(x, x, 0.5, 0.6, 0.7)


def test_shifted_schedule_endpoints():
    flat = sigma_schedule(4)
    torch.testing.assert_close(flat, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    shifted = sigma_schedule(10, shift=3.0)
    assert shifted.shape == (11,) and shifted.dtype == torch.float32
    assert shifted[0] == 1.0 and shifted[-1] == 0.0
    assert (shifted[1:] < shifted[:-1]).all()
    assert (shifted[1:-1] > sigma_schedule(10)[1:-1]).all()  # a shift above 1 stays noisier longer
    torch.testing.assert_close(shifted[5], torch.tensor(3 * 0.5 / (1 + 2 * 0.5)))
    with pytest.raises(ValueError):
        sigma_schedule(0)


def test_rollout_shapes_and_determinism(policy):
    cond = policy.encode_prompts(["a", "bb", "ccc"])
    traj = rollout(policy, cond, num_steps=5, shift=3.0, generator=7)
    assert traj.latents.shape == (3, 6, *LATENT)
    assert traj.log_probs.shape == (3, 5) and traj.sigmas.shape == (6,)
    assert traj.final.shape == (3, *LATENT) and traj.sde_mask.tolist() == [True] * 5
    assert torch.equal(traj.final, traj.latents[:, -1])
    torch.testing.assert_close(traj.sigmas, sigma_schedule(5, 3.0))
    assert torch.isfinite(traj.log_probs).all() and (traj.log_probs != 0).all()

    again = rollout(policy, cond, num_steps=5, shift=3.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(again.latents, traj.latents) and torch.equal(again.log_probs, traj.log_probs)
    other = rollout(policy, cond, num_steps=5, shift=3.0, generator=8)
    assert not torch.allclose(other.latents, traj.latents)

    light = rollout(policy, cond, num_steps=5, shift=3.0, generator=7, return_trajectory=False)
    assert light.latents is None and torch.equal(light.final, traj.final)


def test_rollout_shares_initial_noise_within_groups(policy):
    cond = policy.encode_prompts(["a", "a", "a", "b", "b", "b"])
    traj = rollout(policy, cond, num_steps=3, shift=1.0, generator=0, group_size=3, share_noise=True)
    x0 = traj.latents[:, 0]
    assert torch.equal(x0[0], x0[1]) and torch.equal(x0[0], x0[2]) and torch.equal(x0[3], x0[5])
    assert not torch.allclose(x0[0], x0[3])
    assert not torch.allclose(traj.final[0], traj.final[1])  # the SDE noise still differs
    with pytest.raises(ValueError, match="multiple of group_size"):
        rollout(policy, cond, num_steps=3, shift=1.0, group_size=4, share_noise=True)


def test_rollout_respects_the_sde_window(policy):
    cond = policy.encode_prompts(["a", "bb"])
    traj = rollout(policy, cond, num_steps=6, shift=2.0, generator=0, sde_window=(1, 3))
    assert traj.sde_mask.tolist() == [False, True, True, False, False, False]
    assert traj.sde_steps() == [1, 2]
    assert (traj.log_probs[:, [1, 2]] != 0).all()
    assert (traj.log_probs[:, [0, 3, 4, 5]] == 0).all()
    for i in (0, 3, 4, 5):  # outside the window the step is exactly the Euler step
        v = policy.velocity(traj.latents[:, i], traj.sigmas[i].expand(2), cond)
        torch.testing.assert_close(traj.latents[:, i + 1], ode_step(traj.latents[:, i], v, traj.sigmas[i], traj.sigmas[i + 1]))
    with pytest.raises(ValueError, match="sde_window"):
        rollout(policy, cond, num_steps=6, shift=2.0, sde_window=(4, 7))

    ode = rollout(policy, cond, num_steps=6, shift=2.0, generator=0, noise_level=0.0)
    assert not ode.sde_mask.any() and (ode.log_probs == 0).all()


def test_cfg_scale_one_equals_no_guidance_and_batches_one_pass(policy):
    cond = policy.encode_prompts(["a", "bb"])
    null = policy.null_conditioning(2)
    plain = rollout(policy, cond, num_steps=4, shift=1.0, generator=3)
    scale_one = rollout(policy, cond, num_steps=4, shift=1.0, generator=3, guidance_scale=1.0, null_cond=null)
    assert torch.equal(plain.latents, scale_one.latents)

    x, sigma = torch.randn(2, *LATENT), torch.full((2,), 0.6)
    policy.calls.clear()
    guided = guided_velocity(policy, x, sigma, cond, 4.0, null)
    assert policy.calls == [4]  # conditional and unconditional in one forward pass
    v_c, v_u = policy.velocity(x, sigma, cond), policy.velocity(x, sigma, null)
    torch.testing.assert_close(guided, v_u + 4.0 * (v_c - v_u))
    with pytest.raises(ValueError, match="null_cond"):
        rollout(policy, cond, num_steps=2, shift=1.0, guidance_scale=3.0)


def test_step_log_prob_recomputes_the_rollout_with_gradients(policy):
    cond = policy.encode_prompts(["a", "bb"])
    null = policy.null_conditioning(2)
    traj = rollout(policy, cond, num_steps=4, shift=3.0, generator=0, guidance_scale=2.5, null_cond=null)
    for i in traj.sde_steps():
        log_prob, mean, std = step_log_prob(
            policy, traj.latents[:, i], traj.latents[:, i + 1], traj.sigmas[i], traj.sigmas[i + 1],
            cond, traj.noise_level, traj.guidance_scale, traj.null_cond,
        )
        torch.testing.assert_close(torch.exp(log_prob - traj.log_probs[:, i]), torch.ones(2), rtol=0, atol=1e-5)
        assert mean.shape == (2, *LATENT) and std.shape == (2,)
    policy.zero_grad()
    log_prob.sum().backward()
    assert policy.a.grad is not None and torch.isfinite(policy.a.grad) and policy.a.grad != 0


def test_sample_images_returns_uint8_images(policy):
    images = sample_images(policy, ["a", "bb"], num_steps=3, guidance_scale=2.0, seed=1)
    assert images.shape == (2, 3, 3, 3) and images.dtype == np.uint8
    assert np.array_equal(images, sample_images(policy, ["a", "bb"], num_steps=3, guidance_scale=2.0, seed=1))
