"""The seed's recipe on the Shapes world, as one function.

base → GRPO text-to-image specialist; base → GRPO editing specialist; both → a unified student
by on-policy distillation; then every model is benched on the ``test`` and ``compositional``
splits of both tasks. The three trained models are published next to the base
(``data/models/shapes-grpo-t2i``, ``shapes-grpo-edit``, ``shapes-distilled``) with manifests
that record their lineage, and the results go to ``OUT/results.{md,json}``.

    qwenrl experiment seed-recipe --out runs/seed-recipe

Each stage is a run folder under OUT, so rerunning the command resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.common import REPO_ROOT, log, resolve_path

CONFIGS = REPO_ROOT / "training" / "configs"
REWARDS = {"t2i": CONFIGS / "rewards" / "shapes_t2i.yaml", "edit": CONFIGS / "rewards" / "shapes_edit.yaml"}
#: publish keys copied from a run checkpoint's manifest to the published model's
LINEAGE_KEYS = ("parent", "task", "step", "trainer", "teachers", "training")
TARGETS = {"t2i": (0.90, 0.25), "edit": (0.85, 0.20)}  # (accuracy, gain over the base) on test
DISTILL_TOLERANCE = 0.02
PASS_K_SEED = 100_000  # pass@k samples start far from the one-sample run's seeds (0, 1, …), so they are new draws


def publish(checkpoint: str | Path, dest: Path, name: str) -> Path:
    """Copy a run's checkpoint to ``dest`` under a stable ``name`` (lineage rewritten to match)."""
    from qwenrl.models import load_policy

    policy = load_policy(checkpoint)
    manifest = policy.manifest
    lineage = list(manifest.get("lineage") or [])[:-1] + [name]
    extra = {k: manifest[k] for k in LINEAGE_KEYS if k in manifest}
    return policy.save(dest, name=name, lineage=lineage, run_checkpoint=manifest.get("name"), **extra)


