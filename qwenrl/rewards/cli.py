"""``qwenrl reward``: score images (or a model's samples) with a composite reward and show why."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="reward YAML, e.g. training/configs/rewards/shapes_t2i.yaml")
@click.option("--prompts", required=True, type=click.Path(exists=True, dir_okay=False),
              help="prompts, JSON lines in the data/prompts format")
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False),
              help="folder of images to judge: 0000.png, 0001.png… by prompt line, or as named by a line's \"image\"")
@click.option("--model", help="checkpoint folder to sample from instead of --images (e.g. data/models/shapes-base)")
@click.option("--n", "n", default=1, show_default=True, help="with --model: samples per prompt")
@click.option("--limit", default=None, type=int, help="judge only the first N prompts")
@click.option("--steps", default=None, type=int, help="with --model: sampling steps (default: the checkpoint's)")
@click.option("--guidance", default=None, type=float, help="with --model: guidance scale (default: the checkpoint's)")
@click.option("--seed", default=0, show_default=True, help="with --model: seed of the first batch")
@click.option("--save", "save_dir", type=click.Path(file_okay=False), help="with --model: also write the images here")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), help="SQLite file caching judgements across runs")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per sample: score, parts, rationale")
def reward(config_path, prompts, images_dir, model, n, limit, steps, guidance, seed, save_dir, cache_path, as_json):
    """Score images with a composite reward; print each total, its parts and the rationale.

    \b
    Examples:
      qwenrl reward --config training/configs/rewards/shapes_t2i.yaml --images out/ --prompts prompts.jsonl
      qwenrl reward --config training/configs/rewards/shapes_edit.yaml \\
          --model data/models/shapes-base --prompts data/prompts/edit_test.jsonl --limit 8 --json
    """
    from .base import RewardConfigError
    from .cache import RewardCache
    from .composite import load_reward, reward_stats
    from .inputs import read_prompts, samples_from_images

    if bool(images_dir) == bool(model):
        raise click.UsageError("give either --images DIR or --model PATH (with --prompts FILE)")
    if n < 1:
        raise click.UsageError("--n must be at least 1")
    try:
        reward_fn = load_reward(config_path, cache=RewardCache(cache_path) if cache_path else True)
        records = read_prompts(prompts)[:limit]
        if images_dir:
            samples = samples_from_images(records, images_dir)
        else:
            samples = _sample_model(model, records, n, steps, guidance, seed, save_dir)
    except (RewardConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not any(s.task == reward_fn.task for s in samples):
        raise click.ClickException(f"{config_path} is a {reward_fn.task} reward, but the prompts are all of the other task")

    judgements = reward_fn(samples)
    for i, (s, j) in enumerate(zip(samples, judgements)):
        if as_json:
            click.echo(json.dumps({
                "index": i, "prompt": s.prompt, "task": s.task, "family": s.family,
                "image": s.metadata.get("image"), "score": j.score, "parts": j.parts, "rationale": j.rationale,
            }))
        else:
            total = "none" if j.score is None else f"{j.score:.3f}"
            where = f"  [{s.metadata['image']}]" if s.metadata.get("image") else ""
            click.echo(f"#{i} {s.prompt!r} ({s.task}, {s.family or '-'}){where}")
            click.echo(f"  total {total}   " + "  ".join(f"{k}={v:.3f}" for k, v in j.parts.items()))
            click.echo("  " + j.rationale.replace("\n", "\n  "))
            click.echo("")
    stats = reward_stats(judgements)
    summary = f"{len(samples)} samples, mean total {stats['rewards/total/mean']:.3f}"
    metrics = {k: v for k, v in reward_fn.metrics.items() if v}
    if metrics:
        summary += "; " + ", ".join(f"{k}={v}" for k, v in sorted(metrics.items()))
    click.echo(summary, err=True)
    reward_fn.close()


def _sample_model(model, records, n, steps, guidance, seed, save_dir):
    """Samples from a checkpoint: ``n`` per prompt, sources rendered from edit lines."""
    import numpy as np

    from ..checkpoints import CheckpointError
    from ..evaluation import policy_sampling_defaults
    from ..imageio import save_png
    from ..models import load_policy
    from ..sampling import sample_images
    from .inputs import sample_for

    try:
        policy = load_policy(model)
    except (CheckpointError, FileNotFoundError) as exc:
        raise ValueError(str(exc)) from exc
    defaults = policy_sampling_defaults(policy)
    items = [r for r in records for _ in range(n)]
    samples = []
    batch = 64
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        for task in ("t2i", "edit"):
            part = [r for r in chunk if r.task == task]
            if not part:
                continue
            if task not in policy.tasks:
                raise ValueError(f"{model} does not do {task} (it does {', '.join(policy.tasks)})")
            sources = np.stack([r.source for r in part]) if task == "edit" else None
            images = sample_images(
                policy, [r.text for r in part], sources,
                num_steps=steps or defaults["num_steps"],
                guidance_scale=defaults["guidance_scale"] if guidance is None else guidance,
                seed=seed + start,
            )
            for r, img in zip(part, images):
                samples.append(sample_for(r, img, {"model": model}))
        click.echo(f"sampled {min(start + batch, len(items))}/{len(items)}", err=True)
    samples.sort(key=lambda s: s.metadata["prompt_index"])  # stable: keeps the n samples of a prompt in order
    if save_dir:
        for i, s in enumerate(samples):
            path = save_png(s.image, f"{save_dir}/{i:04d}.png")
            s.metadata["image"] = str(path)
    return samples
