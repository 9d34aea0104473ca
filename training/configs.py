"""The trainers' configs, without torch: each a dataclass that checks itself and names the fix.

As trl keeps ``grpo_config.py`` beside ``grpo_trainer.py``, the configs live apart from the code
that needs torch, so that anything can read and check a config (the studio before it launches a
job, docs, tests) without loading a model library:

* ``GRPOConfig`` (``training/grpo.py``), ``DistillConfig`` (``training/distill.py``) and
  ``PretrainConfig`` (``training/pretrain.py``), with their objectives, modes and defaults;
* ``ModelSettings``, ``RunSettings`` and ``OptimizerSettings``: the fields every fine-tuning
  config shares, each group with its own checks; ``lr_at``, the one learning-rate schedule;
* ``load_config``: a config dataclass from YAML plus ``--set key=value`` overrides, with
  unknown keys rejected; ``field_docs`` reads each field's docstring;
* ``resolve_path``, ``read_yaml``, ``reward_task``, ``check_model_path``, ``check_family_weights``.

The trainers re-import all of these, so ``from training.grpo import GRPOConfig`` keeps working.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qwenrl.checkpoints import MANIFEST
from qwenrl.objectives import DEFAULT_OBJECTIVE, OBJECTIVES
from qwenrl.tasks import TASKS

REPO_ROOT = Path(__file__).resolve().parents[1]
#: weight dtypes a diffusers pipeline may load in (``training.common.DTYPES`` maps them to torch's)
DTYPE_NAMES = ("float32", "bfloat16", "float16")
#: learning-rate schedules after the warm-up (``training.common.lr_at``)
LR_SCHEDULES = ("constant", "cosine")


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


@dataclass
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

    def check_model_settings(self) -> None:
        """ConfigError for a trained part, dtype or precision the trainers do not know."""
        if self.trainable not in ("full", "lora"):
            raise ConfigError(f"trainable must be 'full' or 'lora', got {self.trainable!r}")
        if self.lora_rank < 1:
            raise ConfigError("lora_rank must be at least 1")
        if self.dtype not in DTYPE_NAMES:
            raise ConfigError(f"dtype must be one of {DTYPE_NAMES}, got {self.dtype!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError("mixed_precision must be no, fp16 or bf16")


@dataclass
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

    def check_run_settings(self) -> None:
        """ConfigError for a negative cadence or an empty evaluation."""
        if min(self.eval_every, self.save_every, self.state_every) < 0 or self.eval_limit < 1 or self.log_every < 1:
            raise ConfigError("eval_every, save_every and state_every must be >= 0; eval_limit and log_every >= 1")


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


@dataclass
class OptimizerSettings:
    """AdamW with its learning-rate schedule, gradient clipping and the EMA: the fields (and their
    checks) every fine-tuning config shares. A config redeclares a field only to change its default."""

    steps: int = 300
    """Training steps (optimizer rounds)."""
    lr: float = 3e-4
    """AdamW learning rate."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up, in steps."""
    lr_schedule: str = "constant"
    """After the warm-up: ``constant``, or ``cosine`` decay to lr × lr_min_ratio at the last step."""
    lr_min_ratio: float = 0.1
    """The cosine schedule's final learning rate, as a share of lr."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Gradient clipping (global norm)."""
    train_batch_size: int = 32
    """Samples per forward/backward (micro-batch) in the update."""
    ema_decay: float = 0.0
    """EMA of the trained weights (0: none); evaluation and checkpoints use the EMA weights."""

    def check_optimizer(self) -> None:
        """ConfigError, naming the fix, for a step count, learning rate or AdamW setting that cannot run."""
        if self.steps < 0:
            raise ConfigError("steps must be >= 0")
        if self.lr < 0:
            raise ConfigError(f"lr is {self.lr}; the learning rate must be >= 0 (3e-4 full fine-tuning of the Shapes model, 1e-4 LoRA on real models)")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.adam_eps <= 0 or self.max_grad_norm <= 0:
            raise ConfigError("warmup_steps and weight_decay must be >= 0; adam_eps and max_grad_norm > 0")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError("adam_betas must be two numbers in [0, 1), e.g. [0.9, 0.999]")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r}; use one of {LR_SCHEDULES}")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ConfigError(f"lr_min_ratio is {self.lr_min_ratio}; it is a share of lr in [0, 1] (0.1 is typical)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError("ema_decay must lie in [0, 1) (0 disables the EMA)")
        if self.train_batch_size < 1:
            raise ConfigError("train_batch_size must be at least 1")

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based) under this config's schedule."""
        return lr_at(step, self.lr, self.warmup_steps, self.steps, self.lr_schedule, self.lr_min_ratio)


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


