"""Group-relative RL for flow-matching image generators, in one file that reads top to bottom.

Two policy-optimisation objectives share everything but the rollout and the loss
(``objective``):

* ``flow_grpo`` — Flow-GRPO (Liu et al., 2025): SDE rollouts whose step log-probabilities are
  recorded, a clipped likelihood-ratio objective over the trained timesteps;
* ``nft`` — the forward-process objective of DiffusionNFT (Zheng et al., 2025): rollouts with
  any sampler (the ODE evaluation schedule by default), only the clean final samples kept, and
  a flow-matching loss on them that pulls an implicit positive velocity toward the target for
  good samples and an implicit negative one for bad samples.

One step:

1. draw ``num_prompts`` prompts (or edit tasks) from the grammar's ``train`` split, seeded by step;
2. roll out ``group_size`` samples per prompt: ``flow_grpo`` with the SDE sampler, recording each
   SDE step's log-probability (only steps inside ``sde_window`` are stochastic and trained);
   ``nft`` with the ODE sampler, by the old policy (or the current one), keeping the clean
   latents (re-encoded from the decoded images by default);
3. judge every image with the composite reward (``reward``: a YAML of judges with rationales);
4. group-relative advantages (r − mean of its group), divided by the std of the group, of the
   batch, or by nothing (``std_mode``), clipped to ±``adv_clip_max``; groups whose reward range
   is below ``reward_range_threshold`` carry no signal and are dropped from the update;
5. the loss, then gradient clipping, AdamW, optional EMA; ``num_inner_epochs`` passes, each of
   ``updates_per_epoch`` optimizer steps over a shuffled share of the samples:
   * ``flow_grpo``: the clipped-ratio objective over the trained timesteps plus the KL to the
     reference, β·‖μθ − μref‖² / (2·std²), one backward per timestep in shuffled order;
   * ``nft``: with optimality o = ½ + ½·clip(advantage, −1, 1), a σ per sample from
     ``nft_timesteps``, x_σ = (1 − σ)·x₀ + σ·ε and the target u = ε − x₀,
     o·‖v⁺ − u‖² + (1 − o)·‖v⁻ − u‖², where v⁺ = (1 − b)·v_old + b·v_θ and
     v⁻ = (1 + b)·v_old − b·v_θ (b = ``nft_beta``), plus β·‖v_θ − v_ref‖² (KL in velocity space);
     after the step the old policy moves toward the current one, θ_old ← η·θ_old + (1 − η)·θ;
   (the reference is the frozen base, or the model with its LoRA adapters switched off);
6. log ``metrics.jsonl``; evaluate on held-out ``test`` prompts, write checkpoints and the
   resumable state every few steps.

Run it on one process, or several (each holds whole groups; gradients are all-reduced, so a run
gives the same result on 1 or N processes for the same global batch, up to floating point)::

    python -m training.grpo --config training/configs/shapes_grpo_t2i.yaml --run runs/grpo-t2i
    accelerate launch --multi_gpu --num_processes 8 -m training.grpo \\
        --config training/configs/sd35_medium_grpo.yaml --run runs/sd35 --set lr=1e-4
    qwenrl train grpo --config training/configs/shapes_grpo_edit.yaml --set steps=50
    qwenrl train grpo --config training/configs/shapes_grpo_t2i.yaml --set objective=flow_grpo   # see docs

Rerunning the same command on the same ``--run`` folder resumes exactly from ``RUN/state/``.
See docs/training.md for every config field and metric.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from qwenrl.models.base import Conditioning, Policy
from qwenrl.sampling import guided_velocity, rollout, sde_step
from training.common import (
    EMA,
    ConfigError,
    RunFolder,
    config_dict,
    draw_items,
    encode_items,
    eta,
    evaluate_policy,
    frozen_copy,
    load_model,
    log,
    lora_enabled,
    lr_at,
    make_accelerator,
    make_trainable,
    maybe_ema,
    model_lineage,
    model_name,
    named_trainable,
    resolve_path,
    save_samples,
    seed_from,
    shard,
    start_optimizer,
)
from training.configs import (  # noqa: F401 - the config and its constants, importable from here as before
    CFG_MODES,
    NFT_SAMPLERS,
    NFT_TIMESTEPS,
    OBJECTIVES,
    SDE_ONLY,
    STD_MODES,
    GRPOConfig,
)

# -- advantages and filtering (pure functions, numpy) ------------------------------------------


def group_advantages(rewards: np.ndarray, std_mode: str = "group", adv_clip_max: float = 5.0, eps: float = 1e-4) -> np.ndarray:
    """(r − group mean) / (std + eps) for rewards (P, G); std per group, over the batch, or no
    division (``none``). Missing rewards (NaN) get advantage 0 and are left out of the means and stds."""
    r = np.asarray(rewards, dtype=np.float64)
    valid = ~np.isnan(r)
    count = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    mean = np.where(valid, r, 0.0).sum(axis=1, keepdims=True) / count
    if std_mode == "group":
        scale = np.sqrt((np.where(valid, r - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count) + eps
    elif std_mode == "batch":
        scale = (np.nanstd(r) if valid.any() else 0.0) + eps
    elif std_mode == "none":
        scale = 1.0
    else:
        raise ValueError(f"std_mode must be one of {STD_MODES}")
    adv = np.where(valid, (r - mean) / scale, 0.0)
    return np.clip(adv, -adv_clip_max, adv_clip_max)


def nft_optimality(advantages: np.ndarray) -> np.ndarray:
    """DiffusionNFT's optimality probability o = ½ + ½·clip(advantage, −1, 1), in [0, 1]: 1 for
    the best samples of a group, 0 for the worst, ½ for the group's average."""
    return 0.5 + 0.5 * np.clip(np.asarray(advantages, dtype=np.float64), -1.0, 1.0)


