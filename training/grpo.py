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
   with ``nft_hindsight``, also against up to that many instructions one fact away from its
   group's own that the group carries out in part, each an extra group with the same latents;
4. group-relative advantages (r − mean of its group), divided by the std of the group, of the
   batch, or by nothing (``std_mode``), times ``advantage_scale``, clipped to ±``adv_clip_max``;
   groups whose reward range is below ``reward_range_threshold`` carry no signal and are dropped
   from the update;
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

from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from qwenrl.models.base import Conditioning, Policy
from qwenrl.sampling import guided_velocity, rollout, sde_step
from training.common import (
    EMA,
    ConfigError,
    Saving,
    StepClock,
    TrainedPolicy,
    TrainerRun,
    draw_items,
    encode_items,
    evaluate_and_save,
    frozen_copy,
    load_frozen,
    lora_enabled,
    maybe_ema,
    resolve_path,
    seed_from,
    seeded_load,
    shard,
    trained_part,
    trainer_main,
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

if TYPE_CHECKING:
    from training.distill import DistillPiece

# -- advantages and filtering (pure functions, numpy) ------------------------------------------


def group_advantages(rewards: np.ndarray, std_mode: str = "group", adv_clip_max: float = 5.0, eps: float = 1e-4,
                     scale_by: float = 1.0) -> np.ndarray:
    """scale_by · (r − group mean) / (std + eps) for rewards (P, G); std per group, over the batch, or
    no division (``none``). Missing rewards (NaN) get advantage 0 and are left out of the means and stds."""
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
    adv = np.where(valid, scale_by * (r - mean) / scale, 0.0)
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


def top_selection(rewards: np.ndarray, k: int, min_reward: float) -> np.ndarray:
    """True for the best ``k`` samples of each group (rows of (P, G)) among those whose reward is at
    least ``min_reward`` (missing rewards never); ties go to the earlier sample."""
    r = np.asarray(rewards, dtype=np.float64)
    eligible = ~np.isnan(r) & (np.nan_to_num(r, nan=-np.inf) >= min_reward)
    order = np.argsort(-np.where(eligible, r, -np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(r.shape[1])[None].repeat(r.shape[0], 0), axis=1)
    return eligible & (rank < k)


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


# -- one step's judgements and advantages ----------------------------------------------------------


@dataclass
class Judged:
    """The step's rewards, gathered from every process."""

    rewards: np.ndarray  #: (P, G), NaN where the judge gave no score
    records: list[tuple[int, float | None, dict[str, float]]]  #: (global sample index, score, parts), by index


def judge_rollouts(reward: Callable[[list], list], pieces: list[RolloutPiece], cfg: GRPOConfig, groups: int | None = None,
                   first: int = 0) -> Judged:
    """Judge the samples this process drew (with rationales) and gather every process's scores,
    as ``groups`` rows (default ``num_prompts``) of G from global sample index ``first`` on; a
    sample no process judged (an empty hindsight slot) is NaN."""
    from accelerate.utils import gather_object

    from qwenrl.rewards import Sample

    samples = [Sample.from_spec(img, it) for pc in pieces for img, it in zip(pc.images, pc.items)]
    local = [(int(g), j.score, j.parts) for g, j in zip((g for pc in pieces for g in pc.index), reward(samples) if samples else [])]
    records = sorted(gather_object(local), key=lambda x: x[0])
    scores = np.full((groups or cfg.num_prompts) * cfg.group_size, np.nan)
    for g, score, _ in records:
        scores[g - first] = np.nan if score is None else score
    return Judged(scores.reshape(-1, cfg.group_size), records)


# -- hindsight: a group judged again against instructions one fact away -----------------------------


def hindsight_choices(item: Any, images: np.ndarray, k: int, rng: np.random.Generator) -> list[Any]:
    """Up to ``k`` train-split prompts or edits one fact away from ``item`` that some but not all
    of ``images`` (one group) carry out by the strict checker, drawn at random among them."""
    from qwenrl.world.check import check_edit, check_t2i
    from qwenrl.world.contrast import one_fact_away
    from qwenrl.world.parse import parse

    check = check_edit if item.task == "edit" else check_t2i
    parsed = [parse(img) for img in images]
    in_part = [alt for _, alt in one_fact_away(item) if 0 < sum(check(alt, p).passed for p in parsed) < len(parsed)]
    return [in_part[i] for i in sorted(rng.permutation(len(in_part))[:k])]


def hindsight_pieces(policy: Policy, pieces: list[RolloutPiece], cfg: GRPOConfig, step: int) -> list[RolloutPiece]:
    """This process's hindsight groups: for each of its groups of a ``nft_hindsight_families``
    prompt, up to ``nft_hindsight`` other instructions the group's images carry out in part,
    each a piece with the same latents and images under the other instruction's conditioning.
    Hindsight group h of prompt i holds global samples (P + i·K + h)·G + j, so slots are fixed
    on every process whoever fills them, and an empty slot stays NaN."""
    G, K, P = cfg.group_size, cfg.nft_hindsight, cfg.num_prompts
    families = set(cfg.nft_hindsight_families)
    out = []
    for pc in pieces:
        for i in sorted({int(g) // G for g in pc.index}):
            rows = [r for r, g in enumerate(pc.index) if g // G == i]
            item = pc.items[rows[0]]
            if families and item.family not in families:
                continue
            rng = np.random.default_rng([cfg.seed, step, i, 7])
            for h, alt in enumerate(hindsight_choices(item, pc.images[rows], K, rng)):
                sel = torch.as_tensor(rows, device=pc.latents.device)
                out.append(RolloutPiece(
                    index=np.array([(P + i * K + h) * G + j for j in range(G)]), latents=pc.latents[sel], log_probs=None,
                    sigmas=None, cond=encode_items(policy, [alt], G),
                    null_cond=pc.null_cond.select(sel) if pc.null_cond is not None else None,
                    guidance_scale=pc.guidance_scale, images=pc.images[rows], items=[alt] * G,
                ))
    return out


@dataclass
class Advantages:
    """What the update trains on."""

    values: np.ndarray  #: (P·G,) each sample's advantage (nft: its optimality in [0, 1])
    keep: np.ndarray  #: (P·G,) bool, the samples trained on
    keep_groups: np.ndarray  #: (P,) bool, the groups that carry a signal


def step_advantages(cfg: GRPOConfig, rewards: np.ndarray) -> Advantages:
    """Group-relative advantages (nft: mapped to optimalities); groups without reward spread are
    dropped, and with ``nft_selection: top`` only each group's best passing samples are kept."""
    adv = group_advantages(rewards, cfg.std_mode, cfg.adv_clip_max, scale_by=cfg.advantage_scale).ravel()
    nft = cfg.objective == "nft"
    if nft and cfg.nft_selection == "top":  # the group's best passing samples, imitated; nothing pushed away
        chosen = top_selection(rewards, cfg.nft_top_k, cfg.nft_min_reward)
        return Advantages(chosen.ravel().astype(np.float64), chosen.ravel(), chosen.any(axis=1))  # optimality 1 for the kept
    keep_groups = reward_range_mask(rewards, cfg.reward_range_threshold)
    keep = np.repeat(keep_groups, cfg.group_size) & ~np.isnan(rewards.ravel())
    return Advantages(nft_optimality(adv) if nft else adv, keep, keep_groups)


# -- the update: optimizer steps over micro-batches, one update function per objective -----------------


@dataclass
class MicroBatch:
    """One forward and backward of an update: ``loss()`` gives per-sample losses (with gradients),
    whose sum is weighted by ``scale`` (0 for a pass that only keeps the processes in step)."""

    loss: Callable[[], torch.Tensor]
    scale: float


class Updater:
    """The optimizer steps of one training step, whatever the objective: each step runs its
    micro-batches (one backward each, gradients all-reduced on the last), clips the gradient,
    steps AdamW and the EMA. It also sums the objective's diagnostics (``stat_keys``), the
    distillation term's gaps per task, and the gradient norms, for the step's metrics."""

    def __init__(self, cfg: GRPOConfig, run: TrainerRun, model: torch.nn.Module, optimizer: Any, ema: EMA | None,
                 params: list[torch.nn.Parameter], step: int, stat_keys: tuple[str, ...]) -> None:
        self.cfg, self.run, self.model, self.optimizer, self.ema, self.params, self.step = cfg, run, model, optimizer, ema, params, step
        self.stat_keys = stat_keys
        self.sums = torch.zeros(len(stat_keys), dtype=torch.float64)
        self.gaps: dict[str, list[float]] = {}  #: distillation term: task → [sum of gaps, samples]
        self.grad_norms: list[float] = []
        self.term: list[MicroBatch] = []  #: the distillation term's micro-batches, added to every optimizer step

    def add_stats(self, diag: dict[str, torch.Tensor]) -> None:
        self.sums += torch.stack([diag[k].double().cpu() for k in self.stat_keys])

    def optimizer_step(self, batches: list[MicroBatch], idle: Callable[[], MicroBatch]) -> None:
        """One optimizer step over ``batches`` and the distillation term's; ``idle()`` is the
        zero-weight pass of a process that holds none of the share (it keeps DDP in step)."""
        accelerator = self.run.accelerator
        batches = (batches + self.term) or [idle()]
        for n, mb in enumerate(batches):
            with nullcontext() if n == len(batches) - 1 else accelerator.no_sync(self.model):
                accelerator.backward(mb.loss().sum() * mb.scale)
        self.grad_norms.append(float(accelerator.clip_grad_norm_(self.params, self.cfg.max_grad_norm)))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.step)


def epoch_shares(cfg: GRPOConfig, step: int, keep: np.ndarray):
    """Per inner epoch: (epoch, its generator, the shares of the kept samples, one per optimizer
    step). Drawn on global indices, so they are the same on every process; the objective may draw
    more from the generator, after the shares."""
    for epoch in range(cfg.num_inner_epochs):
        rng = np.random.default_rng([cfg.seed, step, epoch, 1])
        yield epoch, rng, np.array_split(rng.permutation(np.flatnonzero(keep)), cfg.updates_per_epoch)


def share_rows(pieces: list[RolloutPiece], share: np.ndarray, size: int) -> list[tuple[RolloutPiece, list[int]]]:
    """This process's rows of the samples ``share``, as (piece, rows) micro-batches of at most ``size``."""
    members = set(share.tolist())
    micro = []
    for pc in pieces:
        rows = [r for r, g in enumerate(pc.index) if g in members]
        micro += [(pc, rows[i : i + size]) for i in range(0, len(rows), size)]
    return micro


def flow_grpo_update(cfg: GRPOConfig, updater: Updater, models: "GRPOModels", pieces: list[RolloutPiece],
                     adv: Advantages, step: int) -> None:
    """Flow-GRPO's update: per inner epoch, ``updates_per_epoch`` optimizer steps over shuffled
    shares of the kept samples; within one, every trained timestep (in an order shuffled per
    sample) of every micro-batch gets its own backward of the clipped-ratio loss plus β·KL."""
    trained_steps = cfg.trained_steps()
    T, device, world = len(trained_steps), updater.run.device, updater.run.world
    advantages = torch.as_tensor(adv.values, dtype=torch.float32, device=device)

    def micro_batch(pc: RolloutPiece, rows: list[int], pos: int, order: np.ndarray, scale: float) -> MicroBatch:
        def loss() -> torch.Tensor:
            r = torch.as_tensor(rows, device=device)
            t = torch.as_tensor([trained_steps[k] for k in order[pc.index[rows], pos]], device=device)
            out, diag = grpo_loss(updater.model, models.reference, pc, r, t, advantages[pc.index[rows]],
                                  noise_level=cfg.noise_level, clip_range=cfg.clip_range, beta=cfg.beta)
            if scale > 0:  # not the zero-weight pass
                updater.add_stats(diag)
            return out
        return MicroBatch(loss, scale)

    for _, rng, shares in epoch_shares(cfg, step, adv.keep):
        order = np.argsort(rng.random((cfg.num_prompts * cfg.group_size, T)), axis=1)  # per-sample timestep order
        for share in shares:
            if len(share) == 0 and not updater.term:
                continue
            micro = share_rows(pieces, share, cfg.train_batch_size)
            scale = world / (len(share) * T) if len(share) else 0.0
            updater.optimizer_step([micro_batch(pc, rows, pos, order, scale) for pos in range(T) for pc, rows in micro],
                                   idle=lambda: micro_batch(pieces[0], [0], 0, order, 0.0))


def nft_update(cfg: GRPOConfig, updater: Updater, models: "GRPOModels", pieces: list[RolloutPiece], adv: Advantages,
               step: int) -> None:
    """The forward-process update: per inner epoch, σ, ε and text dropout drawn for every sample,
    then ``updates_per_epoch`` optimizer steps over shuffled shares of the kept samples, one loss
    sample per kept sample; after the step the old policy follows, θ_old ← η·θ_old + (1 − η)·θ."""
    device, world = updater.run.device, updater.run.world
    optimality = torch.as_tensor(adv.values, dtype=torch.float32, device=device)

    def micro_batch(pc: RolloutPiece, rows: list[int], draws: NFTDraws, scale: float) -> MicroBatch:
        def loss() -> torch.Tensor:
            out, diag = nft_batch_loss(updater.model, models.old_velocity, models.reference, pc, torch.as_tensor(rows, device=device),
                                       draws, optimality[pc.index[rows]], nft_beta=cfg.nft_beta, beta=cfg.beta,
                                       guided_loss=cfg.nft_guided_loss)
            if scale > 0:  # not the zero-weight pass
                updater.add_stats(diag)
            return out
        return MicroBatch(loss, scale)

    latent_shape = tuple(models.trained.policy.latent_shape())
    for epoch, _, shares in epoch_shares(cfg, step, adv.keep):
        draws = nft_draws(cfg, step, epoch, len(adv.keep), latent_shape, device)
        for share in shares:
            if len(share) == 0 and not updater.term:
                continue
            micro = share_rows(pieces, share, cfg.train_batch_size)
            scale = world / len(share) if len(share) else 0.0
            updater.optimizer_step([micro_batch(pc, rows, draws, scale) for pc, rows in micro],
                                   idle=lambda: micro_batch(pieces[0], [0], draws, 0.0))
    models.old.update(step, decay=cfg.old_decay_at(step))


def distillation_term(cfg: GRPOConfig, updater: Updater, models: "GRPOModels", step: int) -> list[MicroBatch]:
    """The auxiliary distillation term of a step: the student's own ODE trajectories, the teachers'
    velocities at ``distill_timesteps`` of their states, and one micro-batch of ‖v − v_teacher‖²
    (weighted by ``distill_weight``) per state and rows; every optimizer step of the update adds them."""
    from training import distill

    run, policy = updater.run, models.trained.policy
    mixed = distill.draw_mixed({t: 1.0 for t in models.teachers}, cfg.distill_prompts * len(models.teachers), cfg.seed, step, stream=1)
    lo, hi = shard(len(mixed), run.world, run.rank, "distill_prompts × teacher tasks")
    pieces = distill.rollout_with_teachers(
        policy, models.teachers, mixed, lo, hi, num_steps=cfg.num_steps, shift=models.trained.shift, noise_level=0.0,
        guidance_scale=1.0, teacher_guidance_scale=1.0, timesteps=distill.pick_timesteps(cfg.num_steps, cfg.distill_timesteps, cfg.seed, step),
        seed=seed_from(cfg.seed, step, 3),
    )
    if cfg.distill_null:  # the same states again, text dropped: the branch guidance subtracts
        pieces += [unconditional_piece(policy, models.teachers[dp.task], [mixed[i][1] for i in dp.index], dp) for dp in list(pieces)]

    def micro_batch(dp: distill.DistillPiece, rows: list[int], pos: int) -> MicroBatch:
        def loss() -> torch.Tensor:
            gap = distill.velocity_gap(updater.model, dp, torch.as_tensor(rows, device=run.device), pos)
            acc = updater.gaps.setdefault(dp.task, [0.0, 0.0])
            acc[0], acc[1] = acc[0] + float(gap.detach().sum()), acc[1] + len(rows)
            return gap
        return MicroBatch(loss, cfg.distill_weight * run.world / (len(mixed) * len(dp.timesteps)))

    size = cfg.train_batch_size
    return [micro_batch(dp, list(range(i, min(i + size, len(dp.index)))), pos)
            for pos in range(len(pieces[0].timesteps) if pieces else 0) for dp in pieces for i in range(0, len(dp.index), size)]


@torch.no_grad()
def unconditional_piece(policy: Policy, teacher: Policy, items: list, dp: DistillPiece) -> DistillPiece:
    """``dp`` with the text dropped on both sides: the student's null conditioning and the teacher's
    unconditional velocity at the same states (for ``distill_null``)."""
    from training import distill

    target = distill.teacher_velocities(teacher, items, dp.latents, dp.sigmas, dp.timesteps, 1.0, null=True)
    return replace(dp, cond=encode_items(policy, items, null=True), teacher_velocity=target)


def flow_grpo_metrics(cfg: GRPOConfig, totals: dict[str, float], step: int) -> dict[str, float]:
    """``losses/…`` of a Flow-GRPO step, from the summed diagnostics of ``grpo_loss``."""
    c = max(totals["count"], 1.0)
    return {"losses/total": (totals["policy_loss"] + cfg.beta * totals["kl"]) / c, "losses/kl": totals["kl"] / c,
            "losses/policy": totals["policy_loss"] / c, "losses/approx_kl": totals["approx_kl"] / c,
            "losses/clipfrac": totals["clipfrac"] / c, "losses/ratio_deviation": totals["ratio_deviation"] / c}


def nft_metrics(cfg: GRPOConfig, totals: dict[str, float], step: int) -> dict[str, float]:
    """``losses/…`` of a forward-process step, from the summed diagnostics of ``nft_batch_loss``."""
    c = max(totals["count"], 1.0)
    return {"losses/total": (totals["nft_loss"] + cfg.beta * totals["kl"]) / c, "losses/kl": totals["kl"] / c,
            "losses/nft_pos": totals["loss_pos"] / c, "losses/nft_neg": totals["loss_neg"] / c,
            "losses/nft_optimality": totals["optimality"] / c, "losses/nft_old_gap": totals["velocity_gap"] / c,
            "charts/nft_old_decay": cfg.old_decay_at(step)}


@dataclass(frozen=True)
class Objective:
    """How one objective (``GRPOConfig.objective``) updates the policy and what it logs."""

    update: Callable[..., None]  #: one step's update: (cfg, updater, models, pieces, advantages, step)
    stat_keys: tuple[str, ...]  #: the diagnostics its loss sums
    metrics: Callable[[GRPOConfig, dict[str, float], int], dict[str, float]]  #: its ``losses/…`` from the sums
    progress: Callable[[dict[str, Any]], str]  #: its part of the progress line


UPDATES: dict[str, Objective] = {
    "flow_grpo": Objective(flow_grpo_update, STAT_KEYS, flow_grpo_metrics,
                           lambda row: f"kl {row['losses/kl']:.2e} |ratio-1| {row['losses/ratio_deviation']:.1e} "
                                       f"clipfrac {row['losses/clipfrac']:.2f}"),
    "nft": Objective(nft_update, NFT_STAT_KEYS, nft_metrics, lambda row: f"|v-v_old|² {row['losses/nft_old_gap']:.1e}"),
}


# -- the trainer ---------------------------------------------------------------------------------


@dataclass
class GRPOModels:
    """The policy and its trained part, the reference (β > 0), nft's old policy (a lagging
    shadow of the trained weights: for LoRA, of the adapters) and the auxiliary term's teachers."""

    trained: TrainedPolicy
    reference: Callable[..., torch.Tensor] | None
    old: EMA | None
    teachers: dict[str, Policy]

    def old_velocity(self, x, sigma, cond, scale, null) -> torch.Tensor:
        """The step's anchor: with η = 0, the weights the step started from."""
        with maybe_ema(self.old):
            return guided_velocity(self.trained.policy, x, sigma, cond, scale, null)


def load_models(cfg: GRPOConfig, run: TrainerRun) -> GRPOModels:
    """The policy (seeded, so LoRA starts the same everywhere), its reference, old policy and teachers."""
    policy = seeded_load(cfg, cfg.model, run.device)
    if cfg.task not in policy.tasks:
        raise ConfigError(f"{cfg.model} does {policy.tasks}, not {cfg.task!r}")
    trained = trained_part(cfg, policy)
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
    old = EMA(trained.params, cfg.nft_old_decay) if cfg.objective == "nft" else None
    teachers = {t: load_frozen(cfg, p, run.device) for t, p in cfg.distill_teachers.items()} if cfg.distill_weight > 0 else {}
    return GRPOModels(trained, reference, old, teachers)


def check_shards(cfg: GRPOConfig, run: TrainerRun) -> tuple[int, int]:
    """The prompts [lo, hi) this process rolls out; ConfigError when they do not split evenly."""
    lo, hi = shard(cfg.num_prompts, run.world, run.rank, "num_prompts")
    if (hi - lo) % cfg.rollout_batch_prompts:
        raise ConfigError(f"rollout_batch_prompts ({cfg.rollout_batch_prompts}) must divide the {hi - lo} prompts of each of {run.world} processes")
    return lo, hi


def train(cfg: GRPOConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) GRPO in ``run_dir``; returns the last metrics row and checkpoint path."""
    from qwenrl.rewards import load_reward

    run = TrainerRun.start(cfg, run_dir, "grpo")
    lo, hi = check_shards(cfg, run)
    models = load_models(cfg, run)
    objective = UPDATES[cfg.objective]
    reward = load_reward(resolve_path(cfg.reward))
    monitor = load_reward(resolve_path(cfg.monitor_reward)) if cfg.monitor_reward and run.is_main else None  # only the main process evaluates
    model, optimizer, ema = run.start_optimizer(models.trained, old=models.old)
    saving = Saving(models.trained, optimizer, ema, cfg.name or f"grpo-{cfg.task}", {"task": cfg.task}, old=models.old)

    def evaluate(step: int) -> dict[str, float]:
        return evaluate_and_save(run, models.trained.policy, ema, {cfg.task: reward}, step, by_task=False, monitor=monitor)

    run.evaluate_first(evaluate)
    row: dict[str, Any] = {}
    for step in run.steps():
        clock = StepClock()
        lr = run.set_lr(optimizer, step)
        # 1. Draw: the same global batch of prompts on every process; this one keeps prompts [lo, hi).
        items = draw_items(cfg.task, cfg.num_prompts, cfg.seed, step, family_weights=cfg.family_weights)
        guided = guided_prompts(cfg, step)
        # 2. Roll out: G samples per prompt; flow_grpo records log-probs on the SDE steps, nft keeps
        #    the clean latents of ODE samples.
        pieces = rollout_groups(models.trained.policy, items, guided, lo, hi, cfg, models.trained.shift, step, old=models.old)
        clock.lap("rollout")
        # 3. Judge: rewards with rationales, judged where sampled, gathered everywhere.
        judged = judge_rollouts(reward, pieces, cfg)
        hindsight = hindsight_pieces(models.trained.policy, pieces, cfg, step) if cfg.nft_hindsight else []
        first = cfg.num_prompts * cfg.group_size  # hindsight samples are numbered after the step's own
        hind = judge_rollouts(reward, hindsight, cfg, cfg.num_prompts * cfg.nft_hindsight, first) if cfg.nft_hindsight else None
        clock.lap("reward")
        # 4. Advantages: group-relative (nft: optimalities in [0, 1]); groups without spread dropped.
        adv = step_advantages(cfg, judged.rewards if hind is None else np.concatenate([judged.rewards, hind.rewards]))
        pieces += hindsight
        # 5. Update: the objective's optimizer steps, each with the auxiliary distillation term.
        updater = Updater(cfg, run, model, optimizer, ema, models.trained.params, step, objective.stat_keys)
        updater.term = distillation_term(cfg, updater, models, step) if models.teachers else []
        objective.update(cfg, updater, models, pieces, adv, step)
        clock.lap("update")
        # 6. Log: global sums over processes, then (main process) evaluation, metrics, checkpoints.
        row = step_metrics(cfg, step, judged, adv, updater, guided, lr, clock, reward.name, models, hind)
        run.end_step(step, row, evaluate, progress_line(objective), saving)
    return run.result(row)


def step_metrics(cfg: GRPOConfig, step: int, judged: Judged, adv: Advantages, updater: Updater, guided: np.ndarray,
                 lr: float, clock: StepClock, reward_name: str, models: GRPOModels, hind: Judged | None = None) -> dict[str, Any]:
    """The step's metrics row (every process computes it: the sums are reduced over processes)."""
    from qwenrl.rewards import Judgement, reward_stats
    from training import distill

    accelerator = updater.run.accelerator
    totals = dict(zip(updater.stat_keys, accelerator.reduce(updater.sums.to(accelerator.device), "sum").cpu().tolist()))
    rewards = judged.rewards
    components = reward_stats([Judgement(score, "", parts, reward_name) for _, score, parts in judged.records])
    valid = rewards[~np.isnan(rewards)]
    group_std = np.array([r[~np.isnan(r)].std() if (~np.isnan(r)).any() else 0.0 for r in rewards])
    row = {
        "step": step + 1,
        "rewards/total/mean": float(valid.mean()) if valid.size else float("nan"),
        "rewards/total/std": float(valid.std()) if valid.size else float("nan"),
        "rewards/total/frac_none": float(np.isnan(rewards).mean()),
        **{k: v for k, v in components.items() if not k.startswith("rewards/total/")},
        "rewards/frac_zero_std": float(np.mean(~(group_std > 1e-8))),
        **UPDATES[cfg.objective].metrics(cfg, totals, step),
        "charts/frac_groups_filtered": float(1 - adv.keep_groups[: cfg.num_prompts].mean()),
        "charts/frac_samples_trained": float(adv.keep[: cfg.num_prompts * cfg.group_size].mean()),
        "charts/grad_norm": float(np.mean(updater.grad_norms)) if updater.grad_norms else 0.0,
        "charts/updates": len(updater.grad_norms),
        "charts/guided_fraction": float(guided.mean()),
        "charts/lr": lr,
        "charts/samples_per_s": cfg.num_prompts * cfg.group_size / clock.total,
        "charts/step_seconds": clock.total,
        **{f"charts/{part}_seconds": seconds for part, seconds in clock.seconds.items()},
    }
    if models.teachers:
        row.update(distill.gather_gaps(updater.gaps, list(models.teachers)))
    if hind is not None:  # hindsight groups: how many slots were filled, how many were trained, their mean reward
        filled = ~np.isnan(hind.rewards).all(axis=1)
        row.update({"charts/hindsight_groups": int(filled.sum()), "charts/hindsight_groups_kept": int(adv.keep_groups[cfg.num_prompts:].sum()),
                    "rewards/hindsight/mean": float(np.nanmean(hind.rewards)) if filled.any() else float("nan")})
    return row


def progress_line(objective: Objective) -> Callable[[dict[str, Any]], str]:
    """The progress line of a step: rewards, the checker's pass rate, the objective's diagnostics."""
    def progress(row: dict[str, Any]) -> str:
        strict = row.get("rewards/strict/mean")
        return (f"reward {row['rewards/total/mean']:.3f}±{row['rewards/total/std']:.3f}"
                + (f" strict {strict:.2f}" if strict is not None else "")
                + (f" eval {row['eval/accuracy']:.2f}" if "eval/accuracy" in row else "")
                + f" {objective.progress(row)}"
                + f" filtered {row['charts/frac_groups_filtered']:.2f} {row['charts/samples_per_s']:.1f} samples/s")
    return progress


def main(argv: list[str] | None = None) -> None:
    trainer_main(GRPOConfig, train, __doc__, "training/configs/shapes_grpo_t2i.yaml", argv)


if __name__ == "__main__":
    main()
