"""What the GRPO and distillation trainers share: models, run folders, state, EMA.

The trainers themselves (``training/grpo.py``, ``training/distill.py``) read top to bottom;
the pieces here are the ones both need and that would otherwise be copied. The configs and
their helpers (``load_config``, ``resolve_path``, ``ConfigError``, ...) live in the torch-free
``training/configs.py`` and are re-exported here:

* ``load_model``, ``make_trainable``, ``frozen_copy``: the policy, its trained part (full or
  LoRA) and a frozen reference that shares the frozen encoders instead of copying them.
* ``VelocityModel``: the policy's velocity as a module ``forward``, the one call that needs
  gradients, so that accelerate's DDP wrapper sees it.
* ``EMA``, ``save_train_state`` / ``load_train_state`` (safetensors + JSON, never pickle),
  ``export_checkpoint`` (atomic, with lineage), ``RunFolder`` (config.yaml, metrics.jsonl).
* ``draw_items``: the seeded prompts (or edit tasks) of one step, from the grammar's train split.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import yaml
from torch import nn

from qwenrl.checkpoints import MANIFEST, CheckpointError, is_complete, read_manifest, read_tensors, write_checkpoint
from qwenrl.models.base import Conditioning, Policy
from qwenrl.sampling import guided_velocity
from qwenrl.tasks import TASKS
from training.configs import (  # noqa: F401 - re-exported: the configs moved to training/configs.py
    DTYPE_NAMES,
    LR_SCHEDULES,
    REPO_ROOT,
    ConfigError,
    ModelSettings,
    OptimizerSettings,
    RunSettings,
    check_family_weights,
    check_model_path,
    config_defaults,
    config_dict,
    field_docs,
    load_config,
    lr_at,
    read_yaml,
    resolve_path,
    reward_task,
)

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


# -- models ----------------------------------------------------------------------------------


def load_model(
    path: str | Path,
    *,
    height: int | None = None,
    width: int | None = None,
    dtype: str = "float32",
    device: torch.device | str = "cpu",
) -> Policy:
    """A policy from a QwenRL checkpoint or a diffusers pipeline folder, on ``device``."""
    from qwenrl.models import load_policy

    p = resolve_path(path)
    if (p / "model_index.json").is_file() and not (p / MANIFEST).is_file():
        from qwenrl.models.diffusers_policy import DiffusersPolicy

        policy = DiffusersPolicy.from_pretrained(p, height=height, width=width, dtype=DTYPES[dtype])
    elif read_manifest(p).get("policy") == "diffusers":
        policy = load_policy(p, dtype=DTYPES[dtype])
    else:
        policy = load_policy(p)
    if not getattr(policy, "manifest", None):
        policy.manifest = {}
    policy.source_path = str(p)  # type: ignore[attr-defined]
    return policy.to(device).eval()


def model_name(policy: Policy) -> str:
    """The name of a loaded model: its manifest's ``name``, else its folder's name."""
    return str((getattr(policy, "manifest", None) or {}).get("name") or Path(getattr(policy, "source_path", "model")).name)


def model_lineage(policy: Policy) -> list[str]:
    manifest = getattr(policy, "manifest", None) or {}
    return list(manifest.get("lineage") or [model_name(policy)])


def make_trainable(policy: Policy, trainable: str, lora_rank: int, lora_alpha: float | None, lora_targets: list[str] | None,
                   gradient_checkpointing: bool = False) -> list[nn.Parameter]:
    """Freeze everything but the denoiser (``full``) or its LoRA adapters (``lora``); the
    trained parameters, in a fixed order. Text encoders and the VAE are never trained here."""
    if trainable == "lora":
        policy.enable_lora(lora_rank, lora_alpha, lora_targets)  # freezes the rest
    else:
        policy.requires_grad_(False)
        policy.transformer.requires_grad_(True)
    if gradient_checkpointing:
        policy.transformer.enable_gradient_checkpointing()
    params = [p for p in policy.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: the policy has no trainable parameters")
    return params


def named_trainable(policy: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in policy.named_parameters() if p.requires_grad}


def lora_enabled(policy: Policy) -> bool:
    return bool(getattr(policy, "lora", None))


def frozen_copy(policy: Policy) -> Policy:
    """A frozen copy of ``policy`` (the KL reference for full fine-tuning). Modules with no
    trainable parameters (text encoders, VAE) are shared with ``policy``, not copied."""
    memo: dict[int, Any] = {}
    for m in policy.modules():
        if m is not policy and not any(p.requires_grad for p in m.parameters()):
            memo[id(m)] = m
    ref = copy.deepcopy(policy, memo)
    for p in ref.parameters():
        if p.requires_grad:
            p.requires_grad_(False)
    return ref.eval()


class VelocityModel(nn.Module):
    """The policy's (guided) velocity as ``forward``, so that a DDP/FSDP wrapper from
    ``accelerator.prepare`` sees every call that needs gradients. Rollouts and reference
    passes run without gradients and may call the policy directly."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, latents: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, guidance_scale: float = 1.0,
                null_cond: Conditioning | None = None) -> torch.Tensor:
        return guided_velocity(self.policy, latents, sigma, cond, guidance_scale, null_cond)


