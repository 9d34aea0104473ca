"""On-policy distillation of task specialists into one student, by trajectory-level velocity matching.

One step:

1. draw ``batch_size`` prompts and edit tasks from the grammar's ``train`` split, mixed by
   ``task_weights`` (e.g. half text-to-image, half editing);
2. the student rolls out its own trajectories (ODE with ``noise_level`` 0, else SDE);
3. at the query states — the visited states whose noise level lies in ``query_sigma_range``,
   ``timesteps_per_trajectory`` of them picked per step (or all) — the target velocity is
   given by the teachers: with ``routing: task``, by the teacher of the sample's task (a
   specialist checkpoint from ``teachers``: hard routing); with ``routing: mixture``, by the
   ``task_weights``-weighted mean of every teacher's velocity (soft mixing);
4. loss = mean over samples and states of ‖v_student − v_target‖² (each a mean over latent
   elements), one backward per state, gradient clipping, AdamW (constant or cosine learning
   rate), optional EMA;
5. log ``distill/velocity_gap/{task}`` and, every few steps, held-out accuracy per task.

Because the states come from the student's own trajectories, the student learns what the teacher
would do where the student actually goes (on-policy), not only on the teacher's path. The same
functions give GRPO its auxiliary distillation term (``distill_teachers``/``distill_weight``).

**Absorbed guidance** (``absorb_guidance: true``): the target is each teacher's *guided*
velocity, v_u + w·(v_c − v_u) at ``teacher_guidance_scale`` w, and the student — rolled out
without guidance — matches it with its plain conditional velocity. The student then samples
without guidance, one pass per step instead of two; its checkpoints say so in their manifest
(``sampling.guidance_scale: 1.0``, ``absorbed_guidance: w``), and ``qwenrl generate``, the bench
and the arena sample it that way.

    python -m training.distill --config training/configs/shapes_distill.yaml --run runs/distill
    accelerate launch --multi_gpu --num_processes 4 -m training.distill --config ... --run ...
    qwenrl train distill --config training/configs/shapes_distill.yaml --set steps=100

Rerunning the same command on the same ``--run`` folder resumes exactly from ``RUN/state/``.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from qwenrl.models.base import Conditioning, Policy
from qwenrl.evaluation import override_sampling
from qwenrl.sampling import guided_velocity, rollout, sigma_schedule
from qwenrl.tasks import TASKS
from training.common import (
    ConfigError,
    RunFolder,
    config_dict,
    draw_items,
    encode_items,
    eta,
    evaluate_policy,
    load_model,
    log,
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
from training.configs import ROUTINGS, DistillConfig  # noqa: F401 - importable from here as before

# -- batches, rollouts and the loss (also used by GRPO's auxiliary term) ---------------------------


def task_counts(task_weights: dict[str, float], n: int) -> dict[str, int]:
    """``n`` split over tasks in proportion to their weights (largest remainder, TASKS order)."""
    tasks = [t for t in TASKS if task_weights.get(t, 0) > 0]
    total = sum(task_weights[t] for t in tasks)
    exact = {t: n * task_weights[t] / total for t in tasks}
    counts = {t: int(np.floor(exact[t])) for t in tasks}
    for t in sorted(tasks, key=lambda t: (-(exact[t] - counts[t]), TASKS.index(t)))[: n - sum(counts.values())]:
        counts[t] += 1
    return counts


def draw_mixed(task_weights: dict[str, float], n: int, seed: int, step: int, stream: int = 0) -> list[tuple[str, Any]]:
    """(task, prompt or edit task) pairs for one step, grouped by task in TASKS order."""
    return [(t, it) for t, k in task_counts(task_weights, n).items() for it in draw_items(t, k, seed, step, stream)]


def pick_timesteps(num_steps: int, k: int | None, seed: int, step: int, candidates: list[int] | None = None) -> list[int]:
    """The trajectory states matched this step: all ``candidates`` (default every state
    0 … num_steps − 1), or ``k`` of them drawn without replacement."""
    pool = list(range(num_steps)) if candidates is None else sorted(candidates)
    if k is None or k >= len(pool):
        return pool
    picked = np.random.default_rng([seed, step, 4]).choice(len(pool), size=k, replace=False)
    return sorted(pool[i] for i in picked)


def query_candidates(sigmas: torch.Tensor, sigma_range: list[float] | None) -> list[int]:
    """Indices of the trajectory states (σ_0 … σ_{T−1} of a schedule of T steps) whose noise
    level lies in ``sigma_range`` = [low, high]; every state when None."""
    states = sigmas[:-1].tolist()
    if sigma_range is None:
        return list(range(len(states)))
    low, high = sigma_range
    return [k for k, s in enumerate(states) if low - 1e-6 <= s <= high + 1e-6]


@dataclass
class DistillPiece:
    """Student trajectories of one task with the teacher's velocity at the matched states."""

    task: str
    index: np.ndarray  #: (n,) global sample indices
    latents: torch.Tensor  #: (n, T+1, ...) the student's visited states
    sigmas: torch.Tensor  #: (T+1,)
    cond: Conditioning  #: the student's conditioning
    timesteps: list[int]  #: the matched states (indices into the trajectory)
    teacher_velocity: torch.Tensor  #: (n, len(timesteps), ...)
    final: torch.Tensor  #: (n, ...) clean latents


