"""``qwenrl train {grpo,distill}`` and ``qwenrl experiment seed-recipe``: thin click commands
over ``training.grpo``, ``training.distill`` and ``training.recipe``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click


def _default_run(prefix: str) -> str:
    return str(Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}")


def _errors():
    from qwenrl.checkpoints import CheckpointError
    from qwenrl.rewards import RewardConfigError
    from training.common import ConfigError

    return (ConfigError, CheckpointError, RewardConfigError)


def _summary(result: dict) -> str:
    keep = {k: v for k, v in result["metrics"].items() if k in ("step", "reward/mean", "eval/accuracy", "loss") or k.startswith(("distill/", "eval/t2i/accuracy", "eval/edit/accuracy"))}
    return json.dumps({"run": result["run"], "checkpoint": result["checkpoint"], "metrics": keep})


@click.group()
def train() -> None:
    """Train image generators: GRPO and on-policy distillation.

    \b
    Examples:
      qwenrl train grpo --config training/configs/shapes_grpo_t2i.yaml --run runs/grpo-t2i
      qwenrl train distill --config training/configs/shapes_distill.yaml --set steps=100
    """


@train.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (training/configs/*.yaml)")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), default=None,
              help="run folder; rerunning on the same folder resumes (default runs/grpo-TASK-TIME)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config field (repeatable)")
def grpo(config_path: str | None, run_dir: str | None, overrides: tuple[str, ...]) -> None:
    """Fine-tune a model with GRPO on a task's composite reward.

    \b
    Examples:
      qwenrl train grpo --config training/configs/shapes_grpo_t2i.yaml --run runs/grpo-t2i
      qwenrl train grpo --config training/configs/shapes_grpo_edit.yaml --set lr=2e-4 --set steps=50
    For several processes or GPUs: accelerate launch -m training.grpo --config ... --run ...
    """
    from training.grpo import GRPOConfig
    from training.grpo import train as run_grpo

    try:
        cfg = GRPOConfig.from_yaml(config_path, list(overrides))
        result = run_grpo(cfg, run_dir or _default_run(f"grpo-{cfg.task}"))
    except _errors() as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(_summary(result))


@train.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (training/configs/shapes_distill.yaml)")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), default=None,
              help="run folder; rerunning on the same folder resumes (default runs/distill-TIME)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config field (repeatable)")
def distill(config_path: str | None, run_dir: str | None, overrides: tuple[str, ...]) -> None:
    """Distil task specialists into one student by on-policy velocity matching.

    \b
    Example:
      qwenrl train distill --config training/configs/shapes_distill.yaml --run runs/distill
    """
    from training.distill import DistillConfig
    from training.distill import train as run_distill

    try:
        cfg = DistillConfig.from_yaml(config_path, list(overrides))
        result = run_distill(cfg, run_dir or _default_run("distill"))
    except _errors() as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(_summary(result))


@click.group()
def experiment() -> None:
    """Reproducible experiments built from the trainers.

    \b
    Example:
      qwenrl experiment seed-recipe --out runs/seed-recipe
    """


@experiment.command("seed-recipe")
@click.option("--out", default="runs/seed-recipe", show_default=True, type=click.Path(file_okay=False), help="folder for the runs and results")
@click.option("--base", default="data/models/shapes-base", show_default=True, help="base checkpoint")
@click.option("--models-dir", default="data/models", show_default=True, type=click.Path(file_okay=False),
              help="where the three trained models are published")
@click.option("--t2i-set", multiple=True, metavar="KEY=VALUE", help="override the text-to-image GRPO config")
@click.option("--edit-set", multiple=True, metavar="KEY=VALUE", help="override the editing GRPO config")
@click.option("--distill-set", multiple=True, metavar="KEY=VALUE", help="override the distillation config")
@click.option("--bench-limit", type=int, default=None, help="bench only the first N prompts of each split")
@click.option("--pass-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="also bench pass@k with this many samples per test prompt (after the timed recipe)")
def seed_recipe_command(out, base, models_dir, t2i_set, edit_set, distill_set, bench_limit, pass_k) -> None:
    """Base → GRPO text-to-image; base → GRPO editing; both → distilled student; then bench all four.

    Writes OUT/results.md and OUT/results.json (accuracy on the test and compositional splits,
    composite reward and its aesthetics component, pass@k with --pass-k, the targets, wall time).
    Rerunning resumes unfinished runs.

    \b
    Example:
      qwenrl experiment seed-recipe --out runs/seed-recipe --pass-k 16
      qwenrl experiment seed-recipe --t2i-set steps=20 --edit-set steps=20 --distill-set steps=20 --bench-limit 32
    """
    from training.recipe import seed_recipe

    try:
        results = seed_recipe(out=out, base=base, models_dir=models_dir,
                              overrides={"t2i": list(t2i_set), "edit": list(edit_set), "distill": list(distill_set)},
                              bench_limit=bench_limit, pass_k_samples=pass_k)
    except _errors() as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(results["markdown"])
