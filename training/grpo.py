"""GRPO for flow-matching image generators (Flow-GRPO), in one file that reads top to bottom.

One step:

1. draw ``num_prompts`` prompts (or edit tasks) from the grammar's ``train`` split, seeded by step;
2. roll out ``group_size`` samples per prompt with the SDE sampler, recording each SDE step's
   log-probability (only steps inside ``sde_window`` are stochastic and trained);
3. judge every image with the composite reward (``reward``: a YAML of judges with rationales);
4. group-relative advantages (r − mean of its group) / (std + 1e-4), std per group or over the
   batch, clipped to ±``adv_clip_max``; groups whose reward range is below
   ``reward_range_threshold`` carry no signal and are dropped from the update;
5. the clipped-ratio objective over the trained timesteps plus the KL to the reference,
   β·‖μθ − μref‖² / (2·std²) (the reference is the frozen base, or the model with its LoRA
   adapters switched off), one backward per timestep, gradient clipping, AdamW, optional EMA;
   ``num_inner_epochs`` passes, each of ``updates_per_epoch`` optimizer steps over a shuffled
   share of the samples and their timesteps in shuffled order;
6. log ``metrics.jsonl``; evaluate on held-out ``test`` prompts, write checkpoints and the
   resumable state every few steps.

Run it on one process, or several (each holds whole groups; gradients are all-reduced, so a run
gives the same result on 1 or N processes for the same global batch, up to floating point)::

    python -m training.grpo --config training/configs/shapes_grpo_t2i.yaml --run runs/grpo-t2i
    accelerate launch --multi_gpu --num_processes 8 -m training.grpo \\
        --config training/configs/sd35_medium_grpo.yaml --run runs/sd35 --set lr=1e-4
    qwenrl train grpo --config training/configs/shapes_grpo_edit.yaml --set steps=50

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
    TASKS,
    ConfigError,
    ModelSettings,
    RunFolder,
    RunSettings,
    check_model_path,
    check_family_weights,
    check_shared_fields,
    config_dict,
    draw_items,
    encode_items,
    evaluate_policy,
    frozen_copy,
    load_config,
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
    reward_task,
    save_samples,
    seed_from,
    shard,
    start_optimizer,
)

CFG_MODES = ("none", "guided", "hybrid")
STD_MODES = ("group", "batch")


@dataclass
class GRPOConfig(ModelSettings, RunSettings):
    # -- what to train ------------------------------------------------------------------------
    model: str = "data/models/shapes-base"
    """Model to fine-tune: a QwenRL checkpoint folder or a diffusers pipeline folder."""
    task: str = "t2i"
    """``t2i`` (text-to-image prompts) or ``edit`` (edit instructions on rendered sources)."""
    reward: str = "training/configs/rewards/shapes_t2i.yaml"
    """Composite reward YAML (see docs/rewards.md); its ``task`` must match ``task``."""
    name: str | None = None
    """Checkpoint name prefix; checkpoints are named ``{name}@step{N}``. Default ``grpo-{task}``."""

    # -- sampling -------------------------------------------------------------------------------
    num_prompts: int = 8
    """Prompts per step (the global batch is num_prompts × group_size samples); a multiple of the number of processes."""
    group_size: int = 8
    """Samples per prompt (G); advantages compare samples within a group, so at least 2."""
    num_steps: int = 10
    """Sampling steps per trajectory."""
    shift: float | None = None
    """Sigma-schedule shift; default the model's ``default_shift``."""
    noise_level: float = 0.7
    """SDE noise level (Flow-GRPO's a); must be > 0."""
    sde_window: list[int] | None = field(default_factory=lambda: [0, 5])
    """[start, end): steps taken with the SDE and trained; the others are ODE steps. None: every step."""
    share_noise: bool = False
    """Start the G samples of a prompt from the same initial noise."""
    cfg_mode: str = "none"
    """Classifier-free guidance for rollouts and training: none, guided (every group) or hybrid (a fraction of groups)."""
    guidance_scale: float = 1.0
    """Guidance scale of guided groups (> 1 when cfg_mode is guided or hybrid)."""
    hybrid_guided_fraction: float = 0.25
    """With cfg_mode hybrid: the fraction of each step's groups sampled and trained with guidance."""
    family_weights: dict[str, float] = field(default_factory=dict)
    """Prompt families drawn in proportion to these weights (family → weight, others 0); empty: uniform over families."""
    rollout_batch_prompts: int = 8
    """Prompts rolled out together (batch of this × G); must divide the prompts of each process."""

    # -- advantages -----------------------------------------------------------------------------
    std_mode: str = "group"
    """Advantage normalisation: ``group`` (std of each prompt's group) or ``batch`` (std over the whole batch)."""
    adv_clip_max: float = 5.0
    """Advantages are clipped to [-adv_clip_max, adv_clip_max]."""
    reward_range_threshold: float = 0.02
    """Groups whose reward range (max − min) is below this are dropped from the update."""

    # -- update ---------------------------------------------------------------------------------
    steps: int = 300
    """GRPO steps (sampling + update rounds)."""
    lr: float = 3e-4
    """AdamW learning rate."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up, in steps."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Gradient clipping (global norm)."""
    clip_range: float = 1e-3
    """PPO clip range on the ratio (log-probs are means over latent elements, so ratios stay near 1)."""
    beta: float = 0.01
    """Weight of the KL to the reference policy (0 disables it and the reference)."""
    num_inner_epochs: int = 1
    """Passes over each step's samples."""
    updates_per_epoch: int = 2
    """Optimizer steps per pass, each over a shuffled share of the samples."""
    train_batch_size: int = 32
    """Samples per forward/backward (micro-batch) in the update."""
    ema_decay: float = 0.0
    """EMA of the trained weights (0: none); evaluation and checkpoints use the EMA weights."""

    # -- on-policy distillation as an auxiliary term ----------------------------------------------
    distill_teachers: dict[str, str] = field(default_factory=dict)
    """Task → teacher checkpoint, for an auxiliary velocity-matching term on the student's own trajectories."""
    distill_weight: float = 0.0
    """Weight of the auxiliary distillation loss (0: off)."""
    distill_prompts: int = 4
    """Prompts per teacher task rolled out (ODE) each step for the auxiliary term."""
    distill_timesteps: int = 3
    """Trajectory states per sample matched to the teacher in the auxiliary term."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; set task to one of {TASKS}")
        check_model_path(self.model)
        rtask = reward_task(self.reward)
        if rtask != self.task:
            raise ConfigError(f"reward config {self.reward} is for task {rtask!r} but task is {self.task!r}; use a {self.task} reward YAML")
        check_family_weights(self.task, self.family_weights)
        if self.group_size < 2:
            raise ConfigError(f"group_size is {self.group_size}: GRPO compares samples of one prompt, so use at least 2 (8 is typical)")
        if self.num_prompts < 1:
            raise ConfigError("num_prompts must be at least 1")
        if self.num_steps < 1:
            raise ConfigError("num_steps (sampling steps) must be at least 1")  # before the window is checked against it
        if self.sde_window is not None:
            w = self.sde_window
            if len(w) != 2 or not 0 <= w[0] < w[1] <= self.num_steps:
                raise ConfigError(
                    f"sde_window {w} lies outside the schedule of {self.num_steps} steps; use [start, end] with "
                    f"0 <= start < end <= num_steps, e.g. [0, {max(1, self.num_steps // 2)}], or null for every step"
                )
        if self.noise_level <= 0:
            raise ConfigError("noise_level must be > 0: GRPO needs SDE steps with log-probabilities (0.7 is typical)")
        if self.cfg_mode not in CFG_MODES:
            raise ConfigError(f"cfg_mode must be one of {CFG_MODES}, got {self.cfg_mode!r}")
        if self.cfg_mode != "none" and self.guidance_scale <= 1.0:
            raise ConfigError(f"cfg_mode {self.cfg_mode} needs guidance_scale > 1 (got {self.guidance_scale}); or set cfg_mode: none")
        if not 0.0 <= self.hybrid_guided_fraction <= 1.0:
            raise ConfigError("hybrid_guided_fraction must lie in [0, 1]")
        if self.rollout_batch_prompts < 1 or self.num_prompts % self.rollout_batch_prompts:
            raise ConfigError(f"rollout_batch_prompts ({self.rollout_batch_prompts}) must divide num_prompts ({self.num_prompts})")
        if self.std_mode not in STD_MODES:
            raise ConfigError(f"std_mode must be one of {STD_MODES}, got {self.std_mode!r}")
        if self.adv_clip_max <= 0:
            raise ConfigError("adv_clip_max must be positive (5 is typical)")
        if self.reward_range_threshold < 0:
            raise ConfigError("reward_range_threshold must be >= 0 (0 keeps every group with any spread)")
        check_shared_fields(self)
        if self.clip_range <= 0:
            raise ConfigError("clip_range must be positive (1e-4 to 1e-3 for log-probs averaged over latent elements)")
        if self.beta < 0:
            raise ConfigError("beta (KL weight) must be >= 0")
        if self.num_inner_epochs < 1 or self.updates_per_epoch < 1:
            raise ConfigError("num_inner_epochs and updates_per_epoch must be at least 1")
        if self.distill_weight < 0:
            raise ConfigError("distill_weight must be >= 0")
        if self.distill_weight > 0:
            if not self.distill_teachers:
                raise ConfigError("distill_weight > 0 needs distill_teachers (task → teacher checkpoint)")
            if self.distill_prompts < 1 or self.distill_timesteps < 1:
                raise ConfigError("distill_prompts and distill_timesteps must be at least 1")
        for t, path in self.distill_teachers.items():
            if t not in TASKS:
                raise ConfigError(f"distill_teachers: unknown task {t!r}; use {TASKS}")
            check_model_path(path, f"distill teacher for {t}")
        if self.distill_weight > 0 and self.distill_timesteps > self.num_steps:
            raise ConfigError(f"distill_timesteps ({self.distill_timesteps}) cannot exceed num_steps ({self.num_steps})")

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), **values: Any) -> "GRPOConfig":
        return load_config(cls, path, overrides, **values)

    def trained_steps(self) -> list[int]:
        """Indices of the SDE (trained) sampling steps."""
        return list(range(*self.sde_window)) if self.sde_window is not None else list(range(self.num_steps))


# -- advantages and filtering (pure functions, numpy) ------------------------------------------


def group_advantages(rewards: np.ndarray, std_mode: str = "group", adv_clip_max: float = 5.0, eps: float = 1e-4) -> np.ndarray:
    """(r − group mean) / (std + eps) for rewards (P, G); std per group or over the batch.
    Missing rewards (NaN) get advantage 0 and are left out of the means and stds."""
    r = np.asarray(rewards, dtype=np.float64)
    valid = ~np.isnan(r)
    count = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    mean = np.where(valid, r, 0.0).sum(axis=1, keepdims=True) / count
    if std_mode == "group":
        std = np.sqrt((np.where(valid, r - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count)
    elif std_mode == "batch":
        std = np.nanstd(r) if valid.any() else 0.0
    else:
        raise ValueError(f"std_mode must be one of {STD_MODES}")
    adv = np.where(valid, (r - mean) / (std + eps), 0.0)
    return np.clip(adv, -adv_clip_max, adv_clip_max)


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
    """Trajectories of some whole groups sampled together (one guidance setting)."""

    index: np.ndarray  #: (n,) global sample indices, prompt * G + j
    latents: torch.Tensor  #: (n, T+1, ...) visited states
    log_probs: torch.Tensor  #: (n, T) recorded log-probs (0 on ODE steps)
    sigmas: torch.Tensor  #: (T+1,)
    cond: Conditioning
    null_cond: Conditioning | None
    guidance_scale: float
    images: np.ndarray  #: (n, H, W, 3) uint8
    items: list  #: the prompt or edit task of each row


def rollout_groups(policy: Policy, items: list, guided: np.ndarray, lo: int, hi: int, cfg: GRPOConfig, shift: float, step: int) -> list[RolloutPiece]:
    """G SDE trajectories for each prompt in [lo, hi), in batches of ``rollout_batch_prompts``
    prompts, guided and unguided groups apart. Noise is seeded by (seed, step, first prompt of
    the batch), so the samples do not depend on how prompts are spread over processes."""
    G = cfg.group_size
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
            null = encode_items(policy, group_items, G, null=True) if with_guidance else None
            traj = rollout(
                policy, cond, num_steps=cfg.num_steps, shift=shift, guidance_scale=scale, null_cond=null,
                noise_level=cfg.noise_level, sde_window=tuple(cfg.sde_window) if cfg.sde_window else None,
                generator=seed_from(cfg.seed, step, start, int(with_guidance)), group_size=G, share_noise=cfg.share_noise,
            )
            pieces.append(RolloutPiece(
                index=np.array([i * G + j for i in ids for j in range(G)]),
                latents=traj.latents, log_probs=traj.log_probs, sigmas=traj.sigmas, cond=cond, null_cond=null,
                guidance_scale=scale, images=policy.decode(traj.final), items=[it for it in group_items for _ in range(G)],
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
    trained_steps = cfg.trained_steps()
    T = len(trained_steps)

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
    teachers = {}
    if cfg.distill_weight > 0:
        teachers = {t: load_model(p, height=cfg.height, width=cfg.width, dtype=cfg.dtype, device=accelerator.device).requires_grad_(False)
                    for t, p in cfg.distill_teachers.items()}
    reward = load_reward(resolve_path(cfg.reward))
    model, optimizer, ema, start = start_optimizer(cfg, run, policy, params, named, accelerator, "grpo")
    checkpoint_name = cfg.name or f"grpo-{cfg.task}"
    eval_seed = 0  # the seeds `qwenrl bench` uses, so in-run evaluations match it on the same prompts

    def evaluate_and_save(step: int) -> dict[str, float]:
        """Held-out metrics (main process), the sample grid and its rationales."""
        with maybe_ema(ema):
            metrics, images, records = evaluate_policy(
                policy, cfg.task, reward, limit=cfg.eval_limit, num_steps=cfg.eval_num_steps,
                guidance_scale=cfg.eval_guidance_scale, seed=eval_seed,
            )
        save_samples(run.samples, f"step-{step:06d}", images, records, cfg.eval_grid_size)
        return {f"eval/{k}": v for k, v in metrics.items()}

    if start == 0 and cfg.eval_every and cfg.eval_at_start and is_main and cfg.steps > 0:
        run.write_metrics({"step": 0, **evaluate_and_save(0)})
    accelerator.wait_for_everyone()

    row: dict[str, Any] = {}
    for step in range(start, cfg.steps):
        t_start = time.perf_counter()
        lr = lr_at(step, cfg.lr, cfg.warmup_steps)
        for g in optimizer.param_groups:
            g["lr"] = lr

        # 1. Prompts: the same global batch on every process; this one keeps prompts [lo, hi).
        items = draw_items(cfg.task, P, cfg.seed, step, family_weights=cfg.family_weights)
        guided = guided_prompts(cfg, step)

        # 2. Rollouts: G samples per prompt, log-probs recorded on the SDE steps.
        pieces = rollout_groups(policy, items, guided, lo, hi, cfg, shift, step)
        t_rollout = time.perf_counter()

        # 3. Rewards with rationales; judged where sampled, gathered everywhere.
        samples = [Sample.from_spec(img, it) for pc in pieces for img, it in zip(pc.images, pc.items)]
        judged = reward(samples)
        local = [(int(g), j.score, j.parts) for g, j in zip((g for pc in pieces for g in pc.index), judged)]
        everything = sorted(gather_object(local), key=lambda x: x[0])
        rewards = np.array([np.nan if score is None else score for _, score, _ in everything], dtype=np.float64).reshape(P, G)
        t_reward = time.perf_counter()

        # 4. Group-relative advantages; groups without reward spread are dropped.
        advantages = torch.as_tensor(group_advantages(rewards, cfg.std_mode, cfg.adv_clip_max).ravel(), dtype=torch.float32, device=accelerator.device)
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
        sums = torch.zeros(len(STAT_KEYS), dtype=torch.float64)
        gap_sums: dict[str, list[float]] = {}
        grad_norms = []
        for epoch in range(cfg.num_inner_epochs):
            rng = np.random.default_rng([cfg.seed, step, epoch, 1])
            shares = np.array_split(rng.permutation(np.flatnonzero(keep)), cfg.updates_per_epoch)
            order = np.argsort(rng.random((P * G, T)), axis=1)  # per-sample timestep order
            for share in shares:
                if len(share) == 0 and not distill_pieces:
                    continue
                members = set(share.tolist())
                micro = []
                for pc in pieces:
                    rows = [r for r, g in enumerate(pc.index) if g in members]
                    micro += [(pc, rows[i : i + cfg.train_batch_size]) for i in range(0, len(rows), cfg.train_batch_size)]
                jobs: list[tuple[str, Any, Any, list[int], float]] = [
                    ("grpo", pos, pc, rows, world / (len(share) * T)) for pos in range(T) for pc, rows in micro
                ]
                for pos in range(len(distill_pieces[0].timesteps) if distill_pieces else 0):
                    for dp in distill_pieces:
                        for i in range(0, len(dp.index), cfg.train_batch_size):
                            rows = list(range(i, min(i + cfg.train_batch_size, len(dp.index))))
                            jobs.append(("distill", pos, dp, rows, cfg.distill_weight * world / (n_distill * len(dp.timesteps))))
                if not jobs:  # this process holds none of the share: a zero-weight pass keeps DDP in step
                    jobs = [("grpo", 0, pieces[0], [0], 0.0)]
                for n, (kind, pos, pc, rows, scale) in enumerate(jobs):
                    sync = n == len(jobs) - 1
                    with nullcontext() if sync else accelerator.no_sync(model):
                        r = torch.as_tensor(rows, device=accelerator.device)
                        if kind == "grpo":
                            t = torch.as_tensor([trained_steps[k] for k in order[pc.index[rows], pos]], device=accelerator.device)
                            loss, diag = grpo_loss(model, reference, pc, r, t, advantages[pc.index[rows]],
                                                   noise_level=cfg.noise_level, clip_range=cfg.clip_range, beta=cfg.beta)
                            if scale > 0:  # not the zero-weight pass
                                sums += torch.stack([diag[k].double().cpu() for k in STAT_KEYS])
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
        t_update = time.perf_counter()

        # 7. Metrics: global sums over processes, written by the main process.
        totals = dict(zip(STAT_KEYS, accelerator.reduce(sums.to(accelerator.device), "sum").cpu().tolist()))
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
            "loss": (totals["policy_loss"] + cfg.beta * totals["kl"]) / c,
            "policy_loss": totals["policy_loss"] / c,
            "kl": totals["kl"] / c,
            "approx_kl": totals["approx_kl"] / c,
            "clipfrac": totals["clipfrac"] / c,
            "ratio_deviation": totals["ratio_deviation"] / c,
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
                    + f" kl {row['kl']:.2e} |ratio-1| {row['ratio_deviation']:.1e} clipfrac {row['clipfrac']:.2f}"
                    f" filtered {row['frac_groups_filtered']:.2f} {row['samples_per_s']:.1f} samples/s")
            name = f"{checkpoint_name}@step{step + 1}"
            run.save_step(step + 1, cfg, policy=policy, ema=ema, optimizer=optimizer, params=named, num_processes=world,
                          name=name, parent=parent, lineage=lineage + [name], task=cfg.task)
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
