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
    keep = {k: v for k, v in result["metrics"].items()
            if k in ("step", "rewards/total/mean", "eval/accuracy", "losses/total")
            or k.startswith(("losses/distill/", "eval/t2i/accuracy", "eval/edit/accuracy"))}
    return json.dumps({"run": result["run"], "checkpoint": result["checkpoint"], "metrics": keep})


def _run_trainer(kind: str, config_path: str | None, run_dir: str | None, overrides: tuple[str, ...]) -> None:
    """Load the ``kind`` trainer's config (with ``--set`` overrides), train, print the summary;
    a config, checkpoint or reward the trainer refuses becomes a click error with its message."""
    import importlib

    from training.configs import JOB_CONFIGS

    trainer = importlib.import_module(f"training.{kind}")
    try:
        cfg = JOB_CONFIGS[kind].from_yaml(config_path, list(overrides))
        result = trainer.train(cfg, run_dir or _default_run(f"grpo-{cfg.task}" if kind == "grpo" else kind))
    except _errors() as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(_summary(result))


def _trainer_options(example: str, default_run: str):
    """The options of ``qwenrl train grpo`` and ``qwenrl train distill``."""
    def decorate(fn):
        fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config field (repeatable)")(fn)
        fn = click.option("--run", "run_dir", type=click.Path(file_okay=False), default=None,
                          help=f"run folder; rerunning on the same folder resumes (default {default_run})")(fn)
        return click.option("--config", "config_path", type=click.Path(dir_okay=False), help=f"YAML config ({example})")(fn)
    return decorate


@click.group()
def train() -> None:
    """Train image generators: GRPO and on-policy distillation.

    \b
    Examples:
      qwenrl train grpo --config training/configs/shapes_grpo_t2i.yaml --run runs/grpo-t2i
      qwenrl train distill --config training/configs/shapes_distill.yaml --set steps=100
      qwenrl train calibrate --config training/configs/shapes_grpo_edit.yaml --write
    """


@train.command()
@_trainer_options("training/configs/*.yaml", "runs/grpo-TASK-TIME")
def grpo(config_path: str | None, run_dir: str | None, overrides: tuple[str, ...]) -> None:
    """Fine-tune a model with GRPO on a task's composite reward.

    \b
    Examples:
      qwenrl train grpo --config training/configs/shapes_grpo_t2i.yaml --run runs/grpo-t2i
      qwenrl train grpo --config training/configs/shapes_grpo_edit.yaml --set lr=2e-4 --set steps=50
    For several processes or GPUs: accelerate launch -m training.grpo --config ... --run ...
    """
    _run_trainer("grpo", config_path, run_dir, overrides)


@train.command()
@_trainer_options("training/configs/shapes_distill.yaml", "runs/distill-TIME")
def distill(config_path: str | None, run_dir: str | None, overrides: tuple[str, ...]) -> None:
    """Distil task specialists into one student by on-policy velocity matching.

    \b
    Example:
      qwenrl train distill --config training/configs/shapes_distill.yaml --run runs/distill
    """
    _run_trainer("distill", config_path, run_dir, overrides)