@torch.no_grad()
def rollout_with_teachers(
    policy: Policy,
    teachers: dict[str, Policy],
    mixed: list[tuple[str, Any]],
    lo: int,
    hi: int,
    *,
    num_steps: int,
    shift: float,
    noise_level: float,
    guidance_scale: float,
    teacher_guidance_scale: float,
    timesteps: list[int],
    seed: int,
    routing: str = "task",
    mixture: dict[str, float] | None = None,
) -> list[DistillPiece]:
    """The student's trajectories for items [lo, hi) of ``mixed`` (one rollout per task) and
    the target velocity at the states ``timesteps``: the velocity of the sample's task teacher
    (``routing`` task), or the ``mixture``-weighted mean of the teachers' velocities (mixture),
    each at ``teacher_guidance_scale``."""
    pieces = []
    for task in TASKS:
        ids = [i for i in range(lo, hi) if mixed[i][0] == task]
        if not ids:
            continue
        items = [mixed[i][1] for i in ids]
        cond = encode_items(policy, items)
        null = encode_items(policy, items, null=True) if guidance_scale != 1.0 else None
        traj = rollout(policy, cond, num_steps=num_steps, shift=shift, guidance_scale=guidance_scale, null_cond=null,
                       noise_level=noise_level, sde_window=None, generator=seed_from(seed, ids[0]))
        weights = {task: 1.0} if routing == "task" else (mixture or {})
        v = sum(w * teacher_velocities(teachers[t], items, traj.latents, traj.sigmas, timesteps, teacher_guidance_scale)
                for t, w in weights.items())
        pieces.append(DistillPiece(task, np.array(ids), traj.latents, traj.sigmas, cond, list(timesteps), v, traj.final))
    return pieces


def teacher_velocities(teacher: Policy, items: list, latents: torch.Tensor, sigmas: torch.Tensor, timesteps: list[int],
                       guidance_scale: float) -> torch.Tensor:
    """One teacher's (guided) velocity at the states ``timesteps`` of trajectories ``latents``
    (n, T+1, ...): (n, len(timesteps), ...)."""
    cond = encode_items(teacher, items)
    null = encode_items(teacher, items, null=True) if guidance_scale != 1.0 else None
    return torch.stack([guided_velocity(teacher, latents[:, k], sigmas[k], cond, guidance_scale, null) for k in timesteps], dim=1)


def velocity_gap(model: Callable[..., torch.Tensor], piece: DistillPiece, rows: torch.Tensor, pos: int) -> torch.Tensor:
    """‖v_student − v_teacher‖² per sample (mean over latent elements) at matched state ``pos``."""
    k = piece.timesteps[pos]
    x = piece.latents[rows, k]
    v = model(x, piece.sigmas[k], piece.cond.select(rows), 1.0, None)
    return ((v - piece.teacher_velocity[rows, pos]) ** 2).mean(dim=tuple(range(1, x.ndim)))