class EMA:
    """Exponential moving average of the trained parameters (fp32 shadows), with warm-up.
    Also the forward-process objective's old policy: a shadow that lags the trained weights."""

    def __init__(self, params: list[nn.Parameter], decay: float) -> None:
        self.params = list(params)
        self.decay = decay
        self.shadow = [p.detach().float().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step: int, decay: float | None = None) -> None:
        """shadow ← d·shadow + (1 − d)·θ, with d = ``decay`` if given, else the warmed-up EMA decay."""
        d = min(self.decay, (1 + step) / (10 + step)) if decay is None else decay
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach().float(), 1 - d)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the parameters hold the EMA weights."""
        backup = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for s, p in zip(self.shadow, self.params):
                p.copy_(s.to(p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for b, p in zip(backup, self.params):
                    p.copy_(b)


@contextmanager
def maybe_ema(ema: EMA | None) -> Iterator[None]:
    if ema is None:
        yield
    else:
        with ema.applied():
            yield


def export_checkpoint(policy: Policy, path: Path, ema: EMA | None, **manifest: Any) -> Path:
    """Write a loadable checkpoint (EMA weights when there is an EMA) atomically.

    ``ShapesPolicy.save`` merges LoRA into the weights in place, which would end training;
    a LoRA Shapes policy is therefore saved from a copy.
    """
    from qwenrl.evaluation import policy_sampling_defaults

    manifest.setdefault("sampling", policy_sampling_defaults(policy))  # how the model is meant to be sampled, said once more
    with maybe_ema(ema):
        target = copy.deepcopy(policy) if lora_enabled(policy) and hasattr(policy, "merge_lora") else policy
        return target.save(path, **manifest)


# -- resumable state -------------------------------------------------------------------------


def save_train_state(path: Path, *, step: int, params: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                     ema: EMA | None, extra: dict[str, Any], old: EMA | None = None) -> Path:
    """Everything needed to continue exactly: trained weights, optimizer, EMA, the old policy's
    shadow (forward-process objective), step (safetensors + JSON)."""
    sd = optimizer.state_dict()
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_values: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                opt_tensors[f"{idx}.{key}"] = value
            else:
                opt_values[f"{idx}.{key}"] = value
    tensors = {"model": dict(params), "optimizer": opt_tensors}
    if ema is not None:
        tensors["ema"] = {name: s for name, s in zip(params, ema.shadow)}
    if old is not None:
        tensors["old"] = {name: s for name, s in zip(params, old.shadow)}
    manifest = {
        "kind": "train-state",
        "step": step,
        "optimizer_param_groups": json.loads(json.dumps(sd["param_groups"])),
        "optimizer_values": opt_values,
        **extra,
    }
    return write_checkpoint(path, {k: v for k, v in tensors.items() if v}, manifest)


def load_train_state(path: Path, *, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer, ema: EMA | None,
                     old: EMA | None = None) -> dict[str, Any]:
    """Restore what ``save_train_state`` wrote; returns its manifest (``step``, extras)."""
    manifest = read_manifest(path)
    if manifest.get("kind") != "train-state":
        raise CheckpointError(f"{path}: not a trainer state folder")
    model = read_tensors(path, "model")
    if set(model) != set(params):
        raise CheckpointError(f"{path}: saved weights do not match the trained parameters (different model or LoRA settings?)")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(model[name])
    if manifest["optimizer_values"] or (path / "optimizer.safetensors").exists():
        flat = read_tensors(path, "optimizer") if (path / "optimizer.safetensors").exists() else {}
        state: dict[int, dict[str, Any]] = {}
        for key, value in list(flat.items()) + list(manifest["optimizer_values"].items()):
            idx, _, name = key.partition(".")
            state.setdefault(int(idx), {})[name] = value
        groups = manifest["optimizer_param_groups"]
        for g in groups:
            if isinstance(g.get("betas"), list):
                g["betas"] = tuple(g["betas"])
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    if ema is not None:
        saved = read_tensors(path, "ema") if (path / "ema.safetensors").exists() else None
        if saved is None:
            raise CheckpointError(f"{path}: no EMA weights saved, but ema_decay > 0 (the run was started without EMA)")
        ema.shadow = [saved[name].clone() for name in params]
    if old is not None:
        if not (path / "old.safetensors").exists():
            raise CheckpointError(f"{path}: no old-policy weights saved (the run was started with another objective)")
        saved = read_tensors(path, "old")
        old.shadow = [saved[name].clone() for name in params]
    return manifest


# -- run folders -----------------------------------------------------------------------------

#: config keys a resumed run may change (how long it runs, how often it logs and saves)
RESUMABLE_KEYS = {"steps", "save_every", "state_every", "eval_every", "eval_limit", "eval_grid_size", "log_every", "threads", "cpu"}


class RunFolder:
    """A run's folder: ``config.yaml``, ``metrics.jsonl``, ``samples/``, ``checkpoints/``, ``state/``."""

    def __init__(self, path: str | Path, trainer: str) -> None:
        self.path = Path(path)
        self.trainer = trainer
        self.state = self.path / "state"
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self.metrics_path = self.path / "metrics.jsonl"

    def resumable(self) -> bool:
        return is_complete(self.state)

    def check_and_write_config(self, cfg: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
        """Write ``config.yaml``; when resuming, refuse a config that changes anything but
        ``RESUMABLE_KEYS`` (a different run needs a different folder). A field the saved config
        does not have (added to the trainer since) counts as unchanged while it keeps its
        default, from ``defaults``."""
        self.path.mkdir(parents=True, exist_ok=True)
        cfile = self.path / "config.yaml"
        if self.resumable() and cfile.exists():
            old = yaml.safe_load(cfile.read_text()) or {}
            old = {**{k: v for k, v in (defaults or {}).items() if k not in old}, **old}
            changed = sorted(k for k in set(old) | set(cfg) if k not in RESUMABLE_KEYS and old.get(k) != cfg.get(k))
            if changed:
                raise ConfigError(
                    f"{self.path} holds a run with a different config (changed: {', '.join(changed)}); "
                    "resume with the same config or use a new --run folder"
                )
        tmp = cfile.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
        tmp.replace(cfile)

    def truncate_metrics(self, step: int) -> None:
        """Drop metric lines past ``step`` (written after the state a resume starts from);
        a fresh start (``step`` 0) drops them all."""
        if not self.metrics_path.exists():
            return
        lines = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        keep = [line for line in lines if step > 0 and json.loads(line).get("step", 0) <= step]
        self.metrics_path.write_text("".join(line + "\n" for line in keep))

    def write_metrics(self, row: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(_jsonable(row)) + "\n")

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:06d}"

    def latest_checkpoint(self) -> Path | None:
        done = sorted(p for p in self.checkpoints.glob("step-*") if is_complete(p)) if self.checkpoints.exists() else []
        return done[-1] if done else None

    def save_step(self, step: int, cfg: Any, *, policy: Policy, ema: EMA | None, optimizer: torch.optim.Optimizer,
                  params: dict[str, nn.Parameter], num_processes: int, old: EMA | None = None, **manifest: Any) -> None:
        """After ``step`` steps: a loadable checkpoint every ``cfg.save_every`` steps and the
        resumable state every ``cfg.state_every`` steps, both at the last step (main process)."""
        last = step == cfg.steps
        if (cfg.save_every and step % cfg.save_every == 0) or last:
            export_checkpoint(policy, self.checkpoint_path(step), ema, step=step, trainer=self.trainer, training=config_dict(cfg), **manifest)
        if (cfg.state_every and step % cfg.state_every == 0) or last:
            save_train_state(self.state, step=step, params={n: p.detach() for n, p in params.items()}, optimizer=optimizer, ema=ema,
                             old=old, extra={"trainer": self.trainer, "num_processes": num_processes})


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