@train.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="GRPO config whose prompt mix to calibrate")
@click.option("--model", default=None, help="model whose pass rates set the mix (default: the config's model)")
@click.option("--samples-per-prompt", default=4, show_default=True, type=click.IntRange(1), help="samples per train prompt")
@click.option("--limit", default=280, show_default=True, type=click.IntRange(1), help="train prompts (evenly spaced over the families)")
@click.option("--floor", default=0.3, show_default=True, type=click.FloatRange(0, 1), help="share spread evenly over the families")
@click.option("--write", is_flag=True, help="write family_weights (and the measured pass rates, as a comment) into the config")
def calibrate(config_path: str, model: str | None, samples_per_prompt: int, limit: int, floor: float, write: bool) -> None:
    """Set a GRPO config's prompt mix from the model's measured pass rate per family.

    Samples the train split with the config's rollout settings, and gives each family a share
    proportional to 2·p·(1 − p) plus an even floor (see docs/training.md, "Calibrating the prompt mix").

    \b
    Examples:
      qwenrl train calibrate --config training/configs/shapes_grpo_edit.yaml
      qwenrl train calibrate --config training/configs/shapes_grpo_edit.yaml --samples-per-prompt 8 --write
    """
    from training.calibrate import calibrated_family_weights, measure_pass_rates, write_family_weights
    from training.grpo import GRPOConfig

    try:
        cfg = GRPOConfig.from_yaml(config_path)
        guidance = cfg.guidance_scale if cfg.cfg_mode == "guided" else 1.0
        measured = measure_pass_rates(model or cfg.model, cfg.task, samples_per_prompt=samples_per_prompt, limit=limit,
                                      num_steps=cfg.num_steps, guidance_scale=guidance, seed=cfg.seed)
    except _errors() as exc:
        raise click.ClickException(str(exc)) from exc
    weights = calibrated_family_weights(measured["families"], floor=floor)
    click.echo(json.dumps({"pass_rates": measured["families"], "overall": measured["overall"], "family_weights": weights,
                           "floor": floor, "images": measured["n_images"]}, indent=2))
    if write:
        note = (f"by `qwenrl train calibrate --samples-per-prompt {samples_per_prompt} --limit {limit} --floor {floor:g}` "
                f"({measured['n_images']} train samples of {Path(model or cfg.model).name}, {cfg.num_steps} steps, guidance {guidance:g})")
        from training.common import resolve_path

        write_family_weights(resolve_path(config_path), weights, measured["families"], note)
        click.echo(f"wrote family_weights to {config_path}", err=True)


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
@click.option("--models-dir", default=None, type=click.Path(file_okay=False),
              help="where the three trained models are published [default: data/models; OUT/models with --reward learned or reader]")
@click.option("--reward", type=click.Choice(["config", "learned", "reader"]), default="config", show_default=True,
              help="train the specialists against their configs' rewards, the learned judge's composites, or the reader's "
                   "(the positions judge reads, the world's rules decide)")
@click.option("--t2i-set", multiple=True, metavar="KEY=VALUE", help="override the text-to-image GRPO config")
@click.option("--edit-set", multiple=True, metavar="KEY=VALUE", help="override the editing GRPO config")
@click.option("--distill-set", multiple=True, metavar="KEY=VALUE", help="override the distillation config")
@click.option("--bench-limit", type=int, default=None, help="bench only the first N prompts of each split")
@click.option("--pass-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="also bench pass@k with this many samples per test prompt (after the timed recipe)")
@click.option("--bench-samples", type=click.IntRange(min=1), default=4, show_default=True,
              help="samples per test prompt for the accuracy and per-family figures")
def seed_recipe_command(out, base, models_dir, reward, t2i_set, edit_set, distill_set, bench_limit, pass_k, bench_samples) -> None:
    """Base → GRPO text-to-image; base → GRPO editing; both → distilled student; then bench all four.

    Writes OUT/results.md and OUT/results.json (accuracy on the test and compositional splits,
    composite reward and its aesthetics component, pass@k with --pass-k, the targets, wall time).
    Rerunning resumes unfinished runs.

    \b
    Example:
      qwenrl experiment seed-recipe --out runs/seed-recipe --pass-k 16
      qwenrl experiment seed-recipe --t2i-set steps=20 --edit-set steps=20 --distill-set steps=20 --bench-limit 32
      qwenrl experiment seed-recipe --reward learned --out runs/seed-recipe-learned
    """
    from training.recipe import seed_recipe

    if models_dir is None:  # a learned-judge recipe never overwrites the bundled models unless asked
        models_dir = str(Path(out) / "models") if reward != "config" else "data/models"
    try:
        results = seed_recipe(out=out, base=base, models_dir=models_dir, reward=reward,
                              overrides={"t2i": list(t2i_set), "edit": list(edit_set), "distill": list(distill_set)},
                              bench_limit=bench_limit, pass_k_samples=pass_k, bench_samples=bench_samples)
    except _errors() as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(results["markdown"])