def reward_range_mask(rewards: np.ndarray, threshold: float) -> np.ndarray:
    """True for groups (rows of (P, G)) whose reward range is at least ``threshold`` (and > 0):
    the groups that carry a learning signal. Groups with fewer than two rewards are dropped."""
    r = np.asarray(rewards, dtype=np.float64)
    valid = ~np.isnan(r)
    hi = np.where(valid, r, -np.inf).max(axis=1)
    lo = np.where(valid, r, np.inf).min(axis=1)
    spread = np.where(valid.sum(axis=1) >= 2, hi - lo, 0.0)
    return (spread >= threshold) & (spread > 0)


def guided_prompts(cfg: GRPOConfig, step: int) -> np.ndarray:
    """Which of the step's prompts (whole groups) are sampled and trained with guidance."""
    if cfg.cfg_mode == "none":
        return np.zeros(cfg.num_prompts, dtype=bool)
    if cfg.cfg_mode == "guided":
        return np.ones(cfg.num_prompts, dtype=bool)
    k = int(round(cfg.hybrid_guided_fraction * cfg.num_prompts))
    out = np.zeros(cfg.num_prompts, dtype=bool)
    out[np.random.default_rng([cfg.seed, step, 2]).permutation(cfg.num_prompts)[:k]] = True
    return out


# -- rollouts ----------------------------------------------------------------------------------


@dataclass
class RolloutPiece:
    """Samples of some whole groups drawn together (one guidance setting)."""

    index: np.ndarray  #: (n,) global sample indices, prompt * G + j
    latents: torch.Tensor  #: flow_grpo: (n, T+1, ...) visited states; nft: (n, ...) clean latents
    log_probs: torch.Tensor | None  #: (n, T) recorded log-probs (0 on ODE steps); None with nft
    sigmas: torch.Tensor | None  #: (T+1,); None with nft
    cond: Conditioning
    null_cond: Conditioning | None  #: with guidance, and with nft's text dropout
    guidance_scale: float
    images: np.ndarray  #: (n, H, W, 3) uint8
    items: list  #: the prompt or edit task of each row