# -- a run: start-up, the step loop's bookkeeping, the end of each step -----------------------------


def make_accelerator(cfg: Any):
    """The accelerate ``Accelerator`` for a trainer config (the CPU when asked or when no GPU is visible)."""
    from accelerate import Accelerator

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return Accelerator(cpu=(not torch.cuda.is_available()) if cfg.cpu is None else cfg.cpu, mixed_precision=cfg.mixed_precision)


@dataclass
class TrainedPolicy:
    """The policy a run trains: its trained parameters (in a fixed order, and by name), where it
    comes from (the checkpoints' ``parent`` and ``lineage``) and its sigma-schedule shift."""

    policy: Policy
    params: list[nn.Parameter]
    named: dict[str, nn.Parameter]
    parent: str
    lineage: list[str]
    shift: float


def load_frozen(cfg: Any, path: str | Path, device: Any) -> Policy:
    """A model the run reads and never trains (a teacher), loaded as the config says."""
    return load_model(path, height=cfg.height, width=cfg.width, dtype=cfg.dtype, device=device).requires_grad_(False)


def seeded_load(cfg: Any, path: str | Path, device: Any) -> Policy:
    """The policy to train, loaded after seeding torch with ``cfg.seed``, so that the LoRA
    initialisation that follows is the same on every process and every run."""
    torch.manual_seed(cfg.seed)
    return load_model(path, height=cfg.height, width=cfg.width, dtype=cfg.dtype, device=device)


