"""What the GRPO and distillation trainers share: configs, models, run folders, state, EMA.

The trainers themselves (``training/grpo.py``, ``training/distill.py``) read top to bottom;
the pieces here are the ones both need and that would otherwise be copied:

* ``load_config``: a config dataclass from YAML plus ``--set key=value`` overrides, with
  unknown keys rejected; ``field_docs`` reads each field's docstring.
* ``resolve_path``: relative paths resolve against the working directory, then the repository.
* ``load_model``, ``make_trainable``, ``frozen_copy``: the policy, its trained part (full or
  LoRA) and a frozen reference that shares the frozen encoders instead of copying them.
* ``VelocityModel``: the policy's velocity as a module ``forward``, the one call that needs
  gradients, so that accelerate's DDP wrapper sees it.
* ``EMA``, ``save_train_state`` / ``load_train_state`` (safetensors + JSON, never pickle),
  ``export_checkpoint`` (atomic, with lineage), ``RunFolder`` (config.yaml, metrics.jsonl).
* ``draw_items``: the seeded prompts (or edit tasks) of one step, from the grammar's train split.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import json
import math
import sys
import textwrap
import time
import types
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import yaml
from torch import nn

from qwenrl.checkpoints import MANIFEST, CheckpointError, is_complete, read_manifest, read_tensors, write_checkpoint
from qwenrl.models.base import Conditioning, Policy
from qwenrl.sampling import guided_velocity

REPO_ROOT = Path(__file__).resolve().parents[1]
TASKS = ("t2i", "edit")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ConfigError(ValueError):
    """A trainer configuration that cannot run; the message names the fix."""


# -- configs ---------------------------------------------------------------------------------


def resolve_path(path: str | Path) -> Path:
    """``path`` as given if absolute or present under the working directory, else under the
    repository root (so ``data/models/shapes-base`` works from anywhere)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    in_repo = REPO_ROOT / p
    return in_repo if in_repo.exists() else p


def check_model_path(path: str | Path, what: str = "model") -> None:
    """Raise ConfigError unless ``path`` is a QwenRL checkpoint or a diffusers pipeline folder."""
    p = resolve_path(path)
    if not p.is_dir() or not ((p / MANIFEST).is_file() or (p / "model_index.json").is_file()):
        raise ConfigError(
            f"{what} {str(path)!r} not found: give a checkpoint folder (with {MANIFEST}) or a diffusers "
            "pipeline folder (with model_index.json). The Shapes base is written by `python -m training.pretrain`; "
            "real models must be downloaded first (e.g. `huggingface-cli download ... --local-dir /models/...`)."
        )


def reward_task(path: str | Path) -> str | None:
    """The ``task:`` of a reward YAML (read without building its judges); ConfigError if missing."""
    data = read_yaml(path, "reward config", "; see training/configs/rewards/ for examples")
    return data.get("task") if isinstance(data, dict) else None


def read_yaml(path: str | Path, what: str = "config file", hint: str = "") -> Any:
    """The YAML document at ``path`` (resolved from the repository too); ConfigError when it is
    missing or not valid YAML."""
    p = resolve_path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {str(path)!r} not found{hint}")
    try:
        return yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {p}: invalid YAML ({exc})") from exc