def rollout_groups(policy: Policy, items: list, guided: np.ndarray, lo: int, hi: int, cfg: GRPOConfig, shift: float, step: int,
                   old: EMA | None = None) -> list[RolloutPiece]:
    """G samples for each prompt in [lo, hi), in batches of ``rollout_batch_prompts`` prompts,
    guided and unguided groups apart. flow_grpo: SDE trajectories with their log-probs; nft: ODE
    samples (by the ``old`` policy's weights when ``nft_sample_with`` is old), clean latents only.
    Noise is seeded by (seed, step, first prompt of the batch), so the samples do not depend on
    how prompts are spread over processes."""
    G, nft = cfg.group_size, cfg.objective == "nft"
    pieces = []
    for start in range(lo, hi, cfg.rollout_batch_prompts):
        batch = range(start, start + cfg.rollout_batch_prompts)
        for with_guidance in (False, True):
            ids = [i for i in batch if bool(guided[i]) == with_guidance]
            if not ids:
                continue
            group_items = [items[i] for i in ids]
            scale = cfg.guidance_scale if with_guidance else 1.0
            cond = encode_items(policy, group_items, G)
            null = encode_items(policy, group_items, G, null=True) if with_guidance or (nft and cfg.nft_text_dropout > 0) else None
            generator = seed_from(cfg.seed, step, start, int(with_guidance))
            if not nft:
                traj = rollout(
                    policy, cond, num_steps=cfg.num_steps, shift=shift, guidance_scale=scale, null_cond=null,
                    noise_level=cfg.noise_level, sde_window=tuple(cfg.sde_window) if cfg.sde_window else None,
                    generator=generator, group_size=G, share_noise=cfg.share_noise,
                )
                images = policy.decode(traj.final)
                latents, log_probs, sigmas = traj.latents, traj.log_probs, traj.sigmas
            else:
                with maybe_ema(old if cfg.nft_sample_with == "old" else None):
                    traj = rollout(
                        policy, cond, num_steps=cfg.num_steps, shift=shift, guidance_scale=scale, null_cond=null if with_guidance else None,
                        noise_level=0.0, generator=generator, group_size=G, share_noise=cfg.share_noise, return_trajectory=False,
                    )
                images = policy.decode(traj.final)
                with torch.no_grad():
                    latents = policy.encode_images(images).float() if cfg.nft_reencode else traj.final
                log_probs = sigmas = None
            pieces.append(RolloutPiece(
                index=np.array([i * G + j for i in ids for j in range(G)]),
                latents=latents, log_probs=log_probs, sigmas=sigmas, cond=cond, null_cond=null,
                guidance_scale=scale, images=images, items=[it for it in group_items for _ in range(G)],
            ))
    return pieces


# -- the loss ------------------------------------------------------------------------------------