def trained_part(cfg: Any, policy: Policy) -> TrainedPolicy:
    """Freeze all of ``policy`` but the part ``cfg.trainable`` names (``make_trainable``)."""
    parent, lineage = model_name(policy), model_lineage(policy)
    params = make_trainable(policy, cfg.trainable, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, cfg.gradient_checkpointing)
    return TrainedPolicy(policy, params, named_trainable(policy), parent, lineage, cfg.shift or policy.default_shift)


@dataclass
class Saving:
    """What the end of a step saves: a loadable checkpoint of ``trained`` (its EMA weights when
    there is an EMA), named ``{name}@step{N}``, with ``manifest``, and the resumable state."""

    trained: TrainedPolicy
    optimizer: Any
    ema: EMA | None
    name: str
    manifest: dict[str, Any]
    old: EMA | None = None


class TrainerRun:
    """One run of a trainer on this process: the accelerator, the run folder, the step loop's
    clock, and what happens at the start (config written or checked, state restored) and at the
    end of every step (evaluate, log, save). Both trainers' loops are built on it::

        run = TrainerRun.start(cfg, run_dir, "grpo")
        model, optimizer, ema = run.start_optimizer(trained)
        for step in run.steps():
            lr = run.set_lr(optimizer, step)
            ...
            run.end_step(step, row, evaluate, progress, saving)
        return run.result(row)
    """

    def __init__(self, cfg: Any, folder: RunFolder, accelerator: Any) -> None:
        self.cfg = cfg
        self.folder = folder
        self.trainer = folder.trainer
        self.accelerator = accelerator
        self.is_main = bool(accelerator.is_main_process)
        self.world = int(accelerator.num_processes)
        self.rank = int(accelerator.process_index)
        self.device = accelerator.device
        self.start = 0  #: the first step this call runs (after a resume, the step of the saved state)
        self._began = time.perf_counter()

    @classmethod
    def start(cls, cfg: Any, run_dir: str | Path, trainer: str) -> "TrainerRun":
        """Make the accelerator and write ``config.yaml`` (refusing a changed config on resume)."""
        accelerator = make_accelerator(cfg)
        folder = RunFolder(run_dir, trainer)
        if accelerator.is_main_process:
            folder.check_and_write_config(config_dict(cfg), config_defaults(type(cfg)))
        accelerator.wait_for_everyone()
        return cls(cfg, folder, accelerator)

    def start_optimizer(self, trained: TrainedPolicy, old: EMA | None = None) -> tuple[nn.Module, Any, EMA | None]:
        """AdamW and the optional EMA over the trained parameters, restored from the run's state
        when it has one (with the ``old`` policy's shadow, if given), then wrapped by accelerate.
        Returns (model, optimizer, ema); ``self.start`` is the first step to run."""
        cfg = self.cfg
        optimizer = torch.optim.AdamW(trained.params, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                                      weight_decay=cfg.weight_decay)
        ema = EMA(trained.params, cfg.ema_decay) if cfg.ema_decay > 0 else None
        if self.folder.resumable():
            self.start = int(load_train_state(self.folder.state, params=trained.named, optimizer=optimizer, ema=ema, old=old)["step"])
            if self.is_main:
                log(self.trainer, f"resuming {self.folder.path} at step {self.start}")
        model, optimizer = self.accelerator.prepare(VelocityModel(trained.policy), optimizer)
        if self.is_main:
            self.folder.truncate_metrics(self.start)
        return model, optimizer, ema

    def evaluate_first(self, evaluate: Callable[[int], dict[str, float]]) -> None:
        """A fresh run's evaluation before its first step (``eval_at_start``), on the main process."""
        cfg = self.cfg
        if self.start == 0 and cfg.eval_every and cfg.eval_at_start and self.is_main and cfg.steps > 0:
            self.folder.write_metrics({"step": 0, **evaluate(0)})
        self.accelerator.wait_for_everyone()

    def steps(self) -> range:
        """The steps left to run; the clock for the progress lines' time left starts here."""
        self._began = time.perf_counter()
        return range(self.start, self.cfg.steps)

    def set_lr(self, optimizer: Any, step: int) -> float:
        """Set and return step ``step``'s learning rate (``lr_at``, the config's schedule)."""
        lr = self.cfg.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def end_step(self, step: int, row: dict[str, Any], evaluate: Callable[[int], dict[str, float]],
                 progress: Callable[[dict[str, Any]], str], saving: Saving) -> None:
        """After step ``step`` (0-based), on the main process: the held-out evaluation when one is
        due (into ``row``), the metrics row, a progress line when one is due, the checkpoint and
        the state (``RunFolder.save_step``); then every process waits for the main one."""
        cfg, done = self.cfg, step + 1
        last = done == cfg.steps
        if self.is_main:
            if cfg.eval_every and (done % cfg.eval_every == 0 or last):
                row.update(evaluate(done))
            self.folder.write_metrics(row)
            if done % cfg.log_every == 0 or last:
                log(self.trainer, f"step {done}/{cfg.steps} {progress(row)} "
                    + eta(time.perf_counter() - self._began, done - self.start, cfg.steps - done))
            name = f"{saving.name}@step{done}"
            t = saving.trained
            self.folder.save_step(done, cfg, policy=t.policy, ema=saving.ema, optimizer=saving.optimizer, params=t.named,
                                  num_processes=self.world, old=saving.old, name=name, parent=t.parent,
                                  lineage=t.lineage + [name], **saving.manifest)
        self.accelerator.wait_for_everyone()

    def result(self, row: dict[str, Any]) -> dict[str, Any]:
        """What ``train`` returns: the run folder, the last step, its metrics and checkpoint."""
        checkpoint = self.folder.latest_checkpoint()
        return {"run": str(self.folder.path), "step": max(self.start, self.cfg.steps), "metrics": row,
                "checkpoint": str(checkpoint) if checkpoint else None}


