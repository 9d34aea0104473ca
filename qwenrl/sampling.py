"""Stateless flow-matching sampling: sigma schedules, ODE and SDE steps, rollouts, log-probs.

Every function here is pure (inputs in, tensors out; no scheduler state) and computes in fp32
whatever the policy's dtype, so that a log-probability recorded during a rollout and the one
recomputed with gradients during training agree bit for bit when the policy has not moved.

Convention (see ``qwenrl.models.base``): x_sigma = (1 - sigma) * x0 + sigma * noise, the policy
predicts v = noise - x0, and sampling runs sigma from 1 (noise) down to 0 (data).

The SDE step is Flow-GRPO's (Liu et al., 2025), with σ the current and σ' the next sigma:

    dt   = σ' - σ                                   (< 0)
    std  = noise_level * sqrt(σ / (1 - σ))           (σ' replaces σ in 1 - σ when σ = 1)
    mean = x * (1 + std² / (2σ) * dt) + v * (1 + std² (1 - σ) / (2σ)) * dt
    next = mean + std * sqrt(-dt) * ε

and its log-probability is the Gaussian log-density of ``next`` under N(mean, (std·sqrt(-dt))²),
averaged (not summed) over every non-batch dimension.

Typical use::

    cond = policy.encode_prompts(prompts)
    null = policy.null_conditioning(len(prompts))
    traj = rollout(policy, cond, num_steps=10, shift=3.0, guidance_scale=4.0, null_cond=null,
                   noise_level=0.7, sde_window=(0, 4), generator=seed)
    # later, with gradients, for a step i where traj.sde_mask[i]:
    log_prob, mean, std = step_log_prob(policy, traj.latents[:, i], traj.latents[:, i + 1],
                                        traj.sigmas[i], traj.sigmas[i + 1], cond, 0.7, 4.0, null)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from qwenrl.models.base import Conditioning, Policy

__all__ = [
    "SDEStep",
    "Trajectory",
    "guided_velocity",
    "ode_step",
    "rollout",
    "sample_images",
    "sde_step",
    "sigma_schedule",
    "step_log_prob",
]

SigmaLike = float | torch.Tensor
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def sigma_schedule(num_steps: int, shift: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
    """``num_steps + 1`` sigmas from 1 to 0 (fp32), time-shifted as in SD3: σ' = s·σ / (1 + (s−1)·σ).

    A shift above 1 spends more steps at high noise (SD3 uses 3.0; FLUX and Qwen-Image use a
    resolution-dependent shift, which ``DiffusersPolicy.default_shift`` reports).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    sigmas = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return sigmas.to(device=device, dtype=torch.float32)


def _per_sample(value: SigmaLike, batch: int, device: torch.device, name: str) -> torch.Tensor:
    """``value`` (a float, a 0-d tensor, or one value per sample in any (B, 1, ...) shape) as (B,) fp32."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.numel() == 1:
        return t.reshape(1).expand(batch)
    if t.shape[0] != batch or t.numel() != batch:
        raise ValueError(f"{name} must be a scalar or hold one value per sample ({batch}), got shape {tuple(t.shape)}")
    return t.reshape(batch)


def _like_sample(t: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor viewed as (B, 1, ..., 1) to broadcast against ``sample``."""
    return t.view(t.shape[0], *([1] * (sample.ndim - 1)))


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    # Drawn on the generator's device (CPU for seeds) then moved, so a seed gives the same
    # noise on every device.
    if generator is None:
        return torch.randn(shape, device=device, dtype=torch.float32)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(device)


def ode_step(sample: torch.Tensor, velocity: torch.Tensor, sigma: SigmaLike, sigma_next: SigmaLike) -> torch.Tensor:
    """Euler step of the probability-flow ODE: x + (σ' − σ)·v, in fp32."""
    x, v = sample.float(), velocity.float()
    s = _per_sample(sigma, x.shape[0], x.device, "sigma")
    s_next = _per_sample(sigma_next, x.shape[0], x.device, "sigma_next")
    return x + _like_sample(s_next - s, x) * v