def config_values(cls: type, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                  **values: Any) -> dict[str, Any]:
    """The field values ``load_config`` would build ``cls`` from (YAML, then overrides, then
    ``values``), each coerced to its field's type; ConfigError for an unknown key or a value of
    the wrong kind. Fields left out keep their defaults."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{resolve_path(path)}: expected a mapping of config fields")
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key.strip()}: {text!r} is not a YAML value ({str(exc).splitlines()[0]})") from None
        _set_dotted(raw, key.strip(), value)
    raw.update(values)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s) {unknown}; known keys: {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    return {k: _coerce(v, hints[k], k) for k, v in raw.items()}


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), **values: Any):
    """``cls`` from a YAML file, then ``overrides`` (``key=value``, value parsed as YAML; dotted
    keys reach into mapping fields, e.g. ``distill_teachers.t2i=data/models/x``), then ``values``."""
    raw = config_values(cls, path, overrides, **values)
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


def config_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def field_defaults(cls: type) -> dict[str, Any]:
    """Each field's default value of a config dataclass (fields without one are left out)."""
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}


def config_defaults(cls: type) -> dict[str, Any]:
    """Each field's default value of a config dataclass, as ``config_dict`` writes values."""
    return json.loads(json.dumps(field_defaults(cls)))


def check_shift(shift: float | None) -> None:
    """ConfigError unless the sigma-schedule ``shift`` is positive or None (the model's default)."""
    if shift is not None and shift <= 0:
        raise ConfigError("shift must be positive (or null for the model's default)")


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


# -- GRPO (training/grpo.py) ------------------------------------------------------------------

CFG_MODES = ("none", "guided", "hybrid")
STD_MODES = ("group", "batch", "none")
NFT_SAMPLERS = ("old", "current")
NFT_TIMESTEPS = ("logit_normal", "uniform")
NFT_SELECTIONS = ("all", "top")
#: fields only one objective reads; set away from their defaults with the other objective, they are an error
SDE_ONLY = ("noise_level", "sde_window", "clip_range")