class StepClock:
    """The parts of one step's wall time: ``lap(name)`` ends a part; ``seconds`` holds them by name."""

    def __init__(self) -> None:
        self.began = self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now

    @property
    def total(self) -> float:
        return self._last - self.began


def evaluate_and_save(run: TrainerRun, policy: Policy, ema: EMA | None, rewards: dict[str, Any], step: int, *,
                      by_task: bool, monitor: Any = None) -> dict[str, float]:
    """Held-out metrics of each task of ``rewards`` (task → its reward) at step ``step``, with the
    EMA weights when there is an EMA, under ``eval/…`` (``by_task``: ``eval/{task}/…``), and each
    task's sample grid and rationales in ``RUN/samples/step-N[-task]``. Main process only."""
    cfg, out = run.cfg, {}
    eval_seed = 0  # the seeds `qwenrl bench` uses, so in-run evaluations match it on the same prompts
    with maybe_ema(ema):
        for task, reward in rewards.items():
            metrics, images, records = evaluate_policy(policy, task, reward, limit=cfg.eval_limit, num_steps=cfg.eval_num_steps,
                                                       guidance_scale=cfg.eval_guidance_scale, seed=eval_seed, monitor=monitor)
            stem = f"step-{step:06d}-{task}" if by_task else f"step-{step:06d}"
            save_samples(run.folder.samples, stem, images, records, cfg.eval_grid_size)
            prefix = f"eval/{task}/" if by_task else "eval/"
            out.update({prefix + k: v for k, v in metrics.items()})
    return out