def gather_gaps(gap_sums: dict[str, list[float]], tasks: list[str]) -> dict[str, float]:
    """``distill/velocity_gap/{task}`` over all processes from this process's [sum, count] per
    task, and their pooled mean as ``distill/velocity_gap``."""
    from accelerate.utils import gather_object

    gathered = gather_object([(t, a, b) for t, (a, b) in gap_sums.items()])
    out, total, count = {}, 0.0, 0.0
    for t in tasks:
        a = sum(x for tk, x, _ in gathered if tk == t)
        b = sum(y for tk, _, y in gathered if tk == t)
        if b:
            out[f"distill/velocity_gap/{t}"] = a / b
        total, count = total + a, count + b
    out["distill/velocity_gap"] = total / max(count, 1.0)
    return out


# -- the trainer ---------------------------------------------------------------------------------


def train(cfg: DistillConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) distillation in ``run_dir``; returns the last metrics row and checkpoint path."""
    from qwenrl.rewards import load_reward

    accelerator = make_accelerator(cfg)
    is_main, world, rank = accelerator.is_main_process, accelerator.num_processes, accelerator.process_index
    run = RunFolder(run_dir, "distill")
    if is_main:
        run.check_and_write_config(config_dict(cfg))
    accelerator.wait_for_everyone()
    lo, hi = shard(cfg.batch_size, world, rank, "batch_size")
    tasks = cfg.tasks()

    # -- models ----------------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    load = dict(height=cfg.height, width=cfg.width, dtype=cfg.dtype, device=accelerator.device)
    policy = load_model(cfg.student, **load)
    teachers = {t: load_model(cfg.teachers[t], **load).requires_grad_(False) for t in tasks}
    for t in tasks:
        if t not in policy.tasks or t not in teachers[t].tasks:
            raise ConfigError(f"task {t}: the student does {policy.tasks} and its teacher does {teachers[t].tasks}")
    parent, lineage = model_name(policy), model_lineage(policy)
    teacher_names = {t: model_name(m) for t, m in teachers.items()}
    params = make_trainable(policy, cfg.trainable, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, cfg.gradient_checkpointing)
    named = named_trainable(policy)
    shift = cfg.shift or policy.default_shift
    candidates = query_candidates(sigma_schedule(cfg.num_steps, shift), cfg.query_sigma_range)
    if not candidates or (cfg.timesteps_per_trajectory or 0) > len(candidates):
        sigmas = ", ".join(f"{x:.3f}" for x in sigma_schedule(cfg.num_steps, shift)[:-1].tolist())
        raise ConfigError(f"query_sigma_range {cfg.query_sigma_range} holds {len(candidates)} of the schedule's states (σ = {sigmas}), "
                          f"fewer than timesteps_per_trajectory ({cfg.timesteps_per_trajectory}); widen the range or pick fewer states")
    extra_manifest: dict[str, Any] = {}
    if cfg.absorb_guidance:  # the student is served as it is trained: without guidance
        override_sampling(policy, guidance_scale=1.0)
        extra_manifest["absorbed_guidance"] = cfg.teacher_guidance_scale
    rewards = {t: load_reward(resolve_path(cfg.eval_rewards[t])) for t in tasks}
    model, optimizer, ema, start = start_optimizer(cfg, run, policy, params, named, accelerator, "distill")
    checkpoint_name = cfg.name or "distill"
    eval_seed = 0  # the seeds `qwenrl bench` uses, so in-run evaluations match it on the same prompts

    def evaluate_and_save(step: int) -> dict[str, float]:
        out = {}
        with maybe_ema(ema):
            for t in tasks:
                metrics, images, records = evaluate_policy(policy, t, rewards[t], limit=cfg.eval_limit, num_steps=cfg.eval_num_steps,
                                                           guidance_scale=cfg.eval_guidance_scale, seed=eval_seed)
                save_samples(run.samples, f"step-{step:06d}-{t}", images, records, cfg.eval_grid_size)
                out.update({f"eval/{t}/{k}": v for k, v in metrics.items()})
        return out

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

        # 1-3. A mixed batch; the student's own trajectories; the teachers' velocities at its query states.
        mixed = draw_mixed(cfg.task_weights, cfg.batch_size, cfg.seed, step)
        timesteps = pick_timesteps(cfg.num_steps, cfg.timesteps_per_trajectory, cfg.seed, step, candidates)
        pieces = rollout_with_teachers(
            policy, teachers, mixed, lo, hi, num_steps=cfg.num_steps, shift=shift, noise_level=cfg.noise_level,
            guidance_scale=cfg.guidance_scale, teacher_guidance_scale=cfg.teacher_guidance_scale, timesteps=timesteps,
            seed=seed_from(cfg.seed, step, 3), routing=cfg.routing, mixture=cfg.mixture_weights(),
        )
        t_rollout = time.perf_counter()

        # 4. Velocity matching: one backward per matched state, one optimizer step.
        jobs = [(pos, pc, list(range(i, min(i + cfg.train_batch_size, len(pc.index)))))
                for pos in range(len(timesteps)) for pc in pieces for i in range(0, len(pc.index), cfg.train_batch_size)]
        scale = world / (cfg.batch_size * len(timesteps))
        gap_sums: dict[str, list[float]] = {}
        for n, (pos, pc, rows) in enumerate(jobs):
            with nullcontext() if n == len(jobs) - 1 else accelerator.no_sync(model):
                gap = velocity_gap(model, pc, torch.as_tensor(rows, device=accelerator.device), pos)
                accelerator.backward(gap.sum() * scale)
            acc = gap_sums.setdefault(pc.task, [0.0, 0.0])
            acc[0] += float(gap.detach().sum())
            acc[1] += len(rows)
        grad_norm = float(accelerator.clip_grad_norm_(params, cfg.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(step)
        t_update = time.perf_counter()

        # 5. Metrics, evaluation, checkpoints, state.
        gaps = gather_gaps(gap_sums, tasks)
        row = {
            "step": step + 1,
            **gaps,
            "loss": gaps.pop("distill/velocity_gap"),
            "grad_norm": grad_norm,
            "lr": lr,
            "samples_per_s": cfg.batch_size / (t_update - t_start),
            "step_seconds": t_update - t_start,
            "rollout_seconds": t_rollout - t_start,
            "update_seconds": t_update - t_rollout,
        }
        last = step + 1 == cfg.steps
        if is_main:
            if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last):
                row.update(evaluate_and_save(step + 1))
            run.write_metrics(row)
            if (step + 1) % cfg.log_every == 0 or last:
                gaps_text = " ".join(f"{t} {row[f'distill/velocity_gap/{t}']:.4f}" for t in tasks if f"distill/velocity_gap/{t}" in row)
                evals = " ".join(f"eval/{t} {row[f'eval/{t}/accuracy']:.2f}" for t in tasks if f"eval/{t}/accuracy" in row)
                log("distill", f"step {step + 1}/{cfg.steps} velocity gap {gaps_text} {evals} {row['samples_per_s']:.1f} samples/s "
                    + eta(time.perf_counter() - t_begin, step + 1 - start, cfg.steps - step - 1))
            name = f"{checkpoint_name}@step{step + 1}"
            run.save_step(step + 1, cfg, policy=policy, ema=ema, optimizer=optimizer, params=named, num_processes=world,
                          name=name, parent=parent, lineage=lineage + [name], teachers=teacher_names, task="+".join(tasks), **extra_manifest)
        accelerator.wait_for_everyone()
    checkpoint = run.latest_checkpoint()
    return {"run": str(run.path), "step": max(start, cfg.steps), "metrics": row, "checkpoint": str(checkpoint) if checkpoint else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML config (e.g. training/configs/shapes_distill.yaml)")
    ap.add_argument("--run", required=True, help="run folder (created; resumed when it holds state/)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    args = ap.parse_args(argv)
    try:
        cfg = DistillConfig.from_yaml(args.config, args.set)
    except ConfigError as exc:
        ap.error(str(exc))
    train(cfg, args.run)


if __name__ == "__main__":
    main()