@dataclass
class GRPOConfig(ModelSettings, RunSettings, OptimizerSettings):
    # -- what to train ------------------------------------------------------------------------
    model: str = "data/models/shapes-base"
    """Model to fine-tune: a QwenRL checkpoint folder or a diffusers pipeline folder."""
    task: str = "t2i"
    """``t2i`` (text-to-image prompts) or ``edit`` (edit instructions on rendered sources)."""
    reward: str = "training/configs/rewards/shapes_t2i.yaml"
    """Composite reward YAML (see docs/rewards.md); its ``task`` must match ``task``."""
    monitor_reward: str | None = None
    """A second reward YAML judged on the held-out samples at each evaluation and never trained on, logged as ``eval/monitor/…``: the learned judge while training against the checker, or the reverse, to see one reward being gamed through the other."""
    name: str | None = None
    """Checkpoint name prefix; checkpoints are named ``{name}@step{N}``. Default ``grpo-{task}``."""
    objective: str = DEFAULT_OBJECTIVE
    """Policy-optimisation objective: ``flow_grpo`` (SDE rollouts, clipped likelihood ratio) or ``nft`` (forward process: ODE rollouts, flow-matching loss on the clean samples; see the nft_* fields)."""

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
    """SDE noise level (Flow-GRPO's a); must be > 0. flow_grpo only (nft samples with the ODE)."""
    sde_window: list[int] | None = field(default_factory=lambda: [0, 5])
    """[start, end): steps taken with the SDE and trained; the others are ODE steps. None: every step. flow_grpo only."""
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
    """Advantage normalisation: ``group`` (std of each prompt's group), ``batch`` (std over the whole batch) or ``none`` (r − group mean as it is)."""
    adv_clip_max: float = 5.0
    """Advantages are clipped to [-adv_clip_max, adv_clip_max]."""
    advantage_scale: float = 1.0
    """Advantages are multiplied by this before clipping: a composite's total is a weighted mean, so with weights summing to W, W here gives the unnormalised weighted sum's advantages (with std_mode none)."""
    reward_range_threshold: float = 0.02
    """Groups whose reward range (max − min) is below this are dropped from the update."""

    # -- update (and the optimizer's fields: OptimizerSettings) -----------------------------------
    steps: int = 300
    """GRPO steps (sampling + update rounds)."""
    clip_range: float = 1e-3
    """PPO clip range on the ratio (log-probs are means over latent elements, so ratios stay near 1). flow_grpo only."""
    beta: float = 0.01
    """Weight of the KL to the reference policy (0 disables it and the reference); with nft, of ‖v_θ − v_ref‖² (KL in velocity space)."""
    num_inner_epochs: int = 1
    """Passes over each step's samples."""
    updates_per_epoch: int = 2
    """Optimizer steps per pass, each over a shuffled share of the samples."""

    # -- the forward-process objective (objective: nft) --------------------------------------------
    nft_beta: float = 1.0
    """b: v⁺ = (1 − b)·v_old + b·v_θ and v⁻ = (1 + b)·v_old − b·v_θ; > 0. With b = 1 and every optimality 1 the loss is plain flow matching."""
    nft_old_decay: float = 0.5
    """η: after every step the old policy moves to η·θ_old + (1 − η)·θ (0: each step's anchor is the weights it started from); in [0, 1)."""
    nft_old_decay_warmup: int = 0
    """η rises linearly from 0 to nft_old_decay over this many steps (0: constant η)."""
    nft_sample_with: str = "old"
    """Which policy draws the rollouts: ``old`` (DiffusionNFT) or ``current``."""
    nft_timesteps: str = "logit_normal"
    """σ of the loss, per sample: ``logit_normal`` (sigmoid of N(nft_logit_mean, nft_logit_std²)) or ``uniform`` on (0, 1)."""
    nft_logit_mean: float = 0.0
    """Mean of the logit-normal σ distribution."""
    nft_logit_std: float = 1.0
    """Standard deviation of the logit-normal σ distribution; > 0."""
    nft_text_dropout: float = 0.1
    """Share of loss samples trained on the empty prompt, so the unconditional velocity that guidance uses keeps up; in [0, 1)."""
    nft_guided_loss: bool = False
    """Train the guided velocity (at the rollout's guidance scale) instead of the conditional one (false: CFG-free training)."""
    nft_reencode: bool = True
    """Train on the decoded images re-encoded by the autoencoder (the latents of what was judged) instead of the sampler's final latents."""
    nft_selection: str = "all"
    """Which samples the loss trains on: ``all`` (every sample of a kept group, its optimality from its advantage, so bad samples are pushed away) or ``top`` (only the best nft_top_k samples of each group whose reward is at least nft_min_reward, at optimality 1: flow matching on the policy's own best samples, nothing pushed away; every group with such samples is kept, all-pass groups included)."""
    nft_top_k: int = 4
    """With nft_selection top: samples kept per group (the best by reward)."""
    nft_min_reward: float = 0.5
    """With nft_selection top: the least reward a kept sample has (a strict pass with the Shapes rewards)."""
    nft_hindsight: int = 0
    """Hindsight groups per prompt (0: off). A group's images are judged again against up to this many instructions (or prompts) one fact away from its own (another direction, colour, shape, size, relation …, from the train split), chosen among those that some but not all of its images carry out by the strict checker; each becomes an extra group of the update, so a sample that moved an object the wrong way teaches the direction it did take."""
    nft_hindsight_families: list[str] = field(default_factory=list)
    """Families whose prompts get hindsight groups; empty: every family."""

    # -- on-policy distillation as an auxiliary term ----------------------------------------------
    distill_teachers: dict[str, str] = field(default_factory=dict)
    """Task → teacher checkpoint, for an auxiliary velocity-matching term on the student's own trajectories."""
    distill_weight: float = 0.0
    """Weight of the auxiliary distillation loss (0: off)."""
    distill_prompts: int = 4
    """Prompts per teacher task rolled out (ODE) each step for the auxiliary term."""
    distill_timesteps: int = 3
    """Trajectory states per sample matched to the teacher in the auxiliary term."""
    distill_null: bool = False
    """The auxiliary term also matches the teacher's text-dropped (unconditional) velocity at the
    same states (weighted as the conditional term), so both branches that guidance combines are
    anchored, not only the conditional one."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; set task to one of {TASKS}")
        check_model_path(self.model)
        rtask = reward_task(self.reward)
        if rtask != self.task:
            raise ConfigError(f"reward config {self.reward} is for task {rtask!r} but task is {self.task!r}; use a {self.task} reward YAML")
        if self.monitor_reward is not None and (mtask := reward_task(self.monitor_reward)) != self.task:
            raise ConfigError(f"monitor_reward {self.monitor_reward} is for task {mtask!r} but task is {self.task!r}; use a {self.task} reward YAML")
        check_family_weights(self.task, self.family_weights)
        if self.group_size < 2:
            raise ConfigError(f"group_size is {self.group_size}: GRPO compares samples of one prompt, so use at least 2 (8 is typical)")
        if self.num_prompts < 1:
            raise ConfigError("num_prompts must be at least 1")
        if self.num_steps < 1:
            raise ConfigError("num_steps (sampling steps) must be at least 1")  # before the window is checked against it
        if self.objective == "flow_grpo" and self.sde_window is not None:
            w = self.sde_window
            if len(w) != 2 or not 0 <= w[0] < w[1] <= self.num_steps:
                raise ConfigError(
                    f"sde_window {w} lies outside the schedule of {self.num_steps} steps; use [start, end] with "
                    f"0 <= start < end <= num_steps, e.g. [0, {max(1, self.num_steps // 2)}], or null for every step"
                )
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}; set objective to one of {OBJECTIVES} (see docs/training.md)")
        self._check_objective_fields()
        if self.objective == "flow_grpo" and self.noise_level <= 0:
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
        if self.advantage_scale <= 0:
            raise ConfigError(f"advantage_scale must be positive (1 leaves advantages as they are), got {self.advantage_scale}")
        if self.reward_range_threshold < 0:
            raise ConfigError("reward_range_threshold must be >= 0 (0 keeps every group with any spread)")
        self.check_optimizer()
        self.check_model_settings()
        self.check_run_settings()
        check_shift(self.shift)
        if self.clip_range <= 0:
            raise ConfigError("clip_range must be positive (1e-4 to 1e-3 for log-probs averaged over latent elements)")
        self._check_nft()
        if self.beta < 0:
            raise ConfigError("beta (KL weight) must be >= 0")
        if self.num_inner_epochs < 1 or self.updates_per_epoch < 1:
            raise ConfigError("num_inner_epochs and updates_per_epoch must be at least 1")
        self._check_distill_term()

    def _check_nft(self) -> None:
        """The forward-process objective's fields (checked whatever the objective: a value out of
        range is wrong even while it is not read)."""
        if self.nft_beta <= 0:
            raise ConfigError(f"nft_beta is {self.nft_beta}; it must be > 0 (1.0 is typical; small values move the implicit policies less per step)")
        if not 0.0 <= self.nft_old_decay < 1.0:
            raise ConfigError(f"nft_old_decay is {self.nft_old_decay}; use a value in [0, 1) (0.5 is typical; 0 anchors each step at the weights it started from)")
        if self.nft_old_decay_warmup < 0:
            raise ConfigError("nft_old_decay_warmup must be >= 0 (0: constant nft_old_decay)")
        if self.nft_sample_with not in NFT_SAMPLERS:
            raise ConfigError(f"nft_sample_with must be one of {NFT_SAMPLERS}, got {self.nft_sample_with!r}")
        if self.nft_selection not in NFT_SELECTIONS:
            raise ConfigError(f"nft_selection must be one of {NFT_SELECTIONS}, got {self.nft_selection!r}")
        if self.nft_selection == "top" and not 1 <= self.nft_top_k <= self.group_size:
            raise ConfigError(f"nft_top_k is {self.nft_top_k}; keep between 1 and group_size ({self.group_size}) samples per group")
        if self.nft_timesteps not in NFT_TIMESTEPS:
            raise ConfigError(f"nft_timesteps must be one of {NFT_TIMESTEPS}, got {self.nft_timesteps!r}")
        if self.nft_logit_std <= 0:
            raise ConfigError("nft_logit_std must be > 0 (1.0 is typical)")
        if not 0.0 <= self.nft_text_dropout < 1.0:
            raise ConfigError("nft_text_dropout must lie in [0, 1) (0.1 is typical)")
        if self.nft_hindsight < 0:
            raise ConfigError(f"nft_hindsight is {self.nft_hindsight}; it counts hindsight groups per prompt, so use 0 (off) or more (3 is typical)")
        if self.nft_hindsight_families:
            check_family_weights(self.task, dict.fromkeys(self.nft_hindsight_families, 1.0), "nft_hindsight_families")

    def _check_distill_term(self) -> None:
        """The auxiliary distillation term's weight, teachers and sizes."""
        if self.distill_weight < 0:
            raise ConfigError("distill_weight must be >= 0")
        if self.distill_null and self.distill_weight == 0:
            raise ConfigError("distill_null anchors the auxiliary distillation term, which is off: set distill_weight > 0 and distill_teachers")
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

    def _check_objective_fields(self) -> None:
        """A field that only the other objective reads, set away from its default, is an error
        (it would be silently ignored): name it and the two ways out."""
        defaults = field_defaults(type(self))
        if self.objective == "nft":
            foreign, owner = [k for k in SDE_ONLY if getattr(self, k) != defaults[k]], "flow_grpo"
            why = "objective nft samples with the ODE and needs no log-probabilities"
        else:
            foreign, owner = [k for k in defaults if k.startswith("nft_") and getattr(self, k) != defaults[k]], "nft"
            why = "objective flow_grpo does not read them"
        if foreign:
            raise ConfigError(f"{', '.join(foreign)}: field(s) of objective {owner}, but objective is {self.objective!r} ({why}); "
                              f"remove them from the config, or set objective: {owner}")

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), **values: Any) -> "GRPOConfig":
        return load_config(cls, path, overrides, **values)

    def trained_steps(self) -> list[int]:
        """Indices of the SDE (trained) sampling steps (flow_grpo; none with nft)."""
        if self.objective == "nft":
            return []
        return list(range(*self.sde_window)) if self.sde_window is not None else list(range(self.num_steps))

    def old_decay_at(self, step: int) -> float:
        """η after ``step`` steps (nft): linear from 0 to ``nft_old_decay`` over the warm-up."""
        if self.nft_old_decay_warmup <= 0:
            return self.nft_old_decay
        return self.nft_old_decay * min(1.0, (step + 1) / self.nft_old_decay_warmup)