def trainer_main(config_cls: type, train: Callable[[Any, str], dict[str, Any]], doc: str | None, example: str,
                 argv: list[str] | None = None) -> None:
    """The command line of ``python -m training.<trainer>``: ``--config``, ``--run`` and
    repeatable ``--set KEY=VALUE``; a config the trainer refuses ends with its message."""
    ap = trainer_parser(doc, example, "resumed when it holds state/")
    args = ap.parse_args(argv)
    try:
        cfg = config_cls.from_yaml(args.config, args.set)
    except ConfigError as exc:
        ap.error(str(exc))
    train(cfg, args.run)


def trainer_parser(doc: str | None, example: str, resumes: str) -> argparse.ArgumentParser:
    """The options every trainer's command line has (``--config``, ``--run``, ``--set``); a
    trainer with more adds them to the parser."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help=f"YAML config (e.g. {example})")
    ap.add_argument("--run", required=True, help=f"run folder (created; {resumes})")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    return ap


def eta(elapsed: float, done: int, left: int) -> str:
    """``eta 4m05s``: the time ``left`` more steps take at the pace of the ``done`` steps so far."""
    if done <= 0 or left <= 0:
        return "eta 0s" if left <= 0 else "eta –"
    secs = int(round(elapsed / done * left))
    return f"eta {secs // 3600}h{secs % 3600 // 60:02d}m" if secs >= 3600 else f"eta {secs // 60}m{secs % 60:02d}s" if secs >= 60 else f"eta {secs}s"


def log(trainer: str, msg: str) -> None:
    print(f"[{trainer} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def seed_from(*values: int) -> int:
    """A 63-bit seed from integers (a stable hash: the same on every process and run)."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, dtype=np.uint64)[0]) & ((1 << 63) - 1)


# -- prompts ---------------------------------------------------------------------------------


def draw_items(task: str, n: int, seed: int, step: int, stream: int = 0, family_weights: dict[str, float] | None = None) -> list:
    """``n`` training prompts (``T2IPrompt``) or edit tasks (``EditTask``) from the grammar's
    ``train`` split, a pure function of (task, seed, step, stream): every process draws the
    same global batch, and a resumed run draws what the uninterrupted run would have.

    Families are drawn uniformly, or in proportion to ``family_weights`` (family → weight;
    families left out get weight 0), e.g. to spend rollouts where the base still fails. The
    family is drawn here, not left to the grammar: the grammar redraws the family whenever a
    scene does not fit, so its own mix under-draws the edits that often do not fit (``move`` came
    out at about 5% of edits instead of 14%)."""
    from qwenrl.world.grammar import EDIT_FAMILIES, T2I_FAMILIES, sample_edit, sample_t2i_prompt_in_split

    rng = np.random.default_rng([seed, step, stream, TASKS.index(task)])
    weights = family_weights or dict.fromkeys(T2I_FAMILIES if task == "t2i" else EDIT_FAMILIES, 1.0)
    names = sorted(weights)
    p = np.array([weights[f] for f in names], dtype=np.float64)
    families = [names[i] for i in rng.choice(len(names), size=n, p=p / p.sum())]
    if task == "t2i":
        return [sample_t2i_prompt_in_split(rng, "train", family=f) for f in families]
    return [sample_edit(rng, family=f, split="train") for f in families]


