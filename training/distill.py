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
5. log ``losses/distill/{task}`` and, every few steps, held-out accuracy per task.

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

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from qwenrl.evaluation import override_sampling
from qwenrl.models.base import Conditioning, Policy
from qwenrl.sampling import guided_velocity, rollout, sigma_schedule
from qwenrl.tasks import TASKS
from training.common import (
    ConfigError,
    Saving,
    StepClock,
    TrainerRun,
    draw_items,
    encode_items,
    evaluate_and_save,
    load_frozen,
    model_name,
    resolve_path,
    seed_from,
    seeded_load,
    shard,
    trained_part,
    trainer_main,
)
from training.configs import DistillConfig  # noqa: F401 - importable from here as before


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
                       guidance_scale: float, null: bool = False) -> torch.Tensor:
    """One teacher's (guided) velocity at the states ``timesteps`` of trajectories ``latents``
    (n, T+1, ...): (n, len(timesteps), ...); with ``null``, its text-dropped velocity."""
    cond = encode_items(teacher, items, null=null)
    dropped = encode_items(teacher, items, null=True) if guidance_scale != 1.0 else None
    return torch.stack([guided_velocity(teacher, latents[:, k], sigmas[k], cond, guidance_scale, dropped) for k in timesteps], dim=1)


def velocity_gap(model: Callable[..., torch.Tensor], piece: DistillPiece, rows: torch.Tensor, pos: int) -> torch.Tensor:
    """‖v_student − v_teacher‖² per sample (mean over latent elements) at matched state ``pos``."""
    k = piece.timesteps[pos]
    x = piece.latents[rows, k]
    v = model(x, piece.sigmas[k], piece.cond.select(rows), 1.0, None)
    return ((v - piece.teacher_velocity[rows, pos]) ** 2).mean(dim=tuple(range(1, x.ndim)))


def gather_gaps(gap_sums: dict[str, list[float]], tasks: list[str]) -> dict[str, float]:
    """``losses/distill/{task}`` over all processes from this process's [sum, count] per task,
    and their pooled mean as ``losses/distill``."""
    from accelerate.utils import gather_object

    gathered = gather_object([(t, a, b) for t, (a, b) in gap_sums.items()])
    out, total, count = {}, 0.0, 0.0
    for t in tasks:
        a = sum(x for tk, x, _ in gathered if tk == t)
        b = sum(y for tk, _, y in gathered if tk == t)
        if b:
            out[f"losses/distill/{t}"] = a / b
        total, count = total + a, count + b
    out["losses/distill"] = total / max(count, 1.0)
    return out


# -- the trainer ---------------------------------------------------------------------------------


def check_query_states(cfg: DistillConfig, shift: float) -> list[int]:
    """The trajectory states that may be matched (``query_sigma_range``); ConfigError when they are
    fewer than ``timesteps_per_trajectory``, with the schedule's noise levels to pick a range from."""
    candidates = query_candidates(sigma_schedule(cfg.num_steps, shift), cfg.query_sigma_range)
    if not candidates or (cfg.timesteps_per_trajectory or 0) > len(candidates):
        sigmas = ", ".join(f"{x:.3f}" for x in sigma_schedule(cfg.num_steps, shift)[:-1].tolist())
        raise ConfigError(f"query_sigma_range {cfg.query_sigma_range} holds {len(candidates)} of the schedule's states (σ = {sigmas}), "
                          f"fewer than timesteps_per_trajectory ({cfg.timesteps_per_trajectory}); widen the range or pick fewer states")
    return candidates


def velocity_matching(run: TrainerRun, model: torch.nn.Module, pieces: list[DistillPiece], n_states: int) -> dict[str, list[float]]:
    """One backward of ‖v_student − v_target‖² per matched state and micro-batch (gradients
    all-reduced on the last); returns this process's [sum of gaps, samples] per task."""
    cfg = run.cfg
    jobs = [(pos, pc, list(range(i, min(i + cfg.train_batch_size, len(pc.index)))))
            for pos in range(n_states) for pc in pieces for i in range(0, len(pc.index), cfg.train_batch_size)]
    scale = run.world / (cfg.batch_size * n_states)
    gap_sums: dict[str, list[float]] = {}
    for n, (pos, pc, rows) in enumerate(jobs):
        with nullcontext() if n == len(jobs) - 1 else run.accelerator.no_sync(model):
            gap = velocity_gap(model, pc, torch.as_tensor(rows, device=run.device), pos)
            run.accelerator.backward(gap.sum() * scale)
        acc = gap_sums.setdefault(pc.task, [0.0, 0.0])
        acc[0] += float(gap.detach().sum())
        acc[1] += len(rows)
    return gap_sums