# -- on-policy distillation (training/distill.py) -----------------------------------------------

ROUTINGS = ("task", "mixture")


@dataclass
class DistillConfig(ModelSettings, RunSettings, OptimizerSettings):
    # -- models ---------------------------------------------------------------------------------
    student: str = "data/models/shapes-base"
    """Initial student: the base model or a specialist (checkpoint or diffusers pipeline folder)."""
    student_from_teacher: str | None = None
    """A task (t2i, edit): the student starts from that task's teacher, whatever ``student`` says, and
    keeps its skill on that task from the first step (null: start from ``student``)."""
    teachers: dict[str, str] = field(default_factory=lambda: {"t2i": "data/models/shapes-grpo-t2i", "edit": "data/models/shapes-grpo-edit"})
    """Task → teacher checkpoint; each sample is matched to the teacher of its task."""
    task_weights: dict[str, float] = field(default_factory=lambda: {"t2i": 0.5, "edit": 0.5})
    """Share of each task in every batch (normalised); every task with a positive weight needs a teacher."""
    name: str | None = None
    """Checkpoint name prefix; checkpoints are named ``{name}@step{N}``. Default ``distill``."""

    # -- trajectories ---------------------------------------------------------------------------
    batch_size: int = 16
    """Student trajectories per step (all processes together), mixed by task_weights."""
    num_steps: int = 10
    """Sampling steps per trajectory."""
    shift: float | None = None
    """Sigma-schedule shift; default the student's ``default_shift``."""
    noise_level: float = 0.0
    """0: the student samples with the ODE; > 0: with the SDE (more diverse states)."""
    guidance_scale: float = 1.0
    """Guidance scale of the student's rollouts."""
    teacher_guidance_scale: float = 1.0
    """Guidance scale of the teachers' velocities (> 1 distils guidance into the student)."""
    absorb_guidance: bool = False
    """The student learns to sample without guidance: its rollouts are unguided (guidance_scale 1), its target is the teachers' guided velocity at teacher_guidance_scale (> 1), and its checkpoints recommend guidance 1."""
    routing: str = "task"
    """Target of each sample: ``task`` (the velocity of its task's teacher) or ``mixture`` (the task_weights-weighted mean of every teacher's velocity)."""
    timesteps_per_trajectory: int | None = None
    """Query states matched per trajectory, picked per step among the candidates (None: every candidate)."""
    query_sigma_range: list[float] | None = None
    """[low, high]: only visited states whose noise level σ lies in this range are query states, e.g. [0.0, 0.4] for low noise (None: every visited state)."""

    # -- update (the other optimizer fields: OptimizerSettings) -----------------------------------
    steps: int = 200
    """Distillation steps."""
    lr: float = 2e-4
    """AdamW learning rate."""
    warmup_steps: int = 10
    """Linear learning-rate warm-up, in steps."""

    # -- bookkeeping ----------------------------------------------------------------------------
    eval_rewards: dict[str, str] = field(default_factory=lambda: {
        "t2i": "training/configs/rewards/shapes_t2i.yaml", "edit": "training/configs/rewards/shapes_edit.yaml"})
    """Task → reward YAML used to score held-out samples at evaluation."""
    def __post_init__(self) -> None:
        if not self.teachers:
            raise ConfigError("teachers is empty; give task → specialist checkpoint, e.g. {t2i: data/models/shapes-grpo-t2i}")
        if self.student_from_teacher is not None:
            if self.student_from_teacher not in self.teachers:
                raise ConfigError(f"student_from_teacher is {self.student_from_teacher!r}, but teachers has no such task "
                                  f"(it has {sorted(self.teachers)}); name one of them, or set student_from_teacher: null")
            self.student = self.teachers[self.student_from_teacher]
        check_model_path(self.student, "student")
        for task, path in self.teachers.items():
            if task not in TASKS:
                raise ConfigError(f"teachers: unknown task {task!r}; use {TASKS}")
            check_model_path(path, f"teacher for {task}")
        for task, w in self.task_weights.items():
            if task not in TASKS:
                raise ConfigError(f"task_weights: unknown task {task!r}; use {TASKS}")
            if w < 0:
                raise ConfigError(f"task_weights[{task}] is negative; weights are shares >= 0")
            if w > 0 and task not in self.teachers:
                raise ConfigError(f"task_weights gives {task} weight {w} but teachers has no {task} teacher; add one or set its weight to 0")
        if sum(self.task_weights.values()) <= 0:
            raise ConfigError("task_weights must give at least one task a positive weight")
        for task in self.tasks():
            path = self.eval_rewards.get(task)
            if path is None:
                raise ConfigError(f"eval_rewards has no reward YAML for {task}")
            if reward_task(path) != task:
                raise ConfigError(f"eval_rewards[{task}] ({path}) is a reward for another task")
        self.check_optimizer()
        self.check_model_settings()
        self.check_run_settings()
        check_shift(self.shift)
        if self.num_steps < 1:
            raise ConfigError("num_steps (sampling steps) must be at least 1")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        if self.timesteps_per_trajectory is not None and not 1 <= self.timesteps_per_trajectory <= self.num_steps:
            raise ConfigError(f"timesteps_per_trajectory must lie in [1, num_steps={self.num_steps}] or be null (every state)")
        if self.noise_level < 0:
            raise ConfigError("noise_level must be >= 0 (0: ODE rollouts)")
        if self.guidance_scale < 1 or self.teacher_guidance_scale < 1:
            raise ConfigError("guidance scales must be >= 1 (1: no guidance)")
        if self.routing not in ROUTINGS:
            raise ConfigError(f"unknown routing {self.routing!r}; set routing to one of {ROUTINGS} "
                              "(task: each sample's task teacher; mixture: the weighted mean of every teacher)")
        if self.absorb_guidance:
            if self.guidance_scale != 1.0:
                raise ConfigError(f"absorb_guidance trains a student that samples without guidance, but its rollouts are guided "
                                  f"(guidance_scale {self.guidance_scale}); set guidance_scale: 1.0, or absorb_guidance: false")
            if self.teacher_guidance_scale <= 1.0:
                raise ConfigError("absorb_guidance needs the guidance to absorb: set teacher_guidance_scale > 1 "
                                  "(the scale the teachers are sampled with, 2.0 for the Shapes models)")
        if self.query_sigma_range is not None:
            r = self.query_sigma_range
            if len(r) != 2 or not 0.0 <= r[0] < r[1] <= 1.0:
                raise ConfigError(f"query_sigma_range {r} must be [low, high] with 0 <= low < high <= 1, e.g. [0.0, 0.4]; or null for every state")

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), **values: Any) -> "DistillConfig":
        return load_config(cls, path, overrides, **values)

    def tasks(self) -> list[str]:
        """Tasks with a positive weight, in TASKS order."""
        return [t for t in TASKS if self.task_weights.get(t, 0) > 0]

    def mixture_weights(self) -> dict[str, float]:
        """Weights of the teachers' velocities with ``routing: mixture`` (task_weights, normalised)."""
        total = sum(self.task_weights[t] for t in self.tasks())
        return {t: self.task_weights[t] / total for t in self.tasks()}


