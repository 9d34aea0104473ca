"""``qwenrl generate`` and ``qwenrl bench``: sample from a checkpoint, and score it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def _load(model: str):
    from .checkpoints import CheckpointError
    from .models import load_policy

    try:
        return load_policy(model)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.option("--model", required=True, help="checkpoint folder (e.g. data/models/shapes-base) or diffusers pipeline")
@click.option("--prompt", help="text-to-image prompt")
@click.option("--source", type=click.Path(exists=True, dir_okay=False), help="source image, for editing")
@click.option("--instruction", help="edit instruction (with --source)")
@click.option("--n", "n", default=4, show_default=True, help="images to generate")
@click.option("--steps", default=None, type=int, help="sampling steps (default: the checkpoint's)")
@click.option("--guidance", default=None, type=float, help="classifier-free guidance scale (default: the checkpoint's)")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--scale", default=1, show_default=True, help="nearest-neighbour upscaling of saved PNGs")
def generate(model, prompt, source, instruction, n, steps, guidance, seed, out, scale):
    """Generate images from a prompt, or edit a source image by an instruction.

    \b
    Examples:
      qwenrl generate --model data/models/shapes-base --prompt "a red circle left of a blue square" --out out/
      qwenrl generate --model data/models/shapes-base --source in.png --instruction "make the red circle blue" --out out/
    """
    import numpy as np

    from .evaluation import policy_sampling_defaults
    from .imageio import grid, load_png, save_png
    from .sampling import sample_images

    if bool(prompt) == bool(instruction):
        raise click.UsageError("give either --prompt, or --source with --instruction")
    if instruction and not source:
        raise click.UsageError("--instruction needs --source IMAGE")
    if n < 1:
        raise click.UsageError("--n must be at least 1")
    policy = _load(model)
    defaults = policy_sampling_defaults(policy)
    text = prompt or instruction
    sources = None
    if instruction:
        if "edit" not in policy.tasks:
            raise click.ClickException(f"{model} does not do editing")
        size = getattr(policy, "config", {}).get("image_size")
        try:
            src = load_png(source, size=size)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        sources = np.stack([src] * n)
    try:
        images = sample_images(
            policy, [text] * n, sources,
            num_steps=steps or defaults["num_steps"],
            guidance_scale=defaults["guidance_scale"] if guidance is None else guidance,
            seed=seed,
        )
    except ValueError as exc:  # unknown words, prompt too long
        raise click.ClickException(str(exc)) from exc
    outdir = Path(out)
    for i, img in enumerate(images):
        save_png(img, outdir / f"{i:04d}.png", scale=scale)
    save_png(grid(images), outdir / "grid.png", scale=max(scale, 4))
    click.echo(f"wrote {len(images)} images to {outdir}", err=True)


@click.command()
@click.option("--model", required=True, help="checkpoint folder (e.g. data/models/shapes-base)")
@click.option("--task", type=click.Choice(["t2i", "edit"]), required=True)
@click.option("--split", type=click.Choice(["test", "train", "compositional"]), default="test", show_default=True)
@click.option("--samples-per-prompt", default=1, show_default=True, type=click.IntRange(min=1),
              help="images per prompt (distinct seeds); above 1, pass@k is reported for k = 1, 2, 4, … up to it")
@click.option("--steps", default=None, type=int, help="sampling steps (default: the checkpoint's)")
@click.option("--guidance", default=None, type=float, help="guidance scale (default: the checkpoint's)")
@click.option("--seed", default=0, show_default=True)
@click.option("--limit", default=None, type=int, help="an evenly spaced subset of N prompts (every family keeps its share)")
@click.option("--json", "as_json", is_flag=True, help="print a JSON object instead of a table")
def bench(model, task, split, samples_per_prompt, steps, guidance, seed, limit, as_json):
    """GenEval-style strict accuracy of a model on a Shapes prompt split, per family.

    With --samples-per-prompt K, also the unbiased pass@k (k = 1, 2, 4, …, K): the chance that
    at least one of k samples passes, the ceiling RL can reach within the model's own samples.

    \b
    Examples:
      qwenrl bench --model data/models/shapes-base --task t2i --split test --json
      qwenrl bench --model data/models/shapes-base --task t2i --samples-per-prompt 16
    """
    from .evaluation import evaluate

    policy = _load(model)
    try:
        res = evaluate(policy, task, split, samples_per_prompt=samples_per_prompt, num_steps=steps,
                       guidance_scale=guidance, seed=seed, limit=limit,
                       progress=not as_json)  # with the time left, on stderr; --json is for programs
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    res["model"] = model
    if as_json:
        click.echo(json.dumps({k: v for k, v in res.items() if k != "records"}))
        return
    click.echo(f"{model}  task={task}  split={split}  images={res['n_images']}  ({res['seconds']:.1f}s)")
    pk = res["pass_at_k"] if samples_per_prompt > 1 else None
    ks = list(pk["overall"]) if pk else []
    click.echo(f"  {'family':<14} {'pass rate':>9}" + "".join(f" {'pass@' + k:>8}" for k in ks))
    for fam, acc in res["families"].items():
        click.echo(f"  {fam:<14} {100 * acc:8.1f}%" + "".join(f" {100 * pk['families'][fam][k]:7.1f}%" for k in ks))
    click.echo(f"  {'overall':<14} {100 * res['overall']:8.1f}%" + "".join(f" {100 * pk['overall'][k]:7.1f}%" for k in ks))