def field_docs(cls: type) -> dict[str, str]:
    """Each dataclass field's docstring (the string literal right after the field), base classes included."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant) and isinstance(nxt.value.value, str):
                    docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@dataclasses.dataclass
class ModelSettings:
    """How a trainer holds its model: which weights train, and how diffusers pipelines load."""

    trainable: str = "full"
    """``full`` (the whole denoiser; the KL reference is a frozen copy) or ``lora`` (peft adapters; the reference is the model with adapters off)."""
    lora_rank: int = 16
    """LoRA rank (``trainable: lora``)."""
    lora_alpha: float | None = None
    """LoRA alpha; default the rank."""
    lora_targets: list[str] | None = None
    """Module names LoRA adapts; default the attention projections of the joint blocks."""
    height: int | None = None
    """Image height for diffusers pipelines (default the pipeline's); ignored by Shapes checkpoints."""
    width: int | None = None
    """Image width for diffusers pipelines (default the pipeline's)."""
    dtype: str = "float32"
    """Weights dtype of a diffusers pipeline: float32, bfloat16 or float16 (LoRA weights stay fp32)."""
    mixed_precision: str = "no"
    """accelerate mixed precision for the trained forward passes: no, fp16 or bf16."""
    gradient_checkpointing: bool = False
    """Recompute the denoiser's activations in the backward pass (large models)."""


@dataclasses.dataclass
class RunSettings:
    """Bookkeeping fields every trainer config shares: seed, evaluation, checkpoints, logging."""

    seed: int = 0
    """Seeds prompts, rollout noise, shuffles, timestep picks and LoRA initialisation."""
    eval_every: int = 50
    """Evaluate on held-out test prompts every N steps (0: never); also at the last step."""
    eval_at_start: bool = True
    """Also evaluate before the first step (a fresh run only)."""
    eval_limit: int = 64
    """Held-out prompts per task and evaluation."""
    eval_num_steps: int | None = None
    """Sampling steps for evaluation; default the checkpoint's."""
    eval_guidance_scale: float | None = None
    """Guidance scale for evaluation; default the checkpoint's."""
    eval_grid_size: int = 32
    """Images per task in each evaluation's sample grid (RUN/samples/step-N.png, rationales in .json)."""
    save_every: int = 100
    """Write a loadable checkpoint every N steps (0: only at the end)."""
    state_every: int = 10
    """Write the resumable state (RUN/state) every N steps (0: only at the end)."""
    log_every: int = 1
    """Print a progress line every N steps."""
    threads: int = 0
    """torch CPU threads (0: torch's default)."""
    cpu: bool | None = None
    """Force the CPU (None: the CPU when no GPU is visible)."""


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    target = raw
    for part in parts[:-1]:
        nxt = target.get(part)
        if nxt is None:
            nxt = target[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a mapping")
        target = nxt
    target[parts[-1]] = value


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` converted to the field type ``hint`` where YAML read it loosely (PyYAML reads
    ``1e-4`` as a string and ``1`` as an int); a value of the wrong kind is a ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key) if len(inner) == 1 else value
    if hint is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if hint is int and not isinstance(value, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, args[0], key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    return value


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), **values: Any):
    """``cls`` from a YAML file, then ``overrides`` (``key=value``, value parsed as YAML; dotted
    keys reach into mapping fields, e.g. ``distill_teachers.t2i=data/models/x``), then ``values``."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{resolve_path(path)}: expected a mapping of config fields")
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        _set_dotted(raw, key.strip(), yaml.safe_load(text) if text.strip() else None)
    raw.update(values)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s) {unknown}; known keys: {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    raw = {k: _coerce(v, hints[k], k) for k, v in raw.items()}
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


def check_shared_fields(cfg: Any) -> None:
    """Checks of the fields both trainer configs have (optimizer, trained part, precision, cadence)."""
    if cfg.steps < 0:
        raise ConfigError("steps must be >= 0")
    if cfg.lr < 0:
        raise ConfigError(f"lr is {cfg.lr}; the learning rate must be >= 0 (3e-4 full fine-tuning of the Shapes model, 1e-4 LoRA on real models)")
    if cfg.warmup_steps < 0 or cfg.weight_decay < 0 or cfg.adam_eps <= 0 or cfg.max_grad_norm <= 0:
        raise ConfigError("warmup_steps and weight_decay must be >= 0; adam_eps and max_grad_norm > 0")
    if len(cfg.adam_betas) != 2 or not all(0 <= b < 1 for b in cfg.adam_betas):
        raise ConfigError("adam_betas must be two numbers in [0, 1), e.g. [0.9, 0.999]")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"unknown lr_schedule {cfg.lr_schedule!r}; use one of {LR_SCHEDULES}")
    if not 0.0 <= cfg.lr_min_ratio <= 1.0:
        raise ConfigError(f"lr_min_ratio is {cfg.lr_min_ratio}; it is a share of lr in [0, 1] (0.1 is typical)")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError("ema_decay must lie in [0, 1) (0 disables the EMA)")
    if cfg.trainable not in ("full", "lora"):
        raise ConfigError(f"trainable must be 'full' or 'lora', got {cfg.trainable!r}")
    if cfg.lora_rank < 1:
        raise ConfigError("lora_rank must be at least 1")
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {tuple(DTYPES)}, got {cfg.dtype!r}")
    if cfg.mixed_precision not in ("no", "fp16", "bf16"):
        raise ConfigError("mixed_precision must be no, fp16 or bf16")
    if cfg.shift is not None and cfg.shift <= 0:
        raise ConfigError("shift must be positive (or null for the model's default)")
    if cfg.num_steps < 1 or cfg.train_batch_size < 1:
        raise ConfigError("num_steps (sampling steps) and train_batch_size must be at least 1")
    if min(cfg.eval_every, cfg.save_every, cfg.state_every) < 0 or cfg.eval_limit < 1 or cfg.log_every < 1:
        raise ConfigError("eval_every, save_every and state_every must be >= 0; eval_limit and log_every >= 1")


def config_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_defaults(cls: type) -> dict[str, Any]:
    """Each field's default value of a config dataclass, as ``config_dict`` writes values."""
    values = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
              for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    return json.loads(json.dumps(values))


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


def make_accelerator(cfg: Any):
    """The accelerate ``Accelerator`` for a trainer config (the CPU when asked or when no GPU is visible)."""
    from accelerate import Accelerator

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return Accelerator(cpu=(not torch.cuda.is_available()) if cfg.cpu is None else cfg.cpu, mixed_precision=cfg.mixed_precision)


def start_optimizer(cfg: Any, run: "RunFolder", policy: Policy, params: list[nn.Parameter], named: dict[str, nn.Parameter],
                    accelerator: Any, trainer: str, old: EMA | None = None) -> tuple[nn.Module, Any, "EMA | None", int]:
    """AdamW and the optional EMA over ``params``, restored from the run's state when it has one
    (with the ``old`` policy's shadow, if given), then wrapped by accelerate. Returns (model,
    optimizer, ema, first step)."""
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    ema = EMA(params, cfg.ema_decay) if cfg.ema_decay > 0 else None
    start = 0
    if run.resumable():
        start = int(load_train_state(run.state, params=named, optimizer=optimizer, ema=ema, old=old)["step"])
        if accelerator.is_main_process:
            log(trainer, f"resuming {run.path} at step {start}")
    model, optimizer = accelerator.prepare(VelocityModel(policy), optimizer)
    if accelerator.is_main_process:
        run.truncate_metrics(start)
    return model, optimizer, ema, start


def eta(elapsed: float, done: int, left: int) -> str:
    """``eta 4m05s``: the time ``left`` more steps take at the pace of the ``done`` steps so far."""
    if done <= 0 or left <= 0:
        return "eta 0s" if left <= 0 else "eta –"
    secs = int(round(elapsed / done * left))
    return f"eta {secs // 3600}h{secs % 3600 // 60:02d}m" if secs >= 3600 else f"eta {secs // 60}m{secs % 60:02d}s" if secs >= 60 else f"eta {secs}s"


def log(trainer: str, msg: str) -> None:
    print(f"[{trainer} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


LR_SCHEDULES = ("constant", "cosine")


def lr_at(step: int, lr: float, warmup_steps: int, total_steps: int = 0, schedule: str = "constant", min_ratio: float = 0.1) -> float:
    """The learning rate of step ``step`` (0-based): a linear warm-up to ``lr`` over
    ``warmup_steps``, then constant, or (``cosine``) a half cosine from ``lr`` down to
    ``lr · min_ratio`` at the last of ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant" or total_steps <= warmup_steps + 1:
        return lr
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; use one of {LR_SCHEDULES}")
    t = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps - 1))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


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


def check_family_weights(task: str, weights: dict[str, float], field_name: str = "family_weights") -> None:
    """Raise ConfigError unless ``weights`` maps families of ``task`` to non-negative weights, not all 0."""
    from qwenrl.world.grammar import EDIT_FAMILIES, T2I_FAMILIES

    known = T2I_FAMILIES if task == "t2i" else EDIT_FAMILIES
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise ConfigError(f"{field_name}: unknown {task} families {unknown}; use some of {list(known)}")
    if any(not isinstance(w, (int, float)) or w < 0 for w in weights.values()):
        raise ConfigError(f"{field_name}: weights must be numbers >= 0, got {weights}")
    if weights and sum(weights.values()) <= 0:
        raise ConfigError(f"{field_name}: at least one family needs a positive weight (or leave it empty for uniform)")


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
    stats = reward_stats(judgements)
    metrics["reward/mean"] = stats.pop("rewards/total/mean")
    metrics.update({k: v for k, v in stats.items() if k != "rewards/total/frac_none"})
    records = [
        {"text": it.text, "family": it.family, "passed": ok, "reward": j.score, "rationale": j.rationale}
        for it, ok, j in zip(items, passed, judgements)
    ]
    if monitor is not None:
        watched = monitor(samples)
        mstats = reward_stats(watched)
        metrics["monitor/reward/mean"] = mstats.pop("rewards/total/mean")
        metrics.update({f"monitor/{k}": v for k, v in mstats.items() if k != "rewards/total/frac_none"})
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