# -- pretraining the Shapes base (training/pretrain.py) -------------------------------------------


@dataclass
class PretrainConfig:
    seed: int = 0
    model: dict = field(default_factory=dict)
    """Overrides of ``qwenrl.models.shapes.DEFAULT_CONFIG``."""
    init: str | None = None
    """A Shapes checkpoint to go on from (continued pretraining): its autoencoder, latent scaling,
    tokenizer and weights are kept, the autoencoder stage is skipped, and the denoiser stage starts
    from its weights with a fresh optimizer and schedule (``model`` must then be empty)."""
    ae_steps: int = 3000
    ae_batch_size: int = 64
    ae_lr: float = 2e-3
    ae_kl_weight: float = 1e-6
    steps: int = 8000
    """Denoiser steps."""
    batch_size: int = 64
    lr: float = 5e-4
    warmup_steps: int = 300
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    edit_fraction: float = 0.5
    edit_families: str = "grammar"
    """How edits are drawn: ``grammar`` (the grammar's own mix, which redraws the family whenever an
    edit does not fit its scene, so ``move`` is about 7% of edits; the bundled base) or ``even``
    (the family first, uniformly, as the RL trainers draw)."""
    pool_size: int = 100_000
    """Examples encoded once before the denoiser stage and sampled from (0: draw each batch afresh)."""
    text_dropout: float = 0.1
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    save_every: int = 500
    export_every: int = 2000
    log_every: int = 50
    threads: int = 0
    """torch threads (0: torch's default)."""

    def __post_init__(self) -> None:
        if self.batch_size < 2 or self.ae_batch_size < 2:
            raise ValueError("batch sizes must be at least 2")
        if not 0.0 <= self.edit_fraction <= 1.0:
            raise ValueError("edit_fraction must lie in [0, 1]")
        if self.edit_families not in ("grammar", "even"):
            raise ValueError(f"edit_families must be 'grammar' (the bundled base's mix) or 'even' (each family as often), got {self.edit_families!r}")
        if not 0.0 <= self.text_dropout < 1.0:
            raise ValueError("text_dropout must lie in [0, 1)")
        if self.steps < 0 or self.ae_steps < 0:
            raise ValueError("step counts must be non-negative")
        if self.init is not None:
            if self.model:
                raise ValueError("init goes on from a checkpoint's own architecture; leave model empty (the checkpoint's manifest holds it)")
            if not (resolve_path(self.init) / "manifest.json").is_file():
                raise ValueError(f"init {self.init!r} is not a checkpoint folder (no manifest.json); give a Shapes checkpoint such as data/models/shapes-base")

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: list[str] = ()) -> "PretrainConfig":
        return load_config(cls, path, overrides)