def grpo_loss(
    model: Callable[..., torch.Tensor],
    reference: Callable[..., torch.Tensor] | None,
    piece: RolloutPiece,
    rows: torch.Tensor,
    t: torch.Tensor,
    advantages: torch.Tensor,
    *,
    noise_level: float,
    clip_range: float,
    beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-sample loss (b,) at timestep ``t[k]`` of row ``rows[k]``: the clipped-ratio policy
    loss plus β·KL, and summed diagnostics. ``model`` gives velocities with gradients,
    ``reference`` the reference policy's (called without gradients)."""
    x, x_next = piece.latents[rows, t], piece.latents[rows, t + 1]
    sigma, sigma_next = piece.sigmas[t], piece.sigmas[t + 1]
    cond = piece.cond.select(rows)
    null = piece.null_cond.select(rows) if piece.null_cond is not None else None
    v = model(x, sigma, cond, piece.guidance_scale, null)
    step = sde_step(x, v, sigma, sigma_next, noise_level, prev_sample=x_next)
    log_ratio = step.log_prob - piece.log_probs[rows, t]
    ratio = torch.exp(log_ratio)
    policy_loss = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
    kl = torch.zeros_like(policy_loss)
    if beta > 0 and reference is not None:
        with torch.no_grad():
            v_ref = reference(x, sigma, cond, piece.guidance_scale, null)
            ref_mean = sde_step(x, v_ref, sigma, sigma_next, noise_level, prev_sample=x_next).mean
        kl = ((step.mean - ref_mean) ** 2).mean(dim=tuple(range(1, x.ndim))) / (2 * step.step_std**2)
    loss = policy_loss + beta * kl
    with torch.no_grad():
        stats = {
            "policy_loss": policy_loss.sum(),
            "kl": kl.sum(),
            "approx_kl": 0.5 * (log_ratio**2).sum(),
            "clipfrac": ((ratio - 1).abs() > clip_range).float().sum(),
            "ratio_deviation": (ratio - 1).abs().sum(),
            "count": torch.tensor(float(len(rows))),
        }
    return loss, stats


STAT_KEYS = ("policy_loss", "kl", "approx_kl", "clipfrac", "ratio_deviation", "count")


def nft_loss(v: torch.Tensor, v_old: torch.Tensor, target: torch.Tensor, optimality: torch.Tensor, nft_beta: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DiffusionNFT's loss per sample (b,), with its positive and negative parts:
    o·‖v⁺ − u‖² + (1 − o)·‖v⁻ − u‖², v⁺ = (1 − b)·v_old + b·v, v⁻ = (1 + b)·v_old − b·v, means
    over latent elements. Minimising it moves v toward u on good samples (o near 1) and away on
    bad ones; with b = 1 and o = 1 it is plain flow matching, ‖v − u‖²."""
    v_pos = (1 - nft_beta) * v_old + nft_beta * v
    v_neg = (1 + nft_beta) * v_old - nft_beta * v
    dims = tuple(range(1, v.ndim))
    pos = ((v_pos - target) ** 2).mean(dim=dims)
    neg = ((v_neg - target) ** 2).mean(dim=dims)
    return optimality * pos + (1 - optimality) * neg, pos, neg


@dataclass
class NFTDraws:
    """One inner epoch's random draws for the forward process, for every sample of the global
    batch (indexed by global sample index, so they do not depend on the process layout)."""

    sigma: torch.Tensor  #: (P·G,) noise level of each loss sample, in (0, 1)
    noise: torch.Tensor  #: (P·G, ...) ε
    drop_text: torch.Tensor  #: (P·G,) bool, trained on the empty prompt


def nft_draws(cfg: GRPOConfig, step: int, epoch: int, n: int, latent_shape: tuple[int, ...], device: torch.device) -> NFTDraws:
    """σ, ε and text dropout for the ``n`` samples of one inner epoch, a pure function of (seed,
    step, epoch), drawn on the CPU so a seed gives the same draws on every device."""
    gen = torch.Generator().manual_seed(seed_from(cfg.seed, step, epoch, 4))
    if cfg.nft_timesteps == "logit_normal":
        sigma = torch.sigmoid(cfg.nft_logit_mean + cfg.nft_logit_std * torch.randn(n, generator=gen))
    else:
        sigma = torch.rand(n, generator=gen)
    sigma = sigma.clamp(1e-4, 1 - 1e-4)
    noise = torch.randn((n, *latent_shape), generator=gen)
    drop = torch.rand(n, generator=gen) < cfg.nft_text_dropout
    return NFTDraws(sigma.to(device), noise.to(device), drop.to(device))


def nft_batch_loss(
    model: Callable[..., torch.Tensor],
    old_velocity: Callable[..., torch.Tensor],
    reference: Callable[..., torch.Tensor] | None,
    piece: RolloutPiece,
    rows: torch.Tensor,
    draws: NFTDraws,
    optimality: torch.Tensor,
    *,
    nft_beta: float,
    beta: float,
    guided_loss: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-sample loss (b,) of ``rows`` of ``piece``: ``nft_loss`` on the forward process at the
    drawn σ, plus β·‖v_θ − v_ref‖², and summed diagnostics. ``model`` gives velocities with
    gradients; ``old_velocity`` and ``reference`` are called without."""
    g = torch.as_tensor(piece.index, device=rows.device)[rows]
    x0, noise = piece.latents[rows], draws.noise[g]
    s = draws.sigma[g].view(-1, *([1] * (x0.ndim - 1)))
    xt, target = (1 - s) * x0 + s * noise, noise - x0
    cond = piece.cond.select(rows)
    null = piece.null_cond.select(rows) if piece.null_cond is not None else None
    if guided_loss and piece.guidance_scale != 1.0:
        scale = piece.guidance_scale
    else:  # CFG-free: the conditional velocity, on the empty prompt for the dropped rows
        if null is not None:
            cond = cond.where(draws.drop_text[g], null)
        null, scale = None, 1.0
    sigma = draws.sigma[g]
    with torch.no_grad():
        v_old = old_velocity(xt, sigma, cond, scale, null)
    v = model(xt, sigma, cond, scale, null)
    loss, pos, neg = nft_loss(v, v_old, target, optimality, nft_beta)
    kl = torch.zeros_like(loss)
    if beta > 0 and reference is not None:
        with torch.no_grad():
            v_ref = reference(xt, sigma, cond, scale, null)
        kl = ((v - v_ref) ** 2).mean(dim=tuple(range(1, v.ndim)))
    with torch.no_grad():
        stats = {
            "nft_loss": loss.sum(),
            "loss_pos": pos.sum(),
            "loss_neg": neg.sum(),
            "optimality": optimality.sum(),
            "kl": kl.sum(),
            "velocity_gap": ((v - v_old) ** 2).mean(dim=tuple(range(1, v.ndim))).sum(),
            "count": torch.tensor(float(len(rows))),
        }
    return loss + beta * kl, stats


NFT_STAT_KEYS = ("nft_loss", "loss_pos", "loss_neg", "optimality", "kl", "velocity_gap", "count")


# -- the trainer ---------------------------------------------------------------------------------


def train(cfg: GRPOConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) GRPO in ``run_dir``; returns the last metrics row and checkpoint path."""
    from accelerate.utils import gather_object

    from qwenrl.rewards import Judgement, Sample, load_reward, reward_stats
    from training import distill

    accelerator = make_accelerator(cfg)
    is_main, world, rank = accelerator.is_main_process, accelerator.num_processes, accelerator.process_index
    run = RunFolder(run_dir, "grpo")
    if is_main:
        run.check_and_write_config(config_dict(cfg))
    accelerator.wait_for_everyone()
    lo, hi = shard(cfg.num_prompts, world, rank, "num_prompts")
    if (hi - lo) % cfg.rollout_batch_prompts:
        raise ConfigError(f"rollout_batch_prompts ({cfg.rollout_batch_prompts}) must divide the {hi - lo} prompts of each of {world} processes")
    G, P = cfg.group_size, cfg.num_prompts
    nft = cfg.objective == "nft"
    trained_steps = cfg.trained_steps()
    T = len(trained_steps)
    stat_keys = NFT_STAT_KEYS if nft else STAT_KEYS

    # -- models: the policy and its trained part, the reference, the teachers -----------------------
    torch.manual_seed(cfg.seed)  # LoRA initialisation: the same on every process and every run
    policy = load_model(cfg.model, height=cfg.height, width=cfg.width, dtype=cfg.dtype, device=accelerator.device)
    if cfg.task not in policy.tasks:
        raise ConfigError(f"{cfg.model} does {policy.tasks}, not {cfg.task!r}")
    parent, lineage = model_name(policy), model_lineage(policy)
    params = make_trainable(policy, cfg.trainable, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, cfg.gradient_checkpointing)
    named = named_trainable(policy)
    shift = cfg.shift or policy.default_shift
    reference: Callable[..., torch.Tensor] | None = None
    if cfg.beta > 0:
        if lora_enabled(policy):
            def reference(x, sigma, cond, scale, null):  # the base model = adapters switched off
                with policy.disabled_adapters():
                    return guided_velocity(policy, x, sigma, cond, scale, null)
        else:
            frozen = frozen_copy(policy)  # taken before a resume loads trained weights: it stays the base

            def reference(x, sigma, cond, scale, null):
                return guided_velocity(frozen, x, sigma, cond, scale, null)
    # nft's old policy: a lagging shadow of the trained weights (for LoRA, of the adapters)
    old = EMA(params, cfg.nft_old_decay) if nft else None

    def old_velocity(x, sigma, cond, scale, null):  # the step's anchor: with η = 0, the weights the step started from
        with maybe_ema(old):
            return guided_velocity(policy, x, sigma, cond, scale, null)

    teachers = {}
    if cfg.distill_weight > 0:
        teachers = {t: load_model(p, height=cfg.height, width=cfg.width, dtype=cfg.dtype, device=accelerator.device).requires_grad_(False)
                    for t, p in cfg.distill_teachers.items()}
    reward = load_reward(resolve_path(cfg.reward))
    monitor = load_reward(resolve_path(cfg.monitor_reward)) if cfg.monitor_reward and is_main else None  # only the main process evaluates
    model, optimizer, ema, start = start_optimizer(cfg, run, policy, params, named, accelerator, "grpo", old=old)
    checkpoint_name = cfg.name or f"grpo-{cfg.task}"
    eval_seed = 0  # the seeds `qwenrl bench` uses, so in-run evaluations match it on the same prompts

    def evaluate_and_save(step: int) -> dict[str, float]:
        """Held-out metrics (main process), the sample grid and its rationales."""
        with maybe_ema(ema):
            metrics, images, records = evaluate_policy(
                policy, cfg.task, reward, limit=cfg.eval_limit, num_steps=cfg.eval_num_steps,
                guidance_scale=cfg.eval_guidance_scale, seed=eval_seed, monitor=monitor,
            )
        save_samples(run.samples, f"step-{step:06d}", images, records, cfg.eval_grid_size)
        return {f"eval/{k}": v for k, v in metrics.items()}

    if start == 0 and cfg.eval_every and cfg.eval_at_start and is_main and cfg.steps > 0:
        run.write_metrics({"step": 0, **evaluate_and_save(0)})
    accelerator.wait_for_everyone()

    row: dict[str, Any] = {}
    t_begin = time.perf_counter()
    for step in range(start, cfg.steps):
        t_start = time.perf_counter()
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.lr_schedule, cfg.lr_min_ratio)
        for g in optimizer.param_groups:
            g["lr"] = lr

        # 1. Prompts: the same global batch on every process; this one keeps prompts [lo, hi).
        items = draw_items(cfg.task, P, cfg.seed, step, family_weights=cfg.family_weights)
        guided = guided_prompts(cfg, step)

        # 2. Rollouts: G samples per prompt; flow_grpo records log-probs on the SDE steps, nft
        #    keeps the clean latents of ODE samples.
        pieces = rollout_groups(policy, items, guided, lo, hi, cfg, shift, step, old=old)
        t_rollout = time.perf_counter()

        # 3. Rewards with rationales; judged where sampled, gathered everywhere.
        samples = [Sample.from_spec(img, it) for pc in pieces for img, it in zip(pc.images, pc.items)]
        judged = reward(samples)
        local = [(int(g), j.score, j.parts) for g, j in zip((g for pc in pieces for g in pc.index), judged)]
        everything = sorted(gather_object(local), key=lambda x: x[0])
        rewards = np.array([np.nan if score is None else score for _, score, _ in everything], dtype=np.float64).reshape(P, G)
        t_reward = time.perf_counter()

        # 4. Group-relative advantages (nft: mapped to optimalities in [0, 1]); groups without
        #    reward spread are dropped.
        adv = group_advantages(rewards, cfg.std_mode, cfg.adv_clip_max).ravel()
        advantages = torch.as_tensor(nft_optimality(adv) if nft else adv, dtype=torch.float32, device=accelerator.device)
        keep_groups = reward_range_mask(rewards, cfg.reward_range_threshold)
        keep = np.repeat(keep_groups, G) & ~np.isnan(rewards.ravel())

        # 5. Auxiliary distillation: the student's own trajectories, the teachers' velocities on them.
        distill_pieces, n_distill = [], 0
        if teachers:
            mixed = distill.draw_mixed({t: 1.0 for t in teachers}, cfg.distill_prompts * len(teachers), cfg.seed, step, stream=1)
            dlo, dhi = shard(len(mixed), world, rank, "distill_prompts × teacher tasks")
            distill_pieces = distill.rollout_with_teachers(
                policy, teachers, mixed, dlo, dhi, num_steps=cfg.num_steps, shift=shift, noise_level=0.0, guidance_scale=1.0,
                teacher_guidance_scale=1.0, timesteps=distill.pick_timesteps(cfg.num_steps, cfg.distill_timesteps, cfg.seed, step),
                seed=seed_from(cfg.seed, step, 3),
            )
            n_distill = len(mixed)

        # 6. Update: per inner epoch, `updates_per_epoch` optimizer steps over shuffled shares of
        #    the kept samples; within one, every trained timestep (shuffled per sample) gets its own
        #    backward. Shares and orders are drawn on global indices, identical on every process.
        #    nft: one loss sample per kept sample and epoch, at a σ, ε and text dropout drawn per epoch.
        sums = torch.zeros(len(stat_keys), dtype=torch.float64)
        gap_sums: dict[str, list[float]] = {}
        grad_norms = []
        for epoch in range(cfg.num_inner_epochs):
            rng = np.random.default_rng([cfg.seed, step, epoch, 1])
            shares = np.array_split(rng.permutation(np.flatnonzero(keep)), cfg.updates_per_epoch)
            if nft:
                draws = nft_draws(cfg, step, epoch, P * G, tuple(policy.latent_shape()), accelerator.device)
            else:
                order = np.argsort(rng.random((P * G, T)), axis=1)  # per-sample timestep order
            for share in shares:
                if len(share) == 0 and not distill_pieces:
                    continue
                members = set(share.tolist())
                micro = []
                for pc in pieces:
                    rows = [r for r, g in enumerate(pc.index) if g in members]
                    micro += [(pc, rows[i : i + cfg.train_batch_size]) for i in range(0, len(rows), cfg.train_batch_size)]
                if nft:
                    jobs: list[tuple[str, Any, Any, list[int], float]] = [("nft", 0, pc, rows, world / len(share)) for pc, rows in micro]
                else:
                    jobs = [("grpo", pos, pc, rows, world / (len(share) * T)) for pos in range(T) for pc, rows in micro]
                for pos in range(len(distill_pieces[0].timesteps) if distill_pieces else 0):
                    for dp in distill_pieces:
                        for i in range(0, len(dp.index), cfg.train_batch_size):
                            rows = list(range(i, min(i + cfg.train_batch_size, len(dp.index))))
                            jobs.append(("distill", pos, dp, rows, cfg.distill_weight * world / (n_distill * len(dp.timesteps))))
                if not jobs:  # this process holds none of the share: a zero-weight pass keeps DDP in step
                    jobs = [("nft" if nft else "grpo", 0, pieces[0], [0], 0.0)]
                for n, (kind, pos, pc, rows, scale) in enumerate(jobs):
                    sync = n == len(jobs) - 1
                    with nullcontext() if sync else accelerator.no_sync(model):
                        r = torch.as_tensor(rows, device=accelerator.device)
                        if kind == "grpo":
                            t = torch.as_tensor([trained_steps[k] for k in order[pc.index[rows], pos]], device=accelerator.device)
                            loss, diag = grpo_loss(model, reference, pc, r, t, advantages[pc.index[rows]],
                                                   noise_level=cfg.noise_level, clip_range=cfg.clip_range, beta=cfg.beta)
                            if scale > 0:  # not the zero-weight pass
                                sums += torch.stack([diag[k].double().cpu() for k in stat_keys])
                        elif kind == "nft":
                            loss, diag = nft_batch_loss(model, old_velocity, reference, pc, r, draws, advantages[pc.index[rows]],
                                                        nft_beta=cfg.nft_beta, beta=cfg.beta, guided_loss=cfg.nft_guided_loss)
                            if scale > 0:
                                sums += torch.stack([diag[k].double().cpu() for k in stat_keys])
                        else:
                            loss = distill.velocity_gap(model, pc, r, pos)
                            acc = gap_sums.setdefault(pc.task, [0.0, 0.0])
                            acc[0], acc[1] = acc[0] + float(loss.detach().sum()), acc[1] + len(rows)
                        accelerator.backward(loss.sum() * scale)
                grad_norms.append(float(accelerator.clip_grad_norm_(params, cfg.max_grad_norm)))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update(step)
        if old is not None:  # nft: the old policy follows the trained one, θ_old ← η·θ_old + (1 − η)·θ
            old.update(step, decay=cfg.old_decay_at(step))
        t_update = time.perf_counter()

        # 7. Metrics: global sums over processes, written by the main process.
        totals = dict(zip(stat_keys, accelerator.reduce(sums.to(accelerator.device), "sum").cpu().tolist()))
        c = max(totals["count"], 1.0)
        components = reward_stats([Judgement(score, "", parts, reward.name) for _, score, parts in everything])
        valid = rewards[~np.isnan(rewards)]
        group_std = np.array([r[~np.isnan(r)].std() if (~np.isnan(r)).any() else 0.0 for r in rewards])
        row = {
            "step": step + 1,
            "reward/mean": float(valid.mean()) if valid.size else float("nan"),
            "reward/std": float(valid.std()) if valid.size else float("nan"),
            "reward/frac_none": float(np.isnan(rewards).mean()),
            **{k: v for k, v in components.items() if not k.startswith("rewards/total/")},
            "frac_reward_zero_std": float(np.mean(~(group_std > 1e-8))),
            "frac_groups_filtered": float(1 - keep_groups.mean()),
            "loss": (totals["nft_loss" if nft else "policy_loss"] + cfg.beta * totals["kl"]) / c,
            "kl": totals["kl"] / c,
            **({
                "nft/loss_pos": totals["loss_pos"] / c,
                "nft/loss_neg": totals["loss_neg"] / c,
                "nft/optimality_mean": totals["optimality"] / c,
                "nft/velocity_gap": totals["velocity_gap"] / c,
                "nft/old_decay": cfg.old_decay_at(step),
            } if nft else {
                "policy_loss": totals["policy_loss"] / c,
                "approx_kl": totals["approx_kl"] / c,
                "clipfrac": totals["clipfrac"] / c,
                "ratio_deviation": totals["ratio_deviation"] / c,
            }),
            "grad_norm": float(np.mean(grad_norms)) if grad_norms else 0.0,
            "updates": len(grad_norms),
            "guided_fraction": float(guided.mean()),
            "lr": lr,
            "samples_per_s": P * G / (t_update - t_start),
            "step_seconds": t_update - t_start,
            "rollout_seconds": t_rollout - t_start,
            "reward_seconds": t_reward - t_rollout,
            "update_seconds": t_update - t_reward,
        }
        if teachers:
            row.update(distill.gather_gaps(gap_sums, list(teachers)))
        last = step + 1 == cfg.steps
        if is_main:
            if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last):
                row.update(evaluate_and_save(step + 1))
            run.write_metrics(row)
            if (step + 1) % cfg.log_every == 0 or last:
                strict = row.get("rewards/strict/mean")
                log("grpo", f"step {step + 1}/{cfg.steps} reward {row['reward/mean']:.3f}±{row['reward/std']:.3f}"
                    + (f" strict {strict:.2f}" if strict is not None else "")
                    + (f" eval {row['eval/accuracy']:.2f}" if "eval/accuracy" in row else "")
                    + (f" |v-v_old|² {row['nft/velocity_gap']:.1e}" if nft else
                       f" kl {row['kl']:.2e} |ratio-1| {row['ratio_deviation']:.1e} clipfrac {row['clipfrac']:.2f}")
                    + f" filtered {row['frac_groups_filtered']:.2f} {row['samples_per_s']:.1f} samples/s "
                    + eta(time.perf_counter() - t_begin, step + 1 - start, cfg.steps - step - 1))
            name = f"{checkpoint_name}@step{step + 1}"
            run.save_step(step + 1, cfg, policy=policy, ema=ema, optimizer=optimizer, params=named, num_processes=world,
                          old=old, name=name, parent=parent, lineage=lineage + [name], task=cfg.task)
        accelerator.wait_for_everyone()
    checkpoint = run.latest_checkpoint()
    return {"run": str(run.path), "step": max(start, cfg.steps), "metrics": row, "checkpoint": str(checkpoint) if checkpoint else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML config (e.g. training/configs/shapes_grpo_t2i.yaml)")
    ap.add_argument("--run", required=True, help="run folder (created; resumed when it holds state/)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    args = ap.parse_args(argv)
    try:
        cfg = GRPOConfig.from_yaml(args.config, args.set)
    except ConfigError as exc:
        ap.error(str(exc))
    train(cfg, args.run)


if __name__ == "__main__":
    main()