def train(cfg: DistillConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) distillation in ``run_dir``; returns the last metrics row and checkpoint path."""
    from qwenrl.rewards import load_reward

    run = TrainerRun.start(cfg, run_dir, "distill")
    lo, hi = shard(cfg.batch_size, run.world, run.rank, "batch_size")
    tasks = cfg.tasks()
    policy = seeded_load(cfg, cfg.student, run.device)
    teachers = {t: load_frozen(cfg, cfg.teachers[t], run.device) for t in tasks}
    for t in tasks:
        if t not in policy.tasks or t not in teachers[t].tasks:
            raise ConfigError(f"task {t}: the student does {policy.tasks} and its teacher does {teachers[t].tasks}")
    trained = trained_part(cfg, policy)
    candidates = check_query_states(cfg, trained.shift)
    manifest: dict[str, Any] = {"teachers": {t: model_name(m) for t, m in teachers.items()}, "task": "+".join(tasks)}
    if cfg.absorb_guidance:  # the student is served as it is trained: without guidance
        override_sampling(policy, guidance_scale=1.0)
        manifest["absorbed_guidance"] = cfg.teacher_guidance_scale
    rewards = {t: load_reward(resolve_path(cfg.eval_rewards[t])) for t in tasks}
    model, optimizer, ema = run.start_optimizer(trained)
    saving = Saving(trained, optimizer, ema, cfg.name or "distill", manifest)

    def evaluate(step: int) -> dict[str, float]:
        return evaluate_and_save(run, policy, ema, rewards, step, by_task=True)

    def progress(row: dict[str, Any]) -> str:
        gaps = " ".join(f"{t} {row[f'losses/distill/{t}']:.4f}" for t in tasks if f"losses/distill/{t}" in row)
        evals = " ".join(f"eval/{t} {row[f'eval/{t}/accuracy']:.2f}" for t in tasks if f"eval/{t}/accuracy" in row)
        return f"velocity gap {gaps} {evals} {row['charts/samples_per_s']:.1f} samples/s"

    run.evaluate_first(evaluate)
    row: dict[str, Any] = {}
    for step in run.steps():
        clock = StepClock()
        lr = run.set_lr(optimizer, step)
        # 1-3. A mixed batch; the student's own trajectories; the teachers' velocities at its query states.
        mixed = draw_mixed(cfg.task_weights, cfg.batch_size, cfg.seed, step)
        timesteps = pick_timesteps(cfg.num_steps, cfg.timesteps_per_trajectory, cfg.seed, step, candidates)
        pieces = rollout_with_teachers(
            policy, teachers, mixed, lo, hi, num_steps=cfg.num_steps, shift=trained.shift, noise_level=cfg.noise_level,
            guidance_scale=cfg.guidance_scale, teacher_guidance_scale=cfg.teacher_guidance_scale, timesteps=timesteps,
            seed=seed_from(cfg.seed, step, 3), routing=cfg.routing, mixture=cfg.mixture_weights(),
        )
        clock.lap("rollout")
        # 4. Velocity matching: one backward per matched state, one optimizer step.
        gap_sums = velocity_matching(run, model, pieces, len(timesteps))
        grad_norm = float(run.accelerator.clip_grad_norm_(trained.params, cfg.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(step)
        clock.lap("update")
        # 5. Metrics, evaluation, checkpoints, state.
        gaps = gather_gaps(gap_sums, tasks)
        row = {"step": step + 1, **gaps, "losses/total": gaps["losses/distill"], "charts/grad_norm": grad_norm,
               "charts/lr": lr, "charts/samples_per_s": cfg.batch_size / clock.total, "charts/step_seconds": clock.total,
               **{f"charts/{part}_seconds": seconds for part, seconds in clock.seconds.items()}}
        run.end_step(step, row, evaluate, progress, saving)
    return run.result(row)


def main(argv: list[str] | None = None) -> None:
    trainer_main(DistillConfig, train, __doc__, "training/configs/shapes_distill.yaml", argv)


if __name__ == "__main__":
    main()