# -- checking a job before the studio queues it -------------------------------------------------

#: the configs of the trainers the studio launches as jobs (``app/jobs.py``), by job kind
JOB_CONFIGS: dict[str, type] = {"grpo": GRPOConfig, "distill": DistillConfig}
#: the fields of each job config that name files or folders (a mapping field: each of its values)
JOB_PATH_FIELDS: dict[str, tuple[str, ...]] = {
    "grpo": ("model", "reward", "monitor_reward", "distill_teachers"),
    "distill": ("student", "teachers", "eval_rewards"),
}


def check_job_config(kind: str, config: str | Path, overrides: list[str] | tuple[str, ...] = (),
                     inside: list[str | Path] | tuple[str | Path, ...] = ()) -> Any:
    """The config a ``kind`` job would run (``config`` with its ``--set`` overrides), checked as the
    trainer checks it, and with every path field inside one of the folders ``inside`` (checked
    first, so that no file outside them is read); ConfigError with the trainer's message."""
    if kind not in JOB_CONFIGS:
        raise ConfigError(f"unknown job kind {kind!r}; expected one of {sorted(JOB_CONFIGS)}")
    cls = JOB_CONFIGS[kind]
    values = config_values(cls, config, overrides)
    if inside:
        roots = [Path(r).resolve() for r in inside]
        defaults = field_defaults(cls)
        for name in JOB_PATH_FIELDS[kind]:
            value = values.get(name, defaults[name])
            items = value.items() if isinstance(value, dict) else [(None, value)]
            for key, item in items:
                if item is not None:
                    _check_inside(name if key is None else f"{name}.{key}", item, roots)
    return load_config(cls, config, overrides)