def item_sources(items: list) -> np.ndarray | None:
    """The rendered source images of edit tasks, (n, H, W, 3) uint8; None for prompts."""
    from qwenrl.world.scene import render

    if not items or getattr(items[0], "task", "t2i") != "edit":
        return None
    return np.stack([render(it.source) for it in items])


def encode_items(policy: Policy, items: list, repeat: int = 1, null: bool = False) -> Conditioning:
    """Conditioning for ``items`` (prompts, or instructions with their sources), each row
    repeated ``repeat`` times; ``null`` gives the text-dropped conditioning for guidance."""
    sources = item_sources(items)
    with torch.no_grad():
        cond = policy.null_conditioning(len(items), sources) if null else policy.encode_prompts([it.text for it in items], sources)
    return cond.repeat_interleave(repeat) if repeat > 1 else cond


def shard(n: int, num_processes: int, index: int, what: str) -> tuple[int, int]:
    """The contiguous slice [lo, hi) of ``n`` items this process owns."""
    if n % num_processes:
        raise ConfigError(f"{what} ({n}) must be a multiple of the number of processes ({num_processes})")
    per = n // num_processes
    return index * per, (index + 1) * per


# -- evaluation ------------------------------------------------------------------------------


def evaluate_policy(policy: Policy, task: str, reward: Any, *, limit: int, num_steps: int | None, guidance_scale: float | None,
                    seed: int, split: str = "test", monitor: Any = None) -> tuple[dict[str, float], np.ndarray, list[dict[str, Any]]]:
    """Held-out metrics for one task: strict checker accuracy (Shapes world, via
    ``qwenrl.evaluation``) and the composite reward with each component, on an evenly spaced
    subset of ``limit`` prompts of ``split`` (every family represented); with ``monitor`` (a
    second reward), its mean and components too, under ``monitor/``, and its score and
    rationale in the records. Returns (metrics, images, records with rationales)."""
    from qwenrl.evaluation import evaluate, generate_for, policy_sampling_defaults
    from qwenrl.models.shapes import ShapesPolicy
    from qwenrl.rewards import Sample, reward_stats
    from qwenrl.world.prompt_sets import load_prompt_set

    metrics: dict[str, float] = {}
    items = load_prompt_set(task, split, limit=limit)
    if isinstance(policy, ShapesPolicy):
        res = evaluate(policy, task, split, limit=limit, num_steps=num_steps, guidance_scale=guidance_scale, seed=seed, keep_images=True)
        images, passed = res["images"], [r["passed"] for r in res["records"]]
        metrics["accuracy"] = res["overall"]
        metrics.update({f"families/{f}": acc for f, acc in res["families"].items()})
    else:  # real models draw at their own size: the strict checker does not apply
        d = policy_sampling_defaults(policy)
        images = generate_for(policy, items, seeds=[seed + i for i in range(len(items))], num_steps=num_steps or d["num_steps"],
                              guidance_scale=d["guidance_scale"] if guidance_scale is None else guidance_scale)
        passed = [None] * len(items)
    samples = [Sample.from_spec(img, it) for img, it in zip(images, items)]
    judgements = reward(samples)
    metrics.update({k: v for k, v in reward_stats(judgements).items() if k != "rewards/total/frac_none"})
    records = [
        {"text": it.text, "family": it.family, "passed": ok, "reward": j.score, "rationale": j.rationale}
        for it, ok, j in zip(items, passed, judgements)
    ]
    if monitor is not None:
        watched = monitor(samples)
        metrics.update({f"monitor/{k}": v for k, v in reward_stats(watched).items() if k != "rewards/total/frac_none"})
        for rec, j in zip(records, watched):
            rec.update(monitor_reward=j.score, monitor_rationale=j.rationale)
    return metrics, images, records


def save_samples(folder: Path, stem: str, images: np.ndarray, records: list[dict[str, Any]], grid_size: int) -> None:
    """A PNG grid of the first ``grid_size`` images and a JSON of their rationales."""
    from qwenrl.imageio import grid, save_png

    n = min(grid_size, len(images))
    if n == 0:
        return
    save_png(grid(images[:n], cols=8), folder / f"{stem}.png", scale=4 if images.shape[1] <= 64 else 1)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(records[:n], indent=1))