@dataclass
class SDEStep:
    """One Flow-GRPO SDE step. Tensors are fp32; ``B`` is the batch size."""

    prev_sample: torch.Tensor  #: (B, ...) the next (less noisy) sample, drawn or given
    log_prob: torch.Tensor  #: (B,) mean over non-batch dims of log N(prev_sample; mean, step_std²); 0 where step_std is 0
    mean: torch.Tensor  #: (B, ...) mean of the transition
    std: torch.Tensor  #: (B,) noise_level·sqrt(σ/(1−σ)), before the sqrt(−dt) factor
    step_std: torch.Tensor  #: (B,) std·sqrt(−dt), the transition's standard deviation


def sde_step(
    sample: torch.Tensor,
    velocity: torch.Tensor,
    sigma: SigmaLike,
    sigma_next: SigmaLike,
    noise_level: SigmaLike,
    *,
    noise: torch.Tensor | None = None,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> SDEStep:
    """Flow-GRPO SDE step from σ to σ' (< σ) with its log-probability (module docstring).

    ``sample`` and ``velocity`` have any shape with the batch first; sigmas and ``noise_level``
    are floats or one value per sample. Given ``prev_sample`` the step draws nothing and scores
    that sample (the recompute used by GRPO); else it uses ``noise`` (standard normal) or draws
    it from ``generator``. With ``noise_level`` 0 the step is the ODE step, and its log-prob is
    defined as 0 (a point mass has no finite density; 0 keeps sums and gradients NaN-free).
    """
    x, v = sample.float(), velocity.float()
    if x.shape != v.shape:
        raise ValueError(f"sample {tuple(x.shape)} and velocity {tuple(v.shape)} must have the same shape")
    batch, device = x.shape[0], x.device
    s = _per_sample(sigma, batch, device, "sigma")
    s_next = _per_sample(sigma_next, batch, device, "sigma_next")
    eta = _per_sample(noise_level, batch, device, "noise_level")
    if bool((s_next >= s).any()) or bool((s > 1).any()) or bool((s_next < 0).any()):
        raise ValueError("sde_step runs from noise to data: need 1 >= sigma > sigma_next >= 0")
    if bool((eta < 0).any()):
        raise ValueError("noise_level must be >= 0")

    dt = s_next - s
    # At σ = 1, sqrt(σ/(1−σ)) is infinite; Flow-GRPO uses the next sigma there instead.
    std = eta * torch.sqrt(s / torch.where(s >= 1, 1 - s_next, 1 - s))
    step_std = std * torch.sqrt(-dt)

    std_b, s_b, dt_b = _like_sample(std, x), _like_sample(s, x), _like_sample(dt, x)
    mean = x * (1 + std_b**2 / (2 * s_b) * dt_b) + v * (1 + std_b**2 * (1 - s_b) / (2 * s_b)) * dt_b

    step_std_b = _like_sample(step_std, x)
    if prev_sample is None:
        if noise is None:
            noise = _randn(tuple(x.shape), generator, device)
        elif noise.shape != x.shape:
            raise ValueError(f"noise {tuple(noise.shape)} must match the sample {tuple(x.shape)}")
        prev = mean + step_std_b * noise.float()
    else:
        if prev_sample.shape != x.shape:
            raise ValueError(f"prev_sample {tuple(prev_sample.shape)} must match the sample {tuple(x.shape)}")
        prev = prev_sample.float()

    stochastic = step_std > 0
    # Score with a stand-in std of 1 where the step is deterministic, then zero those rows:
    # torch.where then passes neither NaN values nor NaN gradients.
    safe = torch.where(stochastic, step_std, torch.ones_like(step_std))
    safe_b = _like_sample(safe, x)
    log_density = -((prev - mean) ** 2) / (2 * safe_b**2) - torch.log(safe_b) - _LOG_SQRT_2PI
    log_prob = log_density.mean(dim=tuple(range(1, x.ndim))) if x.ndim > 1 else log_density
    log_prob = torch.where(stochastic, log_prob, torch.zeros_like(log_prob))
    return SDEStep(prev_sample=prev, log_prob=log_prob, mean=mean, std=std, step_std=step_std)


def guided_velocity(
    policy: Policy,
    latents: torch.Tensor,
    sigma: SigmaLike,
    cond: Conditioning,
    guidance_scale: float = 1.0,
    null_cond: Conditioning | None = None,
) -> torch.Tensor:
    """Velocity with classifier-free guidance, v_u + w·(v_c − v_u), in fp32.

    Scale 1 is one conditional pass. Otherwise the unconditional and conditional inputs go
    through the policy as one batch of 2B (``null_cond`` first).
    """
    batch = latents.shape[0]
    s = _per_sample(sigma, batch, latents.device, "sigma")
    if guidance_scale == 1.0:
        return policy.velocity(latents, s, cond).float()
    if null_cond is None:
        raise ValueError("guidance_scale != 1 needs null_cond (policy.null_conditioning(batch, sources))")
    if len(null_cond) != batch or len(cond) != batch:
        raise ValueError(f"cond ({len(cond)}) and null_cond ({len(null_cond)}) must have one row per latent ({batch})")
    both = policy.velocity(torch.cat([latents, latents]), torch.cat([s, s]), Conditioning.cat([null_cond, cond]))
    v_uncond, v_cond = both.float().chunk(2)
    return v_uncond + guidance_scale * (v_cond - v_uncond)


def step_log_prob(
    policy: Policy,
    latents_t: torch.Tensor,
    latents_next: torch.Tensor,
    sigma: SigmaLike,
    sigma_next: SigmaLike,
    cond: Conditioning,
    noise_level: SigmaLike,
    guidance_scale: float = 1.0,
    null_cond: Conditioning | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-prob (B,), mean (B, ...) and std (B,) of the recorded step latents_t → latents_next.

    Runs the policy with gradients enabled (unless the caller disabled them), for the GRPO
    ratio and the KL to a reference policy (call again under ``policy.disabled_adapters()``).
    """
    v = guided_velocity(policy, latents_t, sigma, cond, guidance_scale, null_cond)
    step = sde_step(latents_t, v, sigma, sigma_next, noise_level, prev_sample=latents_next)
    return step.log_prob, step.mean, step.std


@dataclass
class Trajectory:
    """A batch of sampled trajectories over ``T`` steps. Tensors are fp32."""

    latents: torch.Tensor | None  #: (B, T+1, ...) the visited states, noise first; None unless return_trajectory
    log_probs: torch.Tensor  #: (B, T) log-prob of each step; 0 where the step was an ODE step
    sde_mask: torch.Tensor  #: (T,) bool, True where the step was an SDE step
    sigmas: torch.Tensor  #: (T+1,) the schedule, from 1 to 0
    final: torch.Tensor  #: (B, ...) the last state (clean latents)
    cond: Conditioning
    null_cond: Conditioning | None
    guidance_scale: float
    noise_level: float

    @property
    def num_steps(self) -> int:
        return int(self.sigmas.shape[0]) - 1

    def sde_steps(self) -> list[int]:
        """Indices of the steps taken with the SDE (the ones a GRPO update can score)."""
        return [int(i) for i in torch.nonzero(self.sde_mask).flatten()]


def _sde_mask(num_steps: int, noise_level: float, sde_window: tuple[int, int] | None) -> torch.Tensor:
    mask = torch.zeros(num_steps, dtype=torch.bool)
    if noise_level <= 0:
        return mask
    if sde_window is None:
        return ~mask
    start, end = sde_window
    if not 0 <= start < end <= num_steps:
        raise ValueError(f"sde_window {sde_window} must satisfy 0 <= start < end <= num_steps ({num_steps})")
    mask[start:end] = True
    return mask


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    return torch.Generator(device="cpu").manual_seed(int(generator))


@torch.no_grad()
def rollout(
    policy: Policy,
    cond: Conditioning,
    *,
    num_steps: int,
    shift: float,
    guidance_scale: float = 1.0,
    null_cond: Conditioning | None = None,
    noise_level: float = 0.7,
    sde_window: tuple[int, int] | None = None,
    generator: torch.Generator | int | None = None,
    initial_noise: torch.Tensor | None = None,
    group_size: int = 1,
    share_noise: bool = False,
    return_trajectory: bool = True,
) -> Trajectory:
    """Sample one trajectory per row of ``cond`` from σ = 1 to 0, without gradients.

    Steps whose index lies in ``sde_window = (start, end)`` (end exclusive) are SDE steps with
    recorded log-probs; the others, and all steps when ``noise_level`` is 0, are ODE steps
    (Flow-GRPO-Fast / MixGRPO). ``sde_window=None`` means every step is an SDE step.
    ``generator`` (a torch.Generator or an int seed) draws the initial and the SDE noise, so a
    seed gives the same trajectories. With ``share_noise``, consecutive groups of ``group_size``
    rows (the G samples of one prompt) start from the same initial noise.
    """
    batch = len(cond)
    device = policy.device
    latent_shape = tuple(policy.latent_shape())
    gen = _as_generator(generator)
    mask = _sde_mask(num_steps, noise_level, sde_window)
    sigmas = sigma_schedule(num_steps, shift, device=device)

    if initial_noise is not None:
        if tuple(initial_noise.shape) != (batch, *latent_shape):
            raise ValueError(f"initial_noise {tuple(initial_noise.shape)} must be {(batch, *latent_shape)}")
        x = initial_noise.to(device=device, dtype=torch.float32)
    elif share_noise:
        if group_size < 1 or batch % group_size:
            raise ValueError(f"batch {batch} must be a multiple of group_size {group_size} to share noise")
        x = _randn((batch // group_size, *latent_shape), gen, device).repeat_interleave(group_size, dim=0)
    else:
        x = _randn((batch, *latent_shape), gen, device)

    states = [x] if return_trajectory else None
    log_probs = torch.zeros(batch, num_steps, dtype=torch.float32, device=device)
    for i in range(num_steps):
        v = guided_velocity(policy, x, sigmas[i], cond, guidance_scale, null_cond)
        if mask[i]:
            step = sde_step(x, v, sigmas[i], sigmas[i + 1], noise_level, generator=gen)
            x, log_probs[:, i] = step.prev_sample, step.log_prob
        else:
            x = ode_step(x, v, sigmas[i], sigmas[i + 1])
        if states is not None:
            states.append(x)

    return Trajectory(
        latents=torch.stack(states, dim=1) if states is not None else None,
        log_probs=log_probs,
        sde_mask=mask,
        sigmas=sigmas,
        final=x,
        cond=cond,
        null_cond=null_cond,
        guidance_scale=float(guidance_scale),
        noise_level=float(noise_level),
    )


@torch.no_grad()
def sample_images(
    policy: Policy,
    texts: list[str],
    sources: np.ndarray | torch.Tensor | None = None,
    *,
    num_steps: int = 20,
    guidance_scale: float = 1.0,
    seed: int = 0,
    shift: float | None = None,
) -> np.ndarray:
    """Images (B, H, W, 3) uint8 for prompts (or edit instructions with ``sources``) by ODE sampling.

    ``shift`` defaults to ``policy.default_shift``.
    """
    cond = policy.encode_prompts(texts, sources)
    null = policy.null_conditioning(len(texts), sources) if guidance_scale != 1.0 else None
    traj = rollout(
        policy,
        cond,
        num_steps=num_steps,
        shift=policy.default_shift if shift is None else shift,
        guidance_scale=guidance_scale,
        null_cond=null,
        noise_level=0.0,
        generator=seed,
        return_trajectory=False,
    )
    return policy.decode(traj.final)