def _check_inside(field_name: str, value: Any, roots: list[Path]) -> None:
    if not isinstance(value, str) or not value or any(not ch.isprintable() for ch in value):
        raise ConfigError(f"{field_name} must be a path without control characters, got {value!r:.80}")
    path = resolve_path(value).resolve()
    if not any(path.is_relative_to(root) for root in roots):
        shown = ", ".join(str(r.relative_to(REPO_ROOT)) if r.is_relative_to(REPO_ROOT) else r.name for r in roots)
        raise ConfigError(f"{field_name} {value!r:.120} is outside the folders a studio job may read ({shown}); "
                          "name a checkpoint or config inside them")


def main(argv: list[str] | None = None) -> int:
    """``python -m training.configs check --kind grpo --config C --set k=v --inside DIR``: one JSON
    line, ``{"ok": true}`` or ``{"error": "…"}`` (exit status 2), without importing torch.
    The studio runs it before it queues a job."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("command", choices=["check"])
    ap.add_argument("--kind", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--inside", action="append", default=[], metavar="DIR",
                    help="a folder path fields may name (repeatable); none: any path")
    args = ap.parse_args(argv)
    try:
        check_job_config(args.kind, args.config, args.set, args.inside)
    except (ConfigError, ValueError) as exc:  # a config's own checks may raise plain ValueErrors
        print(json.dumps({"error": str(exc)}))
        return 2
    print(json.dumps({"ok": True}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