def bench(model: str | Path, splits: tuple[str, ...], limit: int | None, pass_k_samples: int = 1) -> dict[str, Any]:
    """Strict accuracy, composite reward and aesthetics of one model on both tasks and ``splits``
    (one image per prompt, seeds 0, 1, …: what the targets and the arena use). With
    ``pass_k_samples`` n > 1, each task's ``test`` entry also gets ``pass_at_k`` (k = 1, 2, 4, …, n,
    from n further samples per prompt) and their mean ``pass_rate``."""
    from qwenrl.evaluation import evaluate
    from qwenrl.models import load_policy
    from qwenrl.rewards import Sample, load_reward
    from qwenrl.world.prompt_sets import load_prompt_set

    policy = load_policy(model)
    out: dict[str, Any] = {}
    for task in ("t2i", "edit"):
        reward = load_reward(REWARDS[task])
        for split in splits:
            res = evaluate(policy, task, split, limit=limit, keep_images=True)
            items = load_prompt_set(task, split, limit=limit)
            judged = reward([Sample.from_spec(img, it) for img, it in zip(res["images"], items)])
            scores = [j.score for j in judged if j.score is not None]
            aesthetics = [j.parts["aesthetics"] for j in judged if "aesthetics" in j.parts]
            out[f"{task}/{split}"] = {
                "accuracy": res["overall"],
                "families": res["families"],
                "reward": float(np.mean(scores)) if scores else None,
                "aesthetics": float(np.mean(aesthetics)) if aesthetics else None,
                "n_images": res["n_images"],
            }
        if pass_k_samples > 1 and "test" in splits:
            many = evaluate(policy, task, "test", limit=limit, samples_per_prompt=pass_k_samples, seed=PASS_K_SEED)
            out[f"{task}/test"].update(pass_at_k=many["pass_at_k"], pass_rate=many["overall"])
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def results_markdown(table: dict[str, dict[str, Any]], targets: list[dict[str, Any]], command: str) -> str:
    lines = [
        "| model | t2i test accuracy | edit test accuracy | composite reward (t2i / edit) | t2i compositional | edit compositional | aesthetics (t2i / edit) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in table.items():
        lines.append(
            f"| {name} | {_pct(r['t2i/test']['accuracy'])} | {_pct(r['edit/test']['accuracy'])} | "
            f"{_num(r['t2i/test']['reward'])} / {_num(r['edit/test']['reward'])} | "
            f"{_pct(r.get('t2i/compositional', {}).get('accuracy'))} | {_pct(r.get('edit/compositional', {}).get('accuracy'))} | "
            f"{_num(r['t2i/test']['aesthetics'])} / {_num(r['edit/test']['aesthetics'])} |"
        )
    lines += ["", "Targets (test split):", ""]
    lines += [f"- {'met' if t['met'] else 'NOT met'}: {t['target']} (measured {t['measured']})" for t in targets]
    lines += ["", f"Regenerate: `{command}`"]
    return "\n".join(lines) + "\n"


def check_targets(table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    base = table["shapes-base"]
    out = []
    for task, model in (("t2i", "shapes-grpo-t2i"), ("edit", "shapes-grpo-edit")):
        acc, gain = TARGETS[task]
        a, b = table[model][f"{task}/test"]["accuracy"], base[f"{task}/test"]["accuracy"]
        out.append({"target": f"{model} {task} accuracy >= {acc:.0%} and >= base + {gain:.0%}",
                    "measured": f"{a:.1%} (base {b:.1%})", "met": a >= acc and a - b >= gain})
        d = table["shapes-distilled"][f"{task}/test"]["accuracy"]
        out.append({"target": f"shapes-distilled within {DISTILL_TOLERANCE:.0%} of {model} on {task}",
                    "measured": f"{d:.1%} vs {a:.1%}", "met": d >= a - DISTILL_TOLERANCE})
    return out


def seed_recipe(
    out: str | Path = "runs/seed-recipe",
    base: str | Path = "data/models/shapes-base",
    models_dir: str | Path = "data/models",
    overrides: dict[str, list[str]] | None = None,
    bench_limit: int | None = None,
    splits: tuple[str, ...] = ("test", "compositional"),
) -> dict[str, Any]:
    """Run the whole recipe; returns the results (also written to OUT/results.json and .md)."""
    from training import distill, grpo

    out, models = Path(out), resolve_path(models_dir)
    base = resolve_path(base)
    overrides = overrides or {}
    seconds: dict[str, float] = {}
    published: dict[str, Path] = {}
    for task in ("t2i", "edit"):
        t0 = time.perf_counter()
        cfg = grpo.GRPOConfig.from_yaml(CONFIGS / f"shapes_grpo_{task}.yaml", overrides.get(task, []), model=str(base))
        log("recipe", f"GRPO {task}: {out / f'grpo-{task}'}")
        result = grpo.train(cfg, out / f"grpo-{task}")
        published[task] = publish(result["checkpoint"], models / f"shapes-grpo-{task}", f"shapes-grpo-{task}")
        seconds[f"grpo_{task}"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dcfg = distill.DistillConfig.from_yaml(CONFIGS / "shapes_distill.yaml", overrides.get("distill", []), student=str(base),
                                           teachers={t: str(p) for t, p in published.items()})
    log("recipe", f"distillation: {out / 'distill'}")
    result = distill.train(dcfg, out / "distill")
    publish(result["checkpoint"], models / "shapes-distilled", "shapes-distilled")
    seconds["distill"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = {}
    for name in ("shapes-base", "shapes-grpo-t2i", "shapes-grpo-edit", "shapes-distilled"):
        log("recipe", f"benching {name}")
        table[name] = bench(base if name == "shapes-base" else models / name, splits, bench_limit)
    seconds["bench"] = time.perf_counter() - t0
    seconds["total"] = sum(seconds.values())

    targets = check_targets(table)
    command = f"qwenrl experiment seed-recipe --out {out}" + "".join(
        f" --{stage}-set {item}" for stage in ("t2i", "edit", "distill") for item in overrides.get(stage, [])
    ) + (f" --bench-limit {bench_limit}" if bench_limit else "")
    markdown = results_markdown(table, targets, command)
    results = {"table": table, "targets": targets, "seconds": seconds, "overrides": overrides, "bench_limit": bench_limit, "markdown": markdown}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown)
    log("recipe", f"done in {seconds['total'] / 60:.1f} min; results in {out / 'results.md'}")
    return results
